// Float16 conversion. Every float tensor has a "home" precision — float16 when an FP16 node (or a
// converted constant) produces it, float32 when it is a graph input or comes from a node kept in
// FP32 — and each reader gets the precision it needs, through a Cast made once per tensor and
// precision. Graph inputs and outputs keep their float32 names and types.
#include <algorithm>
#include <cmath>

#include "optimize/onnx_util.h"
#include "optimize/quantize.h"

namespace tend::optimize {

Status CheckAgainstReference(const std::string& fp32_bytes, const std::string& converted_bytes,
                             const NpyArray& data, int64_t samples, int64_t batch, int threads,
                             const std::string& name, QuantizeReport& report);
void StampMetadata(onnx::ModelProto& model, const QuantizeReport& report);

namespace {

// Ops with no float16 version, or whose results need float precision (ONNX converter tools'
// usual block list).
const std::set<std::string>& DefaultKeepFp32() {
  static const std::set<std::string> ops = {"ArrayFeatureExtractor",
                                            "Binarizer",
                                            "CastMap",
                                            "CategoryMapper",
                                            "DictVectorizer",
                                            "FeatureVectorizer",
                                            "Imputer",
                                            "LabelEncoder",
                                            "LinearClassifier",
                                            "LinearRegressor",
                                            "Normalizer",
                                            "OneHotEncoder",
                                            "RandomUniformLike",
                                            "SVMClassifier",
                                            "SVMRegressor",
                                            "Scaler",
                                            "TreeEnsembleClassifier",
                                            "TreeEnsembleRegressor",
                                            "ZipMap",
                                            "NonMaxSuppression",
                                            "TopK",
                                            "RoiAlign",
                                            "Resize",
                                            "Range",
                                            "CumSum",
                                            "Min",
                                            "Max",
                                            "Upsample"};
  return ops;
}

onnx::TensorProto ToHalf(const onnx::TensorProto& t, const std::vector<float>& v) {
  onnx::TensorProto h;
  h.set_name(t.name());
  h.set_data_type(onnx::TensorProto::FLOAT16);
  for (int64_t d : t.dims()) h.add_dims(d);
  std::string raw(v.size() * 2, '\0');
  for (size_t i = 0; i < v.size(); ++i) {
    const uint16_t b = FloatToHalf(v[i]);
    raw[2 * i] = static_cast<char>(b & 0xff);
    raw[2 * i + 1] = static_cast<char>(b >> 8);
  }
  h.set_raw_data(raw);
  return h;
}

}  // namespace

Result<ConvertedModel> ConvertFp16(const std::string& model_path, const Fp16Options& opt) {
  TEND_ASSIGN_OR_RETURN(onnx::ModelProto model, LoadModel(model_path));
  TEND_ASSIGN_OR_RETURN(std::string fp32_bytes, SerializeModel(model, model_path));
  auto* graph = model.mutable_graph();
  if (!SubgraphInputs(*graph).empty()) {
    return Fail(Error::Unsupported(model_path + ": models with control flow (If/Loop/Scan) are "
                                                "not supported by the float16 converter"));
  }
  const auto types = InferElemTypes(model);
  auto is_float = [&](const std::string& t) {
    auto it = types.find(t);
    return !t.empty() && it != types.end() && it->second == onnx::TensorProto::FLOAT;
  };
  std::set<std::string> graph_inputs, graph_outputs;
  for (const auto& vi : graph->input()) graph_inputs.insert(vi.name());
  for (const auto& vi : graph->output()) graph_outputs.insert(vi.name());

  const int n = graph->node_size();
  std::vector<bool> half(static_cast<size_t>(n), false);
  QuantizeReport report;
  report.precision = "fp16";
  report.opset = DefaultOpset(model);
  for (int i = 0; i < n; ++i) {
    const auto& node = graph->node(i);
    bool touches = false;
    for (const auto& t : node.input()) touches |= is_float(t);
    for (const auto& t : node.output()) touches |= is_float(t);
    const bool custom = !node.domain().empty() && node.domain() != "ai.onnx";
    const bool keep = custom || DefaultKeepFp32().count(node.op_type()) ||
                      opt.keep_fp32_ops.count(node.op_type());
    half[static_cast<size_t>(i)] = !keep;
    if (!touches || node.op_type() == "Constant") continue;
    if (keep) {
      ++report.unquantized_ops[node.op_type()];
      report.unquantized_nodes.push_back(
          (node.name().empty() ? node.output(0) : node.name()) + " (" + node.op_type() + "): " +
          (custom ? "custom op domain" : "kept in FP32 (no float16 version or needs float)"));
    } else {
      ++report.quantized_ops[node.op_type()];
    }
  }

  // Initializers read by at least one FP16 node become float16.
  std::set<std::string> half_inits;
  for (int i = 0; i < n; ++i) {
    if (!half[static_cast<size_t>(i)]) continue;
    for (const auto& in : graph->node(i).input()) half_inits.insert(in);
  }
  std::set<std::string> home_half;  // float tensors stored as float16
  for (auto& t : *graph->mutable_initializer()) {
    if (t.data_type() != onnx::TensorProto::FLOAT || graph_inputs.count(t.name()) ||
        !half_inits.count(t.name())) {
      continue;
    }
    TEND_ASSIGN_OR_RETURN(auto v, FloatData(t));
    t = ToHalf(t, v);
    home_half.insert(t.name());
  }

  NameGenerator names(*graph);
  std::vector<onnx::NodeProto> old(graph->node().begin(), graph->node().end());
  std::vector<onnx::NodeProto> out;
  std::map<std::string, std::string> as_half, as_float;  // tensor -> name in that precision
  auto make_cast = [&](const std::string& from, const std::string& to, int32_t type) {
    auto c = MakeNode("Cast", {from}, {to}, names.Make(to + "_Cast"));
    SetIntAttr(c, "to", type);
    return c;
  };
  // Name of `t` in the wanted precision, emitting a Cast the first time.
  auto reader = [&](const std::string& t, bool want_half) -> std::string {
    if (!is_float(t)) return t;
    const bool home = home_half.count(t) > 0;
    const std::string home_name = home && as_half.count(t) ? as_half[t] : t;
    if (want_half == home) return home_name;
    auto& cache = want_half ? as_half : as_float;
    auto it = cache.find(t);
    if (it != cache.end()) return it->second;
    const std::string dst = names.Make(t + (want_half ? "_fp16" : "_fp32"));
    out.push_back(make_cast(home_name, dst,
                            want_half ? onnx::TensorProto::FLOAT16 : onnx::TensorProto::FLOAT));
    cache[t] = dst;
    return dst;
  };

  for (int i = 0; i < n; ++i) {
    onnx::NodeProto node = old[static_cast<size_t>(i)];
    const bool h = half[static_cast<size_t>(i)];
    for (int k = 0; k < node.input_size(); ++k) node.set_input(k, reader(node.input(k), h));
    if (h) {
      for (auto& a : *node.mutable_attribute()) {
        if (a.has_t() && a.t().data_type() == onnx::TensorProto::FLOAT &&
            (node.op_type() == "Constant" || node.op_type() == "ConstantOfShape")) {
          TEND_ASSIGN_OR_RETURN(auto v, FloatData(a.t()));
          *a.mutable_t() = ToHalf(a.t(), v);
        }
        if (node.op_type() == "Cast" && a.name() == "to" && a.i() == onnx::TensorProto::FLOAT) {
          a.set_i(onnx::TensorProto::FLOAT16);
        }
      }
    }
    std::vector<std::pair<std::string, std::string>> output_casts;
    for (int k = 0; k < node.output_size(); ++k) {
      const std::string o = node.output(k);
      if (!is_float(o) || !h) continue;
      home_half.insert(o);
      if (graph_outputs.count(o)) {
        // The graph output keeps its float32 name; the FP16 value gets a new one.
        const std::string o16 = names.Make(o + "_fp16");
        node.set_output(k, o16);
        as_half[o] = o16;
        output_casts.emplace_back(o16, o);
      }
    }
    out.push_back(node);
    for (const auto& [from, to] : output_casts) {
      out.push_back(make_cast(from, to, onnx::TensorProto::FLOAT));
      as_float[to] = to;
    }
  }
  graph->clear_node();
  for (auto& node : out) *graph->add_node() = std::move(node);
  graph->clear_value_info();

  StampMetadata(model, report);
  TEND_ASSIGN_OR_RETURN(std::string bytes, SerializeModel(model, model_path));
  if (opt.check_data && opt.check_data->rows() > 0) {
    TEND_RETURN_NOT_OK(CheckAgainstReference(fp32_bytes, bytes, *opt.check_data,
                                             std::min<int64_t>(opt.check_data->rows(), 32), 1,
                                             opt.threads, model_path, report));
    StampMetadata(model, report);
    TEND_ASSIGN_OR_RETURN(bytes, SerializeModel(model, model_path));
  }
  return ConvertedModel{std::move(bytes), std::move(report)};
}

}  // namespace tend::optimize
