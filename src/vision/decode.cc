#include "vision/decode.h"

#include <fmt/format.h>
#include <png.h>
#include <turbojpeg.h>

#include <algorithm>
#include <cstring>

namespace tend::vision {

const char* ImageFormatName(ImageFormat f) {
  switch (f) {
    case ImageFormat::kJpeg:
      return "JPEG";
    case ImageFormat::kPng:
      return "PNG";
    case ImageFormat::kUnknown:
      break;
  }
  return "unknown";
}

ImageFormat SniffFormat(std::span<const uint8_t> b) {
  static constexpr uint8_t kPngMagic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (b.size() >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) return ImageFormat::kJpeg;
  if (b.size() >= 8 && std::memcmp(b.data(), kPngMagic, 8) == 0) return ImageFormat::kPng;
  return ImageFormat::kUnknown;
}

void ConvertChannels(const ImageView& in, int channels, Image& out) {
  out.Reset(in.width, in.height, channels);
  const size_t n = static_cast<size_t>(in.width) * static_cast<size_t>(in.height);
  const uint8_t* s = in.data;
  uint8_t* d = out.data();
  if (in.channels == channels) {
    std::memcpy(d, s, n * static_cast<size_t>(channels));
  } else if (in.channels == 3 && channels == 1) {
    for (size_t i = 0; i < n; ++i) d[i] = Luma(s[3 * i], s[3 * i + 1], s[3 * i + 2]);
  } else {  // 1 -> 3
    for (size_t i = 0; i < n; ++i) d[3 * i] = d[3 * i + 1] = d[3 * i + 2] = s[i];
  }
}

namespace {

Status CheckSize(const char* format, int64_t width, int64_t height, const DecodeOptions& o) {
  if (width <= 0 || height <= 0) {
    return Fail(Error::Corrupt(fmt::format("{} header says {}x{} pixels", format, width, height)));
  }
  if (width * height > o.max_pixels) {
    return Fail(Error::Unsupported(fmt::format("{} image of {}x{} pixels exceeds the limit of {}",
                                               format, width, height, o.max_pixels)));
  }
  return Ok();
}

}  // namespace

Decoder::Decoder() : tj_(tjInitDecompress()) {}

Decoder::~Decoder() {
  if (tj_) tjDestroy(static_cast<tjhandle>(tj_));
}

Status Decoder::Decode(std::span<const uint8_t> bytes, const DecodeOptions& o, Image& out) {
  if (o.channels != 0 && o.channels != 1 && o.channels != 3) {
    return Fail(
        Error::Invalid(fmt::format("decode: channels must be 0, 1 or 3, not {}", o.channels)));
  }
  if (bytes.empty()) return Fail(Error::Invalid("empty image (0 bytes)"));
  switch (SniffFormat(bytes)) {
    case ImageFormat::kJpeg:
      return DecodeJpeg(bytes, o, out);
    case ImageFormat::kPng:
      return DecodePng(bytes, o, out);
    case ImageFormat::kUnknown:
      break;
  }
  return Fail(Error::Corrupt(
      fmt::format("not a JPEG or PNG image (starts with {:02x})",
                  fmt::join(bytes.subspan(0, std::min<size_t>(bytes.size(), 4)), " "))));
}

Status Decoder::DecodeJpeg(std::span<const uint8_t> bytes, const DecodeOptions& o, Image& out) {
  auto tj = static_cast<tjhandle>(tj_);
  if (!tj) return Fail(Error::Internal("JPEG: TurboJPEG decompressor could not be created"));
  auto tj_error = [&](const char* stage) {
    std::string msg = tjGetErrorStr2(tj);
    const bool unsupported =
        msg.find("precision") != std::string::npos || msg.find("Unsupported") != std::string::npos;
    std::string text = fmt::format("JPEG {}: {}", stage, msg);
    return Fail(unsupported ? Error::Unsupported(text) : Error::Corrupt(text));
  };
  int w = 0, h = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(tj, bytes.data(), bytes.size(), &w, &h, &subsamp, &colorspace) != 0) {
    return tj_error("header");
  }
  TEND_RETURN_NOT_OK(CheckSize("JPEG", w, h, o));
  if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK) {
    return Fail(Error::Unsupported("JPEG: CMYK images are not supported (grey or colour only)"));
  }
  const bool grey_file = colorspace == TJCS_GRAY;
  // Colour files decode straight to grey when grey is asked for (TurboJPEG takes the Y plane:
  // the same BT.601 luma as Luma()).
  const int channels = (grey_file || o.channels == 1) ? 1 : 3;
  Image& target = (o.channels == 0 || o.channels == channels) ? out : scratch_;
  target.Reset(w, h, channels);
  const int flags = TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS;
  if (tjDecompress2(tj, bytes.data(), bytes.size(), target.data(), w, 0, h,
                    channels == 1 ? TJPF_GRAY : TJPF_RGB, flags) != 0) {
    return tj_error("data");
  }
  if (&target == &out) return Ok();
  ConvertChannels(target.view(), o.channels, out);
  return Ok();
}

Status Decoder::DecodePng(std::span<const uint8_t> bytes, const DecodeOptions& o, Image& out) {
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&img, bytes.data(), bytes.size())) {
    std::string msg = img.message;
    png_image_free(&img);
    return Fail(Error::Corrupt("PNG header: " + msg));
  }
  const bool is16 = (img.format & PNG_FORMAT_FLAG_LINEAR) != 0;
  const bool colour = (img.format & PNG_FORMAT_FLAG_COLOR) != 0;
  auto done_with = [&](Error e) {
    png_image_free(&img);
    return Fail(std::move(e));
  };
  if (is16 && !o.allow_16bit) {
    return done_with(Error::Unsupported(
        fmt::format("16-bit PNG ({}x{}): 8-bit images expected", img.width, img.height)));
  }
  if (auto st = CheckSize("PNG", img.width, img.height, o); !st) return done_with(st.error());
  const int channels = colour ? 3 : 1;
  img.format = colour ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  if (is16) img.format |= PNG_FORMAT_FLAG_LINEAR;
  const size_t samples = static_cast<size_t>(img.width) * img.height * channels;
  Image& target = (o.channels == 0 || o.channels == channels) ? out : scratch_;
  if (is16) {
    std::vector<uint16_t> wide(samples, 0);
    if (!png_image_finish_read(&img, nullptr, wide.data(), 0, nullptr)) {
      std::string msg = img.message;
      png_image_free(&img);
      return Fail(Error::Corrupt("PNG data: " + msg));
    }
    target.Reset(static_cast<int>(img.width), static_cast<int>(img.height), channels);
    for (size_t i = 0; i < samples; ++i) target.data()[i] = static_cast<uint8_t>(wide[i] >> 8);
  } else {
    target.Reset(static_cast<int>(img.width), static_cast<int>(img.height), channels);
    std::memset(target.data(), 0, samples);  // alpha composites onto black
    if (!png_image_finish_read(&img, nullptr, target.data(), 0, nullptr)) {
      std::string msg = img.message;
      png_image_free(&img);
      return Fail(Error::Corrupt("PNG data: " + msg));
    }
  }
  if (&target == &out) return Ok();
  ConvertChannels(target.view(), o.channels, out);
  return Ok();
}

Result<Image> DecodeImage(std::span<const uint8_t> bytes, const DecodeOptions& options) {
  Decoder d;
  Image img;
  TEND_RETURN_NOT_OK(d.Decode(bytes, options, img));
  return img;
}

Result<std::string> EncodeJpeg(const ImageView& image, int quality) {
  if (image.empty() || (image.channels != 1 && image.channels != 3)) {
    return Fail(Error::Invalid(fmt::format("JPEG encode: {}x{}x{} is not a grey or RGB image",
                                           image.width, image.height, image.channels)));
  }
  tjhandle tj = tjInitCompress();
  if (!tj) return Fail(Error::Internal("JPEG encode: TurboJPEG compressor could not be created"));
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  const bool grey = image.channels == 1;
  int rc =
      tjCompress2(tj, image.data, image.width, 0, image.height, grey ? TJPF_GRAY : TJPF_RGB, &buf,
                  &size, grey ? TJSAMP_GRAY : TJSAMP_420, std::clamp(quality, 1, 100), 0);
  std::string out;
  std::string err = rc != 0 ? tjGetErrorStr2(tj) : "";
  if (rc == 0) out.assign(reinterpret_cast<const char*>(buf), size);
  tjFree(buf);
  tjDestroy(tj);
  if (rc != 0) return Fail(Error::Internal("JPEG encode: " + err));
  return out;
}

Result<std::string> EncodePng(const ImageView& image) {
  if (image.empty() || (image.channels != 1 && image.channels != 3)) {
    return Fail(Error::Invalid(fmt::format("PNG encode: {}x{}x{} is not a grey or RGB image",
                                           image.width, image.height, image.channels)));
  }
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = static_cast<png_uint_32>(image.width);
  img.height = static_cast<png_uint_32>(image.height);
  img.format = image.channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&img, nullptr, &size, 0, image.data, 0, nullptr)) {
    return Fail(Error::Internal(std::string("PNG encode: ") + img.message));
  }
  std::string out(size, '\0');
  if (!png_image_write_to_memory(&img, out.data(), &size, 0, image.data, 0, nullptr)) {
    return Fail(Error::Internal(std::string("PNG encode: ") + img.message));
  }
  out.resize(size);
  return out;
}

}  // namespace tend::vision
