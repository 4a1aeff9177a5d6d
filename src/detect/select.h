// Which detector to keep: `tend train` fits each candidate and compares them on data none of
// them was fitted on, then keeps one and says why (the report goes into the model card).
//
// With anomalous examples (`--anomalous`): every candidate is trained the normal way (fit rows,
// held-out rows calibrate the thresholds) and ranked by ROC AUC of the held-out normal rows
// against the anomalous rows, per clip when both sides come from at least two clips (a clip's
// score is the geometric mean of its windows' scores), per window otherwise. The best AUC wins;
// candidates within kAucTie of it count as equal and the preference order decides.
//
// Normal data only: nothing says what an anomaly looks like, so the comparison can only ask
// whether a detector's calibration holds on NEWER normal data (the rows are in time order). A
// forward split: the first half of the rows fits, the next quarter calibrates the thresholds,
// and the last quarter counts held-out windows at or above LOW. A calibrated detector expects
// m x 1e-3 of them (~0 for tens of windows); more than kMaxHeldOutAlerts means its normal has
// already moved past its thresholds (slow drift, run-in, a temperature cycle) and it would raise
// false alerts in service. The first candidate in preference order that stays within that
// wins; if none does, the one with the fewest (ties: preference order). With fewer rows than
// the split needs (kMinSelectRows), the first candidate is kept and the report says so.
//
// Preference order (default): mahalanobis (sees a change in any feature or combination),
// broadband (drift-robust, sees only broadband rises), pca; the caller may put broadband first
// (agent/input_profile.h does for continuous vibration). The autoencoder is not compared by
// default (slow and seeded; ask for it by name).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"
#include "detect/detector.h"

namespace tend::detect {

inline constexpr double kAucTie = 0.005;
inline constexpr int kMaxHeldOutAlerts = 1;
inline constexpr int kMinSelectRows = kMinFitRows + 2 * kMinHoldoutWindows;

struct SelectOptions {
  std::vector<std::string> candidates = {"mahalanobis", "broadband", "pca"};  // preference order
  TrainOptions train;  // everything but `detector`
};

// Rows of one class with the clip (input file) each came from, for per-clip figures.
struct Rows {
  const Matrix* x = nullptr;
  std::vector<int> clip;  // clip id per row; empty = every row its own clip
};

struct Selection {
  std::string detector;
  std::string reason;                                // one line for people
  nlohmann::json report = nlohmann::json::object();  // rule and per-candidate figures
};

// `normal` in time order. `anomalous` may be null (normal data only).
Result<Selection> SelectDetector(const Rows& normal, const Rows* anomalous,
                                 const std::vector<std::string>& feature_names,
                                 const SelectOptions& options);

// A clip's score from its windows' scores: the geometric mean (mean of ln(s + c), c = 1e-6 x the
// mean score, back through exp): a steady change and a single loud window both move it, and no
// single window dominates as it would the arithmetic mean or the max.
double ClipScore(const std::vector<double>& window_scores);

}  // namespace tend::detect
