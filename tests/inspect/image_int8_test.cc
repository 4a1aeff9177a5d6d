// INT8 for image models: the calibration set is the model's own preprocessing of the fitting
// images plus flipped copies, and `tend train --recalibrate` of a quantised image model derives
// its thresholds from its own scores of exactly the held-out good images the FP32 fit used.
#include "inspect/image_int8.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "../agent/cli_util.h"
#include "../vision/test_images.h"
#include "core/fs.h"
#include "detect/calibrate.h"
#include "inspect/image_model.h"
#include "inspect/image_train.h"
#include "optimize/quantize.h"
#include "vision/decode.h"

namespace tend::inspect {
namespace {

namespace fs = std::filesystem;

void WriteTile(const std::string& path, int seed) {
  auto img = testing::Gradient(64, 64, 3);
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::uniform_int_distribution<int> noise(-12, 12);
  for (auto& v : img.pixels()) v = static_cast<uint8_t>(std::clamp(v + noise(rng), 0, 255));
  auto png = vision::EncodePng(img.view());
  ASSERT_TRUE(png);
  std::ofstream(path, std::ios::binary) << *png;
}

class ImageInt8 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = testing::TempDir("image_int8");
    fs::create_directories(dir_ + "/good");
    auto r =
        testing::RunCmd(std::string(TEND_PYTHON) +
                            " '" TEND_SOURCE_DIR "/tests/inspect/make_tiny_backbone.py' tiny.onnx",
                        dir_);
    ASSERT_EQ(r.rc, 0) << r.out << r.err;
    for (int i = 0; i < 40; ++i) WriteTile(dir_ + "/good/g" + std::to_string(100 + i) + ".png", i);
    ImageTrainOptions o;
    o.inputs = {dir_ + "/good"};
    o.backbone = dir_ + "/tiny.onnx";
    o.preprocess.width = o.preprocess.height = 64;
    o.preprocess.color = "rgb";
    o.embedding.layers = {"l1", "l2"};
    o.embedding.dims = 16;
    o.detector = "padim";
    o.holdout = 0.2;  // every 5th of 40: 8 held out
    auto m = TrainImageModel(o);
    ASSERT_TRUE(m) << m.error().message;
    ASSERT_TRUE(tend::fs::WriteFileAtomic(dir_ + "/fp32.onnx", m->bytes));
  }
  // The fixture's good image g(100 + i).png, decoded.
  static Result<vision::Image> Good(int i) {
    TEND_ASSIGN_OR_RETURN(auto bytes,
                          tend::fs::ReadFile(dir_ + "/good/g" + std::to_string(100 + i) + ".png"));
    return vision::DecodeImage(testing::Bytes(bytes));
  }
  static std::string dir_;
};
std::string ImageInt8::dir_;

TEST_F(ImageInt8, CalibrationRowsAreTheServedInputAndItsFlips) {
  ImageCalibrationOptions o;
  o.inputs = {dir_ + "/good"};
  o.augment = *ParseAugmentations({"hflip", "vflip"});
  auto s = ImageCalibrationData(dir_ + "/fp32.onnx", o);
  ASSERT_TRUE(s) << s.error().message;
  ASSERT_EQ(s->data.shape, (std::vector<int64_t>{120, 3, 64, 64}));
  EXPECT_EQ(s->images, 40);
  EXPECT_EQ(s->augmented, 80);
  // Row 0 is what the served model's preprocessor gives for the first image.
  auto served = ImageModel::Load(dir_ + "/fp32.onnx", {});
  ASSERT_TRUE(served);
  vision::Preprocessor pre((*served)->preprocess());
  auto img = Good(0);
  ASSERT_TRUE(img) << img.error().message;
  std::vector<float> want(3 * 64 * 64);
  ASSERT_TRUE(pre.Run(img->view(), want));
  auto r0 = s->data.row(0), r1 = s->data.row(1), r2 = s->data.row(2);
  EXPECT_TRUE(std::equal(want.begin(), want.end(), r0.begin()));
  for (int c = 0; c < 3; ++c) {
    for (int y = 0; y < 64; ++y) {
      for (int x = 0; x < 64; ++x) {
        const size_t at = static_cast<size_t>((c * 64 + y) * 64 + x);
        ASSERT_EQ(r1[at], r0[static_cast<size_t>((c * 64 + y) * 64 + 63 - x)]);
        ASSERT_EQ(r2[at], r0[static_cast<size_t>((c * 64 + 63 - y) * 64 + x)]);
      }
    }
  }
  EXPECT_NE(r0[0], r1[0]);  // the gradient is not symmetric: a flip changes the row

  o.max_samples = 50;  // spread over all 120 (image, flip) pairs, not the first 50
  auto thin = ImageCalibrationData(dir_ + "/fp32.onnx", o);
  ASSERT_TRUE(thin);
  EXPECT_EQ(thin->data.rows(), 50);
  auto last = thin->data.row(49);  // pair 49 * 120 / 50 = 117: image 39 as it is
  auto full_117 = s->data.row(117);
  EXPECT_TRUE(std::equal(last.begin(), last.end(), full_117.begin()));

  auto bad = ParseAugmentations({"rotate"});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("'rotate'"), std::string::npos);
}

TEST_F(ImageInt8, RecalibratedInt8ModelCarriesThresholdsOfItsOwnHeldOutScores) {
  ImageCalibrationOptions co;
  co.inputs = {dir_ + "/good"};
  co.augment = {Flip::kHorizontal};
  auto calib = ImageCalibrationData(dir_ + "/fp32.onnx", co);
  ASSERT_TRUE(calib);
  optimize::QuantizeOptions qo;
  qo.op_types = {"Conv"};
  auto q = optimize::QuantizeInt8(dir_ + "/fp32.onnx", calib->data, qo);
  ASSERT_TRUE(q) << q.error().message;
  const std::string int8 = dir_ + "/int8.onnx";
  ASSERT_TRUE(tend::fs::WriteFileAtomic(int8, q->bytes));

  ImageRecalibrationOptions ro;
  ro.inputs = {dir_ + "/good"};
  ro.holdout = 0.2;
  auto r = RecalibrateImageModel(int8, ro);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->holdout_images, 8);

  // Independently: the INT8 model's scores of images 4, 9, ..., 39 (tend train's held-out fifth).
  auto served = ImageModel::Load(int8, {});
  auto fp32 = ImageModel::Load(dir_ + "/fp32.onnx", {});
  ASSERT_TRUE(served && fp32);
  ImageScore s, f;
  (*served)->PrepareOut(s);
  (*fp32)->PrepareOut(f);
  std::vector<double> scores;
  double max_diff = 0;
  for (int i = 4; i < 40; i += 5) {
    auto img = Good(i);
    ASSERT_TRUE(img) << img.error().message;
    ASSERT_TRUE((*served)->Score(img->view(), s));
    ASSERT_TRUE((*fp32)->Score(img->view(), f));
    scores.push_back(s.score);
    max_diff = std::max(max_diff, std::abs(static_cast<double>(s.score - f.score)));
  }
  EXPECT_GT(max_diff, 0.0);  // INT8 scores differ: the FP32 thresholds would not fit them
  auto want = detect::CalibrateThresholds(scores);
  ASSERT_TRUE(want);
  EXPECT_FLOAT_EQ(r->card.thresholds.low, want->thresholds.low);
  EXPECT_FLOAT_EQ(r->card.thresholds.medium, want->thresholds.medium);
  EXPECT_FLOAT_EQ(r->card.thresholds.high, want->thresholds.high);
  EXPECT_NE(r->card.thresholds.low, (*fp32)->card().thresholds.low);
  EXPECT_EQ(r->card.version, (*fp32)->card().version + ".r");

  // The written model serves with those thresholds and keeps the quantiser's record.
  auto again = ImageModel::LoadBytes(r->bytes, "recalibrated", {});
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_FLOAT_EQ((*again)->thresholds().low, want->thresholds.low);
  EXPECT_NE(r->bytes.find("tend.quantization"), std::string::npos);

  ro.holdout = 0.25;  // not the fit's split: refused, never silently other images
  auto wrong = RecalibrateImageModel(int8, ro);
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().message.find("--holdout"), std::string::npos) << wrong.error().message;
}

// The PaDiM head's whitening MatMul quantised too (scripts/vision_int8.sh's default): its
// weights' DequantizeLinear reads no image, so it runs with the detector and only the image's
// tensors cross the split (it used to be carried as a front output and refused by the detector).
TEST_F(ImageInt8, AModelWithAQuantisedHeadServesLikeItsFp32) {
  ImageCalibrationOptions co;
  co.inputs = {dir_ + "/good"};
  auto calib = ImageCalibrationData(dir_ + "/fp32.onnx", co);
  ASSERT_TRUE(calib);
  optimize::QuantizeOptions qo;
  qo.op_types = {"Conv", "MatMul"};
  qo.exclude_nodes = {"tend_patch_sq_MatMul"};
  auto q = optimize::QuantizeInt8(dir_ + "/fp32.onnx", calib->data, qo);
  ASSERT_TRUE(q) << q.error().message;
  EXPECT_NE(q->bytes.find("_factor_dequantized"), std::string::npos);  // tend_patch_block*_factor
  auto served = ImageModel::LoadBytes(q->bytes, "int8 head", {});
  ASSERT_TRUE(served) << served.error().message;
  auto fp32 = ImageModel::Load(dir_ + "/fp32.onnx", {});
  ASSERT_TRUE(fp32);
  ImageScore s, f;
  (*served)->PrepareOut(s);
  (*fp32)->PrepareOut(f);
  for (int i = 0; i < 40; i += 7) {
    auto img = Good(i);
    ASSERT_TRUE(img) << img.error().message;
    ASSERT_TRUE((*served)->Score(img->view(), s));
    ASSERT_TRUE((*fp32)->Score(img->view(), f));
    EXPECT_TRUE(std::isfinite(s.score));
    EXPECT_NEAR(s.score, f.score, 0.25 * std::abs(f.score)) << "image " << i;
  }
}

TEST_F(ImageInt8, CliQuantizesFromImagesAndRecalibrates) {
  auto q = testing::Tend(
      "quantize fp32.onnx --calibrate-images good --augment hflip,vflip --ops Conv --out q.onnx",
      dir_);
  ASSERT_EQ(q.rc, 0) << q.out << q.err;
  EXPECT_NE(q.err.find("calibration: 120 inputs [120,3,64,64] from 40 images (80 flipped"),
            std::string::npos)
      << q.err;
  auto t =
      testing::Tend("train --recalibrate q.onnx --input good --holdout 0.2 --out q.r.onnx", dir_);
  ASSERT_EQ(t.rc, 0) << t.out << t.err;
  EXPECT_NE(t.out.find("recalibrated q.onnx on 8 held-out good images"), std::string::npos)
      << t.out;
  auto m = ImageModel::Load(dir_ + "/q.r.onnx", {});
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ((*m)->card().training_summary.value("recalibrated_from", ""), "q.onnx");

  auto w = testing::Tend("windows --model fp32.onnx --input good --max 30 --out c.npy", dir_);
  ASSERT_EQ(w.rc, 0) << w.out << w.err;
  EXPECT_NE(w.out.find("c.npy: 30 preprocessed images [30,3,64,64]"), std::string::npos) << w.out;

  auto bad = testing::Tend("quantize fp32.onnx --calibrate-images good --augment rot90", dir_);
  EXPECT_NE(bad.rc, 0);
  EXPECT_NE(testing::LastLine(bad.err).find("augmentation 'rot90': expected hflip or vflip"),
            std::string::npos)
      << bad.err;
  auto wrong = testing::Tend("train --recalibrate q.onnx --input good --out x.onnx", dir_);
  EXPECT_NE(wrong.rc, 0);  // default --holdout 0.25 is not this fit's 0.2
  EXPECT_NE(wrong.err.find("give the fit's --input and --holdout"), std::string::npos) << wrong.err;
  EXPECT_FALSE(fs::exists(dir_ + "/x.onnx"));
}

}  // namespace
}  // namespace tend::inspect
