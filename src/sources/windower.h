// Cutting a frame stream into analysis windows: fixed length and hop, or one window per press
// stroke found by onset detection (with a pre-trigger) in a continuous recording. Windows are
// PLANAR (channel c at [c*length, (c+1)*length)) and buffers are sized once: nothing is allocated
// per window.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "core/status.h"

namespace tend::sources {

struct WindowView {
  int64_t index;                   // 0-based count of windows emitted by this windower
  int64_t start_frame;             // first frame of the window, counted from the first frame pushed
  double t_start_s;                // start_frame / sample_rate
  std::span<const float> samples;  // channels * length, planar
};

class Windower {
 public:
  virtual ~Windower() = default;
  // Feeds `frames` interleaved frames (interleaved.size() >= frames * channels); calls emit for
  // each completed window. The span is valid only during the call.
  virtual void Push(std::span<const float> interleaved, size_t frames,
                    const std::function<void(const WindowView&)>& emit) = 0;
};

// Windows of `length` frames every `hop` frames (hop > length skips the frames in between).
Result<std::unique_ptr<Windower>> CreateFixedWindower(int channels, double sample_rate, int length,
                                                      int hop);
// As above; invalid arguments are a programmer error here (aborts with a message).
std::unique_ptr<Windower> MakeFixedWindower(int channels, double sample_rate, int length, int hop);

// Stroke-triggered windowing. On `channel` (DC removed), a short-term energy (time constant
// energy_ms) is compared with an adaptive background energy; an onset is the first frame where
// short-term RMS > threshold x background RMS. The window starts `pretrigger` frames before the
// onset. After an onset the trigger holds off for max(holdoff_s, rest of the window) and re-arms
// once the 50 ms RMS has fallen below rearm_ratio x threshold x background RMS. The
// background is a slow average (background_s) of the clipped energy, frozen during hold-off so
// strokes do not inflate it, and it drops at once to a 50 ms energy average that is lower (a
// machine that got quieter). The first warmup_s only learn the background (a stroke there is not
// reported).
struct TriggerOptions {
  int length = 2000;
  int pretrigger = 200;
  double threshold = 6.0;  // x background RMS
  int channel = 0;
  double holdoff_s = 0.5;
  double energy_ms = 1.0;     // short-term energy time constant
  double background_s = 1.0;  // background time constant
  double warmup_s = 0.2;
  double rearm_ratio = 0.5;
  double min_rms = 0;  // floor under the background RMS (e.g. for digital silence)

  Status Validate(int channels, double sample_rate) const;
};

Result<std::unique_ptr<Windower>> CreateStrokeTrigger(int channels, double sample_rate,
                                                      const TriggerOptions& opts);
// As above; invalid arguments are a programmer error here (aborts with a message).
std::unique_ptr<Windower> MakeStrokeTrigger(int channels, double sample_rate,
                                            const TriggerOptions& opts);

}  // namespace tend::sources
