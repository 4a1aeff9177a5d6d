// An anomaly map drawn over the frame it was computed on, for the person who looks at a reject:
// the frame in grey, the map upsampled (bilinear) over the ROI the model saw and coloured from
// transparent (at `lo`) to an opaque heat colour (at `hi` and above).
#pragma once

#include <span>

#include "core/status.h"
#include "vision/image.h"
#include "vision/preprocess.h"

namespace tend::vision {

struct OverlayOptions {
  float lo = 0;  // map values at or below: no colour
  float hi = 1;  // map values at or above: full colour
  float max_alpha = 0.65f;
};

// `map` is map_height x map_width (row-major) over `roi` of `frame` (Roi{} = the whole frame).
// `out` becomes an RGB image of the frame's size.
Status RenderOverlay(const ImageView& frame, const Roi& roi, std::span<const float> map,
                     int map_width, int map_height, const OverlayOptions& options, Image& out);

// The heat colour for t in [0, 1]: dark blue -> cyan -> yellow -> red.
void HeatColour(float t, uint8_t rgb[3]);

}  // namespace tend::vision
