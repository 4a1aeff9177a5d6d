#include "agent/input_profile.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "sources/windower.h"

namespace tend::agent {
namespace {

bool IsSim(const InputSpec& in) { return in.source.rfind("sim", 0) == 0; }
bool IsStream(const InputSpec& in) { return in.source == "-" || in.source.rfind("fd:", 0) == 0; }

int Even(double samples) { return std::max(16, 2 * static_cast<int>(std::floor(samples / 2))); }

// Seconds of signal an input holds (its range applied), or -1 when unknown (stdin, endless).
Result<double> InputSeconds(const InputSpec& in, const sources::SourceOptions& so) {
  if (IsSim(in) || IsStream(in)) return -1.0;
  TEND_ASSIGN_OR_RETURN(auto src, sources::OpenSource(in.source, so));
  const auto& info = src->info();
  if (info.total_frames < 0) return -1.0;
  double end = static_cast<double>(info.total_frames) / info.sample_rate;
  if (in.end_s >= 0) end = std::min(end, in.end_s);
  return std::max(0.0, end - in.start_s);
}

std::string Describe(const dsp::FeatureSpec& s, const std::string& name) {
  std::vector<std::string> parts;
  if (s.time_features) parts.push_back("time statistics");
  if (s.spectral_features) parts.push_back("spectral shape");
  if (!s.bands.empty()) {
    parts.push_back(fmt::format("{} bands up to {:g} Hz", s.bands.size(), s.bands.back().hi_hz));
  }
  if (s.envelope) parts.push_back(fmt::format("{} envelope bands", s.envelope_bands.size()));
  if (s.frame > 0) {
    parts.push_back(fmt::format(
        "{} mel-spaced bands up to {:g} Hz from {:.0f} ms frames (mean and max over the window)",
        s.frame_bands.size(), s.frame_bands.empty() ? 0.0 : s.frame_bands.back().hi_hz,
        1000.0 * s.frame / s.sample_rate));
    if (s.frame_flatness) parts.push_back("spectral flatness");
  }
  std::string out = name + " (";
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? ", " : "") + parts[i];
  return out + fmt::format("; {} features)", s.Size());
}

struct Stream {
  sources::StreamInfo info;
  std::vector<double> seconds;  // per input, -1 unknown
};

Result<Stream> Inspect(const std::vector<InputSpec>& inputs, const sources::SourceOptions& so) {
  Stream s;
  TEND_ASSIGN_OR_RETURN(s.info, ProbeStream(inputs[0], so));
  for (const auto& in : inputs) {
    TEND_ASSIGN_OR_RETURN(double sec, InputSeconds(in, so));
    s.seconds.push_back(sec);
  }
  return s;
}

bool AreClips(const std::vector<double>& seconds) {
  if (seconds.size() < 2) return false;
  return std::all_of(seconds.begin(), seconds.end(),
                     [](double s) { return s > 0 && s <= kMaxClipSeconds; });
}

}  // namespace

Result<dsp::FeatureSpec> FeaturePreset(const std::string& name, double sr, int ch, int window) {
  if (name == "press") return dsp::FeatureSpec::DefaultPress(sr, ch, window);
  if (name == "bearing") return dsp::FeatureSpec::DefaultBearing(sr, ch, window);
  if (name == "vibration") return dsp::FeatureSpec::DefaultVibration(sr, ch, window);
  if (name == "sound") return dsp::FeatureSpec::DefaultSound(sr, ch, window);
  return Fail(Error::Invalid(
      fmt::format("--features must be auto, press, bearing, vibration or sound, got '{}'", name)));
}

Result<StrokeProbe> ProbeStrokes(const InputSpec& input, const sources::SourceOptions& so,
                                 const sources::TriggerOptions& trigger) {
  TEND_ASSIGN_OR_RETURN(auto src, sources::OpenSource(input.source, so));
  const auto info = src->info();
  TEND_ASSIGN_OR_RETURN(auto windower,
                        sources::CreateStrokeTrigger(info.channels, info.sample_rate, trigger));
  const int64_t first = static_cast<int64_t>(std::llround(input.start_s * info.sample_rate));
  int64_t last = first + static_cast<int64_t>(kProbeSeconds * info.sample_rate);
  if (input.end_s >= 0) {
    last = std::min(last, static_cast<int64_t>(std::llround(input.end_s * info.sample_rate)));
  }
  std::vector<int64_t> onsets;
  std::vector<float> buf(4096 * static_cast<size_t>(info.channels));
  int64_t pos = 0;
  auto emit = [&](const sources::WindowView& v) { onsets.push_back(v.start_frame); };
  while (pos < last) {
    const auto want = static_cast<size_t>(std::min<int64_t>(4096, last - pos));
    TEND_ASSIGN_OR_RETURN(size_t n, src->Read(buf, want));
    if (n == 0) break;
    const int64_t skip = std::clamp<int64_t>(first - pos, 0, static_cast<int64_t>(n));
    pos += static_cast<int64_t>(n);
    if (skip < static_cast<int64_t>(n)) {
      windower->Push(std::span<const float>(buf).subspan(static_cast<size_t>(skip) * info.channels),
                     n - static_cast<size_t>(skip), emit);
    }
  }
  StrokeProbe p;
  p.onsets = static_cast<int>(onsets.size());
  p.seconds = static_cast<double>(std::max<int64_t>(0, pos - first)) / info.sample_rate;
  if (onsets.size() < 2) return p;
  std::vector<double> gaps;
  for (size_t i = 1; i < onsets.size(); ++i) {
    gaps.push_back(static_cast<double>(onsets[i] - onsets[i - 1]) / info.sample_rate);
  }
  std::vector<double> sorted = gaps;
  std::nth_element(sorted.begin(), sorted.begin() + sorted.size() / 2, sorted.end());
  p.median_interval_s = sorted[sorted.size() / 2];
  const auto regular = std::count_if(gaps.begin(), gaps.end(), [&](double g) {
    return std::fabs(g - p.median_interval_s) <= kRegularTolerance * p.median_interval_s;
  });
  p.regular_fraction = static_cast<double>(regular) / static_cast<double>(gaps.size());
  p.strokes = p.onsets >= kMinProbeStrokes && p.regular_fraction >= kRegularFraction;
  return p;
}

namespace {

// The kind of input and the sentence that says why: strokes (asked for, a simulator, or found
// by the probe unless fixed windows were asked for), else clips or continuous.
Result<std::pair<std::string, std::string>> DecideKind(const std::vector<InputSpec>& inputs,
                                                       const sources::SourceOptions& so,
                                                       const InputRequest& req, const Stream& st) {
  const bool sim = IsSim(inputs[0]);
  const std::string first = inputs[0].ToString();
  std::string kind, why;
  if (req.trigger.value_or(false) || (sim && !req.trigger.has_value())) {
    kind = "strokes";
    why = req.trigger.value_or(false) ? "--trigger" : "a simulated press (one stroke per window)";
  } else if (!req.trigger.has_value() && IsStream(inputs[0])) {
    why =
        "a stream cannot be read twice, so it is not probed for strokes (--trigger if it has them)";
  } else if (!req.trigger.has_value()) {
    sources::TriggerOptions t;
    t.length = req.window > 0 ? req.window : kDefaultWindow;
    t.pretrigger = std::min(req.pretrigger, t.length - 1);
    t.threshold = req.trigger_threshold;
    TEND_ASSIGN_OR_RETURN(StrokeProbe p, ProbeStrokes(inputs[0], so, t));
    if (p.strokes) {
      kind = "strokes";
      why = fmt::format(
          "{} stroke onsets in the first {:.0f} s of {}, one every {:.2f} s ({:.0f} % of the "
          "intervals within {:.0f} %)",
          p.onsets, p.seconds, first, p.median_interval_s, 100 * p.regular_fraction,
          100 * kRegularTolerance);
    } else {
      why = fmt::format(
          "no regular strokes in the first {:.0f} s of {} ({} onsets; needs {} with {:.0f} % of "
          "the intervals within {:.0f} % of their median)",
          p.seconds, first, p.onsets, kMinProbeStrokes, 100 * kRegularFraction,
          100 * kRegularTolerance);
    }
  } else {
    why = "fixed windows asked for (--hop)";
  }
  if (kind.empty()) kind = AreClips(st.seconds) ? "clips" : "continuous";
  return std::make_pair(kind, why);
}

// Fills c.windowing for c.kind and says why.
void SetWindowing(InputChoice& c, const InputRequest& req, const Stream& st, bool sim,
                  size_t inputs, const std::string& why) {
  WindowingSpec& w = c.windowing;
  w.sample_rate = st.info.sample_rate;
  w.channels = st.info.channels;
  if (c.kind == "strokes") {
    w.mode = "trigger";
    w.window = req.window > 0 ? req.window : (sim ? kDefaultWindow : Even(0.2 * w.sample_rate));
    w.trigger.length = w.window;
    w.trigger.pretrigger = req.pretrigger;
    w.trigger.threshold = req.trigger_threshold;
    c.reasons.push_back(
        fmt::format("windows: one per stroke, {} samples ({:.3f} s) from {} before the onset: {}",
                    w.window, w.window / w.sample_rate, w.trigger.pretrigger, why));
  } else if (c.kind == "clips") {
    const double shortest = *std::min_element(st.seconds.begin(), st.seconds.end());
    w.mode = "fixed";
    w.window = req.window > 0 ? req.window
                              : Even(std::min(shortest, kMaxClipWindowSeconds) * w.sample_rate);
    w.hop = req.hop > 0 ? req.hop : w.window;
    c.reasons.push_back(fmt::format(
        "windows: {} samples ({:.2f} s), hop {}: {} inputs of at most {:.0f} s are clips (one "
        "window per clip up to {:.0f} s; scores per clip too); {}",
        w.window, w.window / w.sample_rate, w.hop, inputs, kMaxClipSeconds, kMaxClipWindowSeconds,
        why));
  } else {
    w.mode = "fixed";
    w.window = req.window > 0 ? req.window : kDefaultWindow;
    w.hop = req.hop > 0 ? req.hop : w.window;
    c.reasons.push_back(fmt::format("windows: fixed, {} samples ({:.3f} s), hop {}: {}", w.window,
                                    w.window / w.sample_rate, w.hop, why));
  }
}

// Fills c.features, c.spec and c.detectors.
Status SetFeatures(InputChoice& c, const InputRequest& req, const Stream& st, bool sim) {
  const WindowingSpec& w = c.windowing;
  const bool press_like = sim || c.kind == "strokes";
  c.features = req.features;
  std::string why = "asked for (--features)";
  if (c.features == "auto") {
    c.features = press_like ? "press" : c.kind == "clips" ? "sound" : "vibration";
    why = press_like          ? "press strokes"
          : c.kind == "clips" ? "clips of machine sound: short events inside a long window"
                              : "a continuous signal without strokes";
  }
  TEND_ASSIGN_OR_RETURN(c.spec, FeaturePreset(c.features, w.sample_rate, w.channels, w.window));
  if (st.info.channel_names.size() == static_cast<size_t>(w.channels)) {
    c.spec.channel_names = st.info.channel_names;
  }
  TEND_RETURN_NOT_OK(c.spec.Validate().map_error([](Error e) { return e.Wrap("feature spec"); }));
  c.reasons.push_back("features: " + Describe(c.spec, c.features) + ": " + why);
  c.detectors = c.features == "vibration"
                    ? std::vector<std::string>{"broadband", "mahalanobis", "pca"}
                    : std::vector<std::string>{"mahalanobis", "broadband", "pca"};
  return Ok();
}

}  // namespace

Result<InputChoice> ChooseFromInputs(const std::vector<InputSpec>& inputs,
                                     const sources::SourceOptions& so, const InputRequest& req) {
  if (inputs.empty()) return Fail(Error::Invalid("no training input"));
  TEND_ASSIGN_OR_RETURN(Stream st, Inspect(inputs, so));
  InputChoice c;
  TEND_ASSIGN_OR_RETURN(auto kind_why, DecideKind(inputs, so, req, st));
  c.kind = kind_why.first;
  const bool sim = IsSim(inputs[0]);
  SetWindowing(c, req, st, sim, inputs.size(), kind_why.second);
  TEND_RETURN_NOT_OK(c.windowing.Validate());
  TEND_RETURN_NOT_OK(SetFeatures(c, req, st, sim));
  return c;
}

nlohmann::json InputChoice::ToJson() const {
  return {{"kind", kind}, {"features", features}, {"detectors", detectors}, {"reasons", reasons}};
}

}  // namespace tend::agent
