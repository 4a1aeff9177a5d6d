// Post-training quantisation of ONNX models, in C++: static INT8 in the QDQ format (per-channel
// int8 weights, per-tensor uint8 activations calibrated on real windows), which ONNX Runtime
// fuses into integer kernels, and FP16 conversion with an FP32 interface. Ops the quantiser does
// not handle stay FP32 and are listed in the report and in the model's `tend.quantization`.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/status.h"
#include "optimize/calibration.h"
#include "optimize/npy.h"

namespace tend::optimize {

struct QuantizeOptions {
  CalibrationMethod method = CalibrationMethod::kMinMax;
  double percentile = 99.999;  // --method percentile
  int histogram_bins = 2048;   // --method entropy
  // Per-output-channel weight scales (Conv, MatMul/Gemm columns). Per-tensor otherwise.
  bool per_channel = true;
  // 7-bit weights: needed on x86 CPUs without VNNI, whose u8*s8 instruction can saturate.
  bool reduce_range = false;
  // Activations as int8 with zero point 0 instead of asymmetric uint8. TensorRT's explicit
  // quantisation accepts only this form; ONNX Runtime's CPU kernels are fastest with uint8.
  // Relu/Clip are then quantised ops of their own instead of being folded.
  bool symmetric_activations = false;
  // Op types to quantise; empty = DefaultOpTypes(). Elementwise ops and pools are quantised
  // only when their inputs come from quantised ops (inside an integer chain).
  std::set<std::string> op_types;
  // Node names to leave FP32.
  std::set<std::string> exclude_nodes;
  // Too few windows give meaningless ranges; fewer than this is an error.
  int64_t min_samples = 16;
  // Use at most this many calibration windows (0 = all).
  int64_t max_samples = 0;
  // Windows per calibration run when the model's batch dimension is dynamic.
  int batch = 8;
  int threads = 1;
  // Also keep ranges for every float tensor (for a TensorRT INT8 calibration table).
  bool all_tensor_ranges = false;
  // Called during calibration: stage ("ranges" or "histograms"), windows done, total.
  std::function<void(const std::string& stage, int64_t done, int64_t total)> progress;
};

struct OpCount {
  std::string op_type;
  int count = 0;
};

struct QuantizeReport {
  std::string precision;  // "int8" or "fp16"
  std::string method;     // calibration method (int8)
  int64_t calibration_samples = 0;
  std::map<std::string, int> quantized_ops;    // op type -> nodes converted
  std::map<std::string, int> unquantized_ops;  // float ops left FP32
  std::vector<std::string> unquantized_nodes;  // "name (Op): reason"
  int fused_activations = 0;                   // Relu/Clip folded into the preceding quantiser
  int64_t opset = 0;
  std::map<std::string, Range> ranges;  // calibrated activation ranges
  // FP32 vs converted model on the first calibration windows, per output.
  struct OutputCheck {
    std::string name;
    double max_abs_diff = 0;
    double mean_abs_diff = 0;
    double fp32_max_abs = 0;
  };
  int64_t check_samples = 0;
  std::vector<OutputCheck> checks;

  // The `tend.quantization` metadata value: method, calibration count, op lists.
  nlohmann::json ToJson() const;
};

struct ConvertedModel {
  std::string bytes;  // serialized ModelProto
  QuantizeReport report;
};

// Op types the INT8 quantiser can convert, and the subset it converts by default (all but Mul,
// Sigmoid and LeakyRelu).
const std::set<std::string>& SupportedOpTypes();
const std::set<std::string>& DefaultOpTypes();

// Static INT8 quantisation of the model at `model_path`, calibrated on `calibration` (shape
// [N, ...input dims...], matching the model's single float input). Errors: empty or too-small
// calibration set, data of the wrong shape, models with no or several float inputs, models
// ONNX Runtime cannot run. Every metadata_prop is kept; tend.precision and tend.quantization are
// added.
Result<ConvertedModel> QuantizeInt8(const std::string& model_path, const NpyArray& calibration,
                                    const QuantizeOptions& options);

struct Fp16Options {
  // Op types kept in FP32 (with casts around them) on top of the built-in list of ops that have
  // no float16 version or need float precision.
  std::set<std::string> keep_fp32_ops;
  // Optional windows for the FP32-vs-FP16 check in the report (may be empty).
  const NpyArray* check_data = nullptr;
  int threads = 1;
};

// Float16 weights and activations; graph inputs and outputs stay float32 (Cast at the edges).
Result<ConvertedModel> ConvertFp16(const std::string& model_path, const Fp16Options& options);

// TensorRT's native calibration-cache format ("TRT-...-EntropyCalibration2" then one
// "tensor: <hex float32 scale>" line per tensor; scale = max|range| / 127). ONNX Runtime's
// TensorRT provider reads it with trt_int8_use_native_calibration_table=1.
std::string TensorRtCalibrationTable(const std::map<std::string, Range>& ranges);

}  // namespace tend::optimize
