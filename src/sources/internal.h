// Helpers shared by the sources' implementation files (not part of the module's API).
#pragma once

#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "core/status.h"

namespace tend::sources::internal {

// Owns a POSIX file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = o.fd_;
      o.fd_ = -1;
    }
    return *this;
  }
  ~UniqueFd() { Reset(); }
  int get() const { return fd_; }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// Opens a regular file read-only for a source; a missing file, a refusal or a directory is an
// error naming the path ("a.wav: is a directory, expected a WAV file"). Sets *size when given.
Result<UniqueFd> OpenInputFile(const std::string& path, const char* kind, int64_t* size = nullptr);

// "a.wav: NaN sample at frame 12, channel 1".
inline Error BadSample(const std::string& name, float v, int64_t frame, int channel) {
  return Error::Corrupt(fmt::format("{}: {} sample at frame {}, channel {}", name,
                                    std::isnan(v) ? "NaN" : "Inf", frame, channel));
}

// Checks a block of interleaved samples; frame0 is the absolute index of its first frame.
inline Status CheckFinite(const std::string& name, const float* x, size_t frames, int channels,
                          int64_t frame0) {
  const size_t n = frames * static_cast<size_t>(channels);
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) [[unlikely]] {
      return Fail(BadSample(name, x[i], frame0 + static_cast<int64_t>(i / channels),
                            static_cast<int>(i % channels)));
    }
  }
  return Ok();
}

}  // namespace tend::sources::internal
