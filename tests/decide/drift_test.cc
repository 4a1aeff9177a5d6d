// Drift and input-health monitors on real feature vectors (dsp's extractor over a synthetic
// two-channel machine: shaft tones, a resonance and noise): a flat-lined channel, a 20 % gain
// change and a slow ramp each raise the right signal within a stated number of events, and a
// stationary input raises none.
#include "decide/drift.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <random>

#include "dsp/features.h"

namespace tend {
namespace {

constexpr double kRate = 10000;
constexpr int kWindow = 2000;

class Machine {
 public:
  explicit Machine(uint64_t seed) : rng_(seed) {}
  // Planar window of both channels; `gain` scales channel 0 and 1, `flat` freezes channel 1.
  std::vector<float> Window(double gain, bool flat = false) {
    std::vector<float> x(2 * kWindow);
    std::uniform_real_distribution<double> phase(0, 2 * M_PI);
    const double p1 = phase(rng_), p2 = phase(rng_);
    for (int c = 0; c < 2; ++c) {
      for (int i = 0; i < kWindow; ++i) {
        const double t = i / kRate;
        double v = 0.5 * std::sin(2 * M_PI * 29.5 * t + p1) +
                   0.2 * std::sin(2 * M_PI * 1180 * t + p2) + 0.1 * noise_(rng_);
        if (c == 1) v *= 0.7;
        x[static_cast<size_t>(c * kWindow + i)] = static_cast<float>(gain * v);
      }
    }
    if (flat) std::fill(x.begin() + kWindow, x.end(), 0.0123f);
    return x;
  }

 private:
  std::mt19937_64 rng_;
  std::normal_distribution<double> noise_;
};

class DriftTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_ = dsp::FeatureSpec::DefaultVibration(kRate, 2, kWindow);
    auto fx = dsp::FeatureExtractor::Create(spec_);
    ASSERT_TRUE(fx) << fx.error().message;
    fx_ = std::move(*fx);
    // Commissioning: 1,000 windows. Deciles from fewer rows are themselves noisy: the chance
    // level is subtracted (drift.h), but its spread stays, and with 76 features the largest
    // chance PSI comes near 0.1 when the reference has only a few hundred rows.
    std::vector<float> rows;
    for (int i = 0; i < 1000; ++i) {
      auto f = Features(machine_.Window(1.0));
      rows.insert(rows.end(), f.begin(), f.end());
    }
    auto ref = DriftReference::FromRows(rows, spec_.Size());
    ASSERT_TRUE(ref) << ref.error().message;
    auto m = DriftMonitor::Create(*ref, DriftOptions{});
    ASSERT_TRUE(m) << m.error().message;
    monitor_.emplace(std::move(*m));
    auto h = InputHealth::Create(2, kRate, {0.4f, 0.28f}, InputHealthOptions{});
    ASSERT_TRUE(h) << h.error().message;
    input_.emplace(std::move(*h));
  }

  std::vector<float> Features(const std::vector<float>& w) {
    std::vector<float> f(spec_.Size());
    EXPECT_TRUE(fx_->Compute(w, f));
    return f;
  }

  // Feeds `n` windows from gen(i); returns the first event (0-based) at which the drift level
  // reached `level`, or -1.
  template <typename Gen>
  int Feed(int n, DriftLevel level, Gen gen) {
    int first = -1;
    for (int i = 0; i < n; ++i) {
      const auto w = gen(i);
      input_->Observe(w);
      monitor_->Observe(Features(w));
      if (first < 0 && monitor_->Level() >= level) first = i;
    }
    return first;
  }

  std::string TopFeature() const {
    return spec_.FeatureNames()[static_cast<size_t>(monitor_->Top()[0].feature)];
  }

  dsp::FeatureSpec spec_;
  std::unique_ptr<dsp::FeatureExtractor> fx_;
  Machine machine_{11};
  std::optional<DriftMonitor> monitor_;
  std::optional<InputHealth> input_;
};

TEST_F(DriftTest, StationaryInputRaisesNothing) {
  float worst = 0;
  for (int i = 0; i < 1500; ++i) {
    const auto w = machine_.Window(1.0);
    EXPECT_EQ(input_->Observe(w).problems, kInputOk) << i;
    monitor_->Observe(Features(w));
    EXPECT_EQ(monitor_->Level(), DriftLevel::kNone)
        << i << " " << TopFeature() << " PSI " << monitor_->Top()[0].psi;
    if (monitor_->ready()) worst = std::max(worst, monitor_->Top()[0].psi);
  }
  std::printf("  stationary: largest PSI over 1500 events %.3f (warn 0.1)\n", worst);
  EXPECT_EQ(input_->status().flat_windows + input_->status().clipped_windows, 0);
}

TEST_F(DriftTest, GainChangeOfTwentyPercentAlertsWithin200Events) {
  Feed(360, DriftLevel::kAlert, [&](int) { return machine_.Window(1.0); });
  ASSERT_EQ(monitor_->Level(), DriftLevel::kNone);
  const int warned = Feed(400, DriftLevel::kWarn, [&](int) { return machine_.Window(1.2); });
  std::printf("  +20 %% gain: warn after %d events, top feature %s PSI %.2f\n", warned,
              TopFeature().c_str(), monitor_->Top()[0].psi);
  ASSERT_GE(warned, 0);
  EXPECT_LE(warned, 100);
  EXPECT_EQ(monitor_->Level(), DriftLevel::kAlert);
  EXPECT_EQ(input_->status().flat_windows, 0);  // a gain change is not an input fault
}

TEST_F(DriftTest, GainChangeAlertsWithinTheStatedEvents) {
  Feed(360, DriftLevel::kAlert, [&](int) { return machine_.Window(1.0); });
  const int alerted = Feed(400, DriftLevel::kAlert, [&](int) { return machine_.Window(1.2); });
  std::printf("  +20 %% gain: alert after %d events\n", alerted);
  ASSERT_GE(alerted, 0);
  EXPECT_LE(alerted, 200);
  // What moved is the level: rms, band energies, not the shape.
  EXPECT_TRUE(TopFeature().find("band_") != std::string::npos ||
              TopFeature().find("rms") != std::string::npos ||
              TopFeature().find("std") != std::string::npos ||
              TopFeature().find("peak") != std::string::npos)
      << TopFeature();
  for (int k = 0; k < monitor_->CountAtLeast(DriftLevel::kAlert) && k < 5; ++k) {
    EXPECT_EQ(TopFeature().find("kurtosis"), std::string::npos);
  }
}

TEST_F(DriftTest, FlatLinedChannelIsFlaggedWithinThreeWindowsAndDrifts) {
  Feed(360, DriftLevel::kAlert, [&](int) { return machine_.Window(1.0); });
  int flagged = -1;
  for (int i = 0; i < 200 && flagged < 0; ++i) {
    const auto w = machine_.Window(1.0, /*flat=*/true);
    if (input_->Observe(w).problems & kFlatLine) flagged = i;
    monitor_->Observe(Features(w));
  }
  EXPECT_EQ(flagged, 2);  // flat_windows = 3 in a row
  EXPECT_EQ(input_->status().flat_channel, 1);
  const int alerted =
      Feed(200, DriftLevel::kAlert, [&](int) { return machine_.Window(1.0, /*flat=*/true); });
  ASSERT_GE(alerted, 0);
  std::printf("  flat channel: input health after 3 windows, drift alert after %d more (%s)\n",
              alerted + flagged + 1, TopFeature().c_str());
  EXPECT_EQ(TopFeature().rfind("ch1.", 0), 0u) << TopFeature();
}

TEST_F(DriftTest, SlowRampWarnsBeforeItAlerts) {
  Feed(360, DriftLevel::kAlert, [&](int) { return machine_.Window(1.0); });
  // Gain 1.0 -> 1.5 over 3,000 events.
  int warn = -1, alert = -1;
  for (int i = 0; i < 3000; ++i) {
    const auto w = machine_.Window(1.0 + 0.5 * i / 3000.0);
    monitor_->Observe(Features(w));
    if (warn < 0 && monitor_->Level() >= DriftLevel::kWarn) warn = i;
    if (alert < 0 && monitor_->Level() >= DriftLevel::kAlert) alert = i;
  }
  std::printf(
      "  ramp 1.0 -> 1.5 over 3000 events: warn at %d (gain %.3f), alert at %d (gain %.3f)\n", warn,
      1 + 0.5 * warn / 3000.0, alert, 1 + 0.5 * alert / 3000.0);
  ASSERT_GE(warn, 0);
  ASSERT_GT(alert, warn);
  EXPECT_LE(warn, 1200);   // by a gain of 1.2
  EXPECT_LE(alert, 1800);  // by a gain of 1.3
}

TEST(InputHealth, ClippingNonFiniteAndRateGlitch) {
  auto h = InputHealth::Create(1, 1000, {}, InputHealthOptions{});
  ASSERT_TRUE(h);
  std::vector<float> x(1000);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.05 * i);
  EXPECT_EQ(h->Observe(x).problems, kInputOk);
  for (float& v : x) v = std::clamp(1.5f * v, -1.0f, 1.0f);  // rides the rails
  EXPECT_EQ(h->Observe(x).problems, kClipping);
  x[10] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(h->Observe(x).problems & kNonFinite);
  EXPECT_EQ(h->status().non_finite_samples, 1);
  EXPECT_EQ(h->ObserveTiming(1000, 1.0).problems & kRateGlitch, 0u);
  EXPECT_TRUE(h->ObserveTiming(900, 1.0).problems & kRateGlitch);
  EXPECT_EQ(InputProblemNames(kClipping | kRateGlitch), "clipping,rate_glitch");
}

// Input health takes one vectorised pass over a window. Against the definitions computed
// plainly here (extremes, how many samples sit at them, the std of the finite samples), on
// windows of lengths that are and are not multiples of the vector width, with the extreme value
// repeated at random places (the tail included), a large DC offset under a tiny noise (flat
// for its reference std), and NaN/Inf samples.
TEST(InputHealth, OnePassAgreesWithThePlainDefinitions) {
  std::mt19937 rng(11);
  std::normal_distribution<float> g(0, 1);
  std::uniform_int_distribution<int> pick(0, 1 << 20);
  InputHealthOptions o;
  o.flat_windows = 1;
  for (size_t n : {7u, 8u, 13u, 128u, 129u, 1000u, 2001u}) {
    for (int trial = 0; trial < 60; ++trial) {
      const float offset = trial % 3 == 0 ? 9.81f : 0.0f;
      const float scale = trial % 5 == 0 ? 1e-5f : 1.0f;
      std::vector<float> x(n);
      for (float& v : x) v = offset + scale * g(rng);
      const int repeats = trial % 7;  // 0..6 more samples at the rail
      const float rail =
          trial % 2 ? *std::max_element(x.begin(), x.end()) : *std::min_element(x.begin(), x.end());
      for (int r = 0; r < repeats; ++r) x[static_cast<size_t>(pick(rng)) % n] = rail;
      if (trial % 11 == 0) x[static_cast<size_t>(pick(rng)) % n] = std::nanf("");
      if (trial % 13 == 0) x[n - 1] = std::numeric_limits<float>::infinity();
      // The plain definitions.
      std::vector<float> fin;
      for (float v : x) {
        if (std::isfinite(v)) fin.push_back(v);
      }
      uint32_t want = fin.size() < x.size() ? kNonFinite : kInputOk;
      if (fin.size() >= 2) {
        const float hi = *std::max_element(fin.begin(), fin.end());
        const float lo = *std::min_element(fin.begin(), fin.end());
        const auto at_hi = std::count(fin.begin(), fin.end(), hi);
        const auto at_lo = std::count(fin.begin(), fin.end(), lo);
        double mean = 0, var = 0;
        for (float v : fin) mean += v;
        mean /= static_cast<double>(fin.size());
        for (float v : fin) var += (v - mean) * (v - mean);
        const double sd = std::sqrt(var / static_cast<double>(fin.size()));
        if (hi == lo || sd <= o.flat_rel * 0.5) want |= kFlatLine;
        if (hi > lo && std::max(at_hi, at_lo) >= o.clip_samples) want |= kClipping;
      }
      auto h = InputHealth::Create(1, 1000, {0.5f}, o);
      ASSERT_TRUE(h);
      EXPECT_EQ(InputProblemNames(h->Observe(x).problems), InputProblemNames(want))
          << "n " << n << " trial " << trial;
    }
  }
}

// Once the window is full the monitor updates only the two PSI terms an event moves. After 2.5
// windows of a drifting stream it must report what a fresh monitor computes from scratch over
// the same last window of events.
TEST(DriftMonitorTest, RunningPsiEqualsARecomputeOverTheSameWindow) {
  constexpr size_t kF = 4;
  std::mt19937 rng(7);
  std::normal_distribution<float> g(0, 1);
  std::vector<float> ref_rows(500 * kF);
  for (auto& v : ref_rows) v = g(rng);
  auto ref = DriftReference::FromRows(ref_rows, kF);
  ASSERT_TRUE(ref);
  DriftOptions o;
  o.window = 200;
  o.min_events = 200;
  auto running = DriftMonitor::Create(*ref, o);
  ASSERT_TRUE(running);
  std::vector<std::vector<float>> events;
  for (int e = 0; e < 500; ++e) {  // 2.5 windows; the gain and offset drift as it goes
    std::vector<float> x(kF);
    for (size_t j = 0; j < kF; ++j) x[j] = g(rng) * (1 + 0.002f * e) + 0.001f * e * float(j);
    running->Observe(x);
    events.push_back(x);
  }
  auto fresh = DriftMonitor::Create(*ref, o);
  ASSERT_TRUE(fresh);
  for (size_t e = events.size() - 200; e < events.size(); ++e) fresh->Observe(events[e]);
  EXPECT_GT(running->Psi(3), 0.1f);  // the stream did drift
  for (size_t j = 0; j < kF; ++j) EXPECT_NEAR(running->Psi(j), fresh->Psi(j), 1e-6) << j;
  EXPECT_EQ(running->Level(), fresh->Level());
}

TEST(DriftReference, DecilesAndErrors) {
  std::vector<float> rows(100);
  for (int i = 0; i < 100; ++i) rows[static_cast<size_t>(i)] = static_cast<float>(i);
  auto r = DriftReference::FromRows(rows, 1);
  ASSERT_TRUE(r);
  EXPECT_NEAR(r->deciles[0][0], 9.9, 1e-5);  // numpy.quantile(range(100), 0.1)
  EXPECT_NEAR(r->deciles[0][8], 89.1, 1e-4);
  EXPECT_FALSE(DriftReference::FromRows(std::span(rows).first(5), 1));
  rows[3] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(DriftReference::FromRows(rows, 1));
  DriftOptions o;
  o.alert = 0.05;
  EXPECT_FALSE(o.Validate());
}

}  // namespace
}  // namespace tend
