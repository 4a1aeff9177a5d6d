// WAV reading and writing. The reader trusts nothing in the file: every size is checked against
// the real file size before it is used, and each problem becomes a one-line error naming the file.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "core/fs.h"
#include "sources/internal.h"
#include "sources/source.h"

static_assert(std::endian::native == std::endian::little,
              "the WAV and raw readers assume a little-endian host");

namespace tend::sources {
namespace {

using internal::UniqueFd;

enum class Encoding { kPcm8, kPcm16, kPcm24, kPcm32, kFloat32, kFloat64 };

const char* EncodingName(Encoding e) {
  switch (e) {
    case Encoding::kPcm8:
      return "pcm8";
    case Encoding::kPcm16:
      return "pcm16";
    case Encoding::kPcm24:
      return "pcm24";
    case Encoding::kPcm32:
      return "pcm32";
    case Encoding::kFloat32:
      return "float32";
    case Encoding::kFloat64:
      return "float64";
  }
  return "?";
}

// Names for the format tags people actually meet, so the error says what the file is.
const char* FormatTagName(uint32_t tag) {
  switch (tag) {
    case 0x0002:
      return "Microsoft ADPCM";
    case 0x0006:
      return "A-law";
    case 0x0007:
      return "mu-law";
    case 0x0011:
      return "IMA ADPCM";
    case 0x0016:
      return "ITU G.723 ADPCM";
    case 0x0031:
      return "GSM 6.10";
    case 0x0040:
      return "ITU G.721 ADPCM";
    case 0x0050:
      return "MPEG";
    case 0x0055:
      return "MPEG layer 3";
    case 0x0092:
      return "Dolby AC3";
    case 0x0160:
    case 0x0161:
    case 0x0162:
      return "Windows Media Audio";
    case 0x1610:
      return "AAC";
    case 0xF1AC:
      return "FLAC";
    default:
      return "unknown encoding";
  }
}

uint16_t Le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t Le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
void PutLe16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
void PutLe32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// Reads exactly up to len bytes at offset; returns the count (short only at end of file).
Result<size_t> PreadUpTo(int fd, void* buf, size_t len, int64_t offset, const std::string& name) {
  size_t got = 0;
  auto* p = static_cast<uint8_t*>(buf);
  while (got < len) {
    ssize_t n = ::pread(fd, p + got, len - got, static_cast<off_t>(offset + got));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(fs::ErrnoError("read " + name, errno));
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  return got;
}

class WavSource final : public Source {
 public:
  static Result<std::unique_ptr<Source>> Open(const std::string& path, const SourceOptions& opts);

  const StreamInfo& info() const override { return info_; }
  Result<size_t> Read(std::span<float> out, size_t max_frames) override;
  std::string Describe() const override;

 private:
  WavSource() = default;
  Status ParseFmt(const uint8_t* p, uint32_t size);
  void Decode(const uint8_t* in, size_t frames, float* out) const;

  std::string path_;
  UniqueFd fd_;
  Encoding enc_ = Encoding::kPcm16;
  int file_channels_ = 0;
  int sample_bytes_ = 0;
  int block_align_ = 0;
  uint32_t sample_rate_ = 0;
  int pick_ = -1;  // one channel of the file, or -1 for all
  bool keep_non_finite_ = false;  // SourceOptions::keep_non_finite
  int64_t data_offset_ = 0;
  int64_t data_frames_ = 0;
  int64_t pos_ = 0;  // next frame to read
  std::vector<uint8_t> buf_;
  StreamInfo info_;
};

Status WavSource::ParseFmt(const uint8_t* p, uint32_t size) {
  uint32_t tag = Le16(p);
  const int channels = Le16(p + 2);
  sample_rate_ = Le32(p + 4);
  const int block_align = Le16(p + 12);
  const int bits = Le16(p + 14);
  if (tag == 0xFFFE) {
    // WAVE_FORMAT_EXTENSIBLE: the real format is the first two bytes of the sub-format GUID.
    if (size < 40 || Le16(p + 16) < 22) {
      return Fail(Error::Corrupt(fmt::format(
          "{}: WAVE_FORMAT_EXTENSIBLE fmt chunk too short ({} bytes, need 40)", path_, size)));
    }
    static constexpr uint8_t kGuidTail[14] = {0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80,
                                              0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};
    if (std::memcmp(p + 26, kGuidTail, sizeof kGuidTail) != 0) {
      return Fail(Error::Unsupported(
          fmt::format("{}: unsupported WAVE_FORMAT_EXTENSIBLE sub-format (not a standard "
                      "KSDATAFORMAT GUID)",
                      path_)));
    }
    tag = Le16(p + 24);
    const int valid_bits = Le16(p + 18);
    if (valid_bits > bits) {
      return Fail(Error::Corrupt(
          fmt::format("{}: {} valid bits in a {}-bit sample container", path_, valid_bits, bits)));
    }
  }
  if (channels == 0) return Fail(Error::Corrupt(path_ + ": fmt chunk says 0 channels"));
  if (tag == 1) {
    switch (bits) {
      case 8:
        enc_ = Encoding::kPcm8;
        break;
      case 16:
        enc_ = Encoding::kPcm16;
        break;
      case 24:
        enc_ = Encoding::kPcm24;
        break;
      case 32:
        enc_ = Encoding::kPcm32;
        break;
      default:
        return Fail(Error::Unsupported(fmt::format(
            "{}: unsupported PCM sample size ({} bits; 8, 16, 24 or 32 are read)", path_, bits)));
    }
  } else if (tag == 3) {
    if (bits == 32) {
      enc_ = Encoding::kFloat32;
    } else if (bits == 64) {
      enc_ = Encoding::kFloat64;
    } else {
      return Fail(Error::Unsupported(fmt::format(
          "{}: unsupported IEEE float sample size ({} bits; 32 or 64 are read)", path_, bits)));
    }
  } else {
    return Fail(Error::Unsupported(
        fmt::format("{}: unsupported WAV encoding: {} (format tag {}); convert it to PCM or float",
                    path_, FormatTagName(tag), tag)));
  }
  if (sample_rate_ == 0) return Fail(Error::Corrupt(path_ + ": fmt chunk says 0 Hz sample rate"));
  sample_bytes_ = bits / 8;
  file_channels_ = channels;
  if (block_align != channels * sample_bytes_) {
    return Fail(
        Error::Corrupt(fmt::format("{}: block align {} does not match {} channels x {} bytes",
                                   path_, block_align, channels, sample_bytes_)));
  }
  block_align_ = block_align;
  return Ok();
}

Result<std::unique_ptr<Source>> WavSource::Open(const std::string& path,
                                                const SourceOptions& opts) {
  std::unique_ptr<WavSource> s(new WavSource());
  s->path_ = path;
  int64_t file_size = 0;
  TEND_ASSIGN_OR_RETURN(s->fd_, internal::OpenInputFile(path, "WAV", &file_size));
  const int fd = s->fd_.get();

  uint8_t hdr[12];
  TEND_ASSIGN_OR_RETURN(size_t got, PreadUpTo(fd, hdr, sizeof hdr, 0, path));
  if (got == 0) return Fail(Error::Corrupt(path + ": empty file, not a WAV"));
  if (got >= 4 && std::memcmp(hdr, "RIFX", 4) == 0) {
    return Fail(Error::Unsupported(path + ": big-endian RIFX WAV is not supported"));
  }
  if (got >= 4 && std::memcmp(hdr, "RF64", 4) == 0) {
    return Fail(Error::Unsupported(path + ": RF64 (over 4 GiB) WAV is not supported"));
  }
  if (std::memcmp(hdr, "RIFF", std::min<size_t>(got, 4)) != 0) {
    return Fail(Error::Corrupt(path + ": not a WAV file (no RIFF header)"));
  }
  if (got < sizeof hdr) {
    return Fail(Error::Corrupt(fmt::format(
        "{}: truncated header (file has {} bytes, a WAV header needs at least 12)", path, got)));
  }
  if (std::memcmp(hdr + 8, "WAVE", 4) != 0) {
    return Fail(Error::Corrupt(path + ": not a WAV file (RIFF type is not WAVE)"));
  }

  bool have_fmt = false;
  int64_t off = 12;
  for (;;) {
    uint8_t ch[8];
    TEND_ASSIGN_OR_RETURN(size_t n, PreadUpTo(fd, ch, sizeof ch, off, path));
    if (n < sizeof ch) {
      if (n == 0 && off == file_size) {
        return Fail(Error::Corrupt(path + (have_fmt ? ": no data chunk" : ": no fmt chunk")));
      }
      return Fail(Error::Corrupt(
          fmt::format("{}: truncated header (chunk header at byte {} cut off)", path, off)));
    }
    const std::string id(reinterpret_cast<const char*>(ch), 4);
    const uint32_t size = Le32(ch + 4);
    const int64_t body = off + 8;
    if (id == "fmt ") {
      if (size < 16) {
        return Fail(Error::Corrupt(fmt::format("{}: fmt chunk too short ({} bytes)", path, size)));
      }
      if (body + size > file_size) {
        return Fail(Error::Corrupt(
            fmt::format("{}: truncated header (fmt chunk of {} bytes, {} in the file)", path, size,
                        file_size - body)));
      }
      uint8_t fmtbuf[64] = {};
      const size_t want = std::min<size_t>(size, sizeof fmtbuf);
      TEND_ASSIGN_OR_RETURN(size_t fn, PreadUpTo(fd, fmtbuf, want, body, path));
      if (fn < want) return Fail(Error::Corrupt(path + ": truncated header (fmt chunk)"));
      TEND_RETURN_NOT_OK(s->ParseFmt(fmtbuf, size));
      have_fmt = true;
    } else if (id == "data") {
      if (!have_fmt) return Fail(Error::Corrupt(path + ": data chunk before the fmt chunk"));
      const int64_t avail = file_size - body;
      int64_t bytes = size;
      if (size == 0xFFFFFFFFu) {
        bytes = avail;  // written by a streaming recorder that never patched the size
      } else if (bytes > avail) {
        return Fail(Error::Corrupt(fmt::format(
            "{}: truncated data chunk (expected {} bytes, got {})", path, bytes, avail)));
      }
      if (bytes % s->block_align_ != 0) {
        return Fail(Error::Corrupt(fmt::format(
            "{}: truncated data chunk ({} bytes is not a whole number of {}-byte frames)", path,
            bytes, s->block_align_)));
      }
      s->data_offset_ = body;
      s->data_frames_ = bytes / s->block_align_;
      break;
    }
    off = body + size + (size & 1);  // chunks are padded to even sizes
    if (off > file_size) {
      return Fail(Error::Corrupt(
          fmt::format("{}: truncated header ('{}' chunk of {} bytes runs past the end of the file)",
                      path, id, size)));
    }
  }

  if (opts.wav_channel >= 0) {
    if (opts.wav_channel >= s->file_channels_) {
      return Fail(Error::Invalid(fmt::format("{}: channel {} requested, the file has {}", path,
                                             opts.wav_channel, s->file_channels_)));
    }
    s->pick_ = opts.wav_channel;
  }
  s->info_.sample_rate = s->sample_rate_;
  s->keep_non_finite_ = opts.keep_non_finite;
  s->info_.channels = s->pick_ >= 0 ? 1 : s->file_channels_;
  for (int c = 0; c < s->file_channels_; ++c) {
    if (s->pick_ < 0 || c == s->pick_) s->info_.channel_names.push_back(fmt::format("ch{}", c));
  }
  s->info_.total_frames = s->data_frames_;
  // Fixed-size read buffer: reads are done in pieces, so nothing grows with the request size.
  s->buf_.resize(std::max<size_t>(size_t{1} << 16, static_cast<size_t>(s->block_align_)));
  return std::unique_ptr<Source>(std::move(s));
}

void WavSource::Decode(const uint8_t* in, size_t frames, float* out) const {
  const int c0 = pick_ >= 0 ? pick_ : 0;
  const int c1 = pick_ >= 0 ? pick_ + 1 : file_channels_;
  for (size_t f = 0; f < frames; ++f) {
    const uint8_t* fr = in + f * block_align_;
    for (int c = c0; c < c1; ++c) {
      const uint8_t* p = fr + c * sample_bytes_;
      float v = 0;
      switch (enc_) {
        case Encoding::kPcm8:
          v = (static_cast<int>(p[0]) - 128) * (1.0f / 128);
          break;
        case Encoding::kPcm16:
          v = static_cast<int16_t>(Le16(p)) * (1.0f / 32768);
          break;
        case Encoding::kPcm24: {
          // Sign-extend by placing the 24 bits at the top of an int32.
          const int32_t x = static_cast<int32_t>((static_cast<uint32_t>(p[0]) << 8) |
                                                 (static_cast<uint32_t>(p[1]) << 16) |
                                                 (static_cast<uint32_t>(p[2]) << 24)) >>
                            8;
          v = static_cast<float>(x * (1.0 / 8388608));
          break;
        }
        case Encoding::kPcm32:
          v = static_cast<float>(static_cast<int32_t>(Le32(p)) * (1.0 / 2147483648.0));
          break;
        case Encoding::kFloat32:
          std::memcpy(&v, p, 4);
          break;
        case Encoding::kFloat64: {
          double d;
          std::memcpy(&d, p, 8);
          v = static_cast<float>(d);
          break;
        }
      }
      *out++ = v;
    }
  }
}

Result<size_t> WavSource::Read(std::span<float> out, size_t max_frames) {
  const int out_ch = info_.channels;
  if (out.size() < max_frames * out_ch) {
    return Fail(Error::Internal(fmt::format("{}: Read buffer holds {} floats, {} frames need {}",
                                            path_, out.size(), max_frames, max_frames * out_ch)));
  }
  const size_t want =
      static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(max_frames), data_frames_ - pos_));
  const size_t piece = buf_.size() / block_align_;
  size_t done = 0;
  while (done < want) {
    const size_t n = std::min(piece, want - done);
    const size_t bytes = n * block_align_;
    const int64_t at = data_offset_ + pos_ * block_align_;
    TEND_ASSIGN_OR_RETURN(size_t got, PreadUpTo(fd_.get(), buf_.data(), bytes, at, path_));
    if (got < bytes) {
      return Fail(Error::Corrupt(fmt::format(
          "{}: truncated data chunk (file shrank while reading: expected {} bytes at offset {}, "
          "got {})",
          path_, bytes, at, got)));
    }
    float* dst = out.data() + done * out_ch;
    Decode(buf_.data(), n, dst);
    if (enc_ == Encoding::kFloat32 || enc_ == Encoding::kFloat64) {
      for (size_t i = 0; i < n * out_ch; ++i) {
        if (!std::isfinite(dst[i])) [[unlikely]] {
          const int c = pick_ >= 0 ? pick_ : static_cast<int>(i % out_ch);
          const int64_t frame = pos_ + static_cast<int64_t>(i / out_ch);
          if (enc_ == Encoding::kFloat64 && !std::isnan(dst[i])) {
            double d;
            std::memcpy(&d, buf_.data() + (i / out_ch) * block_align_ + c * 8, 8);
            if (std::isfinite(d)) {
              return Fail(Error::Corrupt(
                  fmt::format("{}: sample {} at frame {}, channel {} is out of float range", path_,
                              d, frame, c)));
            }
          }
          if (keep_non_finite_) continue;
          return Fail(internal::BadSample(path_, dst[i], frame, c));
        }
      }
    }
    pos_ += static_cast<int64_t>(n);
    done += n;
  }
  return done;
}

std::string WavSource::Describe() const {
  if (pick_ >= 0) {
    return fmt::format("wav:{} ({} Hz, channel {} of {}, {})", path_, sample_rate_, pick_,
                       file_channels_, EncodingName(enc_));
  }
  return fmt::format("wav:{} ({} Hz, {} ch, {})", path_, sample_rate_, file_channels_,
                     EncodingName(enc_));
}

constexpr size_t kWriterHeaderBytes = 12 + (8 + 18) + (8 + 4) + 8;

Status WriteAll(int fd, const void* data, size_t len, const std::string& name) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (len > 0) {
    ssize_t n = ::write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(fs::ErrnoError("write " + name, errno));
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return Ok();
}

void FillWriterHeader(uint8_t* h, uint32_t rate, int channels, int64_t frames) {
  const uint32_t data_bytes = static_cast<uint32_t>(frames * channels * 4);
  std::memcpy(h, "RIFF", 4);
  PutLe32(h + 4, static_cast<uint32_t>(kWriterHeaderBytes - 8 + data_bytes));
  std::memcpy(h + 8, "WAVE", 4);
  std::memcpy(h + 12, "fmt ", 4);
  PutLe32(h + 16, 18);
  PutLe16(h + 20, 3);  // WAVE_FORMAT_IEEE_FLOAT
  PutLe16(h + 22, static_cast<uint16_t>(channels));
  PutLe32(h + 24, rate);
  PutLe32(h + 28, rate * static_cast<uint32_t>(channels) * 4);
  PutLe16(h + 32, static_cast<uint16_t>(channels * 4));
  PutLe16(h + 34, 32);
  PutLe16(h + 36, 0);  // cbSize
  std::memcpy(h + 38, "fact", 4);
  PutLe32(h + 42, 4);
  PutLe32(h + 46, static_cast<uint32_t>(frames));
  std::memcpy(h + 50, "data", 4);
  PutLe32(h + 54, data_bytes);
}

std::string TempDirForSpecial() {
  const char* t = std::getenv("TMPDIR");
  return t && *t ? t : "/tmp";
}

}  // namespace

Result<std::unique_ptr<Source>> OpenWav(const std::string& path, const SourceOptions& opts) {
  return WavSource::Open(path, opts);
}

Result<std::unique_ptr<WavWriter>> WavWriter::Create(const std::string& path, double sample_rate,
                                                     int channels) {
  if (!(sample_rate >= 1 && sample_rate <= 4294967295.0) ||
      std::fabs(sample_rate - std::round(sample_rate)) > 1e-9 * sample_rate) {
    return Fail(Error::Invalid(fmt::format(
        "{}: a WAV file needs a whole-number sample rate in Hz, got {}", path, sample_rate)));
  }
  if (channels < 1 || channels > 65535 / 4) {
    return Fail(Error::Invalid(fmt::format("{}: cannot write {} channels", path, channels)));
  }
  if (std::round(sample_rate) * channels * 4 > 4294967295.0) {
    return Fail(Error::Invalid(fmt::format("{}: {} Hz x {} channels overflows the WAV byte rate",
                                           path, sample_rate, channels)));
  }
  std::unique_ptr<WavWriter> w(new WavWriter());
  // The header is rewritten at the end, so even a special target (/dev/null, a pipe) gets a
  // temporary file, copied into it at Close; a symlink's target is replaced, not the link.
  TEND_ASSIGN_OR_RETURN(fs::OutputTarget target, fs::ResolveOutput(path));
  w->path_ = target.path;
  w->special_ = target.special;
  w->tmp_path_ = target.special ? fmt::format("{}/tend-wav.{}.tmp", TempDirForSpecial(), ::getpid())
                                : fmt::format("{}.tmp.{}", target.path, ::getpid());
  w->channels_ = channels;
  w->fd_ = ::open(w->tmp_path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (w->fd_ < 0) return Fail(fs::ErrnoError("create " + w->tmp_path_, errno));
  uint8_t h[kWriterHeaderBytes];
  FillWriterHeader(h, static_cast<uint32_t>(std::lround(sample_rate)), channels, 0);
  TEND_RETURN_NOT_OK(WriteAll(w->fd_, h, sizeof h, w->tmp_path_));
  return w;
}

WavWriter::~WavWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_path_.c_str());
  }
}

Status WavWriter::Write(std::span<const float> interleaved) {
  if (fd_ < 0) return Fail(Error::Internal(path_ + ": write after Close"));
  if (interleaved.size() % channels_ != 0) {
    return Fail(
        Error::Invalid(fmt::format("{}: {} samples is not a whole number of {}-channel "
                                   "frames",
                                   path_, interleaved.size(), channels_)));
  }
  const int64_t frames = static_cast<int64_t>(interleaved.size() / channels_);
  TEND_RETURN_NOT_OK(internal::CheckFinite(path_, interleaved.data(), frames, channels_, frames_));
  if ((frames_ + frames) * channels_ * 4 + kWriterHeaderBytes > 0xFFFFFFFFll) {
    return Fail(Error::Invalid(path_ + ": over 4 GiB of samples, too large for a WAV file"));
  }
  TEND_RETURN_NOT_OK(WriteAll(fd_, interleaved.data(), interleaved.size() * 4, tmp_path_));
  frames_ += frames;
  return Ok();
}

Status WavWriter::Close() {
  if (fd_ < 0) return Fail(Error::Internal(path_ + ": Close called twice"));
  uint8_t h[kWriterHeaderBytes];
  // The rate is already validated; recover it from what Create wrote.
  TEND_ASSIGN_OR_RETURN(size_t got, PreadUpTo(fd_, h, sizeof h, 0, tmp_path_));
  if (got != sizeof h) return Fail(Error::Io(tmp_path_ + ": header vanished while writing"));
  FillWriterHeader(h, Le32(h + 24), channels_, frames_);
  if (::pwrite(fd_, h, sizeof h, 0) != static_cast<ssize_t>(sizeof h)) {
    return Fail(fs::ErrnoError("write " + tmp_path_, errno));
  }
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    const int e = errno;
    ::unlink(tmp_path_.c_str());
    return Fail(fs::ErrnoError("close " + tmp_path_, e));
  }
  if (special_) {
    Status st = fs::CopyInto(tmp_path_, path_);
    ::unlink(tmp_path_.c_str());
    return st;
  }
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp_path_.c_str());
    return Fail(fs::ErrnoError("rename " + tmp_path_ + " -> " + path_, e));
  }
  return Ok();
}

Status WriteWavFloat32(const std::string& path, double sample_rate, int channels,
                       std::span<const float> interleaved) {
  TEND_ASSIGN_OR_RETURN(auto w, WavWriter::Create(path, sample_rate, channels));
  TEND_RETURN_NOT_OK(w->Write(interleaved));
  return w->Close();
}

}  // namespace tend::sources
