#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <vector>

#include "sources/source.h"
#include "test_util.h"

namespace tend::sources {
namespace {

using testing::Bytes;
using testing::MakeWav;
using testing::ScratchDir;
using testing::WavSpec;
using testing::WriteBytes;

// Reads the whole stream, in chunks of `chunk` frames.
std::vector<float> ReadAll(Source& s, size_t chunk = 4096) {
  std::vector<float> all, buf(chunk * s.info().channels);
  for (;;) {
    auto n = s.Read(buf, chunk);
    EXPECT_TRUE(n.has_value()) << (n ? "" : n.error().message);
    if (!n || *n == 0) break;
    all.insert(all.end(), buf.begin(), buf.begin() + *n * s.info().channels);
  }
  return all;
}

// Opening must fail; returns the error (one line, naming the file).
Error OpenError(const std::string& path, const SourceOptions& opts = {}) {
  auto r = OpenWav(path, opts);
  EXPECT_FALSE(r.has_value());
  if (r) return Error{};
  EXPECT_EQ(r.error().message.find('\n'), std::string::npos);
  EXPECT_NE(r.error().message.find(path), std::string::npos) << r.error().message;
  return r.error();
}

std::vector<uint8_t> Pcm16(std::initializer_list<int16_t> v) {
  Bytes b;
  for (int16_t x : v) b.U16(static_cast<uint16_t>(x));
  return b.bytes();
}

TEST(WavTest, Pcm16MonoScaledToUnitRange) {
  ScratchDir dir;
  const std::string path = dir.File("a.wav");
  WriteBytes(path, MakeWav({.tag = 1, .channels = 1, .rate = 8000, .bits = 16},
                           Pcm16({0, 1, -1, 32767, -32768, 16384})));
  auto src = OpenWav(path);
  ASSERT_TRUE(src.has_value()) << src.error().message;
  EXPECT_EQ((*src)->info().sample_rate, 8000);
  EXPECT_EQ((*src)->info().channels, 1);
  EXPECT_EQ((*src)->info().total_frames, 6);
  EXPECT_EQ((*src)->Describe(), "wav:" + path + " (8000 Hz, 1 ch, pcm16)");
  const std::vector<float> want = {0.f, 1.f / 32768, -1.f / 32768, 32767.f / 32768, -1.f, 0.5f};
  EXPECT_EQ(ReadAll(**src), want);
}

TEST(WavTest, Pcm24StereoOddRateInterleaved) {
  ScratchDir dir;
  const std::string path = dir.File("b.wav");
  Bytes d;
  for (int32_t v : {0x7FFFFF, -0x800000, 1, -1, 0x400000, 0}) d.I24(v);
  WriteBytes(path, MakeWav({.tag = 1, .channels = 2, .rate = 44099, .bits = 24}, d.bytes()));
  auto src = OpenWav(path);
  ASSERT_TRUE(src.has_value()) << src.error().message;
  EXPECT_EQ((*src)->info().sample_rate, 44099);
  EXPECT_EQ((*src)->info().channels, 2);
  EXPECT_EQ((*src)->info().total_frames, 3);
  EXPECT_EQ((*src)->info().channel_names, (std::vector<std::string>{"ch0", "ch1"}));
  const double s = 8388608.0;
  const std::vector<float> want = {float(0x7FFFFF / s), -1.f, float(1 / s),
                                   float(-1 / s),       0.5f, 0.f};
  EXPECT_EQ(ReadAll(**src), want);
}

TEST(WavTest, Pcm32AndPcm8) {
  ScratchDir dir;
  Bytes d32;
  for (int32_t v : {std::numeric_limits<int32_t>::max(), std::numeric_limits<int32_t>::min(),
                    1 << 30, -(1 << 30)}) {
    d32.U32(static_cast<uint32_t>(v));
  }
  WriteBytes(dir.File("c.wav"),
             MakeWav({.tag = 1, .channels = 1, .rate = 1000, .bits = 32}, d32.bytes()));
  auto s32 = OpenWav(dir.File("c.wav"));
  ASSERT_TRUE(s32.has_value()) << s32.error().message;
  const std::vector<float> want32 = {float(2147483647 / 2147483648.0), -1.f, 0.5f, -0.5f};
  EXPECT_EQ(ReadAll(**s32), want32);

  WriteBytes(dir.File("d.wav"),
             MakeWav({.tag = 1, .channels = 1, .rate = 1000, .bits = 8}, {0, 128, 255, 64}));
  auto s8 = OpenWav(dir.File("d.wav"));
  ASSERT_TRUE(s8.has_value()) << s8.error().message;
  const std::vector<float> want8 = {-1.f, 0.f, 127.f / 128, -0.5f};
  EXPECT_EQ(ReadAll(**s8), want8);
}

TEST(WavTest, Float32StereoSkipsOtherChunksAndPadding) {
  ScratchDir dir;
  const std::string path = dir.File("e.wav");
  const float v[] = {0.25f, -1.5f, 3.0e-7f, 100.0f, -0.0f, 1.0f};
  // An odd-sized LIST chunk is followed by a pad byte that must be skipped.
  Bytes list;
  list.Str("LIST").U32(5).Str("INFOx").Raw("\0", 1);
  WavSpec spec{.tag = 3, .channels = 2, .rate = 12000, .bits = 32};
  spec.before_data = list.bytes();
  Bytes d;
  d.Raw(v, sizeof v);
  WriteBytes(path, MakeWav(spec, d.bytes()));
  auto src = OpenWav(path);
  ASSERT_TRUE(src.has_value()) << src.error().message;
  EXPECT_EQ((*src)->Describe(), "wav:" + path + " (12000 Hz, 2 ch, float32)");
  EXPECT_EQ(ReadAll(**src), std::vector<float>(v, v + 6));
}

TEST(WavTest, Float64) {
  ScratchDir dir;
  const double v[] = {0.125, -2.5, 1e-3};
  Bytes d;
  d.Raw(v, sizeof v);
  WriteBytes(dir.File("f.wav"),
             MakeWav({.tag = 3, .channels = 1, .rate = 500, .bits = 64}, d.bytes()));
  auto src = OpenWav(dir.File("f.wav"));
  ASSERT_TRUE(src.has_value()) << src.error().message;
  EXPECT_EQ(ReadAll(**src), (std::vector<float>{0.125f, -2.5f, float(1e-3)}));
}

TEST(WavTest, ExtensibleFloatAndPcm) {
  ScratchDir dir;
  const float v[] = {0.5f, -0.5f, 0.25f, 1.f, 2.f, 3.f};
  Bytes d;
  d.Raw(v, sizeof v);
  WriteBytes(
      dir.File("g.wav"),
      MakeWav({.tag = 3, .channels = 3, .rate = 12345, .bits = 32, .extensible = true}, d.bytes()));
  auto f = OpenWav(dir.File("g.wav"));
  ASSERT_TRUE(f.has_value()) << f.error().message;
  EXPECT_EQ((*f)->info().channels, 3);
  EXPECT_EQ((*f)->info().sample_rate, 12345);
  EXPECT_EQ(ReadAll(**f), std::vector<float>(v, v + 6));

  // 24 valid bits in a 32-bit container: left-justified, so the container's scale applies.
  Bytes p;
  for (int32_t x : {0x40000000, -0x40000000}) p.U32(static_cast<uint32_t>(x));
  WriteBytes(dir.File("h.wav"), MakeWav({.tag = 1,
                                         .channels = 2,
                                         .rate = 96000,
                                         .bits = 32,
                                         .extensible = true,
                                         .valid_bits = 24},
                                        p.bytes()));
  auto h = OpenWav(dir.File("h.wav"));
  ASSERT_TRUE(h.has_value()) << h.error().message;
  EXPECT_EQ(ReadAll(**h), (std::vector<float>{0.5f, -0.5f}));
}

TEST(WavTest, PicksOneChannel) {
  ScratchDir dir;
  const std::string path = dir.File("i.wav");
  WriteBytes(path, MakeWav({.tag = 1, .channels = 3, .rate = 8000, .bits = 16},
                           Pcm16({1, 2, 3, 4, 5, 6})));
  auto src = OpenWav(path, {.wav_channel = 1});
  ASSERT_TRUE(src.has_value()) << src.error().message;
  EXPECT_EQ((*src)->info().channels, 1);
  EXPECT_EQ((*src)->info().channel_names, std::vector<std::string>{"ch1"});
  EXPECT_EQ((*src)->Describe(), "wav:" + path + " (8000 Hz, channel 1 of 3, pcm16)");
  EXPECT_EQ(ReadAll(**src), (std::vector<float>{2.f / 32768, 5.f / 32768}));
  EXPECT_NE(OpenError(path, {.wav_channel = 3}).message.find("channel 3 requested, the file has 3"),
            std::string::npos);
}

TEST(WavTest, ChunkedReadsMatchOneReadAndEndAtZero) {
  ScratchDir dir;
  const std::string path = dir.File("j.wav");
  std::vector<float> v(2 * 10007);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(0.001f * i) * (i % 2 ? -1.f : 1.f);
  ASSERT_TRUE(WriteWavFloat32(path, 9999, 2, v).has_value());
  auto a = OpenWav(path);
  auto b = OpenWav(path);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(ReadAll(**a, 7), v);
  EXPECT_EQ(ReadAll(**b, 1 << 20), v);
  std::vector<float> buf(16);
  auto n = (*a)->Read(buf, 8);
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(*n, 0u);
}

TEST(WavTest, WriterRoundTripAndAtomicity) {
  ScratchDir dir;
  const std::string path = dir.File("k.wav");
  const std::vector<float> v = {1.f, -1.f, 0.5f, 1e-20f, -3.25f, 7.f};
  ASSERT_TRUE(WriteWavFloat32(path, 48000, 3, v).has_value());
  auto src = OpenWav(path);
  ASSERT_TRUE(src.has_value()) << src.error().message;
  EXPECT_EQ((*src)->info().sample_rate, 48000);
  EXPECT_EQ((*src)->info().channels, 3);
  EXPECT_EQ(ReadAll(**src), v);
  EXPECT_EQ(std::filesystem::file_size(path), 58u + v.size() * 4);

  // A writer that is never closed leaves nothing behind, not even its temporary file.
  {
    auto w = WavWriter::Create(dir.File("never.wav"), 8000, 1);
    ASSERT_TRUE(w.has_value());
    ASSERT_TRUE((*w)->Write(v).has_value());
  }
  size_t files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.File(""))) files += e.is_regular_file();
  EXPECT_EQ(files, 1u);
}

TEST(WavTest, WriterRejectsBadInput) {
  ScratchDir dir;
  auto rate = WriteWavFloat32(dir.File("x.wav"), 12000.5, 1, std::vector<float>{0.f});
  ASSERT_FALSE(rate.has_value());
  EXPECT_NE(rate.error().message.find("whole-number sample rate"), std::string::npos);
  auto ragged = WriteWavFloat32(dir.File("x.wav"), 8000, 2, std::vector<float>{0.f, 1.f, 2.f});
  ASSERT_FALSE(ragged.has_value());
  EXPECT_NE(ragged.error().message.find("not a whole number of 2-channel frames"),
            std::string::npos);
  auto nan =
      WriteWavFloat32(dir.File("x.wav"), 8000, 2, std::vector<float>{0.f, 1.f, 2.f, std::nanf("")});
  ASSERT_FALSE(nan.has_value());
  EXPECT_NE(nan.error().message.find("NaN sample at frame 1, channel 1"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir.File("x.wav")));
}

// ---- bad input: each gives one clear line --------------------------------------------------

TEST(WavBadInputTest, MissingFile) {
  ScratchDir dir;
  const Error e = OpenError(dir.File("missing.wav"));
  EXPECT_EQ(e.code, ErrorCode::kNotFound);
  EXPECT_NE(e.message.find("No such file"), std::string::npos) << e.message;
}

TEST(WavBadInputTest, NotRiffAndEmpty) {
  ScratchDir dir;
  testing::WriteText(dir.File("text.wav"), "hello, this is not audio");
  EXPECT_NE(OpenError(dir.File("text.wav")).message.find("not a WAV file (no RIFF header)"),
            std::string::npos);
  testing::WriteText(dir.File("empty.wav"), "");
  EXPECT_NE(OpenError(dir.File("empty.wav")).message.find("empty file"), std::string::npos);
  Bytes riffx;
  riffx.Str("RIFX").U32(4).Str("WAVE");
  WriteBytes(dir.File("be.wav"), riffx.bytes());
  EXPECT_EQ(OpenError(dir.File("be.wav")).code, ErrorCode::kUnsupported);
  Bytes avi;
  avi.Str("RIFF").U32(4).Str("AVI ");
  WriteBytes(dir.File("avi.wav"), avi.bytes());
  EXPECT_NE(OpenError(dir.File("avi.wav")).message.find("RIFF type is not WAVE"),
            std::string::npos);
}

TEST(WavBadInputTest, TruncatedHeader) {
  ScratchDir dir;
  const auto full = MakeWav({.tag = 1, .channels = 1, .rate = 8000, .bits = 16}, Pcm16({1, 2}));
  // Cut inside the RIFF header, inside a chunk header, and inside the fmt chunk.
  for (size_t cut : {6u, 16u, 30u}) {
    const std::string path = dir.File("t" + std::to_string(cut) + ".wav");
    WriteBytes(path, std::vector<uint8_t>(full.begin(), full.begin() + cut));
    const Error e = OpenError(path);
    EXPECT_EQ(e.code, ErrorCode::kCorrupt);
    EXPECT_NE(e.message.find("truncated header"), std::string::npos) << cut << ": " << e.message;
  }
  // Header complete but no data chunk at all.
  const std::string nodata = dir.File("nodata.wav");
  WriteBytes(nodata, std::vector<uint8_t>(full.begin(), full.begin() + 36));
  EXPECT_NE(OpenError(nodata).message.find("no data chunk"), std::string::npos);
}

TEST(WavBadInputTest, TruncatedDataChunk) {
  ScratchDir dir;
  const std::string path = dir.File("a.wav");
  WriteBytes(path, MakeWav({.tag = 1, .channels = 1, .rate = 8000, .bits = 16, .data_size = 8000},
                           std::vector<uint8_t>(1200, 0)));
  const Error e = OpenError(path);
  EXPECT_EQ(e.code, ErrorCode::kCorrupt);
  EXPECT_EQ(e.message, path + ": truncated data chunk (expected 8000 bytes, got 1200)");

  // A partial last frame.
  const std::string odd = dir.File("odd.wav");
  WriteBytes(odd, MakeWav({.tag = 1, .channels = 2, .rate = 8000, .bits = 16},
                          std::vector<uint8_t>(10, 0)));
  EXPECT_NE(OpenError(odd).message.find("not a whole number of 4-byte frames"), std::string::npos);
}

TEST(WavBadInputTest, UnsupportedEncodings) {
  ScratchDir dir;
  struct Case {
    uint16_t tag, bits;
    bool ext;
    const char* want;
  };
  for (const Case& c :
       {Case{6, 8, false, "A-law (format tag 6)"}, Case{7, 8, false, "mu-law (format tag 7)"},
        Case{0x11, 4, false, "IMA ADPCM (format tag 17)"},
        Case{2, 4, true, "Microsoft ADPCM (format tag 2)"}, Case{0x55, 16, false, "MPEG layer 3"},
        Case{1, 12, false, "unsupported PCM sample size (12 bits"},
        Case{3, 16, false, "unsupported IEEE float sample size (16 bits"}}) {
    const std::string path =
        dir.File("u" + std::to_string(c.tag) + "_" + std::to_string(c.bits) + ".wav");
    WriteBytes(path, MakeWav({.tag = c.tag,
                              .channels = 1,
                              .rate = 8000,
                              .bits = c.bits,
                              .extensible = c.ext,
                              .block_align = 2},
                             std::vector<uint8_t>(8, 0)));
    const Error e = OpenError(path);
    EXPECT_EQ(e.code, ErrorCode::kUnsupported) << e.message;
    EXPECT_NE(e.message.find(c.want), std::string::npos) << e.message;
  }
  // EXTENSIBLE with a GUID that is not one of the standard KSDATAFORMAT ones.
  auto bytes =
      MakeWav({.tag = 1, .channels = 1, .rate = 8000, .bits = 16, .extensible = true}, Pcm16({0}));
  bytes[12 + 8 + 24 + 15] ^= 0xFF;  // last GUID byte
  WriteBytes(dir.File("guid.wav"), bytes);
  EXPECT_NE(OpenError(dir.File("guid.wav")).message.find("sub-format"), std::string::npos);
}

TEST(WavBadInputTest, ImpossibleFmtFields) {
  ScratchDir dir;
  WriteBytes(dir.File("zero.wav"),
             MakeWav({.tag = 1, .channels = 0, .rate = 8000, .bits = 16, .block_align = 0}, {}));
  const Error zero = OpenError(dir.File("zero.wav"));
  EXPECT_EQ(zero.code, ErrorCode::kCorrupt);
  EXPECT_NE(zero.message.find("0 channels"), std::string::npos) << zero.message;

  WriteBytes(dir.File("rate.wav"),
             MakeWav({.tag = 1, .channels = 1, .rate = 0, .bits = 16}, Pcm16({0})));
  EXPECT_NE(OpenError(dir.File("rate.wav")).message.find("0 Hz"), std::string::npos);

  WriteBytes(dir.File("align.wav"),
             MakeWav({.tag = 1, .channels = 2, .rate = 8000, .bits = 16, .block_align = 3},
                     std::vector<uint8_t>(6, 0)));
  EXPECT_NE(OpenError(dir.File("align.wav")).message.find("block align 3"), std::string::npos);
}

TEST(WavBadInputTest, NanAndInfSamplesNameFrameAndChannel) {
  ScratchDir dir;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (float bad : {nan, inf, -inf}) {
    std::vector<float> v(2 * 6, 0.5f);
    v[2 * 3 + 1] = bad;  // frame 3, channel 1
    Bytes d;
    d.Raw(v.data(), v.size() * 4);
    const std::string path = dir.File("nan.wav");
    WriteBytes(path, MakeWav({.tag = 3, .channels = 2, .rate = 8000, .bits = 32}, d.bytes()));
    auto src = OpenWav(path);
    ASSERT_TRUE(src.has_value());
    std::vector<float> buf(4);
    // Two frames per read: the first read succeeds, the second hits frame 3.
    ASSERT_EQ((*src)->Read(buf, 2).value_or(99), 2u);
    auto r = (*src)->Read(buf, 2);
    ASSERT_FALSE(r.has_value());
    const std::string want =
        std::string(std::isnan(bad) ? "NaN" : "Inf") + " sample at frame 3, channel 1";
    EXPECT_EQ(r.error().message, path + ": " + want);
  }
  // A float64 value too large for float is not silently turned into Inf.
  const double big[] = {1.0, 1e300};
  Bytes d;
  d.Raw(big, sizeof big);
  WriteBytes(dir.File("big.wav"),
             MakeWav({.tag = 3, .channels = 1, .rate = 8000, .bits = 64}, d.bytes()));
  auto src = OpenWav(dir.File("big.wav"));
  ASSERT_TRUE(src.has_value());
  std::vector<float> buf(2);
  auto r = (*src)->Read(buf, 2);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("frame 1, channel 0 is out of float range"), std::string::npos)
      << r.error().message;
}

// ---- real recordings -------------------------------------------------------------------------

TEST(WavCwruTest, ReadsRealRecordings) {
  // TEND_SHARED_DIR, or next to the source tree (ctest's ENVIRONMENT list may carry only the
  // first variable).
  const char* shared = std::getenv("TEND_SHARED_DIR");
  const char* source = std::getenv("TEND_SOURCE_DIR");
  const std::string dir = shared   ? std::string(shared) + "/data/cwru"
                          : source ? std::string(source) + "/../shared/data/cwru"
                                   : "";
  if (dir.empty() || !std::filesystem::exists(dir)) {
    GTEST_SKIP() << "TEND_SHARED_DIR/data/cwru not available";
  }
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".wav") continue;
    ++files;
    auto src = OpenSource(e.path().string());
    ASSERT_TRUE(src.has_value()) << src.error().message;
    const StreamInfo& info = (*src)->info();
    EXPECT_EQ(info.sample_rate, 12000) << e.path();
    EXPECT_EQ(info.channels, 2) << e.path();
    EXPECT_NE((*src)->Describe().find("float32"), std::string::npos);
    // 5-10 s recordings.
    EXPECT_GT(info.total_frames, 5 * 12000) << e.path();
    EXPECT_LT(info.total_frames, 11 * 12000) << e.path();
    const std::vector<float> all = ReadAll(**src, 2000);
    ASSERT_EQ(static_cast<int64_t>(all.size()), info.total_frames * 2);
    // Drive-end acceleration: a vibrating machine, in g (neither silence nor clipped junk).
    double ss = 0;
    for (size_t i = 0; i < all.size(); i += 2) ss += double(all[i]) * all[i];
    const double rms = std::sqrt(ss / (all.size() / 2));
    EXPECT_GT(rms, 0.01) << e.path();
    EXPECT_LT(rms, 10) << e.path();
  }
  EXPECT_GE(files, 2);
}

}  // namespace
}  // namespace tend::sources
