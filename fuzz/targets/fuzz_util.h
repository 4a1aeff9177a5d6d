// Helpers shared by the fuzz targets (header-only, so a target stays one .cc file).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
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

inline std::string_view AsText(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace tend::fuzz
