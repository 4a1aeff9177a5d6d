// Reading inputs the way a model cuts them: every input (a WAV/CSV path, "sim:...", "-") is
// windowed by a WindowingSpec and handed over window by window. Shared by `tend train`, `score`
// and `eval` so that they see exactly the windows the agent would see.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "agent/windowing.h"
#include "core/status.h"
#include "dsp/feature_spec.h"
#include "sources/source.h"

namespace tend::agent {

// An input spec with an optional time range in seconds: "normal.wav@0:3.5", "run.wav@10:".
struct InputSpec {
  std::string source;
  double start_s = 0;
  double end_s = -1;  // -1: to the end
  static Result<InputSpec> Parse(const std::string& text);
  std::string ToString() const;
};

struct WindowInfo {
  const InputSpec* input;
  int64_t index;       // per input
  int64_t start_frame; // per input
  double t_start_s;    // seconds from the start of the input (not of the range)
  double wear;         // simulator ground truth for the stroke in this window; -1 if unknown
};

// Calls fn for each window of each input, in time order. Checks every input against the
// windowing's sample rate and channel count. `max_duration_s` (>0) bounds the signal read per
// input (for commissioning from a live source).
Status ForEachWindow(const std::vector<InputSpec>& inputs, const sources::SourceOptions& opts,
                     const WindowingSpec& windowing, double max_duration_s,
                     const std::function<Status(std::span<const float>, const WindowInfo&)>& fn);

// Feature vectors of every window of `inputs`, row-major in time order, with the input (clip)
// each row came from: what `tend train` fits on. Errors name the input, window and time.
struct FeatureRows {
  std::vector<float> values;  // rows x features
  std::vector<int> clip;      // input index per row
  int64_t rows = 0;
  size_t features = 0;
};
Result<FeatureRows> ExtractFeatureRows(const std::vector<InputSpec>& inputs,
                                       const sources::SourceOptions& opts,
                                       const WindowingSpec& windowing,
                                       const dsp::FeatureSpec& spec, double max_duration_s,
                                       const std::function<void(int64_t rows)>& progress = {});

// Simulator ground truth for a window: the wear of the stroke whose onset lies in
// [start_frame - length, start_frame + length), preferring one inside the window; -1 if none.
double WearInWindow(const std::vector<sources::PressSimulator::StrokeLabel>& truth,
                    int64_t start_frame, int64_t length);

// The stream of the first input (to pick defaults before a model exists).
Result<sources::StreamInfo> ProbeStream(const InputSpec& input, const sources::SourceOptions& opts);

}  // namespace tend::agent
