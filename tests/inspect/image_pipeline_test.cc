// Visual inspection end to end on images made here: an image model fitted on a folder of good
// parts (a tiny random CNN as backbone, made by make_tiny_backbone.py), then `tend run`'s runtime
// with the registered "images" source and "image" model kind over a mixed folder: one decision
// per file in name order, defects above every good part, and each undecodable file (truncated
// JPEG, text named .png) a counted fail-safe reject (an invalid event) rather than a crash or a
// lost part; every scored reject's frame and anomaly-map overlay kept in the evidence store, named
// by its image_ref; the image kind's defaults for parts (debounce 1 of 1, 200 ms deadline) unless
// the user sets them; and a model fitted with an ROI served by `tend run` exactly as `tend score`
// scores it.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "../agent/cli_util.h"
#include "../vision/test_images.h"
#include "inspect/image_eval.h"
#include "inspect/image_model.h"
#include "inspect/image_train.h"
#include "runtime/reference_gate.h"
#include "runtime/runtime.h"
#include "sources/frame_source.h"

namespace tend::inspect {
namespace {

namespace fs = std::filesystem;

class Collect final : public DecisionSink {
 public:
  void OnDecision(const Decision& d) override {
    std::lock_guard<std::mutex> lk(mu_);
    Decision c = d;
    c.features = {};
    all_.push_back(c);
  }
  std::vector<Decision> all() const {
    std::lock_guard<std::mutex> lk(mu_);
    return all_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<Decision> all_;
};

runtime::SinkDescriptor CollectSink(Collect* c) {
  runtime::SinkDescriptor d;
  d.name = "collect";
  d.description = "test: keeps every decision";
  d.create = [c](runtime::DeviceContext&) -> Result<std::unique_ptr<runtime::Sink>> {
    struct Forward final : runtime::Sink {
      explicit Forward(Collect* c) : c(c) {}
      Result<DecisionSink*> ForAsset(const runtime::AssetContext&) override { return c; }
      Collect* c;
    };
    return std::unique_ptr<runtime::Sink>(std::make_unique<Forward>(c));
  };
  return d;
}

// A textured part: the gradient of test_images.h plus per-pixel noise; a defect adds a dark spot.
void WritePart(const std::string& path, int seed, bool defect) {
  auto img = testing::Gradient(64, 64, 3, defect ? 20 + seed % 20 : -1, defect ? 30 : -1);
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::uniform_int_distribution<int> noise(-12, 12);
  for (auto& v : img.pixels()) v = static_cast<uint8_t>(std::clamp(v + noise(rng), 0, 255));
  auto png = vision::EncodePng(img.view());
  ASSERT_TRUE(png);
  std::ofstream(path, std::ios::binary) << *png;
}

class ImagePipeline : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(testing::TempDir("inspect"));
    const std::string d = *dir_;
    fs::create_directories(d + "/good");
    fs::create_directories(d + "/mixed");
    auto r =
        testing::RunCmd(std::string(TEND_PYTHON) +
                            " '" TEND_SOURCE_DIR "/tests/inspect/make_tiny_backbone.py' tiny.onnx",
                        d);
    ASSERT_EQ(r.rc, 0) << r.out << r.err;
    for (int i = 0; i < 40; ++i)
      WritePart(d + "/good/g" + std::to_string(100 + i) + ".png", i, false);
    // mixed: a0..a3 good (unseen seeds), b0..b2 defects, c0 truncated JPEG, c1 text named .png
    for (int i = 0; i < 4; ++i)
      WritePart(d + "/mixed/a" + std::to_string(i) + ".png", 500 + i, false);
    for (int i = 0; i < 3; ++i)
      WritePart(d + "/mixed/b" + std::to_string(i) + ".png", 600 + i, true);
    auto jpg = vision::EncodeJpeg(testing::Gradient(64, 64, 3).view());
    ASSERT_TRUE(jpg);
    std::ofstream(d + "/mixed/c0.jpg", std::ios::binary) << jpg->substr(0, jpg->size() / 2);
    std::ofstream(d + "/mixed/c1.png") << "not an image\n";

    ImageTrainOptions o;
    o.inputs = {d + "/good"};
    o.backbone = d + "/tiny.onnx";
    o.preprocess.width = o.preprocess.height = 64;
    o.preprocess.color = "rgb";
    o.embedding.layers = {"l1", "l2"};
    o.embedding.dims = 16;
    auto m = TrainImageModel(o);
    ASSERT_TRUE(m) << m.error().message;
    EXPECT_EQ(m->fit_images, 32);
    EXPECT_EQ(m->holdout_images, 8);
    std::ofstream(d + "/part.onnx", std::ios::binary) << m->bytes;
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }
  static std::string* dir_;
};
std::string* ImagePipeline::dir_ = nullptr;

TEST_F(ImagePipeline, ModelFileDescribesItself) {
  auto m = ImageModel::Load(*dir_ + "/part.onnx", {});
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ((*m)->card().input_kind, "image");
  EXPECT_EQ((*m)->preprocess().width, 64);
  EXPECT_EQ((*m)->preprocess().color, "rgb");
  const auto t = (*m)->thresholds();
  EXPECT_GT(t.low, 0);
  EXPECT_LE(t.low, t.medium);
  EXPECT_LE(t.medium, t.high);
}

TEST_F(ImagePipeline, RunDecidesEveryImageAndBadFilesFailSafe) {
  auto registry = runtime::MakeRegistry(&runtime::RegisterComponents_builtin);
  ASSERT_TRUE(registry) << registry.error().message;
  Collect collect;
  ASSERT_TRUE((*registry)->AddSink(CollectSink(&collect)));
  runtime::FlagValues flags{{"agent.model", {*dir_ + "/part.onnx"}},
                            {"agent.source", {"images:" + *dir_ + "/mixed"}},
                            {"agent.speed", {"0"}},
                            {"agent.deadline_s", {"60"}},  // no fail-safe from a loaded machine
                            {"output.quiet", {}},
                            {"metrics.port", {"0"}},
                            {"model.warmup_runs", {"1"}},
                            {"images.evidence_dir", {*dir_ + "/evidence"}},
                            {"agent.state_dir", {*dir_ + "/state"}}};
  auto spec = runtime::LoadRunSpec(**registry, "", flags);
  ASSERT_TRUE(spec) << spec.error().message;
  auto rt = runtime::Runtime::Create(std::move(*spec), **registry);
  ASSERT_TRUE(rt) << rt.error().message;
  ASSERT_TRUE((*rt)->Run(nullptr, nullptr));

  const auto d = collect.all();
  ASSERT_EQ(d.size(), 9u);  // a0..a3, b0..b2, c0, c1 in name order
  for (size_t i = 0; i < d.size(); ++i) EXPECT_EQ(d[i].window_index, static_cast<int64_t>(i));
  float max_good = 0;
  for (int i = 0; i < 4; ++i) {
    EXPECT_FALSE(d[i].fail_safe) << i;
    max_good = std::max(max_good, d[i].anomaly_score);
  }
  for (int i = 4; i < 7; ++i) {
    EXPECT_FALSE(d[i].fail_safe) << i;
    EXPECT_GT(d[i].anomaly_score, max_good) << "defect " << i;
    EXPECT_TRUE(d[i].is_alert) << "defect " << i << " score " << d[i].anomaly_score;
    EXPECT_FALSE(d[i].evidence_ref.empty()) << "defect " << i;
  }
  for (int i = 7; i < 9; ++i) {
    EXPECT_TRUE(d[i].fail_safe) << i;
    EXPECT_TRUE(d[i].is_alert) << i;  // fail-safe default: reject
    EXPECT_EQ(d[i].fail_safe_reason, kFailSafeInvalidEvent) << i;
    EXPECT_EQ(d[i].event_id, i) << "a bad part keeps its number";
  }
  const auto s = (*rt)->agent(0).summary();
  EXPECT_EQ(s.windows, 9);
  EXPECT_EQ(s.fail_safe, 2);
  EXPECT_EQ(s.errors, 0);  // the model never saw them
  EXPECT_EQ(s.invalid_events, 2);
  int64_t by_kind = 0;
  for (const auto& [kind, n] : s.invalid_kinds) by_kind += n;
  EXPECT_EQ(by_kind, 2);
  EXPECT_EQ(s.invalid_kinds.size(), 2u) << "a truncated JPEG and a text file fail differently";
  const auto j = s.ToJson();
  EXPECT_EQ(j["deadline_misses"], 0) << "an undecodable part was not late";
  EXPECT_EQ(j["invalid_events"], 2);
  rt->reset();  // the evidence store finishes its queued writes
  for (int i = 4; i < 7; ++i) {
    EXPECT_TRUE(fs::exists(*dir_ + "/evidence/" + d[i].evidence_ref + "/overlay.png"))
        << d[i].evidence_ref;
  }
}

TEST_F(ImagePipeline, WatchedFolderDecidesEachFileASmartCameraDrops) {
  // A smart camera writes each part's image into a folder (written under another name, then
  // renamed in): every file is one decision, a damaged one fail-safe, in the order they came.
  const std::string drop = *dir_ + "/drop";
  fs::create_directories(drop);
  auto registry = runtime::MakeRegistry(&runtime::RegisterComponents_builtin);
  ASSERT_TRUE(registry) << registry.error().message;
  Collect collect;
  ASSERT_TRUE((*registry)->AddSink(CollectSink(&collect)));
  runtime::FlagValues flags{{"agent.model", {*dir_ + "/part.onnx"}},
                            {"agent.source", {"watch:" + drop}},
                            {"agent.max_windows", {"3"}},
                            {"agent.deadline_s", {"60"}},  // no fail-safe from a loaded machine
                            {"output.quiet", {}},
                            {"metrics.port", {"0"}},
                            {"model.warmup_runs", {"1"}},
                            {"agent.state_dir", {*dir_ + "/state-watch"}}};
  auto spec = runtime::LoadRunSpec(**registry, "", flags);
  ASSERT_TRUE(spec) << spec.error().message;
  auto rt = runtime::Runtime::Create(std::move(*spec), **registry);  // the watch is set up here
  ASSERT_TRUE(rt) << rt.error().message;
  std::atomic<bool> stop{false};
  Status result;
  std::thread run([&] { result = (*rt)->Run(&stop, nullptr); });
  for (int i = 0; i < 3; ++i) {
    const std::string tmp = *dir_ + "/part" + std::to_string(i) + ".tmp";
    if (i == 1) {
      std::ofstream(tmp) << "half a file";
    } else {
      WritePart(tmp, 700 + i, i == 2);
    }
    fs::rename(tmp, drop + "/part" + std::to_string(i) + (i == 1 ? ".jpg" : ".png"));
  }
  // Bound on a hang (not a speed check): three decisions end the run.
  for (int i = 0; i < 1200 && collect.all().size() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  stop.store(true);
  run.join();
  ASSERT_TRUE(result) << result.error().message;
  const auto d = collect.all();
  ASSERT_EQ(d.size(), 3u);
  EXPECT_FALSE(d[0].fail_safe);
  EXPECT_TRUE(d[1].fail_safe);
  EXPECT_EQ(d[1].fail_safe_reason, kFailSafeInvalidEvent);
  EXPECT_TRUE(d[1].is_alert);
  EXPECT_FALSE(d[2].fail_safe);
  EXPECT_TRUE(d[2].is_alert) << d[2].anomaly_score;
}

// The runtime over `flags` with a sink that keeps every decision, run to the end of its source.
struct Ran {
  std::unique_ptr<runtime::Registry> registry;  // outlives the runtime
  std::unique_ptr<runtime::Runtime> rt;
  explicit operator bool() const { return rt != nullptr; }
  runtime::Runtime* operator->() const { return rt.get(); }
};
Ran RunToEnd(runtime::FlagValues flags, Collect& collect, bool run = true) {
  Ran ran;
  auto registry = runtime::MakeRegistry(&runtime::RegisterComponents_builtin);
  EXPECT_TRUE(registry) << registry.error().message;
  if (!registry) return ran;
  ran.registry = std::move(*registry);
  EXPECT_TRUE(ran.registry->AddSink(CollectSink(&collect)));
  flags["output.quiet"] = {};
  flags["metrics.port"] = {"0"};
  flags["model.warmup_runs"] = {"1"};
  auto spec = runtime::LoadRunSpec(*ran.registry, "", flags);
  EXPECT_TRUE(spec) << spec.error().message;
  if (!spec) return ran;
  auto rt = runtime::Runtime::Create(std::move(*spec), *ran.registry);
  EXPECT_TRUE(rt) << rt.error().message;
  if (!rt) return ran;
  if (run) {
    auto st = (*rt)->Run(nullptr, nullptr);
    EXPECT_TRUE(st) << st.error().message;
  }
  ran.rt = std::move(*rt);
  return ran;
}

TEST_F(ImagePipeline, PartsAreDebouncedOneOfOneWithA200msDeadlineUnlessTheUserSaysOtherwise) {
  // mixed/: four good parts, then three defects b0..b2 in a row. Each part is its own event: the
  // first defect is a reject at once (1 of 1), not only once two of three windows crossed.
  Collect none;
  const auto defaults = RunToEnd({{"agent.model", {*dir_ + "/part.onnx"}},
                                  {"agent.source", {"images:" + *dir_ + "/mixed"}},
                                  {"agent.state_dir", {*dir_ + "/state-defaults"}}},
                                 none, /*run=*/false);
  ASSERT_TRUE(defaults);
  const auto& o = defaults->agent(0).options();
  EXPECT_EQ(o.debounce.k, 1);
  EXPECT_EQ(o.debounce.n, 1);
  EXPECT_DOUBLE_EQ(o.deadline_s, 0.2);

  Collect by_default;  // the kind's debounce; a generous deadline (a loaded machine)
  auto rt = RunToEnd({{"agent.model", {*dir_ + "/part.onnx"}},
                      {"agent.source", {"images:" + *dir_ + "/mixed"}},
                      {"agent.speed", {"0"}},
                      {"agent.deadline_s", {"60"}},
                      {"agent.state_dir", {*dir_ + "/state-default-debounce"}}},
                     by_default);
  ASSERT_TRUE(rt);
  EXPECT_EQ(rt->agent(0).options().debounce.k, 1);
  auto d = by_default.all();
  ASSERT_EQ(d.size(), 9u);
  EXPECT_TRUE(d[4].raw_alert);
  EXPECT_TRUE(d[4].is_alert) << "the first defect is a reject";

  Collect explicit_k;
  auto rt2 = RunToEnd({{"agent.model", {*dir_ + "/part.onnx"}},
                       {"agent.source", {"images:" + *dir_ + "/mixed"}},
                       {"agent.speed", {"0"}},
                       {"agent.deadline_s", {"60"}},
                       {"decide.debounce_k", {"2"}},
                       {"decide.debounce_n", {"3"}},
                       {"agent.state_dir", {*dir_ + "/state-explicit"}}},
                      explicit_k);
  ASSERT_TRUE(rt2);
  EXPECT_EQ(rt2->agent(0).options().debounce.k, 2);
  EXPECT_EQ(rt2->agent(0).options().debounce.n, 3);
  EXPECT_DOUBLE_EQ(rt2->agent(0).options().deadline_s, 60);
  d = explicit_k.all();
  ASSERT_EQ(d.size(), 9u);
  EXPECT_TRUE(d[4].raw_alert);
  EXPECT_FALSE(d[4].is_alert) << "2 of 3, as the user asked: one defect is not enough";
  EXPECT_TRUE(d[5].is_alert);
}

TEST_F(ImagePipeline, AModelFittedWithAnRoiRunsAndScoresLikeTendScore) {
  // Frames of 96x80 from a fixed camera; the part sits in the ROI x 12..84, y 8..72 (72x64), which
  // the network sees at 48x48 (a crop and a resize). `tend run` must give every frame the score
  // `tend score` gives it, bad files aside.
  const std::string d = *dir_ + "/roi";
  fs::create_directories(d + "/good");
  fs::create_directories(d + "/mixed");
  auto frame = [](const std::string& path, int seed, bool defect) {
    auto img = testing::Gradient(96, 80, 3, defect ? 30 + seed % 20 : -1, defect ? 35 : -1);
    std::mt19937 rng(static_cast<unsigned>(seed));
    std::uniform_int_distribution<int> noise(-12, 12);
    for (auto& v : img.pixels()) v = static_cast<uint8_t>(std::clamp(v + noise(rng), 0, 255));
    auto png = vision::EncodePng(img.view());
    ASSERT_TRUE(png);
    std::ofstream(path, std::ios::binary) << *png;
  };
  for (int i = 0; i < 40; ++i) frame(d + "/good/g" + std::to_string(100 + i) + ".png", i, false);
  for (int i = 0; i < 3; ++i) frame(d + "/mixed/a" + std::to_string(i) + ".png", 800 + i, false);
  for (int i = 0; i < 3; ++i) frame(d + "/mixed/b" + std::to_string(i) + ".png", 900 + i, true);
  ImageTrainOptions o;
  o.inputs = {d + "/good"};
  o.backbone = *dir_ + "/tiny.onnx";
  o.preprocess.roi = {12, 8, 72, 64};
  o.preprocess.width = o.preprocess.height = 48;
  o.preprocess.color = "rgb";
  o.embedding.layers = {"l1", "l2"};
  o.embedding.dims = 16;
  auto m = TrainImageModel(o);
  ASSERT_TRUE(m) << m.error().message;
  std::ofstream(d + "/roi.onnx", std::ios::binary) << m->bytes;

  auto r = testing::Tend("score --model roi.onnx --input mixed", d);
  ASSERT_EQ(r.rc, 0) << r.err;
  std::vector<double> want;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    want.push_back(nlohmann::json::parse(line)["anomaly_score"].get<double>());
  }
  ASSERT_EQ(want.size(), 6u) << r.out;

  Collect run;
  auto rt = RunToEnd({{"agent.model", {d + "/roi.onnx"}},
                      {"agent.source", {"images:" + d + "/mixed"}},
                      {"agent.speed", {"0"}},
                      {"agent.deadline_s", {"60"}},
                      {"agent.state_dir", {d + "/state"}}},
                     run);
  ASSERT_TRUE(rt);
  const auto got = run.all();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_FALSE(got[i].fail_safe) << i;
    EXPECT_NEAR(got[i].anomaly_score, want[i], 1e-4 * std::max(1.0, std::abs(want[i]))) << i;
  }
  for (size_t i = 3; i < 6; ++i) {
    EXPECT_GT(want[i], std::max({want[0], want[1], want[2]})) << "the ROI sees defect " << i;
  }
}

TEST_F(ImagePipeline, ALetterboxedModelMasksPaddingAndRunsAsTendScoreScores) {
  // Parts of different shapes (wide 96x40, tall 40x80, square 64x64) letterboxed onto a 64x64
  // canvas: the aspect ratio is kept and the rest padded. Padding cells score 0 (masked), the map
  // is smoothed and the fitting set mirrored; `tend run` (the source letterboxes each frame to
  // the canvas first) must give every frame the score `tend score` gives it.
  const std::string d = *dir_ + "/letterbox";
  fs::create_directories(d + "/good");
  fs::create_directories(d + "/mixed");
  const int shapes[3][2] = {{96, 40}, {40, 80}, {64, 64}};
  auto part = [&](const std::string& path, int seed, bool defect) {
    const int w = shapes[seed % 3][0], h = shapes[seed % 3][1];
    auto img = testing::Gradient(w, h, 3, defect ? w / 2 : -1, defect ? h / 2 : -1);
    std::mt19937 rng(static_cast<unsigned>(seed));
    std::uniform_int_distribution<int> noise(-12, 12);
    for (auto& v : img.pixels()) v = static_cast<uint8_t>(std::clamp(v + noise(rng), 0, 255));
    auto png = vision::EncodePng(img.view());
    ASSERT_TRUE(png);
    std::ofstream(path, std::ios::binary) << *png;
  };
  for (int i = 0; i < 45; ++i) part(d + "/good/g" + std::to_string(100 + i) + ".png", i, false);
  for (int i = 0; i < 3; ++i) part(d + "/mixed/a" + std::to_string(i) + ".png", 300 + i, false);
  for (int i = 0; i < 3; ++i) part(d + "/mixed/b" + std::to_string(i) + ".png", 600 + i, true);
  ImageTrainOptions o;
  o.inputs = {d + "/good"};
  o.backbone = *dir_ + "/tiny.onnx";
  o.preprocess.width = o.preprocess.height = 64;
  o.preprocess.color = "rgb";
  o.preprocess.fit = "letterbox";
  o.embedding.layers = {"l1", "l2"};
  o.embedding.dims = 16;
  o.map.smooth_sigma = 1;
  o.flip = true;
  auto m = TrainImageModel(o);
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->card.feature_spec["preprocess"]["fit"], "letterbox");
  EXPECT_EQ(m->card.feature_spec["detector"]["map"]["mask_padding"], true);
  std::ofstream(d + "/lb.onnx", std::ios::binary) << m->bytes;

  // A wide part fills the canvas' middle rows only: the map is 0 exactly where the cells are all
  // padding, and not 0 over the part.
  auto model = ImageModel::Load(d + "/lb.onnx", {});
  ASSERT_TRUE(model) << model.error().message;
  ImageScore s;
  (*model)->PrepareOut(s);
  auto wide = testing::Gradient(96, 32, 3);  // content 64x21 at rows 21..41 of 64
  ASSERT_TRUE((*model)->Score(wide.view(), s));
  const int cell = 64 / s.map_height;
  for (int y = 0; y < s.map_height; ++y) {
    const bool padding = (y + 1) * cell <= 21 || y * cell >= 21 + 21;
    for (int x = 0; x < s.map_width; ++x) {
      const float v = s.map[static_cast<size_t>(y * s.map_width + x)];
      if (padding) {
        EXPECT_EQ(v, 0.0f) << "padding cell " << y << "," << x;
      } else {
        EXPECT_GT(v, 0.0f) << "content cell " << y << "," << x;
      }
    }
  }

  auto r = testing::Tend("score --model lb.onnx --input mixed", d);
  ASSERT_EQ(r.rc, 0) << r.err;
  std::vector<double> want;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    want.push_back(nlohmann::json::parse(line)["anomaly_score"].get<double>());
  }
  ASSERT_EQ(want.size(), 6u) << r.out;
  Collect run;
  auto rt = RunToEnd({{"agent.model", {d + "/lb.onnx"}},
                      {"agent.source", {"images:" + d + "/mixed"}},
                      {"agent.speed", {"0"}},
                      {"agent.deadline_s", {"60"}},
                      {"agent.state_dir", {d + "/state"}}},
                     run);
  ASSERT_TRUE(rt);
  const auto got = run.all();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_FALSE(got[i].fail_safe) << i;
    EXPECT_NEAR(got[i].anomaly_score, want[i], 1e-4 * std::max(1.0, std::abs(want[i]))) << i;
  }
}

TEST_F(ImagePipeline, TheOtaGateJudgesAnImageModelOnLabelledReferenceImages) {
  // The device's reference set: good parts and defective parts with known labels, stored
  // locally. The gate loads the candidate as the agent does (model kind "image"), fits each image
  // as the "images" source fits frames, and must agree with `tend eval`'s path (whole frames
  // through ImageModel::Score, inspect::ImageReferenceAuc).
  const std::string ref = *dir_ + "/reference";
  fs::create_directories(ref + "/good");
  fs::create_directories(ref + "/defect");
  for (int i = 0; i < 4; ++i) {
    fs::copy_file(*dir_ + "/mixed/a" + std::to_string(i) + ".png",
                  ref + "/good/a" + std::to_string(i) + ".png",
                  fs::copy_options::overwrite_existing);
  }
  for (int i = 0; i < 3; ++i) {
    fs::copy_file(*dir_ + "/mixed/b" + std::to_string(i) + ".png",
                  ref + "/defect/b" + std::to_string(i) + ".png",
                  fs::copy_options::overwrite_existing);
  }
  auto registry = runtime::MakeRegistry(&runtime::RegisterComponents_builtin);
  ASSERT_TRUE(registry) << registry.error().message;
  auto kind = (*registry)->ModelKind("image");
  ASSERT_TRUE(kind) << kind.error().message;
  Settings settings(&(*registry)->RunSettings());
  const std::map<std::string, std::string> meta;
  agent::ServeOptions serve;
  serve.warmup_runs = 1;
  auto model = (*kind)->load({*dir_ + "/part.onnx", &settings, &meta, serve});
  ASSERT_TRUE(model) << model.error().message;

  runtime::ReferenceSet set;
  set.normal = {ref + "/good"};
  set.anomalous = {ref + "/defect"};
  auto auc = runtime::ReferenceAuc(**model, set);
  ASSERT_TRUE(auc) << auc.error().message;
  EXPECT_DOUBLE_EQ(*auc, 1.0) << "every defect scores above every good part (first test)";
  auto independent = ImageReferenceAuc(*dir_ + "/part.onnx", set.normal, set.anomalous, {});
  ASSERT_TRUE(independent) << independent.error().message;
  EXPECT_DOUBLE_EQ(*auc, *independent);

  // A damaged reference image breaks the set: an error naming it, not a silently smaller set.
  std::ofstream(ref + "/defect/zz.png") << "not an image\n";
  auto broken = runtime::ReferenceAuc(**model, set);
  ASSERT_FALSE(broken);
  EXPECT_NE(broken.error().message.find("zz.png"), std::string::npos) << broken.error().message;
}

TEST_F(ImagePipeline, ImageSourceRefusesASampleModel) {
  // The runtime picks the "images" source for a folder spec; a vibration model's windows are not
  // camera frames: one clear error at start-up.
  auto r = testing::Tend("train --input 'sim:strokes=20,wear=0,seed=3' --out vib.onnx", *dir_);
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  r = testing::Tend("run --model vib.onnx --source images:mixed --speed 0 --metrics-port 0 --quiet",
                    *dir_);
  EXPECT_NE(r.rc, 0);
  EXPECT_NE((r.out + r.err).find("delivers camera frames"), std::string::npos) << r.out << r.err;
}

}  // namespace
}  // namespace tend::inspect
