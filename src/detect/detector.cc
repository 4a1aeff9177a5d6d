#include "detect/detector.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "core/log.h"
#include "detect/stats.h"

namespace tend::detect {

namespace {

using nlohmann::json;
using MatrixD = Eigen::MatrixXd;

Status CheckNames(const Matrix& x, const std::vector<std::string>& names) {
  if (x.cols() == 0) return Fail(Error::Invalid("feature matrix has no columns"));
  if (static_cast<size_t>(x.cols()) != names.size())
    return Fail(Error::Invalid(fmt::format(
        "feature matrix has {} columns but {} feature names were given", x.cols(), names.size())));
  std::set<std::string> seen;
  for (const auto& n : names) {
    if (n.empty()) return Fail(Error::Invalid("feature names: empty name"));
    if (!seen.insert(n).second)
      return Fail(Error::Invalid(fmt::format("feature names: '{}' appears twice", n)));
  }
  return Ok();
}

Status CheckFinite(const Matrix& x, const std::vector<std::string>& names, const char* what) {
  for (Eigen::Index r = 0; r < x.rows(); ++r)
    for (Eigen::Index c = 0; c < x.cols(); ++c)
      if (!std::isfinite(x(r, c)))
        return Fail(
            Error::Invalid(fmt::format("{} row {} (0-based), feature '{}': value {} is not finite",
                                       what, r, names[c], x(r, c))));
  return Ok();
}

struct Split {
  int n_fit = 0, n_holdout = 0;
};

int HoldoutRows(int n, double fraction) {
  return std::max(kMinHoldoutWindows, static_cast<int>(std::lround(fraction * n)));
}

Result<Split> SplitRows(int n, double fraction, int min_fit, const std::string& what) {
  if (!(fraction > 0 && fraction < 1))
    return Fail(Error::Invalid(fmt::format("holdout_fraction {} must be in (0, 1)", fraction)));
  Split s;
  s.n_holdout = HoldoutRows(n, fraction);
  s.n_fit = n - s.n_holdout;
  if (s.n_fit < min_fit) {
    int need = min_fit + kMinHoldoutWindows;
    while (need - HoldoutRows(need, fraction) < min_fit) ++need;
    return Fail(Error::Invalid(fmt::format(
        "{}: {} normal windows are too few; need at least {} ({} to fit, the last {} held out to "
        "calibrate thresholds)",
        what, n, need, min_fit, HoldoutRows(need, fraction))));
  }
  return s;
}

// Mean and std (ddof 1) of each column, std floored (see detector.h).
json FitStandardisation(const MatrixD& x, const std::vector<std::string>& names,
                        std::vector<float>& mean, std::vector<float>& sd) {
  const Eigen::Index n = x.rows(), f = x.cols();
  mean.assign(f, 0);
  sd.assign(f, 1);
  json floored = json::array();
  for (Eigen::Index c = 0; c < f; ++c) {
    const double m = x.col(c).mean();
    const double var = (x.col(c).array() - m).square().sum() / static_cast<double>(n - 1);
    const double max_abs = x.col(c).cwiseAbs().maxCoeff();
    double s = std::sqrt(var);
    const double floor = kStdFloorRel * max_abs;
    if (!(s > floor) || static_cast<float>(s) <= 0) {
      s = floor > 0 ? floor : 1.0;
      floored.push_back(names[c]);
    }
    mean[c] = static_cast<float>(m);
    sd[c] = static_cast<float>(s);
  }
  if (!floored.empty())
    TEND_LOG_WARN("{} feature(s) are constant on the normal data; their std is floored: {}",
                  floored.size(), floored.dump());
  return floored;
}

MatrixD Standardise(const Matrix& x, const std::vector<float>& mean, const std::vector<float>& sd) {
  MatrixD z = x.cast<double>();
  for (Eigen::Index c = 0; c < z.cols(); ++c)
    z.col(c) = (z.col(c).array() - static_cast<double>(mean[c])) / static_cast<double>(sd[c]);
  return z;
}

struct ScoresD {
  Eigen::VectorXd score;
  MatrixD contributions;
};

double MedianOf(std::vector<double>& v) {
  const size_t m = v.size();
  std::sort(v.begin(), v.end());
  return m % 2 ? v[m / 2] : 0.5 * (v[m / 2 - 1] + v[m / 2]);
}

ScoresD ScoreBroadband(const TrainedDetector& det, const MatrixD& z) {
  ScoresD s;
  const size_t m = det.band_index.size();
  s.score.resize(z.rows());
  s.contributions = MatrixD::Zero(z.rows(), z.cols());
  std::vector<double> sel(m);
  for (Eigen::Index r = 0; r < z.rows(); ++r) {
    double relu_total = 0;
    for (size_t j = 0; j < m; ++j) {
      sel[j] = z(r, det.band_index[j]);
      relu_total += std::max(sel[j], 0.0) + kBroadbandShareEps;
    }
    for (size_t j = 0; j < m; ++j) {
      s.contributions(r, det.band_index[j]) =
          (std::max(sel[j], 0.0) + kBroadbandShareEps) / relu_total;
    }
    s.score[r] = std::exp(std::min(MedianOf(sel), static_cast<double>(kBroadbandLogCap)));
    s.contributions.row(r) *= s.score[r];
  }
  return s;
}

ScoresD ScoreStandardised(const TrainedDetector& det, const MatrixD& z) {
  ScoresD s;
  if (det.detector == "mahalanobis") {
    const MatrixD pz = z * det.precision.cast<double>();
    s.score = z.cwiseProduct(pz).rowwise().sum();
    const Eigen::RowVectorXd w = MahalanobisInvDiag(det).cast<double>().transpose();
    const MatrixD rbc = pz.cwiseAbs2().array().rowwise() * w.array();
    const Eigen::VectorXd scale =
        s.score.array() / (rbc.rowwise().sum().array() + static_cast<double>(kContributionEps));
    s.contributions = rbc.array().colwise() * scale.array();
    return s;
  } else if (det.detector == "broadband") {
    return ScoreBroadband(det, z);
  } else if (det.detector == "pca") {
    const MatrixD r = z * det.residual_projector.cast<double>();
    s.contributions = r.cwiseAbs2();
  } else {
    s.contributions = (z - ReconstructRows(det.layers, z)).cwiseAbs2();
  }
  s.score = s.contributions.rowwise().sum();
  return s;
}

json Summary(const Eigen::VectorXd& v) {
  std::vector<double> s(v.data(), v.data() + v.size());
  return {{"min", SampleQuantile(s, 0)},
          {"p50", SampleQuantile(s, 0.5)},
          {"p90", SampleQuantile(s, 0.9)},
          {"max", SampleQuantile(s, 1)},
          {"mean", v.mean()}};
}

// Ledoit–Wolf shrinkage towards mu*I of the covariance of centred rows `x` (Ledoit & Wolf 2004,
// as in scikit-learn's ledoit_wolf): returns the shrunk covariance and the intensity.
std::pair<MatrixD, double> LedoitWolf(const MatrixD& x) {
  const double n = static_cast<double>(x.rows());
  const double p = static_cast<double>(x.cols());
  const MatrixD emp = x.transpose() * x / n;
  const double mu = emp.trace() / p;
  const MatrixD x2 = x.cwiseAbs2();
  const double beta_sum = (x2.transpose() * x2).sum();  // sum_k |x_k|^4
  const double delta_sum = emp.squaredNorm();           // |S|_F^2
  double beta = (beta_sum / n - delta_sum) / (p * n);
  const double delta = (delta_sum - 2 * mu * emp.trace() + p * mu * mu) / p;
  beta = std::min(beta, delta);
  const double shrinkage = (beta <= 0 || delta <= 0) ? 0.0 : beta / delta;
  MatrixD shrunk = (1 - shrinkage) * emp;
  shrunk.diagonal().array() += shrinkage * mu;
  return {shrunk, shrinkage};
}

Result<json> FitMahalanobis(const MatrixD& z, TrainedDetector& det) {
  const MatrixD zc = z.rowwise() - z.colwise().mean();
  auto [cov, shrinkage] = LedoitWolf(zc);
  Eigen::SelfAdjointEigenSolver<MatrixD> eig(cov);
  if (eig.info() != Eigen::Success)
    return Fail(Error::Internal("mahalanobis: eigen-decomposition of the covariance failed"));
  Eigen::VectorXd lambda = eig.eigenvalues();
  const double lmax = lambda.maxCoeff();
  if (!(lmax > 0))
    return Fail(Error::Invalid("mahalanobis: the normal data has no variance at all"));
  // Keeps the precision finite when a feature is constant and there is no shrinkage.
  const double floor = 1e-6 * lmax;
  int floored = 0;
  for (Eigen::Index i = 0; i < lambda.size(); ++i)
    if (lambda[i] < floor) {
      lambda[i] = floor;
      ++floored;
    }
  MatrixD precision =
      eig.eigenvectors() * lambda.cwiseInverse().asDiagonal() * eig.eigenvectors().transpose();
  precision = 0.5 * (precision + precision.transpose());
  det.precision = precision.cast<float>();
  return json{{"shrinkage", shrinkage},
              {"covariance_condition", lambda.maxCoeff() / lambda.minCoeff()},
              {"eigenvalues_floored", floored}};
}

Result<json> FitPca(const MatrixD& z, int requested, TrainedDetector& det) {
  const Eigen::Index f = z.cols(), n = z.rows();
  if (f < 2) return Fail(Error::Invalid("pca needs at least 2 features"));
  if (requested < 0 || requested >= f)
    return Fail(Error::Invalid(fmt::format(
        "pca_components {} must be in [1, {}) (the number of features) or 0 for automatic",
        requested, f)));
  const MatrixD zc = z.rowwise() - z.colwise().mean();
  const MatrixD cov = zc.transpose() * zc / static_cast<double>(n - 1);
  Eigen::SelfAdjointEigenSolver<MatrixD> eig(cov);
  if (eig.info() != Eigen::Success)
    return Fail(Error::Internal("pca: eigen-decomposition of the covariance failed"));
  // Eigen sorts ascending; walk from the top.
  const Eigen::VectorXd lambda = eig.eigenvalues().reverse().cwiseMax(0.0);
  const double total = lambda.sum();
  if (!(total > 0)) return Fail(Error::Invalid("pca: the normal data has no variance at all"));
  int k = requested;
  const int k_max =
      static_cast<int>(std::min<Eigen::Index>(f - 1, std::max<Eigen::Index>(1, n - 1)));
  if (k == 0) {
    double cum = 0;
    k = 0;
    while (k < k_max && cum < 0.95 * total) cum += lambda[k++];
  } else if (k > k_max) {
    return Fail(Error::Invalid(
        fmt::format("pca_components {} needs more than {} fitting windows", requested, n)));
  }
  const MatrixD v = eig.eigenvectors().rowwise().reverse().leftCols(k);
  MatrixD r = MatrixD::Identity(f, f) - v * v.transpose();
  r = 0.5 * (r + r.transpose());
  det.residual_projector = r.cast<float>();
  return json{{"components", k},
              {"explained_variance", lambda.head(k).sum() / total},
              {"requested_components", requested}};
}

Result<json> FitAutoencoder(const MatrixD& z, const TrainOptions& opt, TrainedDetector& det) {
  AutoencoderOptions ao;
  ao.hidden = opt.ae_hidden;
  ao.bottleneck = opt.ae_bottleneck;
  ao.epochs = opt.ae_epochs;
  ao.lr = opt.ae_lr;
  ao.batch = opt.ae_batch;
  ao.seed = opt.seed;
  if (opt.progress)
    ao.on_epoch = [&](int epoch, int epochs, double, double) {
      opt.progress("autoencoder", static_cast<double>(epoch) / epochs);
    };
  TEND_ASSIGN_OR_RETURN(AutoencoderFit fit, TrainAutoencoder(z.cast<float>(), ao));
  det.layers = std::move(fit.layers);
  TEND_LOG_INFO("autoencoder: {} epochs (best {}), val mse {:.4g}", fit.epochs_run, fit.best_epoch,
                fit.val_loss);
  return json{{"hidden", opt.ae_hidden},
              {"bottleneck", opt.ae_bottleneck},
              {"activation", "tanh"},
              {"epochs_max", opt.ae_epochs},
              {"epochs_run", fit.epochs_run},
              {"best_epoch", fit.best_epoch},
              {"lr", opt.ae_lr},
              {"batch", opt.ae_batch},
              {"seed", opt.seed},
              {"n_fit", fit.n_fit},
              {"n_val", fit.n_val},
              {"train_mse", fit.train_loss},
              {"val_mse", fit.val_loss}};
}

Result<json> FitBroadband(TrainedDetector& det) {
  det.band_index = BroadbandColumns(det.feature_names);
  if (det.band_index.empty())
    return Fail(Error::Invalid(
        "broadband needs band-energy features ('band_*' or 'frame_band_*'); this feature set "
        "has none"));
  return json{{"bands", det.band_index.size()}, {"statistic", "exp(median z over the bands)"}};
}

void Progress(const TrainOptions& opt, const std::string& stage, double fraction) {
  if (opt.progress) opt.progress(stage, fraction);
}

// Scores the held-out block and sets thresholds; fills the common calibration fields.
Status CalibrateOn(TrainedDetector& det, const Matrix& holdout, const TrainOptions& opt,
                   json report_extra) {
  const MatrixD zh = Standardise(holdout, det.mean, det.std);
  const ScoresD s = ScoreStandardised(det, zh);
  std::vector<double> scores(s.score.data(), s.score.data() + s.score.size());
  TEND_ASSIGN_OR_RETURN(Calibration cal, CalibrateThresholds(scores, opt.targets));
  det.thresholds = cal.thresholds;
  det.calibration = std::move(cal.report);
  for (auto& [k, v] : report_extra.items()) det.calibration[k] = v;
  return Ok();
}

}  // namespace

Result<TrainedDetector> Train(const Matrix& normal, const std::vector<std::string>& feature_names,
                              const TrainOptions& opt) {
  if (!KnownDetector(opt.detector))
    return Fail(Error::Invalid(
        fmt::format("unknown detector '{}' (expected mahalanobis, pca, broadband or autoencoder)",
                    opt.detector)));
  TEND_RETURN_NOT_OK(CheckNames(normal, feature_names));
  TEND_RETURN_NOT_OK(CheckFinite(normal, feature_names, "normal data"));
  const int min_fit = opt.detector == "autoencoder" ? kMinFitRowsAutoencoder : kMinFitRows;
  TEND_ASSIGN_OR_RETURN(Split split, SplitRows(static_cast<int>(normal.rows()),
                                               opt.holdout_fraction, min_fit, opt.detector));

  TrainedDetector det;
  det.detector = opt.detector;
  det.feature_names = feature_names;
  const MatrixD fit_rows = normal.topRows(split.n_fit).cast<double>();
  Progress(opt, "standardise", 0);
  json floored = FitStandardisation(fit_rows, feature_names, det.mean, det.std);
  Progress(opt, "standardise", 1);
  const MatrixD z = Standardise(normal.topRows(split.n_fit), det.mean, det.std);

  Progress(opt, opt.detector, 0);
  json params;
  if (opt.detector == "mahalanobis") {
    TEND_ASSIGN_OR_RETURN(params, FitMahalanobis(z, det));
  } else if (opt.detector == "broadband") {
    TEND_ASSIGN_OR_RETURN(params, FitBroadband(det));
  } else if (opt.detector == "pca") {
    TEND_ASSIGN_OR_RETURN(params, FitPca(z, opt.pca_components, det));
  } else {
    TEND_ASSIGN_OR_RETURN(params, FitAutoencoder(z, opt, det));
  }
  Progress(opt, opt.detector, 1);

  Progress(opt, "calibrate", 0);
  const ScoresD train_scores = ScoreStandardised(det, z);
  TEND_RETURN_NOT_OK(
      CalibrateOn(det, normal.bottomRows(split.n_holdout), opt,
                  json{{"detector", det.detector},
                       {"n_train", split.n_fit},
                       {"holdout_fraction", static_cast<double>(split.n_holdout) / normal.rows()},
                       {"holdout_rows", {split.n_fit, normal.rows()}},
                       {"std_floor_rel", kStdFloorRel},
                       {"floored_features", floored},
                       {"detector_params", params},
                       {"train_scores", Summary(train_scores.score)}}));
  Progress(opt, "calibrate", 1);
  TEND_LOG_INFO(
      "trained {} on {} windows ({} held out): thresholds low {:.4g} medium {:.4g} high {:.4g}",
      det.detector, split.n_fit, split.n_holdout, det.thresholds.low, det.thresholds.medium,
      det.thresholds.high);
  return det;
}

Result<TrainedDetector> Recalibrate(const TrainedDetector& base, const Matrix& new_normal,
                                    const TrainOptions& opt) {
  TEND_RETURN_NOT_OK(ValidateDetector(base));
  TEND_RETURN_NOT_OK(CheckNames(new_normal, base.feature_names));
  TEND_RETURN_NOT_OK(CheckFinite(new_normal, base.feature_names, "new normal data"));
  TEND_ASSIGN_OR_RETURN(Split split,
                        SplitRows(static_cast<int>(new_normal.rows()), opt.holdout_fraction,
                                  kMinRecalibrationFitRows, "recalibration"));
  TrainedDetector det = base;
  Progress(opt, "standardise", 0);
  json floored = FitStandardisation(new_normal.topRows(split.n_fit).cast<double>(),
                                    base.feature_names, det.mean, det.std);
  Progress(opt, "standardise", 1);

  // How far the normal moved, in old standard deviations: the figure an engineer asks for.
  double max_shift = 0;
  std::string max_shift_feature;
  for (size_t i = 0; i < det.mean.size(); ++i) {
    const double shift = std::fabs(det.mean[i] - base.mean[i]) / base.std[i];
    if (shift > max_shift) {
      max_shift = shift;
      max_shift_feature = base.feature_names[i];
    }
  }
  Progress(opt, "calibrate", 0);
  const ScoresD fit_scores =
      ScoreStandardised(det, Standardise(new_normal.topRows(split.n_fit), det.mean, det.std));
  json previous = {{"thresholds", base.thresholds.ToJson()}};
  if (base.calibration.is_object() && base.calibration.contains("n_train"))
    previous["n_train"] = base.calibration["n_train"];
  TEND_RETURN_NOT_OK(CalibrateOn(
      det, new_normal.bottomRows(split.n_holdout), opt,
      json{{"detector", det.detector},
           {"recalibrated", true},
           {"n_train", split.n_fit},
           {"holdout_fraction", static_cast<double>(split.n_holdout) / new_normal.rows()},
           {"holdout_rows", {split.n_fit, new_normal.rows()}},
           {"std_floor_rel", kStdFloorRel},
           {"floored_features", floored},
           {"max_mean_shift_sd", max_shift},
           {"max_mean_shift_feature", max_shift_feature},
           {"previous", previous},
           {"detector_params",
            base.calibration.is_object() && base.calibration.contains("detector_params")
                ? base.calibration["detector_params"]
                : json::object()},
           {"train_scores", Summary(fit_scores.score)}}));
  Progress(opt, "calibrate", 1);
  TEND_LOG_INFO(
      "recalibrated {} on {} windows (normal moved up to {:.2f} sd in '{}'): thresholds "
      "low {:.4g} medium {:.4g} high {:.4g}",
      det.detector, new_normal.rows(), max_shift, max_shift_feature, det.thresholds.low,
      det.thresholds.medium, det.thresholds.high);
  return det;
}

Result<ScoreBreakdown> Score(const TrainedDetector& det, const Matrix& x) {
  if (static_cast<size_t>(x.cols()) != det.num_features() ||
      det.feature_names.size() != det.num_features())
    return Fail(Error::Invalid(fmt::format(
        "feature matrix has {} columns but the detector takes {}", x.cols(), det.num_features())));
  TEND_RETURN_NOT_OK(CheckFinite(x, det.feature_names, "features"));
  if (!KnownDetector(det.detector))
    return Fail(Error::Invalid(fmt::format("unknown detector '{}'", det.detector)));
  const ScoresD s = ScoreStandardised(det, Standardise(x, det.mean, det.std));
  return ScoreBreakdown{s.score.cast<float>(), s.contributions.cast<float>()};
}

Result<std::vector<float>> ScoreReference(const TrainedDetector& det, const Matrix& x) {
  TEND_ASSIGN_OR_RETURN(ScoreBreakdown s, Score(det, x));
  return std::vector<float>(s.score.data(), s.score.data() + s.score.size());
}

bool KnownDetector(const std::string& d) {
  return d == "mahalanobis" || d == "pca" || d == "broadband" || d == "autoencoder";
}

std::vector<int64_t> BroadbandColumns(const std::vector<std::string>& names) {
  std::vector<int64_t> cols;
  for (size_t i = 0; i < names.size(); ++i) {
    const size_t dot = names[i].find('.');
    const std::string f = dot == std::string::npos ? names[i] : names[i].substr(dot + 1);
    if (f.starts_with("band_") || f.starts_with("frame_band_"))
      cols.push_back(static_cast<int64_t>(i));
  }
  return cols;
}

Eigen::VectorXf MahalanobisInvDiag(const TrainedDetector& det) {
  return det.precision.diagonal().cwiseInverse();
}

Status ValidateDetector(const TrainedDetector& det) {
  if (!KnownDetector(det.detector))
    return Fail(Error::Invalid(fmt::format("unknown detector '{}'", det.detector)));
  const size_t f = det.mean.size();
  if (f == 0) return Fail(Error::Invalid("detector has no features"));
  if (det.std.size() != f || det.feature_names.size() != f)
    return Fail(
        Error::Invalid(fmt::format("detector sizes disagree: {} means, {} stds, {} feature names",
                                   f, det.std.size(), det.feature_names.size())));
  for (size_t i = 0; i < f; ++i)
    if (!std::isfinite(det.mean[i]) || !std::isfinite(det.std[i]) || !(det.std[i] > 0))
      return Fail(Error::Invalid(
          fmt::format("detector standardisation of '{}' is invalid (mean {}, std {})",
                      det.feature_names[i], det.mean[i], det.std[i])));
  const Eigen::Index fi = static_cast<Eigen::Index>(f);
  auto square_ok = [&](const Eigen::MatrixXf& m, const char* what) -> Status {
    if (m.rows() != fi || m.cols() != fi)
      return Fail(Error::Invalid(
          fmt::format("{} is {}x{}, expected {}x{}", what, m.rows(), m.cols(), f, f)));
    if (!m.allFinite()) return Fail(Error::Invalid(fmt::format("{} has non-finite entries", what)));
    return Ok();
  };
  if (det.detector == "mahalanobis") {
    TEND_RETURN_NOT_OK(square_ok(det.precision, "precision matrix"));
    if (!(det.precision.diagonal().array() > 0).all())
      return Fail(Error::Invalid("precision matrix has a non-positive diagonal"));
  }
  if (det.detector == "pca")
    TEND_RETURN_NOT_OK(square_ok(det.residual_projector, "residual projector"));
  if (det.detector == "broadband") {
    if (det.band_index.empty())
      return Fail(Error::Invalid("broadband detector has no band columns"));
    for (size_t j = 0; j < det.band_index.size(); ++j)
      if (det.band_index[j] < 0 || det.band_index[j] >= fi ||
          (j > 0 && det.band_index[j] <= det.band_index[j - 1]))
        return Fail(Error::Invalid(
            fmt::format("broadband band column {} ({}) is out of range or not ascending", j,
                        det.band_index[j])));
  }
  if (det.detector == "autoencoder") {
    if (det.layers.empty()) return Fail(Error::Invalid("autoencoder has no layers"));
    Eigen::Index in = fi;
    for (size_t l = 0; l < det.layers.size(); ++l) {
      const DenseLayer& L = det.layers[l];
      if (L.weight.cols() != in || L.bias.size() != L.weight.rows())
        return Fail(Error::Invalid(
            fmt::format("autoencoder layer {} has shape {}x{} (bias {}) after width {}", l,
                        L.weight.rows(), L.weight.cols(), L.bias.size(), in)));
      if (!L.weight.allFinite() || !L.bias.allFinite())
        return Fail(Error::Invalid(fmt::format("autoencoder layer {} has non-finite weights", l)));
      in = L.weight.rows();
    }
    if (in != fi)
      return Fail(Error::Invalid(fmt::format("autoencoder output width {} != {} features", in, f)));
  }
  return Ok();
}

}  // namespace tend::detect
