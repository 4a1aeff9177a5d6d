#include "dsp/feature_spec.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string_view>

#include "dsp/spectrum_bins.h"
#include "dsp/window.h"

namespace tend::dsp {
namespace {

constexpr int kFormatVersion = 1;
constexpr int kMinWindow = 64;
constexpr int kMaxWindow = 1 << 22;  // 4 Mi samples: far beyond any window, small enough to plan
constexpr int kMaxChannels = 4096;

// Keeps only bands that contain at least one bin, so presets built for unusual rates or short
// windows stay valid instead of failing on a band narrower than the resolution.
std::vector<Band> KeepResolvable(const std::vector<Band>& bands, double bin_hz, int max_bin) {
  std::vector<Band> kept;
  for (const Band& b : bands) {
    const BinRange r = BandBins(b, bin_hz, max_bin);
    if (r.end > r.begin) kept.push_back(b);
  }
  return kept;
}

// Smallest multiple of `step` that is >= max(step, 2 bins), so each band spans at least 2 bins.
double BandWidthFor(double step, double bin_hz) {
  return step * std::max(1.0, std::ceil(2.0 * bin_hz / step));
}

std::vector<std::string> DefaultChannelNames(int channels) {
  std::vector<std::string> names;
  for (int c = 0; c < channels; ++c) names.push_back("ch" + std::to_string(c));
  return names;
}

std::string FormatHz(double hz) {
  std::string s = fmt::format("{}", hz);  // shortest round-trip form: 200, 12.5
  std::replace(s.begin(), s.end(), '.', 'p');
  return s;
}

bool ValidChannelName(const std::string& name) {
  if (name.empty()) return false;
  return std::all_of(name.begin(), name.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-';
  });
}

std::string BandText(const Band& b) { return fmt::format("[{}, {}) Hz", b.lo_hz, b.hi_hz); }

Status ValidateBand(const std::string& what, const Band& b, double bin_hz, double max_hz,
                    int max_bin, const char* limit_name) {
  if (!std::isfinite(b.lo_hz) || !std::isfinite(b.hi_hz)) {
    return Fail(Error::Invalid(what + ": band edges must be finite numbers"));
  }
  if (b.lo_hz < 0) {
    return Fail(Error::Invalid(fmt::format("{}: lo_hz {} is negative", what, b.lo_hz)));
  }
  if (b.lo_hz >= b.hi_hz) {
    return Fail(
        Error::Invalid(fmt::format("{}: lo_hz {} must be below hi_hz {}", what, b.lo_hz, b.hi_hz)));
  }
  if (b.hi_hz > max_hz + 1e-9) {
    return Fail(Error::Invalid(
        fmt::format("{}: hi_hz {} is above {} {}", what, b.hi_hz, limit_name, max_hz)));
  }
  const BinRange r = BandBins(b, bin_hz, max_bin);
  if (r.end <= r.begin) {
    return Fail(Error::Invalid(
        fmt::format("{}: {} contains no spectrum bin (bins are every {} Hz = sample_rate/window)",
                    what, BandText(b), bin_hz)));
  }
  return Ok();
}

}  // namespace

const std::vector<std::string>& TimeFeatureNames() {
  static const std::vector<std::string> kNames = {
      "mean",         "rms",      "peak",     "peak_to_peak", "std",
      "crest_factor", "kurtosis", "skewness", "shape_factor", "impulse_factor"};
  return kNames;
}

const std::vector<std::string>& SpectralFeatureNames() {
  static const std::vector<std::string> kNames = {"spectral_centroid", "spectral_spread",
                                                  "dominant_freq", "spectral_kurtosis"};
  return kNames;
}

std::string BandName(const std::string& prefix, const Band& band) {
  return prefix + "_" + FormatHz(band.lo_hz) + "_" + FormatHz(band.hi_hz);
}

FeatureSpec FeatureSpec::DefaultPress(double sample_rate, int channels, int window) {
  FeatureSpec s;
  s.sample_rate = sample_rate;
  s.channels = channels;
  s.window = window;
  s.channel_names = DefaultChannelNames(channels);
  s.max_hz = 0.45 * sample_rate;
  const double mx = s.max_hz;
  const double bin_hz = s.BinHz();
  const int max_bin = UsableMaxBin(mx, bin_hz, window);

  std::vector<Band> bands;
  bands.push_back({0, std::min(200.0, mx)});
  const double fine = BandWidthFor(25, bin_hz);
  for (double lo = 200; lo < 400 && lo < mx; lo += fine) {
    bands.push_back({lo, std::min({lo + fine, 400.0, mx})});
  }
  for (double lo = 400; lo < mx; lo *= 2) {
    bands.push_back({lo, std::min(2 * lo, mx)});
  }
  s.bands = KeepResolvable(bands, bin_hz, max_bin);

  s.envelope_demod_band = {std::min(1000.0, 0.25 * mx), std::min(4000.0, mx)};
  const double demod_bw = s.envelope_demod_band.hi_hz - s.envelope_demod_band.lo_hz;
  const double env_step = BandWidthFor(100, bin_hz);
  std::vector<Band> env;
  for (double lo = 0; lo + env_step <= std::min(500.0, demod_bw) + 1e-9; lo += env_step) {
    env.push_back({lo, lo + env_step});
  }
  s.envelope_bands = KeepResolvable(env, bin_hz, window / 2);
  s.envelope = !s.envelope_bands.empty();
  return s;
}

FeatureSpec FeatureSpec::DefaultBearing(double sample_rate, int channels, int window) {
  FeatureSpec s;
  s.sample_rate = sample_rate;
  s.channels = channels;
  s.window = window;
  s.channel_names = DefaultChannelNames(channels);
  s.max_hz = std::min(0.45 * sample_rate, 5000.0);
  const double mx = s.max_hz;
  const double bin_hz = s.BinHz();
  const int max_bin = UsableMaxBin(mx, bin_hz, window);

  std::vector<Band> bands;
  const double step = BandWidthFor(500, bin_hz);
  for (double lo = 0; lo < mx; lo += step) bands.push_back({lo, std::min(lo + step, mx)});
  s.bands = KeepResolvable(bands, bin_hz, max_bin);

  s.envelope_demod_band = {std::min(2000.0, 0.4 * mx), std::min(4500.0, mx)};
  const double demod_bw = s.envelope_demod_band.hi_hz - s.envelope_demod_band.lo_hz;
  const double env_step = BandWidthFor(25, bin_hz);
  std::vector<Band> env;
  for (double lo = 0; lo + env_step <= std::min(500.0, demod_bw) + 1e-9; lo += env_step) {
    env.push_back({lo, lo + env_step});
  }
  s.envelope_bands = KeepResolvable(env, bin_hz, window / 2);
  s.envelope = !s.envelope_bands.empty();
  return s;
}

FeatureSpec FeatureSpec::DefaultVibration(double sample_rate, int channels, int window) {
  FeatureSpec s;
  s.sample_rate = sample_rate;
  s.channels = channels;
  s.window = window;
  s.channel_names = DefaultChannelNames(channels);
  s.max_hz = 0.45 * sample_rate;
  const double bin_hz = s.BinHz();
  const int max_bin = UsableMaxBin(s.max_hz, bin_hz, window);
  constexpr int kBands = 24;
  const double step = std::max(s.max_hz / kBands, 2 * bin_hz);
  std::vector<Band> bands;
  for (int i = 0; i < kBands && i * step < s.max_hz - 1e-9; ++i) {
    bands.push_back({i * step, std::min((i + 1) * step, s.max_hz)});
  }
  s.bands = KeepResolvable(bands, bin_hz, max_bin);
  s.envelope = false;
  s.envelope_bands.clear();
  s.envelope_demod_band = {};
  return s;
}

int FeatureSpec::SoundFrameLength(double sample_rate) {
  const double target = 0.064 * sample_rate;
  int f = kMinWindow;
  while (f < (1 << 16) &&
         std::fabs(std::log2(2.0 * f / target)) < std::fabs(std::log2(f / target))) {
    f *= 2;
  }
  return f;
}

namespace {

double HzToMel(double hz) { return 2595.0 * std::log10(1.0 + hz / 700.0); }
double MelToHz(double mel) { return 700.0 * (std::pow(10.0, mel / 2595.0) - 1.0); }

// `count` mel-spaced bands over [0, max_hz], edges rounded to whole Hz; a band narrower than
// 2 frame bins is merged into the next one so that every band is resolvable.
std::vector<Band> MelBands(int count, double max_hz, double bin_hz) {
  std::vector<double> edges;
  const double top = HzToMel(max_hz);
  for (int i = 0; i <= count; ++i) {
    double hz = i == count ? max_hz : std::round(MelToHz(top * i / count));
    if (!edges.empty() && hz - edges.back() < 2 * bin_hz && i < count) continue;
    if (i == count && edges.size() > 1 && hz - edges.back() < 2 * bin_hz) edges.pop_back();
    edges.push_back(hz);
  }
  std::vector<Band> bands;
  for (size_t i = 0; i + 1 < edges.size(); ++i) bands.push_back({edges[i], edges[i + 1]});
  return bands;
}

}  // namespace

FeatureSpec FeatureSpec::DefaultSound(double sample_rate, int channels, int window) {
  FeatureSpec s;
  s.sample_rate = sample_rate;
  s.channels = channels;
  s.window = window;
  s.channel_names = DefaultChannelNames(channels);
  s.max_hz = 0.45 * sample_rate;
  s.spectral_features = false;
  s.bands.clear();
  s.envelope = false;
  s.envelope_bands.clear();
  s.envelope_demod_band = {};
  s.frame = std::min(SoundFrameLength(sample_rate), window - window % 2);
  s.frame_hop = s.frame / 2;
  const double frame_bin_hz = sample_rate / s.frame;
  s.frame_bands = KeepResolvable(MelBands(16, s.max_hz, frame_bin_hz), frame_bin_hz,
                                 UsableMaxBin(s.max_hz, frame_bin_hz, s.frame));
  s.frame_flatness = true;
  return s;
}

double FeatureSpec::UsableMaxHz() const { return max_hz > 0 ? max_hz : 0.45 * sample_rate; }

std::string FeatureSpec::ChannelName(int c) const {
  if (c >= 0 && static_cast<size_t>(c) < channel_names.size()) return channel_names[c];
  return "ch" + std::to_string(c);
}

size_t FeatureSpec::FeaturesPerChannel() const {
  size_t n = 0;
  if (time_features) n += TimeFeatureNames().size();
  if (spectral_features) n += SpectralFeatureNames().size();
  n += bands.size();
  if (envelope) n += envelope_bands.size();
  if (frame > 0) n += 2 * frame_bands.size() + (frame_flatness ? 2 : 0);
  return n;
}

int FeatureSpec::Frames() const {
  if (frame <= 0 || frame_hop <= 0 || frame > window) return 0;
  return 1 + (window - frame) / frame_hop;
}

size_t FeatureSpec::Size() const {
  return channels > 0 ? FeaturesPerChannel() * static_cast<size_t>(channels) : 0;
}

std::vector<std::string> FeatureSpec::FeatureNames() const {
  std::vector<std::string> names;
  names.reserve(Size());
  for (int c = 0; c < channels; ++c) {
    const std::string p = ChannelName(c) + ".";
    if (time_features) {
      for (const auto& n : TimeFeatureNames()) names.push_back(p + n);
    }
    if (spectral_features) {
      for (const auto& n : SpectralFeatureNames()) names.push_back(p + n);
    }
    for (const Band& b : bands) names.push_back(p + BandName("band", b));
    if (envelope) {
      for (const Band& b : envelope_bands) names.push_back(p + BandName("env_band", b));
    }
    if (frame > 0) {
      for (const Band& b : frame_bands) names.push_back(p + BandName("frame_band", b) + "_mean");
      for (const Band& b : frame_bands) names.push_back(p + BandName("frame_band", b) + "_max");
      if (frame_flatness) {
        names.push_back(p + "frame_flatness_mean");
        names.push_back(p + "frame_flatness_max");
      }
    }
  }
  return names;
}

Status FeatureSpec::Validate() const {
  if (!std::isfinite(sample_rate) || sample_rate <= 0) {
    return Fail(
        Error::Invalid(fmt::format("sample_rate {} must be a positive number", sample_rate)));
  }
  if (channels < 1 || channels > kMaxChannels) {
    return Fail(Error::Invalid(
        fmt::format("channels {} must be between 1 and {}", channels, kMaxChannels)));
  }
  if (window < kMinWindow) {
    return Fail(Error::Invalid(fmt::format(
        "window {} is too short: at least {} samples per channel", window, kMinWindow)));
  }
  if (window > kMaxWindow) {
    return Fail(Error::Invalid(
        fmt::format("window {} is too long: at most {} samples per channel", window, kMaxWindow)));
  }
  if (window % 2 != 0) {
    return Fail(Error::Invalid(fmt::format("window {} must be even (real FFT)", window)));
  }
  if (!channel_names.empty()) {
    if (channel_names.size() != static_cast<size_t>(channels)) {
      return Fail(Error::Invalid(fmt::format("channel_names has {} names for {} channels",
                                             channel_names.size(), channels)));
    }
    std::set<std::string> seen;
    for (size_t i = 0; i < channel_names.size(); ++i) {
      if (!ValidChannelName(channel_names[i])) {
        return Fail(Error::Invalid(
            fmt::format("channel_names[{}]: '{}' must be non-empty letters, digits, '_' or '-'", i,
                        channel_names[i])));
      }
      if (!seen.insert(channel_names[i]).second) {
        return Fail(Error::Invalid(
            fmt::format("channel_names[{}]: '{}' is used twice", i, channel_names[i])));
      }
    }
  }
  TEND_RETURN_NOT_OK(ParseWindowFn(window_fn));
  const double nyquist = sample_rate / 2;
  if (!std::isfinite(max_hz) || max_hz < 0 || max_hz > nyquist) {
    return Fail(Error::Invalid(fmt::format(
        "max_hz {} must be between 0 (auto) and the Nyquist frequency {}", max_hz, nyquist)));
  }
  if (!std::isfinite(energy_floor) || energy_floor <= 0) {
    return Fail(Error::Invalid(fmt::format(
        "energy_floor {} must be a positive number (log of band energies)", energy_floor)));
  }
  const double mx = UsableMaxHz();
  const double bin_hz = BinHz();
  const int max_bin = UsableMaxBin(mx, bin_hz, window);
  for (size_t i = 0; i < bands.size(); ++i) {
    TEND_RETURN_NOT_OK(ValidateBand(fmt::format("bands[{}]", i), bands[i], bin_hz, mx, max_bin,
                                    "max_hz (anti-alias limit)"));
  }
  if (envelope) {
    const Band& d = envelope_demod_band;
    TEND_RETURN_NOT_OK(
        ValidateBand("envelope_demod_band", d, bin_hz, mx, max_bin, "max_hz (anti-alias limit)"));
    const BinRange r = BandBins(d, bin_hz, max_bin);
    if (r.begin < 1 || r.end - r.begin < 2) {
      return Fail(Error::Invalid(
          fmt::format("envelope_demod_band: {} must exclude 0 Hz and span at least 2 spectrum bins "
                      "({} Hz each)",
                      BandText(d), bin_hz)));
    }
    if (envelope_bands.empty()) {
      return Fail(Error::Invalid("envelope_bands: empty while envelope is on"));
    }
    const double bw = d.hi_hz - d.lo_hz;
    for (size_t i = 0; i < envelope_bands.size(); ++i) {
      TEND_RETURN_NOT_OK(ValidateBand(fmt::format("envelope_bands[{}]", i), envelope_bands[i],
                                      bin_hz, bw, window / 2, "the envelope_demod_band bandwidth"));
    }
  }
  TEND_RETURN_NOT_OK(ValidateFrames());
  if (FeaturesPerChannel() == 0) {
    return Fail(
        Error::Invalid("the spec selects no features (time, spectral, bands, envelope, frames)"));
  }
  return Ok();
}

Status FeatureSpec::ValidateFrames() const {
  if (frame == 0) {
    if (!frame_bands.empty() || frame_flatness) {
      return Fail(Error::Invalid("frame_bands/frame_flatness need frame > 0 (frame length)"));
    }
    return Ok();
  }
  if (frame < 16 || frame % 2 != 0 || frame > window) {
    return Fail(Error::Invalid(fmt::format(
        "frame {} must be even, at least 16 and at most the window ({} samples)", frame, window)));
  }
  if (frame_hop < 1 || frame_hop > frame) {
    return Fail(Error::Invalid(
        fmt::format("frame_hop {} must be between 1 and the frame length {}", frame_hop, frame)));
  }
  if (frame_bands.empty() && !frame_flatness) {
    return Fail(Error::Invalid("frame mode selects no features (frame_bands, frame_flatness)"));
  }
  const double bin_hz = sample_rate / frame;
  const double mx = UsableMaxHz();
  const int max_bin = UsableMaxBin(mx, bin_hz, frame);
  for (size_t i = 0; i < frame_bands.size(); ++i) {
    TEND_RETURN_NOT_OK(ValidateBand(fmt::format("frame_bands[{}]", i), frame_bands[i], bin_hz, mx,
                                    max_bin, "max_hz (anti-alias limit)"));
  }
  if (frame_flatness && max_bin < 2) {
    return Fail(Error::Invalid("frame_flatness needs at least 2 frame bins below max_hz"));
  }
  return Ok();
}

nlohmann::json FeatureSpec::ToJson() const {
  auto bands_json = [](const std::vector<Band>& bs) {
    nlohmann::json a = nlohmann::json::array();
    for (const Band& b : bs) a.push_back({b.lo_hz, b.hi_hz});
    return a;
  };
  std::vector<std::string> names;
  for (int c = 0; c < channels; ++c) names.push_back(ChannelName(c));
  nlohmann::json j;
  j["version"] = kFormatVersion;
  j["sample_rate"] = sample_rate;
  j["channels"] = channels;
  j["window"] = window;
  j["channel_names"] = names;
  j["window_fn"] = window_fn;
  j["time_features"] = time_features;
  j["spectral_features"] = spectral_features;
  j["bands"] = bands_json(bands);
  j["envelope"] = envelope;
  j["envelope_demod_band"] = {envelope_demod_band.lo_hz, envelope_demod_band.hi_hz};
  j["envelope_bands"] = bands_json(envelope_bands);
  j["max_hz"] = UsableMaxHz();
  j["log_energies"] = log_energies;
  j["energy_floor"] = energy_floor;
  if (frame > 0) {
    j["frame"] = frame;
    j["frame_hop"] = frame_hop;
    j["frame_bands"] = bands_json(frame_bands);
    j["frame_flatness"] = frame_flatness;
  }
  j["feature_names"] = FeatureNames();
  return j;
}

namespace {

Result<double> GetNumber(const nlohmann::json& v, const std::string& key) {
  if (!v.is_number()) {
    return Fail(Error::Invalid(
        fmt::format("feature spec: '{}' must be a number, got {}", key, v.type_name())));
  }
  return v.get<double>();
}

Result<int> GetInt(const nlohmann::json& v, const std::string& key) {
  if (!v.is_number_integer()) {
    return Fail(Error::Invalid(
        fmt::format("feature spec: '{}' must be an integer, got {}", key, v.type_name())));
  }
  const auto x = v.get<int64_t>();
  if (x < -(int64_t{1} << 30) || x > (int64_t{1} << 30)) {
    return Fail(Error::Invalid(fmt::format("feature spec: '{}' is out of range: {}", key, x)));
  }
  return static_cast<int>(x);
}

Result<bool> GetBool(const nlohmann::json& v, const std::string& key) {
  if (!v.is_boolean()) {
    return Fail(Error::Invalid(
        fmt::format("feature spec: '{}' must be true or false, got {}", key, v.type_name())));
  }
  return v.get<bool>();
}

Result<std::string> GetString(const nlohmann::json& v, const std::string& key) {
  if (!v.is_string()) {
    return Fail(Error::Invalid(
        fmt::format("feature spec: '{}' must be a string, got {}", key, v.type_name())));
  }
  return v.get<std::string>();
}

Result<Band> GetBand(const nlohmann::json& v, const std::string& key) {
  if (!v.is_array() || v.size() != 2 || !v[0].is_number() || !v[1].is_number()) {
    return Fail(
        Error::Invalid(fmt::format("feature spec: '{}' must be [lo_hz, hi_hz], two numbers", key)));
  }
  return Band{v[0].get<double>(), v[1].get<double>()};
}

Result<std::vector<Band>> GetBands(const nlohmann::json& v, const std::string& key) {
  if (!v.is_array()) {
    return Fail(Error::Invalid(fmt::format(
        "feature spec: '{}' must be an array of [lo_hz, hi_hz], got {}", key, v.type_name())));
  }
  std::vector<Band> out;
  for (size_t i = 0; i < v.size(); ++i) {
    TEND_ASSIGN_OR_RETURN(Band b, GetBand(v[i], fmt::format("{}[{}]", key, i)));
    out.push_back(b);
  }
  return out;
}

Result<std::vector<std::string>> GetStrings(const nlohmann::json& v, const std::string& key) {
  if (!v.is_array()) {
    return Fail(Error::Invalid(
        fmt::format("feature spec: '{}' must be an array of strings, got {}", key, v.type_name())));
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < v.size(); ++i) {
    TEND_ASSIGN_OR_RETURN(std::string s, GetString(v[i], fmt::format("{}[{}]", key, i)));
    out.push_back(std::move(s));
  }
  return out;
}

Status ReadFrameKeys(const nlohmann::json& j, FeatureSpec& s) {
  if (j.contains("frame")) {
    TEND_ASSIGN_OR_RETURN(s.frame, GetInt(j["frame"], "frame"));
  }
  if (j.contains("frame_hop")) {
    TEND_ASSIGN_OR_RETURN(s.frame_hop, GetInt(j["frame_hop"], "frame_hop"));
  }
  if (j.contains("frame_bands")) {
    TEND_ASSIGN_OR_RETURN(s.frame_bands, GetBands(j["frame_bands"], "frame_bands"));
  }
  if (j.contains("frame_flatness")) {
    TEND_ASSIGN_OR_RETURN(s.frame_flatness, GetBool(j["frame_flatness"], "frame_flatness"));
  }
  return Ok();
}

Result<FeatureSpec> FromJsonImpl(const nlohmann::json& j) {
  if (!j.is_object()) {
    return Fail(
        Error::Invalid(fmt::format("feature spec: expected a JSON object, got {}", j.type_name())));
  }
  static const std::set<std::string_view> kKeys = {
      "version",        "preset",        "sample_rate",
      "channels",       "window",        "channel_names",
      "window_fn",      "time_features", "spectral_features",
      "bands",          "envelope",      "envelope_demod_band",
      "envelope_bands", "max_hz",        "log_energies",
      "energy_floor",   "feature_names", "frame",
      "frame_hop",      "frame_bands",   "frame_flatness"};
  for (const auto& [key, value] : j.items()) {
    if (!kKeys.contains(key)) {
      return Fail(Error::Invalid(fmt::format("feature spec: unknown key '{}'", key)));
    }
  }
  if (j.contains("version")) {
    TEND_ASSIGN_OR_RETURN(int version, GetInt(j["version"], "version"));
    if (version != kFormatVersion) {
      return Fail(Error::Unsupported(
          fmt::format("feature spec: 'version' {} is not supported (this build reads {})", version,
                      kFormatVersion)));
    }
  }
  // The shape of the window decides the preset's bands, so read it first.
  std::string preset = "press";
  if (j.contains("preset")) {
    TEND_ASSIGN_OR_RETURN(preset, GetString(j["preset"], "preset"));
  }
  const bool bearing = preset == "bearing";
  if (!bearing && preset != "press" && preset != "vibration" && preset != "sound") {
    return Fail(Error::Invalid(fmt::format(
        "feature spec: 'preset' must be \"press\", \"bearing\", \"vibration\" or \"sound\", "
        "got \"{}\"",
        preset)));
  }
  double sample_rate = bearing ? 12000 : 10000;
  int channels = 1;
  int window = 2000;
  if (j.contains("sample_rate")) {
    TEND_ASSIGN_OR_RETURN(sample_rate, GetNumber(j["sample_rate"], "sample_rate"));
  }
  if (j.contains("channels")) {
    TEND_ASSIGN_OR_RETURN(channels, GetInt(j["channels"], "channels"));
  }
  if (j.contains("window")) {
    TEND_ASSIGN_OR_RETURN(window, GetInt(j["window"], "window"));
  }
  // Presets compute band layouts from these; refuse nonsense before handing it over.
  if (!std::isfinite(sample_rate) || sample_rate <= 0) {
    return Fail(Error::Invalid(
        fmt::format("feature spec: 'sample_rate' {} must be a positive number", sample_rate)));
  }
  if (channels < 1 || channels > kMaxChannels) {
    return Fail(Error::Invalid(fmt::format("feature spec: 'channels' {} must be between 1 and {}",
                                           channels, kMaxChannels)));
  }
  if (window < kMinWindow) {
    return Fail(Error::Invalid(fmt::format(
        "feature spec: 'window' {} is too short: at least {} samples", window, kMinWindow)));
  }
  FeatureSpec s = bearing ? FeatureSpec::DefaultBearing(sample_rate, channels, window)
                  : preset == "vibration"
                      ? FeatureSpec::DefaultVibration(sample_rate, channels, window)
                  : preset == "sound" ? FeatureSpec::DefaultSound(sample_rate, channels, window)
                                      : FeatureSpec::DefaultPress(sample_rate, channels, window);
  if (j.contains("channel_names")) {
    TEND_ASSIGN_OR_RETURN(s.channel_names, GetStrings(j["channel_names"], "channel_names"));
  }
  if (j.contains("window_fn")) {
    TEND_ASSIGN_OR_RETURN(s.window_fn, GetString(j["window_fn"], "window_fn"));
  }
  if (j.contains("time_features")) {
    TEND_ASSIGN_OR_RETURN(s.time_features, GetBool(j["time_features"], "time_features"));
  }
  if (j.contains("spectral_features")) {
    TEND_ASSIGN_OR_RETURN(s.spectral_features,
                          GetBool(j["spectral_features"], "spectral_features"));
  }
  if (j.contains("bands")) {
    TEND_ASSIGN_OR_RETURN(s.bands, GetBands(j["bands"], "bands"));
  }
  if (j.contains("envelope")) {
    TEND_ASSIGN_OR_RETURN(s.envelope, GetBool(j["envelope"], "envelope"));
  }
  if (j.contains("envelope_demod_band")) {
    TEND_ASSIGN_OR_RETURN(s.envelope_demod_band,
                          GetBand(j["envelope_demod_band"], "envelope_demod_band"));
  }
  if (j.contains("envelope_bands")) {
    TEND_ASSIGN_OR_RETURN(s.envelope_bands, GetBands(j["envelope_bands"], "envelope_bands"));
  }
  if (j.contains("max_hz")) {
    TEND_ASSIGN_OR_RETURN(s.max_hz, GetNumber(j["max_hz"], "max_hz"));
  }
  if (j.contains("log_energies")) {
    TEND_ASSIGN_OR_RETURN(s.log_energies, GetBool(j["log_energies"], "log_energies"));
  }
  if (j.contains("energy_floor")) {
    TEND_ASSIGN_OR_RETURN(s.energy_floor, GetNumber(j["energy_floor"], "energy_floor"));
  }
  TEND_RETURN_NOT_OK(ReadFrameKeys(j, s));
  if (auto st = s.Validate(); !st) return Fail(st.error().Wrap("feature spec"));
  if (j.contains("feature_names")) {
    TEND_ASSIGN_OR_RETURN(auto names, GetStrings(j["feature_names"], "feature_names"));
    const auto expected = s.FeatureNames();
    if (names != expected) {
      size_t i = 0;
      while (i < names.size() && i < expected.size() && names[i] == expected[i]) ++i;
      return Fail(Error::Invalid(fmt::format(
          "feature spec: 'feature_names' disagrees with the spec at index {} ('{}' vs computed "
          "'{}'; {} vs {} names)",
          i, i < names.size() ? names[i] : "<end>", i < expected.size() ? expected[i] : "<end>",
          names.size(), expected.size())));
    }
  }
  return s;
}

}  // namespace

Result<FeatureSpec> FeatureSpec::FromJson(const nlohmann::json& j) {
  try {
    return FromJsonImpl(j);
  } catch (const nlohmann::json::exception& e) {
    return Fail(Error::Invalid(std::string("feature spec: ") + e.what()));
  }
}

}  // namespace tend::dsp
