// `tend train --detector patchcore` for images: a memory-bank model fitted on generated good parts
// (the tiny random CNN of make_tiny_backbone.py as backbone) describes itself, keeps the coreset
// size it was asked for, and scores every defect above every unseen good part when served.
#include "inspect/image_train.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>

#include "../agent/cli_util.h"
#include "../detect/image_graph_util.h"
#include "../vision/test_images.h"
#include "inspect/image_eval.h"
#include "inspect/image_model.h"
#include "optimize/npy.h"

namespace tend::inspect {
namespace {

namespace fs = std::filesystem;

// The gradient of test_images.h plus per-pixel noise; a defect adds a dark spot.
void WriteTile(const std::string& path, int seed, bool defect) {
  auto img = testing::Gradient(64, 64, 3, defect ? 20 + seed % 20 : -1, defect ? 30 : -1);
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::uniform_int_distribution<int> noise(-12, 12);
  for (auto& v : img.pixels()) v = static_cast<uint8_t>(std::clamp(v + noise(rng), 0, 255));
  auto png = vision::EncodePng(img.view());
  ASSERT_TRUE(png);
  std::ofstream(path, std::ios::binary) << *png;
}

TEST(ImageTrain, PatchCoreModelKeepsItsCoresetAndSeparatesDefects) {
  const std::string d = testing::TempDir("image_train");
  for (const char* sub : {"/good", "/unseen", "/defects"}) fs::create_directories(d + sub);
  auto r =
      testing::RunCmd(std::string(TEND_PYTHON) + " '" TEND_SOURCE_DIR
                                                 "/tests/inspect/make_tiny_backbone.py' tiny.onnx",
                      d);
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  for (int i = 0; i < 40; ++i)
    WriteTile(d + "/good/g" + std::to_string(100 + i) + ".png", i, false);
  for (int i = 0; i < 6; ++i)
    WriteTile(d + "/unseen/u" + std::to_string(i) + ".png", 500 + i, false);
  for (int i = 0; i < 6; ++i)
    WriteTile(d + "/defects/b" + std::to_string(i) + ".png", 600 + i, true);

  ImageTrainOptions o;
  o.inputs = {d + "/good"};
  o.backbone = d + "/tiny.onnx";
  o.preprocess.width = o.preprocess.height = 64;
  o.preprocess.color = "rgb";
  o.embedding.layers = {"l1", "l2"};
  o.embedding.dims = 16;
  o.detector = "patchcore";
  o.coreset.fraction = 0.05;
  auto m = TrainImageModel(o);
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->card.detector, "patchcore");
  const auto& det = m->card.feature_spec["detector"];
  EXPECT_EQ(det["kind"], "patchcore");
  const int64_t patches = det["patches"].get<int64_t>();
  EXPECT_EQ(patches, 32 * det["grid"][0].get<int64_t>() * det["grid"][1].get<int64_t>());
  EXPECT_EQ(det["bank"].get<int64_t>(), std::llround(0.05 * static_cast<double>(patches)));

  auto served = ImageModel::LoadBytes(m->bytes, "patchcore", {});
  ASSERT_TRUE(served) << served.error().message;
  auto good = ScoreImageSet(**served, d + "/unseen");
  auto bad = ScoreImageSet(**served, d + "/defects");
  ASSERT_TRUE(good && bad);
  ASSERT_EQ(good->scores.size(), 6u);
  ASSERT_EQ(bad->scores.size(), 6u);
  EXPECT_LT(*std::max_element(good->scores.begin(), good->scores.end()),
            *std::min_element(bad->scores.begin(), bad->scores.end()));

  o.detector = "knn";
  auto wrong = TrainImageModel(o);
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().message.find("padim or patchcore"), std::string::npos);
  fs::remove_all(d);
}

// scripts/backbones/cutpaste_finetune.py (self-supervised fine-tuning of the nsfwjs MobileNetV2 on
// good images only) writes a backbone `tend train` takes unchanged: the same tensor names and
// recommended layers, its provenance carried into the model card; and the same seed gives the
// same file. Needs the nsfwjs package bootstrap fetches (.cache/npm) and python3-torch.
TEST(ImageTrain, CutPasteTunedBackboneIsDeterministicAndTrainsAModel) {
  const std::string tgz = TEND_SOURCE_DIR "/.cache/npm/nsfwjs-4.4.0.tgz";
  if (!fs::exists(tgz)) GTEST_SKIP() << tgz << " missing (scripts/bootstrap.sh fetches it)";
  const std::string d = testing::TempDir("cutpaste");
  fs::create_directories(d + "/good");
  for (int i = 0; i < 40; ++i)
    WriteTile(d + "/good/g" + std::to_string(100 + i) + ".png", i, false);
  const std::string cmd = std::string(TEND_PYTHON) +
                          " '" TEND_SOURCE_DIR "/scripts/backbones/cutpaste_finetune.py' '" + tgz +
                          "' good ";
  const std::string flags = " --steps 2 --batch 1 --crop 64 --threads 1";
  for (const char* out : {"a.onnx", "b.onnx"}) {
    auto r = testing::RunCmd(cmd + out + flags, d);
    ASSERT_EQ(r.rc, 0) << r.out << r.err;
  }
  auto bytes = [](const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  const std::string a = bytes(d + "/a.onnx");
  ASSERT_GT(a.size(), 1000000u);
  EXPECT_EQ(a, bytes(d + "/b.onnx")) << "same seed, different weights";

  ImageTrainOptions o;
  o.inputs = {d + "/good"};
  o.backbone = d + "/a.onnx";  // layers and mean/std from the backbone's own metadata
  o.preprocess.width = o.preprocess.height = 64;
  o.embedding.dims = 16;
  auto m = TrainImageModel(o);
  ASSERT_TRUE(m) << m.error().message;
  const auto& bb = m->card.feature_spec["backbone"];
  ASSERT_TRUE(bb.contains("self_supervised")) << bb.dump();
  EXPECT_EQ(bb["self_supervised"]["method"], "CutPaste 3-way");
  EXPECT_EQ(bb["self_supervised"]["steps"], 2);
  // 40 images in name order: every 5th kept unseen (8), then every 4th of the other 32 held out.
  EXPECT_EQ(bb["self_supervised"]["images"].get<std::string>().substr(0, 10), "24 of good");
  fs::remove_all(d);
}

// The default backbone (scripts/backbones/nsfwjs_to_onnx.py: BatchNorm folded into the
// convolutions, ZeroPadding2D into their pads, float32) against an independent reading of the same
// Keras model (scripts/backbones/keras_torch_reference.py: PyTorch in float64, BatchNorm as
// BatchNorm, explicit TensorFlow 'same' pads), layer by layer from the stem to out_relu, on one
// input.
TEST(ImageTrain, DefaultBackboneMatchesAnIndependentReadingOfTheKerasModel) {
  const std::string tgz = TEND_SOURCE_DIR "/.cache/npm/nsfwjs-4.4.0.tgz";
  const std::string onnx_path = TEND_SOURCE_DIR "/third_party/backbones/mobilenet_v2_imagenet.onnx";
  if (!fs::exists(tgz) || !fs::exists(onnx_path))
    GTEST_SKIP() << "the nsfwjs package or the default backbone is missing (scripts/bootstrap.sh)";
  const std::string d = testing::TempDir("kerasref");
  auto r =
      testing::RunCmd(std::string(TEND_PYTHON) +
                          " '" TEND_SOURCE_DIR "/scripts/backbones/keras_torch_reference.py' '" +
                          tgz + "' ref --size 96",
                      d);
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  auto input = optimize::ReadNpy(d + "/ref/input.npy");
  ASSERT_TRUE(input) << input.error().message;
  ASSERT_EQ(input->shape, (std::vector<int64_t>{1, 3, 96, 96}));
  onnx::ModelProto model;
  std::ifstream f(onnx_path, std::ios::binary);
  ASSERT_TRUE(model.ParseFromIstream(&f));
  const std::vector<const char*> layers = {
      "Conv1_relu",  "block_1_expand_relu",  "block_3_expand_relu",  "block_6_expand_relu",
      "block_8_add", "block_10_expand_relu", "block_13_expand_relu", "out_relu"};
  const auto got = detect::testing::RunGraph(model, input->data, {1, 3, 96, 96}, layers);
  for (size_t i = 0; i < layers.size(); ++i) {
    auto want = optimize::ReadNpy(d + "/ref/" + layers[i] + ".npy");
    ASSERT_TRUE(want) << want.error().message;
    ASSERT_EQ(got[i].size(), want->data.size()) << layers[i];
    float scale = 0, err = 0;
    for (size_t k = 0; k < got[i].size(); ++k) {
      scale = std::max(scale, std::abs(want->data[k]));
      err = std::max(err, std::abs(got[i][k] - want->data[k]));
    }
    ASSERT_GT(scale, 0.0f) << layers[i] << " is all zeros";
    EXPECT_LT(err / scale, 1e-4) << layers[i] << ": max |difference| " << err << " of " << scale;
  }
  fs::remove_all(d);
}

}  // namespace
}  // namespace tend::inspect
