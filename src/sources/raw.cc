// Raw little-endian float32 frames from a file descriptor: stdin ("-"), an inherited pipe
// ("fd:N"), or a FIFO. Returns whole frames as soon as they arrive; a partial frame is kept for
// the next call.
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "core/fs.h"
#include "sources/internal.h"
#include "sources/source.h"

namespace tend::sources {

namespace {

class RawSource final : public Source {
 public:
  RawSource(int fd, std::string name, double rate, int channels, bool keep_non_finite)
      : fd_(fd),
        name_(std::move(name)),
        frame_bytes_(static_cast<size_t>(channels) * 4),
        keep_non_finite_(keep_non_finite) {
    info_.sample_rate = rate;
    info_.channels = channels;
    for (int c = 0; c < channels; ++c) info_.channel_names.push_back(fmt::format("ch{}", c));
  }

  const StreamInfo& info() const override { return info_; }
  std::string Describe() const override {
    return fmt::format("raw:{} ({} Hz, {} ch, float32le)", name_, info_.sample_rate,
                       info_.channels);
  }

  void SetInterrupt(const std::atomic<bool>* flag) override { interrupt_ = flag; }

  Result<size_t> Read(std::span<float> out, size_t max_frames) override {
    if (out.size() < max_frames * info_.channels) {
      return Fail(
          Error::Internal(fmt::format("{}: Read buffer holds {} floats, {} frames need {}", name_,
                                      out.size(), max_frames, max_frames * info_.channels)));
    }
    if (max_frames == 0 || eof_) return size_t{0};
    // Bytes go straight into the caller's buffer; carry_ holds a frame split across reads.
    auto* dst = reinterpret_cast<uint8_t*>(out.data());
    const size_t cap = max_frames * frame_bytes_;
    size_t have = carry_len_;
    std::memcpy(dst, carry_, carry_len_);
    while (have < frame_bytes_) {
      if (interrupt_) {
        // Wait in short steps so that a stop request is seen while the pipe is idle.
        pollfd pfd{fd_, POLLIN, 0};
        int pr = ::poll(&pfd, 1, 100);
        if (interrupt_->load()) {
          carry_len_ = have;  // keep a partial frame for a later call
          std::memcpy(carry_, dst, have);
          return size_t{0};
        }
        if (pr == 0 || (pr < 0 && errno == EINTR)) continue;
      }
      ssize_t n = ::read(fd_, dst + have, cap - have);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          pollfd pfd{fd_, POLLIN, 0};
          ::poll(&pfd, 1, -1);
          continue;
        }
        return Fail(fs::ErrnoError("read " + name_, errno));
      }
      if (n == 0) {
        eof_ = true;
        if (have > 0) {
          return Fail(Error::Corrupt(fmt::format(
              "{}: stream ended inside a frame ({} stray bytes; frames are {} channels x 4 "
              "bytes)",
              name_, have, info_.channels)));
        }
        return size_t{0};
      }
      have += static_cast<size_t>(n);
    }
    const size_t frames = have / frame_bytes_;
    carry_len_ = have - frames * frame_bytes_;
    std::memcpy(carry_, dst + frames * frame_bytes_, carry_len_);
    if (!keep_non_finite_) {
      TEND_RETURN_NOT_OK(internal::CheckFinite(name_, out.data(), frames, info_.channels, frame_));
    }
    frame_ += static_cast<int64_t>(frames);
    return frames;
  }

 private:
  int fd_;
  std::string name_;
  size_t frame_bytes_;
  bool keep_non_finite_;
  const std::atomic<bool>* interrupt_ = nullptr;
  // A partial frame left over from the last read (frames are at most kMaxChannels x 4 bytes).
  static constexpr int kMaxChannels = 256;
  uint8_t carry_[kMaxChannels * 4];
  size_t carry_len_ = 0;
  int64_t frame_ = 0;
  bool eof_ = false;
  StreamInfo info_;
};

}  // namespace

Result<std::unique_ptr<Source>> OpenRawFd(int fd, const SourceOptions& opts, std::string name) {
  if (!(opts.sample_rate > 0) || !std::isfinite(opts.sample_rate) || opts.channels < 1) {
    return Fail(Error::Invalid(name +
                               ": raw float32 input needs the sample rate and channel count (e.g. "
                               "--sample-rate 10000 --channels 1)"));
  }
  if (opts.channels > 256) {
    return Fail(Error::Invalid(
        fmt::format("{}: {} channels is more than the 256 supported", name, opts.channels)));
  }
  if (opts.wav_channel >= 0) {
    return Fail(Error::Invalid(name + ": picking one channel is only supported for WAV and CSV"));
  }
  if (fd < 0 || ::fcntl(fd, F_GETFD) < 0) {
    return Fail(Error::Invalid(fmt::format("{}: file descriptor {} is not open", name, fd)));
  }
  return std::unique_ptr<Source>(std::make_unique<RawSource>(fd, std::move(name), opts.sample_rate,
                                                             opts.channels, opts.keep_non_finite));
}

}  // namespace tend::sources
