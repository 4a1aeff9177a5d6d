// Health over time: evidence accumulated over many events, on top of the per-window tiers and
// the k-of-n debounce. A *warning* says "this has changed, worth a look"; an *alarm* says
// "degradation confirmed". Pure logic, no clocks or I/O, nothing allocated per event (like
// decider.h); the caller feeds scores in event order.
//
// Evidence per event: x = (ln(score + c) - mu) / sigma, the score's position in its
// commissioning distribution (the model's calibration: log-normal fit on held-out normal
// windows, detect/calibrate.h), clipped to [-clip, +clip] so that one wild window cannot make an
// alarm alone. A non-finite score counts as +clip. Fail-safe events (deadline missed: nothing is
// known about the machine) add no evidence.
//
// Upper CUSUM (Page 1954): S_t = min(2 h_alarm, max(0, S_{t-1} + x_t - k)). Warning when
// S >= h_warning, alarm when S >= h_alarm. A warning clears when S falls below h_warning / 2; an
// alarm stays until S has fallen back to 0 (the evidence is used up) or Reset() (after
// maintenance and recommissioning). The cap bounds how long a finished episode keeps the alarm:
// about 2 h_alarm / k events of normal scores (48 with the defaults), however long it lasted. The
// EWMA of x and the least-squares slope of x over the last `trend_window` events are reported as
// the health indicator and its trend.
//
// False-alarm properties (for independent N(0,1) evidence, i.e. a score that stays in its
// commissioning distribution), Siegmund's approximation of the average run length:
//   ARL(delta) = (exp(-2 D b) + 2 D b - 1) / (2 D^2), D = delta - k, b = h + 1.166
// (b^2 when D = 0). With the defaults k = 0.5:
//   h_warning = 8:  ARL0 ~ 1.9e4 events between false warnings (18 h at 18 strokes per minute,
//                   2.2 days at one event per 10 s); a 1 sd shift warns in ~16 events, 2 sd in ~6
//   h_alarm = 12:   ARL0 ~ 1.0e6 events between false alarms (40 days at 18 strokes per minute,
//                   4 months at one event per 10 s); a 1 sd shift alarms in ~24 events, 2 sd in ~8
// ArlApprox() computes these; tests check them against simulation. Real scores are
// autocorrelated and drift, which shortens ARL0: docs/alarms.md has measured figures.
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"

namespace tend {

// The commissioning distribution of ln(score + log_offset) (calibration report: log_offset,
// log_mean, log_sd).
struct ScoreBaseline {
  double log_offset = 0, log_mean = 0, log_sd = 1;
  Status Validate() const;
  // Evidence of one score, unclipped: (ln(score + log_offset) - log_mean) / log_sd.
  double Z(float score) const;
};

struct HealthOptions {
  double k = 0.5;          // CUSUM allowance, in baseline sd (half the shift detected fastest)
  double h_warning = 8.0;  // CUSUM level of a warning
  double h_alarm = 12.0;   // CUSUM level of an alarm
  double clip = 4.0;       // per-event evidence is clipped to [-clip, clip]
  double ewma_lambda = 0.05;
  int trend_window = 60;  // events in the slope fit
  Status Validate() const;
};

enum class HealthState { kOk = 0, kWarning = 1, kAlarm = 2 };
const char* HealthStateName(HealthState s);  // "ok" | "warning" | "alarm"

struct HealthStatus {
  HealthState state = HealthState::kOk;
  double cusum = 0;         // S_t
  double ewma = 0;          // EWMA of the evidence (0 = commissioning level)
  double trend = 0;         // slope of the evidence per 100 events over the trend window
  int64_t events = 0;       // events with evidence
  int64_t fail_safe = 0;    // fail-safe events seen (no evidence)
  int64_t state_since = 0;  // event count when the current state began
  bool changed = false;     // the state changed at this event
};

class HealthMonitor {
 public:
  static Result<HealthMonitor> Create(const ScoreBaseline& baseline, const HealthOptions& options);

  const HealthStatus& Update(float score);
  const HealthStatus& UpdateFailSafe();
  const HealthStatus& status() const { return status_; }
  void Reset();  // back to ok with no evidence (after maintenance / recommissioning)

  const ScoreBaseline& baseline() const { return baseline_; }
  const HealthOptions& options() const { return options_; }

  // Siegmund's ARL approximation for a mean shift `delta` (in sd) of N(delta, 1) evidence.
  static double ArlApprox(double k, double h, double delta);

 private:
  HealthMonitor(const ScoreBaseline& b, const HealthOptions& o);
  void SetState(HealthState s);

  ScoreBaseline baseline_;
  HealthOptions options_;
  HealthStatus status_;
  std::vector<double> recent_;  // ring of the last trend_window evidence values
  size_t pos_ = 0;
};

}  // namespace tend
