#include "detect/calibrate.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "detect/stats.h"

namespace tend::detect {
namespace {

std::vector<double> LogNormal(int m, double mu, double sigma, std::mt19937_64& rng) {
  std::normal_distribution<double> nd(mu, sigma);
  std::vector<double> s(m);
  for (auto& v : s) v = std::exp(nd(rng));
  return s;
}

TEST(CalibrateTest, LargeLogNormalSampleRecoversTheTrueQuantiles) {
  std::mt19937_64 rng(7);
  const double mu = 1.0, sigma = 0.5;
  auto cal = CalibrateThresholds(LogNormal(20000, mu, sigma, rng));
  ASSERT_TRUE(cal) << cal.error().message;
  // With m large the prediction bound tends to the true quantile exp(mu + z_p sigma)
  // (tolerances ~3.5 standard errors of the estimate at m = 20,000).
  const auto& fitted = cal->report["fitted"];
  EXPECT_NEAR(std::log(fitted["low"].get<double>()), mu + sigma * NormalUpperQuantile(1e-3), 0.03);
  EXPECT_NEAR(std::log(fitted["medium"].get<double>()), mu + sigma * NormalUpperQuantile(1e-5),
              0.04);
  EXPECT_NEAR(std::log(fitted["high"].get<double>()), mu + sigma * NormalUpperQuantile(1e-7), 0.05);
  // 20,000 windows reach past the 1e-3 quantile: LOW is then the held-out maximum.
  EXPECT_TRUE(cal->report["clamped_to_holdout_max"].get<bool>());
  EXPECT_GE(cal->thresholds.low, cal->report["holdout_scores"]["max"].get<double>());
  EXPECT_EQ(cal->report["n_holdout"], 20000);
  EXPECT_EQ(cal->report["rule"], "lognormal-prediction");
}

// The point of the prediction bound: averaged over many small held-out sets, the false-alarm
// probability at LOW stays at the 1e-3 target instead of the several times more that plugging
// the estimated mean and sd into the normal quantile gives.
TEST(CalibrateTest, ExpectedFalseAlarmRateAtLowMeetsTargetWithTenWindows) {
  std::mt19937_64 rng(11);
  const double mu = 0.3, sigma = 0.8;
  const int trials = 4000, m = 10;
  double fa_rule = 0, fa_plugin = 0;
  for (int t = 0; t < trials; ++t) {
    auto s = LogNormal(m, mu, sigma, rng);
    auto cal = CalibrateThresholds(s);
    ASSERT_TRUE(cal);
    // Exact tail probability of the true distribution above the threshold.
    auto tail = [&](double thr) {
      return 0.5 * std::erfc((std::log(thr) - mu) / sigma / std::sqrt(2.0));
    };
    fa_rule += tail(cal->thresholds.low);
    const double y_bar = cal->report["log_mean"], sd = cal->report["log_sd"];
    fa_plugin += tail(std::exp(y_bar + NormalUpperQuantile(1e-3) * sd));
  }
  fa_rule /= trials;
  fa_plugin /= trials;
  EXPECT_LT(fa_rule, 1.5e-3);
  EXPECT_GT(fa_rule, 3e-4);  // not absurdly conservative either
  EXPECT_GT(fa_plugin, 2 * fa_rule);
}

TEST(CalibrateTest, LowIsNeverBelowTheLargestHeldOutScore) {
  // 19 quiet windows and one loud one: the fit puts LOW near 30, below the loud window.
  std::vector<double> s(19, 1.0);
  s.push_back(50.0);
  auto cal = CalibrateThresholds(s);
  ASSERT_TRUE(cal);
  EXPECT_GT(cal->thresholds.low, 50.0f);
  EXPECT_LT(cal->thresholds.low, 50.01f);
  EXPECT_GT(cal->thresholds.medium, cal->thresholds.low);
  EXPECT_GT(cal->thresholds.high, cal->thresholds.medium);
  EXPECT_EQ(cal->report["holdout_over_low"], 0);
  EXPECT_TRUE(cal->report["clamped_to_holdout_max"].get<bool>());
  EXPECT_LT(cal->report["fitted"]["low"].get<double>(), 50.0);
}

TEST(CalibrateTest, ThresholdsOrderedAndAboveEveryHeldOutScore) {
  std::mt19937_64 rng(3);
  for (int m : {8, 12, 30, 200}) {
    auto s = LogNormal(m, 2.0, 0.3, rng);
    auto cal = CalibrateThresholds(s);
    ASSERT_TRUE(cal) << m;
    EXPECT_TRUE(cal->thresholds.Validate());
    EXPECT_LT(cal->thresholds.low, cal->thresholds.medium);
    EXPECT_LT(cal->thresholds.medium, cal->thresholds.high);
    for (double v : s) EXPECT_LT(v, cal->thresholds.low);
  }
}

TEST(CalibrateTest, DegenerateScoresStillGiveOrderedThresholds) {
  auto same = CalibrateThresholds(std::vector<double>(10, 3.0));
  ASSERT_TRUE(same);
  EXPECT_TRUE(same->report["log_sd_floored"].get<bool>());
  EXPECT_GT(same->thresholds.low, 3.0f);
  EXPECT_LT(same->thresholds.low, same->thresholds.medium);
  auto zeros = CalibrateThresholds(std::vector<double>(10, 0.0));
  ASSERT_TRUE(zeros);
  EXPECT_GT(zeros->thresholds.low, 0.0f);
  EXPECT_TRUE(zeros->thresholds.Validate());
}

TEST(CalibrateTest, BadInputIsAClearError) {
  auto few = CalibrateThresholds(std::vector<double>(7, 1.0));
  ASSERT_FALSE(few);
  EXPECT_NE(few.error().message.find("at least 8"), std::string::npos) << few.error().message;
  std::vector<double> s(10, 1.0);
  s[4] = std::nan("");
  auto nan = CalibrateThresholds(s);
  ASSERT_FALSE(nan);
  EXPECT_NE(nan.error().message.find("window 4"), std::string::npos) << nan.error().message;
  s[4] = -1;
  EXPECT_FALSE(CalibrateThresholds(s));
  CalibrationTargets bad;
  bad.medium = 1e-2;
  EXPECT_FALSE(CalibrateThresholds(std::vector<double>(10, 1.0), bad));
}

}  // namespace
}  // namespace tend::detect
