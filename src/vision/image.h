// tend_vision: images for visual inspection — decoding JPEG/PNG bytes, the preprocessing a model
// records (ROI crop, resize, grey/RGB, normalisation), and anomaly-map overlays as PNG. Pure:
// no I/O beyond turning bytes into pixels and back; no ONNX, no threads.
//
// An image is u8, interleaved [height, width, channels] (1 = grey, 3 = RGB), rows packed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace tend::vision {

// A non-owning view of packed u8 [height, width, channels] pixels.
struct ImageView {
  const uint8_t* data = nullptr;
  int width = 0, height = 0, channels = 0;

  size_t size() const {
    return static_cast<size_t>(width) * static_cast<size_t>(height) * static_cast<size_t>(channels);
  }
  bool empty() const { return size() == 0; }
  const uint8_t* row(int y) const {
    return data +
           static_cast<size_t>(y) * static_cast<size_t>(width) * static_cast<size_t>(channels);
  }
};

// Owns its pixels. Reset() keeps the buffer's capacity, so a decoder or a camera that fills the
// same Image frame after frame allocates only when a frame is larger than any before.
class Image {
 public:
  Image() = default;
  Image(int width, int height, int channels) { Reset(width, height, channels); }

  void Reset(int width, int height, int channels) {
    width_ = width;
    height_ = height;
    channels_ = channels;
    pixels_.resize(static_cast<size_t>(width) * static_cast<size_t>(height) *
                   static_cast<size_t>(channels));
  }
  int width() const { return width_; }
  int height() const { return height_; }
  int channels() const { return channels_; }
  std::span<uint8_t> pixels() { return pixels_; }
  std::span<const uint8_t> pixels() const { return pixels_; }
  uint8_t* data() { return pixels_.data(); }
  ImageView view() const { return {pixels_.data(), width_, height_, channels_}; }

 private:
  std::vector<uint8_t> pixels_;
  int width_ = 0, height_ = 0, channels_ = 0;
};

// BT.601 luma, the weights JPEG's YCbCr uses: (77 R + 150 G + 29 B + 128) >> 8.
inline uint8_t Luma(uint8_t r, uint8_t g, uint8_t b) {
  return static_cast<uint8_t>((77u * r + 150u * g + 29u * b + 128u) >> 8);
}

// Converts between 1 and 3 channels (grey -> RGB replicates, RGB -> grey is Luma); same count
// copies. `out` is reset to the view's size with `channels`.
void ConvertChannels(const ImageView& in, int channels, Image& out);

}  // namespace tend::vision
