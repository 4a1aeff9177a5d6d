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
// Two one-sided CUSUMs (Page 1954), capped at twice their threshold so that a finished episode
// clears in bounded time:
//   warning  S_w = max(0, S_w + x - k): a persistent shift of the score's level by more than
//            k (0.5 sd) against commissioning, however small each window's score stays.
//            Warning when S_w >= h_warning; it clears when S_w falls below h_warning / 2.
//   alarm    S_a = max(0, S_a + clip(z - alarm_z) - k_alarm), alarm_z = the evidence of the
//            model's LOW (per-window alert) threshold: only windows ABOVE the alert threshold add
//            to it, by how far above. Alarm when S_a >= h_alarm: "degradation confirmed" means
//            the windows keep crossing the alert threshold, with h_alarm / clip (5) clipped
//            windows at the very least. It stays until S_a has fallen back to 0 (or Reset()
//            after maintenance and recommissioning).
// A level that drifts within commissioning's spread (run-in, temperature) can raise a warning,
// never an alarm: that needs windows over LOW, which the per-window false-alarm target keeps
// rare (1e-3). The EWMA of x and the least-squares slope of x over the last `trend_window`
// events are reported as the health indicator and its trend.
//
// False-alarm properties (for independent N(0,1) evidence, i.e. a score that stays in its
// commissioning distribution), Siegmund's approximation of the average run length of a CUSUM
// with reference value r and threshold h against a mean shift delta:
//   ARL(delta) = (exp(-2 D b) + 2 D b - 1) / (2 D^2), D = delta - r, b = h + 1.166
// (b^2 when D = 0). With the defaults:
//   warning (r = 0.5, h = 8):  ARL0 ~ 1.9e4 events between false warnings (18 h at 18 strokes
//     per minute, 2.2 days at one event per 10 s); a 1 sd shift warns in ~16 events, 2 sd in ~6.
//   alarm (r = alarm_z + k_alarm, about 3.3 for a model calibrated on ~100 windows, h = 20):
//     ARL0 beyond 1e50 events: in-control noise cannot alarm; what can is a score distribution
//     that moves above LOW, which is what an alarm is for. A shift to 2 sd above LOW alarms in
//     ~11 events, 4 sd above in ~6.
// ArlApprox() computes these; tests check them against simulation. Real scores are
// autocorrelated and drift, which shortens the warning's ARL0: docs/alarms.md has measured
// figures.
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
  double k = 0.5;          // warning CUSUM allowance, in baseline sd
  double h_warning = 8.0;  // warning CUSUM level
  double alarm_z = 3.3;    // evidence of the per-window alert threshold (ScoreBaseline::Z(LOW))
  double k_alarm = 0.0;    // alarm CUSUM allowance above alarm_z
  double h_alarm = 20.0;   // alarm CUSUM level
  double clip = 4.0;       // per-event evidence is clipped to [-clip, clip]
  double ewma_lambda = 0.05;
  int trend_window = 60;  // events in the slope fit
  Status Validate() const;
};

enum class HealthState { kOk = 0, kWarning = 1, kAlarm = 2 };
const char* HealthStateName(HealthState s);  // "ok" | "warning" | "alarm"

struct HealthStatus {
  HealthState state = HealthState::kOk;
  double cusum = 0;         // S_w, the warning CUSUM
  double alarm_cusum = 0;   // S_a, the alarm CUSUM
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
  void UpdateTrend(double x);

  ScoreBaseline baseline_;
  HealthOptions options_;
  HealthStatus status_;
  std::vector<double> recent_;  // ring of the last trend_window evidence values
  size_t pos_ = 0;
  double sum_x_ = 0, sum_tx_ = 0;  // over the ring in time order, t = 0 the oldest
};

}  // namespace tend
