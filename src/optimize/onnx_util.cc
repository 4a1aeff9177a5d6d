#include "optimize/onnx_util.h"

#include <onnx/shape_inference/implementation.h>
#include <onnx/version_converter/convert.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <exception>

#include "core/fs.h"

namespace tend::optimize {

std::string OneLine(std::string s, size_t max_chars) {
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  if (s.size() > max_chars) s = s.substr(0, max_chars > 3 ? max_chars - 3 : 0) + "...";
  return s;
}

namespace {

void CollectTypes(const onnx::ValueInfoProto& vi, std::map<std::string, int32_t>& out) {
  if (vi.has_type() && vi.type().has_tensor_type() && vi.type().tensor_type().elem_type() != 0) {
    out[vi.name()] = vi.type().tensor_type().elem_type();
  }
}

void CollectSubgraphInputs(const onnx::GraphProto& g, std::set<std::string>& out) {
  for (const auto& node : g.node()) {
    for (const auto& a : node.attribute()) {
      auto visit = [&](const onnx::GraphProto& sub) {
        for (const auto& n : sub.node()) {
          for (const auto& in : n.input()) out.insert(in);
        }
        for (const auto& o : sub.output()) out.insert(o.name());
        CollectSubgraphInputs(sub, out);
      };
      if (a.has_g()) visit(a.g());
      for (const auto& sub : a.graphs()) visit(sub);
    }
  }
}

}  // namespace

Result<onnx::ModelProto> ParseModel(const std::string& bytes, const std::string& name) {
  onnx::ModelProto model;
  if (bytes.empty()) return Fail(Error::Invalid(name + ": empty file, not an ONNX model"));
  if (!model.ParseFromString(bytes)) {
    return Fail(Error::Invalid(name + ": not an ONNX model (protobuf parse failed)"));
  }
  if (!model.has_graph() || model.graph().node_size() == 0) {
    return Fail(Error::Invalid(name + ": not an ONNX model (no graph nodes)"));
  }
  for (const auto& t : model.graph().initializer()) {
    if (t.data_location() == onnx::TensorProto::EXTERNAL) {
      return Fail(Error::Unsupported(name + ": initializer '" + t.name() +
                                     "' uses external data; not supported (save the model as "
                                     "one file)"));
    }
  }
  return model;
}

Result<onnx::ModelProto> LoadModel(const std::string& path) {
  TEND_ASSIGN_OR_RETURN(std::string bytes, fs::ReadFile(path));
  return ParseModel(bytes, path);
}

Result<std::string> SerializeModel(const onnx::ModelProto& model, const std::string& name) {
  std::string out;
  if (!model.SerializeToString(&out)) {
    return Fail(Error::Internal(name + ": cannot serialize the model (over 2 GiB?)"));
  }
  return out;
}

int64_t DefaultOpset(const onnx::ModelProto& model) {
  for (const auto& op : model.opset_import()) {
    if (op.domain().empty() || op.domain() == "ai.onnx") return op.version();
  }
  return 0;
}

Status UpgradeOpset(onnx::ModelProto& model, int64_t target, const std::string& name) {
  const int64_t have = DefaultOpset(model);
  if (have == 0) return Fail(Error::Invalid(name + ": model imports no default ONNX opset"));
  if (have >= target) return Ok();
  try {
    onnx::ModelProto converted =
        onnx::version_conversion::ConvertVersion(model, static_cast<int>(target));
    model = std::move(converted);
  } catch (const std::exception& e) {
    return Fail(Error::Unsupported(
        name + ": opset " + std::to_string(have) + " could not be converted to opset " +
        std::to_string(target) + " (" + OneLine(e.what(), 300) +
        "); re-export the model with opset >= " + std::to_string(target)));
  }
  return Ok();
}

int FoldConstantIdentities(onnx::ModelProto& model) {
  auto* g = model.mutable_graph();
  std::set<std::string> inits, inputs, outputs;
  for (const auto& t : g->initializer()) inits.insert(t.name());
  for (const auto& vi : g->input()) inputs.insert(vi.name());
  for (const auto& vi : g->output()) outputs.insert(vi.name());
  const std::set<std::string> sub = SubgraphInputs(*g);
  std::map<std::string, std::string> alias;
  auto* nodes = g->mutable_node();
  for (int i = nodes->size() - 1; i >= 0; --i) {
    const auto& n = nodes->Get(i);
    if (n.op_type() != "Identity" || !(n.domain().empty() || n.domain() == "ai.onnx") ||
        n.input_size() != 1 || n.output_size() != 1) {
      continue;
    }
    const std::string& in = n.input(0);
    const std::string& out = n.output(0);
    if (!inits.count(in) || inputs.count(in) || outputs.count(out) || sub.count(out)) continue;
    alias[out] = in;
    nodes->DeleteSubrange(i, 1);
  }
  if (alias.empty()) return 0;
  for (auto& n : *nodes) {
    for (int k = 0; k < n.input_size(); ++k) {
      auto it = alias.find(n.input(k));
      if (it != alias.end()) n.set_input(k, it->second);
    }
  }
  return static_cast<int>(alias.size());
}

std::map<std::string, int32_t> InferElemTypes(const onnx::ModelProto& model) {
  std::map<std::string, int32_t> types;
  onnx::ModelProto copy = model;
  try {
    onnx::ShapeInferenceOptions opts(/*check_type=*/false, /*strict=*/0, /*data_prop=*/false);
    onnx::shape_inference::InferShapes(copy, onnx::OpSchemaRegistry::Instance(), opts);
  } catch (const std::exception&) {
    // Partial information is still useful: tensors left untyped are simply not rewritten.
  }
  const auto& g = copy.graph();
  for (const auto& vi : g.input()) CollectTypes(vi, types);
  for (const auto& vi : g.output()) CollectTypes(vi, types);
  for (const auto& vi : g.value_info()) CollectTypes(vi, types);
  for (const auto& t : g.initializer()) types[t.name()] = t.data_type();
  for (const auto& n : g.node()) {
    if (n.op_type() == "Constant" && n.output_size() == 1) {
      for (const auto& a : n.attribute()) {
        if (a.name() == "value" && a.has_t()) types[n.output(0)] = a.t().data_type();
      }
    }
  }
  return types;
}

std::set<std::string> SubgraphInputs(const onnx::GraphProto& graph) {
  std::set<std::string> out;
  CollectSubgraphInputs(graph, out);
  return out;
}

Result<std::vector<float>> FloatData(const onnx::TensorProto& t) {
  if (t.data_type() != onnx::TensorProto::FLOAT) {
    return Fail(Error::Internal("tensor '" + t.name() + "' is not float"));
  }
  size_t n = 1;
  for (int64_t d : t.dims()) n *= static_cast<size_t>(d);
  std::vector<float> v(n);
  if (t.has_raw_data()) {
    if (t.raw_data().size() != n * 4) {
      return Fail(Error::Corrupt("tensor '" + t.name() + "': raw data has " +
                                 std::to_string(t.raw_data().size()) + " bytes, expected " +
                                 std::to_string(n * 4)));
    }
    std::memcpy(v.data(), t.raw_data().data(), n * 4);
  } else {
    if (static_cast<size_t>(t.float_data_size()) != n) {
      return Fail(Error::Corrupt("tensor '" + t.name() + "': has " +
                                 std::to_string(t.float_data_size()) + " values, expected " +
                                 std::to_string(n)));
    }
    for (size_t i = 0; i < n; ++i) v[i] = t.float_data(static_cast<int>(i));
  }
  return v;
}

uint16_t FloatToHalf(float f) {
  if (std::isnan(f)) return 0x7e00;
  if (f > 65504.0f) f = 65504.0f;
  if (f < -65504.0f) f = -65504.0f;
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const int32_t exp = static_cast<int32_t>((x >> 23) & 0xff) - 127 + 15;
  uint32_t mant = x & 0x7fffffu;
  if (exp <= 0) {
    // Subnormal half (or zero): shift the implicit 1 in and round to nearest even.
    if (exp < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000u;
    const uint32_t shift = static_cast<uint32_t>(14 - exp);
    uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;  // may carry into the exponent
  if (half >= 0x7c00u) half = 0x7bffu;  // saturate instead of rounding up to infinity
  return static_cast<uint16_t>(sign | half);
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = (static_cast<uint32_t>(h) & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    const float v = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -v : v;
  }
  if (exp == 31) {
    return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  }
  return std::bit_cast<float>(sign | ((exp - 15 + 127) << 23) | (mant << 13));
}

namespace {
template <typename T>
onnx::TensorProto MakeRaw(const std::string& name, std::span<const int64_t> dims,
                          std::span<const T> values, int32_t type) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(type);
  for (int64_t d : dims) t.add_dims(d);
  t.set_raw_data(
      std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T)));
  return t;
}
}  // namespace

onnx::TensorProto MakeFloatTensor(const std::string& name, std::span<const int64_t> dims,
                                  std::span<const float> values) {
  return MakeRaw(name, dims, values, onnx::TensorProto::FLOAT);
}
onnx::TensorProto MakeInt8Tensor(const std::string& name, std::span<const int64_t> dims,
                                 std::span<const int8_t> values) {
  return MakeRaw(name, dims, values, onnx::TensorProto::INT8);
}
onnx::TensorProto MakeUInt8Tensor(const std::string& name, std::span<const int64_t> dims,
                                  std::span<const uint8_t> values) {
  return MakeRaw(name, dims, values, onnx::TensorProto::UINT8);
}
onnx::TensorProto MakeInt32Tensor(const std::string& name, std::span<const int64_t> dims,
                                  std::span<const int32_t> values) {
  return MakeRaw(name, dims, values, onnx::TensorProto::INT32);
}

onnx::NodeProto MakeNode(const std::string& op_type, const std::vector<std::string>& inputs,
                         const std::vector<std::string>& outputs, const std::string& name) {
  onnx::NodeProto n;
  n.set_op_type(op_type);
  n.set_name(name);
  for (const auto& i : inputs) n.add_input(i);
  for (const auto& o : outputs) n.add_output(o);
  return n;
}

void SetIntAttr(onnx::NodeProto& node, const std::string& name, int64_t value) {
  for (auto& a : *node.mutable_attribute()) {
    if (a.name() == name) {
      a.set_i(value);
      return;
    }
  }
  auto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(value);
}

int64_t GetIntAttr(const onnx::NodeProto& node, const std::string& name, int64_t def) {
  for (const auto& a : node.attribute()) {
    if (a.name() == name) return a.i();
  }
  return def;
}

float GetFloatAttr(const onnx::NodeProto& node, const std::string& name, float def) {
  for (const auto& a : node.attribute()) {
    if (a.name() == name) return a.f();
  }
  return def;
}

bool HasAttr(const onnx::NodeProto& node, const std::string& name) {
  for (const auto& a : node.attribute()) {
    if (a.name() == name) return true;
  }
  return false;
}

NameGenerator::NameGenerator(const onnx::GraphProto& graph) {
  for (const auto& vi : graph.input()) used_.insert(vi.name());
  for (const auto& vi : graph.output()) used_.insert(vi.name());
  for (const auto& vi : graph.value_info()) used_.insert(vi.name());
  for (const auto& t : graph.initializer()) used_.insert(t.name());
  for (const auto& n : graph.node()) {
    used_.insert(n.name());
    for (const auto& o : n.output()) used_.insert(o);
    for (const auto& i : n.input()) used_.insert(i);
  }
  for (const auto& s : SubgraphInputs(graph)) used_.insert(s);
}

std::string NameGenerator::Make(const std::string& base) {
  std::string name = base;
  for (int i = 1; used_.count(name); ++i) name = base + "_" + std::to_string(i);
  used_.insert(name);
  return name;
}

}  // namespace tend::optimize
