// ONNX protobuf helpers shared by the quantiser and the float16 converter: loading with clear
// errors, type inference, constant lookup, and small builders for the nodes and initializers the
// rewrites add. Works on Debian's libonnx (onnx::ModelProto).
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <map>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace tend::optimize {

// Third-party exception text as one line of at most max_chars (newlines become spaces, the rest
// is cut with "...").
std::string OneLine(std::string s, size_t max_chars);

// Parses a serialized ModelProto; `name` (usually the path) goes into error messages.
Result<onnx::ModelProto> ParseModel(const std::string& bytes, const std::string& name);
// Reads and parses; errors for a missing file, a file that is not ONNX, no graph, external data.
Result<onnx::ModelProto> LoadModel(const std::string& path);
Result<std::string> SerializeModel(const onnx::ModelProto& model, const std::string& name);

// Opset of the default ("" / "ai.onnx") domain; 0 if the model imports none.
int64_t DefaultOpset(const onnx::ModelProto& model);
// Converts the model to `target` opset with ONNX's version converter when it is older.
Status UpgradeOpset(onnx::ModelProto& model, int64_t target, const std::string& name);

// Removes Identity nodes that only forward an initializer (PyTorch's exporter emits them for
// shared or de-duplicated weights) so that consumers see the constant itself. Returns how many.
int FoldConstantIdentities(onnx::ModelProto& model);

// Element types of every tensor ONNX shape inference can type (graph inputs, outputs,
// initializers, node outputs of the top-level graph). Tensors it cannot type are absent.
std::map<std::string, int32_t> InferElemTypes(const onnx::ModelProto& model);

// Tensor names read anywhere inside If/Loop/Scan subgraphs (outer-scope captures included).
std::set<std::string> SubgraphInputs(const onnx::GraphProto& graph);

// Float contents of a FLOAT TensorProto (raw_data or float_data).
Result<std::vector<float>> FloatData(const onnx::TensorProto& t);
// Float16 bit patterns <-> float, round to nearest even; out-of-range values saturate to
// +-65504 (a weight that large is a bug elsewhere, an infinity would poison the model).
uint16_t FloatToHalf(float f);
float HalfToFloat(uint16_t h);

// Initializer builders. Names must be unique; the caller guarantees it.
onnx::TensorProto MakeFloatTensor(const std::string& name, std::span<const int64_t> dims,
                                  std::span<const float> values);
onnx::TensorProto MakeInt8Tensor(const std::string& name, std::span<const int64_t> dims,
                                 std::span<const int8_t> values);
onnx::TensorProto MakeUInt8Tensor(const std::string& name, std::span<const int64_t> dims,
                                  std::span<const uint8_t> values);
onnx::TensorProto MakeInt32Tensor(const std::string& name, std::span<const int64_t> dims,
                                  std::span<const int32_t> values);

onnx::NodeProto MakeNode(const std::string& op_type, const std::vector<std::string>& inputs,
                         const std::vector<std::string>& outputs, const std::string& name);
void SetIntAttr(onnx::NodeProto& node, const std::string& name, int64_t value);
// Attribute lookups with defaults.
int64_t GetIntAttr(const onnx::NodeProto& node, const std::string& name, int64_t def);
float GetFloatAttr(const onnx::NodeProto& node, const std::string& name, float def);
bool HasAttr(const onnx::NodeProto& node, const std::string& name);

// Generates tensor/node names that collide with nothing already in the graph.
class NameGenerator {
 public:
  explicit NameGenerator(const onnx::GraphProto& graph);
  std::string Make(const std::string& base);

 private:
  std::set<std::string> used_;
};

}  // namespace tend::optimize
