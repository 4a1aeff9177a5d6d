#include "decide/health.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace tend {

Status ScoreBaseline::Validate() const {
  if (!std::isfinite(log_offset) || log_offset < 0 || !std::isfinite(log_mean) ||
      !std::isfinite(log_sd) || !(log_sd > 0)) {
    return Fail(Error::Invalid(fmt::format(
        "score baseline: log_offset {} must be >= 0, log_mean {} finite and log_sd {} > 0",
        log_offset, log_mean, log_sd)));
  }
  return Ok();
}

double ScoreBaseline::Z(float score) const {
  return (std::log(std::max(static_cast<double>(score), 0.0) + log_offset + 1e-300) - log_mean) /
         log_sd;
}

Status HealthOptions::Validate() const {
  auto bad = [](const std::string& m) { return Fail(Error::Invalid("health: " + m)); };
  if (!(k >= 0) || !std::isfinite(k)) return bad(fmt::format("k {} must be >= 0", k));
  if (!(h_warning > 0) || !std::isfinite(h_warning)) {
    return bad(fmt::format("h_warning {} must be > 0", h_warning));
  }
  if (!(h_alarm > 0) || !std::isfinite(h_alarm)) {
    return bad(fmt::format("h_alarm {} must be > 0", h_alarm));
  }
  if (!std::isfinite(alarm_z) || !(k_alarm >= 0) || !std::isfinite(k_alarm)) {
    return bad(fmt::format("alarm_z {} must be finite and k_alarm {} >= 0", alarm_z, k_alarm));
  }
  if (!(clip > k) || !std::isfinite(clip)) {
    return bad(fmt::format("clip {} must be above k {} (or nothing accumulates)", clip, k));
  }
  if (!(ewma_lambda > 0 && ewma_lambda <= 1)) {
    return bad(fmt::format("ewma_lambda {} must be in (0, 1]", ewma_lambda));
  }
  if (trend_window < 3 || trend_window > 100000) {
    return bad(fmt::format("trend_window {} must be in 3..100000", trend_window));
  }
  return Ok();
}

const char* HealthStateName(HealthState s) {
  switch (s) {
    case HealthState::kOk:
      return "ok";
    case HealthState::kWarning:
      return "warning";
    case HealthState::kAlarm:
      return "alarm";
  }
  return "ok";
}

HealthMonitor::HealthMonitor(const ScoreBaseline& b, const HealthOptions& o)
    : baseline_(b), options_(o), recent_(static_cast<size_t>(o.trend_window), 0.0) {}

Result<HealthMonitor> HealthMonitor::Create(const ScoreBaseline& b, const HealthOptions& o) {
  TEND_RETURN_NOT_OK(b.Validate());
  TEND_RETURN_NOT_OK(o.Validate());
  return HealthMonitor(b, o);
}

void HealthMonitor::Reset() {
  status_ = HealthStatus{};
  std::fill(recent_.begin(), recent_.end(), 0.0);
  pos_ = 0;
  sum_x_ = sum_tx_ = 0;
}

void HealthMonitor::SetState(HealthState s) {
  if (s == status_.state) return;
  status_.state = s;
  status_.state_since = status_.events;
  status_.changed = true;
}

const HealthStatus& HealthMonitor::UpdateFailSafe() {
  status_.changed = false;
  ++status_.fail_safe;
  return status_;
}

const HealthStatus& HealthMonitor::Update(float score) {
  HealthStatus& s = status_;
  s.changed = false;
  const double clip = options_.clip;
  const double z = std::isfinite(score) ? baseline_.Z(score) : HUGE_VAL;
  const double x = std::clamp(z, -clip, clip);
  const double xa = std::clamp(z - options_.alarm_z, -clip, clip);
  ++s.events;
  s.cusum = std::clamp(s.cusum + x - options_.k, 0.0, 2 * options_.h_warning);
  s.alarm_cusum = std::clamp(s.alarm_cusum + xa - options_.k_alarm, 0.0, 2 * options_.h_alarm);
  s.ewma = s.events == 1 ? x : s.ewma + options_.ewma_lambda * (x - s.ewma);
  UpdateTrend(x);
  if (s.alarm_cusum >= options_.h_alarm) {
    SetState(HealthState::kAlarm);
  } else if (s.state == HealthState::kAlarm) {
    if (s.alarm_cusum <= 0)
      SetState(s.cusum >= options_.h_warning ? HealthState::kWarning : HealthState::kOk);
  } else if (s.cusum >= options_.h_warning) {
    SetState(HealthState::kWarning);
  } else if (s.state == HealthState::kWarning && s.cusum < 0.5 * options_.h_warning) {
    SetState(HealthState::kOk);
  }
  return s;
}

// Least-squares slope of the evidence over the ring in time order (t = 0 the oldest), from
// running sums of x and t*x: O(1) per event, re-anchored by a full pass once per ring turn.
void HealthMonitor::UpdateTrend(double x) {
  HealthStatus& s = status_;
  const size_t w = recent_.size();
  const double nb = static_cast<double>(std::min<int64_t>(s.events - 1, static_cast<int64_t>(w)));
  const double oldest = recent_[pos_];  // leaves the ring when it is full
  recent_[pos_] = x;
  pos_ = (pos_ + 1) % w;
  if (nb < static_cast<double>(w)) {  // growing: the new value is at t = nb
    sum_tx_ += nb * x;
    sum_x_ += x;
  } else {  // every other value moves one step earlier in time
    sum_x_ -= oldest;
    sum_tx_ += -sum_x_ + (nb - 1) * x;
    sum_x_ += x;
  }
  if (pos_ == 0) {  // re-anchor
    sum_x_ = sum_tx_ = 0;
    for (size_t i = 0; i < w; ++i) {
      sum_x_ += recent_[i];
      sum_tx_ += static_cast<double>(i) * recent_[i];
    }
  }
  const int64_t n = std::min<int64_t>(s.events, static_cast<int64_t>(w));
  if (n < 3) return;
  const double nn = static_cast<double>(n);
  const double st = nn * (nn - 1) / 2, stt = (nn - 1) * nn * (2 * nn - 1) / 6;
  s.trend = 100.0 * (nn * sum_tx_ - st * sum_x_) / (nn * stt - st * st);
}

double HealthMonitor::ArlApprox(double k, double h, double delta) {
  const double d = delta - k;
  const double b = h + 1.166;
  if (std::fabs(d) < 1e-9) return b * b;
  return (std::exp(-2 * d * b) + 2 * d * b - 1) / (2 * d * d);
}

}  // namespace tend
