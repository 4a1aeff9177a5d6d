// Helpers for the dsp tests: test-data paths, a minimal float WAV reader for the shared CWRU
// recordings (the dsp module has no I/O of its own), and signal generators.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <numbers>
#include <optional>
#include <string>
#include <vector>

namespace tend::dsp::testing {

inline std::string SourceDir() {
  const char* e = std::getenv("TEND_SOURCE_DIR");
  return e != nullptr ? e : TEND_SOURCE_DIR;
}

// TEND_SHARED_DIR, else <source>/../shared (where CMake points it); empty when neither exists
// (other machines): the tests that need it skip then.
inline std::string SharedDir() {
  const char* e = std::getenv("TEND_SHARED_DIR");
  const std::string dir = e != nullptr ? e : SourceDir() + "/../shared";
  return std::filesystem::is_directory(dir) ? dir : "";
}

struct Wav {
  int sample_rate = 0;
  int channels = 0;
  std::vector<float> interleaved;
};

// IEEE-float 32-bit WAV (format 3, or WAVE_FORMAT_EXTENSIBLE with a float subformat).
inline std::optional<Wav> ReadFloatWav(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return std::nullopt;
  std::vector<char> b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto u16 = [&](size_t o) {
    uint16_t v;
    std::memcpy(&v, &b[o], 2);
    return v;
  };
  auto u32 = [&](size_t o) {
    uint32_t v;
    std::memcpy(&v, &b[o], 4);
    return v;
  };
  if (b.size() < 12 || std::memcmp(b.data(), "RIFF", 4) != 0 ||
      std::memcmp(b.data() + 8, "WAVE", 4) != 0) {
    return std::nullopt;
  }
  Wav w;
  bool is_float = false;
  for (size_t o = 12; o + 8 <= b.size();) {
    const uint32_t size = u32(o + 4);
    if (o + 8 + size > b.size()) return std::nullopt;
    if (std::memcmp(&b[o], "fmt ", 4) == 0 && size >= 16) {
      const uint16_t tag = u16(o + 8);
      w.channels = u16(o + 10);
      w.sample_rate = static_cast<int>(u32(o + 12));
      const uint16_t bits = u16(o + 22);
      is_float = bits == 32 && (tag == 3 || (tag == 0xFFFE && size >= 40 && u16(o + 32) == 3));
    } else if (std::memcmp(&b[o], "data", 4) == 0) {
      if (!is_float || w.channels == 0) return std::nullopt;
      w.interleaved.resize(size / 4);
      std::memcpy(w.interleaved.data(), &b[o + 8], w.interleaved.size() * 4);
      return w;
    }
    o += 8 + size + (size & 1);
  }
  return std::nullopt;
}

// Channel-planar copy of frames [offset, offset+n).
inline std::vector<float> PlanarWindow(const Wav& w, size_t offset, size_t n) {
  std::vector<float> out(n * w.channels);
  for (int c = 0; c < w.channels; ++c) {
    for (size_t i = 0; i < n; ++i) out[c * n + i] = w.interleaved[(offset + i) * w.channels + c];
  }
  return out;
}

inline std::vector<float> Tone(int n, double fs, double hz, double amplitude, double offset = 0,
                               double phase = 0) {
  std::vector<float> x(n);
  for (int i = 0; i < n; ++i) {
    x[i] = static_cast<float>(offset +
                              amplitude * std::cos(2 * std::numbers::pi * hz * i / fs + phase));
  }
  return x;
}

}  // namespace tend::dsp::testing
