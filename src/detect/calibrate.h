// Severity thresholds from held-out normal windows. With tens of held-out windows an empirical
// 99.9 % quantile means nothing, so a distribution is fitted and its far tail extrapolated.
//
// The rule ("lognormal-prediction"), for m held-out scores s_1..s_m (m >= kMinHoldoutWindows):
//   1. y_i = ln(s_i + c), with c = 1e-6 * mean(s) (keeps exact zeros finite; 1e-30 if all zero).
//   2. Fit a normal to y: mean y_bar, sample sd s_y (ddof 1), floored at kMinLogSd (0.01: scores
//      that vary by less than 1 % are numerically degenerate, and tiers must stay apart).
//   3. For each tier with false-alarm target p (LOW 1e-3, MEDIUM 1e-5, HIGH 1e-7 per healthy
//      window), T = exp(y_bar + t_{m-1}(1-p) * sqrt(1 + 1/m) * s_y) - c. This is the one-sided
//      normal *prediction* bound for one new window: it accounts for y_bar and s_y being
//      estimated from m windows, so the expected false-alarm rate under the model is p rather
//      than p times whatever the estimation error adds. With few windows MEDIUM/HIGH come out
//      wide (honestly: ten windows say little about a 1e-7 tail); they tighten as m grows.
//   4. LOW is never below the largest held-out score (it is raised to just above it when the
//      fit says otherwise: the fit then underestimates the tail); MEDIUM and HIGH keep the
//      fitted ratios to LOW when LOW is raised, so 0 < LOW < MEDIUM < HIGH always.
// Why log-normal: anomaly scores are positive and right-skewed; for squared Mahalanobis on
// Gaussian data (chi-square) the log-normal's right tail is heavier than the truth, so the
// error is on the side of fewer false alarms.
#pragma once

#include <nlohmann/json.hpp>
#include <vector>

#include "core/status.h"
#include "detect/model_card.h"

namespace tend::detect {

struct CalibrationTargets {
  double low = 1e-3, medium = 1e-5, high = 1e-7;  // false-alarm probability per healthy window
};

inline constexpr int kMinHoldoutWindows = 8;
inline constexpr double kMinLogSd = 0.01;

struct Calibration {
  Thresholds thresholds;
  nlohmann::json report;  // the rule and every figure used, for the model card
};

// `scores`: detector scores of held-out normal windows (non-negative, finite).
Result<Calibration> CalibrateThresholds(const std::vector<double>& scores,
                                        const CalibrationTargets& targets = {});

}  // namespace tend::detect
