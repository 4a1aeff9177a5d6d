#include "optimize/quantize.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <memory>
#include <optional>

#include "core/log.h"
#include "optimize/onnx_util.h"
#include "optimize/ort_runner.h"

namespace tend::optimize {

namespace {

// What the quantiser does with a node.
enum class Kind {
  kNone,         // stays FP32
  kConv,         // DQ(x), DQ(int8 W per channel), DQ(int32 bias) -> Conv -> Q
  kMatMulConst,  // DQ(x), DQ(int8 B per column) -> MatMul -> Q
  kGemm,         // DQ(a), DQ(int8 B), DQ(int32 C) -> Gemm -> Q
  kActivations,  // every float input through DQ, output through Q (Add, Mul, pools, ...)
  kPassThrough,  // data movement: output shares the input's scale, ORT drops the Q/DQ pair
  kFused,        // Relu/Clip folded into the producer's output quantiser
};

const std::set<std::string>& PassThroughOps() {
  static const std::set<std::string> ops = {"Reshape", "Flatten",   "Transpose",
                                            "Squeeze", "Unsqueeze", "MaxPool"};
  return ops;
}

const std::set<std::string>& ActivationOps() {
  static const std::set<std::string> ops = {
      "Add", "Mul", "AveragePool", "GlobalAveragePool", "Sigmoid", "LeakyRelu", "Concat"};
  return ops;
}

struct Graph {
  std::map<std::string, int32_t> types;
  std::map<std::string, const onnx::TensorProto*> consts;
  std::map<std::string, int> producer;
  std::map<std::string, std::vector<int>> consumers;
  std::set<std::string> graph_inputs, graph_outputs, subgraph_refs;

  bool IsFloat(const std::string& t) const {
    auto it = types.find(t);
    return it != types.end() && it->second == onnx::TensorProto::FLOAT;
  }
  const onnx::TensorProto* Const(const std::string& t) const {
    auto it = consts.find(t);
    return it == consts.end() ? nullptr : it->second;
  }
};

Graph Analyse(const onnx::ModelProto& model) {
  Graph g;
  const auto& graph = model.graph();
  g.types = InferElemTypes(model);
  for (const auto& vi : graph.input()) g.graph_inputs.insert(vi.name());
  for (const auto& vi : graph.output()) g.graph_outputs.insert(vi.name());
  for (const auto& t : graph.initializer()) {
    // An initializer that is also a graph input is only a default: not a constant.
    if (!g.graph_inputs.count(t.name())) g.consts[t.name()] = &t;
  }
  for (int i = 0; i < graph.node_size(); ++i) {
    const auto& n = graph.node(i);
    if (n.op_type() == "Constant" && n.output_size() == 1) {
      for (const auto& a : n.attribute()) {
        if (a.name() == "value" && a.has_t()) g.consts[n.output(0)] = &a.t();
      }
    }
    for (const auto& o : n.output()) {
      if (!o.empty()) g.producer[o] = i;
    }
    for (const auto& in : n.input()) {
      if (in.empty()) continue;
      auto& c = g.consumers[in];
      if (c.empty() || c.back() != i) c.push_back(i);
    }
  }
  g.subgraph_refs = SubgraphInputs(graph);
  return g;
}

int64_t NumElements(const onnx::TensorProto& t) {
  int64_t n = 1;
  for (int64_t d : t.dims()) n *= d;
  return n;
}

struct Plan {
  std::vector<Kind> kind;
  std::vector<std::string> reason;             // for kNone nodes that touch float tensors
  std::map<int, int> fused_into;               // Relu/Clip node -> producer node
  std::map<std::string, float> clip_max;       // fused output tensor -> Clip max
  std::set<std::string> qdq;                   // activation tensors that get Q -> DQ
  std::map<std::string, std::string> same_as;  // pass-through output -> input tensor
  std::set<std::string> const_activations;     // constant inputs quantised like activations
};

// Nodes that compute float data: the ones worth quantising, and the ones listed when they stay
// FP32 (Shape or Cast-to-int on a float tensor compute nothing in float).
bool TouchesFloat(const onnx::NodeProto& n, const Graph& g) {
  for (const auto& t : n.output()) {
    if (!t.empty() && g.IsFloat(t)) return true;
  }
  return false;
}

// Scalar value of a constant float tensor, if it is one.
std::optional<float> ScalarConst(const Graph& g, const std::string& name) {
  const auto* t = g.Const(name);
  if (!t || t->data_type() != onnx::TensorProto::FLOAT || NumElements(*t) != 1) return std::nullopt;
  auto v = FloatData(*t);
  if (!v) return std::nullopt;
  return (*v)[0];
}

// The output tensor name a quantised node ends up writing (the fused activation's output when
// a Relu/Clip was folded into it).
std::string FinalOutput(const onnx::ModelProto& model, const Plan& plan, int node) {
  for (const auto& [act, prod] : plan.fused_into) {
    if (prod == node) return model.graph().node(act).output(0);
  }
  return model.graph().node(node).output(0);
}

bool IsQuantised(Kind k) { return k != Kind::kNone; }

// One pass in topological order: every decision depends only on producers, which come first.
// The kind of a float compute node (Conv, MatMul, Gemm, elementwise ops and pools) whose inputs
// and output are float; kNone with the reason when it stays FP32.
Kind ClassifyCompute(const onnx::NodeProto& node, const Graph& g, bool output_is_graph_output,
                     const std::function<bool(const std::string&)>& from_quantised,
                     std::string* why) {
  const std::string& op = node.op_type();
  const std::string& in0 = node.input(0);
  auto const_float = [&](const std::string& t) {
    const auto* c = g.Const(t);
    return c && c->data_type() == onnx::TensorProto::FLOAT ? c : nullptr;
  };
  if (op == "Conv") {
    const auto* w = node.input_size() > 1 ? const_float(node.input(1)) : nullptr;
    if (!w || w->dims_size() < 3 || const_float(in0)) {
      *why = "weight is not a constant";
      return Kind::kNone;
    }
    if (node.input_size() > 2 && !node.input(2).empty()) {
      const auto* b = const_float(node.input(2));
      if (!b || NumElements(*b) != w->dims(0)) {
        *why = "bias is not a constant of size M";
        return Kind::kNone;
      }
    }
    return Kind::kConv;
  }
  if (op == "MatMul") {
    const auto* b = const_float(node.input(1));
    return b && b->dims_size() == 2 && !const_float(in0) ? Kind::kMatMulConst : Kind::kActivations;
  }
  if (op == "Gemm") {
    const auto* b = node.input_size() > 1 ? const_float(node.input(1)) : nullptr;
    if (!b || b->dims_size() != 2 || const_float(in0)) {
      *why = "B is not a constant matrix";
      return Kind::kNone;
    }
    const int64_t cols = GetIntAttr(node, "transB", 0) ? b->dims(0) : b->dims(1);
    if (node.input_size() > 2 && !node.input(2).empty()) {
      const auto* c = const_float(node.input(2));
      const bool vector_c = c && NumElements(*c) == cols &&
                            (c->dims_size() == 1 || (c->dims_size() == 2 && c->dims(0) == 1));
      if (!vector_c || GetFloatAttr(node, "beta", 1.0f) != 1.0f) {
        *why = "bias C is not a constant [N] vector with beta = 1";
        return Kind::kNone;
      }
    }
    return Kind::kGemm;
  }
  // Elementwise ops and pools are cheap: worth it only inside an integer chain, where
  // quantising them saves a dequantise/quantise round trip.
  if (output_is_graph_output) {
    *why = "output '" + node.output(0) + "' is a graph output (kept FP32)";
    return Kind::kNone;
  }
  for (const auto& in : node.input()) {
    if (!in.empty() && !g.Const(in) && !from_quantised(in)) {
      *why = "inputs are not produced by quantised ops (nothing to gain)";
      return Kind::kNone;
    }
  }
  return Kind::kActivations;
}

// Activation tensors that get a Q/DQ pair once every node's kind is known: inputs of quantised
// nodes, and their outputs.
void MarkQdqTensors(const onnx::ModelProto& model, const Graph& g, Plan& p) {
  const auto& graph = model.graph();
  const int n = graph.node_size();
  auto kind_of = [&](int i) { return p.kind[static_cast<size_t>(i)]; };
  auto add_input = [&](const std::string& t) {
    if (t.empty()) return;
    if (g.Const(t)) {
      p.const_activations.insert(t);
    } else {
      p.qdq.insert(t);
    }
  };
  for (int i = 0; i < n; ++i) {
    const auto& node = graph.node(i);
    const Kind k = kind_of(i);
    switch (k) {
      case Kind::kConv:
      case Kind::kMatMulConst:
      case Kind::kGemm:
        p.qdq.insert(node.input(0));
        break;
      case Kind::kActivations:
        if (node.op_type() == "Clip") {
          add_input(node.input(0));  // min and max stay float constants
        } else {
          for (const auto& in : node.input()) add_input(in);
        }
        break;
      case Kind::kPassThrough:
        p.qdq.insert(node.input(0));
        break;
      default:
        continue;
    }
    const std::string out = FinalOutput(model, p, i);
    if (g.graph_outputs.count(out)) continue;
    // MatMul and Gemm also run as integer kernels with a float output (MatMulIntegerToFloat,
    // QGemm): without a quantised consumer, re-quantising their output only adds error.
    bool fused = false;
    for (const auto& [act, prod] : p.fused_into) fused |= prod == i;
    if ((k == Kind::kMatMulConst || k == Kind::kGemm) && !fused) {
      bool quantised_consumer = false;
      auto c = g.consumers.find(node.output(0));
      if (c != g.consumers.end()) {
        for (int j : c->second) quantised_consumer |= IsQuantised(kind_of(j));
      }
      if (!quantised_consumer) continue;
    }
    p.qdq.insert(out);
  }
}

Plan MakePlan(const onnx::ModelProto& model, const Graph& g, const QuantizeOptions& opt) {
  const auto& graph = model.graph();
  const int n = graph.node_size();
  Plan p;
  p.kind.assign(static_cast<size_t>(n), Kind::kNone);
  p.reason.assign(static_cast<size_t>(n), "");
  auto skip = [&](int i, std::string why) { p.reason[static_cast<size_t>(i)] = std::move(why); };
  auto kind_of = [&](int i) -> Kind& { return p.kind[static_cast<size_t>(i)]; };
  const std::set<std::string>& allowed = opt.op_types.empty() ? DefaultOpTypes() : opt.op_types;
  // True when `t` comes out of a node that is being quantised (so it is already int8 there).
  auto from_quantised = [&](const std::string& t) {
    auto it = g.producer.find(t);
    return it != g.producer.end() && IsQuantised(kind_of(it->second));
  };

  for (int i = 0; i < n; ++i) {
    const auto& node = graph.node(i);
    const std::string& op = node.op_type();
    if (op == "Constant" || !TouchesFloat(node, g)) continue;
    if (!node.domain().empty() && node.domain() != "ai.onnx") {
      skip(i, "custom op domain '" + node.domain() + "'");
      continue;
    }
    if (!SupportedOpTypes().count(op)) {
      skip(i, "no INT8 conversion for this op");
      continue;
    }
    if (!allowed.count(op)) {
      skip(i, "op type not selected (add it with --ops)");
      continue;
    }
    if (opt.exclude_nodes.count(node.name())) {
      skip(i, "excluded by name");
      continue;
    }
    const std::string& in0 = node.input(0);
    const bool output_is_graph_output = g.graph_outputs.count(node.output(0)) > 0;

    if (op == "Relu" || op == "Clip") {
      if (!from_quantised(in0)) {
        skip(i, "input is not produced by a quantised op");
        continue;
      }
      if (opt.symmetric_activations) {
        // int8 with zero point 0 does not clamp negatives: the activation is a node of its own.
        if (output_is_graph_output) {
          skip(i, "output '" + node.output(0) + "' is a graph output (kept FP32)");
        } else {
          kind_of(i) = Kind::kActivations;
        }
        continue;
      }
      // Relu, and Clip with min 0, after a quantised op: the uint8 quantiser with zero point 0
      // clamps negatives already, so the activation folds into the producer's output range.
      const int producer = g.producer.at(in0);
      std::optional<float> clip_max;
      bool clip_ok = true;
      if (op == "Clip") {
        if (HasAttr(node, "min")) {  // opset < 11 form
          clip_ok = GetFloatAttr(node, "min", -1.0f) == 0.0f;
          if (HasAttr(node, "max")) clip_max = GetFloatAttr(node, "max", 0.0f);
        } else {
          auto mn = node.input_size() > 1 && !node.input(1).empty() ? ScalarConst(g, node.input(1))
                                                                    : std::nullopt;
          clip_ok = mn && *mn == 0.0f;
          if (node.input_size() > 2 && !node.input(2).empty()) {
            clip_max = ScalarConst(g, node.input(2));
            if (!clip_max) clip_ok = false;
          }
        }
      }
      const Kind pk = kind_of(producer);
      const bool fusable = clip_ok && pk != Kind::kPassThrough && pk != Kind::kFused &&
                           g.consumers.at(in0).size() == 1 && !g.graph_outputs.count(in0) &&
                           !g.subgraph_refs.count(in0) && !output_is_graph_output;
      if (!fusable) {
        skip(i, "cannot be folded into its producer (Clip min != 0, shared input or graph output)");
        continue;
      }
      kind_of(i) = Kind::kFused;
      p.fused_into[i] = producer;
      if (clip_max) p.clip_max[node.output(0)] = *clip_max;
      continue;
    }

    if (PassThroughOps().count(op)) {
      // Data movement after a quantised tensor stays quantised with the same parameters.
      if (!from_quantised(in0) || node.output_size() != 1 || output_is_graph_output ||
          !g.IsFloat(node.output(0))) {
        skip(i, "input is not quantised or output is a graph output");
        continue;
      }
      kind_of(i) = Kind::kPassThrough;
      std::string root = in0;
      while (p.same_as.count(root)) root = p.same_as.at(root);
      p.same_as[node.output(0)] = root;
      continue;
    }

    bool inputs_float = true;
    for (const auto& in : node.input()) {
      if (!in.empty() && !g.IsFloat(in)) inputs_float = false;
    }
    if (!inputs_float || node.output_size() != 1 || !g.IsFloat(node.output(0))) {
      skip(i, "inputs or output not float32 (or type unknown)");
      continue;
    }
    std::string why;
    const Kind k = ClassifyCompute(node, g, output_is_graph_output, from_quantised, &why);
    if (k == Kind::kNone) {
      skip(i, why);
      continue;
    }
    kind_of(i) = k;
  }

  MarkQdqTensors(model, g, p);
  return p;
}

// ---- calibration -----------------------------------------------------------------------------

struct CalibrationInput {
  std::vector<int64_t> row_shape;  // data shape without the sample axis
  int64_t batch = 1;               // windows per run
  int64_t runs = 0;
};

Result<CalibrationInput> CheckData(const OrtRunner& runner, const NpyArray& data,
                                   const std::string& data_name, const std::string& model_name) {
  if (runner.input_count() != 1 || !runner.input_is_float(0)) {
    return Fail(Error::Unsupported(model_name +
                                   ": quantisation needs a model with exactly one "
                                   "float32 input (this one has " +
                                   std::to_string(runner.input_count()) + " inputs)"));
  }
  const auto& ms = runner.input_shape(0);
  std::vector<int64_t> expected = ms;
  if (!expected.empty()) expected[0] = -1;
  bool ok = data.shape.size() == ms.size() && !ms.empty();
  for (size_t d = 1; ok && d < ms.size(); ++d) {
    if (ms[d] >= 0 && ms[d] != data.shape[d]) ok = false;
  }
  if (!ok) {
    std::string want = "[N";
    for (size_t d = 1; d < ms.size(); ++d) {
      want += "," + (ms[d] < 0 ? std::string("?") : std::to_string(ms[d]));
    }
    want += "]";
    return Fail(Error::Invalid(data_name + ": shape " + ShapeString(data.shape) +
                               " does not fit model input '" + runner.input_name(0) + "' " +
                               ShapeString(ms) + " (expected " + want + ")"));
  }
  CalibrationInput c;
  c.row_shape.assign(data.shape.begin() + 1, data.shape.end());
  return c;
}

class Calibrator {
 public:
  Calibrator(OrtRunner& runner, const NpyArray& data, int64_t samples, int64_t batch,
             const QuantizeOptions& opt)
      : runner_(runner), data_(data), samples_(samples), batch_(batch), opt_(opt) {}

  // Runs `samples_` windows through the model and hands every requested tensor to `observe`.
  Status Pass(const std::string& stage, const std::vector<std::string>& outputs,
              const std::set<std::string>& input_tensors,
              const std::function<void(const std::string&, std::span<const float>)>& observe) {
    const int64_t row = data_.row_size();
    std::vector<int64_t> shape = data_.shape;
    for (int64_t start = 0; start < samples_; start += batch_) {
      const int64_t b = std::min(batch_, samples_ - start);
      shape[0] = b;
      auto in = std::span<const float>(data_.data)
                    .subspan(static_cast<size_t>(start * row), static_cast<size_t>(b * row));
      for (const auto& t : input_tensors) observe(t, in);
      if (!outputs.empty()) {
        TEND_ASSIGN_OR_RETURN(auto result, runner_.Run(in, shape, outputs));
        for (const auto& t : result) observe(t.name, t.data);
      }
      if (opt_.progress) opt_.progress(stage, start + b, samples_);
    }
    return Ok();
  }

 private:
  OrtRunner& runner_;
  const NpyArray& data_;
  int64_t samples_, batch_;
  const QuantizeOptions& opt_;
};

// ---- rewriting ---------------------------------------------------------------------------------

struct WeightQuant {
  std::vector<int8_t> q;
  std::vector<float> scales;  // one per channel (or one)
};

// Symmetric int8 over `axis` of a tensor with `dims` (axis < 0: per tensor).
WeightQuant QuantizeWeight(const std::vector<float>& w, const std::vector<int64_t>& dims, int axis,
                           bool reduce_range) {
  const float qmax = reduce_range ? 63.0f : 127.0f;
  int64_t channels = 1, inner = 1;
  if (axis >= 0) {
    channels = dims[static_cast<size_t>(axis)];
    for (size_t d = static_cast<size_t>(axis) + 1; d < dims.size(); ++d) inner *= dims[d];
  }
  WeightQuant out;
  out.scales.assign(static_cast<size_t>(channels), 0.0f);
  out.q.resize(w.size());
  auto channel_of = [&](size_t idx) -> size_t {
    return axis < 0 ? 0 : static_cast<size_t>((static_cast<int64_t>(idx) / inner) % channels);
  };
  for (size_t i = 0; i < w.size(); ++i) {
    auto& s = out.scales[channel_of(i)];
    s = std::max(s, std::fabs(w[i]));
  }
  for (auto& s : out.scales) s = s > 0 ? s / qmax : 1.0f;
  for (size_t i = 0; i < w.size(); ++i) {
    const float v = std::round(w[i] / out.scales[channel_of(i)]);
    out.q[i] = static_cast<int8_t>(std::clamp(v, -qmax, qmax));
  }
  return out;
}

class Rewriter {
 public:
  Rewriter(onnx::ModelProto& model, const Graph& g, const Plan& plan,
           const std::map<std::string, Range>& ranges, const QuantizeOptions& opt)
      : model_(model), g_(g), plan_(plan), ranges_(ranges), opt_(opt), names_(model.graph()) {}

  Status Run() {
    auto* graph = model_.mutable_graph();
    std::vector<onnx::NodeProto> old(graph->node().begin(), graph->node().end());
    out_.clear();
    // Quantisers for graph inputs come first.
    for (const auto& vi : graph->input()) {
      if (plan_.qdq.count(vi.name())) TEND_RETURN_NOT_OK(EmitQuantize(vi.name()));
    }
    for (int i = 0; i < static_cast<int>(old.size()); ++i) {
      const Kind kind = plan_.kind[static_cast<size_t>(i)];
      if (kind == Kind::kFused) continue;
      onnx::NodeProto node = old[static_cast<size_t>(i)];
      // Fold a following Relu/Clip: this node now writes the activation's output.
      for (const auto& [act, prod] : plan_.fused_into) {
        if (prod == i) node.set_output(0, old[static_cast<size_t>(act)].output(0));
      }
      TEND_RETURN_NOT_OK(RewriteInputs(node, kind));
      out_.push_back(node);
      for (const auto& o : node.output()) {
        if (plan_.qdq.count(o)) TEND_RETURN_NOT_OK(EmitQuantize(o));
      }
    }
    graph->clear_node();
    for (auto& n : out_) *graph->add_node() = std::move(n);
    for (auto& t : new_inits_) *graph->add_initializer() = std::move(t);
    graph->clear_value_info();
    RemoveUnused();
    return Ok();
  }

 private:
  QuantParams Params(const std::string& t) {
    std::string root = t;
    while (plan_.same_as.count(root)) root = plan_.same_as.at(root);
    Range r{};
    auto it = ranges_.find(root);
    if (it != ranges_.end()) r = it->second;
    auto cm = plan_.clip_max.find(root);
    if (cm != plan_.clip_max.end()) r.max = std::min(r.max, cm->second);
    return opt_.symmetric_activations ? SymmetricInt8(r) : AsymmetricUInt8(r);
  }

  // scale and zero-point initializers of an activation tensor (shared by its Q and DQ nodes).
  std::pair<std::string, std::string> ParamNames(const std::string& t) {
    auto it = param_names_.find(t);
    if (it != param_names_.end()) return it->second;
    const QuantParams q = Params(t);
    const std::string s = names_.Make(t + "_scale");
    const std::string z = names_.Make(t + "_zero_point");
    const float scale = q.scale;
    new_inits_.push_back(MakeFloatTensor(s, {}, std::span<const float>(&scale, 1)));
    new_inits_.push_back(ZeroPoint(z, q.zero_point));
    return param_names_[t] = {s, z};
  }

  // Activation zero point: its type (uint8 or int8) is the quantised tensor's type.
  onnx::TensorProto ZeroPoint(const std::string& name, int32_t zp) const {
    if (opt_.symmetric_activations) {
      const int8_t z = 0;
      return MakeInt8Tensor(name, {}, std::span<const int8_t>(&z, 1));
    }
    const uint8_t z = static_cast<uint8_t>(zp);
    return MakeUInt8Tensor(name, {}, std::span<const uint8_t>(&z, 1));
  }

  Status EmitQuantize(const std::string& t) {
    auto [s, z] = ParamNames(t);
    const std::string q = names_.Make(t + "_quantized");
    out_.push_back(MakeNode("QuantizeLinear", {t, s, z}, {q}, names_.Make(t + "_QuantizeLinear")));
    quantized_[t] = q;
    return Ok();
  }

  std::string EmitDequantize(const std::string& t) {
    auto [s, z] = ParamNames(t);
    const std::string dq = names_.Make(t + "_dequantized");
    out_.push_back(MakeNode("DequantizeLinear", {quantized_.at(t), s, z}, {dq},
                            names_.Make(t + "_DequantizeLinear")));
    return dq;
  }

  // A constant input of an activation op (e.g. the bias of MatMul + Add) as uint8 + DQ.
  Result<std::string> ConstActivation(const std::string& name) {
    auto it = const_dq_.find(name);
    if (it != const_dq_.end()) return it->second;
    const auto* t = g_.Const(name);
    TEND_ASSIGN_OR_RETURN(auto v, FloatData(*t));
    Range r{0, 0};
    for (float x : v) {
      r.min = std::min(r.min, x);
      r.max = std::max(r.max, x);
    }
    const bool sym = opt_.symmetric_activations;
    const QuantParams qp = sym ? SymmetricInt8(r) : AsymmetricUInt8(r);
    const float lo = sym ? -127.0f : 0.0f, hi = sym ? 127.0f : 255.0f;
    std::vector<int64_t> dims(t->dims().begin(), t->dims().end());
    const std::string qn = names_.Make(name + "_quantized");
    const std::string sn = names_.Make(name + "_scale");
    const std::string zn = names_.Make(name + "_zero_point");
    if (sym) {
      std::vector<int8_t> q(v.size());
      for (size_t i = 0; i < v.size(); ++i) {
        q[i] = static_cast<int8_t>(std::clamp(std::round(v[i] / qp.scale), lo, hi));
      }
      new_inits_.push_back(MakeInt8Tensor(qn, dims, q));
    } else {
      std::vector<uint8_t> q(v.size());
      for (size_t i = 0; i < v.size(); ++i) {
        const float x = std::round(v[i] / qp.scale) + static_cast<float>(qp.zero_point);
        q[i] = static_cast<uint8_t>(std::clamp(x, lo, hi));
      }
      new_inits_.push_back(MakeUInt8Tensor(qn, dims, q));
    }
    new_inits_.push_back(MakeFloatTensor(sn, {}, std::span<const float>(&qp.scale, 1)));
    new_inits_.push_back(ZeroPoint(zn, qp.zero_point));
    const std::string dq = names_.Make(name + "_dequantized");
    out_.push_back(
        MakeNode("DequantizeLinear", {qn, sn, zn}, {dq}, names_.Make(name + "_DequantizeLinear")));
    return const_dq_[name] = dq;
  }

  // int8 weight + DequantizeLinear; returns the DQ output and the per-channel scales.
  Result<std::pair<std::string, std::vector<float>>> Weight(const std::string& name, int axis) {
    const auto* t = g_.Const(name);
    TEND_ASSIGN_OR_RETURN(auto v, FloatData(*t));
    std::vector<int64_t> dims(t->dims().begin(), t->dims().end());
    if (!opt_.per_channel) axis = -1;
    WeightQuant wq = QuantizeWeight(v, dims, axis, opt_.reduce_range);
    const std::string qn = names_.Make(name + "_quantized");
    const std::string sn = names_.Make(name + "_scale");
    const std::string zn = names_.Make(name + "_zero_point");
    std::vector<int8_t> zeros(wq.scales.size(), 0);
    std::vector<int64_t> sdims;
    if (axis >= 0) sdims.push_back(static_cast<int64_t>(wq.scales.size()));
    new_inits_.push_back(MakeInt8Tensor(qn, dims, wq.q));
    new_inits_.push_back(MakeFloatTensor(sn, sdims, wq.scales));
    new_inits_.push_back(MakeInt8Tensor(zn, sdims, zeros));
    const std::string dq = names_.Make(name + "_dequantized");
    auto node =
        MakeNode("DequantizeLinear", {qn, sn, zn}, {dq}, names_.Make(name + "_DequantizeLinear"));
    if (axis >= 0) SetIntAttr(node, "axis", axis);
    out_.push_back(std::move(node));
    return std::make_pair(dq, wq.scales);
  }

  // int32 bias with scale = input scale * weight scale (per channel), as integer kernels need.
  Result<std::string> Bias(const std::string& name, float input_scale,
                           const std::vector<float>& weight_scales) {
    const auto* t = g_.Const(name);
    TEND_ASSIGN_OR_RETURN(auto v, FloatData(*t));
    std::vector<float> scales(v.size());
    std::vector<int32_t> q(v.size());
    for (size_t c = 0; c < v.size(); ++c) {
      const float ws = weight_scales.size() == 1 ? weight_scales[0] : weight_scales[c];
      scales[c] = input_scale * ws;
      const double x = std::round(static_cast<double>(v[c]) / scales[c]);
      q[c] = static_cast<int32_t>(std::clamp(x, -2147483647.0, 2147483647.0));
    }
    const bool per_channel = weight_scales.size() > 1;
    const std::vector<int64_t> dims = {static_cast<int64_t>(v.size())};
    const std::string qn = names_.Make(name + "_quantized");
    const std::string sn = names_.Make(name + "_scale");
    new_inits_.push_back(MakeInt32Tensor(qn, dims, q));
    if (per_channel) {
      new_inits_.push_back(MakeFloatTensor(sn, dims, scales));
    } else {
      new_inits_.push_back(MakeFloatTensor(sn, {}, std::span<const float>(scales.data(), 1)));
    }
    const std::string dq = names_.Make(name + "_dequantized");
    auto node =
        MakeNode("DequantizeLinear", {qn, sn}, {dq}, names_.Make(name + "_DequantizeLinear"));
    if (per_channel) SetIntAttr(node, "axis", 0);
    out_.push_back(std::move(node));
    return dq;
  }

  Status RewriteInputs(onnx::NodeProto& node, Kind kind) {
    // Weighted ops: the constant operands.
    if (kind == Kind::kConv || kind == Kind::kMatMulConst || kind == Kind::kGemm) {
      int axis = 0;
      if (kind == Kind::kMatMulConst) axis = 1;
      if (kind == Kind::kGemm) axis = GetIntAttr(node, "transB", 0) ? 0 : 1;
      const std::string x = node.input(0);
      TEND_ASSIGN_OR_RETURN(auto w, Weight(node.input(1), axis));
      node.set_input(1, w.first);
      if (node.input_size() > 2 && !node.input(2).empty()) {
        TEND_ASSIGN_OR_RETURN(std::string b, Bias(node.input(2), Params(x).scale, w.second));
        node.set_input(2, b);
      }
    }
    // Activations read through a DequantizeLinear (one per consumer).
    std::map<std::string, std::string> dq_of;
    for (int k = 0; k < node.input_size(); ++k) {
      const std::string& in = node.input(k);
      if (in.empty()) continue;
      if (kind == Kind::kActivations && plan_.const_activations.count(in)) {
        TEND_ASSIGN_OR_RETURN(std::string dq, ConstActivation(in));
        node.set_input(k, dq);
        continue;
      }
      if (!plan_.qdq.count(in) || !quantized_.count(in)) continue;
      if (kind == Kind::kNone) {
        // An FP32 consumer reads the exact float value unless the producer is quantised (then
        // its output must feed the quantiser alone, or ONNX Runtime cannot fuse it) — a graph
        // output keeps its float value in any case.
        auto pit = g_.producer.find(in);
        const bool producer_quantised =
            pit != g_.producer.end() && plan_.kind[static_cast<size_t>(pit->second)] != Kind::kNone;
        if (!producer_quantised || g_.graph_outputs.count(in)) continue;
      }
      if (!dq_of.count(in)) dq_of[in] = EmitDequantize(in);
      node.set_input(k, dq_of[in]);
    }
    return Ok();
  }

  void RemoveUnused() {
    auto* graph = model_.mutable_graph();
    std::set<std::string> used = g_.subgraph_refs;
    for (const auto& n : graph->node()) {
      for (const auto& in : n.input()) used.insert(in);
    }
    for (const auto& o : graph->output()) used.insert(o.name());
    // Constant nodes whose value nobody reads any more (weights now stored as int8).
    auto* nodes = graph->mutable_node();
    for (int i = nodes->size() - 1; i >= 0; --i) {
      const auto& n = nodes->Get(i);
      if (n.op_type() == "Constant" && n.output_size() == 1 && !used.count(n.output(0))) {
        nodes->DeleteSubrange(i, 1);
      }
    }
    auto* inits = graph->mutable_initializer();
    std::set<std::string> removed;
    for (int i = inits->size() - 1; i >= 0; --i) {
      if (!used.count(inits->Get(i).name())) {
        removed.insert(inits->Get(i).name());
        inits->DeleteSubrange(i, 1);
      }
    }
    auto* inputs = graph->mutable_input();
    for (int i = inputs->size() - 1; i >= 0; --i) {
      if (removed.count(inputs->Get(i).name())) inputs->DeleteSubrange(i, 1);
    }
  }

  onnx::ModelProto& model_;
  const Graph& g_;
  const Plan& plan_;
  const std::map<std::string, Range>& ranges_;
  const QuantizeOptions& opt_;
  NameGenerator names_;
  std::vector<onnx::NodeProto> out_;
  std::vector<onnx::TensorProto> new_inits_;
  std::map<std::string, std::pair<std::string, std::string>> param_names_;
  std::map<std::string, std::string> quantized_;  // tensor -> its QuantizeLinear output
  std::map<std::string, std::string> const_dq_;
};

void SetMetadata(onnx::ModelProto& model, const std::string& key, const std::string& value) {
  for (auto& p : *model.mutable_metadata_props()) {
    if (p.key() == key) {
      p.set_value(value);
      return;
    }
  }
  auto* p = model.add_metadata_props();
  p->set_key(key);
  p->set_value(value);
}

}  // namespace

// ---- shared with fp16.cc -----------------------------------------------------------------------

// Runs FP32 and converted models on the first windows of `data` and fills report.checks.
Status CheckAgainstReference(const std::string& fp32_bytes, const std::string& converted_bytes,
                             const NpyArray& data, int64_t samples, int64_t batch, int threads,
                             const std::string& name, QuantizeReport& report) {
  OrtRunnerOptions ro;
  ro.threads = threads;
  ro.full_optimization = true;
  TEND_ASSIGN_OR_RETURN(auto ref, OrtRunner::Create(fp32_bytes, name, ro));
  TEND_ASSIGN_OR_RETURN(auto conv, OrtRunner::Create(converted_bytes, name + " (converted)", ro));
  samples = std::min(samples, data.rows());
  // A model with a fixed batch dimension runs whole batches of exactly that size.
  if (ref->input_count() == 1 && !ref->input_shape(0).empty() && ref->input_shape(0)[0] > 0) {
    batch = ref->input_shape(0)[0];
    samples = std::min(data.rows(), std::max(samples, batch));
    samples = (samples / batch) * batch;
  }
  const int64_t row = data.row_size();
  std::vector<int64_t> shape = data.shape;
  std::map<std::string, QuantizeReport::OutputCheck> acc;
  std::map<std::string, int64_t> counts;
  for (int64_t start = 0; start < samples; start += batch) {
    const int64_t b = std::min(batch, samples - start);
    shape[0] = b;
    auto in = std::span<const float>(data.data).subspan(static_cast<size_t>(start * row),
                                                        static_cast<size_t>(b * row));
    TEND_ASSIGN_OR_RETURN(auto r, ref->Run(in, shape));
    TEND_ASSIGN_OR_RETURN(auto c, conv->Run(in, shape, ref->output_names()));
    for (const auto& rt : r) {
      auto ct =
          std::find_if(c.begin(), c.end(), [&](const OrtTensor& t) { return t.name == rt.name; });
      if (ct == c.end() || ct->data.size() != rt.data.size()) {
        return Fail(Error::Model(name + ": converted model output '" + rt.name +
                                 "' differs in shape from the FP32 model"));
      }
      auto& a = acc[rt.name];
      a.name = rt.name;
      for (size_t k = 0; k < rt.data.size(); ++k) {
        const double d = std::fabs(static_cast<double>(rt.data[k]) - ct->data[k]);
        a.max_abs_diff = std::max(a.max_abs_diff, d);
        a.mean_abs_diff += d;
        a.fp32_max_abs = std::max(a.fp32_max_abs, std::fabs(static_cast<double>(rt.data[k])));
      }
      counts[rt.name] += static_cast<int64_t>(rt.data.size());
    }
  }
  report.check_samples = samples;
  report.checks.clear();
  for (auto& [n, a] : acc) {
    if (counts[n] > 0) a.mean_abs_diff /= static_cast<double>(counts[n]);
    report.checks.push_back(a);
  }
  return Ok();
}

// Keeps every metadata_prop and records the conversion.
void StampMetadata(onnx::ModelProto& model, const QuantizeReport& report) {
  // JSON text, like every other tend.* value of the model card.
  SetMetadata(model, "tend.precision", nlohmann::json(report.precision).dump());
  SetMetadata(model, "tend.quantization", report.ToJson().dump());
}

const std::set<std::string>& DefaultOpTypes() {
  static const std::set<std::string> ops = [] {
    std::set<std::string> s = SupportedOpTypes();
    // Opt-in (--ops): elementwise products and curved activations lose most in 8 bits and are
    // rarely where the time goes.
    for (const char* op : {"Mul", "Sigmoid", "LeakyRelu"}) s.erase(op);
    return s;
  }();
  return ops;
}

const std::set<std::string>& SupportedOpTypes() {
  static const std::set<std::string> ops = [] {
    std::set<std::string> s = {"Conv", "MatMul", "Gemm", "Relu", "Clip"};
    s.insert(ActivationOps().begin(), ActivationOps().end());
    s.insert(PassThroughOps().begin(), PassThroughOps().end());
    return s;
  }();
  return ops;
}

nlohmann::json QuantizeReport::ToJson() const {
  nlohmann::json j;
  j["precision"] = precision;
  if (!method.empty()) j["method"] = method;
  j["calibration_samples"] = calibration_samples;
  j["opset"] = opset;
  j["quantized_ops"] = quantized_ops;
  j["unquantized_ops"] = unquantized_ops;
  j["unquantized_nodes"] = unquantized_nodes;
  j["fused_activations"] = fused_activations;
  nlohmann::json checks = nlohmann::json::array();
  for (const auto& c : this->checks) {
    checks.push_back({{"output", c.name},
                      {"max_abs_diff", c.max_abs_diff},
                      {"mean_abs_diff", c.mean_abs_diff},
                      {"fp32_max_abs", c.fp32_max_abs}});
  }
  j["check"] = {{"samples", check_samples}, {"outputs", checks}};
  return j;
}

std::string TensorRtCalibrationTable(const std::map<std::string, Range>& ranges) {
  std::string out = "TRT-8601-EntropyCalibration2\n";
  for (const auto& [name, r] : ranges) {
    const float amax = std::max(std::fabs(r.min), std::fabs(r.max));
    const float scale = amax > 0 ? amax / 127.0f : 1.0f / 127.0f;
    char hex[16];
    std::snprintf(hex, sizeof hex, "%08x", std::bit_cast<uint32_t>(scale));
    out += name + ": " + hex + "\n";
  }
  return out;
}

Result<ConvertedModel> QuantizeInt8(const std::string& model_path, const NpyArray& calibration,
                                    const QuantizeOptions& opt) {
  TEND_ASSIGN_OR_RETURN(onnx::ModelProto model, LoadModel(model_path));
  // Per-channel DequantizeLinear needs opset 13.
  TEND_RETURN_NOT_OK(UpgradeOpset(model, 13, model_path));
  FoldConstantIdentities(model);
  TEND_ASSIGN_OR_RETURN(std::string fp32_bytes, SerializeModel(model, model_path));

  const std::string data_name = "calibration data";
  if (calibration.rows() == 0 || calibration.data.empty()) {
    return Fail(Error::Invalid(data_name + " is empty (0 windows)"));
  }
  const int64_t available =
      opt.max_samples > 0 ? std::min(opt.max_samples, calibration.rows()) : calibration.rows();
  if (available < opt.min_samples) {
    return Fail(Error::Invalid(data_name + " has " + std::to_string(available) +
                               " windows; at least " + std::to_string(opt.min_samples) +
                               " are needed (500-1,000 representative windows recommended)"));
  }

  const Graph g = Analyse(model);
  Plan plan = MakePlan(model, g, opt);

  // Tensors to observe: everything that gets a Q/DQ pair, plus (for a TensorRT table) every
  // float tensor. Graph inputs are observed straight from the data.
  std::set<std::string> observe;
  for (const auto& t : plan.qdq) {
    if (!plan.same_as.count(t)) observe.insert(t);
  }
  if (opt.all_tensor_ranges) {
    for (const auto& [name, type] : g.types) {
      if (type == onnx::TensorProto::FLOAT && !g.Const(name)) observe.insert(name);
    }
  }
  std::set<std::string> input_tensors;
  std::vector<std::string> outputs;
  onnx::ModelProto calib = model;
  {
    std::set<std::string> existing;
    for (const auto& o : calib.graph().output()) existing.insert(o.name());
    for (const auto& t : observe) {
      if (g.graph_inputs.count(t)) {
        input_tensors.insert(t);
        continue;
      }
      if (!g.producer.count(t)) continue;
      outputs.push_back(t);
      if (existing.count(t)) continue;
      auto* vi = calib.mutable_graph()->add_output();
      vi->set_name(t);
      vi->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
    }
  }
  TEND_ASSIGN_OR_RETURN(std::string calib_bytes, SerializeModel(calib, model_path));
  OrtRunnerOptions ro;
  ro.threads = opt.threads;
  TEND_ASSIGN_OR_RETURN(auto runner, OrtRunner::Create(calib_bytes, model_path, ro));
  TEND_ASSIGN_OR_RETURN(CalibrationInput ci,
                        CheckData(*runner, calibration, data_name, model_path));
  const int64_t declared_batch = runner->input_shape(0)[0];
  int64_t batch = declared_batch > 0 ? declared_batch : std::max(1, opt.batch);
  int64_t samples = available;
  if (declared_batch > 0) samples = (available / declared_batch) * declared_batch;
  if (samples < opt.min_samples) {
    return Fail(Error::Invalid(data_name + ": " + std::to_string(available) +
                               " windows make too few batches of the model's fixed batch size " +
                               std::to_string(declared_batch)));
  }

  CalibrationOptions co;
  co.method = opt.method;
  co.percentile = opt.percentile;
  co.histogram_bins = opt.histogram_bins;
  RangeCollector collector(co);
  Calibrator cal(*runner, calibration, samples, batch, opt);
  TEND_RETURN_NOT_OK(cal.Pass(
      "ranges", outputs, input_tensors,
      [&](const std::string& t, std::span<const float> v) { collector.ObserveFirstPass(t, v); }));
  if (collector.NeedsSecondPass()) {
    collector.StartSecondPass();
    TEND_RETURN_NOT_OK(cal.Pass("histograms", outputs, input_tensors,
                                [&](const std::string& t, std::span<const float> v) {
                                  collector.ObserveSecondPass(t, v);
                                }));
  }
  runner.reset();
  const std::map<std::string, Range> ranges = collector.Ranges();
  // Tensors the runtime never produced (e.g. dead branches) cannot be quantised safely.
  for (const auto& t : observe) {
    if (plan.qdq.count(t) && !ranges.count(t)) {
      return Fail(
          Error::Model(model_path + ": tensor '" + t + "' was not produced while calibrating"));
    }
  }

  QuantizeReport report;
  report.precision = "int8";
  report.method = CalibrationMethodName(opt.method);
  report.calibration_samples = samples;
  report.opset = DefaultOpset(model);
  for (int i = 0; i < model.graph().node_size(); ++i) {
    const auto& node = model.graph().node(i);
    const Kind k = plan.kind[static_cast<size_t>(i)];
    if (k == Kind::kFused) {
      ++report.fused_activations;
      ++report.quantized_ops[node.op_type()];
    } else if (k != Kind::kNone) {
      ++report.quantized_ops[node.op_type()];
    } else if (!plan.reason[static_cast<size_t>(i)].empty()) {
      ++report.unquantized_ops[node.op_type()];
      report.unquantized_nodes.push_back((node.name().empty() ? node.output(0) : node.name()) +
                                         " (" + node.op_type() +
                                         "): " + plan.reason[static_cast<size_t>(i)]);
    }
  }
  if (opt.all_tensor_ranges) {
    report.ranges = ranges;
  } else {
    for (const auto& t : plan.qdq) {
      auto it = ranges.find(t);
      if (it != ranges.end()) report.ranges[t] = it->second;
    }
  }
  for (const auto& s : report.unquantized_nodes) TEND_LOG_DEBUG("left FP32: {}", s);

  Rewriter rw(model, g, plan, ranges, opt);
  TEND_RETURN_NOT_OK(rw.Run());
  StampMetadata(model, report);
  TEND_ASSIGN_OR_RETURN(std::string bytes, SerializeModel(model, model_path));
  // The model must load and run in ONNX Runtime; compare it with FP32 on a few windows.
  TEND_RETURN_NOT_OK(CheckAgainstReference(fp32_bytes, bytes, calibration,
                                           std::min<int64_t>(samples, 32), batch, opt.threads,
                                           model_path, report));
  StampMetadata(model, report);
  TEND_ASSIGN_OR_RETURN(bytes, SerializeModel(model, model_path));
  return ConvertedModel{std::move(bytes), std::move(report)};
}

}  // namespace tend::optimize
