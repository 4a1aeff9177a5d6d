// `tend quantize` and `tend compare` as a user runs them: exit codes, one-line errors, reports.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "test_util.h"

namespace tend::optimize {
namespace {

using testing::Model;
using testing::RunCommand;
using testing::TempDir;

std::string Tend() {
  const char* dir = std::getenv("TEND_BINARY_DIR");
  return std::string(dir ? dir : ".") + "/tend";
}

class OptimizeCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(Tend())) GTEST_SKIP() << Tend() << " not built";
  }
  // Runs tend with stdout and stderr kept apart.
  testing::CommandResult Run(const std::string& args, std::string* err = nullptr) {
    const std::string err_file = dir_.File("stderr.txt");
    auto r = testing::RunCommand(Tend() + " " + args + " 2>" + err_file, /*merge_stderr=*/false);
    std::ifstream f(err_file);
    std::string e((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (err) *err = e;
    return r;
  }
  // A failed command prints exactly one "tend: error: ..." line on stderr.
  void ExpectOneLineError(const std::string& args, const std::string& expect, int code = -1) {
    std::string err;
    auto r = Run(args, &err);
    EXPECT_NE(r.status, 0) << args;
    if (code >= 0) {
      EXPECT_EQ(r.status, code) << args;
    }
    // Exactly one error line (info log lines from loading models may precede it).
    std::vector<std::string> errors;
    std::istringstream lines(err);
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("tend: error: ", 0) == 0) errors.push_back(line);
    }
    ASSERT_EQ(errors.size(), 1u) << args << "\n" << err;
    EXPECT_NE(errors[0].find(expect), std::string::npos) << args << "\n" << err;
  }
  TempDir dir_;
};

TEST_F(OptimizeCli, QuantizeWritesModelAndReport) {
  const std::string out = dir_.File("cnn.int8.onnx");
  auto r = Run("quantize " + Model("cnn.onnx") + " --calibration " + Model("cnn_calib.npy") +
               " --out " + out);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(std::filesystem::exists(out));
  EXPECT_NE(r.output.find("Conv x2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("left FP32:  ReduceMean x1"), std::string::npos) << r.output;
  EXPECT_EQ(testing::OnnxCheckerErrors(out), "");

  auto j = Run("quantize " + Model("cnn.onnx") + " --calibration " + Model("cnn_calib.npy") +
               " --method entropy --json --out " + dir_.File("e.onnx"));
  ASSERT_EQ(j.status, 0) << j.output;
  auto report = nlohmann::json::parse(j.output);
  EXPECT_EQ(report["method"], "entropy");
  EXPECT_EQ(report["calibration_samples"], 64);
  EXPECT_GT(report["size_bytes_out"].get<int64_t>(), 0);
}

TEST_F(OptimizeCli, QuantizeModelWithUnsupportedOpsReportsThem) {
  auto r = Run("quantize " + Model("lstm_head.onnx") + " --calibration " + Model("cnn_calib.npy") +
               " --out " + dir_.File("l.onnx"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("LSTM x1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(LSTM): no INT8 conversion"), std::string::npos) << r.output;
}

TEST_F(OptimizeCli, Fp16AndTensorRtTable) {
  auto r = Run("quantize " + Model("cnn.onnx") + " --fp16 --out " + dir_.File("h.onnx"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(testing::OnnxCheckerErrors(dir_.File("h.onnx")), "");
  auto t =
      Run("quantize " + Model("cnn.onnx") + " --calibration " + Model("cnn_calib.npy") + " --out " +
          dir_.File("q.onnx") + " --trt-calibration-table " + dir_.File("t.cache"));
  ASSERT_EQ(t.status, 0) << t.output;
  std::ifstream f(dir_.File("t.cache"));
  std::string first;
  std::getline(f, first);
  EXPECT_EQ(first, "TRT-8601-EntropyCalibration2");
}

TEST_F(OptimizeCli, QuantizeBadInputs) {
  const std::string q = "quantize " + Model("cnn.onnx") + " --out " + dir_.File("x.onnx");
  std::ofstream(dir_.File("text.npy")) << "1,2,3\n";
  ExpectOneLineError(q, "--calibration is required");
  ExpectOneLineError(q + " --calibration " + Model("empty.npy"), "is empty");
  ExpectOneLineError(q + " --calibration " + Model("cnn_calib_small.npy"),
                     "has 5 windows; at least 16 are needed");
  ExpectOneLineError(q + " --calibration " + Model("mlp_calib.npy"),
                     "shape [64,8] does not fit model input 'input'");
  ExpectOneLineError(q + " --calibration " + Model("bad_f64.npy"), "dtype '<f8' not supported");
  ExpectOneLineError(q + " --calibration " + dir_.File("text.npy"), "not a .npy file");
  ExpectOneLineError(q + " --calibration /nonexistent.npy", "/nonexistent.npy");
  ExpectOneLineError("quantize /nonexistent.onnx --calibration " + Model("cnn_calib.npy"),
                     "/nonexistent.onnx");
  ExpectOneLineError(q + " --calibration " + Model("cnn_calib.npy") + " --ops Conv,LSTM",
                     "--ops: 'LSTM' is not an op the quantiser converts");
  ExpectOneLineError("quantize " + Model("cnn.onnx") + " --calibration " + Model("cnn_calib.npy") +
                         " --out " + Model("cnn.onnx"),
                     "is the input model");
}

TEST_F(OptimizeCli, CompareTableJsonAndGate) {
  const std::string q = dir_.File("q.onnx");
  ASSERT_EQ(Run("quantize " + Model("cnn.onnx") + " --calibration " + Model("cnn_calib.npy") +
                " --out " + q)
                .status,
            0);
  const std::string val = " --validation " + Model("cnn_val.npy") + " --labels " +
                          Model("cnn_rank_labels.npy") + " --iterations 20 --warmup 2";
  auto t = Run("compare " + Model("cnn.onnx") + " " + q + val);
  ASSERT_EQ(t.status, 0) << t.output;
  EXPECT_NE(t.output.find("AUC"), std::string::npos) << t.output;
  EXPECT_NE(t.output.find("p50 ms"), std::string::npos) << t.output;
  EXPECT_NE(t.output.find("int8"), std::string::npos) << t.output;

  auto j = Run("compare " + Model("cnn.onnx") + " " + q + val + " --json");
  ASSERT_EQ(j.status, 0) << j.output;
  auto report = nlohmann::json::parse(j.output);
  EXPECT_EQ(report["metric"], "auc");
  EXPECT_EQ(report["pass"], true);
  ASSERT_EQ(report["models"].size(), 2u);
  // Labels are the FP32 score above its median: the reference separates them perfectly.
  EXPECT_DOUBLE_EQ(report["models"][0]["auc"].get<double>(), 1.0);
  EXPECT_EQ(report["models"][1]["precision"], "int8");
  EXPECT_EQ(report["models"][0]["runs"], 20);

  // A variant that inverts the score loses everything: exit 3 after printing the table.
  std::string err;
  auto bad = Run("compare " + Model("cnn.onnx") + " " + Model("cnn_neg.onnx") + val, &err);
  EXPECT_EQ(bad.status, 3) << bad.output << err;
  EXPECT_NE(bad.output.find("FAIL"), std::string::npos) << bad.output;
  EXPECT_NE(err.find("AUC drops 100.00 points"), std::string::npos) << err;
}

// #16 item 10: `tend windows` turns recordings into the .npy files quantize and compare read,
// shaped like the model's input, with labels from --normal/--anomalous.
TEST_F(OptimizeCli, WindowsFromRecordingsFeedCompareAndQuantize) {
  const std::string m = dir_.File("press.onnx"), normal = dir_.File("normal.wav"),
                    worn = dir_.File("worn.wav");
  ASSERT_EQ(Run("--log-level warn train --input sim:strokes=150,wear=0,seed=1 --out " + m).status,
            0);
  ASSERT_EQ(Run("simulate --sim sim:strokes=40,wear=0,seed=2 --out " + normal).status, 0);
  ASSERT_EQ(Run("simulate --sim sim:strokes=40,wear=0.7,seed=3 --out " + worn).status, 0);

  const std::string val = dir_.File("val.npy"), labels = dir_.File("labels.npy");
  auto w = Run("--log-level warn windows --model " + m + " --normal " + normal + " --anomalous " +
               worn + " --out " + val + " --labels " + labels);
  ASSERT_EQ(w.status, 0) << w.output;
  EXPECT_NE(w.output.find("feature vectors"), std::string::npos) << w.output;
  EXPECT_NE(w.output.find("anomalous)"), std::string::npos) << w.output;
  auto c = Run("--log-level warn compare " + m + " " + m + " --validation " + val + " --labels " +
               labels + " --iterations 5 --warmup 1 --json");
  ASSERT_EQ(c.status, 0) << c.output;
  auto report = nlohmann::json::parse(c.output);
  EXPECT_EQ(report["samples"], 80) << "one window per simulated stroke";
  EXPECT_GT(report["models"][0]["auc"].get<double>(), 0.9) << "worn strokes score higher";

  const std::string calib = dir_.File("calib.npy");
  w = Run("--log-level warn windows --model " + m + " --input " + normal + " --input " + worn +
          " --max 20 --out " + calib);
  ASSERT_EQ(w.status, 0) << w.output;
  EXPECT_NE(w.output.find("20 windows"), std::string::npos) << w.output;
  auto q = Run("--log-level warn quantize " + m + " --calibration " + calib + " --out " +
               dir_.File("press.int8.onnx"));
  EXPECT_EQ(q.status, 0) << q.output;

  ExpectOneLineError("windows --model " + m + " --out " + val, "no input");
  ExpectOneLineError(
      "windows --model " + m + " --input " + normal + " --labels " + labels + " --out " + val,
      "--labels needs --normal");
  ExpectOneLineError("windows --model " + m + " --input " + normal + "@0:0.1 --out " + val,
                     "no windows");
  ExpectOneLineError(
      "windows --model " + dir_.File("none.onnx") + " --input " + normal + " --out " + val,
      "none.onnx");
}

TEST_F(OptimizeCli, CompareBadInputs) {
  const std::string two = "compare " + Model("cnn.onnx") + " " + Model("cnn_neg.onnx");
  ExpectOneLineError("compare " + Model("cnn.onnx") + " --validation " + Model("cnn_val.npy"),
                     "at least two models");
  ExpectOneLineError(two, "--validation is required");
  ExpectOneLineError(two + " --validation " + Model("mlp_calib.npy"), "does not fit");
  ExpectOneLineError(
      two + " --validation " + Model("cnn_val.npy") + " --labels " + Model("mlp_calib.npy"),
      "labels must be 1-D");
  ExpectOneLineError(
      two + " --validation " + Model("cnn_calib.npy") + " --labels " + Model("cnn_labels.npy"),
      "96 labels for 64 validation windows");
  ExpectOneLineError(two + " --validation " + Model("cnn_val.npy") + " --output nope",
                     "no output 'nope'");
}

}  // namespace
}  // namespace tend::optimize
