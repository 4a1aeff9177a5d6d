// Test images made in code (no binary fixtures): gradients and patterns encoded with tend's own
// encoders, 16-bit PNGs through libpng, and damaged variants of them.
#pragma once

#include <png.h>
#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "vision/decode.h"
#include "vision/image.h"

namespace tend::testing {

// A smooth gradient with a dark spot: channels 1 or 3.
inline vision::Image Gradient(int w, int h, int channels, int spot_x = -1, int spot_y = -1) {
  vision::Image img(w, h, channels);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      for (int c = 0; c < channels; ++c) {
        int v = (x * 255) / std::max(1, w - 1) / 2 + (y * 255) / std::max(1, h - 1) / 3 + 20 * c;
        if (spot_x >= 0 && (x - spot_x) * (x - spot_x) + (y - spot_y) * (y - spot_y) < 16) v = 5;
        img.data()[(static_cast<size_t>(y) * w + x) * channels + c] =
            static_cast<uint8_t>(std::min(v, 255));
      }
    }
  }
  return img;
}

inline std::vector<uint8_t> Bytes(const std::string& s) { return {s.begin(), s.end()}; }

// A 16-bit grey PNG (libpng's simplified writer, linear 16-bit).
inline std::string Png16(int w, int h) {
  std::vector<uint16_t> px(static_cast<size_t>(w) * h);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint16_t>(i * 257 % 65536);
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = static_cast<png_uint_32>(w);
  img.height = static_cast<png_uint_32>(h);
  img.format = PNG_FORMAT_LINEAR_Y;
  png_alloc_size_t size = 0;
  png_image_write_to_memory(&img, nullptr, &size, 0, px.data(), 0, nullptr);
  std::string out(size, '\0');
  png_image_write_to_memory(&img, out.data(), &size, 0, px.data(), 0, nullptr);
  out.resize(size);
  return out;
}

// A PNG whose header claims w x h (IHDR rewritten with a valid CRC); the data stays small.
inline std::string PngClaiming(uint32_t w, uint32_t h) {
  auto small = vision::EncodePng(Gradient(4, 4, 1).view());
  std::string p = *small;
  auto put32 = [&](size_t off, uint32_t v) {
    p[off] = static_cast<char>(v >> 24);
    p[off + 1] = static_cast<char>(v >> 16);
    p[off + 2] = static_cast<char>(v >> 8);
    p[off + 3] = static_cast<char>(v);
  };
  put32(16, w);  // IHDR data starts at 16: 8 signature + 4 length + 4 "IHDR"
  put32(20, h);
  uint32_t crc = static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(p.data() + 12), 17));
  put32(29, crc);
  return p;
}

}  // namespace tend::testing
