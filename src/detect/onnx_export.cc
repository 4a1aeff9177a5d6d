#include "detect/onnx_export.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>

#include "core/fs.h"

namespace tend::detect {

namespace {

constexpr int64_t kIrVersion = 8;
constexpr int64_t kOpsetVersion = 13;
constexpr const char* kMean = "tend_mean";
constexpr const char* kStd = "tend_std";
constexpr const char* kPrecision = "tend_precision";
constexpr const char* kProjector = "tend_residual_projector";
constexpr const char* kReduceAxes = "tend_reduce_axes";
constexpr const char* kInvDiag = "tend_precision_inv_diag";
constexpr const char* kEps = "tend_contribution_eps";
constexpr const char* kBandIndex = "tend_band_index";
constexpr const char* kBandScatter = "tend_band_scatter";
constexpr const char* kTopK = "tend_median_topk";
constexpr const char* kMedianStart = "tend_median_start";
constexpr const char* kMedianEnd = "tend_median_end";
constexpr const char* kLogCap = "tend_log_cap";
constexpr const char* kShareEps = "tend_share_eps";

std::string AeWeight(size_t i) { return fmt::format("tend_ae_w{}", i); }
std::string AeBias(size_t i) { return fmt::format("tend_ae_b{}", i); }
std::string AeTanhNode(size_t i) { return fmt::format("ae_tanh_{}", i); }

std::vector<float> RowMajor(const Eigen::MatrixXf& m) {
  std::vector<float> out(static_cast<size_t>(m.size()));
  size_t k = 0;
  for (Eigen::Index r = 0; r < m.rows(); ++r)
    for (Eigen::Index c = 0; c < m.cols(); ++c) out[k++] = m(r, c);
  return out;
}

void AddFloatInitializer(onnx::GraphProto* g, const std::string& name,
                         const std::vector<int64_t>& dims, const std::vector<float>& values) {
  onnx::TensorProto* t = g->add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto::FLOAT);
  for (int64_t d : dims) t->add_dims(d);
  for (float v : values) t->add_float_data(v);
}

onnx::NodeProto* AddNode(onnx::GraphProto* g, const std::string& op,
                         const std::vector<std::string>& inputs,
                         const std::vector<std::string>& outputs, const std::string& name) {
  onnx::NodeProto* n = g->add_node();
  n->set_op_type(op);
  n->set_name(name);
  for (const auto& i : inputs) n->add_input(i);
  for (const auto& o : outputs) n->add_output(o);
  return n;
}

void AddIntAttribute(onnx::NodeProto* n, const std::string& name, int64_t v) {
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}

void AddInt64Initializer(onnx::GraphProto* g, const std::string& name,
                         const std::vector<int64_t>& values) {
  onnx::TensorProto* t = g->add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto::INT64);
  t->add_dims(static_cast<int64_t>(values.size()));
  for (int64_t v : values) t->add_int64_data(v);
}

// broadband: exp(median of z over the band columns). The median of m values is the mean of
// columns [k-1-(m even), k) of TopK(k = m/2 + 1, largest, sorted): the middle one (m odd) or the
// middle two (m even). Contributions: shares (relu(z_j) + eps) / sum, scattered back to [N,F].
void BuildBroadband(const TrainedDetector& det, onnx::GraphProto* g) {
  const int64_t f = static_cast<int64_t>(det.num_features());
  const int64_t m = static_cast<int64_t>(det.band_index.size());
  const int64_t k = m / 2 + 1;
  AddInt64Initializer(g, kBandIndex, det.band_index);
  AddInt64Initializer(g, kTopK, {k});
  AddInt64Initializer(g, kMedianStart, {m % 2 ? k - 1 : k - 2});
  AddInt64Initializer(g, kMedianEnd, {k});
  AddFloatInitializer(g, kLogCap, {1}, {kBroadbandLogCap});
  AddFloatInitializer(g, kShareEps, {1}, {kBroadbandShareEps});
  std::vector<float> scatter(static_cast<size_t>(m * f), 0.0f);
  for (int64_t j = 0; j < m; ++j) scatter[static_cast<size_t>(j * f + det.band_index[j])] = 1.0f;
  AddFloatInitializer(g, kBandScatter, {m, f}, scatter);
  AddIntAttribute(AddNode(g, "Gather", {"z", kBandIndex}, {"z_bands"}, "broadband_gather"), "axis",
                  1);
  auto* topk = AddNode(g, "TopK", {"z_bands", kTopK}, {"z_top", "z_top_index"}, "median_topk");
  AddIntAttribute(topk, "axis", 1);
  AddIntAttribute(topk, "largest", 1);
  AddIntAttribute(topk, "sorted", 1);
  AddNode(g, "Slice", {"z_top", kMedianStart, kMedianEnd, kReduceAxes}, {"z_middle"},
          "median_slice");
  auto* mean = AddNode(g, "ReduceMean", {"z_middle"}, {"z_median"}, "median_mean");
  onnx::AttributeProto* axes = mean->add_attribute();
  axes->set_name("axes");
  axes->set_type(onnx::AttributeProto::INTS);
  axes->add_ints(1);
  AddIntAttribute(mean, "keepdims", 1);
  AddNode(g, "Min", {"z_median", kLogCap}, {"z_median_capped"}, "median_cap");
  AddNode(g, "Exp", {"z_median_capped"}, {"score_column"}, "broadband_exp");
  auto* score =
      AddNode(g, "ReduceSum", {"score_column", kReduceAxes}, {kScoreOutput}, "score_squeeze");
  AddIntAttribute(score, "keepdims", 0);
  AddNode(g, "Relu", {"z_bands"}, {"z_bands_pos"}, "share_relu");
  AddNode(g, "Add", {"z_bands_pos", kShareEps}, {"share_raw"}, "share_floor");
  auto* total = AddNode(g, "ReduceSum", {"share_raw", kReduceAxes}, {"share_total"}, "share_sum");
  AddIntAttribute(total, "keepdims", 1);
  AddNode(g, "Div", {"share_raw", "share_total"}, {"share"}, "share_normalise");
  AddNode(g, "Mul", {"share", "score_column"}, {"band_contributions"}, "share_scale");
  AddNode(g, "MatMul", {"band_contributions", kBandScatter}, {kContributionsOutput},
          "share_scatter");
}

// dims: -1 = the symbolic batch dimension "N".
void SetFloatTensorType(onnx::ValueInfoProto* v, const std::string& name,
                        const std::vector<int64_t>& dims) {
  v->set_name(name);
  onnx::TypeProto_Tensor* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  onnx::TensorShapeProto* shape = t->mutable_shape();
  for (int64_t d : dims) {
    auto* dim = shape->add_dim();
    if (d < 0)
      dim->set_dim_param("N");
    else
      dim->set_dim_value(d);
  }
}

// The graph for a validated detector (see the header for the contract).
void BuildGraph(const TrainedDetector& det, onnx::GraphProto* g) {
  const int64_t f = static_cast<int64_t>(det.num_features());
  g->set_name("tend_" + det.detector);
  g->set_doc_string(fmt::format(
      "tend {} anomaly detector: z = (features - tend_mean) / tend_std; contributions [N,F] sum "
      "to anomaly_score [N] (>= 0, larger = more anomalous)",
      det.detector));
  SetFloatTensorType(g->add_input(), kInputName, {-1, f});
  AddFloatInitializer(g, kMean, {f}, det.mean);
  AddFloatInitializer(g, kStd, {f}, det.std);
  onnx::TensorProto* axes = g->add_initializer();
  axes->set_name(kReduceAxes);
  axes->set_data_type(onnx::TensorProto::INT64);
  axes->add_dims(1);
  axes->add_int64_data(1);
  AddNode(g, "Sub", {kInputName, kMean}, {"centred"}, "standardise_sub");
  AddNode(g, "Div", {"centred", kStd}, {"z"}, "standardise_div");
  if (det.detector == "mahalanobis") {
    AddFloatInitializer(g, kPrecision, {f, f}, RowMajor(det.precision));
    const Eigen::VectorXf inv_diag = MahalanobisInvDiag(det);
    AddFloatInitializer(g, kInvDiag, {f}, std::vector<float>(inv_diag.data(), inv_diag.data() + f));
    AddFloatInitializer(g, kEps, {1}, {kContributionEps});
    AddNode(g, "MatMul", {"z", kPrecision}, {"precision_z"}, "mahalanobis_matmul");
    AddNode(g, "Mul", {"z", "precision_z"}, {"quadratic_terms"}, "mahalanobis_mul");
    auto* score =
        AddNode(g, "ReduceSum", {"quadratic_terms", kReduceAxes}, {kScoreOutput}, "score_sum");
    AddIntAttribute(score, "keepdims", 0);
    auto* score_col = AddNode(g, "ReduceSum", {"quadratic_terms", kReduceAxes}, {"score_column"},
                              "score_column_sum");
    AddIntAttribute(score_col, "keepdims", 1);
    // Reconstruction-based contributions (P z)_i^2 / P_ii, rescaled to sum to the score.
    AddNode(g, "Mul", {"precision_z", "precision_z"}, {"precision_z_sq"}, "rbc_square");
    AddNode(g, "Mul", {"precision_z_sq", kInvDiag}, {"rbc"}, "rbc_weight");
    auto* total = AddNode(g, "ReduceSum", {"rbc", kReduceAxes}, {"rbc_total"}, "rbc_sum");
    AddIntAttribute(total, "keepdims", 1);
    AddNode(g, "Add", {"rbc_total", kEps}, {"rbc_denominator"}, "rbc_guard");
    AddNode(g, "Div", {"score_column", "rbc_denominator"}, {"rbc_scale"}, "rbc_scale");
    AddNode(g, "Mul", {"rbc", "rbc_scale"}, {kContributionsOutput}, "rbc_rescale");
  } else if (det.detector == "broadband") {
    BuildBroadband(det, g);
  } else if (det.detector == "pca") {
    AddFloatInitializer(g, kProjector, {f, f}, RowMajor(det.residual_projector));
    AddNode(g, "MatMul", {"z", kProjector}, {"residual"}, "pca_residual");
    AddNode(g, "Mul", {"residual", "residual"}, {kContributionsOutput}, "pca_square");
  } else {
    std::string prev = "z";
    for (size_t i = 0; i < det.layers.size(); ++i) {
      const DenseLayer& L = det.layers[i];
      AddFloatInitializer(g, AeWeight(i), {L.weight.rows(), L.weight.cols()}, RowMajor(L.weight));
      AddFloatInitializer(g, AeBias(i), {L.bias.size()},
                          std::vector<float>(L.bias.data(), L.bias.data() + L.bias.size()));
      const std::string affine = fmt::format("ae_affine_{}", i);
      auto* gemm = AddNode(g, "Gemm", {prev, AeWeight(i), AeBias(i)}, {affine},
                           fmt::format("ae_gemm_{}", i));
      AddIntAttribute(gemm, "transB", 1);  // weights stored out x in
      prev = affine;
      if (L.tanh) {
        const std::string act = fmt::format("ae_hidden_{}", i);
        AddNode(g, "Tanh", {prev}, {act}, AeTanhNode(i));
        prev = act;
      }
    }
    AddNode(g, "Sub", {"z", prev}, {"reconstruction_error"}, "ae_error");
    AddNode(g, "Mul", {"reconstruction_error", "reconstruction_error"}, {kContributionsOutput},
            "ae_square");
  }
  if (det.detector != "mahalanobis" && det.detector != "broadband") {
    auto* sum =
        AddNode(g, "ReduceSum", {kContributionsOutput, kReduceAxes}, {kScoreOutput}, "score_sum");
    AddIntAttribute(sum, "keepdims", 0);
  }
  SetFloatTensorType(g->add_output(), kScoreOutput, {-1});
  SetFloatTensorType(g->add_output(), kContributionsOutput, {-1, f});
}

std::vector<int64_t> ShapeOf(const onnx::ValueInfoProto& v) {
  std::vector<int64_t> dims;
  if (!v.type().has_tensor_type() || !v.type().tensor_type().has_shape()) return dims;
  for (const auto& d : v.type().tensor_type().shape().dim())
    dims.push_back(d.has_dim_value() ? d.dim_value() : -1);
  return dims;
}

Result<onnx::ModelProto> ParseModel(const std::string& bytes) {
  onnx::ModelProto model;
  if (bytes.empty() || !model.ParseFromString(bytes))
    return Fail(Error::Corrupt("not an ONNX model (protobuf parse failed)"));
  if (!model.has_graph()) return Fail(Error::Corrupt("ONNX model has no graph"));
  return model;
}

// Parses the card and checks it against the graph's declared input/output shapes.
Result<ModelCard> CardOf(const onnx::ModelProto& model) {
  std::map<std::string, std::string> props;
  for (const auto& p : model.metadata_props()) props[p.key()] = p.value();
  TEND_ASSIGN_OR_RETURN(ModelCard card, ModelCard::FromMetadata(props));
  const onnx::GraphProto& g = model.graph();
  std::set<std::string> init_names;
  for (const auto& t : g.initializer()) init_names.insert(t.name());
  const onnx::ValueInfoProto* input = nullptr;
  for (const auto& in : g.input()) {
    if (init_names.count(in.name())) continue;  // older IRs list initializers as inputs
    if (input)
      return Fail(Error::Model(fmt::format(
          "graph has more than one input ('{}', '{}'); expected one", input->name(), in.name())));
    input = &in;
  }
  if (!input) return Fail(Error::Model("graph has no input"));
  auto check_float = [](const onnx::ValueInfoProto& v) -> Status {
    if (!v.type().has_tensor_type() ||
        v.type().tensor_type().elem_type() != onnx::TensorProto::FLOAT)
      return Fail(Error::Model(fmt::format("graph tensor '{}' is not float32", v.name())));
    return Ok();
  };
  TEND_RETURN_NOT_OK(check_float(*input));
  std::vector<std::string> names;
  std::vector<std::vector<int64_t>> shapes;
  for (const auto& out : g.output()) {
    names.push_back(out.name());
    shapes.push_back(ShapeOf(out));
    if (out.name() == kScoreOutput || out.name() == kContributionsOutput)
      TEND_RETURN_NOT_OK(check_float(out));
  }
  TEND_RETURN_NOT_OK(card.CheckAgainstGraph(ShapeOf(*input), names, shapes));
  return card;
}

Result<std::vector<float>> ReadFloats(const std::map<std::string, const onnx::TensorProto*>& inits,
                                      const std::string& name, const std::vector<int64_t>& dims) {
  auto it = inits.find(name);
  if (it == inits.end())
    return Fail(Error::Model(fmt::format("graph has no initializer '{}'", name)));
  const onnx::TensorProto& t = *it->second;
  if (t.data_type() != onnx::TensorProto::FLOAT)
    return Fail(Error::Model(fmt::format("initializer '{}' is not float32", name)));
  if (t.data_location() == onnx::TensorProto::EXTERNAL)
    return Fail(Error::Unsupported(fmt::format("initializer '{}' uses external data", name)));
  std::vector<int64_t> got(t.dims().begin(), t.dims().end());
  if (got != dims)
    return Fail(Error::Model(fmt::format("initializer '{}' has shape [{}], expected [{}]", name,
                                         fmt::join(got, ","), fmt::join(dims, ","))));
  size_t count = 1;
  for (int64_t d : dims) count *= static_cast<size_t>(d);
  std::vector<float> out(count);
  if (t.has_raw_data()) {
    if (t.raw_data().size() != count * sizeof(float))
      return Fail(Error::Corrupt(fmt::format("initializer '{}' has {} bytes of data, expected {}",
                                             name, t.raw_data().size(), count * sizeof(float))));
    std::memcpy(out.data(), t.raw_data().data(), count * sizeof(float));  // ONNX: little-endian
  } else {
    if (static_cast<size_t>(t.float_data_size()) != count)
      return Fail(Error::Corrupt(fmt::format("initializer '{}' has {} values, expected {}", name,
                                             t.float_data_size(), count)));
    std::copy(t.float_data().begin(), t.float_data().end(), out.begin());
  }
  return out;
}

Result<std::vector<int64_t>> ReadInt64s(
    const std::map<std::string, const onnx::TensorProto*>& inits, const std::string& name) {
  auto it = inits.find(name);
  if (it == inits.end())
    return Fail(Error::Model(fmt::format("graph has no initializer '{}'", name)));
  const onnx::TensorProto& t = *it->second;
  if (t.data_type() != onnx::TensorProto::INT64 || t.dims_size() != 1)
    return Fail(Error::Model(fmt::format("initializer '{}' is not an int64 vector", name)));
  const size_t count = static_cast<size_t>(std::max<int64_t>(t.dims(0), 0));
  if (count > (size_t{1} << 20))
    return Fail(Error::Model(fmt::format("initializer '{}' is too large", name)));
  std::vector<int64_t> out(count);
  if (t.has_raw_data()) {
    if (t.raw_data().size() != count * sizeof(int64_t))
      return Fail(Error::Corrupt(fmt::format("initializer '{}' has {} bytes of data, expected {}",
                                             name, t.raw_data().size(), count * sizeof(int64_t))));
    std::memcpy(out.data(), t.raw_data().data(), count * sizeof(int64_t));
  } else {
    if (static_cast<size_t>(t.int64_data_size()) != count)
      return Fail(Error::Corrupt(fmt::format("initializer '{}' has {} values, expected {}", name,
                                             t.int64_data_size(), count)));
    std::copy(t.int64_data().begin(), t.int64_data().end(), out.begin());
  }
  return out;
}

Eigen::MatrixXf FromRowMajor(const std::vector<float>& v, Eigen::Index rows, Eigen::Index cols) {
  Eigen::MatrixXf m(rows, cols);
  size_t k = 0;
  for (Eigen::Index r = 0; r < rows; ++r)
    for (Eigen::Index c = 0; c < cols; ++c) m(r, c) = v[k++];
  return m;
}

std::string NodeString(const onnx::NodeProto& n) {
  return fmt::format("{}({}) -> {}", n.op_type(), fmt::join(n.input(), ", "),
                     fmt::join(n.output(), ", "));
}

Status CheckSameStatistics(const std::vector<float>& card, const std::vector<float>& graph,
                           const char* key, const char* init,
                           const std::vector<std::string>& names) {
  if (card.empty()) return Ok();
  for (size_t i = 0; i < graph.size(); ++i)
    if (std::fabs(card[i] - graph[i]) > 1e-6f * std::max(std::fabs(graph[i]), 1e-30f))
      return Fail(Error::Model(fmt::format(
          "model metadata contradicts the graph: '{}'[{}] ('{}') is {} but initializer {} has {}",
          key, i, names[i], card[i], init, graph[i])));
  return Ok();
}

}  // namespace

Result<std::string> LoadModelBytes(const std::string& s) {
  // Serialized models start with the ir_version tag (0x08) and contain control bytes; paths
  // (UTF-8 included) contain none.
  const bool looks_like_path =
      !s.empty() && s.size() < 4096 && std::all_of(s.begin(), s.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u >= 0x20 && u != 0x7f;
      });
  if (!looks_like_path) return s;
  if (!fs::Exists(s)) return Fail(Error::NotFound(fmt::format("model file '{}' not found", s)));
  auto bytes = fs::ReadFile(s);
  if (!bytes) return Fail(bytes.error());
  return std::move(*bytes);
}

Result<std::string> ExportOnnx(const TrainedDetector& det, const ModelCard& card_in) {
  TEND_RETURN_NOT_OK(ValidateDetector(det));
  ModelCard card = card_in;
  if (card.input_kind != "features")
    return Fail(Error::Invalid(
        fmt::format("ExportOnnx builds feature-vector models; the card says input_kind '{}'",
                    card.input_kind)));
  if (!card.detector.empty() && card.detector != det.detector)
    return Fail(Error::Invalid(fmt::format("model card says detector '{}' but the detector is '{}'",
                                           card.detector, det.detector)));
  if (!card.feature_names.empty() && card.feature_names != det.feature_names)
    return Fail(Error::Invalid(fmt::format(
        "model card lists {} feature names that differ from the detector's {} (first: '{}' vs "
        "'{}')",
        card.feature_names.size(), det.feature_names.size(),
        card.feature_names.empty() ? "" : card.feature_names[0], det.feature_names[0])));
  card.detector = det.detector;
  card.feature_names = det.feature_names;
  card.thresholds = det.thresholds;
  card.train_mean = det.mean;
  card.train_std = det.std;
  card.calibration = det.calibration.is_object() ? det.calibration : nlohmann::json::object();
  if (card.created.empty()) card.created = NowIso8601Utc();
  auto valid = card.Validate();
  if (!valid) return Fail(valid.error().Wrap("model card"));

  onnx::ModelProto model;
  model.set_ir_version(kIrVersion);
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOpsetVersion);
  model.set_producer_name("tend");
  model.set_producer_version(TEND_VERSION);
  model.set_domain("org.tend");
  model.set_model_version(card.VersionMajor());
  model.set_doc_string(fmt::format("{} v{} ({} anomaly detector over {} features, created {})",
                                   card.name, card.version, card.detector,
                                   card.feature_names.size(), card.created));
  BuildGraph(det, model.mutable_graph());
  for (const auto& [k, v] : card.ToMetadata()) {
    auto* p = model.add_metadata_props();
    p->set_key(k);
    p->set_value(v);
  }
  std::string bytes;
  if (!model.SerializeToString(&bytes))
    return Fail(Error::Internal("ExportOnnx: protobuf serialisation failed"));
  // The card we wrote must read back and agree with the graph we built.
  TEND_ASSIGN_OR_RETURN(onnx::ModelProto back, ParseModel(bytes));
  TEND_ASSIGN_OR_RETURN(ModelCard check, CardOf(back));
  (void)check;
  return bytes;
}

Result<ModelCard> ReadModelCard(const std::string& onnx_bytes_or_path) {
  TEND_ASSIGN_OR_RETURN(std::string bytes, LoadModelBytes(onnx_bytes_or_path));
  TEND_ASSIGN_OR_RETURN(onnx::ModelProto model, ParseModel(bytes));
  return CardOf(model);
}

Result<TrainedDetector> DetectorFromModel(const std::string& onnx_bytes_or_path) {
  TEND_ASSIGN_OR_RETURN(std::string bytes, LoadModelBytes(onnx_bytes_or_path));
  TEND_ASSIGN_OR_RETURN(onnx::ModelProto model, ParseModel(bytes));
  TEND_ASSIGN_OR_RETURN(ModelCard card, CardOf(model));
  if (card.input_kind != "features")
    return Fail(Error::Unsupported(fmt::format(
        "model takes input_kind '{}': only tend's feature-vector detectors can be rebuilt",
        card.input_kind)));
  if (!KnownDetector(card.detector))
    return Fail(
        Error::Unsupported(fmt::format("model detector '{}' was not built by tend; it can be "
                                       "served but not rebuilt or recalibrated",
                                       card.detector)));
  const onnx::GraphProto& g = model.graph();
  std::map<std::string, const onnx::TensorProto*> inits;
  for (const auto& t : g.initializer()) inits[t.name()] = &t;

  TrainedDetector det;
  det.detector = card.detector;
  det.feature_names = card.feature_names;
  det.thresholds = card.thresholds;
  det.calibration = card.calibration;
  const int64_t f = static_cast<int64_t>(card.feature_names.size());
  TEND_ASSIGN_OR_RETURN(det.mean, ReadFloats(inits, kMean, {f}));
  TEND_ASSIGN_OR_RETURN(det.std, ReadFloats(inits, kStd, {f}));
  TEND_RETURN_NOT_OK(
      CheckSameStatistics(card.train_mean, det.mean, kKeyTrainMean, kMean, det.feature_names));
  TEND_RETURN_NOT_OK(
      CheckSameStatistics(card.train_std, det.std, kKeyTrainStd, kStd, det.feature_names));
  if (det.detector == "mahalanobis") {
    TEND_ASSIGN_OR_RETURN(auto p, ReadFloats(inits, kPrecision, {f, f}));
    det.precision = FromRowMajor(p, f, f);
  } else if (det.detector == "broadband") {
    TEND_ASSIGN_OR_RETURN(det.band_index, ReadInt64s(inits, kBandIndex));
  } else if (det.detector == "pca") {
    TEND_ASSIGN_OR_RETURN(auto r, ReadFloats(inits, kProjector, {f, f}));
    det.residual_projector = FromRowMajor(r, f, f);
  } else {
    std::set<std::string> node_names;
    for (const auto& n : g.node()) node_names.insert(n.name());
    for (size_t i = 0; inits.count(AeWeight(i)); ++i) {
      const auto* wt = inits.at(AeWeight(i));
      if (wt->dims_size() != 2)
        return Fail(Error::Model(fmt::format("initializer '{}' is not a matrix", AeWeight(i))));
      const int64_t rows = wt->dims(0), cols = wt->dims(1);
      DenseLayer L;
      TEND_ASSIGN_OR_RETURN(auto w, ReadFloats(inits, AeWeight(i), {rows, cols}));
      TEND_ASSIGN_OR_RETURN(auto b, ReadFloats(inits, AeBias(i), {rows}));
      L.weight = FromRowMajor(w, rows, cols);
      L.bias = Eigen::Map<Eigen::VectorXf>(b.data(), rows);
      L.tanh = node_names.count(AeTanhNode(i)) > 0;
      det.layers.push_back(std::move(L));
    }
  }
  auto valid = ValidateDetector(det);
  if (!valid) return Fail(valid.error().Wrap("model graph"));
  // The graph must be exactly the one tend builds from these parameters; anything else
  // (an edited or external graph) would make recalibration change what the model computes.
  onnx::GraphProto expected;
  BuildGraph(det, &expected);
  if (expected.node_size() != g.node_size())
    return Fail(Error::Model(fmt::format(
        "model graph has {} nodes, but tend's '{}' graph for it has {}: not a graph tend built",
        g.node_size(), det.detector, expected.node_size())));
  for (int i = 0; i < g.node_size(); ++i) {
    const auto& a = expected.node(i);
    const auto& b = g.node(i);
    bool same =
        a.op_type() == b.op_type() && a.domain() == b.domain() &&
        std::equal(a.input().begin(), a.input().end(), b.input().begin(), b.input().end()) &&
        std::equal(a.output().begin(), a.output().end(), b.output().begin(), b.output().end()) &&
        a.attribute_size() == b.attribute_size();
    for (int k = 0; same && k < a.attribute_size(); ++k)
      same = a.attribute(k).SerializeAsString() == b.attribute(k).SerializeAsString();
    if (!same)
      return Fail(Error::Model(fmt::format(
          "model graph node {} is {}, but tend's '{}' graph has {} there: not a graph tend built",
          i, NodeString(b), det.detector, NodeString(a))));
  }
  // ...and so must every constant in it (derived ones included, e.g. 1/P_ii).
  if (expected.initializer_size() != g.initializer_size())
    return Fail(
        Error::Model(fmt::format("model graph has {} initializers, but tend's '{}' graph for it "
                                 "has {}: not a graph tend built",
                                 g.initializer_size(), det.detector, expected.initializer_size())));
  for (const auto& want : expected.initializer()) {
    std::vector<int64_t> dims(want.dims().begin(), want.dims().end());
    if (want.data_type() == onnx::TensorProto::FLOAT) {
      TEND_ASSIGN_OR_RETURN(auto got, ReadFloats(inits, want.name(), dims));
      for (int k = 0; k < want.float_data_size(); ++k)
        if (got[k] != want.float_data(k))
          return Fail(Error::Model(fmt::format(
              "initializer '{}'[{}] is {} but its parameters give {}: the graph contradicts itself",
              want.name(), k, got[k], want.float_data(k))));
    } else {
      auto it = inits.find(want.name());
      if (it == inits.end() || it->second->data_type() != want.data_type() ||
          !std::equal(want.dims().begin(), want.dims().end(), it->second->dims().begin(),
                      it->second->dims().end()) ||
          (it->second->has_raw_data()
               ? it->second->raw_data().size() != sizeof(int64_t) * want.int64_data_size() ||
                     std::memcmp(it->second->raw_data().data(), want.int64_data().data(),
                                 it->second->raw_data().size()) != 0
               : !std::equal(want.int64_data().begin(), want.int64_data().end(),
                             it->second->int64_data().begin(), it->second->int64_data().end())))
        return Fail(Error::Model(
            fmt::format("initializer '{}' differs from tend's '{}' graph: not a graph tend built",
                        want.name(), det.detector)));
    }
  }
  return det;
}

}  // namespace tend::detect
