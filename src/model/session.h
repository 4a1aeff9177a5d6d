// ONNX Runtime inference session for one model: picks the fastest available execution provider
// (TensorRT → CUDA → OpenVINO → CPU), introspects inputs/outputs, and runs on buffers that are
// allocated once in Prepare() so the per-window path allocates nothing on our side.
// ONNX Runtime's C++ API throws; nothing escapes this module except Error values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace tend::model {

enum class ElementType {
  kFloat,
  kFloat16,
  kDouble,
  kInt8,
  kUInt8,
  kInt32,
  kInt64,
  kBool,
  kString,
  kOther
};

// "float32", "int64", ...: the spelling used in error messages.
const char* ElementTypeName(ElementType type);
// Bytes per element; 0 for kString and kOther.
size_t ElementSize(ElementType type);

struct TensorInfo {
  std::string name;
  ElementType type = ElementType::kOther;
  std::vector<int64_t> shape;  // -1 = dynamic
  // Symbolic names of dynamic dims ("batch"); empty string where the dim is static or unnamed.
  std::vector<std::string> dim_names;

  // "x: float32 [batch,60,14]"
  std::string ToString() const;
};

// "[1,60,14]"; -1 prints as "?".
std::string ShapeToString(std::span<const int64_t> shape);
// Parses "1x60x14" (also "1,60,14"); every dim must be a positive integer.
Result<std::vector<int64_t>> ParseShape(const std::string& text);

struct SessionOptions {
  // Preference order; unavailable ones are skipped (logged at debug). Names: "tensorrt", "cuda",
  // "openvino", "cpu" (ONNX Runtime's own names such as "CUDAExecutionProvider" work too). CPU
  // is always the last resort for nodes no other provider takes.
  std::vector<std::string> providers = {"tensorrt", "cuda", "openvino", "cpu"};
  int intra_op_threads = 1;  // 0 = ONNX Runtime's default (one per core)
  int inter_op_threads = 1;
  bool sequential = true;
  int cuda_device = 0;
  std::string trt_engine_cache_dir;  // "" = <state_dir>/trt-cache if state_dir set, else no cache
  bool trt_fp16 = false, trt_int8 = false;
  std::string trt_int8_calibration_table;  // file name inside the engine cache directory
  std::string state_dir;
};

// ONNX Runtime's GetAvailableProviders(), e.g. {"CPUExecutionProvider"}: what this build of the
// library can use, not whether the hardware is present.
std::vector<std::string> AvailableProviders();

// Maps "cuda" / "CUDAExecutionProvider" (any case) to ONNX Runtime's name; error for others.
Result<std::string> CanonicalProviderName(const std::string& name);

class Session {
 public:
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  static Result<std::unique_ptr<Session>> LoadFile(const std::string& path,
                                                   const SessionOptions& options = {});
  static Result<std::unique_ptr<Session>> LoadBytes(std::span<const uint8_t> bytes,
                                                    const SessionOptions& options = {},
                                                    std::string name = "<memory>");

  const std::string& name() const { return name_; }  // the path, or the name given to LoadBytes
  const std::vector<TensorInfo>& inputs() const { return inputs_; }
  const std::vector<TensorInfo>& outputs() const { return outputs_; }
  // The provider actually used, e.g. "CPUExecutionProvider".
  const std::string& provider() const { return provider_; }
  // The model's custom metadata_props verbatim, plus what the file says about itself under
  // "onnx.*" keys (where set): onnx.producer_name, onnx.producer_version, onnx.ir_version,
  // onnx.opset (default domain), onnx.graph_name, onnx.domain, onnx.model_version,
  // onnx.doc_string.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Fixes dynamic dims and preallocates input/output buffers so Run() allocates nothing.
  // One shape per input, in inputs() order; an empty vector means the model's shapes with every
  // dynamic dim set to 1. Validates rank and static dims against the model ("input 'x' expects
  // rank 3 [1,60,14], got rank 2 [1,14]"). Only float inputs are supported. Output shapes come
  // from the model when static, otherwise from one run on the (zero-filled) inputs.
  // May be called again to change shapes; spans from earlier calls are invalidated.
  Status Prepare(const std::vector<std::vector<int64_t>>& input_shapes = {});
  bool prepared() const { return prepared_; }

  // Valid after Prepare(). Input buffers start zero-filled; write them before Run().
  std::span<float> input(size_t i);
  // Float outputs only (asserts otherwise); output_bytes() serves any fixed-size element type.
  std::span<const float> output(size_t i) const;
  std::span<const std::byte> output_bytes(size_t i) const;
  const std::vector<int64_t>& input_shape(size_t i) const;
  const std::vector<int64_t>& output_shape(size_t i) const;

  // Runs the model on the prepared buffers. Not thread-safe: one caller at a time.
  Status Run();
  // `runs` calls of Run() whose results are discarded (first runs pay for allocations, CUDA
  // context, TensorRT engine builds). Requires Prepare().
  Status Warmup(int runs);

 private:
  struct Impl;
  explicit Session(std::unique_ptr<Impl> impl);
  static Result<std::unique_ptr<Session>> Create(std::span<const uint8_t> bytes,
                                                 const std::string& path, std::string name,
                                                 const SessionOptions& options);
  Status ReadIo();

  std::unique_ptr<Impl> impl_;
  std::string name_;
  std::string provider_;
  std::vector<TensorInfo> inputs_;
  std::vector<TensorInfo> outputs_;
  std::map<std::string, std::string> metadata_;
  bool prepared_ = false;
};

}  // namespace tend::model
