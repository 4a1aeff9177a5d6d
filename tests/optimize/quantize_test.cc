#include "optimize/quantize.h"

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>

#include "core/fs.h"
#include "optimize/onnx_util.h"
#include "optimize/ort_runner.h"
#include "test_util.h"

namespace tend::optimize {
namespace {

using testing::Model;
using testing::TempDir;

NpyArray Load(const std::string& name) {
  auto a = ReadNpy(Model(name));
  EXPECT_TRUE(a) << a.error().message;
  return a ? *a : NpyArray{};
}

onnx::ModelProto Parse(const std::string& bytes) {
  onnx::ModelProto m;
  EXPECT_TRUE(m.ParseFromString(bytes));
  return m;
}

std::map<std::string, std::string> Metadata(const onnx::ModelProto& m) {
  std::map<std::string, std::string> out;
  for (const auto& p : m.metadata_props()) out[p.key()] = p.value();
  return out;
}

const onnx::TensorProto* Initializer(const onnx::ModelProto& m, const std::string& name) {
  for (const auto& t : m.graph().initializer()) {
    if (t.name() == name) return &t;
  }
  return nullptr;
}

template <typename T>
std::vector<T> Values(const onnx::TensorProto& t) {
  std::vector<T> v(t.raw_data().size() / sizeof(T));
  std::memcpy(v.data(), t.raw_data().data(), v.size() * sizeof(T));
  return v;
}

int CountOps(const onnx::ModelProto& m, const std::string& op) {
  int n = 0;
  for (const auto& node : m.graph().node()) n += node.op_type() == op;
  return n;
}

// Runs both models on `data` (batch 1 per window) and returns the first output of each.
void RunBoth(const std::string& a_bytes, const std::string& b_bytes, const NpyArray& data,
             std::vector<float>& a, std::vector<float>& b) {
  auto ra = OrtRunner::Create(a_bytes, "a");
  auto rb = OrtRunner::Create(b_bytes, "b");
  ASSERT_TRUE(ra) << ra.error().message;
  ASSERT_TRUE(rb) << rb.error().message;
  std::vector<int64_t> shape = data.shape;
  shape[0] = 1;
  for (int64_t i = 0; i < data.rows(); ++i) {
    auto oa = (*ra)->Run(data.row(i), shape);
    auto ob = (*rb)->Run(data.row(i), shape);
    ASSERT_TRUE(oa && ob);
    a.insert(a.end(), (*oa)[0].data.begin(), (*oa)[0].data.end());
    b.insert(b.end(), (*ob)[0].data.begin(), (*ob)[0].data.end());
  }
}

double Correlation(const std::vector<float>& a, const std::vector<float>& b) {
  double ma = 0, mb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ma += a[i];
    mb += b[i];
  }
  ma /= static_cast<double>(a.size());
  mb /= static_cast<double>(b.size());
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return sab / std::sqrt(saa * sbb);
}

// Largest difference relative to the largest FP32 magnitude. Untrained test models give outputs
// that barely vary between windows, so correlation would mostly measure noise.
double MaxRelDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double range = 0, diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    range = std::max(range, std::fabs(static_cast<double>(a[i])));
    diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - b[i]));
  }
  return diff / range;
}

std::string ReadAll(const std::string& path) {
  auto s = fs::ReadFile(path);
  EXPECT_TRUE(s) << s.error().message;
  return s ? *s : std::string();
}

TEST(QuantizeInt8, CnnPassesCheckerRunsAndTracksFp32) {
  const NpyArray calib = Load("cnn_calib.npy");
  const NpyArray val = Load("cnn_val.npy");
  int progress_calls = 0;
  QuantizeOptions opt;
  opt.progress = [&](const std::string&, int64_t done, int64_t total) {
    ++progress_calls;
    EXPECT_LE(done, total);
  };
  auto q = QuantizeInt8(Model("cnn.onnx"), calib, opt);
  ASSERT_TRUE(q) << q.error().message;
  EXPECT_GT(progress_calls, 0);

  TempDir dir;
  const std::string out = dir.File("cnn.int8.onnx");
  ASSERT_TRUE(fs::WriteFileAtomic(out, q->bytes));
  EXPECT_EQ(testing::OnnxCheckerErrors(out), "");

  const auto& r = q->report;
  EXPECT_EQ(r.precision, "int8");
  EXPECT_EQ(r.method, "minmax");
  EXPECT_EQ(r.calibration_samples, 64);
  EXPECT_EQ(r.quantized_ops.at("Conv"), 2);
  EXPECT_EQ(r.quantized_ops.at("Gemm"), 1);
  EXPECT_EQ(r.fused_activations, 2);
  // torch exports x.mean(dim=2) as ReduceMean, which has no INT8 conversion: left FP32, listed.
  EXPECT_EQ(r.unquantized_ops.at("ReduceMean"), 1);
  ASSERT_FALSE(r.checks.empty());

  const auto m = Parse(q->bytes);
  EXPECT_EQ(CountOps(m, "Relu"), 0);
  EXPECT_EQ(CountOps(m, "DequantizeLinear") >= 5, true);
  auto meta = Metadata(m);
  EXPECT_EQ(meta["tend.name"], "test-cnn");
  EXPECT_EQ(meta["tend.version"], "3");
  EXPECT_EQ(meta["tend.input_kind"], "raw");
  EXPECT_EQ(meta["tend.precision"], "\"int8\"");
  auto j = nlohmann::json::parse(meta["tend.quantization"]);
  EXPECT_EQ(j["method"], "minmax");
  EXPECT_EQ(j["calibration_samples"], 64);
  EXPECT_EQ(j["quantized_ops"]["Conv"], 2);
  EXPECT_EQ(j["unquantized_ops"]["ReduceMean"], 1);

  std::vector<float> a, b;
  RunBoth(ReadAll(Model("cnn.onnx")), q->bytes, val, a, b);
  ASSERT_EQ(a.size(), b.size());
  float range = 0, max_diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    range = std::max(range, std::fabs(a[i]));
    max_diff = std::max(max_diff, std::fabs(a[i] - b[i]));
  }
  EXPECT_LT(max_diff, 0.05f * range) << "max diff " << max_diff << " of range " << range;
  EXPECT_GT(Correlation(a, b), 0.99);
}

TEST(QuantizeInt8, OnnxRuntimeFusesIntoIntegerKernels) {
  auto q = QuantizeInt8(Model("cnn.onnx"), Load("cnn_calib.npy"), {});
  ASSERT_TRUE(q) << q.error().message;
  TempDir dir;
  OrtRunnerOptions ro;
  ro.full_optimization = true;
  ro.optimized_model_path = dir.File("optimized.onnx");
  auto runner = OrtRunner::Create(q->bytes, "q", ro);
  ASSERT_TRUE(runner) << runner.error().message;
  auto opt = LoadModel(ro.optimized_model_path);
  ASSERT_TRUE(opt) << opt.error().message;
  // Both convolutions run as QLinearConv (uint8 activations x int8 per-channel weights).
  EXPECT_EQ(CountOps(*opt, "QLinearConv"), 2);
  EXPECT_EQ(CountOps(*opt, "Conv"), 0);
}

TEST(QuantizeInt8, PercentileAndEntropyMethods) {
  const NpyArray calib = Load("cnn_calib.npy");
  const NpyArray val = Load("cnn_val.npy");
  auto mm = QuantizeInt8(Model("cnn.onnx"), calib, {});
  ASSERT_TRUE(mm) << mm.error().message;
  for (auto m : {CalibrationMethod::kPercentile, CalibrationMethod::kEntropy}) {
    QuantizeOptions opt;
    opt.method = m;
    auto q = QuantizeInt8(Model("cnn.onnx"), calib, opt);
    ASSERT_TRUE(q) << q.error().message;
    EXPECT_EQ(q->report.method, CalibrationMethodName(m));
    TempDir dir;
    ASSERT_TRUE(fs::WriteFileAtomic(dir.File("q.onnx"), q->bytes));
    EXPECT_EQ(testing::OnnxCheckerErrors(dir.File("q.onnx")), "");
    // Both clip the tails that min/max keeps: every range lies inside the min/max one.
    for (const auto& [t, r] : q->report.ranges) {
      const Range full = mm->report.ranges.at(t);
      EXPECT_GE(r.min, full.min) << t;
      EXPECT_LE(r.max, full.max) << t;
    }
    std::vector<float> a, b;
    RunBoth(ReadAll(Model("cnn.onnx")), q->bytes, val, a, b);
    // Entropy (KL) ranges follow where most of the mass is: on these sparse bursts in noise it
    // clips the bursts hard, so only percentile is held to an accuracy bound here.
    if (m == CalibrationMethod::kPercentile) {
      EXPECT_LT(MaxRelDiff(a, b), 0.1);
    }
    for (float v : b) EXPECT_TRUE(std::isfinite(v));
  }
}

TEST(QuantizeInt8, PerChannelScalesOnKnownWeights) {
  auto q = QuantizeInt8(Model("known_weights.onnx"), Load("known_calib.npy"), {});
  ASSERT_TRUE(q) << q.error().message;
  const auto m = Parse(q->bytes);
  // Conv weight W [2,2,3]: channel |max| 2.0 and 0.6 -> scales 2/127, 0.6/127 on axis 0.
  const auto* ws = Initializer(m, "W_scale");
  const auto* wq = Initializer(m, "W_quantized");
  ASSERT_TRUE(ws && wq);
  EXPECT_EQ(wq->data_type(), onnx::TensorProto::INT8);
  auto s = Values<float>(*ws);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_FLOAT_EQ(s[0], 2.0f / 127.0f);
  EXPECT_FLOAT_EQ(s[1], 0.6f / 127.0f);
  auto w = Values<int8_t>(*wq);
  const std::vector<int8_t> expected_w = {64, -127, 32, 16, 0, 6, 64, -127, 42, 21, 11, -32};
  EXPECT_EQ(w, expected_w);
  // MatMul weight M [6,2]: per column (axis 1): |max| 4.0 and 0.5.
  const auto* ms = Initializer(m, "M_scale");
  ASSERT_TRUE(ms);
  auto mscale = Values<float>(*ms);
  ASSERT_EQ(mscale.size(), 2u);
  EXPECT_FLOAT_EQ(mscale[0], 4.0f / 127.0f);
  EXPECT_FLOAT_EQ(mscale[1], 0.5f / 127.0f);
  for (const auto& n : m.graph().node()) {
    if (n.op_type() == "DequantizeLinear" && n.input(0) == "M_quantized") {
      EXPECT_EQ(GetIntAttr(n, "axis", -1), 1);
    }
    if (n.op_type() == "DequantizeLinear" && n.input(0) == "W_quantized") {
      EXPECT_EQ(GetIntAttr(n, "axis", -1), 0);
    }
  }
  // Bias: int32 with scale = input scale * weight scale, per channel.
  const auto* bq = Initializer(m, "B_quantized");
  const auto* bs = Initializer(m, "B_scale");
  const auto* xs = Initializer(m, "x_scale");
  ASSERT_TRUE(bq && bs && xs);
  EXPECT_EQ(bq->data_type(), onnx::TensorProto::INT32);
  const float x_scale = Values<float>(*xs)[0];
  auto bscale = Values<float>(*bs);
  EXPECT_FLOAT_EQ(bscale[0], x_scale * 2.0f / 127.0f);
  EXPECT_FLOAT_EQ(bscale[1], x_scale * 0.6f / 127.0f);
  auto b = Values<int32_t>(*bq);
  EXPECT_EQ(b[0], static_cast<int32_t>(std::lround(0.5 / bscale[0])));
  EXPECT_EQ(b[1], static_cast<int32_t>(std::lround(-0.25 / bscale[1])));
  // The Relu is folded (zero point 0 on its output), the Reshape shares its input's scale.
  EXPECT_EQ(CountOps(m, "Relu"), 0);
  EXPECT_EQ(q->report.fused_activations, 1);
  EXPECT_EQ(q->report.quantized_ops.at("Reshape"), 1);
  const auto* rz = Initializer(m, "r_zero_point");
  ASSERT_TRUE(rz);
  EXPECT_EQ(Values<uint8_t>(*rz)[0], 0);
  const auto* rs = Initializer(m, "r_scale");
  const auto* fs = Initializer(m, "f_scale");
  ASSERT_TRUE(rs && fs);
  EXPECT_EQ(Values<float>(*rs)[0], Values<float>(*fs)[0]);
  // The original float weights are gone.
  EXPECT_EQ(Initializer(m, "W"), nullptr);
  EXPECT_EQ(Initializer(m, "M"), nullptr);
}

TEST(QuantizeInt8, PerTensorAndReducedRange) {
  QuantizeOptions opt;
  opt.per_channel = false;
  opt.reduce_range = true;
  auto q = QuantizeInt8(Model("known_weights.onnx"), Load("known_calib.npy"), opt);
  ASSERT_TRUE(q) << q.error().message;
  const auto m = Parse(q->bytes);
  const auto* ws = Initializer(m, "W_scale");
  ASSERT_TRUE(ws);
  EXPECT_EQ(ws->dims_size(), 0);
  EXPECT_FLOAT_EQ(Values<float>(*ws)[0], 2.0f / 63.0f);
  for (int8_t v : Values<int8_t>(*Initializer(m, "W_quantized"))) {
    EXPECT_LE(std::abs(v), 63);
  }
}

TEST(QuantizeInt8, UnsupportedOpsStayFp32AndAreListed) {
  NpyArray calib = Load("cnn_calib.npy");
  auto q = QuantizeInt8(Model("lstm_head.onnx"), calib, {});
  ASSERT_TRUE(q) << q.error().message;
  const auto& r = q->report;
  EXPECT_EQ(r.quantized_ops.at("Conv"), 1);
  EXPECT_EQ(r.unquantized_ops.at("LSTM"), 1);
  bool listed = false;
  for (const auto& s : r.unquantized_nodes) listed |= s.find("(LSTM)") != std::string::npos;
  EXPECT_TRUE(listed);
  const auto m = Parse(q->bytes);
  EXPECT_EQ(CountOps(m, "LSTM"), 1);
  auto j = nlohmann::json::parse(Metadata(m)["tend.quantization"]);
  EXPECT_EQ(j["unquantized_ops"]["LSTM"], 1);
  TempDir dir;
  ASSERT_TRUE(fs::WriteFileAtomic(dir.File("q.onnx"), q->bytes));
  EXPECT_EQ(testing::OnnxCheckerErrors(dir.File("q.onnx")), "");
  std::vector<float> a, b;
  RunBoth(ReadAll(Model("lstm_head.onnx")), q->bytes, Load("cnn_val.npy"), a, b);
  EXPECT_LT(MaxRelDiff(a, b), 0.05);
}

TEST(QuantizeInt8, MlpWithFeatureInput) {
  auto q = QuantizeInt8(Model("mlp.onnx"), Load("mlp_calib.npy"), {});
  ASSERT_TRUE(q) << q.error().message;
  EXPECT_EQ(q->report.quantized_ops.at("Gemm"), 2);
  // The Squeeze writes the graph output: kept FP32 so the score keeps full precision.
  EXPECT_EQ(q->report.unquantized_ops.count("Squeeze"), 1u);
  std::vector<float> a, b;
  RunBoth(ReadAll(Model("mlp.onnx")), q->bytes, Load("mlp_calib.npy"), a, b);
  EXPECT_GT(Correlation(a, b), 0.99);
  const auto m = Parse(q->bytes);
  EXPECT_EQ(Metadata(m)["tend.input_kind"], "features");
  // Quantisers on the input and the folded Relu only: the second Gemm feeds an FP32 Sigmoid, so
  // it keeps a float output (QGemm with float output) instead of a lossy re-quantisation.
  EXPECT_EQ(CountOps(m, "QuantizeLinear"), 2);
}

TEST(QuantizeInt8, Fp32ArithmeticAroundAMatMulReadsExactValues) {
  // z feeds the quantised MatMul and an FP32 Mul: the Mul keeps the exact z, and the MatMul's
  // output (read only by FP32 ops) stays float.
  auto q = QuantizeInt8(Model("quadratic.onnx"), Load("mlp_calib.npy"), {});
  ASSERT_TRUE(q) << q.error().message;
  const auto m = Parse(q->bytes);
  EXPECT_EQ(q->report.quantized_ops.at("MatMul"), 1);
  EXPECT_EQ(q->report.unquantized_ops.at("Mul"), 1);
  for (const auto& n : m.graph().node()) {
    if (n.op_type() == "Mul") {
      EXPECT_EQ(n.input(0), "z");
      EXPECT_EQ(n.input(1), "zp");
    }
    if (n.op_type() == "QuantizeLinear") {
      EXPECT_EQ(n.input(0), "z");
    }
  }
  std::vector<float> a, b;
  RunBoth(ReadAll(Model("quadratic.onnx")), q->bytes, Load("mlp_calib.npy"), a, b);
  EXPECT_GT(Correlation(a, b), 0.99);
}

TEST(QuantizeInt8, OldOpsetIsUpgradedAndFixedBatchWorks) {
  auto q = QuantizeInt8(Model("cnn_opset11.onnx"), Load("cnn_calib.npy"), {});
  ASSERT_TRUE(q) << q.error().message;
  EXPECT_EQ(q->report.opset, 13);
  EXPECT_EQ(DefaultOpset(Parse(q->bytes)), 13);
  auto f = QuantizeInt8(Model("cnn_fixed.onnx"), Load("cnn_calib.npy"), {});
  ASSERT_TRUE(f) << f.error().message;
  EXPECT_EQ(f->report.calibration_samples, 64);
}

TEST(QuantizeInt8, BadCalibrationData) {
  NpyArray calib = Load("cnn_calib.npy");
  struct Case {
    std::string name;
    NpyArray data;
    std::string expect;
  };
  NpyArray empty;
  empty.shape = {0, 1, 256};
  NpyArray few = calib;
  few.shape[0] = 5;
  few.data.resize(5 * 256);
  NpyArray wrong_len;
  wrong_len.shape = {64, 1, 255};
  wrong_len.data.assign(64 * 255, 0.1f);
  NpyArray wrong_rank;
  wrong_rank.shape = {64, 256};
  wrong_rank.data.assign(64 * 256, 0.1f);
  const std::vector<Case> cases = {
      {"empty", empty, "is empty"},
      {"few", few, "has 5 windows; at least 16 are needed"},
      {"length", wrong_len,
       "shape [64,1,255] does not fit model input 'input' [?,1,256] (expected [N,1,256])"},
      {"rank", wrong_rank, "shape [64,256] does not fit model input"},
  };
  for (const auto& c : cases) {
    auto q = QuantizeInt8(Model("cnn.onnx"), c.data, {});
    ASSERT_FALSE(q) << c.name;
    EXPECT_NE(q.error().message.find(c.expect), std::string::npos)
        << c.name << ": " << q.error().message;
    EXPECT_EQ(q.error().message.find('\n'), std::string::npos);
  }
}

TEST(QuantizeInt8, BadModels) {
  NpyArray calib = Load("cnn_calib.npy");
  TempDir dir;
  std::ofstream(dir.File("text.onnx")) << "not a model at all\n";
  struct Case {
    std::string path, expect;
  };
  const std::vector<Case> cases = {
      {"/nonexistent/m.onnx", "/nonexistent/m.onnx"},
      {dir.File("text.onnx"), "not an ONNX model"},
      {Model("two_inputs.onnx"), "exactly one float32 input"},
  };
  for (const auto& c : cases) {
    NpyArray data = calib;
    if (c.path.find("two_inputs") != std::string::npos) {
      data.shape = {64, 4};
      data.data.assign(256, 1.0f);
    }
    auto q = QuantizeInt8(c.path, data, {});
    ASSERT_FALSE(q) << c.path;
    EXPECT_NE(q.error().message.find(c.expect), std::string::npos) << q.error().message;
  }
}

TEST(TensorRtTable, NativeFormat) {
  std::map<std::string, Range> ranges = {{"a", {-1.27f, 0.5f}}, {"b", {0.0f, 0.0f}}};
  const std::string t = TensorRtCalibrationTable(ranges);
  const float scale = 1.27f / 127.0f;
  char hex[16];
  std::snprintf(hex, sizeof hex, "%08x", std::bit_cast<uint32_t>(scale));
  EXPECT_EQ(t.substr(0, t.find('\n')), "TRT-8601-EntropyCalibration2");
  EXPECT_NE(t.find(std::string("\na: ") + hex + "\n"), std::string::npos) << t;
  EXPECT_NE(t.find("\nb: "), std::string::npos);
}

TEST(ConvertFp16, CnnKeepsFloatInterface) {
  const NpyArray val = Load("cnn_val.npy");
  Fp16Options opt;
  opt.check_data = &val;
  auto h = ConvertFp16(Model("cnn.onnx"), opt);
  ASSERT_TRUE(h) << h.error().message;
  TempDir dir;
  ASSERT_TRUE(fs::WriteFileAtomic(dir.File("h.onnx"), h->bytes));
  EXPECT_EQ(testing::OnnxCheckerErrors(dir.File("h.onnx")), "");
  const auto m = Parse(h->bytes);
  EXPECT_EQ(m.graph().input(0).type().tensor_type().elem_type(), onnx::TensorProto::FLOAT);
  EXPECT_EQ(m.graph().output(0).type().tensor_type().elem_type(), onnx::TensorProto::FLOAT);
  for (const auto& t : m.graph().initializer()) {
    EXPECT_NE(t.data_type(), onnx::TensorProto::FLOAT) << t.name();
  }
  auto meta = Metadata(m);
  EXPECT_EQ(meta["tend.precision"], "\"fp16\"");
  EXPECT_EQ(meta["tend.name"], "test-cnn");
  EXPECT_EQ(h->report.check_samples, 32);
  std::vector<float> a, b;
  RunBoth(ReadAll(Model("cnn.onnx")), h->bytes, val, a, b);
  float range = 0, max_diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    range = std::max(range, std::fabs(a[i]));
    max_diff = std::max(max_diff, std::fabs(a[i] - b[i]));
  }
  EXPECT_LT(max_diff, 0.01f * range + 1e-3f);
}

TEST(ConvertFp16, LstmModelRuns) {
  auto h = ConvertFp16(Model("lstm_head.onnx"), {});
  ASSERT_TRUE(h) << h.error().message;
  std::vector<float> a, b;
  RunBoth(ReadAll(Model("lstm_head.onnx")), h->bytes, Load("cnn_val.npy"), a, b);
  EXPECT_LT(MaxRelDiff(a, b), 0.01);
}

TEST(HalfFloat, RoundTripAndRounding) {
  EXPECT_EQ(FloatToHalf(1.0f), 0x3c00);
  EXPECT_EQ(FloatToHalf(-2.0f), 0xc000);
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7bff);
  EXPECT_EQ(FloatToHalf(1e6f), 0x7bff);           // saturates
  EXPECT_EQ(FloatToHalf(5.9604645e-8f), 0x0001);  // smallest subnormal
  EXPECT_EQ(FloatToHalf(0.0f), 0x0000);
  for (float f : {0.1f, 3.14159f, -1000.5f, 6.1e-5f, 1e-6f}) {
    EXPECT_NEAR(HalfToFloat(FloatToHalf(f)), f, std::fabs(f) * 1e-3 + 6e-8) << f;
  }
}

}  // namespace
}  // namespace tend::optimize

namespace tend::optimize {
namespace {

TEST(QuantizeInt8, SymmetricInt8ActivationsForTensorRt) {
  QuantizeOptions opt;
  opt.symmetric_activations = true;
  auto q = QuantizeInt8(testing::Model("cnn.onnx"), Load("cnn_calib.npy"), opt);
  ASSERT_TRUE(q) << q.error().message;
  const auto m = Parse(q->bytes);
  // Every activation zero point is an int8 zero; Relu stays (a zero point of 0 in int8 does not
  // clamp negatives) and is quantised in its own right.
  int zero_points = 0;
  for (const auto& t : m.graph().initializer()) {
    if (t.name().find("_zero_point") == std::string::npos || t.dims_size() != 0) continue;
    ++zero_points;
    EXPECT_EQ(t.data_type(), onnx::TensorProto::INT8) << t.name();
    EXPECT_EQ(Values<int8_t>(t)[0], 0) << t.name();
  }
  EXPECT_GT(zero_points, 3);
  EXPECT_EQ(CountOps(m, "Relu"), 2);
  EXPECT_EQ(q->report.fused_activations, 0);
  EXPECT_EQ(q->report.quantized_ops.at("Relu"), 2);
  testing::TempDir dir;
  ASSERT_TRUE(fs::WriteFileAtomic(dir.File("s.onnx"), q->bytes));
  EXPECT_EQ(testing::OnnxCheckerErrors(dir.File("s.onnx")), "");
  std::vector<float> a, b;
  RunBoth(ReadAll(testing::Model("cnn.onnx")), q->bytes, Load("cnn_val.npy"), a, b);
  EXPECT_LT(MaxRelDiff(a, b), 0.1);
}

}  // namespace
}  // namespace tend::optimize
