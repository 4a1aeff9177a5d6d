#include "vision/overlay.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace tend::vision {

void HeatColour(float t, uint8_t rgb[3]) {
  static constexpr float kStops[5][3] = {
      {0, 0, 160}, {0, 200, 255}, {60, 255, 60}, {255, 230, 0}, {230, 0, 0}};
  t = std::clamp(t, 0.0f, 1.0f) * 4.0f;
  const int i = std::min(3, static_cast<int>(t));
  const float f = t - static_cast<float>(i);
  for (int c = 0; c < 3; ++c) {
    rgb[c] = static_cast<uint8_t>(std::lround(kStops[i][c] * (1 - f) + kStops[i + 1][c] * f));
  }
}

namespace {

// Bilinear sample of the map at continuous map coordinates (pixel centres at +0.5).
float Sample(std::span<const float> map, int mw, int mh, float u, float v) {
  u = std::clamp(u - 0.5f, 0.0f, static_cast<float>(mw - 1));
  v = std::clamp(v - 0.5f, 0.0f, static_cast<float>(mh - 1));
  const int x0 = static_cast<int>(u), y0 = static_cast<int>(v);
  const int x1 = std::min(x0 + 1, mw - 1), y1 = std::min(y0 + 1, mh - 1);
  const float fx = u - static_cast<float>(x0), fy = v - static_cast<float>(y0);
  auto at = [&](int x, int y) { return map[static_cast<size_t>(y) * mw + x]; };
  return (at(x0, y0) * (1 - fx) + at(x1, y0) * fx) * (1 - fy) +
         (at(x0, y1) * (1 - fx) + at(x1, y1) * fx) * fy;
}

}  // namespace

Status RenderOverlay(const ImageView& frame, const Roi& roi_spec, std::span<const float> map,
                     int mw, int mh, const OverlayOptions& o, Image& out) {
  if (frame.empty() || (frame.channels != 1 && frame.channels != 3)) {
    return Fail(Error::Invalid("overlay: the frame is not a grey or RGB image"));
  }
  if (mw <= 0 || mh <= 0 || map.size() != static_cast<size_t>(mw) * static_cast<size_t>(mh)) {
    return Fail(
        Error::Invalid(fmt::format("overlay: map of {} values is not {}x{}", map.size(), mw, mh)));
  }
  if (!(o.hi > o.lo)) return Fail(Error::Invalid("overlay: hi must be above lo"));
  TEND_ASSIGN_OR_RETURN(Roi roi, roi_spec.Resolve(frame.width, frame.height));
  out.Reset(frame.width, frame.height, 3);
  const float sx = static_cast<float>(mw) / roi.width, sy = static_cast<float>(mh) / roi.height;
  for (int y = 0; y < frame.height; ++y) {
    const uint8_t* s = frame.row(y);
    uint8_t* d = out.data() + static_cast<size_t>(y) * frame.width * 3;
    const bool in_rows = y >= roi.y && y < roi.y + roi.height;
    for (int x = 0; x < frame.width; ++x) {
      const uint8_t g = frame.channels == 1 ? s[x] : Luma(s[3 * x], s[3 * x + 1], s[3 * x + 2]);
      float alpha = 0;
      uint8_t heat[3] = {0, 0, 0};
      if (in_rows && x >= roi.x && x < roi.x + roi.width) {
        const float v = Sample(map, mw, mh, (static_cast<float>(x - roi.x) + 0.5f) * sx,
                               (static_cast<float>(y - roi.y) + 0.5f) * sy);
        const float t = std::clamp((v - o.lo) / (o.hi - o.lo), 0.0f, 1.0f);
        HeatColour(t, heat);
        alpha = o.max_alpha * std::sqrt(t);
      }
      for (int c = 0; c < 3; ++c) {
        d[3 * x + c] = static_cast<uint8_t>(std::lround(g * (1 - alpha) + heat[c] * alpha));
      }
    }
  }
  return Ok();
}

}  // namespace tend::vision
