#include "model/session.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>

#include "test_models.h"

namespace tend::model {
namespace {

using testing::Expected;
using testing::ModelPath;

std::unique_ptr<Session> LoadOk(const std::string& name, const SessionOptions& opts = {}) {
  auto s = Session::LoadFile(ModelPath(name), opts);
  EXPECT_TRUE(s.has_value()) << s.error().message;
  return s ? std::move(*s) : nullptr;
}

// Fills the inputs from expected.json, runs, and compares each output with PyTorch's.
void CheckAgainstPyTorch(Session& s, const nlohmann::json& ref, float tol) {
  std::vector<std::vector<int64_t>> shapes;
  for (const auto& t : s.inputs()) shapes.push_back(ref["inputs"][t.name]["shape"]);
  ASSERT_TRUE(s.Prepare(shapes)) << s.name();
  for (size_t i = 0; i < s.inputs().size(); ++i) {
    std::vector<float> data = ref["inputs"][s.inputs()[i].name]["data"];
    ASSERT_EQ(s.input(i).size(), data.size());
    std::copy(data.begin(), data.end(), s.input(i).begin());
  }
  auto st = s.Run();
  ASSERT_TRUE(st) << st.error().message;
  for (size_t o = 0; o < s.outputs().size(); ++o) {
    const auto& want = ref["outputs"][s.outputs()[o].name];
    EXPECT_EQ(s.output_shape(o), want["shape"].get<std::vector<int64_t>>());
    std::vector<float> data = want["data"];
    auto got = s.output(o);
    ASSERT_EQ(got.size(), data.size());
    for (size_t k = 0; k < data.size(); ++k) {
      EXPECT_NEAR(got[k], data[k], tol * (1.0f + std::fabs(data[k])))
          << s.name() << " output " << s.outputs()[o].name << "[" << k << "]";
    }
  }
}

TEST(ModelSessionTest, CpuIsAlwaysAvailable) {
  auto p = AvailableProviders();
  EXPECT_NE(std::find(p.begin(), p.end(), "CPUExecutionProvider"), p.end());
}

TEST(ModelSessionTest, IntrospectsStaticModel) {
  TEND_REQUIRE_TEST_MODELS();
  auto s = LoadOk("tiny_static");
  ASSERT_TRUE(s);
  ASSERT_EQ(s->inputs().size(), 1u);
  EXPECT_EQ(s->inputs()[0].name, "x");
  EXPECT_EQ(s->inputs()[0].type, ElementType::kFloat);
  EXPECT_EQ(s->inputs()[0].shape, (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(s->inputs()[0].ToString(), "x: float32 [1,4]");
  ASSERT_EQ(s->outputs().size(), 1u);
  EXPECT_EQ(s->outputs()[0].name, "y");
  EXPECT_EQ(s->outputs()[0].shape, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(s->provider(), "CPUExecutionProvider");  // no GPU provider in the CPU build
  EXPECT_EQ(s->metadata().at("onnx.producer_name"), "pytorch");
  EXPECT_EQ(s->metadata().at("onnx.opset"), "17");
  EXPECT_EQ(s->name(), ModelPath("tiny_static"));
}

TEST(ModelSessionTest, IntrospectsDynamicBatch) {
  TEND_REQUIRE_TEST_MODELS();
  auto s = LoadOk("tiny_dynamic");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->inputs()[0].shape, (std::vector<int64_t>{-1, 4}));
  EXPECT_EQ(s->inputs()[0].ToString(), "x: float32 [batch,4]");
  EXPECT_EQ(s->outputs()[0].shape[0], -1);
}

class PyTorchReferenceTest : public ::testing::TestWithParam<const char*> {};

TEST_P(PyTorchReferenceTest, OutputMatchesPyTorch) {
  TEND_REQUIRE_TEST_MODELS();
  auto s = LoadOk(GetParam());
  ASSERT_TRUE(s);
  CheckAgainstPyTorch(*s, Expected()[GetParam()], 1e-4f);
  // Running again on the same buffers gives the same answer (nothing stale, nothing moved).
  std::vector<float> first(s->output(0).begin(), s->output(0).end());
  ASSERT_TRUE(s->Run());
  EXPECT_TRUE(std::equal(first.begin(), first.end(), s->output(0).begin()));
}

INSTANTIATE_TEST_SUITE_P(Models, PyTorchReferenceTest,
                         ::testing::Values("tiny_static", "tiny_dynamic", "two_io", "lstm",
                                           "cnn1d"));

TEST(ModelSessionTest, TwoThreadsGiveTheSameResult) {
  TEND_REQUIRE_TEST_MODELS();
  SessionOptions opts;
  opts.intra_op_threads = 2;
  opts.sequential = false;
  auto s = LoadOk("lstm", opts);
  ASSERT_TRUE(s);
  CheckAgainstPyTorch(*s, Expected()["lstm"], 1e-4f);
}

TEST(ModelSessionTest, DynamicDimsDefaultToOneAndCanBeReprepared) {
  TEND_REQUIRE_TEST_MODELS();
  auto s = LoadOk("tiny_dynamic");
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->Prepare());
  EXPECT_EQ(s->input_shape(0), (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(s->output_shape(0), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(s->input(0).size(), 4u);
  EXPECT_EQ(s->output(0).size(), 3u);
  ASSERT_TRUE(s->Run());

  // Batch 5 of the same row: every output row equals the batch-1 result.
  std::vector<float> row = {0.5f, -1.0f, 2.0f, 0.25f};
  std::copy(row.begin(), row.end(), s->input(0).begin());
  ASSERT_TRUE(s->Run());
  std::vector<float> one(s->output(0).begin(), s->output(0).end());
  ASSERT_TRUE(s->Prepare({{5, 4}}));
  EXPECT_EQ(s->output_shape(0), (std::vector<int64_t>{5, 3}));
  for (int b = 0; b < 5; ++b) std::copy(row.begin(), row.end(), s->input(0).begin() + 4 * b);
  ASSERT_TRUE(s->Run());
  for (int b = 0; b < 5; ++b) {
    for (int k = 0; k < 3; ++k) EXPECT_FLOAT_EQ(s->output(0)[3 * b + k], one[k]);
  }
}

TEST(ModelSessionTest, LoadBytesUsesTheGivenName) {
  TEND_REQUIRE_TEST_MODELS();
  std::string bytes = testing::ReadBytes(ModelPath("two_io"));
  auto s = Session::LoadBytes(
      std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), {}, "slot-a");
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ((*s)->name(), "slot-a");
  CheckAgainstPyTorch(**s, Expected()["two_io"], 1e-4f);
  auto bad = (*s)->Prepare({{1, 4}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "slot-a: model has 2 input(s), got 1 shape(s)");
}

TEST(ModelSessionTest, WarmupRunsAndRejectsNegativeCounts) {
  TEND_REQUIRE_TEST_MODELS();
  auto s = LoadOk("cnn1d");
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->Prepare());
  EXPECT_TRUE(s->Warmup(3));
  EXPECT_TRUE(s->Warmup(0));
  EXPECT_FALSE(s->Warmup(-1));
}

TEST(ModelSessionTest, UnavailableGpuProvidersFallBackToCpu) {
  TEND_REQUIRE_TEST_MODELS();
  auto available = AvailableProviders();
  if (std::find(available.begin(), available.end(), "CUDAExecutionProvider") != available.end()) {
    GTEST_SKIP() << "this ONNX Runtime build has CUDA";
  }
  SessionOptions opts;
  opts.providers = {"cuda", "tensorrt"};
  auto s = LoadOk("tiny_static", opts);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->provider(), "CPUExecutionProvider");
}

// --- errors -----------------------------------------------------------------------------------

Error LoadError(const std::string& path, const SessionOptions& opts = {}) {
  auto s = Session::LoadFile(path, opts);
  EXPECT_FALSE(s.has_value()) << path << " loaded but should not";
  return s ? Error{} : s.error();
}

void ExpectOneLine(const Error& e) {
  EXPECT_FALSE(e.message.empty());
  EXPECT_EQ(e.message.find('\n'), std::string::npos) << e.message;
}

TEST(ModelSessionErrorTest, MissingFile) {
  Error e = LoadError("/nonexistent/dir/model.onnx");
  EXPECT_EQ(e.code, ErrorCode::kNotFound);
  EXPECT_EQ(e.message, "load model: /nonexistent/dir/model.onnx: No such file or directory");
}

TEST(ModelSessionErrorTest, Directory) {
  Error e = LoadError(std::filesystem::temp_directory_path().string());
  EXPECT_NE(e.message.find("is a directory"), std::string::npos) << e.message;
  ExpectOneLine(e);
}

TEST(ModelSessionErrorTest, NotOnnx) {
  auto dir = testing::TempDir("notonnx");
  std::mt19937 rng(3);
  std::string random(4096, '\0');
  for (char& c : random) c = static_cast<char>(rng());
  testing::WriteBytes(dir + "/random.onnx", random);
  testing::WriteBytes(dir + "/text.onnx", "This is not a model.\nJust some text\n");
  testing::WriteBytes(dir + "/empty.onnx", "");
  for (const char* f : {"random.onnx", "text.onnx", "empty.onnx"}) {
    Error e = LoadError(dir + "/" + f);
    EXPECT_EQ(e.code, ErrorCode::kCorrupt) << f << ": " << e.message;
    EXPECT_EQ(e.message.rfind(dir + "/" + f + ": not an ONNX model", 0), 0u) << e.message;
    ExpectOneLine(e);
  }
  std::filesystem::remove_all(dir);
}

TEST(ModelSessionErrorTest, TruncatedModel) {
  TEND_REQUIRE_TEST_MODELS();
  auto dir = testing::TempDir("truncated");
  std::string bytes = testing::ReadBytes(ModelPath("lstm"));
  for (size_t keep : {bytes.size() / 2, bytes.size() - 7, size_t{10}}) {
    std::string path = dir + "/cut.onnx";
    testing::WriteBytes(path, bytes.substr(0, keep));
    Error e = LoadError(path);
    EXPECT_NE(e.message.find(path + ": "), std::string::npos) << e.message;
    EXPECT_TRUE(e.code == ErrorCode::kCorrupt || e.code == ErrorCode::kModelError) << e.message;
    ExpectOneLine(e);
  }
  std::filesystem::remove_all(dir);
}

TEST(ModelSessionErrorTest, OnnxRuntimeRejectsTheGraph) {
  TEND_REQUIRE_TEST_MODELS();
  Error e = LoadError(ModelPath("bad_op"));
  EXPECT_EQ(e.code, ErrorCode::kModelError);
  EXPECT_EQ(e.message.rfind(ModelPath("bad_op") + ": cannot load model: ", 0), 0u) << e.message;
  EXPECT_NE(e.message.find("NoSuchOp"), std::string::npos) << e.message;
  ExpectOneLine(e);
}

TEST(ModelSessionErrorTest, ValidProtobufButNotAModel) {
  // A serialized protobuf with one varint field 1 (ir_version = 8) and no graph.
  std::string bytes = {0x08, 0x08};
  auto s = Session::LoadBytes(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), 2), {},
                              "graphless");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().message, "graphless: not an ONNX model (no ir_version or graph)");
}

TEST(ModelSessionErrorTest, UnknownProviderAndBadOptions) {
  TEND_REQUIRE_TEST_MODELS();
  SessionOptions opts;
  opts.providers = {"cuda", "tpu"};
  Error e = LoadError(ModelPath("tiny_static"), opts);
  EXPECT_EQ(e.code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(e.message,
            "unknown execution provider 'tpu' (expected tensorrt, cuda, openvino or cpu)");

  SessionOptions threads;
  threads.intra_op_threads = -2;
  e = LoadError(ModelPath("tiny_static"), threads);
  EXPECT_NE(e.message.find("intra_op_threads=-2"), std::string::npos) << e.message;

  SessionOptions device;
  device.cuda_device = -1;
  e = LoadError(ModelPath("tiny_static"), device);
  EXPECT_NE(e.message.find("cuda_device"), std::string::npos) << e.message;
}

TEST(ModelSessionErrorTest, CanonicalProviderNames) {
  EXPECT_EQ(*CanonicalProviderName("CUDA"), "CUDAExecutionProvider");
  EXPECT_EQ(*CanonicalProviderName("trt"), "TensorrtExecutionProvider");
  EXPECT_EQ(*CanonicalProviderName("OpenVINOExecutionProvider"), "OpenVINOExecutionProvider");
  EXPECT_EQ(*CanonicalProviderName("cpu"), "CPUExecutionProvider");
  EXPECT_FALSE(CanonicalProviderName(""));
}

TEST(ModelSessionErrorTest, PrepareValidatesShapes) {
  TEND_REQUIRE_TEST_MODELS();
  auto s = LoadOk("lstm");
  ASSERT_TRUE(s);
  const std::string n = ModelPath("lstm");
  auto r = s->Prepare({{1, 14}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, n + ": input 'x' expects rank 3 [1,60,14], got rank 2 [1,14]");
  r = s->Prepare({{1, 60, 13}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message,
            n + ": input 'x' dim 2 must be 14 (model shape [1,60,14]), got [1,60,13]");
  r = s->Prepare({{1, 0, 14}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, n + ": input 'x' dim 1 must be positive, got [1,0,14]");
  r = s->Prepare({{1, 60, 14}, {1}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, n + ": model has 1 input(s), got 2 shape(s)");
  EXPECT_FALSE(s->prepared());
  auto run = s->Run();
  ASSERT_FALSE(run);
  EXPECT_EQ(run.error().message, n + ": Run() before Prepare()");
  // A failed Prepare leaves the session usable.
  EXPECT_TRUE(s->Prepare({{1, 60, 14}}));
  EXPECT_TRUE(s->Run());
}

TEST(ModelSessionErrorTest, HugeDynamicShapeIsRejected) {
  TEND_REQUIRE_TEST_MODELS();
  auto s = LoadOk("tiny_dynamic");
  ASSERT_TRUE(s);
  auto r = s->Prepare({{int64_t{1} << 40, 4}});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("too large"), std::string::npos) << r.error().message;
}

TEST(ModelSessionErrorTest, OnlyFloatInputs) {
  TEND_REQUIRE_TEST_MODELS();
  auto s = LoadOk("int64_input");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->inputs()[0].type, ElementType::kInt64);
  auto r = s->Prepare();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnsupported);
  EXPECT_EQ(r.error().message, ModelPath("int64_input") +
                                   ": input 'ids' has element type int64; only float32 inputs "
                                   "are supported");
}

TEST(ModelShapeTest, ParseAndFormat) {
  EXPECT_EQ(*ParseShape("1x60x14"), (std::vector<int64_t>{1, 60, 14}));
  EXPECT_EQ(*ParseShape("2,3"), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(*ParseShape("7"), (std::vector<int64_t>{7}));
  for (const char* bad : {"", "1x", "x1", "1x0", "1x-3", "1xa", "1.5x2", "1xx2"}) {
    auto r = ParseShape(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    }
  }
  std::vector<int64_t> s = {-1, 3, 224};
  EXPECT_EQ(ShapeToString(s), "[?,3,224]");
  EXPECT_EQ(ShapeToString({}), "[]");
}

}  // namespace
}  // namespace tend::model
