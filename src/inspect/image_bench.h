// The per-frame path of an image model, stage by stage, on real images: decode (from bytes in
// memory, so the disk is not measured), preprocess, inference (the backbone), scoring (the
// detector and reading its outputs), decision (tiers). `tend bench --pipeline` for image models.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"
#include "inspect/image_model.h"

namespace tend::inspect {

struct ImageBenchOptions {
  std::vector<std::string> inputs;  // image sets; frames cycle through them
  int frames = 1000;                // measured
  int warmup = 20;                  // not measured
  // > 0: every image is first resized to this size and re-encoded as JPEG (quality 90), so the
  // bench measures a camera's frame of that size rather than the files' own sizes.
  int frame_width = 0, frame_height = 0;
};

struct ImageBenchSamples {
  std::vector<double> decode, preprocess, inference, scoring, decision, total;  // ms per frame
  int64_t images = 0;                     // distinct images cycled through
  int frame_width = 0, frame_height = 0;  // of the last frame decoded
};

Result<ImageBenchSamples> BenchImagePipeline(ImageModel& model, const ImageBenchOptions& options);

}  // namespace tend::inspect
