#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#include "sources/source.h"

namespace tend::sources {
namespace {

class Pipe {
 public:
  Pipe() { EXPECT_EQ(::pipe(fds_), 0); }
  ~Pipe() {
    CloseWrite();
    if (fds_[0] >= 0) ::close(fds_[0]);
  }
  int r() const { return fds_[0]; }
  int w() const { return fds_[1]; }
  void CloseWrite() {
    if (fds_[1] >= 0) ::close(fds_[1]);
    fds_[1] = -1;
  }
  // Writes the bytes in pieces of `piece` bytes (so frames and floats are split across writes).
  void Write(const void* data, size_t len, size_t piece) {
    auto* p = static_cast<const uint8_t*>(data);
    for (size_t off = 0; off < len; off += piece) {
      const size_t n = std::min(piece, len - off);
      ASSERT_EQ(::write(fds_[1], p + off, n), static_cast<ssize_t>(n));
    }
  }

 private:
  int fds_[2] = {-1, -1};
};

std::vector<float> ReadAll(Source& s, size_t chunk, Error* err = nullptr) {
  std::vector<float> all, buf(chunk * s.info().channels);
  for (;;) {
    auto n = s.Read(buf, chunk);
    if (!n) {
      if (err)
        *err = n.error();
      else
        ADD_FAILURE() << n.error().message;
      break;
    }
    if (*n == 0) break;
    all.insert(all.end(), buf.begin(), buf.begin() + *n * s.info().channels);
  }
  return all;
}

TEST(RawTest, ReadsFramesSplitAcrossWritesFromAPipe) {
  Pipe p;
  std::vector<float> v(3 * 5000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::cos(0.01f * i) * float(i % 7);
  auto src = OpenRawFd(p.r(), {.sample_rate = 10000, .channels = 3}, "pipe");
  ASSERT_TRUE(src.has_value()) << src.error().message;
  EXPECT_EQ((*src)->info().total_frames, -1);
  EXPECT_EQ((*src)->Describe(), "raw:pipe (10000 Hz, 3 ch, float32le)");
  // A writer thread feeding 5-byte pieces: reads see partial floats and partial frames.
  std::thread writer([&] {
    p.Write(v.data(), v.size() * 4, 5);
    p.CloseWrite();
  });
  const auto got = ReadAll(**src, 64);
  writer.join();
  EXPECT_EQ(got, v);
}

TEST(RawTest, OpenSourceFdSpec) {
  Pipe p;
  const float v[] = {1.f, 2.f, 3.f, 4.f};
  p.Write(v, sizeof v, sizeof v);
  p.CloseWrite();
  auto src = OpenSource("fd:" + std::to_string(p.r()), {.sample_rate = 100, .channels = 2});
  ASSERT_TRUE(src.has_value()) << src.error().message;
  EXPECT_EQ(ReadAll(**src, 10), std::vector<float>(v, v + 4));
  for (const char* bad : {"fd:", "fd:x", "fd:-1", "fd:3x"}) {
    auto r = OpenSource(bad, {.sample_rate = 100, .channels = 2});
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_NE(r.error().message.find("fd:N"), std::string::npos) << r.error().message;
  }
}

TEST(RawTest, StdinSpec) {
  Pipe p;
  const float v[] = {0.5f, -0.5f};
  p.Write(v, sizeof v, sizeof v);
  p.CloseWrite();
  const int saved = ::dup(STDIN_FILENO);
  ASSERT_GE(saved, 0);
  ASSERT_EQ(::dup2(p.r(), STDIN_FILENO), STDIN_FILENO);
  auto src = OpenSource("-", {.sample_rate = 10, .channels = 1});
  std::vector<float> got;
  if (src) got = ReadAll(**src, 8);
  ::dup2(saved, STDIN_FILENO);
  ::close(saved);
  ASSERT_TRUE(src.has_value()) << src.error().message;
  EXPECT_EQ((*src)->Describe(), "raw:stdin (10 Hz, 1 ch, float32le)");
  EXPECT_EQ(got, std::vector<float>(v, v + 2));
}

TEST(RawBadInputTest, NeedsRateAndChannels) {
  Pipe p;
  for (SourceOptions o :
       {SourceOptions{}, SourceOptions{.sample_rate = 100}, SourceOptions{.channels = 1},
        SourceOptions{.sample_rate = -5, .channels = 1}}) {
    auto r = OpenRawFd(p.r(), o, "stdin");
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(r.error().message.find("stdin: raw float32 input needs the sample rate"),
              std::string::npos);
  }
  auto closed = OpenRawFd(1000, {.sample_rate = 100, .channels = 1}, "fd:1000");
  ASSERT_FALSE(closed.has_value());
  EXPECT_NE(closed.error().message.find("not open"), std::string::npos);
}

TEST(RawBadInputTest, NanInfAndPartialFrame) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (float bad : {nan, inf}) {
    Pipe p;
    std::vector<float> v(2 * 100, 1.f);
    v[2 * 57 + 1] = bad;
    p.Write(v.data(), v.size() * 4, v.size() * 4);
    p.CloseWrite();
    auto src = OpenRawFd(p.r(), {.sample_rate = 100, .channels = 2}, "stdin");
    ASSERT_TRUE(src.has_value());
    Error e;
    ReadAll(**src, 10, &e);
    EXPECT_EQ(e.message, std::string("stdin: ") + (std::isnan(bad) ? "NaN" : "Inf") +
                             " sample at frame 57, channel 1");
  }
  Pipe p;
  const float v[] = {1.f, 2.f, 3.f};  // 1.5 frames of 2 channels
  p.Write(v, sizeof v, sizeof v);
  p.CloseWrite();
  auto src = OpenRawFd(p.r(), {.sample_rate = 100, .channels = 2}, "stdin");
  ASSERT_TRUE(src.has_value());
  Error e;
  const auto got = ReadAll(**src, 10, &e);
  EXPECT_EQ(got, (std::vector<float>{1.f, 2.f}));
  EXPECT_EQ(e.code, ErrorCode::kCorrupt);
  EXPECT_NE(e.message.find("stdin: stream ended inside a frame (4 stray bytes"), std::string::npos)
      << e.message;
}

}  // namespace
}  // namespace tend::sources
