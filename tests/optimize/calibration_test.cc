#include "optimize/calibration.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace tend::optimize {
namespace {

TEST(ActivationCalibration, ParseMethod) {
  EXPECT_EQ(*ParseCalibrationMethod("minmax"), CalibrationMethod::kMinMax);
  EXPECT_EQ(*ParseCalibrationMethod("percentile"), CalibrationMethod::kPercentile);
  EXPECT_EQ(*ParseCalibrationMethod("entropy"), CalibrationMethod::kEntropy);
  auto bad = ParseCalibrationMethod("kl");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("'kl'"), std::string::npos);
}

TEST(ActivationCalibration, HistogramBinsAndClamping) {
  Histogram h(0.0, 4.0, 4);
  const std::vector<float> v = {0.0f, 0.5f, 1.0f, 3.99f, 4.0f, 10.0f, -1.0f};
  h.Add(v, /*absolute=*/false);
  // [0,1): 0, 0.5, -1 (clamped) | [1,2): 1 | [3,4]: 3.99, 4, 10 (clamped)
  EXPECT_EQ(h.counts(), (std::vector<uint64_t>{3, 1, 0, 3}));
  EXPECT_EQ(h.total(), 7u);
  Histogram a(0.0, 4.0, 4);
  a.Add(std::vector<float>{-3.5f, 3.5f}, /*absolute=*/true);
  EXPECT_EQ(a.counts()[3], 2u);
}

TEST(ActivationCalibration, AsymmetricUInt8Params) {
  // [-1, 3]: scale 4/255, zero point round(1 / (4/255)) = round(63.75) = 64.
  QuantParams q = AsymmetricUInt8({-1.0f, 3.0f});
  EXPECT_FLOAT_EQ(q.scale, 4.0f / 255.0f);
  EXPECT_EQ(q.zero_point, 64);
  // After ReLU: zero point 0, so the quantiser clamps negatives like ReLU.
  q = AsymmetricUInt8({0.0f, 2.55f});
  EXPECT_FLOAT_EQ(q.scale, 0.01f);
  EXPECT_EQ(q.zero_point, 0);
  // All negative: zero at the top.
  q = AsymmetricUInt8({-5.1f, 0.0f});
  EXPECT_EQ(q.zero_point, 255);
  // Degenerate (a tensor that was always zero) stays valid.
  q = AsymmetricUInt8({0.0f, 0.0f});
  EXPECT_EQ(q.scale, 1.0f);
  EXPECT_EQ(q.zero_point, 0);
}

TEST(ActivationCalibration, PercentileOfUniformIntegers) {
  Histogram h(0.0, 10000.0, 10000);
  std::vector<float> v(10000);
  for (int i = 0; i < 10000; ++i) v[static_cast<size_t>(i)] = static_cast<float>(i) + 0.5f;
  h.Add(v, false);
  // 99 % two-sided: 50 values below, 50 above.
  Range r = PercentileRange(h, 99.0);
  EXPECT_NEAR(r.min, 50.0, 1.0);
  EXPECT_NEAR(r.max, 9950.0, 1.0);
  r = PercentileRange(h, 100.0);
  EXPECT_NEAR(r.min, 0.0, 1e-6);
  EXPECT_NEAR(r.max, 10000.0, 1e-6);
}

TEST(ActivationCalibration, EntropyKeepsTheWholeRangeOfAUniformDistribution) {
  // Clipping a uniform distribution only adds error, so the best threshold is the maximum.
  std::vector<uint64_t> counts(2048, 1000);
  const double t = EntropyThreshold(counts, 1.0 / 2048, 128);
  EXPECT_GT(t, 0.97);
  EXPECT_LE(t, 1.0);
}

TEST(ActivationCalibration, EntropyClipsRareOutliers) {
  // |N(0,1)| plus a handful of values at 100: the threshold must land in the body of the
  // Gaussian (TensorRT reports ~3-5 sigma here), far from the outliers.
  std::mt19937_64 rng(7);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<float> v(200000);
  for (auto& x : v) x = n(rng);
  for (int i = 0; i < 5; ++i) v[static_cast<size_t>(i)] = 100.0f;
  Histogram h(0.0, 100.0, 2048);
  h.Add(v, true);
  const double t = EntropyThreshold(h.counts(), h.bin_width(), 128);
  EXPECT_GT(t, 2.0);
  EXPECT_LT(t, 15.0);
}

TEST(ActivationCalibration, CollectorRangesContainZero) {
  for (auto m :
       {CalibrationMethod::kMinMax, CalibrationMethod::kPercentile, CalibrationMethod::kEntropy}) {
    CalibrationOptions o;
    o.method = m;
    RangeCollector c(o);
    const std::vector<float> pos = {1.0f, 2.0f, 3.0f, 4.0f};
    const std::vector<float> mixed = {-2.0f, -1.0f, 1.0f, 6.0f};
    c.ObserveFirstPass("pos", pos);
    c.ObserveFirstPass("mixed", mixed);
    if (c.NeedsSecondPass()) {
      c.StartSecondPass();
      c.ObserveSecondPass("pos", pos);
      c.ObserveSecondPass("mixed", mixed);
    }
    auto r = c.Ranges();
    EXPECT_EQ(r["pos"].min, 0.0f) << CalibrationMethodName(m);
    EXPECT_GT(r["pos"].max, 0.0f);
    EXPECT_LE(r["pos"].max, 4.0f);
    EXPECT_LT(r["mixed"].min, 0.0f);
    EXPECT_GE(r["mixed"].min, -2.0f);
    EXPECT_LE(r["mixed"].max, 6.0f);
    if (m == CalibrationMethod::kMinMax) {
      EXPECT_EQ(r["pos"].max, 4.0f);
      EXPECT_EQ(r["mixed"].min, -2.0f);
    }
  }
}

}  // namespace
}  // namespace tend::optimize
