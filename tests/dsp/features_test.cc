// Closed-form checks of the feature extractor: sines, tones, Gaussian noise, AM signals whose
// envelope is known exactly, degenerate windows and bad input.
#include "dsp/features.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <random>

#include "dsp_test_util.h"

namespace tend::dsp {
namespace {

using testing::Tone;

size_t Index(const FeatureSpec& spec, const std::string& name) {
  const auto names = spec.FeatureNames();
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == name) return i;
  }
  ADD_FAILURE() << "no feature named " << name;
  return 0;
}

std::vector<float> Extract(FeatureExtractor& fx, const std::vector<float>& x) {
  std::vector<float> out(fx.spec().Size());
  auto st = fx.Compute(x, out);
  EXPECT_TRUE(st) << st.error().message;
  return out;
}

std::unique_ptr<FeatureExtractor> Make(const FeatureSpec& spec) {
  auto fx = FeatureExtractor::Create(spec);
  EXPECT_TRUE(fx) << fx.error().message;
  return fx ? std::move(*fx) : nullptr;
}

double Db(double power) { return 10 * std::log10(power + 1e-12); }

TEST(TimeFeatures, CosineOfAmplitudeA) {
  // 250 Hz at 10 kHz: 40 samples per period, 50 whole periods, a sample on each crest/trough.
  const double a = 2.5;
  const auto x = Tone(2000, 10000, 250, a);
  const TimeFeatures t = ComputeTimeFeatures(x);
  EXPECT_NEAR(t.mean, 0, 1e-6);
  EXPECT_NEAR(t.rms, a / std::sqrt(2.0), 1e-6);
  EXPECT_NEAR(t.std, a / std::sqrt(2.0), 1e-6);
  EXPECT_NEAR(t.peak, a, 1e-6);
  EXPECT_NEAR(t.peak_to_peak, 2 * a, 1e-6);
  EXPECT_NEAR(t.crest_factor, std::sqrt(2.0), 1e-6);
  EXPECT_NEAR(t.kurtosis, 1.5, 1e-6);  // E[cos^4] / E[cos^2]^2 = (3/8) / (1/4)
  EXPECT_NEAR(t.skewness, 0, 1e-6);
  // mean|x| over the samples (2A/pi for the continuous wave; 40 samples per period differ by
  // 0.2 %), summed in long double here.
  long double mean_abs = 0;
  for (int i = 0; i < 40; ++i) mean_abs += std::fabs(std::cos(2 * std::numbers::pi * i / 40.0));
  mean_abs = a * mean_abs / 40;
  EXPECT_NEAR(t.shape_factor, a / std::sqrt(2.0) / mean_abs, 1e-6);
  EXPECT_NEAR(t.impulse_factor, a / mean_abs, 1e-6);
}

TEST(TimeFeatures, OffsetShiftsMeanAndRmsOnly) {
  const auto x = Tone(2000, 10000, 250, 1.0, /*offset=*/3.0);
  const TimeFeatures t = ComputeTimeFeatures(x);
  EXPECT_NEAR(t.mean, 3.0, 1e-6);
  EXPECT_NEAR(t.rms, std::sqrt(9.0 + 0.5), 1e-6);
  EXPECT_NEAR(t.std, std::sqrt(0.5), 1e-6);
  EXPECT_NEAR(t.kurtosis, 1.5, 1e-5);
  EXPECT_NEAR(t.peak, 4.0, 1e-6);
  EXPECT_NEAR(t.peak_to_peak, 2.0, 1e-6);
}

TEST(TimeFeatures, GaussianNoiseHasKurtosisThree) {
  std::mt19937_64 rng(42);
  std::normal_distribution<float> normal(0.0f, 0.7f);
  double kurt = 0, skew = 0, shape = 0;
  const int windows = 200;
  std::vector<float> x(2000);
  for (int w = 0; w < windows; ++w) {
    for (float& v : x) v = normal(rng);
    const TimeFeatures t = ComputeTimeFeatures(x);
    kurt += t.kurtosis / windows;
    skew += t.skewness / windows;
    shape += t.shape_factor / windows;
    EXPECT_NEAR(t.std, 0.7, 0.05);
  }
  // Standard errors of the means: kurtosis sqrt(24/2000/200) = 0.008, skewness 0.004.
  EXPECT_NEAR(kurt, 3.0, 0.05);
  EXPECT_NEAR(skew, 0.0, 0.025);
  EXPECT_NEAR(shape, std::sqrt(std::numbers::pi / 2), 0.005);  // rms / mean|x| of a Gaussian
}

TEST(TimeFeatures, ConstantWindowGivesFiniteConventions) {
  std::vector<float> x(2000, 3.0f);
  const TimeFeatures t = ComputeTimeFeatures(x);
  EXPECT_DOUBLE_EQ(t.mean, 3.0);
  EXPECT_DOUBLE_EQ(t.rms, 3.0);
  EXPECT_DOUBLE_EQ(t.std, 0.0);
  EXPECT_DOUBLE_EQ(t.kurtosis, 0.0);
  EXPECT_DOUBLE_EQ(t.skewness, 0.0);
  EXPECT_DOUBLE_EQ(t.crest_factor, 1.0);
  EXPECT_DOUBLE_EQ(t.shape_factor, 1.0);
}

TEST(Features, SilentWindowIsFinite) {
  const FeatureSpec spec = FeatureSpec::DefaultPress();
  auto fx = Make(spec);
  const auto out = Extract(*fx, std::vector<float>(2000, 0.0f));
  for (size_t i = 0; i < out.size(); ++i) EXPECT_TRUE(std::isfinite(out[i])) << i;
  EXPECT_FLOAT_EQ(out[Index(spec, "ch0.rms")], 0.0f);
  EXPECT_FLOAT_EQ(out[Index(spec, "ch0.crest_factor")], 0.0f);
  EXPECT_FLOAT_EQ(out[Index(spec, "ch0.band_200_225")], -120.0f);      // 10*log10(energy_floor)
  EXPECT_FLOAT_EQ(out[Index(spec, "ch0.env_band_100_200")], -120.0f);  // no modulation
  EXPECT_FLOAT_EQ(out[Index(spec, "ch0.spectral_centroid")], 0.0f);
}

// A tone on a bin centre puts exactly A^2/2 (its mean square) into its band whatever the window:
// the spectrum is normalised by sum(w^2), and a cosine-sum window spreads the tone over at most
// 5 bins, which stay inside a 25 Hz band when the tone sits mid-band.
TEST(Features, ToneEnergyLandsInItsBand) {
  for (const char* fn : {"hann", "hamming", "blackman", "rect"}) {
    FeatureSpec spec = FeatureSpec::DefaultPress();
    spec.window_fn = fn;
    auto fx = Make(spec);
    for (double hz : {210.0, 235.0, 260.0, 285.0, 310.0, 335.0, 360.0, 385.0}) {
      const double a = 0.7;
      const auto out = Extract(*fx, Tone(2000, 10000, hz, a, /*offset=*/1.0, 0.4));
      const int lo = static_cast<int>(hz / 25) * 25;
      const std::string band = "ch0.band_" + std::to_string(lo) + "_" + std::to_string(lo + 25);
      EXPECT_NEAR(out[Index(spec, band)], Db(a * a / 2), 1e-3) << fn << " " << hz;
      const auto names = spec.FeatureNames();
      for (size_t i = 0; i < names.size(); ++i) {
        if (names[i].starts_with("ch0.band_") && names[i] != band) {
          EXPECT_LT(out[i], Db(a * a / 2) - 60) << fn << " " << hz << " " << names[i];
        }
      }
      EXPECT_FLOAT_EQ(out[Index(spec, "ch0.dominant_freq")], static_cast<float>(hz));
      EXPECT_NEAR(out[Index(spec, "ch0.spectral_centroid")], hz, 1e-3);
      EXPECT_NEAR(out[Index(spec, "ch0.mean")], 1.0, 1e-6);
    }
  }
}

// Hann: an on-bin tone has power in 3 bins with weights 1/16, 1/4, 1/16, so the spectral
// spread is bin/sqrt(3) and the spectral kurtosis (2/16)/(3/8) / (1/3)^2 = 3. The kurtosis
// weighs the float32 FFT's rounding noise (~1e-14 of the peak per bin) by distance^4, up to
// 300^4 bins^4 away here: 2e-3 is that floor, not slack in the definition.
TEST(Features, SpectralShapeOfHannTone) {
  const FeatureSpec spec = FeatureSpec::DefaultPress();
  auto fx = Make(spec);
  const auto out = Extract(*fx, Tone(2000, 10000, 1500, 1.0, 0, 1.0));
  EXPECT_NEAR(out[Index(spec, "ch0.spectral_centroid")], 1500, 1e-3);
  EXPECT_NEAR(out[Index(spec, "ch0.spectral_spread")], 5 / std::sqrt(3.0), 1e-4);
  EXPECT_NEAR(out[Index(spec, "ch0.spectral_kurtosis")], 3.0, 2e-3);
  EXPECT_FLOAT_EQ(out[Index(spec, "ch0.dominant_freq")], 1500.0f);
}

TEST(Features, RectToneHasZeroSpreadByConvention) {
  FeatureSpec spec = FeatureSpec::DefaultPress();
  spec.window_fn = "rect";
  auto fx = Make(spec);
  const auto out = Extract(*fx, Tone(2000, 10000, 1500, 1.0));
  EXPECT_NEAR(out[Index(spec, "ch0.spectral_spread")], 0, 1e-2);
  EXPECT_NEAR(out[Index(spec, "ch0.spectral_centroid")], 1500, 1e-3);
}

// White noise: band power is proportional to bandwidth and the bands below max_hz = 0.45 fs
// hold 90 % of the variance.
TEST(Features, WhiteNoiseBandPowerFollowsBandwidth) {
  FeatureSpec spec = FeatureSpec::DefaultPress();
  spec.log_energies = false;
  auto fx = Make(spec);
  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(2000);
  double total = 0, low = 0, fine = 0;
  const int windows = 100;
  for (int w = 0; w < windows; ++w) {
    for (float& v : x) v = normal(rng);
    const auto out = Extract(*fx, x);
    const auto names = spec.FeatureNames();
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i].starts_with("ch0.band_")) total += out[i] / windows;
    }
    low += out[Index(spec, "ch0.band_0_200")] / windows;
    fine += out[Index(spec, "ch0.band_300_325")] / windows;
  }
  EXPECT_NEAR(total, 0.9, 0.02);
  EXPECT_NEAR(low, 200.0 / 5000, 0.004);
  EXPECT_NEAR(fine, 25.0 / 5000, 0.0006);
}

// x = A (1 + m cos(2 pi fm t)) cos(2 pi fc t): the squared envelope is exactly
// A^2 (1 + m cos)^2 = A^2 (1 + m^2/2 + 2m cos(wm t) + m^2/2 cos(2 wm t)). Divided by its mean
// A^2 (1 + m^2/2), minus 1, the spectrum has 2 m^2 / (1 + m^2/2)^2 at fm and
// m^4 / 8 / (1 + m^2/2)^2 at 2 fm, and nothing elsewhere; the level A drops out.
TEST(Features, AmplitudeModulationEnvelope) {
  const FeatureSpec spec = FeatureSpec::DefaultPress();
  auto fx = Make(spec);
  const double fs = 10000, fc = 2500, fm = 105, a = 0.8, m = 0.5;
  std::vector<float> x(2000);
  for (int i = 0; i < 2000; ++i) {
    const double t = i / fs;
    x[i] = static_cast<float>(a * (1 + m * std::cos(2 * std::numbers::pi * fm * t)) *
                              std::cos(2 * std::numbers::pi * fc * t));
  }
  const auto out = Extract(*fx, x);
  const double norm = (1 + m * m / 2) * (1 + m * m / 2);
  EXPECT_NEAR(out[Index(spec, "ch0.env_band_100_200")], Db(2 * m * m / norm), 0.01);
  EXPECT_NEAR(out[Index(spec, "ch0.env_band_200_300")], Db(m * m * m * m / 8 / norm), 0.01);
  for (const char* other : {"ch0.env_band_0_100", "ch0.env_band_300_400", "ch0.env_band_400_500"}) {
    EXPECT_LT(out[Index(spec, other)], Db(2 * m * m / norm) - 60) << other;
  }
  // The decimated squared envelope itself: point j sits at sample j * N / L.
  const auto env = fx->LastSquaredEnvelopeForTest();
  ASSERT_EQ(env.size(), static_cast<size_t>(fx->envelope_size()));
  ASSERT_GT(env.size(), 0u);
  EXPECT_NEAR(fx->envelope_sample_rate(), fs * env.size() / 2000.0, 1e-9);
  for (size_t j = 0; j < env.size(); ++j) {
    const double t = j * (2000.0 / env.size()) / fs;
    const double e = a * (1 + m * std::cos(2 * std::numbers::pi * fm * t));
    EXPECT_NEAR(env[j], e * e, 2e-4) << j;
  }
  // The same modulation at ten times the level gives the same envelope features.
  for (float& v : x) v *= 10;
  const auto louder = Extract(*fx, x);
  EXPECT_NEAR(louder[Index(spec, "ch0.env_band_100_200")], out[Index(spec, "ch0.env_band_100_200")],
              1e-3);
}

TEST(Features, MultiChannelIsPlanarAndIndependent) {
  const FeatureSpec one = FeatureSpec::DefaultPress(10000, 1, 2000);
  const FeatureSpec three = FeatureSpec::DefaultPress(10000, 3, 2000);
  auto fx1 = Make(one);
  auto fx3 = Make(three);
  std::mt19937_64 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> planar(3 * 2000);
  for (float& v : planar) v = normal(rng);
  for (int i = 0; i < 2000; ++i) planar[2000 + i] += 2.0f * std::sin(0.3f * i);
  const auto all = Extract(*fx3, planar);
  const size_t per = one.Size();
  ASSERT_EQ(all.size(), 3 * per);
  for (int c = 0; c < 3; ++c) {
    const auto single = Extract(
        *fx1, std::vector<float>(planar.begin() + c * 2000, planar.begin() + (c + 1) * 2000));
    for (size_t i = 0; i < per; ++i) EXPECT_EQ(all[c * per + i], single[i]) << c << " " << i;
  }
  EXPECT_EQ(three.FeatureNames()[per], "ch1.mean");
}

TEST(Features, RepeatedComputeIsIdentical) {
  auto fx = Make(FeatureSpec::DefaultPress());
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> a(2000), b(2000);
  for (float& v : a) v = normal(rng);
  for (float& v : b) v = 10 * normal(rng);
  const auto first = Extract(*fx, a);
  Extract(*fx, b);
  EXPECT_EQ(Extract(*fx, a), first);
}

TEST(Features, GroupsCanBeSwitchedOff) {
  FeatureSpec spec = FeatureSpec::DefaultPress();
  const auto full_names = spec.FeatureNames();
  auto full = Make(spec);
  std::mt19937_64 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(2000);
  for (float& v : x) v = normal(rng);
  const auto all = Extract(*full, x);
  for (int variant = 0; variant < 3; ++variant) {
    FeatureSpec s = spec;
    s.time_features = variant != 0;
    s.spectral_features = variant != 1;
    s.envelope = variant != 2;
    auto fx = Make(s);
    const auto part = Extract(*fx, x);
    const auto names = s.FeatureNames();
    ASSERT_EQ(part.size(), names.size());
    for (size_t i = 0; i < names.size(); ++i) {
      EXPECT_EQ(part[i], all[Index(spec, names[i])]) << variant << " " << names[i];
    }
  }
}

TEST(Features, NanAndInfAreErrorsNamingChannelAndSample) {
  const FeatureSpec spec = FeatureSpec::DefaultPress(10000, 2, 2000);
  auto fx = Make(spec);
  std::vector<float> out(spec.Size());
  struct Case {
    size_t index;
    float value;
    const char* text;
  };
  for (const Case& c :
       {Case{2000 + 17, std::numeric_limits<float>::quiet_NaN(), "channel 'ch1' sample 17 is NaN"},
        Case{0, std::numeric_limits<float>::infinity(), "channel 'ch0' sample 0 is +Inf"},
        Case{1999, -std::numeric_limits<float>::infinity(), "channel 'ch0' sample 1999 is -Inf"}}) {
    std::vector<float> x(2 * 2000, 0.5f);
    x[c.index] = c.value;
    auto st = fx->Compute(x, out);
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(st.error().message, c.text);
  }
}

TEST(Features, WrongSizesAreErrors) {
  const FeatureSpec spec = FeatureSpec::DefaultPress(10000, 2, 2000);
  auto fx = Make(spec);
  std::vector<float> out(spec.Size());
  std::vector<float> short_window(3999, 0.0f);
  auto st = fx->Compute(short_window, out);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("3999 samples, expected 4000"), std::string::npos)
      << st.error().message;
  std::vector<float> x(4000, 0.0f), small(spec.Size() - 1);
  st = fx->Compute(x, small);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("output"), std::string::npos) << st.error().message;
}

TEST(Features, CreateRejectsInvalidSpec) {
  FeatureSpec spec = FeatureSpec::DefaultPress();
  spec.bands.push_back({4000, 6000});
  auto fx = FeatureExtractor::Create(spec);
  ASSERT_FALSE(fx);
  EXPECT_NE(fx.error().message.find("bands[13]"), std::string::npos) << fx.error().message;
}

}  // namespace
}  // namespace tend::dsp

namespace tend::dsp {
namespace {

// Frame features see events that a whole-window spectrum averages away: a click in one frame
// raises that band's max over frames far above its mean, and a steady tone sets the mean.
TEST(FrameFeatures, MaxSeesAClickMeanSeesTheHum) {
  FeatureSpec s = FeatureSpec::DefaultSound(16000, 1, 16000);
  auto fx = FeatureExtractor::Create(s);
  ASSERT_TRUE(fx) << fx.error().message;
  std::vector<float> x(16000);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.1f * std::sin(2 * M_PI * 440 * i / 16000.0);
  std::vector<float> quiet(s.Size()), click(s.Size());
  ASSERT_TRUE((*fx)->Compute(x, quiet));
  for (int i = 0; i < 64; ++i) x[8000 + i] += (i % 2 ? 1.0f : -1.0f) * std::exp(-i / 16.0f);
  ASSERT_TRUE((*fx)->Compute(x, click));
  const auto names = s.FeatureNames();
  const Band top = s.frame_bands.back();  // the click's energy sits near Nyquist
  auto at = [&](const std::string& n) {
    return static_cast<size_t>(std::find(names.begin(), names.end(), n) - names.begin());
  };
  const size_t mx = at("ch0." + BandName("frame_band", top) + "_max");
  const size_t mean = at("ch0." + BandName("frame_band", top) + "_mean");
  ASSERT_LT(mx, names.size());
  EXPECT_GT(click[mx] - quiet[mx], 30);     // dB: the click frame
  EXPECT_LT(click[mean] - click[mx], -10);  // averaged over 30 frames it is diluted
  // The 440 Hz band's mean is the tone's level: 0.1^2/2 -> -23 dB.
  for (size_t b = 0; b < s.frame_bands.size(); ++b) {
    if (s.frame_bands[b].lo_hz <= 440 && 440 < s.frame_bands[b].hi_hz) {
      EXPECT_NEAR(quiet[10 + b], 10 * std::log10(0.005), 0.5);
    }
  }
  // Flatness: a pure tone is far from flat; white noise is near 0 dB (-2.5 dB: the mean of the
  // log of an exponential variable).
  const size_t flat = at("ch0.frame_flatness_mean");
  EXPECT_LT(quiet[flat], -20);
  std::mt19937 rng(3);
  std::normal_distribution<float> g(0, 1);
  for (float& v : x) v = g(rng);
  std::vector<float> noise(s.Size());
  ASSERT_TRUE((*fx)->Compute(x, noise));
  EXPECT_NEAR(noise[flat], -2.5, 0.3);
}

}  // namespace
}  // namespace tend::dsp
