#include "detect/calibrate.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "detect/stats.h"

namespace tend::detect {

Result<Calibration> CalibrateThresholds(const std::vector<double>& scores,
                                        const CalibrationTargets& targets) {
  const size_t m = scores.size();
  if (m < static_cast<size_t>(kMinHoldoutWindows))
    return Fail(Error::Invalid(
        fmt::format("threshold calibration needs at least {} held-out normal windows, got {}",
                    kMinHoldoutWindows, m)));
  for (double p : {targets.low, targets.medium, targets.high})
    if (!(p > 0 && p < 0.5))
      return Fail(Error::Invalid(fmt::format("false-alarm target {} must be in (0, 0.5)", p)));
  if (!(targets.low > targets.medium && targets.medium > targets.high))
    return Fail(Error::Invalid("false-alarm targets must decrease from LOW to MEDIUM to HIGH"));
  double sum = 0, max_s = 0;
  for (size_t i = 0; i < m; ++i) {
    if (!std::isfinite(scores[i]) || scores[i] < 0)
      return Fail(Error::Invalid(
          fmt::format("held-out window {} has score {}: scores must be finite and non-negative", i,
                      scores[i])));
    sum += scores[i];
    max_s = std::max(max_s, scores[i]);
  }
  const double mean_s = sum / static_cast<double>(m);
  const double offset = mean_s > 0 ? 1e-6 * mean_s : 1e-30;

  std::vector<double> y(m);
  double y_bar = 0;
  for (size_t i = 0; i < m; ++i) y_bar += (y[i] = std::log(scores[i] + offset));
  y_bar /= static_cast<double>(m);
  double ss = 0;
  for (double v : y) ss += (v - y_bar) * (v - y_bar);
  const double sd_raw = std::sqrt(ss / static_cast<double>(m - 1));
  const double sd = std::max(sd_raw, kMinLogSd);

  const double dof = static_cast<double>(m - 1);
  const double inflate = std::sqrt(1.0 + 1.0 / static_cast<double>(m));
  const double k_low = StudentTUpperQuantile(targets.low, dof) * inflate;
  const double k_med = StudentTUpperQuantile(targets.medium, dof) * inflate;
  const double k_high = StudentTUpperQuantile(targets.high, dof) * inflate;
  const double fit_low = std::exp(y_bar + k_low * sd) - offset;
  const double fit_med = std::exp(y_bar + k_med * sd) - offset;
  const double fit_high = std::exp(y_bar + k_high * sd) - offset;

  double low = fit_low;
  bool clamped = false;
  if (low <= max_s) {
    // Just above the largest held-out score, in float (the type the thresholds are served in).
    low = std::nextafter(static_cast<float>(max_s), std::numeric_limits<float>::infinity());
    clamped = true;
  }
  const double med = std::max(fit_med, low * (fit_med / fit_low));
  const double high = std::max(fit_high, med * (fit_high / fit_med));

  Calibration out;
  out.thresholds.low = static_cast<float>(low);
  out.thresholds.medium = static_cast<float>(med);
  out.thresholds.high = static_cast<float>(high);
  if (!std::isfinite(out.thresholds.high))
    return Fail(Error::Invalid(fmt::format(
        "threshold calibration overflowed float (HIGH = {:.3g}): held-out scores spread over too "
        "many orders of magnitude (log sd {:.3g})",
        high, sd)));
  auto valid = out.thresholds.Validate();
  if (!valid) return Fail(valid.error().Wrap("threshold calibration"));

  size_t over_low = 0;
  for (double s : scores) over_low += s >= out.thresholds.low;
  out.report = {
      {"rule", "lognormal-prediction"},
      {"description",
       "ln(score + c) ~ Normal fitted on held-out normal windows; tier = exp(mean + "
       "t_{m-1}(1-p) * sqrt(1+1/m) * sd) - c (one-sided prediction bound); LOW never below the "
       "held-out max; MEDIUM/HIGH keep the fitted ratios to LOW"},
      {"n_holdout", m},
      {"false_alarm_targets",
       {{"low", targets.low}, {"medium", targets.medium}, {"high", targets.high}}},
      {"log_offset", offset},
      {"log_mean", y_bar},
      {"log_sd", sd},
      {"log_sd_raw", sd_raw},
      {"log_sd_floored", sd_raw < kMinLogSd},
      {"t_dof", m - 1},
      {"multipliers", {{"low", k_low}, {"medium", k_med}, {"high", k_high}}},
      {"fitted", {{"low", fit_low}, {"medium", fit_med}, {"high", fit_high}}},
      {"clamped_to_holdout_max", clamped},
      {"holdout_over_low", over_low},
      {"holdout_scores",
       {{"min", SampleQuantile(scores, 0)},
        {"p50", SampleQuantile(scores, 0.5)},
        {"p90", SampleQuantile(scores, 0.9)},
        {"max", max_s},
        {"mean", mean_s}}},
  };
  return out;
}

}  // namespace tend::detect
