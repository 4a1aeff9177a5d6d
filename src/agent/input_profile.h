// Choosing windowing and features from the training input itself, so that `tend train --input X`
// with nothing else does the sensible thing, and says what it chose and why (the choice goes
// into the model card):
//
//   * strokes: a simulator input, or a recording in which the stroke trigger finds regular
//     onsets (at least kMinProbeStrokes in the first kProbeSeconds, kRegularFraction of the
//     intervals within kRegularTolerance of their median): one window per stroke (trigger mode)
//     and the press features. A press recorded continuously cut into fixed windows puts the
//     stroke anywhere in the window (or in two), and the model learns the position, not the die.
//   * clips: two or more file inputs of at most kMaxClipSeconds each (machine sound is recorded
//     this way): one window per clip (at most kMaxClipWindowSeconds) and the sound features;
//     `tend score` / `eval` report a score per clip as well.
//   * continuous: anything else (a long vibration recording, a live stream): fixed windows of
//     2,000 samples and the vibration features. stdin and pipes are never probed (they cannot
//     be read twice).
//
// It also orders the detectors `tend train` compares (detect/select.h): with the vibration
// features (a machine watched continuously for months, whose healthy level drifts with
// temperature, load and run-in) the drift-robust broadband detector comes first; with the
// press, bearing and sound features, whose faults can live in a few bands or in one event,
// mahalanobis does.
//
// What the user sets explicitly (--window, --hop, --trigger, --features) wins over the choice.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "agent/dataset.h"
#include "agent/windowing.h"
#include "core/status.h"
#include "dsp/feature_spec.h"
#include "sources/source.h"

namespace tend::agent {

inline constexpr double kProbeSeconds = 60;
inline constexpr int kMinProbeStrokes =
    6;  // fewer regular onsets are weak evidence (a valve clicks 4-5 times in 10 s)
inline constexpr double kRegularTolerance = 0.2;  // of the median interval
inline constexpr double kRegularFraction = 0.8;
inline constexpr double kMaxClipSeconds = 60;
inline constexpr double kMaxClipWindowSeconds = 10;
inline constexpr int kDefaultWindow = 2000;

// What the user fixed; unset fields are chosen.
struct InputRequest {
  std::string features = "auto";  // auto | press | bearing | vibration | sound
  int window = 0;                 // samples; 0 = choose
  int hop = 0;                    // samples; 0 = choose (fixed mode)
  std::optional<bool> trigger;    // true: --trigger; false: fixed windows asked for (--hop)
  int pretrigger = 200;
  double trigger_threshold = 6.0;
};

struct StrokeProbe {
  int onsets = 0;
  double seconds = 0;  // signal examined
  double median_interval_s = 0;
  double regular_fraction = 0;  // of the intervals within kRegularTolerance of the median
  bool strokes = false;
};

// Runs the stroke trigger (the options `windowing.trigger` would use) over the first
// kProbeSeconds of `input`.
Result<StrokeProbe> ProbeStrokes(const InputSpec& input, const sources::SourceOptions& so,
                                 const sources::TriggerOptions& trigger);

struct InputChoice {
  std::string kind;      // "strokes" | "clips" | "continuous"
  std::string features;  // the preset used
  WindowingSpec windowing;
  dsp::FeatureSpec spec;
  std::vector<std::string> detectors;  // preference order for the comparison
  std::vector<std::string> reasons;    // "windows: ...", "features: ..." for people
  nlohmann::json ToJson() const;       // kind, features, reasons (the model card's record)
};

Result<InputChoice> ChooseFromInputs(const std::vector<InputSpec>& inputs,
                                     const sources::SourceOptions& so, const InputRequest& req);

// The preset by name at a stream's rate, channels and window length; an unknown name is an
// error listing the valid ones.
Result<dsp::FeatureSpec> FeaturePreset(const std::string& name, double sample_rate, int channels,
                                       int window);

}  // namespace tend::agent
