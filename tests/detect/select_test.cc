// Detector selection: forward validation on normal data only, AUC with anomalies, and the
// geometric-mean clip score.
#include "detect/select.h"

#include <gtest/gtest.h>

#include <cmath>

#include "test_util.h"

namespace tend::detect {
namespace {

using testing::Names;
using testing::StandardGaussian;

// 12 band features: on stationary data every candidate holds and the first in preference order
// is kept.
TEST(SelectTest, StationaryNormalKeepsTheFirstPreference) {
  const Matrix x = StandardGaussian(400, 12, 1);
  SelectOptions o;
  auto s = SelectDetector({&x, {}}, nullptr, Names(12, "ch0.band_"), o);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->detector, "mahalanobis");
  EXPECT_EQ(s->report["rows"]["fit"], 200);
  EXPECT_EQ(s->report["candidates"].size(), 3u);
  EXPECT_NE(s->reason.find("holds on the last 100 normal windows"), std::string::npos) << s->reason;
  o.candidates = {"broadband", "mahalanobis"};
  s = SelectDetector({&x, {}}, nullptr, Names(12, "ch0.band_"), o);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->detector, "broadband");
}

// One band moves late in commissioning (a resonance shifting with temperature into it):
// mahalanobis' thresholds do not hold on the later windows, the median over bands does.
TEST(SelectTest, DriftInOneBandMovesTheChoiceToBroadband) {
  Matrix x = StandardGaussian(400, 12, 2);
  for (int r = 300; r < 400; ++r) x(r, 3) += 6.0f;
  auto s = SelectDetector({&x, {}}, nullptr, Names(12, "ch0.band_"), SelectOptions{});
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->detector, "broadband") << s->report.dump();
  EXPECT_GT(s->report["candidates"][0]["later_windows_over_low"].get<int>(), kMaxHeldOutAlerts);
}

TEST(SelectTest, AnomaliesDecideByAucPerClip) {
  const Matrix x = StandardGaussian(120, 12, 3);
  Matrix a = StandardGaussian(60, 12, 4);
  a.col(5).array() += 6.0f;  // one band: broadband is blind to it, mahalanobis is not
  std::vector<int> nclip(120), aclip(60);
  for (int i = 0; i < 120; ++i) nclip[i] = i / 6;
  for (int i = 0; i < 60; ++i) aclip[i] = i / 6;
  SelectOptions o;
  o.candidates = {"broadband", "mahalanobis"};
  const Rows anomalous{&a, aclip};
  auto s = SelectDetector({&x, nclip}, &anomalous, Names(12, "ch0.band_"), o);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->detector, "mahalanobis");
  EXPECT_TRUE(s->report["per_clip"].get<bool>());
  EXPECT_GT(s->report["candidates"][1]["auc"].get<double>(), 0.99);
  EXPECT_NE(s->reason.find("per-clip"), std::string::npos);
}

TEST(SelectTest, TooFewRowsKeepTheFirstAndSaySo) {
  const Matrix x = StandardGaussian(20, 4, 5);
  auto s = SelectDetector({&x, {}}, nullptr, Names(4, "ch0.band_"), SelectOptions{});
  ASSERT_TRUE(s);
  EXPECT_EQ(s->detector, "mahalanobis");
  EXPECT_NE(s->reason.find("too few"), std::string::npos);
}

TEST(SelectTest, CandidatesThatCannotTrainAreSkippedWithTheReason) {
  const Matrix x = StandardGaussian(200, 5, 6);
  SelectOptions o;
  o.candidates = {"broadband", "mahalanobis"};
  auto s = SelectDetector({&x, {}}, nullptr, Names(5, "f"), o);  // no band features
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->detector, "mahalanobis");
  EXPECT_NE(s->report["candidates"][0]["skipped"].get<std::string>().find("band-energy"),
            std::string::npos);
  o.candidates = {"nonsense"};
  EXPECT_FALSE(SelectDetector({&x, {}}, nullptr, Names(5, "f"), o));
}

TEST(SelectTest, ClipScoreIsTheGeometricMean) {
  EXPECT_NEAR(ClipScore({1, 100}), 10, 1e-3);
  EXPECT_NEAR(ClipScore({5}), 5, 1e-9);
  EXPECT_NEAR(ClipScore({0, 0}), 0, 1e-12);
  EXPECT_EQ(ClipScore({}), 0);
}

}  // namespace
}  // namespace tend::detect
