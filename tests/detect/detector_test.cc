#include "detect/detector.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "test_util.h"

namespace tend::detect {
namespace {

using testing::Gaussian;
using testing::Names;
using testing::StandardGaussian;

bool Contains(const Error& e, const std::string& s) {
  return e.message.find(s) != std::string::npos;
}

// Low-rank structure plus noise, in mixed units: what correlated vibration features look like.
struct LowRank {
  int f = 8, rank = 3;
  Eigen::MatrixXd basis;
  Eigen::VectorXd mean, scale;
  LowRank() {
    basis.resize(rank, f);
    mean.resize(f);
    scale.resize(f);
    for (int i = 0; i < f; ++i) {
      for (int k = 0; k < rank; ++k) basis(k, i) = std::cos(0.7 + 1.3 * i + 2.1 * k);
      mean[i] = 5.0 * std::sin(i + 1.0);
      scale[i] = std::pow(10.0, (i % 3) - 1);
    }
  }
  Eigen::MatrixXf Sample(int n, uint64_t seed) const {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> nd;
    Eigen::MatrixXf x(n, f);
    for (int r = 0; r < n; ++r) {
      Eigen::RowVectorXd u(rank);
      for (int k = 0; k < rank; ++k) u[k] = nd(rng);
      Eigen::RowVectorXd v = u * basis;
      for (int i = 0; i < f; ++i)
        x(r, i) = static_cast<float>(mean[i] + scale[i] * (v[i] + 0.1 * nd(rng)));
    }
    return x;
  }
};

double AlertFraction(const std::vector<float>& scores, float threshold) {
  size_t n = 0;
  for (float s : scores) n += s >= threshold;
  return static_cast<double>(n) / scores.size();
}

TEST(DetectorTest, MahalanobisConvergesToTheClosedFormWithManyWindows) {
  const int f = 4;
  const Eigen::MatrixXd cov = testing::TestCovariance(f);
  const Eigen::MatrixXd chol = cov.llt().matrixL();
  Eigen::VectorXd mu(f);
  mu << 1.0, -20.0, 300.0, 0.5;
  TrainOptions opt;
  auto det = Train(Gaussian(40000, mu, chol, 1), Names(f), opt);
  ASSERT_TRUE(det) << det.error().message;
  EXPECT_LT(det->calibration["detector_params"]["shrinkage"].get<double>(), 0.01);

  const Eigen::MatrixXf fresh = Gaussian(5000, mu, chol, 2);
  auto s = Score(*det, fresh);
  ASSERT_TRUE(s);
  const Eigen::MatrixXd cov_inv = cov.inverse();
  double sum = 0;
  for (int r = 0; r < fresh.rows(); ++r) {
    const Eigen::VectorXd d = fresh.row(r).cast<double>().transpose() - mu;
    const double truth = d.dot(cov_inv * d);  // squared Mahalanobis distance, true parameters
    EXPECT_NEAR(s->score[r], truth, 0.03 * truth + 0.05) << r;
    EXPECT_NEAR(s->contributions.row(r).sum(), s->score[r], 1e-4 * (1 + s->score[r]));
    sum += s->score[r];
  }
  // Squared Mahalanobis of Gaussian data is chi-square with f degrees of freedom: mean f.
  EXPECT_NEAR(sum / fresh.rows(), f, 0.15);
}

// Ledoit–Wolf written out from the paper's definitions (explicit outer products), independent of
// the implementation's matrix identities.
TEST(DetectorTest, MahalanobisMatchesLedoitWolfComputedFromTheDefinition) {
  const int f = 6, n = 30;
  const Eigen::MatrixXd chol = testing::TestCovariance(f).llt().matrixL();
  const Eigen::MatrixXf x = Gaussian(n, Eigen::VectorXd::Constant(f, 2.0), chol, 5);
  auto det = Train(x, Names(f), TrainOptions{});
  ASSERT_TRUE(det) << det.error().message;
  ASSERT_EQ(det->calibration["n_holdout"], 8);  // max(8, round(0.25 * 30))
  const int nf = 22;

  const Eigen::MatrixXd fit = x.topRows(nf).cast<double>();
  const Eigen::RowVectorXd mean = fit.colwise().mean();
  Eigen::RowVectorXd sd(f);
  for (int c = 0; c < f; ++c)
    sd[c] = std::sqrt((fit.col(c).array() - mean[c]).square().sum() / (nf - 1));
  Eigen::MatrixXd z(nf, f);
  for (int r = 0; r < nf; ++r) z.row(r) = (fit.row(r) - mean).cwiseQuotient(sd);
  const Eigen::MatrixXd s = z.transpose() * z / nf;
  const double m = s.trace() / f;
  const Eigen::MatrixXd id = Eigen::MatrixXd::Identity(f, f);
  const double d2 = (s - m * id).squaredNorm() / f;
  double b2bar = 0;
  for (int k = 0; k < nf; ++k) {
    const Eigen::VectorXd xk = z.row(k).transpose();
    b2bar += (xk * xk.transpose() - s).squaredNorm() / f;
  }
  b2bar /= double(nf) * nf;
  const double b2 = std::min(b2bar, d2);
  const double shrink = b2 / d2;
  const Eigen::MatrixXd sigma = shrink * m * id + (1 - shrink) * s;
  EXPECT_NEAR(det->calibration["detector_params"]["shrinkage"].get<double>(), shrink, 1e-9);
  EXPECT_GT(shrink, 0.05);  // 22 windows, 6 features: shrinkage matters

  const Eigen::MatrixXf fresh = Gaussian(50, Eigen::VectorXd::Constant(f, 2.0), chol, 6);
  auto scores = ScoreReference(*det, fresh);
  ASSERT_TRUE(scores);
  for (int r = 0; r < fresh.rows(); ++r) {
    const Eigen::VectorXd zr = ((fresh.row(r).cast<double>() - mean).cwiseQuotient(sd)).transpose();
    const double expect = zr.dot(sigma.ldlt().solve(zr));
    EXPECT_NEAR((*scores)[r], expect, 1e-4 * expect + 1e-5) << r;
  }
}

TEST(DetectorTest, PcaResidualOfDataInASubspaceIsZero) {
  const int f = 6, n = 200;
  std::mt19937_64 rng(9);
  std::normal_distribution<double> nd;
  Eigen::MatrixXd basis(2, f);
  basis << 1, 2, 0, -1, 0.5, 3, 0, 1, 1, 2, -2, 0.25;
  auto sample = [&](int rows) {
    Eigen::MatrixXf x(rows, f);
    for (int r = 0; r < rows; ++r) {
      Eigen::RowVector2d u(nd(rng), nd(rng));
      x.row(r) = (u * basis).cast<float>().array() + 10.0f;
    }
    return x;
  };
  TrainOptions opt;
  opt.detector = "pca";
  auto det = Train(sample(n), Names(f), opt);
  ASSERT_TRUE(det) << det.error().message;
  EXPECT_EQ(det->calibration["detector_params"]["components"], 2);
  EXPECT_NEAR(det->calibration["detector_params"]["explained_variance"].get<double>(), 1.0, 1e-9);
  Eigen::MatrixXf fresh = sample(100);
  auto s = ScoreReference(*det, fresh);
  ASSERT_TRUE(s);
  for (float v : *s) EXPECT_LT(v, 1e-8f);
  fresh(0, 2) += 0.5f;  // leaves the subspace
  s = ScoreReference(*det, fresh);
  EXPECT_GT((*s)[0], det->thresholds.high);
}

class AllDetectorsTest : public ::testing::TestWithParam<std::string> {};

TEST_P(AllDetectorsTest, NormalRarelyAlertsAndOutliersScoreFarAbove) {
  const LowRank data;
  TrainOptions opt;
  opt.detector = GetParam();
  auto det = Train(data.Sample(800, 21), Names(data.f), opt);
  ASSERT_TRUE(det) << det.error().message;
  const Thresholds& t = det->thresholds;
  EXPECT_GT(t.low, 0);
  EXPECT_LT(t.low, t.medium);
  EXPECT_LT(t.medium, t.high);
  EXPECT_EQ(det->calibration["n_train"], 600);
  EXPECT_EQ(det->calibration["n_holdout"], 200);

  const Eigen::MatrixXf fresh = data.Sample(3000, 22);
  auto s = ScoreReference(*det, fresh);
  ASSERT_TRUE(s);
  EXPECT_LT(AlertFraction(*s, t.low), 0.01) << "target 1e-3 false alerts per healthy window";
  for (float v : *s) EXPECT_GE(v, 0);

  // One feature 30 noise-sd off while the others stay on the manifold.
  Eigen::MatrixXf out = data.Sample(40, 23);
  for (int r = 0; r < out.rows(); ++r) {
    const int i = r % data.f;
    out(r, i) += static_cast<float>(30 * 0.1 * data.scale[i]);
  }
  auto so = Score(*det, out);
  ASSERT_TRUE(so);
  int over_high = 0, top1 = 0, top3 = 0;
  for (int r = 0; r < out.rows(); ++r) {
    EXPECT_GT(so->score[r], t.low) << r;
    over_high += so->score[r] >= t.high;
    EXPECT_NEAR(so->contributions.row(r).sum(), so->score[r], 1e-3 * so->score[r]);
    std::vector<std::pair<float, int>> ranked;
    for (int c = 0; c < data.f; ++c) ranked.emplace_back(-so->contributions(r, c), c);
    std::sort(ranked.begin(), ranked.end());
    top1 += ranked[0].second == r % data.f;
    for (int k = 0; k < 3; ++k) top3 += ranked[k].second == r % data.f;
  }
  EXPECT_GE(over_high, 36) << GetParam();
  // The shifted feature is the top contributor: always for the linear detectors (reconstruction-
  // based contributions); the autoencoder's reconstruction error spreads more (about 80 % top-1
  // over 1,200 such windows and three seeds).
  if (GetParam() == "autoencoder") {
    EXPECT_GE(top1, 28);
    EXPECT_GE(top3, 34);
  } else {
    EXPECT_EQ(top1, 40) << GetParam();
  }
}

TEST_P(AllDetectorsTest, RecalibrateFollowsAShiftedNormal) {
  const int f = 6;
  TrainOptions opt;
  opt.detector = GetParam();
  opt.ae_bottleneck = 3;
  auto det = Train(StandardGaussian(600, f, 31), Names(f), opt);
  ASSERT_TRUE(det) << det.error().message;

  auto shifted = [&](int n, uint64_t seed) {
    Eigen::MatrixXf x = StandardGaussian(n, f, seed);
    x.array() += 3.0f;  // +3 sd in every feature
    return x;
  };
  const Eigen::MatrixXf fresh_shifted = shifted(3000, 33);
  auto before = ScoreReference(*det, fresh_shifted);
  ASSERT_TRUE(before);
  // On isotropic data PCA and the autoencoder keep most of a uniform shift inside their
  // subspace; only Mahalanobis is bound to see it.
  if (GetParam() == "mahalanobis") {
    EXPECT_GT(AlertFraction(*before, det->thresholds.low), 0.8);
  }

  auto re = Recalibrate(*det, shifted(120, 32), opt);
  ASSERT_TRUE(re) << re.error().message;
  auto after = ScoreReference(*re, fresh_shifted);
  ASSERT_TRUE(after);
  EXPECT_LT(AlertFraction(*after, re->thresholds.low), 0.01);
  // Same architecture and weights, new standardisation.
  EXPECT_EQ(re->detector, det->detector);
  EXPECT_EQ(re->precision, det->precision);
  EXPECT_EQ(re->residual_projector, det->residual_projector);
  ASSERT_EQ(re->layers.size(), det->layers.size());
  for (size_t l = 0; l < re->layers.size(); ++l)
    EXPECT_EQ(re->layers[l].weight, det->layers[l].weight);
  for (int i = 0; i < f; ++i) EXPECT_NEAR(re->mean[i], 3.0, 0.3);
  // Sensible thresholds: ordered, and the same order of magnitude as before (same shape of data).
  EXPECT_LT(re->thresholds.low, re->thresholds.medium);
  EXPECT_LT(re->thresholds.medium, re->thresholds.high);
  EXPECT_GT(re->thresholds.low, 0.3 * det->thresholds.low);
  EXPECT_LT(re->thresholds.low, 3.0 * det->thresholds.low);
  EXPECT_TRUE(re->calibration["recalibrated"].get<bool>());
  EXPECT_NEAR(re->calibration["max_mean_shift_sd"].get<double>(), 3.0, 0.5);
  EXPECT_EQ(re->calibration["n_train"], 90);
  if (GetParam() == "mahalanobis") {  // the old normal now stands out
    auto old_normal = ScoreReference(*re, StandardGaussian(500, f, 34));
    EXPECT_GT(AlertFraction(*old_normal, re->thresholds.low), 0.8);
  }
}

INSTANTIATE_TEST_SUITE_P(Detectors, AllDetectorsTest,
                         ::testing::Values("mahalanobis", "pca", "autoencoder"));

// broadband: the median over band features. A rise in most bands alerts; a large change in a
// minority of bands (in either direction) or in a non-band feature does not.
TEST(BroadbandTest, MostBandsRisingAlertsAFewBandsDoNot) {
  const int f = 13;  // 12 bands and one non-band feature
  std::vector<std::string> names = Names(12, "ch0.band_");
  names.push_back("ch0.kurtosis");
  TrainOptions opt;
  opt.detector = "broadband";
  auto det = Train(StandardGaussian(800, f, 41), names, opt);
  ASSERT_TRUE(det) << det.error().message;
  EXPECT_EQ(det->band_index.size(), 12u);
  EXPECT_EQ(det->calibration["detector_params"]["bands"], 12);
  const Eigen::MatrixXf fresh = StandardGaussian(3000, f, 42);
  auto s = ScoreReference(*det, fresh);
  ASSERT_TRUE(s);
  EXPECT_LT(AlertFraction(*s, det->thresholds.low), 0.01);

  Eigen::MatrixXf broad = StandardGaussian(200, f, 43);
  broad.leftCols(10).array() += 3.0f;  // 10 of 12 bands up 3 sd
  auto sb = Score(*det, broad);
  ASSERT_TRUE(sb);
  EXPECT_GT(AlertFraction(std::vector<float>(sb->score.data(), sb->score.data() + 200),
                          det->thresholds.low),
            0.95);
  for (int r = 0; r < 200; ++r) {
    EXPECT_NEAR(sb->contributions.row(r).sum(), sb->score[r], 1e-4 * sb->score[r]);
    EXPECT_EQ(sb->contributions(r, 12), 0.0f);  // not a band
  }

  Eigen::MatrixXf narrow = StandardGaussian(200, f, 44);
  narrow.leftCols(4).array() += 30.0f;  // a third of the bands far up
  narrow.col(5).array() -= 30.0f;       // one far down
  narrow.col(12).array() += 50.0f;      // the non-band feature
  auto sn = ScoreReference(*det, narrow);
  ASSERT_TRUE(sn);
  EXPECT_LT(AlertFraction(*sn, det->thresholds.low), 0.2);
}

TEST(BroadbandTest, ScoreIsExpOfTheMedianZ) {
  TrainedDetector det;
  det.detector = "broadband";
  det.feature_names = {"a.band_0_1", "a.band_1_2", "a.rms", "a.band_2_3", "a.frame_band_0_1_max"};
  det.mean = {0, 0, 0, 0, 0};
  det.std = {1, 1, 1, 1, 1};
  det.band_index = BroadbandColumns(det.feature_names);
  ASSERT_EQ(det.band_index, (std::vector<int64_t>{0, 1, 3, 4}));
  det.thresholds = {1, 2, 3};
  Eigen::MatrixXf x(2, 5);
  x << 1, 2, 100, 3, -7,  // bands 1 2 3 -7: median (1 + 2) / 2
      0, 0, 0, 0, 0;
  auto s = Score(det, x);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_NEAR(s->score[0], std::exp(1.5), 1e-5);
  EXPECT_NEAR(s->score[1], 1.0, 1e-6);
  EXPECT_NEAR(s->contributions(1, 0), 0.25, 1e-5);  // nothing positive: equal shares
  det.feature_names = {"a.rms", "b.kurtosis", "c.env_band_0_1", "d.mean", "e.x"};
  auto r = Train(StandardGaussian(100, 5, 1), det.feature_names, [] {
    TrainOptions o;
    o.detector = "broadband";
    return o;
  }());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("band-energy features"), std::string::npos);
}

TEST(DetectorTest, ZeroVarianceFeatureIsFlooredNotFatal) {
  for (const std::string d : {"mahalanobis", "pca", "autoencoder"}) {
    Eigen::MatrixXf x = StandardGaussian(200, 5, 41);
    x.col(3).setConstant(7.0f);
    x.col(4).setZero();
    TrainOptions opt;
    opt.detector = d;
    opt.ae_bottleneck = 2;
    auto det = Train(x, Names(5), opt);
    ASSERT_TRUE(det) << d << ": " << det.error().message;
    EXPECT_FLOAT_EQ(det->std[3], static_cast<float>(7.0 * kStdFloorRel)) << d;
    EXPECT_EQ(det->std[4], 1.0f) << d;  // all-zero column: nothing to scale by
    EXPECT_EQ(det->calibration["floored_features"], nlohmann::json({"f3", "f4"})) << d;
    Eigen::MatrixXf fresh = StandardGaussian(1000, 5, 42);
    fresh.col(3).setConstant(7.0f);
    fresh.col(4).setZero();
    auto s = ScoreReference(*det, fresh);
    ASSERT_TRUE(s);
    for (float v : *s) ASSERT_TRUE(std::isfinite(v));
    EXPECT_LT(AlertFraction(*s, det->thresholds.low), 0.02) << d;
    fresh(0, 3) = 7.5f;  // the constant feature moves: that is an anomaly
    s = ScoreReference(*det, fresh);
    EXPECT_GT((*s)[0], det->thresholds.high) << d;
  }
}

TEST(DetectorTest, AutoencoderIsDeterministicAndReportsProgress) {
  const LowRank data;
  const Eigen::MatrixXf x = data.Sample(300, 51);
  TrainOptions opt;
  opt.detector = "autoencoder";
  opt.ae_epochs = 40;
  std::vector<std::pair<std::string, double>> calls;
  opt.progress = [&](const std::string& stage, double frac) { calls.emplace_back(stage, frac); };
  auto a = Train(x, Names(data.f), opt);
  ASSERT_TRUE(a) << a.error().message;
  opt.progress = nullptr;
  auto b = Train(x, Names(data.f), opt);
  ASSERT_TRUE(b);
  ASSERT_EQ(a->layers.size(), 4u);
  for (size_t l = 0; l < 4; ++l) {
    EXPECT_EQ(a->layers[l].weight, b->layers[l].weight);
    EXPECT_EQ(a->layers[l].bias, b->layers[l].bias);
  }
  EXPECT_EQ(a->thresholds.low, b->thresholds.low);
  opt.seed = 2;
  auto c = Train(x, Names(data.f), opt);
  ASSERT_TRUE(c);
  EXPECT_NE(a->layers[0].weight, c->layers[0].weight);

  // One call per epoch, then 1.0 when the stage ends (early stopping ends it before 1.0).
  std::vector<double> fracs;
  for (const auto& [stage, frac] : calls)
    if (stage == "autoencoder" && frac > 0) fracs.push_back(frac);
  ASSERT_GE(fracs.size(), 2u);
  EXPECT_EQ(fracs.back(), 1.0);
  for (size_t i = 1; i + 1 < fracs.size(); ++i) EXPECT_GT(fracs[i], fracs[i - 1]);
  const int epochs_run = a->calibration["detector_params"]["epochs_run"].get<int>();
  EXPECT_EQ(static_cast<int>(fracs.size()) - 1, epochs_run);
  EXPECT_LE(epochs_run, 40);
  ASSERT_FALSE(calls.empty());
  EXPECT_EQ(calls.front().first, "standardise");
  EXPECT_EQ(calls.back(), std::make_pair(std::string("calibrate"), 1.0));
}

TEST(DetectorTest, TooFewWindowsIsAClearError) {
  auto r = Train(StandardGaussian(17, 3, 1), Names(3), TrainOptions{});
  ASSERT_FALSE(r);
  EXPECT_TRUE(Contains(r.error(), "17 normal windows are too few; need at least 18"))
      << r.error().message;
  EXPECT_TRUE(Train(StandardGaussian(18, 3, 1), Names(3), TrainOptions{}));
  TrainOptions ae;
  ae.detector = "autoencoder";
  ae.ae_bottleneck = 2;
  r = Train(StandardGaussian(40, 3, 1), Names(3), ae);
  ASSERT_FALSE(r);
  EXPECT_TRUE(Contains(r.error(), "need at least 43")) << r.error().message;
  EXPECT_TRUE(Train(StandardGaussian(43, 3, 1), Names(3), ae));
}

TEST(DetectorTest, NonFiniteRowIsNamed) {
  Eigen::MatrixXf x = StandardGaussian(50, 4, 1);
  x(17, 2) = std::numeric_limits<float>::quiet_NaN();
  auto r = Train(x, Names(4), TrainOptions{});
  ASSERT_FALSE(r);
  EXPECT_TRUE(Contains(r.error(), "row 17")) << r.error().message;
  EXPECT_TRUE(Contains(r.error(), "'f2'")) << r.error().message;
  x(17, 2) = 0;
  x(40, 0) = -std::numeric_limits<float>::infinity();
  r = Train(x, Names(4), TrainOptions{});
  ASSERT_FALSE(r);
  EXPECT_TRUE(Contains(r.error(), "row 40")) << r.error().message;
}

TEST(DetectorTest, BadArgumentsAreClearErrors) {
  const Eigen::MatrixXf x = StandardGaussian(60, 4, 1);
  auto r = Train(x, Names(3), TrainOptions{});
  ASSERT_FALSE(r);
  EXPECT_TRUE(Contains(r.error(), "4 columns but 3 feature names")) << r.error().message;
  r = Train(x, {"a", "b", "a", "c"}, TrainOptions{});
  ASSERT_FALSE(r);
  EXPECT_TRUE(Contains(r.error(), "'a' appears twice")) << r.error().message;
  TrainOptions opt;
  opt.detector = "isolation-forest";
  r = Train(x, Names(4), opt);
  ASSERT_FALSE(r);
  EXPECT_TRUE(Contains(r.error(), "unknown detector 'isolation-forest'")) << r.error().message;
  opt.detector = "pca";
  opt.pca_components = 4;
  r = Train(x, Names(4), opt);
  ASSERT_FALSE(r);
  EXPECT_TRUE(Contains(r.error(), "pca_components 4")) << r.error().message;
  opt = {};
  opt.detector = "autoencoder";
  r = Train(x, Names(4), opt);  // bottleneck 4 >= 4 features
  ASSERT_FALSE(r);
  EXPECT_TRUE(Contains(r.error(), "bottleneck (4) must be smaller")) << r.error().message;
  opt = {};
  opt.holdout_fraction = 1.0;
  EXPECT_FALSE(Train(x, Names(4), opt));

  auto det = Train(x, Names(4), TrainOptions{});
  ASSERT_TRUE(det);
  auto s = ScoreReference(*det, StandardGaussian(5, 3, 2));
  ASSERT_FALSE(s);
  EXPECT_TRUE(Contains(s.error(), "3 columns but the detector takes 4")) << s.error().message;
  auto re = Recalibrate(*det, StandardGaussian(15, 4, 2), TrainOptions{});
  ASSERT_FALSE(re);
  EXPECT_TRUE(Contains(re.error(), "need at least 16")) << re.error().message;
  re = Recalibrate(*det, StandardGaussian(30, 5, 2), TrainOptions{});
  EXPECT_FALSE(re);
}

}  // namespace
}  // namespace tend::detect
