#include "vision/preprocess.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tests/vision/test_images.h"
#include "vision/decode.h"

namespace tend::vision {
namespace {

using testing::Gradient;

PreprocessSpec Spec(int w, int h, const char* color, int channels, const char* intensity = "raw") {
  PreprocessSpec s;
  s.width = w;
  s.height = h;
  s.color = color;
  s.channels = channels;
  s.intensity = intensity;
  return s;
}

TEST(Preprocess, IdentitySizeKeepsPixelsAndNormalises) {
  Image img = Gradient(16, 12, 1);
  PreprocessSpec s = Spec(16, 12, "grey", 3);
  s.mean = {0.5f, 0.4f, 0.3f};
  s.std = {0.5f, 0.25f, 0.1f};
  Preprocessor p(s);
  std::vector<float> out(s.InputSize());
  ASSERT_TRUE(p.Run(img.view(), out));
  for (int c = 0; c < 3; ++c) {
    for (size_t i = 0; i < 16 * 12; ++i) {
      const float want = (img.data()[i] / 255.0f - s.mean[c]) / s.std[c];
      ASSERT_NEAR(out[c * 16 * 12 + i], want, 1e-4) << c << " " << i;
    }
  }
}

TEST(Preprocess, RgbFramesBecomeLumaForGreyModels) {
  Image rgb = Gradient(20, 10, 3);
  Preprocessor p(Spec(20, 10, "grey", 1));
  Image out;
  ASSERT_TRUE(p.RunU8(rgb.view(), out));
  ASSERT_EQ(out.channels(), 1);
  for (int i = 0; i < 200; ++i) {
    const uint8_t* px = rgb.data() + 3 * i;
    EXPECT_EQ(out.data()[i], Luma(px[0], px[1], px[2]));
  }
}

TEST(Preprocess, RoiCropsBeforeResizing) {
  Image img = Gradient(40, 30, 1);
  PreprocessSpec s = Spec(10, 5, "grey", 1);
  s.roi = {7, 3, 10, 5};
  Preprocessor p(s);
  Image out;
  ASSERT_TRUE(p.RunU8(img.view(), out));
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 10; ++x)
      EXPECT_EQ(out.data()[y * 10 + x], img.data()[(y + 3) * 40 + x + 7]);
  s.roi = {35, 0, 10, 5};
  Preprocessor bad(s);
  auto st = bad.RunU8(img.view(), out);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message, "ROI 35,0 10x5 does not fit the 40x30 frame");
}

TEST(Preprocess, StandardizeRemovesExposure) {
  Image dark = Gradient(32, 32, 1), bright = dark;
  for (auto& v : bright.pixels()) v = static_cast<uint8_t>(v + v / 8 + 10);  // max 248: no clipping
  Preprocessor p(Spec(32, 32, "grey", 1, "standardize"));
  std::vector<float> a(32 * 32), b(32 * 32);
  ASSERT_TRUE(p.Run(dark.view(), a));
  ASSERT_TRUE(p.Run(bright.view(), b));
  double mean = 0, sq = 0, diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    mean += a[i];
    sq += a[i] * a[i];
    diff = std::max(diff, std::abs(double(a[i]) - b[i]));
  }
  mean /= a.size();
  EXPECT_NEAR(mean, 0.0, 1e-3);                      // (0.5 - 0.5) / 0.5
  EXPECT_NEAR(std::sqrt(sq / a.size()), 0.4, 1e-3);  // 0.2 / 0.5
  EXPECT_LT(diff, 0.05);  // a linear exposure change is gone (up to rounding of the bright copy)
  Image flat(8, 8, 1);
  std::fill(flat.pixels().begin(), flat.pixels().end(), 77);
  Preprocessor q(Spec(8, 8, "grey", 1, "standardize"));
  std::vector<float> f(64);
  ASSERT_TRUE(q.Run(flat.view(), f));
  for (float v : f) EXPECT_FLOAT_EQ(v, 0.0f);
}

TEST(Preprocess, SpecJsonRoundTripAndStrictErrors) {
  PreprocessSpec s = Spec(224, 200, "rgb", 3, "standardize");
  s.roi = {1, 2, 300, 400};
  auto back = PreprocessSpec::FromJson(s.ToJson());
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->ToJson(), s.ToJson());
  auto j = s.ToJson();
  j["colour"] = "grey";
  EXPECT_EQ(PreprocessSpec::FromJson(j).error().message, "preprocess: unknown key 'colour'");
  j = s.ToJson();
  j["width"] = "224";
  EXPECT_EQ(PreprocessSpec::FromJson(j).error().message,
            "preprocess: 'width' has the wrong type (string)");
  j = s.ToJson();
  j["color"] = "cmyk";
  EXPECT_FALSE(PreprocessSpec::FromJson(j));
  j = s.ToJson();
  j["std"] = {0.5, 0.0, 0.5};
  EXPECT_FALSE(PreprocessSpec::FromJson(j));
}

TEST(Preprocess, RunWithTheWrongBufferIsAnError) {
  Preprocessor p(Spec(16, 16, "grey", 3));
  std::vector<float> out(10);
  EXPECT_FALSE(p.Run(Gradient(16, 16, 1).view(), out));
  Image two(4, 4, 2);
  std::vector<float> ok(3 * 16 * 16);
  EXPECT_FALSE(p.Run(two.view(), ok));
}

// The antialiased bilinear resize against PIL's BILINEAR (the same triangle filter, computed by
// an independent implementation with 8-bit intermediate rounding) on a real tile.
TEST(Preprocess, ResizeMatchesPil) {
  const char* shared = std::getenv("TEND_SHARED_DIR");
  const std::string dir = std::string(shared ? shared : "") + "/data/magnetic-tiles/MT_Free";
  if (!std::filesystem::is_directory(dir)) GTEST_SKIP() << "no shared tiles";
  if (std::system(TEND_PYTHON " -c 'import PIL' 2>/dev/null") != 0)
    GTEST_SKIP() << "no python3-pil";
  std::string path;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".jpg") path = e.path().string();
    if (!path.empty()) break;
  }
  const std::string tmp =
      std::filesystem::temp_directory_path() / ("tend_pilresize_" + std::to_string(::getpid()));
  for (auto [w, h] : {std::pair{256, 256}, std::pair{97, 300}}) {
    std::string cmd = std::string(TEND_PYTHON) +
                      " -c \"import sys; from PIL import Image; open(sys.argv[2], 'wb')"
                      ".write(Image.open(sys.argv[1]).convert('L').resize((" +
                      std::to_string(w) + "," + std::to_string(h) +
                      "), Image.BILINEAR).tobytes())\" '" + path + "' '" + tmp + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    std::ifstream f(tmp, std::ios::binary);
    std::string want((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::ifstream in(path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    DecodeOptions o;
    o.channels = 1;
    auto img = DecodeImage(testing::Bytes(bytes), o);
    ASSERT_TRUE(img);
    Preprocessor p(Spec(w, h, "grey", 1));
    Image out;
    ASSERT_TRUE(p.RunU8(img->view(), out));
    ASSERT_EQ(out.pixels().size(), want.size());
    int worst = 0;
    double sum = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      const int d = std::abs(int(out.data()[i]) - int(static_cast<uint8_t>(want[i])));
      worst = std::max(worst, d);
      sum += d;
    }
    EXPECT_LE(worst, 2) << w << "x" << h;
    EXPECT_LT(sum / want.size(), 0.3) << w << "x" << h;
  }
  std::filesystem::remove(tmp);
}

}  // namespace
}  // namespace tend::vision

namespace tend::vision {
namespace {

// The runtime's image source fits a frame to the network size (RunU8 of a raw-intensity spec)
// and the model then preprocesses the fitted frame: that must be exactly what `tend train`
// computes from the original frame, or serving skews from fitting.
TEST(Preprocess, AFrameFittedFirstGivesExactlyTheSameInput) {
  const Image frame = testing::Gradient(173, 121, 3, 60, 40);
  for (const char* color : {"grey", "rgb"}) {
    PreprocessSpec spec;
    spec.width = 64;
    spec.height = 48;
    spec.color = color;
    std::vector<float> direct(spec.InputSize()), fitted(spec.InputSize());
    Preprocessor model(spec);
    ASSERT_TRUE(model.Run(frame.view(), direct));
    PreprocessSpec fit = spec;
    fit.intensity = "raw";
    Preprocessor source(fit);
    Image small;
    ASSERT_TRUE(source.RunU8(frame.view(), small));
    ASSERT_TRUE(model.Run(small.view(), fitted));
    for (size_t i = 0; i < direct.size(); ++i)
      ASSERT_EQ(direct[i], fitted[i]) << color << " at " << i;
  }
}

TEST(Preprocess, LetterboxKeepsTheAspectRatioAndPadsWithALevelNoContentTakes) {
  // 40x20 into 16x16: scale 0.4, content 16x8 at rows 4..11; the rest is the pad level.
  const Image img = testing::Gradient(40, 20, 1);
  for (const char* intensity : {"raw", "standardize"}) {
    PreprocessSpec s = Spec(16, 16, "grey", 1, intensity);
    s.fit = "letterbox";
    Preprocessor p(s);
    Image out;
    ASSERT_TRUE(p.RunU8(img.view(), out));
    EXPECT_EQ(p.content().x, 0);
    EXPECT_EQ(p.content().y, 4);
    EXPECT_EQ(p.content().width, 16);
    EXPECT_EQ(p.content().height, 8);
    for (int y = 0; y < 16; ++y) {
      for (int x = 0; x < 16; ++x) {
        const int v = out.data()[y * 16 + x];
        if (y < 4 || y >= 12) {
          EXPECT_EQ(v, PreprocessSpec::kPadLevel) << intensity << " " << y << "," << x;
        } else {
          EXPECT_NE(v, PreprocessSpec::kPadLevel) << intensity << " " << y << "," << x;
        }
      }
    }
    // A tall ROI pads left and right instead.
    const Image tall = testing::Gradient(10, 40, 1);
    ASSERT_TRUE(p.RunU8(tall.view(), out));
    EXPECT_EQ(p.content().width, 4);
    EXPECT_EQ(p.content().height, 16);
    EXPECT_EQ(p.content().x, 6);
    EXPECT_EQ(out.data()[0], PreprocessSpec::kPadLevel);
  }
}

TEST(Preprocess, LetterboxStandardisesTheContentOnly) {
  // The same part on a wider canvas (more padding) gets the same content levels.
  const Image img = testing::Gradient(30, 20, 1);
  PreprocessSpec a = Spec(30, 20, "grey", 1, "standardize"), b = a;
  a.fit = b.fit = "letterbox";
  b.width = 50;
  Preprocessor pa(a), pb(b);
  Image oa, ob;
  ASSERT_TRUE(pa.RunU8(img.view(), oa));
  ASSERT_TRUE(pb.RunU8(img.view(), ob));
  ASSERT_EQ(pb.content().x, 10);
  for (int y = 0; y < 20; ++y) {
    for (int x = 0; x < 30; ++x) ASSERT_EQ(oa.data()[y * 30 + x], ob.data()[y * 50 + x + 10]);
  }
}

TEST(Preprocess, ALetterboxedFrameFittedFirstGivesExactlyTheSameInput) {
  // The runtime's source letterboxes (and standardises) to u8 first; the model then only
  // normalises: the same floats as letterboxing the camera frame directly.
  for (auto [w, h] : {std::pair{173, 61}, std::pair{50, 121}}) {
    const Image frame = testing::Gradient(w, h, 3, w / 3, h / 2);
    for (const char* intensity : {"raw", "standardize"}) {
      PreprocessSpec spec = Spec(64, 48, "grey", 3, intensity);
      spec.fit = "letterbox";
      std::vector<float> direct(spec.InputSize()), fitted(spec.InputSize());
      Preprocessor model(spec);
      ASSERT_TRUE(model.Run(frame.view(), direct));
      Preprocessor source(spec);
      Image canvas;
      ASSERT_TRUE(source.RunU8(frame.view(), canvas));
      PreprocessSpec served = spec;
      served.fit = "stretch";
      served.intensity = "raw";
      Preprocessor serving(served);
      ASSERT_TRUE(serving.Run(canvas.view(), fitted));
      for (size_t i = 0; i < direct.size(); ++i)
        ASSERT_EQ(direct[i], fitted[i]) << w << "x" << h << " " << intensity << " at " << i;
    }
  }
}

TEST(Preprocess, FitIsRecordedAndOlderSpecsMeanStretch) {
  PreprocessSpec s;
  s.fit = "letterbox";
  auto back = PreprocessSpec::FromJson(s.ToJson());
  ASSERT_TRUE(back);
  EXPECT_EQ(back->fit, "letterbox");
  // A stretched spec does not write "fit" (agents from before it refuse unknown keys).
  EXPECT_FALSE(PreprocessSpec{}.ToJson().contains("fit"));
  auto j = s.ToJson();
  j.erase("fit");
  back = PreprocessSpec::FromJson(j);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->fit, "stretch");
  j["fit"] = "crop";
  auto bad = PreprocessSpec::FromJson(j);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("fit must be"), std::string::npos) << bad.error().message;
}

}  // namespace
}  // namespace tend::vision
