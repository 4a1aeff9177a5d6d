// Camera frames fitted to what an image model takes (agent::ModelInput: an event u8 [height,
// width, channels] and the frame's ROI): the ROI cropped, resized with the antialiased resampler
// of the model's preprocessing, grey or RGB, rounded to u8 levels. The "images" source and the
// OTA reference gate both use it, so the model sees in service what it saw when it was fitted.
#pragma once

#include <memory>
#include <span>

#include "agent/model.h"
#include "core/status.h"
#include "vision/image.h"
#include "vision/preprocess.h"

namespace tend::runtime {

// True when `in` is camera frames: u8 [height, width, 1 or 3], no windowing.
bool TakesFrames(const agent::ModelInput& in);

class FrameFitter {
 public:
  explicit FrameFitter(const agent::ModelInput& in);
  // The fitted frame's bytes (in.event.bytes() of them), valid until the next call. Errors: a
  // frame the ROI does not fit, a frame that is not grey or RGB.
  Result<std::span<const std::byte>> Fit(const vision::ImageView& frame);

 private:
  std::unique_ptr<vision::Preprocessor> fit_;
  vision::Image fitted_;
};

}  // namespace tend::runtime
