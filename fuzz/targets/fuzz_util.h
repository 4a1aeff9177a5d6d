// Helpers shared by the fuzz targets (header-only, so a target stays one .cc file).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace tend::fuzz {

// A property the target checks did not hold: print it and abort, so both engines record the
// input as a crash.
[[noreturn]] inline void Violated(const char* what) {
  std::fprintf(stderr, "fuzz property violated: %s\n", what);
  std::abort();
}
#define TEND_FUZZ_CHECK(cond)                   \
  do {                                          \
    if (!(cond)) ::tend::fuzz::Violated(#cond); \
  } while (0)

// The input as an anonymous in-memory file, for parsers that take a path: /proc/self/fd/N.
class MemFile {
 public:
  MemFile(const uint8_t* data, size_t size) {
    fd_ = ::memfd_create("tend-fuzz", MFD_CLOEXEC);
    if (fd_ < 0) Violated("memfd_create failed");
    size_t off = 0;
    while (off < size) {
      ssize_t n = ::write(fd_, data + off, size - off);
      if (n <= 0) Violated("write to memfd failed");
      off += static_cast<size_t>(n);
    }
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  int fd_ = -1;
};

inline std::string_view AsText(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace tend::fuzz
