// HealthMonitor: CUSUM warning/alarm over a score stream, its documented run lengths checked by
// simulation, and the adaptive baseline's guard rails.
#include "decide/health.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "decide/adaptive_baseline.h"

namespace tend {
namespace {

// Scores whose evidence is N(delta, 1) against the unit baseline: score = exp(z).
class Evidence {
 public:
  explicit Evidence(uint64_t seed) : rng_(seed) {}
  float Score(double delta) { return static_cast<float>(std::exp(delta + n_(rng_))); }

 private:
  std::mt19937_64 rng_;
  std::normal_distribution<double> n_;
};

HealthMonitor Make(double h_warning, double h_alarm, double alarm_z = 3.3, double k_alarm = 0) {
  HealthOptions o;
  o.h_warning = h_warning;
  o.h_alarm = h_alarm;
  o.alarm_z = alarm_z;
  o.k_alarm = k_alarm;
  auto m = HealthMonitor::Create(ScoreBaseline{0, 0, 1}, o);
  EXPECT_TRUE(m) << m.error().message;
  return std::move(*m);
}

// Mean events until the first alarm of a CUSUM with reference 0.5 (alarm_z 0, k_alarm 0.5: the
// textbook CUSUM), over `runs` independent runs.
double MeanRunLength(double h, double delta, int runs, uint64_t seed) {
  Evidence e(seed);
  double total = 0;
  for (int r = 0; r < runs; ++r) {
    HealthMonitor m = Make(1e9, h, 0.0, 0.5);
    int64_t t = 0;
    while (m.status().state != HealthState::kAlarm) {
      m.Update(e.Score(delta));
      ++t;
    }
    total += static_cast<double>(t);
  }
  return total / runs;
}

TEST(Health, ArlApproximationMatchesTheDocumentedFigures) {
  EXPECT_NEAR(HealthMonitor::ArlApprox(0.5, 8, 0), 19112, 10);  // warning
  EXPECT_NEAR(HealthMonitor::ArlApprox(0.5, 8, 1), 16.3, 0.1);
  EXPECT_NEAR(HealthMonitor::ArlApprox(0.5, 8, 2), 5.9, 0.1);
  EXPECT_GT(HealthMonitor::ArlApprox(3.3, 20, 0), 1e50);           // alarm, in control
  EXPECT_NEAR(HealthMonitor::ArlApprox(3.3, 20, 5.3), 10.5, 0.1);  // 2 sd above LOW
  EXPECT_NEAR(HealthMonitor::ArlApprox(3.3, 20, 7.3), 5.3, 0.1);   // 4 sd above LOW
}

// Siegmund's approximation against simulation (h = 5 keeps the in-control runs short: ARL0 ~
// 940). 300 runs give the mean to about +-6 % (run lengths are roughly exponential).
TEST(Health, SimulatedRunLengthsAgreeWithSiegmund) {
  const double arl0 = MeanRunLength(5, 0, 300, 1);
  EXPECT_NEAR(arl0 / HealthMonitor::ArlApprox(0.5, 5, 0), 1.0, 0.2) << arl0;
  const double arl1 = MeanRunLength(12, 1, 300, 2);
  EXPECT_NEAR(arl1 / HealthMonitor::ArlApprox(0.5, 12, 1), 1.0, 0.1) << arl1;
  const double arl2 = MeanRunLength(12, 2, 300, 3);
  EXPECT_NEAR(arl2 / HealthMonitor::ArlApprox(0.5, 12, 2), 1.0, 0.1) << arl2;
}

TEST(Health, StationaryScoresRaiseNothingInTenThousandEvents) {
  HealthMonitor m = Make(8, 20);
  Evidence e(7);
  int warnings = 0;
  for (int i = 0; i < 10000; ++i) warnings += m.Update(e.Score(0)).state != HealthState::kOk;
  EXPECT_EQ(warnings, 0);  // ARL0 of a warning is ~1.9e4 events
  EXPECT_NEAR(m.status().ewma, 0, 0.6);
}

// A shift that stays under the alert threshold (2 sd; LOW at 3.3 sd) warns and never alarms.
TEST(Health, ShiftBelowTheAlertThresholdWarnsButNeverAlarms) {
  HealthMonitor m = Make(8, 20);
  Evidence e(12);
  int64_t warned = -1, alarms = 0;
  for (int i = 0; i < 2000; ++i) {
    const HealthStatus& s = m.Update(e.Score(2));
    if (warned < 0 && s.state == HealthState::kWarning) warned = i;
    alarms += s.state == HealthState::kAlarm;
  }
  EXPECT_GE(warned, 0);
  EXPECT_LE(warned, 15);
  EXPECT_EQ(alarms, 0);
}

TEST(Health, WarningThenSustainedAlarmOnAShift) {
  HealthMonitor m = Make(8, 20);
  Evidence e(8);
  for (int i = 0; i < 200; ++i) m.Update(e.Score(0));
  int64_t warned = -1, alarmed = -1;
  for (int i = 0; i < 200; ++i) {
    const HealthStatus& s = m.Update(e.Score(6));  // 2.7 sd above LOW
    if (s.state == HealthState::kWarning && warned < 0) warned = i;
    if (s.state == HealthState::kAlarm && alarmed < 0) alarmed = i;
    if (alarmed >= 0) {
      EXPECT_EQ(s.state, HealthState::kAlarm) << "alarm must hold at " << i;
    }
  }
  ASSERT_GE(warned, 0);
  ASSERT_GT(alarmed, warned);
  EXPECT_LE(alarmed, 15);  // ARL ~8.4 for 2.7 sd above LOW
  EXPECT_GT(m.status().trend, -1);
  // Back to normal: the alarm holds until its evidence (capped at 2 h_alarm) is used up, then
  // clears: within about 2 h_alarm / (alarm_z + k_alarm) = 13 events.
  int64_t cleared = -1;
  for (int i = 0; i < 200 && cleared < 0; ++i) {
    if (m.Update(e.Score(0)).state != HealthState::kAlarm) cleared = i;
  }
  EXPECT_GT(cleared, 5);
  EXPECT_LT(cleared, 40);
  m.Reset();
  EXPECT_EQ(m.status().state, HealthState::kOk);
  EXPECT_EQ(m.status().events, 0);
}

TEST(Health, OneWildWindowCannotAlarmAloneAndFailSafesAddNothing) {
  HealthMonitor m = Make(8, 20);
  m.Update(1e30f);
  EXPECT_EQ(m.status().state, HealthState::kOk);
  EXPECT_NEAR(m.status().cusum, 4 - 0.5, 1e-9);  // clipped at 4
  EXPECT_NEAR(m.status().alarm_cusum, 4, 1e-9);
  m.Update(std::numeric_limits<float>::quiet_NaN());
  EXPECT_NEAR(m.status().cusum, 7, 1e-9);  // NaN counts as the clip
  EXPECT_NEAR(m.status().alarm_cusum, 8, 1e-9);
  EXPECT_NE(m.status().state, HealthState::kAlarm);
  const double before = m.status().cusum;
  for (int i = 0; i < 10; ++i) m.UpdateFailSafe();
  EXPECT_EQ(m.status().cusum, before);
  EXPECT_EQ(m.status().fail_safe, 10);
}

TEST(Health, BadOptionsAreErrorsNamingTheField) {
  HealthOptions o;
  o.h_alarm = -3;
  auto m = HealthMonitor::Create(ScoreBaseline{}, o);
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().message.find("h_alarm"), std::string::npos);
  m = HealthMonitor::Create(ScoreBaseline{0, 0, 0}, HealthOptions{});
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().message.find("log_sd"), std::string::npos);
}

// --- adaptive baseline ------------------------------------------------------------------------

// Two features around 0 with sd 1; the score is exp(|z| mean) so that the evidence follows how
// far a window sits from the baseline in use.
struct Toy {
  AdaptiveBaseline b;
  float Score(std::vector<float> x) const {
    b.Apply(x);  // what the served model would see
    const double z = 0.5 * (std::fabs(x[0]) + std::fabs(x[1]));
    return static_cast<float>(std::exp(z - 0.8));  // healthy z ~ |N(0,1)|: median ~0.67
  }
};

AdaptiveBaseline MakeBaseline(AdaptiveOptions o) {
  auto b = AdaptiveBaseline::Create({0, 0}, {1, 1}, ScoreBaseline{0, 0, 0.5}, o);
  EXPECT_TRUE(b) << b.error().message;
  return std::move(*b);
}

TEST(AdaptiveBaseline, AbsorbsSlowHealthyDriftUpToTheCap) {
  AdaptiveOptions o;
  o.rate = 0.01;
  o.commit_every = 50;
  o.max_shift_sd = 1.0;
  // The toy's healthy evidence spreads over about +-1.5 (its median is -0.26): a band of +-1
  // takes most healthy windows, which the estimate of a 0.6 sd move needs at this rate.
  o.accept_z = 1.0;
  Toy t{MakeBaseline(o)};
  std::mt19937_64 rng(5);
  std::normal_distribution<float> n;
  // Feature 0 drifts by 0.6 sd over 6,000 healthy windows, then stays. The baseline follows
  // with a lag (it learns only from the healthier windows, which sit nearer the baseline in use)
  // and catches up once the drift stops.
  float drift = 0;
  for (int i = 0; i < 10000; ++i) {
    drift = 0.6f * std::min(i, 6000) / 6000;
    std::vector<float> x = {drift + n(rng), n(rng)};
    t.b.Offer(x, t.Score(x), HealthState::kOk);
    if (i == 5999) {
      EXPECT_GT(t.b.mean()[0], 0.15);  // moving
      // Not ahead of the data by more than the average's noise (sqrt(0.01 / 2) = 0.07 sd).
      EXPECT_LT(t.b.mean()[0], 0.6 + 0.1);
    }
  }
  EXPECT_NEAR(t.b.mean()[0], 0.6, 0.15);
  EXPECT_NEAR(t.b.mean()[1], 0.0, 0.15);
  EXPECT_GT(t.b.step(), 5);
  const auto journal = t.b.Journal();
  ASSERT_FALSE(journal.empty());
  EXPECT_EQ(journal.back().step, t.b.step());
  EXPECT_EQ(journal.back().max_shift_feature, 0);
  // Apply: a window at the drifted mean reads as the anchor mean.
  std::vector<float> x = {t.b.mean()[0], 0};
  t.b.Apply(x);
  EXPECT_NEAR(x[0], 0, 1e-5);
  // Keep drifting to 3 sd: the baseline stops at the cap.
  for (int i = 0; i < 30000; ++i) {
    drift = 0.6f + 2.4f * i / 30000;
    std::vector<float> y = {drift + n(rng), n(rng)};
    t.b.Offer(y, t.Score(y), HealthState::kOk);
  }
  EXPECT_LE(t.b.MaxShiftSd(), 1.0 + 1e-6);
  EXPECT_NEAR(t.b.mean()[0], 1.0, 1e-5);
  EXPECT_GE(t.b.Journal().back().capped_features, 1);
}

TEST(AdaptiveBaseline, NeverLearnsWindowsOutsideNormalOrDuringAWarning) {
  AdaptiveOptions o;
  o.rate = 0.05;
  o.commit_every = 10;
  Toy t{MakeBaseline(o)};
  std::mt19937_64 rng(6);
  std::normal_distribution<float> n;
  int accepted = 0;
  for (int i = 0; i < 2000; ++i) {
    std::vector<float> fault = {4 + n(rng), 4 + n(rng)};  // a fault: every window far out
    accepted += t.b.Offer(fault, t.Score(fault), HealthState::kOk);
    std::vector<float> healthy = {n(rng), n(rng)};
    accepted += t.b.Offer(healthy, t.Score(healthy), HealthState::kWarning);
  }
  EXPECT_EQ(accepted, 0);
  EXPECT_EQ(t.b.step(), 0);
  EXPECT_EQ(t.b.MaxShiftSd(), 0);
}

TEST(AdaptiveBaseline, EveryStepIsReversible) {
  AdaptiveOptions o;
  o.rate = 0.05;
  o.commit_every = 20;
  o.journal_size = 3;
  Toy t{MakeBaseline(o)};
  std::mt19937_64 rng(9);
  std::normal_distribution<float> n;
  std::vector<std::vector<float>> means;
  for (int i = 0; i < 600; ++i) {
    std::vector<float> x = {0.3f + n(rng), -0.2f + n(rng)};
    if (t.b.Offer(x, t.Score(x), HealthState::kOk) && t.b.accepted() % 20 == 0) {
      means.push_back(t.b.mean());
    }
  }
  const int64_t last = t.b.step();
  ASSERT_GE(last, 4);
  ASSERT_TRUE(t.b.Revert(last - 1));
  EXPECT_EQ(t.b.mean(), means[static_cast<size_t>(last - 2)]);
  EXPECT_EQ(t.b.step(), last - 1);
  auto gone = t.b.Revert(last - 5);  // older than the 3 kept steps
  ASSERT_FALSE(gone);
  EXPECT_NE(gone.error().message.find("not in the journal"), std::string::npos);
  t.b.RevertToAnchor();
  EXPECT_EQ(t.b.mean(), (std::vector<float>{0, 0}));
  EXPECT_EQ(t.b.step(), 0);
  EXPECT_TRUE(t.b.Journal().empty());
}

// The trend is kept as running sums (O(1) per event); it must equal the least-squares slope of
// the clipped evidence over the last trend_window events computed directly, while the ring fills
// and across many turns of it (a ramp, then noise, then a step, with clipped values).
TEST(HealthMonitorTest, RunningTrendEqualsADirectFitOverTheLastWindow) {
  HealthMonitor m = Make(8, 20);
  const int w = m.options().trend_window;
  const double clip = m.options().clip;
  Evidence e(21);
  std::vector<double> x;  // the evidence fed so far (unit baseline: z = ln score)
  for (int i = 0; i < 1000; ++i) {
    const double delta = i < 300 ? 0.01 * i : i < 700 ? 0 : 5;
    const float score = e.Score(delta);
    x.push_back(std::clamp(std::log(static_cast<double>(score)), -clip, clip));
    const double got = m.Update(score).trend;
    const size_t n = std::min<size_t>(x.size(), static_cast<size_t>(w));
    if (n < 3) continue;
    double st = 0, sx = 0, stt = 0, stx = 0;
    for (size_t k = 0; k < n; ++k) {
      const double t = static_cast<double>(k), v = x[x.size() - n + k];
      st += t;
      sx += v;
      stt += t * t;
      stx += t * v;
    }
    const double nn = static_cast<double>(n);
    const double want = 100.0 * (nn * stx - st * sx) / (nn * stt - st * st);
    ASSERT_NEAR(got, want, 1e-9 * std::max(1.0, std::fabs(want))) << "event " << i;
  }
}

}  // namespace
}  // namespace tend
