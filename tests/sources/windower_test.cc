#include "sources/windower.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <random>
#include <vector>

#include "sources/source.h"

namespace tend::sources {
namespace {

struct Captured {
  int64_t index, start_frame;
  double t_start_s;
  std::vector<float> samples;
};

// Pushes `x` (interleaved) in pieces whose sizes come from `sizes` (cycled).
std::vector<Captured> PushAll(Windower& w, const std::vector<float>& x, int channels,
                              const std::vector<size_t>& sizes) {
  std::vector<Captured> out;
  auto emit = [&](const WindowView& v) {
    out.push_back({v.index, v.start_frame, v.t_start_s, {v.samples.begin(), v.samples.end()}});
  };
  const size_t frames = x.size() / channels;
  size_t at = 0, k = 0;
  while (at < frames) {
    const size_t n = std::min(sizes[k++ % sizes.size()], frames - at);
    w.Push(std::span<const float>(x.data() + at * channels, n * channels), n, emit);
    at += n;
  }
  return out;
}

// Frame f, channel c holds f * 10 + c: every sample says where it came from.
std::vector<float> Ramp(int frames, int channels) {
  std::vector<float> x(static_cast<size_t>(frames) * channels);
  for (int f = 0; f < frames; ++f) {
    for (int c = 0; c < channels; ++c) x[f * channels + c] = float(f * 10 + c);
  }
  return x;
}

void ExpectFixed(const std::vector<Captured>& got, int frames, int channels, int len, int hop,
                 double fs) {
  const int want = frames < len ? 0 : (frames - len) / hop + 1;
  ASSERT_EQ(int(got.size()), want);
  for (int i = 0; i < want; ++i) {
    const Captured& w = got[i];
    EXPECT_EQ(w.index, i);
    EXPECT_EQ(w.start_frame, int64_t(i) * hop);
    EXPECT_DOUBLE_EQ(w.t_start_s, double(i) * hop / fs);
    ASSERT_EQ(int(w.samples.size()), channels * len);
    for (int c = 0; c < channels; ++c) {
      for (int j = 0; j < len; ++j) {
        ASSERT_EQ(w.samples[c * len + j], float((w.start_frame + j) * 10 + c))
            << "window " << i << " channel " << c << " sample " << j;
      }
    }
  }
}

TEST(FixedWindowerTest, CountsHopsAndPlanarLayoutAcrossPushBoundaries) {
  struct Case {
    int channels, len, hop;
  };
  const int frames = 1000;
  for (const Case& c : {Case{1, 100, 100}, Case{2, 100, 25}, Case{3, 64, 1}, Case{2, 50, 120},
                        Case{1, 1000, 10}, Case{1, 1001, 10}}) {
    const auto x = Ramp(frames, c.channels);
    for (const auto& sizes : std::vector<std::vector<size_t>>{{1}, {7, 3, 250}, {frames}, {99}}) {
      auto w = MakeFixedWindower(c.channels, 100, c.len, c.hop);
      SCOPED_TRACE(::testing::Message() << c.channels << " ch, len " << c.len << ", hop " << c.hop
                                        << ", first push " << sizes[0]);
      ExpectFixed(PushAll(*w, x, c.channels, sizes), frames, c.channels, c.len, c.hop, 100);
    }
  }
}

TEST(FixedWindowerTest, InvalidArguments) {
  EXPECT_FALSE(CreateFixedWindower(0, 100, 10, 10).has_value());
  EXPECT_FALSE(CreateFixedWindower(1, 0, 10, 10).has_value());
  EXPECT_FALSE(CreateFixedWindower(1, 100, 0, 10).has_value());
  auto hop = CreateFixedWindower(1, 100, 10, 0);
  ASSERT_FALSE(hop.has_value());
  EXPECT_EQ(hop.error().message, "windowing: hop 0 must be >= 1");
  EXPECT_DEATH(MakeFixedWindower(1, 100, -1, 1), "programmer error");
}

// ---- stroke trigger --------------------------------------------------------------------------

std::vector<float> ReadAll(Source& s) {
  std::vector<float> all, buf(8192 * s.info().channels);
  for (;;) {
    auto n = s.Read(buf, 8192);
    EXPECT_TRUE(n.has_value());
    if (!n || *n == 0) break;
    all.insert(all.end(), buf.begin(), buf.begin() + *n * s.info().channels);
  }
  return all;
}

std::unique_ptr<PressSimulator> Sim(const std::string& kv) {
  auto o = SimulatorOptions::Parse(kv);
  EXPECT_TRUE(o.has_value()) << (o ? "" : o.error().message);
  return std::move(*PressSimulator::Create(*o));
}

// Every labelled stroke gives exactly one window, its onset within `tol` frames of the label, and
// each window holds exactly the stream's samples (pre-trigger included).
void ExpectOneWindowPerStroke(PressSimulator& sim, const TriggerOptions& t, int tol,
                              const std::vector<size_t>& sizes) {
  const int ch = sim.info().channels;
  const auto x = ReadAll(sim);
  auto w = MakeStrokeTrigger(ch, sim.info().sample_rate, t);
  const auto got = PushAll(*w, x, ch, sizes);
  const auto& labels = sim.labels();
  ASSERT_EQ(got.size(), labels.size());
  int64_t max_err = 0;
  for (size_t k = 0; k < labels.size(); ++k) {
    const int64_t onset = got[k].start_frame + t.pretrigger;
    const int64_t err = onset - labels[k].onset_frame;
    max_err = std::max(max_err, std::abs(err));
    EXPECT_LE(std::abs(err), tol) << "stroke " << k;
    EXPECT_EQ(got[k].index, int64_t(k));
    EXPECT_DOUBLE_EQ(got[k].t_start_s, got[k].start_frame / sim.info().sample_rate);
    ASSERT_EQ(int(got[k].samples.size()), ch * t.length);
    for (int c = 0; c < ch; ++c) {
      for (int j = 0; j < t.length; ++j) {
        ASSERT_EQ(got[k].samples[c * t.length + j], x[(got[k].start_frame + j) * ch + c])
            << "stroke " << k << " channel " << c << " sample " << j;
      }
    }
  }
  ::testing::Test::RecordProperty("max_onset_error_frames", std::to_string(max_err));
}

TEST(StrokeTriggerTest, FindsEverySimulatedStrokeOnceAcrossTheWearRange) {
  auto sim = Sim("strokes=120,seed=21,wear=0,wear_end=1");
  ExpectOneWindowPerStroke(*sim, TriggerOptions{}, 20, {4096});  // 2 ms at 10 kHz
}

TEST(StrokeTriggerTest, OddPushSizesAndOtherSettings) {
  // Two channels, triggering on the frame sensor, a faster press, a 48 kHz stream.
  auto sim = Sim("strokes=40,seed=8,ch=2,spm=40,sr=48000,wear=0.3");
  TriggerOptions t;
  t.length = 9600;
  t.pretrigger = 960;
  t.channel = 1;
  ExpectOneWindowPerStroke(*sim, t, 96, {1, 13, 4801, 960, 7});
  // Louder background, weaker strokes: 18 dB less margin than the default.
  auto noisy = Sim("strokes=40,seed=9,noise=0.2,hum=0.1,amp=2");
  ExpectOneWindowPerStroke(*noisy, TriggerOptions{}, 30, {1000});
}

TEST(StrokeTriggerTest, NothingInPureBackground) {
  // Strokes too faint to see: 100 s of noise and hum only.
  auto sim = Sim("strokes=30,amp=0.000001,seed=2");
  const auto x = ReadAll(*sim);
  auto w = MakeStrokeTrigger(1, 10000, TriggerOptions{});
  EXPECT_EQ(PushAll(*w, x, 1, {4096}).size(), 0u);

  // Gaussian noise with a DC offset and a slow drift of level (x2 over a minute).
  std::mt19937_64 rng(5);
  std::normal_distribution<double> g(0, 1);
  std::vector<float> y(600000);
  for (size_t i = 0; i < y.size(); ++i) y[i] = float(0.7 + 0.05 * (1 + i / 600000.0) * g(rng));
  auto w2 = MakeStrokeTrigger(1, 10000, TriggerOptions{});
  EXPECT_EQ(PushAll(*w2, y, 1, {333}).size(), 0u);
}

TEST(StrokeTriggerTest, ABackgroundStepGivesAtMostOneWindowThenAdapts) {
  std::mt19937_64 rng(6);
  std::normal_distribution<double> g(0, 1);
  std::vector<float> y(200000);  // 10 s quiet, then 10 s ten times louder
  for (size_t i = 0; i < y.size(); ++i) y[i] = float((i < 100000 ? 0.01 : 0.1) * g(rng));
  auto w = MakeStrokeTrigger(1, 10000, TriggerOptions{});
  EXPECT_LE(PushAll(*w, y, 1, {1000}).size(), 1u);
  // After adapting, a real impact on the loud background is still found.
  std::vector<float> z = y;
  for (int i = 0; i < 1500; ++i) {
    z[180000 + i] +=
        float(3 * std::exp(-i / 300.0) * std::sin(2 * std::numbers::pi * 250 * i / 1e4));
  }
  auto w2 = MakeStrokeTrigger(1, 10000, TriggerOptions{});
  const auto got = PushAll(*w2, z, 1, {1000});
  ASSERT_FALSE(got.empty());
  EXPECT_NEAR(double(got.back().start_frame + 200), 180000, 20);
}

TEST(StrokeTriggerTest, InvalidOptions) {
  TriggerOptions t;
  t.pretrigger = 2000;
  auto r = CreateStrokeTrigger(1, 10000, t);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message, "trigger: pretrigger 2000 must be in [0, 2000)");
  t = TriggerOptions{};
  t.channel = 2;
  EXPECT_NE(CreateStrokeTrigger(2, 10000, t).error().message.find("channel 2 out of range"),
            std::string::npos);
  t = TriggerOptions{};
  t.threshold = 0;
  EXPECT_FALSE(CreateStrokeTrigger(1, 10000, t).has_value());
  t = TriggerOptions{};
  t.rearm_ratio = 1.5;
  EXPECT_FALSE(CreateStrokeTrigger(1, 10000, t).has_value());
  EXPECT_FALSE(CreateStrokeTrigger(1, 0, TriggerOptions{}).has_value());
  t.rearm_ratio = 0.5;
  t.pretrigger = 0;  // no pre-trigger is fine
  EXPECT_TRUE(CreateStrokeTrigger(1, 10000, t).has_value());
}

}  // namespace
}  // namespace tend::sources
