// The extractor against values computed independently by scripts/reference/dsp_reference.py
// (numpy/scipy in float64: time-domain windowing, full-rate scipy.signal.hilbert envelope), and
// physics checks on real bearing recordings (CWRU).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "dsp/features.h"
#include "dsp_test_util.h"

namespace tend::dsp {
namespace {

nlohmann::json LoadReference() {
  const std::string path = testing::SourceDir() + "/tests/data/dsp/reference.json";
  std::ifstream f(path);
  if (!f) {
    ADD_FAILURE() << "cannot open " << path;
    return {};
  }
  return nlohmann::json::parse(f);
}

// Tolerances by feature kind. Time features are computed in double on both sides; spectra are
// float32 FFTs here and float64 there, and the envelope is decimated here and full-rate there
// (exact up to rounding for the squared envelope, see features.cc). Largest differences seen
// over all cases: time 6e-8 relative, spectral shape 5e-8 relative, band 2.4e-6 dB, envelope
// band 3.8e-6 dB; the tolerances leave a wide margin for other compilers and FFT orderings.
double Tolerance(const std::string& name, double expected, bool log_energies) {
  const std::string f = name.substr(name.find('.') + 1);
  if (f.starts_with("frame_")) return 1e-3;  // dB from float32 frame FFTs, as for bands
  if (f.starts_with("env_band_") || f.starts_with("band_")) {
    return log_energies ? 1e-3 : 1e-4 * std::fabs(expected) + 1e-10;
  }
  if (f == "dominant_freq") return 1e-6;
  if (f == "spectral_kurtosis") return 1e-4 * std::fabs(expected);
  if (f.starts_with("spectral_")) return 2e-5 * std::fabs(expected);
  return 2e-6 * std::fabs(expected) + 1e-7;
}

struct Case {
  std::string name;
  FeatureSpec spec;
  std::vector<float> signal;
  nlohmann::json j;
};

// Returns false (after GTEST_SKIP-worthy reasons are logged) when the case's data is absent.
bool LoadCase(const nlohmann::json& c, Case* out, std::string* why) {
  out->name = c["name"];
  out->j = c;
  auto spec = FeatureSpec::FromJson(c["spec"]);  // also checks the generator's feature names
  EXPECT_TRUE(spec) << out->name << ": " << spec.error().message;
  if (!spec) return false;
  out->spec = *spec;
  if (c.contains("signal")) {
    for (const auto& v : c["signal"]) out->signal.push_back(static_cast<float>(v.get<double>()));
    return true;
  }
  const std::string shared = testing::SharedDir();
  const std::string path = shared + "/" + c["wav"]["file"].get<std::string>();
  auto wav = shared.empty() ? std::nullopt : testing::ReadFloatWav(path);
  if (!wav) {
    *why = "real-data case " + out->name + " needs " + path + " (TEND_SHARED_DIR)";
    return false;
  }
  EXPECT_EQ(wav->sample_rate, out->spec.sample_rate);
  EXPECT_EQ(wav->channels, out->spec.channels);
  out->signal = testing::PlanarWindow(*wav, c["wav"]["offset"].get<size_t>(),
                                      static_cast<size_t>(out->spec.window));
  return true;
}

TEST(Reference, FeaturesMatchNumpyScipy) {
  const nlohmann::json ref = LoadReference();
  ASSERT_TRUE(ref.contains("cases"));
  int checked = 0;
  std::string skipped;
  for (const auto& c : ref["cases"]) {
    Case k;
    std::string why;
    if (!LoadCase(c, &k, &why)) {
      skipped += why + "; ";
      continue;
    }
    auto fx = FeatureExtractor::Create(k.spec);
    ASSERT_TRUE(fx) << k.name << ": " << fx.error().message;
    std::vector<float> out(k.spec.Size());
    auto st = (*fx)->Compute(k.signal, out);
    ASSERT_TRUE(st) << k.name << ": " << st.error().message;
    const auto names = k.spec.FeatureNames();
    const auto& expected = c["expected"];
    ASSERT_EQ(expected.size(), out.size()) << k.name;
    for (size_t i = 0; i < out.size(); ++i) {
      const double e = expected[i].get<double>();
      EXPECT_NEAR(out[i], e, Tolerance(names[i], e, k.spec.log_energies))
          << k.name << " " << names[i];
    }
    ++checked;
  }
  EXPECT_GE(checked, 5);
  if (!skipped.empty()) std::cout << "note: not checked: " << skipped << "\n";
}

// The decimated squared envelope against scipy.signal.hilbert at full rate, point by point (the
// case is laid out so that the envelope length divides the window).
TEST(Reference, EnvelopeMatchesScipyHilbert) {
  const nlohmann::json ref = LoadReference();
  for (const auto& c : ref["cases"]) {
    if (!c.contains("envelope")) continue;
    Case k;
    std::string why;
    ASSERT_TRUE(LoadCase(c, &k, &why)) << why;
    auto fx = FeatureExtractor::Create(k.spec);
    ASSERT_TRUE(fx) << fx.error().message;
    std::vector<float> out(k.spec.Size());
    ASSERT_TRUE((*fx)->Compute(k.signal, out));
    const auto env = (*fx)->LastSquaredEnvelopeForTest();
    const auto& expected = c["envelope"];
    const int stride = c["envelope_stride"];
    ASSERT_EQ(static_cast<int>(env.size()) * stride, k.spec.window);
    ASSERT_EQ(env.size(), expected.size());
    double peak = 0, worst = 0;
    for (size_t j = 0; j < env.size(); ++j) {
      peak = std::max(peak, std::fabs(expected[j].get<double>()));
      worst = std::max(worst, std::fabs(env[j] - expected[j].get<double>()));
    }
    EXPECT_LT(worst, 1e-5 * peak) << "largest envelope difference " << worst << " of " << peak;
    return;
  }
  FAIL() << "reference.json has no envelope case";
}

TEST(Reference, PresetsMatchTheGeneratorsSpecs) {
  const nlohmann::json ref = LoadReference();
  for (const auto& c : ref["cases"]) {
    auto spec = FeatureSpec::FromJson(c["spec"]);
    ASSERT_TRUE(spec) << spec.error().message;
    if (c["name"] == "press_stroke") {
      EXPECT_EQ(*spec, FeatureSpec::DefaultPress());
    }
    if (c["name"] == "cwru_outer_race") {
      EXPECT_EQ(*spec, FeatureSpec::DefaultBearing(12000, 2, 2000));
    }
  }
}

// Real bearings: the envelope spectrum of the drive-end channel peaks in the band of the fault's
// characteristic frequency (outer race: BPFO 107 Hz; inner race: BPFI 162 Hz), well above the
// same band on a healthy bearing (measured margin for BPFI: 24 dB). Bands below 50 Hz (shaft
// speed, window leakage) are ignored.
class CwruTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (testing::SharedDir().empty()) GTEST_SKIP() << "no shared data directory (TEND_SHARED_DIR)";
    spec_ = FeatureSpec::DefaultBearing(12000, 2, 2000);
    auto fx = FeatureExtractor::Create(spec_);
    ASSERT_TRUE(fx) << fx.error().message;
    fx_ = std::move(*fx);
  }

  // DE-channel envelope band energies (dB) averaged over three windows.
  std::vector<double> EnvelopeBands(const std::string& file) {
    const std::string path = testing::SharedDir() + "/data/cwru/" + file;
    auto wav = testing::ReadFloatWav(path);
    if (!wav) {
      ADD_FAILURE() << "cannot read " << path;
      return {};
    }
    const auto names = spec_.FeatureNames();
    std::vector<double> bands(spec_.envelope_bands.size(), 0.0);
    std::vector<float> out(spec_.Size());
    for (size_t offset : {4000u, 24000u, 40000u}) {
      EXPECT_TRUE(fx_->Compute(testing::PlanarWindow(*wav, offset, 2000), out));
      size_t b = 0;
      for (size_t i = 0; i < names.size(); ++i) {
        if (names[i].starts_with("ch0.env_band_")) bands[b++] += out[i] / 3.0;
      }
    }
    return bands;
  }

  int Strongest(const std::vector<double>& bands) {
    int best = -1;
    for (size_t i = 0; i < bands.size(); ++i) {
      if (spec_.envelope_bands[i].lo_hz < 50) continue;
      if (best < 0 || bands[i] > bands[best]) best = static_cast<int>(i);
    }
    return best;
  }

  int BandOf(double hz) {
    for (size_t i = 0; i < spec_.envelope_bands.size(); ++i) {
      if (spec_.envelope_bands[i].lo_hz <= hz && hz < spec_.envelope_bands[i].hi_hz) return i;
    }
    return -1;
  }

  FeatureSpec spec_;
  std::unique_ptr<FeatureExtractor> fx_;
};

TEST_F(CwruTest, OuterRaceFaultShowsAtBpfo) {
  if (!testing::ReadFloatWav(testing::SharedDir() +
                             "/data/cwru/de12k_ORat6007_0hp_1797rpm_X130.wav")) {
    GTEST_SKIP() << "CWRU data not found under " << testing::SharedDir();
  }
  const auto fault = EnvelopeBands("de12k_ORat6007_0hp_1797rpm_X130.wav");
  const auto normal = EnvelopeBands("normal_0hp_1797rpm_X097_12k.wav");
  const int bpfo = BandOf(107.4);
  EXPECT_EQ(Strongest(fault), bpfo);
  // The healthy recording has a line in the BPFO band too (4x shaft speed, 120 Hz), so the margin
  // there is smaller (measured 7 dB) than at the harmonics (measured 23 and 16 dB).
  EXPECT_GT(fault[bpfo], normal[bpfo] + 4);
  EXPECT_GT(fault[BandOf(2 * 107.4)], normal[BandOf(2 * 107.4)] + 15);
  EXPECT_GT(fault[BandOf(3 * 107.4)], normal[BandOf(3 * 107.4)] + 10);
}

TEST_F(CwruTest, InnerRaceFaultShowsAtBpfi) {
  if (!testing::ReadFloatWav(testing::SharedDir() +
                             "/data/cwru/de12k_IR007_0hp_1797rpm_X105.wav")) {
    GTEST_SKIP() << "CWRU data not found under " << testing::SharedDir();
  }
  const auto fault = EnvelopeBands("de12k_IR007_0hp_1797rpm_X105.wav");
  const auto normal = EnvelopeBands("normal_0hp_1797rpm_X097_12k.wav");
  const int bpfi = BandOf(162.2);
  EXPECT_EQ(Strongest(fault), bpfi);
  EXPECT_GT(fault[bpfi], normal[bpfi] + 15);
}

}  // namespace
}  // namespace tend::dsp
