#include "detect/onnx_export.h"

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>
#include <onnxruntime_cxx_api.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "test_util.h"

// ONNX Runtime keeps a few process-lifetime allocations that LeakSanitizer reports at exit
// (inside libonnxruntime.so, not ours): the ASan/UBSan unit-test run suppresses exactly those.
extern "C" const char* __lsan_default_suppressions() { return "leak:libonnxruntime.so\n"; }

namespace tend::detect {
namespace {

using testing::Names;
using testing::StandardGaussian;

bool Contains(const Error& e, const std::string& s) {
  return e.message.find(s) != std::string::npos;
}

Ort::Env& OrtEnv() {
  static Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "detect_test");
  return env;
}

struct OrtOutput {
  std::vector<float> score, contributions;
  std::vector<int64_t> input_shape;
  std::vector<std::string> output_names;
  std::vector<std::vector<int64_t>> output_shapes;
  std::map<std::string, std::string> metadata;
};

// Runs the model through ONNX Runtime's C++ API directly, the way a server would.
OrtOutput RunOrt(const std::string& bytes, const Eigen::MatrixXf& x) {
  Ort::SessionOptions so;
  so.SetIntraOpNumThreads(1);
  Ort::Session session(OrtEnv(), bytes.data(), bytes.size(), so);
  OrtOutput out;
  Ort::AllocatorWithDefaultOptions alloc;
  out.input_shape = session.GetInputTypeInfo(0).GetTensorTypeAndShapeInfo().GetShape();
  for (size_t i = 0; i < session.GetOutputCount(); ++i) {
    out.output_names.push_back(session.GetOutputNameAllocated(i, alloc).get());
    out.output_shapes.push_back(
        session.GetOutputTypeInfo(i).GetTensorTypeAndShapeInfo().GetShape());
  }
  Ort::ModelMetadata meta = session.GetModelMetadata();
  for (const auto& key : meta.GetCustomMetadataMapKeysAllocated(alloc)) {
    out.metadata[key.get()] = meta.LookupCustomMetadataMapAllocated(key.get(), alloc).get();
  }
  // Row-major copy of the feature matrix.
  std::vector<float> in(static_cast<size_t>(x.size()));
  for (Eigen::Index r = 0; r < x.rows(); ++r)
    for (Eigen::Index c = 0; c < x.cols(); ++c) in[r * x.cols() + c] = x(r, c);
  const std::array<int64_t, 2> shape = {x.rows(), x.cols()};
  auto mem = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  Ort::Value input = Ort::Value::CreateTensor<float>(mem, in.data(), in.size(), shape.data(), 2);
  const char* in_names[] = {"features"};
  const char* out_names[] = {"anomaly_score", "contributions"};
  auto res = session.Run(Ort::RunOptions{nullptr}, in_names, &input, 1, out_names, 2);
  const float* s = res[0].GetTensorData<float>();
  out.score.assign(s, s + res[0].GetTensorTypeAndShapeInfo().GetElementCount());
  const float* c = res[1].GetTensorData<float>();
  out.contributions.assign(c, c + res[1].GetTensorTypeAndShapeInfo().GetElementCount());
  return out;
}

ModelCard TestCard() {
  ModelCard c;
  c.name = "press-anomaly";
  c.version = "2";
  c.feature_spec = {{"sample_rate", 10000},
                    {"features", {"rms", "band_energy"}},
                    {"windowing", {{"mode", "fixed"}, {"window", 2000}, {"hop", 2000}}}};
  c.training_summary = {{"windows", 600}, {"source", "synthetic"}};
  return c;
}

std::string TempPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("tend_detect_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Correlated data so every detector has structure to learn.
Eigen::MatrixXf Correlated(int n, int f, uint64_t seed) {
  const Eigen::MatrixXd chol = testing::TestCovariance(f).llt().matrixL();
  return testing::Gaussian(n, Eigen::VectorXd::LinSpaced(f, -3, 40), chol, seed);
}

class ExportTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    TrainOptions opt;
    opt.detector = GetParam();
    opt.ae_bottleneck = 3;
    // The broadband detector reads band-energy features by name.
    auto det = Train(Correlated(600, f_, 1),
                     Names(f_, GetParam() == "broadband" ? "ch0.band_" : "f"), opt);
    ASSERT_TRUE(det) << det.error().message;
    det_ = std::move(*det);
    auto bytes = ExportOnnx(det_, TestCard());
    ASSERT_TRUE(bytes) << bytes.error().message;
    bytes_ = std::move(*bytes);
  }
  const int f_ = 7;
  TrainedDetector det_;
  std::string bytes_;
};

TEST_P(ExportTest, OnnxRuntimeMatchesTheReference) {
  Eigen::MatrixXf x = Correlated(200, f_, 2);
  for (int r = 0; r < 20; ++r)
    x(r, r % f_) += 25.0f * static_cast<float>(std::pow(10.0, (r % f_ % 4) - 1));
  auto ref = Score(det_, x);
  ASSERT_TRUE(ref);
  OrtOutput ort = RunOrt(bytes_, x);
  ASSERT_EQ(ort.score.size(), 200u);
  ASSERT_EQ(ort.contributions.size(), 200u * f_);
  for (int r = 0; r < x.rows(); ++r) {
    const float tol = 2e-4f * std::max(1.0f, ref->score[r]);
    EXPECT_NEAR(ort.score[r], ref->score[r], tol) << r;
    for (int c = 0; c < f_; ++c)
      EXPECT_NEAR(ort.contributions[r * f_ + c], ref->contributions(r, c), tol) << r << "," << c;
  }
  // What a server does with the file: metadata -> card -> check against the session's shapes.
  auto card = ModelCard::FromMetadata(ort.metadata);
  ASSERT_TRUE(card) << card.error().message;
  EXPECT_TRUE(card->CheckAgainstGraph(ort.input_shape, ort.output_names, ort.output_shapes));
  EXPECT_EQ(ort.input_shape, (std::vector<int64_t>{-1, f_}));
  EXPECT_EQ(card->detector, GetParam());
  EXPECT_EQ(card->feature_names, det_.feature_names);
  EXPECT_EQ(card->thresholds.low, det_.thresholds.low);
  EXPECT_EQ(card->train_mean, det_.mean);
  EXPECT_EQ(card->train_std, det_.std);
  EXPECT_EQ(card->feature_spec, TestCard().feature_spec);
  EXPECT_EQ(card->training_summary, TestCard().training_summary);
  EXPECT_EQ(card->calibration, det_.calibration);
  EXPECT_TRUE(card->CreatedUnix());
}

TEST_P(ExportTest, PassesTheOnnxChecker) {
  const std::string python = TEND_PYTHON;
  if (std::system((python + " -c 'import onnx' >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << python << " with the onnx package is not available";
  const std::string path = TempPath(GetParam() + ".onnx");
  WriteFile(path, bytes_);
  const std::string cmd = python +
                          " -c \"import onnx,sys; onnx.checker.check_model(onnx.load(sys.argv[1]), "
                          "full_check=True)\" " +
                          path;
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::filesystem::remove(path);
}

TEST_P(ExportTest, DetectorReadsBackFromTheFile) {
  const std::string path = TempPath(GetParam() + "_back.onnx");
  WriteFile(path, bytes_);
  auto back = DetectorFromModel(path);
  std::filesystem::remove(path);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->detector, det_.detector);
  EXPECT_EQ(back->mean, det_.mean);
  EXPECT_EQ(back->std, det_.std);
  EXPECT_EQ(back->thresholds.high, det_.thresholds.high);
  EXPECT_EQ(back->calibration, det_.calibration);
  const Eigen::MatrixXf x = Correlated(50, f_, 3);
  EXPECT_EQ(*ScoreReference(*back, x), *ScoreReference(det_, x));  // bit-identical parameters

  // Recalibrate from the file and write the new version: same graph, new numbers.
  Eigen::MatrixXf moved = Correlated(80, f_, 4);
  moved.array() += 2.0f;
  auto re = Recalibrate(*back, moved, TrainOptions{});
  ASSERT_TRUE(re) << re.error().message;
  auto card = ReadModelCard(bytes_);
  ASSERT_TRUE(card);
  card->version = "3";
  card->created.clear();
  auto bytes2 = ExportOnnx(*re, *card);
  ASSERT_TRUE(bytes2) << bytes2.error().message;
  auto again = DetectorFromModel(*bytes2);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->mean, re->mean);
  EXPECT_TRUE(again->calibration["recalibrated"].get<bool>());
  OrtOutput ort = RunOrt(*bytes2, moved);
  auto ref = ScoreReference(*re, moved);
  for (int r = 0; r < moved.rows(); ++r)
    EXPECT_NEAR(ort.score[r], (*ref)[r], 2e-4f * std::max(1.0f, (*ref)[r]));
}

INSTANTIATE_TEST_SUITE_P(Detectors, ExportTest,
                         ::testing::Values("mahalanobis", "pca", "broadband", "autoencoder"));

class ExportErrorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto det = Train(StandardGaussian(100, 3, 1), {"a", "b", "c"}, TrainOptions{});
    ASSERT_TRUE(det);
    det_ = *det;
    auto bytes = ExportOnnx(det_, TestCard());
    ASSERT_TRUE(bytes);
    ASSERT_TRUE(model_.ParseFromString(*bytes));
  }
  std::string With(const std::string& key, const std::string& value) {
    onnx::ModelProto m = model_;
    for (auto& p : *m.mutable_metadata_props())
      if (p.key() == key) p.set_value(value);
    return m.SerializeAsString();
  }
  TrainedDetector det_;
  onnx::ModelProto model_;
};

TEST_F(ExportErrorsTest, MetadataThatContradictsTheGraph) {
  auto r = DetectorFromModel(With(kKeyTrainMean, "[0.5, 0, 0]"));
  ASSERT_FALSE(r);
  EXPECT_TRUE(Contains(r.error(), "contradicts the graph: 'tend.train_mean'[0] ('a')"))
      << r.error().message;
  r = DetectorFromModel(With(kKeyFeatureNames, R"(["a", "b"])"));
  ASSERT_FALSE(r);
  EXPECT_TRUE(Contains(r.error(), "has 3 values but 'tend.feature_names' lists 2"))
      << r.error().message;
  auto c = ReadModelCard(With(kKeyFeatureNames, R"(["a", "b", "c", "d"])"));
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ErrorCode::kModelError);
  onnx::ModelProto m = model_;
  m.mutable_metadata_props()->Clear();
  c = ReadModelCard(m.SerializeAsString());
  ASSERT_FALSE(c);
  EXPECT_TRUE(Contains(c.error(), "missing key 'tend.format'")) << c.error().message;
}

TEST_F(ExportErrorsTest, GraphTendDidNotBuild) {
  onnx::ModelProto m = model_;
  m.mutable_graph()->mutable_node(3)->set_op_type("Add");  // Mul -> Add in the quadratic form
  auto r = DetectorFromModel(m.SerializeAsString());
  ASSERT_FALSE(r);
  EXPECT_TRUE(Contains(r.error(), "node 3 is Add(z, precision_z)")) << r.error().message;

  m = model_;
  for (auto& t : *m.mutable_graph()->mutable_initializer())
    if (t.name() == "tend_precision_inv_diag") t.set_float_data(1, 123.0f);
  r = DetectorFromModel(m.SerializeAsString());
  ASSERT_FALSE(r);
  EXPECT_TRUE(Contains(r.error(), "'tend_precision_inv_diag'[1] is 123")) << r.error().message;

  // An "external" model: same contract and metadata, another detector name. It is served the
  // same way (card, shapes, scores), but cannot be rebuilt for recalibration.
  m = model_;
  for (auto& p : *m.mutable_metadata_props())
    if (p.key() == kKeyDetector) p.set_value("\"sklearn-elliptic\"");
  const std::string external = m.SerializeAsString();
  auto card = ReadModelCard(external);
  ASSERT_TRUE(card) << card.error().message;
  const Eigen::MatrixXf x = StandardGaussian(10, 3, 2);
  OrtOutput ort = RunOrt(external, x);
  auto ref = ScoreReference(det_, x);
  for (int i = 0; i < 10; ++i)
    EXPECT_NEAR(ort.score[i], (*ref)[i], 1e-4f * std::max(1.0f, (*ref)[i]));
  r = DetectorFromModel(external);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnsupported);
}

TEST_F(ExportErrorsTest, NotAModel) {
  auto r = DetectorFromModel(std::string("\x01\x02\xff garbage", 11));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kCorrupt);
  r = DetectorFromModel("/nonexistent/model.onnx");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
  EXPECT_TRUE(Contains(r.error(), "/nonexistent/model.onnx")) << r.error().message;
}

TEST_F(ExportErrorsTest, CardThatContradictsTheDetector) {
  ModelCard card = TestCard();
  card.feature_names = {"a", "b", "x"};
  auto r = ExportOnnx(det_, card);
  ASSERT_FALSE(r);
  EXPECT_TRUE(Contains(r.error(), "differ")) << r.error().message;
  card = TestCard();
  card.detector = "pca";
  EXPECT_FALSE(ExportOnnx(det_, card));
  card = TestCard();
  card.feature_spec = nlohmann::json::object();
  r = ExportOnnx(det_, card);
  ASSERT_FALSE(r);
  EXPECT_TRUE(Contains(r.error(), "tend.feature_spec")) << r.error().message;
  card = TestCard();
  card.input_kind = "raw";
  EXPECT_FALSE(ExportOnnx(det_, card));
}

}  // namespace
}  // namespace tend::detect
