#include "decide/decider.h"

#include <gtest/gtest.h>

#include <limits>

namespace tend {
namespace {

Decision Score(Decider& d, float score) {
  Decision x;
  x.anomaly_score = score;
  d.Decide(x);
  return x;
}

TEST(Decider, TiersFollowThresholds) {
  Decider d({1, 2, 3}, {1, 1});
  EXPECT_EQ(Score(d, 0.5f).severity, Severity::kNone);  // below every threshold: no tier
  EXPECT_STREQ(SeverityName(Score(d, 0.5f).severity), "NONE");
  EXPECT_FALSE(Score(d, 0.5f).is_alert);
  EXPECT_EQ(Score(d, 1.0f).severity, Severity::kLow);
  EXPECT_TRUE(Score(d, 1.0f).is_alert);
  EXPECT_EQ(Score(d, 2.5f).severity, Severity::kMedium);
  EXPECT_EQ(Score(d, 3.0f).severity, Severity::kHigh);
  auto nan = Score(d, std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan.severity, Severity::kHigh);
  EXPECT_TRUE(nan.is_alert);
}

TEST(Decider, DebounceNeedsKOfN) {
  Decider d({1, 2, 3}, {2, 3});
  EXPECT_FALSE(Score(d, 5).is_alert);   // 1 of 3: a single odd stroke
  EXPECT_FALSE(Score(d, 0).is_alert);
  EXPECT_FALSE(Score(d, 0).is_alert);
  EXPECT_FALSE(Score(d, 5).is_alert);   // history: 0 0 1
  EXPECT_TRUE(Score(d, 5).is_alert);    // 0 1 1 -> 2 of 3
  EXPECT_FALSE(Score(d, 0).is_alert);   // below threshold: never an alert itself
  EXPECT_TRUE(Score(d, 5).is_alert);    // 1 0 1
  EXPECT_FALSE(Score(d, 0).is_alert);
  EXPECT_FALSE(Score(d, 0).is_alert);
  EXPECT_FALSE(Score(d, 5).is_alert);   // 0 0 1
}

TEST(Decider, FailSafeIsNeverDebounced) {
  Decider d({1, 2, 3}, {3, 3});
  Decision x;
  d.DecideFailSafe(x, true, Severity::kHigh);
  EXPECT_TRUE(x.fail_safe);
  EXPECT_TRUE(x.is_alert);
  EXPECT_EQ(x.severity, Severity::kHigh);
  Decision pass;
  d.DecideFailSafe(pass, false, Severity::kHigh);
  EXPECT_FALSE(pass.is_alert);
  EXPECT_EQ(pass.severity, Severity::kNone);  // a fail-safe "go" has no alert tier
}

TEST(Decider, Validation) {
  EXPECT_FALSE((SeverityThresholds{3, 2, 1}.Validate()));
  EXPECT_TRUE((SeverityThresholds{1, 2, 3}.Validate()));
  EXPECT_FALSE((DebounceOptions{4, 3}.Validate()));
  EXPECT_FALSE((DebounceOptions{0, 3}.Validate()));
}

}  // namespace
}  // namespace tend
