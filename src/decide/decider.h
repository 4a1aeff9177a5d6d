// Turns a model score into a decision: severity tier from the model's thresholds, and a k-of-n
// debounce so that one odd stroke does not page anyone while a real, sustained change does.
// Pure logic, no clocks or I/O; the agent owns timing and the fail-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "decide/decision.h"

namespace tend {

struct SeverityThresholds {
  float low = 0;  // score >= low: this window alone is an alert candidate (tier LOW; below: NONE)
  float medium = 0;  // score >= medium: tier MEDIUM
  float high = 0;    // score >= high: tier HIGH
  Status Validate() const;
};

struct DebounceOptions {
  int k = 2;  // alert when at least k of the last n windows crossed `low` (this one included)
  int n = 3;
  Status Validate() const;
};

class Decider {
 public:
  Decider(SeverityThresholds thresholds, DebounceOptions debounce);

  // Fills severity, raw_alert and is_alert of `d` from d.anomaly_score, and advances the
  // debounce history. A non-finite score counts as the highest tier (the model misbehaves:
  // failing safe is the right reading).
  void Decide(Decision& d);

  // Fail-safe decision for a window whose deadline passed: counts in the history like an alert
  // when `as_alert` is true.
  void DecideFailSafe(Decision& d, bool as_alert, Severity severity);

  void SetThresholds(SeverityThresholds t) { thresholds_ = t; }
  const SeverityThresholds& thresholds() const { return thresholds_; }
  Severity Tier(float score) const;

 private:
  void Push(bool raw);

  SeverityThresholds thresholds_;
  DebounceOptions debounce_;
  std::vector<uint8_t> history_;  // ring of the last n raw alerts
  size_t pos_ = 0;
  int count_ = 0;
};

}  // namespace tend
