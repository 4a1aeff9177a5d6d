#include "vision/decode.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/vision/test_images.h"

namespace tend::vision {
namespace {

using testing::Bytes;
using testing::Gradient;

std::string TileDir() {
  const char* s = std::getenv("TEND_SHARED_DIR");
  return s ? std::string(s) + "/data/magnetic-tiles" : "";
}

TEST(Decode, PngRoundTripGreyAndRgb) {
  for (int c : {1, 3}) {
    Image src = Gradient(37, 23, c, 10, 10);
    auto png = EncodePng(src.view());
    ASSERT_TRUE(png) << png.error().message;
    auto back = DecodeImage(Bytes(*png));
    ASSERT_TRUE(back) << back.error().message;
    EXPECT_EQ(back->width(), 37);
    EXPECT_EQ(back->height(), 23);
    EXPECT_EQ(back->channels(), c);
    EXPECT_TRUE(std::equal(src.pixels().begin(), src.pixels().end(), back->pixels().begin()));
  }
}

TEST(Decode, ChannelConversionUsesBt601Luma) {
  Image rgb(2, 1, 3);
  const uint8_t px[] = {255, 0, 0, 10, 200, 30};
  std::copy(px, px + 6, rgb.data());
  auto png = EncodePng(rgb.view());
  DecodeOptions o;
  o.channels = 1;
  auto grey = DecodeImage(Bytes(*png), o);
  ASSERT_TRUE(grey);
  EXPECT_EQ(grey->data()[0], Luma(255, 0, 0));
  EXPECT_EQ(grey->data()[1], Luma(10, 200, 30));
  o.channels = 3;
  auto back = DecodeImage(Bytes(*EncodePng(grey->view())), o);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->channels(), 3);
  EXPECT_EQ(back->data()[3], grey->data()[1]);
  EXPECT_EQ(back->data()[5], grey->data()[1]);
}

TEST(Decode, JpegRoundTripIsClose) {
  Image src = Gradient(64, 48, 1);
  auto jpg = EncodeJpeg(src.view(), 95);
  ASSERT_TRUE(jpg);
  auto back = DecodeImage(Bytes(*jpg));
  ASSERT_TRUE(back) << back.error().message;
  ASSERT_EQ(back->channels(), 1);
  int worst = 0;
  for (size_t i = 0; i < src.pixels().size(); ++i) {
    worst = std::max(worst, std::abs(int(src.pixels()[i]) - int(back->pixels()[i])));
  }
  EXPECT_LE(worst, 6);
}

TEST(Decode, EmptyInputIsAClearError) {
  auto r = DecodeImage({});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("empty image"), std::string::npos);
}

TEST(Decode, WrongFormatIsAClearError) {
  std::vector<uint8_t> riff = {'R', 'I', 'F', 'F', 1, 2, 3, 4, 'W', 'A', 'V', 'E'};
  auto r = DecodeImage(riff);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kCorrupt);
  EXPECT_NE(r.error().message.find("not a JPEG or PNG image (starts with 52 49 46 46)"),
            std::string::npos)
      << r.error().message;
}

TEST(Decode, TruncatedJpegIsAnError) {
  auto jpg = *EncodeJpeg(Gradient(64, 64, 3).view(), 90);
  for (size_t keep : {jpg.size() / 2, jpg.size() - 2, size_t{20}, size_t{3}}) {
    auto r = DecodeImage(Bytes(jpg.substr(0, keep)));
    ASSERT_FALSE(r) << "kept " << keep;
    EXPECT_EQ(r.error().code, ErrorCode::kCorrupt) << r.error().message;
    EXPECT_EQ(r.error().message.rfind("JPEG", 0), 0u) << r.error().message;
  }
}

TEST(Decode, TruncatedPngIsAnError) {
  auto png = *EncodePng(Gradient(64, 64, 3).view());
  for (size_t keep : {png.size() / 2, png.size() - 13, size_t{30}, size_t{8}}) {
    auto r = DecodeImage(Bytes(png.substr(0, keep)));
    ASSERT_FALSE(r) << "kept " << keep;
    EXPECT_EQ(r.error().code, ErrorCode::kCorrupt) << r.error().message;
    EXPECT_EQ(r.error().message.rfind("PNG", 0), 0u) << r.error().message;
  }
}

TEST(Decode, SixteenBitPngIsRefusedUnlessAllowed) {
  auto png = testing::Png16(8, 4);
  auto r = DecodeImage(Bytes(png));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnsupported);
  EXPECT_EQ(r.error().message, "16-bit PNG (8x4): 8-bit images expected");
  DecodeOptions o;
  o.allow_16bit = true;
  auto ok = DecodeImage(Bytes(png), o);
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->width(), 8);
  for (size_t i = 0; i < 32; ++i)
    EXPECT_EQ(ok->data()[i], static_cast<uint8_t>((i * 257 % 65536) >> 8)) << i;
}

TEST(Decode, HugeDimensionsAreRefusedBeforeAllocating) {
  auto r = DecodeImage(Bytes(testing::PngClaiming(60000, 60000)));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnsupported);
  EXPECT_NE(r.error().message.find("exceeds the limit"), std::string::npos) << r.error().message;
}

TEST(Decode, DecoderReusesItsBufferAcrossFrames) {
  Decoder d;
  Image out;
  auto a = *EncodePng(Gradient(50, 40, 1).view());
  ASSERT_TRUE(d.Decode(Bytes(a), {}, out));
  const uint8_t* first = out.data();
  auto b = *EncodePng(Gradient(40, 30, 1, 5, 5).view());
  ASSERT_TRUE(d.Decode(Bytes(b), {}, out));
  EXPECT_EQ(out.data(), first);  // smaller frame: same allocation
  EXPECT_EQ(out.width(), 40);
}

// Pixels must match an independent decoder: Python's PIL (its own PNG reader; its JPEG path is
// libjpeg with the same integer IDCT) on the real tiles and masks.
TEST(Decode, MatchesPilOnTheMagneticTiles) {
  const std::string dir = TileDir() + "/MT_Crack";
  if (!std::filesystem::is_directory(dir)) GTEST_SKIP() << "no shared tiles at " << dir;
  if (std::system(TEND_PYTHON " -c 'import PIL' 2>/dev/null") != 0)
    GTEST_SKIP() << "no python3-pil";
  const std::string tmp =
      std::filesystem::temp_directory_path() / ("tend_pil_" + std::to_string(::getpid()));
  int checked = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (checked >= 6) break;
    const std::string path = e.path().string();
    std::string cmd =
        std::string(TEND_PYTHON) +
        " -c \"import sys; from PIL import Image; "
        "open(sys.argv[2], 'wb').write(Image.open(sys.argv[1]).convert('L').tobytes())\" '" +
        path + "' '" + tmp + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::ifstream f(tmp, std::ios::binary);
    std::string want((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::ifstream in(path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    DecodeOptions o;
    o.channels = 1;
    auto img = DecodeImage(Bytes(bytes), o);
    ASSERT_TRUE(img) << path << ": " << img.error().message;
    ASSERT_EQ(img->pixels().size(), want.size()) << path;
    EXPECT_TRUE(std::equal(img->pixels().begin(), img->pixels().end(),
                           reinterpret_cast<const uint8_t*>(want.data())))
        << path;
    ++checked;
  }
  std::filesystem::remove(tmp);
  EXPECT_EQ(checked, 6);
}

}  // namespace
}  // namespace tend::vision
