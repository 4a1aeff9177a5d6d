// FeatureSpec: presets, names, validation errors and the strict JSON round trip.
#include "dsp/feature_spec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "dsp/features.h"

namespace tend::dsp {
namespace {

std::vector<Band> B(std::initializer_list<std::pair<double, double>> l) {
  std::vector<Band> out;
  for (auto [lo, hi] : l) out.push_back({lo, hi});
  return out;
}

// Expects `spec` to fail validation with a message containing every one of `parts`.
void ExpectInvalid(const FeatureSpec& spec, std::initializer_list<const char*> parts) {
  auto st = spec.Validate();
  ASSERT_FALSE(st) << "expected a validation error containing " << *parts.begin();
  EXPECT_EQ(st.error().code, ErrorCode::kInvalidArgument);
  for (const char* p : parts) {
    EXPECT_NE(st.error().message.find(p), std::string::npos)
        << "'" << st.error().message << "' lacks '" << p << "'";
  }
}

TEST(FeatureSpec, DefaultPressLayout) {
  const FeatureSpec s = FeatureSpec::DefaultPress();
  ASSERT_TRUE(s.Validate()) << s.Validate().error().message;
  EXPECT_EQ(s.bands, B({{0, 200},
                        {200, 225},
                        {225, 250},
                        {250, 275},
                        {275, 300},
                        {300, 325},
                        {325, 350},
                        {350, 375},
                        {375, 400},
                        {400, 800},
                        {800, 1600},
                        {1600, 3200},
                        {3200, 4500}}));
  EXPECT_EQ(s.max_hz, 4500);
  EXPECT_EQ(s.envelope_demod_band, (Band{1000, 4000}));
  EXPECT_EQ(s.envelope_bands, B({{0, 100}, {100, 200}, {200, 300}, {300, 400}, {400, 500}}));
  EXPECT_EQ(s.Size(), 10u + 4u + 13u + 5u);
  const auto names = s.FeatureNames();
  ASSERT_EQ(names.size(), s.Size());
  EXPECT_EQ(names[0], "ch0.mean");
  EXPECT_EQ(names[9], "ch0.impulse_factor");
  EXPECT_EQ(names[10], "ch0.spectral_centroid");
  EXPECT_EQ(names[14], "ch0.band_0_200");
  EXPECT_EQ(names[15], "ch0.band_200_225");
  EXPECT_EQ(names[27], "ch0.env_band_0_100");
  EXPECT_EQ(names.back(), "ch0.env_band_400_500");
}

TEST(FeatureSpec, DefaultBearingStaysAtOrBelow5kHzAndSeparatesFaultFrequencies) {
  const FeatureSpec s = FeatureSpec::DefaultBearing(12000, 2, 2000);
  ASSERT_TRUE(s.Validate()) << s.Validate().error().message;
  EXPECT_EQ(s.max_hz, 5000);
  ASSERT_FALSE(s.bands.empty());
  for (const Band& b : s.bands) EXPECT_LE(b.hi_hz, 5000);
  EXPECT_EQ(s.bands.back().hi_hz, 5000);
  EXPECT_EQ(s.envelope_demod_band, (Band{2000, 4500}));
  auto band_of = [&](double hz) {
    for (size_t i = 0; i < s.envelope_bands.size(); ++i) {
      if (s.envelope_bands[i].lo_hz <= hz && hz < s.envelope_bands[i].hi_hz) return int(i);
    }
    return -1;
  };
  const double bpfo = 107.4, bsf = 141.1, bpfi = 162.2;  // SKF 6205 at 1797 rpm
  EXPECT_GE(band_of(bpfo), 0);
  EXPECT_NE(band_of(bpfo), band_of(bsf));
  EXPECT_NE(band_of(bsf), band_of(bpfi));
  EXPECT_NE(band_of(bpfo), band_of(bpfi));
  EXPECT_GE(band_of(3 * bpfo), 0);
  EXPECT_EQ(s.FeatureNames()[s.FeaturesPerChannel()], "ch1.mean");
}

TEST(FeatureSpec, PresetsAreValidAcrossRatesAndWindows) {
  for (double fs : {1000.0, 4000.0, 10000.0, 12000.0, 25600.0, 51200.0}) {
    for (int n : {64, 256, 1000, 2000, 4096}) {
      for (const FeatureSpec& s :
           {FeatureSpec::DefaultPress(fs, 2, n), FeatureSpec::DefaultBearing(fs, 2, n),
            FeatureSpec::DefaultVibration(fs, 2, n), FeatureSpec::DefaultSound(fs, 2, n)}) {
        auto st = s.Validate();
        EXPECT_TRUE(st) << fs << " Hz, " << n << ": " << st.error().message;
        EXPECT_TRUE(FeatureExtractor::Create(s)) << fs << " Hz, " << n;
        for (const Band& b : s.bands) EXPECT_LE(b.hi_hz, s.max_hz);
      }
    }
  }
}

TEST(FeatureSpec, DefaultVibrationHasEqualBandsUpToMaxHz) {
  const FeatureSpec s = FeatureSpec::DefaultVibration(25600, 2, 2560);
  ASSERT_EQ(s.bands.size(), 24u);
  EXPECT_DOUBLE_EQ(s.bands.front().lo_hz, 0);
  EXPECT_DOUBLE_EQ(s.bands.back().hi_hz, 0.45 * 25600);
  for (const Band& b : s.bands) EXPECT_NEAR(b.hi_hz - b.lo_hz, 480, 1e-9);
  EXPECT_FALSE(s.envelope);
  EXPECT_EQ(s.frame, 0);
}

TEST(FeatureSpec, DefaultSoundUsesMelSpacedFrameBands) {
  const FeatureSpec s = FeatureSpec::DefaultSound(16000, 1, 160000);
  EXPECT_EQ(s.frame, 1024);  // 64 ms at 16 kHz
  EXPECT_EQ(s.frame_hop, 512);
  EXPECT_EQ(s.Frames(), 1 + (160000 - 1024) / 512);
  ASSERT_EQ(s.frame_bands.size(), 16u);
  EXPECT_DOUBLE_EQ(s.frame_bands.back().hi_hz, 7200);
  // Mel spacing: bands widen with frequency.
  EXPECT_LT(s.frame_bands[1].hi_hz - s.frame_bands[1].lo_hz,
            s.frame_bands[14].hi_hz - s.frame_bands[14].lo_hz);
  for (const Band& b : s.frame_bands) EXPECT_GE(b.hi_hz - b.lo_hz, 2 * 16000.0 / 1024);
  EXPECT_TRUE(s.bands.empty());
  EXPECT_FALSE(s.spectral_features);
  EXPECT_EQ(s.Size(), 10u + 2 * 16 + 2);
  EXPECT_TRUE(s.FeatureNames()[10].starts_with("ch0.frame_band_0_")) << s.FeatureNames()[10];
  EXPECT_TRUE(s.FeatureNames()[26].ends_with("_max")) << s.FeatureNames()[26];
  EXPECT_EQ(s.FeatureNames().back(), "ch0.frame_flatness_max");
  EXPECT_EQ(FeatureSpec::SoundFrameLength(48000), 4096);
  EXPECT_EQ(FeatureSpec::SoundFrameLength(8000), 512);
}

TEST(FeatureSpec, FrameKeysAreWrittenOnlyInFrameMode) {
  EXPECT_FALSE(FeatureSpec::DefaultPress().ToJson().contains("frame"));
  const nlohmann::json j = FeatureSpec::DefaultSound(16000, 1, 16000).ToJson();
  EXPECT_EQ(j["frame"], 1024);
  EXPECT_EQ(j["frame_bands"].size(), 16u);
}

TEST(FeatureSpec, FrameValidationNamesTheProblem) {
  FeatureSpec s = FeatureSpec::DefaultSound(16000, 1, 8000);
  s.frame = 9000;
  ExpectInvalid(s, {"frame 9000", "at most the window"});
  s = FeatureSpec::DefaultSound(16000, 1, 8000);
  s.frame_hop = 0;
  ExpectInvalid(s, {"frame_hop 0"});
  s = FeatureSpec::DefaultSound(16000, 1, 8000);
  s.frame_bands = B({{100, 105}});
  ExpectInvalid(s, {"frame_bands[0]", "no spectrum bin"});
  s = FeatureSpec::DefaultPress();
  s.frame_flatness = true;
  ExpectInvalid(s, {"need frame > 0"});
}

TEST(FeatureSpec, BandNamesUseAPointFreeForm) {
  EXPECT_EQ(BandName("band", {12.5, 25}), "band_12p5_25");
  EXPECT_EQ(BandName("env_band", {0, 100}), "env_band_0_100");
  FeatureSpec s = FeatureSpec::DefaultPress();
  s.channel_names = {"ram"};
  EXPECT_EQ(s.FeatureNames()[1], "ram.rms");
}

TEST(FeatureSpec, DefaultChannelNamesWhenNoneGiven) {
  FeatureSpec s = FeatureSpec::DefaultPress(10000, 2);
  s.channel_names.clear();
  ASSERT_TRUE(s.Validate());
  EXPECT_EQ(s.ChannelName(1), "ch1");
  EXPECT_EQ(s.ToJson()["channel_names"], nlohmann::json({"ch0", "ch1"}));
}

TEST(FeatureSpec, ValidationErrorsNameTheProblem) {
  const FeatureSpec good = FeatureSpec::DefaultPress();
  FeatureSpec s = good;
  s.bands.push_back({4000, 4600});
  ExpectInvalid(s, {"bands[13]", "4600", "max_hz"});
  s = good;
  s.bands[2] = {300, 250};
  ExpectInvalid(s, {"bands[2]", "below"});
  s = good;
  s.bands[0] = {-5, 200};
  ExpectInvalid(s, {"bands[0]", "negative"});
  s = good;
  s.bands.push_back({201, 203});  // bins are every 5 Hz
  ExpectInvalid(s, {"bands[13]", "no spectrum bin", "5 Hz"});
  s = good;
  s.bands[1].hi_hz = std::numeric_limits<double>::quiet_NaN();
  ExpectInvalid(s, {"bands[1]", "finite"});
  s = good;
  s.window = 32;
  ExpectInvalid(s, {"window 32", "too short"});
  s = good;
  s.window = 1999;
  ExpectInvalid(s, {"window 1999", "even"});
  s = good;
  s.window = 1 << 30;
  ExpectInvalid(s, {"window 1073741824", "too long"});
  s = good;
  s.channels = 0;
  ExpectInvalid(s, {"channels 0"});
  s = good;
  s.channel_names = {"a", "b"};
  ExpectInvalid(s, {"channel_names", "2 names for 1 channels"});
  s = FeatureSpec::DefaultPress(10000, 2);
  s.channel_names = {"x", "x"};
  ExpectInvalid(s, {"channel_names[1]", "twice"});
  s = good;
  s.channel_names = {"a.b"};
  ExpectInvalid(s, {"channel_names[0]", "a.b"});
  s = good;
  s.window_fn = "kaiser";
  ExpectInvalid(s, {"window_fn", "kaiser"});
  s = good;
  s.max_hz = 6000;
  ExpectInvalid(s, {"max_hz 6000", "Nyquist"});
  s = good;
  s.sample_rate = 0;
  ExpectInvalid(s, {"sample_rate 0"});
  s = good;
  s.sample_rate = std::numeric_limits<double>::infinity();
  ExpectInvalid(s, {"sample_rate"});
  s = good;
  s.envelope_bands.push_back({2900, 3100});  // demod bandwidth is 3000 Hz
  ExpectInvalid(s, {"envelope_bands[5]", "3100", "bandwidth"});
  s = good;
  s.envelope_demod_band = {0, 2000};
  ExpectInvalid(s, {"envelope_demod_band", "0 Hz"});
  s = good;
  s.envelope_demod_band = {3000, 5000};
  ExpectInvalid(s, {"envelope_demod_band", "5000", "max_hz"});
  s = good;
  s.envelope_bands.clear();
  ExpectInvalid(s, {"envelope_bands", "empty"});
  s = good;
  s.energy_floor = 0;
  ExpectInvalid(s, {"energy_floor"});
  s = good;
  s.time_features = s.spectral_features = s.envelope = false;
  s.bands.clear();
  ExpectInvalid(s, {"no features"});
  // Switching the envelope off makes its bands irrelevant.
  s = good;
  s.envelope = false;
  s.envelope_bands.clear();
  EXPECT_TRUE(s.Validate());
  EXPECT_EQ(s.Size(), 10u + 4u + 13u);
}

TEST(FeatureSpec, JsonRoundTrip) {
  FeatureSpec custom = FeatureSpec::DefaultBearing(12000, 2, 2048);
  custom.channel_names = {"de", "fe"};
  custom.window_fn = "blackman";
  custom.bands = B({{0, 12.5}, {12.5, 1000}, {1000, 4000}});
  custom.log_energies = false;
  custom.energy_floor = 1e-9;
  for (const FeatureSpec& s :
       {FeatureSpec::DefaultPress(), FeatureSpec::DefaultBearing(), custom,
        FeatureSpec::DefaultPress(25600, 3, 4096), FeatureSpec::DefaultVibration(25600, 2, 2560),
        FeatureSpec::DefaultSound(16000, 1, 160000)}) {
    const nlohmann::json j = s.ToJson();
    EXPECT_EQ(j["feature_names"].size(), s.Size());
    auto back = FeatureSpec::FromJson(j);
    ASSERT_TRUE(back) << back.error().message;
    EXPECT_EQ(*back, s);
    // Through text as it is stored in the model metadata.
    auto reparsed = FeatureSpec::FromJson(nlohmann::json::parse(j.dump()));
    ASSERT_TRUE(reparsed) << reparsed.error().message;
    EXPECT_EQ(*reparsed, s);
    EXPECT_EQ(reparsed->FeatureNames(), s.FeatureNames());
  }
}

TEST(FeatureSpec, FromJsonFillsMissingKeysFromThePreset) {
  auto s = FeatureSpec::FromJson({{"preset", "bearing"}, {"channels", 2}});
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(*s, FeatureSpec::DefaultBearing(12000, 2, 2000));
  s = FeatureSpec::FromJson(nlohmann::json::object());
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(*s, FeatureSpec::DefaultPress());
  s = FeatureSpec::FromJson({{"sample_rate", 20000}, {"window", 4000}, {"envelope", false}});
  ASSERT_TRUE(s) << s.error().message;
  FeatureSpec expected = FeatureSpec::DefaultPress(20000, 1, 4000);
  expected.envelope = false;
  EXPECT_EQ(*s, expected);
}

void ExpectJsonError(const nlohmann::json& j, std::initializer_list<const char*> parts) {
  auto s = FeatureSpec::FromJson(j);
  ASSERT_FALSE(s) << j.dump();
  for (const char* p : parts) {
    EXPECT_NE(s.error().message.find(p), std::string::npos)
        << "'" << s.error().message << "' lacks '" << p << "'";
  }
}

TEST(FeatureSpec, FromJsonIsStrict) {
  ExpectJsonError({{"bandz", nlohmann::json::array()}}, {"unknown key 'bandz'"});
  ExpectJsonError({{"window", "2000"}}, {"'window'", "integer", "string"});
  ExpectJsonError({{"window", 2000.5}}, {"'window'", "integer"});
  ExpectJsonError({{"sample_rate", true}}, {"'sample_rate'", "number"});
  ExpectJsonError({{"time_features", 1}}, {"'time_features'", "true or false"});
  ExpectJsonError({{"window_fn", 3}}, {"'window_fn'", "string"});
  ExpectJsonError({{"bands", {{1, 2, 3}}}}, {"'bands[0]'", "[lo_hz, hi_hz]"});
  ExpectJsonError({{"bands", {{0, 200}, {"a", 300}}}}, {"'bands[1]'"});
  ExpectJsonError({{"bands", 5}}, {"'bands'", "array"});
  ExpectJsonError({{"envelope_demod_band", {1000}}}, {"'envelope_demod_band'"});
  ExpectJsonError({{"envelope_bands", {{0, "x"}}}}, {"'envelope_bands[0]'"});
  ExpectJsonError({{"channel_names", {"a", 3}}}, {"'channel_names[1]'", "string"});
  ExpectJsonError({{"feature_names", "ch0.rms"}}, {"'feature_names'"});
  ExpectJsonError(nlohmann::json::array(), {"JSON object"});
  ExpectJsonError({{"preset", "lathe"}}, {"'preset'", "lathe"});
  ExpectJsonError({{"version", 2}}, {"'version' 2"});
  ExpectJsonError({{"window", 10}}, {"'window' 10", "too short"});
  ExpectJsonError({{"channels", -1}}, {"'channels' -1"});
  ExpectJsonError({{"sample_rate", -10}}, {"'sample_rate'"});
  // Valid JSON, invalid spec: the validation message comes through with context.
  ExpectJsonError({{"max_hz", 4000}}, {"feature spec: bands[12]", "max_hz"});
}

TEST(FeatureSpec, FromJsonRefusesFeatureNamesThatDisagree) {
  nlohmann::json j = FeatureSpec::DefaultPress().ToJson();
  j["feature_names"][3] = "ch0.peak2peak";
  ExpectJsonError(j, {"'feature_names'", "index 3", "ch0.peak2peak", "ch0.peak_to_peak"});
  j = FeatureSpec::DefaultPress().ToJson();
  j["feature_names"].erase(j["feature_names"].size() - 1);
  ExpectJsonError(j, {"'feature_names'", "31 vs 32"});
  // A spec whose vector changed (one band less) no longer matches the names trained with it.
  j = FeatureSpec::DefaultPress().ToJson();
  j["bands"].erase(0);
  ExpectJsonError(j, {"'feature_names'"});
}

}  // namespace
}  // namespace tend::dsp
