// JPEG (libjpeg-turbo's TurboJPEG API) and PNG (libpng's simplified API) to u8 pixels, with a
// one-line error for every way a file can be wrong: empty, not an image, truncated, corrupt,
// 16-bit when 8-bit is expected, 12-bit JPEG, CMYK, absurd dimensions. Never a crash, never an
// abort: both libraries report errors as values here (TurboJPEG natively; libpng's simplified
// API catches its own longjmp).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "core/status.h"
#include "vision/image.h"

namespace tend::vision {

enum class ImageFormat { kUnknown, kJpeg, kPng };
const char* ImageFormatName(ImageFormat f);
// From the first bytes (the magic number), not the file name.
ImageFormat SniffFormat(std::span<const uint8_t> bytes);

struct DecodeOptions {
  // 0: as stored (grey stays 1 channel, colour becomes 3; alpha is composited on black);
  // 1: grey (BT.601 luma of colour images); 3: RGB.
  int channels = 0;
  // 16-bit PNGs are an error unless allowed; then the high byte of each sample is kept (a linear
  // scale, no gamma: what a machine-vision camera's 16-bit output means).
  bool allow_16bit = false;
  // Larger images are refused before any pixel buffer is allocated (a 20-byte header can claim
  // 65535 x 65535).
  int64_t max_pixels = int64_t{1} << 26;  // 67 megapixels
};

// Decodes one encoded image into `out`, reusing its buffer. A Decoder keeps the TurboJPEG handle
// between frames; it is not thread-safe (one per thread).
class Decoder {
 public:
  Decoder();
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // Errors: kInvalidArgument (empty input, bad options), kCorrupt (truncated or damaged data,
  // not an image), kUnsupported (16-bit when not allowed, 12-bit JPEG, CMYK, too large).
  Status Decode(std::span<const uint8_t> bytes, const DecodeOptions& options, Image& out);

 private:
  Status DecodeJpeg(std::span<const uint8_t> bytes, const DecodeOptions& options, Image& out);
  Status DecodePng(std::span<const uint8_t> bytes, const DecodeOptions& options, Image& out);

  void* tj_ = nullptr;  // tjhandle
  Image scratch_;       // channel conversion
};

// One-shot convenience (allocates a decoder).
Result<Image> DecodeImage(std::span<const uint8_t> bytes, const DecodeOptions& options = {});

// JPEG of the view (1 or 3 channels, 4:2:0 for colour), e.g. to make camera-like test frames.
Result<std::string> EncodeJpeg(const ImageView& image, int quality = 90);

// Lossless PNG of the view (1 or 3 channels), e.g. evidence images and anomaly-map overlays.
Result<std::string> EncodePng(const ImageView& image);

}  // namespace tend::vision
