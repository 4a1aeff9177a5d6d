#include "decide/decider.h"

#include <cmath>
#include <string>

namespace tend {

Status SeverityThresholds::Validate() const {
  if (!std::isfinite(low) || !std::isfinite(medium) || !std::isfinite(high)) {
    return Fail(Error::Invalid("severity thresholds must be finite numbers"));
  }
  if (!(low <= medium && medium <= high)) {
    return Fail(Error::Invalid("severity thresholds must satisfy low <= medium <= high (got " +
                               std::to_string(low) + ", " + std::to_string(medium) + ", " +
                               std::to_string(high) + ")"));
  }
  return Ok();
}

Status DebounceOptions::Validate() const {
  if (n < 1 || n > 1000) return Fail(Error::Invalid("debounce n must be in 1..1000"));
  if (k < 1 || k > n) return Fail(Error::Invalid("debounce k must be in 1..n"));
  return Ok();
}

Decider::Decider(SeverityThresholds thresholds, DebounceOptions debounce)
    : thresholds_(thresholds), debounce_(debounce), history_(static_cast<size_t>(debounce.n), 0) {}

Severity Decider::Tier(float score) const {
  if (!std::isfinite(score) || score >= thresholds_.high) return Severity::kHigh;
  if (score >= thresholds_.medium) return Severity::kMedium;
  if (score >= thresholds_.low) return Severity::kLow;
  return Severity::kNone;
}

void Decider::Push(bool raw) {
  count_ -= history_[pos_];
  history_[pos_] = raw ? 1 : 0;
  count_ += history_[pos_];
  pos_ = (pos_ + 1) % history_.size();
}

void Decider::Decide(Decision& d) {
  d.threshold_low = thresholds_.low;
  d.threshold_medium = thresholds_.medium;
  d.threshold_high = thresholds_.high;
  float s = d.anomaly_score;
  d.severity = Tier(s);
  d.raw_alert = !std::isfinite(s) || s >= thresholds_.low;
  Push(d.raw_alert);
  d.is_alert = d.raw_alert && count_ >= debounce_.k;
}

void Decider::DecideFailSafe(Decision& d, bool as_alert, Severity severity) {
  d.fail_safe = true;
  d.threshold_low = thresholds_.low;
  d.threshold_medium = thresholds_.medium;
  d.threshold_high = thresholds_.high;
  d.severity = as_alert ? severity : Severity::kNone;  // a "pass" is no alert tier
  d.raw_alert = as_alert;
  Push(as_alert);
  d.is_alert = as_alert;  // a missed deadline is never debounced away
}

}  // namespace tend
