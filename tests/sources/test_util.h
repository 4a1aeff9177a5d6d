// Helpers for the sources tests: a scratch directory and a byte-level WAV builder, so each test
// states exactly which header fields it breaks.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace tend::sources::testing {

class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tend_sources_XXXXXX").string();
    char* p = ::mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void WriteBytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

inline void WriteText(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
}

class Bytes {
 public:
  Bytes& Str(const char* s) {
    b_.insert(b_.end(), s, s + std::strlen(s));
    return *this;
  }
  Bytes& U16(uint16_t v) { return Le(v, 2); }
  Bytes& U32(uint32_t v) { return Le(v, 4); }
  Bytes& I24(int32_t v) { return Le(static_cast<uint32_t>(v), 3); }
  Bytes& Raw(const void* p, size_t n) {
    auto* c = static_cast<const uint8_t*>(p);
    b_.insert(b_.end(), c, c + n);
    return *this;
  }
  Bytes& Append(const std::vector<uint8_t>& v) {
    b_.insert(b_.end(), v.begin(), v.end());
    return *this;
  }
  const std::vector<uint8_t>& bytes() const { return b_; }
  size_t size() const { return b_.size(); }

 private:
  Bytes& Le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) b_.push_back(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
  std::vector<uint8_t> b_;
};

struct WavSpec {
  uint16_t tag = 1;
  uint16_t channels = 1;
  uint32_t rate = 8000;
  uint16_t bits = 16;
  bool extensible = false;           // write WAVE_FORMAT_EXTENSIBLE with `tag` as the sub-format
  uint16_t valid_bits = 0;           // extensible only; 0 = bits
  int32_t block_align = -1;          // -1 = channels * bits / 8
  int64_t data_size = -1;            // declared data size; -1 = real size
  std::vector<uint8_t> before_data;  // extra chunks between fmt and data
};

// A complete WAV file: RIFF header, fmt chunk, optional extra chunks, data chunk.
inline std::vector<uint8_t> MakeWav(const WavSpec& s, const std::vector<uint8_t>& data) {
  Bytes fmt;
  const uint16_t align = s.block_align >= 0 ? static_cast<uint16_t>(s.block_align)
                                            : static_cast<uint16_t>(s.channels * s.bits / 8);
  fmt.U16(s.extensible ? 0xFFFE : s.tag)
      .U16(s.channels)
      .U32(s.rate)
      .U32(s.rate * align)
      .U16(align)
      .U16(s.bits);
  if (s.extensible) {
    static const uint8_t tail[14] = {0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80,
                                     0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};
    fmt.U16(22).U16(s.valid_bits ? s.valid_bits : s.bits).U32(0).U16(s.tag).Raw(tail, 14);
  }
  Bytes body;
  body.Str("WAVE").Str("fmt ").U32(static_cast<uint32_t>(fmt.size())).Append(fmt.bytes());
  body.Append(s.before_data);
  body.Str("data").U32(static_cast<uint32_t>(s.data_size >= 0 ? s.data_size : data.size()));
  body.Append(data);
  Bytes all;
  all.Str("RIFF").U32(static_cast<uint32_t>(body.size())).Append(body.bytes());
  return all.bytes();
}

}  // namespace tend::sources::testing
