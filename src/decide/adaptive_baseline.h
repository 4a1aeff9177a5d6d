// Adaptive baseline: slow healthy drift (temperature, run-in, a new batch of material) is
// absorbed into the standardisation of the features, degradation is not. Pure logic, no clocks
// or I/O; nothing allocated per event.
//
// The rule:
//   * The commissioning standardisation (the model's mean/std per feature) is the ANCHOR and
//     never changes. The baseline in use starts there.
//   * A window may teach the baseline only when it is well inside normal: its score's evidence
//     (ScoreBaseline::Z of the score computed against the baseline in use) lies in
//     [-accept_z, accept_z] (default 0.5: the evidence the warning CUSUM allows, k, so an
//     accepted window never feeds the warning), and the health monitor is ok (no warning, no
//     alarm). Anything that looks like a change is never learned. The band is two-sided on
//     purpose: selecting only the lowest scores (Z <= 0, the first rule) biases the estimate
//     when the score is signed (the broadband detector's median band z): the windows that score
//     low are the ones whose bands sit low, the baseline then moved down without any drift and
//     the scores of healthy windows rose (measured through `tend run`: more alerts with the
//     adaptation than without). A band centred on the commissioning median selects windows
//     whose features are centred too.
//   * Accepted windows update a pending estimate of each feature's mean (exponential average
//     with weight `rate`, i.e. a memory of ~1/rate accepted windows). Only the location moves;
//     the scale (std) stays at commissioning: windows selected for being near the baseline
//     understate the spread, and a shrinking std would make the guard ever stricter.
//     Selecting also makes the baseline lag the data (accepted windows sit nearer the baseline
//     in use than the data's mean): it follows a drift, ahead of it only by the noise of the
//     average (about sqrt(rate / 2) feature sd).
//   * Every `commit_every` accepted windows the pending estimate becomes the baseline in use,
//     after clamping every feature to the cap: |mean - anchor mean| <= max_shift_sd x anchor
//     std.
//     Each commit is a numbered step in a journal (when, how many windows, the largest move
//     and its feature, how many features sit at the cap), with the baseline itself, so that
//     Revert(step) goes back to any kept step and RevertToAnchor() to commissioning.
//
// Failure mode (docs/alarms.md): a fault that develops more slowly than the baseline follows
// AND whose windows keep scoring below accept_z is absorbed, but never by more than
// max_shift_sd anchor standard deviations per feature. Past the cap the fault shows in the
// score again; the journal and MaxShiftSd() (how far the baseline sits from commissioning, a
// metric) show that it happened, and a revert undoes it.
//
// The serving side applies the baseline to the raw features before the model's own
// standardisation (Apply), so the model file never changes.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "decide/health.h"

namespace tend {

struct AdaptiveOptions {
  double accept_z = 0.5;       // accept windows whose score evidence is within +-this
  double rate = 1.0 / 1000;    // weight of one accepted window in the pending estimate
  int64_t commit_every = 200;  // accepted windows between commits (rate limit)
  double max_shift_sd = 1.0;   // cap on the distance from the anchor, in anchor sd
  int journal_size = 32;       // steps kept for Revert (the anchor is always kept)
  Status Validate() const;
};

struct AdaptationStep {
  int64_t step = 0;         // 1, 2, ... (0 is the anchor)
  int64_t event = 0;        // events offered when it was committed
  int64_t accepted = 0;     // accepted windows that went into it (all steps so far)
  double max_shift_sd = 0;  // largest |mean - anchor mean| / anchor std after the commit
  int64_t max_shift_feature = -1;
  int64_t capped_features = 0;  // features held at the cap
};

class AdaptiveBaseline {
 public:
  static Result<AdaptiveBaseline> Create(std::vector<float> anchor_mean,
                                         std::vector<float> anchor_std, const ScoreBaseline& score,
                                         const AdaptiveOptions& options);

  // One decided window: its raw features (before Apply), its score and the health state after
  // it. Returns true when the window was accepted into the pending estimate.
  bool Offer(std::span<const float> raw_features, float score, HealthState state);

  // In place: x' = x - (mean - anchor_mean), so that the model's own standardisation with the
  // anchor yields z against the baseline in use.
  void Apply(std::span<float> features) const;

  const std::vector<float>& mean() const { return mean_; }
  double MaxShiftSd() const;  // of the baseline in use
  int64_t step() const { return step_; }
  int64_t accepted() const { return accepted_; }
  int64_t offered() const { return offered_; }
  // Kept steps, oldest first (at most journal_size).
  std::vector<AdaptationStep> Journal() const;
  Status Revert(int64_t step);
  void RevertToAnchor();

 private:
  AdaptiveBaseline() = default;
  void Commit();

  AdaptiveOptions opt_;
  ScoreBaseline score_;
  std::vector<float> anchor_mean_, anchor_std_, mean_;
  std::vector<double> pending_mean_;
  int64_t step_ = 0, accepted_ = 0, offered_ = 0, since_commit_ = 0;
  // Journal ring: steps and their baselines (journal_size x F each).
  std::vector<AdaptationStep> steps_;
  std::vector<float> step_mean_;
  size_t journal_head_ = 0, journal_count_ = 0;
};

}  // namespace tend
