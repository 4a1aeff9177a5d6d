#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <numbers>
#include <sstream>
#include <vector>

#include "sources/source.h"
#include "test_util.h"

namespace tend::sources {
namespace {

using testing::ScratchDir;

std::unique_ptr<PressSimulator> Sim(const std::string& kv) {
  auto o = SimulatorOptions::Parse(kv);
  EXPECT_TRUE(o.has_value()) << (o ? "" : o.error().message);
  auto s = PressSimulator::Create(*o);
  EXPECT_TRUE(s.has_value()) << (s ? "" : s.error().message);
  return std::move(*s);
}

std::vector<float> ReadAll(Source& s, size_t chunk) {
  std::vector<float> all, buf(chunk * s.info().channels);
  for (;;) {
    auto n = s.Read(buf, chunk);
    EXPECT_TRUE(n.has_value());
    if (!n || *n == 0) break;
    all.insert(all.end(), buf.begin(), buf.begin() + *n * s.info().channels);
  }
  return all;
}

double Rms(const float* x, int n) {
  double ss = 0;
  for (int i = 0; i < n; ++i) ss += double(x[i]) * x[i];
  return std::sqrt(ss / n);
}

TEST(SimulatorTest, BitIdenticalForASeedWhateverTheReadChunking) {
  const std::string kv = "strokes=4,seed=42,wear=0,wear_end=1,ch=2";
  auto a = Sim(kv), b = Sim(kv), c = Sim(kv), d = Sim("strokes=4,seed=43,wear=0,wear_end=1,ch=2");
  const auto x = ReadAll(*a, 4096);
  const auto y = ReadAll(*b, 777);  // odd chunks split strokes and hum re-syncs
  const auto z = ReadAll(*c, 1);
  ASSERT_EQ(x.size(), size_t(2 * a->info().total_frames));
  ASSERT_EQ(x.size(), y.size());
  ASSERT_EQ(x.size(), z.size());
  EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * 4), 0);
  EXPECT_EQ(std::memcmp(x.data(), z.data(), x.size() * 4), 0);
  const auto w = ReadAll(*d, 4096);
  ASSERT_EQ(w.size(), x.size());
  EXPECT_NE(std::memcmp(x.data(), w.data(), x.size() * 4), 0);
  for (float v : x) ASSERT_TRUE(std::isfinite(v));
}

TEST(SimulatorTest, LabelsMatchPeriodWearRampAndSignal) {
  auto sim = Sim("strokes=50,seed=5,wear=0.2,wear_end=0.8,spm=18,sr=10000");
  const auto& labels = sim->labels();
  ASSERT_EQ(labels.size(), 50u);
  const double period = 10000 * 60.0 / 18;
  EXPECT_EQ(sim->info().total_frames, std::llround(50 * period));
  EXPECT_EQ(sim->info().channel_names, std::vector<std::string>{"die"});
  const auto x = ReadAll(*sim, 10000);
  double max_dev = 0;
  for (size_t k = 0; k < labels.size(); ++k) {
    const auto& l = labels[k];
    EXPECT_EQ(l.stroke, int64_t(k));
    EXPECT_DOUBLE_EQ(l.t_s, l.onset_frame / 10000.0);
    EXPECT_NEAR(l.wear, 0.2 + 0.6 * k / 49.0, 1e-12);
    // Onsets sit on the nominal grid, jittered by a few ms (3 ms sd, truncated at 3 sd).
    const double dev = l.onset_frame - (k + 0.3) * period;
    max_dev = std::max(max_dev, std::fabs(dev));
    EXPECT_LE(std::fabs(dev), 90.5);
    // Quiet before the onset, an impact right after it.
    const float* at = x.data() + l.onset_frame;
    const double before = Rms(at - 400, 350);
    const double after = Rms(at, 200);
    EXPECT_LT(before, 0.1) << k;
    EXPECT_GT(after, 30 * before) << k;
    int first = -1;  // first sample above 10x the noise level
    for (int i = -50; i < 100 && first < 0; ++i) {
      if (std::fabs(at[i]) > 0.5) first = i;
    }
    EXPECT_GE(first, 0) << k;
    EXPECT_LE(first, 10) << k;  // within 1 ms
  }
  EXPECT_GT(max_dev, 5);  // the jitter is really there
}

TEST(SimulatorTest, BackgroundIsNoisePlusHum) {
  // Between strokes: noise_g RMS plus hum at 50/100/150 Hz with amplitudes 1, 0.5, 0.3 x hum_g.
  auto sim = Sim("strokes=3,noise=0.05,hum=0.03,seed=9");
  const auto x = ReadAll(*sim, 5000);
  const auto& l = sim->labels();
  const int64_t a = l[0].onset_frame + 5000, b = l[1].onset_frame - 500;  // quiet stretch
  const double want = std::sqrt(0.05 * 0.05 + 0.03 * 0.03 * (1 + 0.25 + 0.09) / 2);
  EXPECT_NEAR(Rms(x.data() + a, int(b - a)), want, 0.03 * want);
  // Hum amplitude at 50 Hz by correlation over a whole number of cycles.
  const int n = int(b - a) / 200 * 200;
  double re = 0, im = 0;
  for (int i = 0; i < n; ++i) {
    const double ph = 2 * std::numbers::pi * 50 * i / 10000.0;
    re += x[a + i] * std::cos(ph);
    im += x[a + i] * std::sin(ph);
  }
  EXPECT_NEAR(2 * std::hypot(re, im) / n, 0.03, 0.003);
  // No hum, no noise: exactly zero between strokes.
  auto quiet = Sim("strokes=2,noise=0,hum=0");
  const auto q = ReadAll(*quiet, 5000);
  EXPECT_EQ(Rms(q.data(), int(quiet->labels()[0].onset_frame)), 0.0);
}

// ---- wear: the signature moves in physically plausible ways -----------------------------------

// Power spectrum of one window at frequency f (direct DFT, Hann window, phasor recurrence).
double Power(const float* x, int n, double f, double fs) {
  const double step = 2 * std::numbers::pi * f / fs;
  const double hstep = 2 * std::numbers::pi / (n - 1);
  double c = 1, s = 0, hc = 1, hs = 0, re = 0, im = 0;
  const double sc = std::cos(step), ss = std::sin(step), hsc = std::cos(hstep),
               hss = std::sin(hstep);
  for (int i = 0; i < n; ++i) {
    const double w = (0.5 - 0.5 * hc) * x[i];
    re += w * c;
    im += w * s;
    const double c2 = c * sc - s * ss;
    s = s * sc + c * ss;
    c = c2;
    const double hc2 = hc * hsc - hs * hss;
    hs = hs * hsc + hc * hss;
    hc = hc2;
  }
  return re * re + im * im;
}

struct StrokeFeatures {
  std::vector<double> v;  // crest, kurtosis, 10 x log energy of 20 Hz bands in 200-400 Hz
};

std::vector<StrokeFeatures> Features(PressSimulator& sim) {
  const auto x = ReadAll(sim, 10000);
  std::vector<StrokeFeatures> out;
  for (const auto& l : sim.labels()) {
    const float* w = x.data() + l.onset_frame - 200;
    const int n = 2000;
    double mean = 0, peak = 0;
    for (int i = 0; i < n; ++i) mean += w[i];
    mean /= n;
    double m2 = 0, m4 = 0;
    for (int i = 0; i < n; ++i) {
      const double d = w[i] - mean;
      m2 += d * d;
      m4 += d * d * d * d;
      peak = std::max(peak, std::fabs(double(w[i])));
    }
    m2 /= n;
    m4 /= n;
    StrokeFeatures f;
    f.v.push_back(peak / std::sqrt(m2));
    f.v.push_back(m4 / (m2 * m2));
    for (int lo = 200; lo < 400; lo += 20) {
      double e = 0;
      for (double fr = lo; fr < lo + 20; fr += 5) e += Power(w, n, fr, 10000);
      f.v.push_back(std::log(e));
    }
    out.push_back(std::move(f));
  }
  return out;
}

// Mean shift of each feature in units of the healthy standard deviation.
std::vector<double> ZShift(const std::vector<StrokeFeatures>& healthy,
                           const std::vector<StrokeFeatures>& worn) {
  const size_t m = healthy[0].v.size();
  std::vector<double> z(m);
  for (size_t j = 0; j < m; ++j) {
    double mu = 0, ss = 0, mw = 0;
    for (auto& h : healthy) mu += h.v[j];
    mu /= healthy.size();
    for (auto& h : healthy) ss += (h.v[j] - mu) * (h.v[j] - mu);
    const double sd = std::sqrt(ss / (healthy.size() - 1));
    for (auto& w : worn) mw += w.v[j];
    mw /= worn.size();
    z[j] = (mw - mu) / sd;
  }
  return z;
}

TEST(SimulatorTest, WearPointThreeStandsOutWhileWearPointOneLooksHealthy) {
  auto healthy = Sim("strokes=150,seed=1,wear=0");
  auto w01 = Sim("strokes=150,seed=2,wear=0.1");
  auto w03 = Sim("strokes=150,seed=3,wear=0.3");
  const auto h = Features(*healthy);
  const auto z01 = ZShift(h, Features(*w01));
  const auto z03 = ZShift(h, Features(*w03));
  int strong = 0;
  for (size_t j = 0; j < z03.size(); ++j) {
    EXPECT_LT(std::fabs(z01[j]), 0.6) << "feature " << j;
    strong += std::fabs(z03[j]) > 1.5;
  }
  EXPECT_GE(strong, 4);
  EXPECT_GT(z03[0], 1.0);  // crest factor: clearance impacts make the stroke more impulsive
  EXPECT_GT(*std::max_element(z03.begin(), z03.end()), 3.0);
}

// Frequency of the strongest spectral peak in [lo, hi] of the average spectrum of the strokes.
double PeakHz(PressSimulator& sim, double lo, double hi) {
  const auto x = ReadAll(sim, 10000);
  double best = 0, best_f = 0;
  for (double f = lo; f <= hi; f += 0.5) {
    double p = 0;
    for (const auto& l : sim.labels()) p += Power(x.data() + l.onset_frame, 4000, f, 10000);
    if (p > best) best = p, best_f = f;
  }
  return best_f;
}

TEST(SimulatorTest, WearLowersModesShortensRingAndAddsHighFrequencies) {
  // The first mode (228 Hz) drops by 10 % x severity(1) = 10 % at full wear.
  auto fresh = Sim("strokes=8,seed=4,wear=0,noise=0.001,hum=0");
  auto worn = Sim("strokes=8,seed=4,wear=1,noise=0.001,hum=0");
  const double f0 = PeakHz(*fresh, 200, 245);
  const double f1 = PeakHz(*worn, 180, 245);
  EXPECT_NEAR(f0, 228, 2);
  // 0.90 in the modal model; the secondary impact's interference moves the apparent peak a
  // little further.
  EXPECT_NEAR(f1 / f0, 1 - 0.10 * (1 - std::exp(-1 / 0.0225)), 0.03);

  // Damping: once the last impact (rattle ends by 90 ms) has passed, the ring decays freely;
  // compare the energy in 150-200 ms with that in 100-150 ms (no noise, no hum).
  auto decay = [](PressSimulator& s) {
    const auto x = ReadAll(s, 10000);
    double a = 0, b = 0;
    for (const auto& l : s.labels()) {
      a += std::pow(Rms(x.data() + l.onset_frame + 1000, 500), 2);
      b += std::pow(Rms(x.data() + l.onset_frame + 1500, 500), 2);
    }
    return b / a;
  };
  auto fresh2 = Sim("strokes=20,seed=6,wear=0,noise=0,hum=0");
  auto worn2 = Sim("strokes=20,seed=6,wear=0.8,noise=0,hum=0");
  const double d0 = decay(*fresh2), d1 = decay(*worn2);
  // Healthy decay times 27-42 ms: exp(-2 x 50 ms / tau) is 0.025-0.09.
  EXPECT_GT(d0, 0.02);
  EXPECT_LT(d0, 0.12);
  // At wear 0.8 the decay times shrink by 1 + 2.5 x 0.64 = 2.6.
  EXPECT_LT(d1, 0.2 * d0);

  // Edge chipping: 1-3 kHz energy grows by an order of magnitude.
  auto hf = [](PressSimulator& s) {
    const auto x = ReadAll(s, 10000);
    double e = 0;
    for (const auto& l : s.labels()) {
      for (double f = 1000; f < 3000; f += 25) e += Power(x.data() + l.onset_frame, 400, f, 10000);
    }
    return e;
  };
  auto fresh3 = Sim("strokes=10,seed=7,wear=0,noise=0.001,hum=0");
  auto worn3 = Sim("strokes=10,seed=7,wear=0.8,noise=0.001,hum=0");
  EXPECT_GT(hf(*worn3), 10 * hf(*fresh3));
}

TEST(SimulatorTest, TwoChannelsAndEndless) {
  auto two = Sim("strokes=2,ch=2,seed=3");
  EXPECT_EQ(two->info().channel_names, (std::vector<std::string>{"die", "frame"}));
  const auto x = ReadAll(*two, 1000);
  const int64_t on = two->labels()[0].onset_frame;
  double e0 = 0, e1 = 0, cross = 0;
  for (int64_t i = on; i < on + 1500; ++i) {
    e0 += x[2 * i] * x[2 * i];
    e1 += x[2 * i + 1] * x[2 * i + 1];
    cross += x[2 * i] * x[2 * i + 1];
  }
  EXPECT_GT(e1, 0.05 * e0);                                // the frame sees the stroke too,
  EXPECT_LT(std::fabs(cross) / std::sqrt(e0 * e1), 0.99);  // through a different path

  auto endless = Sim("strokes=0,seed=3,wear=0.5");
  EXPECT_EQ(endless->info().total_frames, -1);
  EXPECT_TRUE(endless->labels().empty());
  std::vector<float> buf(100000);
  for (int i = 0; i < 10; ++i) ASSERT_EQ(endless->Read(buf, 100000).value_or(0), 100000u);
  // 1,000,000 frames = 30 periods of 33,333.3 frames: onsets at 0.3, 1.3, ... 29.3 periods.
  ASSERT_EQ(endless->labels().size(), 30u);
  for (const auto& l : endless->labels()) EXPECT_EQ(l.wear, 0.5);
  // The same strokes as a finite run of the same seed.
  auto finite = Sim("strokes=30,seed=3,wear=0.5");
  for (size_t k = 0; k < 30; ++k) {
    EXPECT_EQ(endless->labels()[k].onset_frame, finite->labels()[k].onset_frame);
  }
}

TEST(SimulatorTest, WriteLabelledWritesTheWholeRun) {
  ScratchDir dir;
  auto sim = Sim("strokes=3,seed=11,wear=0,wear_end=0.5");
  std::vector<float> skip(5000);
  ASSERT_TRUE(sim->Read(skip, 5000).has_value());  // the file still starts at frame 0
  ASSERT_TRUE(sim->WriteLabelled(dir.File("run.wav"), dir.File("run.csv")).has_value());
  auto wav = OpenWav(dir.File("run.wav"));
  ASSERT_TRUE(wav.has_value()) << wav.error().message;
  EXPECT_EQ((*wav)->info().total_frames, sim->info().total_frames);
  auto fresh = Sim("strokes=3,seed=11,wear=0,wear_end=0.5");
  EXPECT_EQ(ReadAll(**wav, 4096), ReadAll(*fresh, 4096));

  std::ifstream f(dir.File("run.csv"));
  std::stringstream ss;
  ss << f.rdbuf();
  std::string want = "stroke,onset_frame,t_s,wear\n";
  for (const auto& l : sim->labels()) {
    want += std::to_string(l.stroke) + "," + std::to_string(l.onset_frame) + "," +
            fmt::format("{},{}", l.t_s, l.wear) + "\n";
  }
  EXPECT_EQ(ss.str(), want);
  EXPECT_NE(ss.str().find("\n2,"), std::string::npos);
  EXPECT_NE(ss.str().find(",0.5\n"), std::string::npos);

  auto endless = Sim("strokes=0");
  auto st = endless->WriteLabelled(dir.File("e.wav"), dir.File("e.csv"));
  ASSERT_FALSE(st.has_value());
  EXPECT_NE(st.error().message.find("endless"), std::string::npos);
}

}  // namespace
}  // namespace tend::sources
