// Runs the real `tend bench` binary: bad input must give one error line and a non-zero exit,
// never a crash; good input must give the documented JSON.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "test_models.h"

namespace tend::model {
namespace {

using testing::ModelPath;

struct Outcome {
  int exit_code = -1;
  bool crashed = false;
  std::string out, err;
};

std::string TendBinary() {
  const char* dir = std::getenv("TEND_BINARY_DIR");
  return dir ? std::string(dir) + "/tend" : "";
}

// `tend --log-level warn bench <args>`, stdout and stderr captured separately.
Outcome Bench(const std::string& args) {
  static int counter = 0;
  auto dir = testing::TempDir("cli" + std::to_string(counter++));
  std::string cmd = TendBinary() + " --log-level warn bench " + args + " >" + dir + "/out 2>" +
                    dir + "/err </dev/null";
  int rc = std::system(cmd.c_str());
  Outcome o;
  o.crashed = rc == -1 || !WIFEXITED(rc);
  if (WIFEXITED(rc)) o.exit_code = WEXITSTATUS(rc);
  o.out = testing::ReadBytes(dir + "/out");
  o.err = testing::ReadBytes(dir + "/err");
  std::filesystem::remove_all(dir);
  return o;
}

void ExpectOneLineError(const Outcome& o, const std::string& needle) {
  EXPECT_FALSE(o.crashed);
  EXPECT_NE(o.exit_code, 0);
  ASSERT_FALSE(o.err.empty());
  EXPECT_EQ(o.err.rfind("tend: error: ", 0), 0u) << o.err;
  EXPECT_EQ(o.err.find('\n'), o.err.size() - 1) << "more than one line:\n" << o.err;
  EXPECT_NE(o.err.find(needle), std::string::npos) << "expected '" << needle << "' in " << o.err;
  EXPECT_TRUE(o.out.empty()) << o.out;
}

class BenchCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(TendBinary())) {
      GTEST_SKIP() << "tend binary not built: " << TendBinary();
    }
  }
};

TEST_F(BenchCliTest, MissingModelFile) {
  ExpectOneLineError(Bench("--model /nonexistent/m.onnx"),
                     "/nonexistent/m.onnx: No such file or directory");
}

TEST_F(BenchCliTest, NotOnnx) {
  auto dir = testing::TempDir("cli_notonnx");
  testing::WriteBytes(dir + "/notes.onnx", "# a text file\nnot a model\n");
  ExpectOneLineError(Bench("--model " + dir + "/notes.onnx"), "notes.onnx: not an ONNX model");
  std::filesystem::remove_all(dir);
}

TEST_F(BenchCliTest, TruncatedModel) {
  TEND_REQUIRE_TEST_MODELS();
  auto dir = testing::TempDir("cli_trunc");
  std::string bytes = testing::ReadBytes(ModelPath("cnn1d"));
  testing::WriteBytes(dir + "/cut.onnx", bytes.substr(0, bytes.size() / 3));
  ExpectOneLineError(Bench("--model " + dir + "/cut.onnx"), "cut.onnx: ");
  std::filesystem::remove_all(dir);
}

TEST_F(BenchCliTest, UnknownOperator) {
  TEND_REQUIRE_TEST_MODELS();
  ExpectOneLineError(Bench("--model " + ModelPath("bad_op")), "NoSuchOp");
}

TEST_F(BenchCliTest, WrongInputRank) {
  TEND_REQUIRE_TEST_MODELS();
  ExpectOneLineError(Bench("--model " + ModelPath("lstm") + " --shape x=1x14"),
                     "input 'x' expects rank 3 [1,60,14], got rank 2 [1,14]");
}

TEST_F(BenchCliTest, WrongStaticDim) {
  TEND_REQUIRE_TEST_MODELS();
  ExpectOneLineError(Bench("--model " + ModelPath("cnn1d") + " --shape 1x1x1000"),
                     "input 'x' dim 2 must be 2000");
}

TEST_F(BenchCliTest, IntegerInput) {
  TEND_REQUIRE_TEST_MODELS();
  ExpectOneLineError(Bench("--model " + ModelPath("int64_input")),
                     "only float32 inputs are supported");
}

TEST_F(BenchCliTest, BadFlags) {
  TEND_REQUIRE_TEST_MODELS();
  const std::string m = "--model " + ModelPath("two_io");
  ExpectOneLineError(Bench(m + " --shape q=1x4"), "has no input 'q' (inputs: a, b)");
  ExpectOneLineError(Bench(m + " --shape 1x4"), "the model has 2 inputs");
  ExpectOneLineError(Bench(m + " --shape a=1xfour"), "'four' is not a positive integer");
  ExpectOneLineError(Bench(m + " --provider tpu"), "unknown execution provider 'tpu'");
  ExpectOneLineError(Bench(m + " --iterations 0"), "--iterations");
  ExpectOneLineError(Bench(m + " --batch 4"), "static batch dim 1");
  ExpectOneLineError(Bench(""), "--model is required");
}

TEST_F(BenchCliTest, UnavailableProviderIsAnError) {
  TEND_REQUIRE_TEST_MODELS();
  ExpectOneLineError(Bench("--model " + ModelPath("tiny_static") + " --provider openvino"),
                     "not available in this ONNX Runtime build");
}

TEST_F(BenchCliTest, JsonHasTheDocumentedKeys) {
  TEND_REQUIRE_TEST_MODELS();
  for (const char* m : {"lstm", "cnn1d"}) {
    auto o = Bench("--model " + ModelPath(m) + " --warmup 5 --iterations 120 --json");
    ASSERT_EQ(o.exit_code, 0) << o.err;
    auto j = nlohmann::json::parse(o.out);  // exactly one JSON document
    for (const char* k :
         {"mean_ms", "p50_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms", "throughput_fps"}) {
      ASSERT_TRUE(j.contains(k)) << k;
      EXPECT_GT(j[k].get<double>(), 0) << k;
    }
    EXPECT_EQ(j["provider"], "CPUExecutionProvider");
    EXPECT_EQ(j["iterations"], 120);
    EXPECT_LE(j["p50_ms"].get<double>(), j["p95_ms"].get<double>());
    EXPECT_LE(j["p95_ms"].get<double>(), j["p99_ms"].get<double>());
    EXPECT_LE(j["p99_ms"].get<double>(), j["p999_ms"].get<double>());
    EXPECT_LE(j["p999_ms"].get<double>(), j["max_ms"].get<double>());
  }
}

TEST_F(BenchCliTest, DynamicBatchAndTable) {
  TEND_REQUIRE_TEST_MODELS();
  auto o = Bench("--model " + ModelPath("tiny_dynamic") + " --batch 8 --iterations 100 --json");
  ASSERT_EQ(o.exit_code, 0) << o.err;
  auto j = nlohmann::json::parse(o.out);
  EXPECT_EQ(j["inputs"]["x"], (std::vector<int64_t>{8, 4}));
  EXPECT_NEAR(j["throughput_fps"].get<double>(), 8 * j["runs_per_s"].get<double>(), 1e-6);

  auto t = Bench("--model " + ModelPath("two_io") + " --iterations 100 --input-zeros");
  ASSERT_EQ(t.exit_code, 0) << t.err;
  for (const char* s : {"provider    CPUExecutionProvider", "p99.9", "latency ms", "throughput",
                        "a [1,4], b [1,4]"}) {
    EXPECT_NE(t.out.find(s), std::string::npos) << s << " not in\n" << t.out;
  }
}

TEST_F(BenchCliTest, PipelineTimesEachStage) {
  auto o = Bench("--pipeline --strokes 20 --warmup 2 --json");
  ASSERT_EQ(o.exit_code, 0) << o.err;
  auto j = nlohmann::json::parse(o.out);
  EXPECT_EQ(j["mode"], "pipeline");
  EXPECT_EQ(j["windows"], 20);  // every simulated stroke triggers exactly one window
  EXPECT_TRUE(j["stages"].contains("features"));
  EXPECT_FALSE(j["stages"].contains("inference"));
  for (const char* k : {"mean_ms", "p50_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms"}) {
    EXPECT_GT(j["stages"]["total"][k].get<double>(), 0) << k;
  }
  EXPECT_NEAR(j["budget_ms"].get<double>(), 60000.0 / 18, 1e-9);  // 18 strokes/min

  TEND_REQUIRE_TEST_MODELS();
  auto raw = Bench("--pipeline --model " + ModelPath("cnn1d") + " --strokes 20 --json");
  ASSERT_EQ(raw.exit_code, 0) << raw.err;
  auto r = nlohmann::json::parse(raw.out);
  EXPECT_EQ(r["input"], "raw window");
  EXPECT_EQ(r["provider"], "CPUExecutionProvider");
  EXPECT_GT(r["stages"]["inference"]["p50_ms"].get<double>(), 0);
  EXPECT_GE(r["stages"]["total"]["max_ms"].get<double>(),
            r["stages"]["inference"]["max_ms"].get<double>());

  // A model `tend train` wrote: its model card decides windowing and features (ServedModel).
  auto dir = testing::TempDir("cli_pipeline");
  std::string train = TendBinary() + " --log-level warn train -i sim:strokes=60,seed=3 -o " + dir +
                      "/press.onnx >" + dir + "/train.log 2>&1";
  ASSERT_EQ(std::system(train.c_str()), 0) << testing::ReadBytes(dir + "/train.log");
  auto carded = Bench("--pipeline --model " + dir + "/press.onnx --strokes 20 --json");
  ASSERT_EQ(carded.exit_code, 0) << carded.err;
  auto c = nlohmann::json::parse(carded.out);
  EXPECT_EQ(c["input"], "tend model, features");
  EXPECT_EQ(c["windows"], 20);
  EXPECT_GT(c["stages"]["features"]["p50_ms"].get<double>(), 0);
  EXPECT_GT(c["stages"]["inference"]["p50_ms"].get<double>(), 0);
  std::filesystem::remove_all(dir);

  ExpectOneLineError(Bench("--pipeline --model " + ModelPath("lstm")), "default press features");
  ExpectOneLineError(Bench("--pipeline --sim bogus=1"), "unknown option 'bogus'");
}

}  // namespace
}  // namespace tend::model
