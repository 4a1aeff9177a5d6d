// What the monitors read from a model card: the score baseline, health options and the feature
// reference (strict: errors name the problem).
#include "agent/monitors.h"

#include <gtest/gtest.h>

#include <cmath>

namespace tend::agent {
namespace {

detect::ModelCard Card() {
  detect::ModelCard c;
  c.feature_names = {"ch0.rms", "ch0.kurtosis"};
  c.thresholds = {20, 40, 80};
  c.calibration = {{"log_offset", 1e-6}, {"log_mean", std::log(5.0)}, {"log_sd", 0.5}};
  return c;
}

TEST(Monitors, ScoreBaselineAndAlarmLevelFromTheCalibration) {
  auto b = ScoreBaselineOf(Card());
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_NEAR(b->Z(5.0f), 0, 1e-6);
  auto o = HealthOptionsFor(Card());
  ASSERT_TRUE(o);
  EXPECT_NEAR(o->alarm_z, std::log(20.0 / 5.0) / 0.5, 1e-6);  // Z(LOW)
  detect::ModelCard c = Card();
  c.calibration.erase("log_sd");
  auto bad = ScoreBaselineOf(c);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("'log_sd' is missing"), std::string::npos);
}

TEST(Monitors, FeatureReferenceRoundTripsThroughTheCard) {
  std::vector<float> rows;
  for (int i = 0; i < 50; ++i) {
    rows.push_back(float(i));
    rows.push_back(float(i % 5));
  }
  auto ref = DriftReference::FromRows(rows, 2);
  ASSERT_TRUE(ref);
  detect::ModelCard c = Card();
  c.feature_reference = nlohmann::json::parse(FeatureReferenceJson(*ref).dump());
  auto back = FeatureReferenceOf(c);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->deciles, ref->deciles);
  EXPECT_EQ(back->shares, ref->shares);
  EXPECT_EQ(back->rows, 50);
}

TEST(Monitors, FeatureReferenceErrorsNameTheProblem) {
  detect::ModelCard c = Card();
  auto r = FeatureReferenceOf(c);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("has no feature reference"), std::string::npos);
  auto expect = [](const nlohmann::json& j, const char* part) {
    auto p = ParseFeatureReference(j, 1);
    ASSERT_FALSE(p) << j.dump();
    EXPECT_NE(p.error().message.find(part), std::string::npos) << p.error().message;
  };
  const nlohmann::json d = {{1, 2, 3, 4, 5, 6, 7, 8, 9}};
  const nlohmann::json q = {{0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1}};
  expect({{"rows", 10}, {"deciles", d}, {"shares", q}, {"x", 1}}, "unknown key 'x'");
  expect({{"rows", "ten"}, {"deciles", d}, {"shares", q}}, "'rows' must be an integer");
  expect({{"rows", 10}, {"deciles", {{1, 2}}}, {"shares", q}},
         "'deciles'[0] must be an array of 9");
  expect({{"rows", 10}, {"deciles", d}, {"shares", nlohmann::json::array()}},
         "'shares' must list 1");
  expect({{"rows", 10}, {"deciles", {{9, 8, 7, 6, 5, 4, 3, 2, 1}}}, {"shares", q}}, "ascending");
  expect({{"rows", 10}, {"deciles", d}, {"shares", {{0.5, 0.5, 0.5, 0, 0, 0, 0, 0, 0, 0}}}},
         "sum to");
  EXPECT_TRUE(ParseFeatureReference({{"rows", 10}, {"deciles", d}, {"shares", q}}, 1));
}

}  // namespace
}  // namespace tend::agent
