// Anomaly detectors fitted on normal data only, over feature matrices (rows = windows in time
// order, columns = features), independent of how the features were computed. Each detector is
// later written out as a self-describing ONNX graph (onnx_export.h); ScoreReference is the same
// computation in plain C++, for tests and offline evaluation.
//
// Standardisation: z = (x - mean) / std, mean and std (ddof 1) from the fitting rows. A std below
// kStdFloorRel * max|x| of its column (a numerically constant feature) is raised to that floor,
// or to 1 when the column is all zero; such features are listed in calibration.floored_features.
// A constant feature that later moves is then a large deviation, which is what it is.
//
// Detectors (score >= 0, larger = more anomalous; contributions sum to the score):
//   mahalanobis  Ledoit–Wolf shrinkage covariance of z (works with fewer windows than features);
//                score = z' P z (squared Mahalanobis distance). Contributions are the
//                reconstruction-based contributions (Alcala & Qin 2009) rbc_i = (P z)_i^2 / P_ii
//                -- how much the distance drops if feature i alone is set to its expected value
//                given the others -- rescaled to sum to the score. Unlike z_i (P z)_i they are
//                never negative and point at the feature that moved even when features are
//                strongly correlated (a neighbour of a moved feature can have a larger z_i(Pz)_i).
//   pca          residual of the projection onto the leading components of z;
//                contribution_i = r_i^2, score = |r|^2 (SPE / Q statistic). Blind to changes
//                inside the principal subspace by design.
//   broadband    the median over the band-energy features (names "<ch>.band_*" and
//                "<ch>.frame_band_*", i.e. log energies) of z, through exp: score = exp(median z).
//                A developing mechanical fault (a spall, a crack, looseness) excites the machine's
//                structure with impacts, which raise the energy in most bands at once; operating
//                drift (temperature, load, a resonance moving, one noisy band) moves a few bands.
//                The median ignores any minority of bands, in either direction, and rises only
//                when most of the spectrum rises. One-sided by design: a broadband drop (machine
//                idle, sensor off) scores low here and is the input-health monitor's business
//                (decide/drift.h). log(score) = median z is close to normal on healthy data, so
//                the log-normal calibration fits it well. Contributions share the score in
//                proportion to max(z_i, 0) + 1e-6 over the band features (0 for the others).
//                Blind to a change confined to a few bands or to non-band features by design:
//                `tend train` compares it with mahalanobis (detect/select.h).
//   autoencoder  F -> hidden -> bottleneck -> hidden -> F MLP (autoencoder.h);
//                contribution_i = (z_i - AE(z)_i)^2, score = their sum. Its reconstruction
//                error spreads over correlated features more than the linear detectors' do:
//                a moved feature is the top contributor in ~80 % of windows in the tests.
//
// Rows: the LAST contiguous block (holdout_fraction, at least kMinHoldoutWindows rows) is held
// out to calibrate thresholds (calibrate.h); the rest fits the detector. Minimum fitting rows:
// 10 (mahalanobis, pca), 32 (autoencoder); fewer is an error that says how many are needed.
#pragma once

#include <Eigen/Dense>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"
#include "detect/autoencoder.h"
#include "detect/calibrate.h"
#include "detect/model_card.h"

namespace tend::detect {

using Matrix = Eigen::MatrixXf;

inline constexpr double kStdFloorRel = 1e-5;
inline constexpr int kMinFitRows = 10;
inline constexpr int kMinFitRowsAutoencoder = 32;
inline constexpr int kMinRecalibrationFitRows = 8;

struct TrainOptions {
  std::string detector = "mahalanobis";  // "mahalanobis" | "pca" | "broadband" | "autoencoder"
  // Held-out normal windows for threshold calibration, taken as the LAST contiguous block
  // (callers pass rows in time order); raised to kMinHoldoutWindows rows when smaller.
  double holdout_fraction = 0.25;
  int pca_components = 0;  // 0 = the fewest components explaining 95 % of the variance
  int ae_hidden = 16, ae_bottleneck = 4, ae_epochs = 300;
  double ae_lr = 1e-3;
  int ae_batch = 32;
  uint64_t seed = 1;
  CalibrationTargets targets;  // false-alarm probabilities per tier
  // Called during training: stage in {"standardise", "<detector>", "calibrate"} and the fraction
  // of that stage done (the autoencoder reports once per epoch).
  std::function<void(const std::string& stage, double fraction)> progress;
};

struct TrainedDetector {
  std::string detector;
  std::vector<std::string> feature_names;
  std::vector<float> mean, std;  // per-feature standardisation (std floored, see above)
  Thresholds thresholds;
  nlohmann::json calibration;  // rule and figures: n_train, n_holdout, holdout quantiles, ...

  // What the graph is built from, and what Recalibrate keeps.
  Eigen::MatrixXf precision;           // mahalanobis: F x F, symmetric positive definite
  Eigen::MatrixXf residual_projector;  // pca: I - V V' (F x F)
  std::vector<DenseLayer> layers;      // autoencoder
  std::vector<int64_t> band_index;     // broadband: the band-energy columns, ascending

  size_t num_features() const { return mean.size(); }
};

// Fits standardisation, the detector and the thresholds on normal rows (time order).
Result<TrainedDetector> Train(const Matrix& normal, const std::vector<std::string>& feature_names,
                              const TrainOptions& options);

// "The normal has moved": refits standardisation and thresholds on new normal rows with the same
// architecture and weights (the same split rule; fitting rows >= kMinRecalibrationFitRows).
Result<TrainedDetector> Recalibrate(const TrainedDetector& base, const Matrix& new_normal,
                                    const TrainOptions& options);

struct ScoreBreakdown {
  Eigen::VectorXf score;          // [N]
  Eigen::MatrixXf contributions;  // [N, F]
};

// Pure C++ scoring (double precision internally), the reference the ONNX graph must match.
// Errors on a column-count mismatch or a non-finite value (naming row and feature).
Result<ScoreBreakdown> Score(const TrainedDetector& det, const Matrix& x);
Result<std::vector<float>> ScoreReference(const TrainedDetector& det, const Matrix& x);

// 1 / P_ii in float: the per-feature weights of the Mahalanobis contributions (graph and
// reference use the same values). Denominator guard for the rescaling: kContributionEps.
Eigen::VectorXf MahalanobisInvDiag(const TrainedDetector& det);
inline constexpr float kContributionEps = 1e-30f;

// The columns the broadband detector uses: feature names whose part after the channel prefix
// starts with "band_" or "frame_band_" (log band energies; envelope bands are modulation depth,
// not level, and are left out).
std::vector<int64_t> BroadbandColumns(const std::vector<std::string>& feature_names);
inline constexpr float kBroadbandShareEps = 1e-6f;  // contribution share floor per band
inline constexpr float kBroadbandLogCap = 80.0f;    // median z is capped here: exp stays finite

bool KnownDetector(const std::string& detector);

// Internal consistency (sizes, finite parameters, known detector); used before export.
Status ValidateDetector(const TrainedDetector& det);

}  // namespace tend::detect
