#include "detect/image_graph.h"

#include <fmt/format.h>
#include <onnx/defs/schema.h>
#include <onnx/shape_inference/implementation.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <numeric>
#include <random>
#include <set>

namespace tend::detect {

using nlohmann::json;

json EmbeddingSpec::ToJson() const {
  return {{"layers", layers}, {"pool", pool}, {"border", border},
          {"dims", dims},     {"seed", seed}, {"channels", channels}};
}

Result<EmbeddingSpec> EmbeddingSpec::FromJson(const json& j) {
  EmbeddingSpec s;
  try {
    s.layers = j.at("layers").get<std::vector<std::string>>();
    s.pool = j.at("pool").get<int>();
    s.border = j.value("border", int64_t{0});  // files before the border: none
    s.dims = j.at("dims").get<int64_t>();
    s.seed = j.at("seed").get<uint64_t>();
    s.channels = j.at("channels").get<std::vector<int64_t>>();
  } catch (const json::exception& e) {
    return Fail(Error::Invalid(std::string("embedding spec: ") + e.what()));
  }
  if (s.layers.empty()) return Fail(Error::Invalid("embedding spec: no layers"));
  if (s.pool < 1 || s.pool % 2 == 0)
    return Fail(Error::Invalid("embedding spec: pool must be odd and >= 1"));
  if (s.border < 0) return Fail(Error::Invalid("embedding spec: border must be >= 0"));
  return s;
}

namespace {

int64_t DefaultOpset(const onnx::ModelProto& m) {
  for (const auto& o : m.opset_import()) {
    if (o.domain().empty() || o.domain() == "ai.onnx") return o.version();
  }
  return 0;
}

onnx::TensorProto Int64Tensor(const std::string& name, const std::vector<int64_t>& v,
                              std::vector<int64_t> dims = {}) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(onnx::TensorProto::INT64);
  if (dims.empty()) dims = {static_cast<int64_t>(v.size())};
  for (int64_t d : dims) t.add_dims(d);
  for (int64_t x : v) t.add_int64_data(x);
  return t;
}

onnx::TensorProto FloatTensor(const std::string& name, const std::vector<float>& v,
                              const std::vector<int64_t>& dims) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(onnx::TensorProto::FLOAT);
  for (int64_t d : dims) t.add_dims(d);
  std::string raw(v.size() * sizeof(float), '\0');
  std::memcpy(raw.data(), v.data(), raw.size());  // ONNX raw_data is little-endian, as x86/ARM
  t.set_raw_data(std::move(raw));
  return t;
}

onnx::NodeProto* Add(onnx::GraphProto* g, const std::string& op, const std::vector<std::string>& in,
                     const std::vector<std::string>& out) {
  onnx::NodeProto* n = g->add_node();
  n->set_op_type(op);
  n->set_name(out[0] + "_" + op);
  for (const auto& i : in) n->add_input(i);
  for (const auto& o : out) n->add_output(o);
  return n;
}

void IntAttr(onnx::NodeProto* n, const std::string& name, int64_t v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}

void IntsAttr(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t x : v) a->add_ints(x);
}

void StrAttr(onnx::NodeProto* n, const std::string& name, const std::string& v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::STRING);
  a->set_s(v);
}

void SetOutput(onnx::ValueInfoProto* v, const std::string& name, const std::vector<int64_t>& dims) {
  v->set_name(name);
  auto* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  auto* shape = t->mutable_shape();
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] < 0) {
      shape->add_dim()->set_dim_param(fmt::format("dim{}", i));  // any size: fixed at Prepare
    } else {
      shape->add_dim()->set_dim_value(dims[i]);
    }
  }
}

// The graph's one real input (initializers listed as inputs by old exporters are skipped).
Result<int> FindImageInput(const onnx::GraphProto& g) {
  std::set<std::string> inits;
  for (const auto& t : g.initializer()) inits.insert(t.name());
  int found = -1;
  for (int i = 0; i < g.input_size(); ++i) {
    if (inits.count(g.input(i).name())) continue;
    if (found >= 0)
      return Fail(Error::Model("backbone: more than one input (an image backbone takes one)"));
    found = i;
  }
  if (found < 0) return Fail(Error::Model("backbone: the graph has no input"));
  const auto& t = g.input(found).type().tensor_type();
  if (t.elem_type() != onnx::TensorProto::FLOAT || t.shape().dim_size() != 4) {
    return Fail(Error::Model(
        fmt::format("backbone: input '{}' must be float [N,C,H,W]", g.input(found).name())));
  }
  return found;
}

// Maps each requested layer to a tensor name: a node output of that name, else a node so named.
Result<std::vector<std::string>> ResolveLayers(const onnx::ModelProto& m,
                                               const std::vector<std::string>& layers) {
  std::set<std::string> outputs;
  std::map<std::string, std::string> by_node;
  for (const auto& n : m.graph().node()) {
    for (const auto& o : n.output()) outputs.insert(o);
    if (!n.name().empty() && n.output_size() > 0) by_node[n.name()] = n.output(0);
  }
  std::vector<std::string> out;
  for (const auto& l : layers) {
    if (outputs.count(l)) {
      out.push_back(l);
    } else if (by_node.count(l)) {
      out.push_back(by_node[l]);
    } else {
      auto c = LayerCandidates(m, 12);
      return Fail(
          Error::NotFound(fmt::format("backbone has no layer '{}' (tensors include: {}{})", l,
                                      fmt::join(c, ", "), c.size() == 12 ? ", ..." : "")));
    }
  }
  return out;
}

// Keeps only what computes `targets`.
void Prune(onnx::GraphProto* g, const std::vector<std::string>& targets, const std::string& input) {
  std::set<std::string> needed(targets.begin(), targets.end());
  std::vector<bool> keep(static_cast<size_t>(g->node_size()), false);
  for (int i = g->node_size() - 1; i >= 0; --i) {
    const auto& n = g->node(i);
    bool used = false;
    for (const auto& o : n.output()) used = used || needed.count(o) > 0;
    if (!used) continue;
    keep[static_cast<size_t>(i)] = true;
    for (const auto& in : n.input()) needed.insert(in);
  }
  google::protobuf::RepeatedPtrField<onnx::NodeProto> nodes;
  for (int i = 0; i < g->node_size(); ++i) {
    if (keep[static_cast<size_t>(i)]) *nodes.Add() = g->node(i);
  }
  g->mutable_node()->Swap(&nodes);
  google::protobuf::RepeatedPtrField<onnx::TensorProto> inits;
  for (const auto& t : g->initializer()) {
    if (needed.count(t.name())) *inits.Add() = t;
  }
  g->mutable_initializer()->Swap(&inits);
  google::protobuf::RepeatedPtrField<onnx::ValueInfoProto> ins;
  for (const auto& v : g->input()) {
    if (v.name() == input) *ins.Add() = v;
  }
  g->mutable_input()->Swap(&ins);
  g->clear_output();
  g->clear_value_info();
}

Result<std::vector<std::vector<int64_t>>> InferLayerShapes(
    const onnx::ModelProto& m, const std::vector<std::string>& tensors) {
  onnx::ModelProto copy = m;
  try {
    onnx::ShapeInferenceOptions opts(/*check_type=*/false, /*strict=*/1, /*data_prop=*/true);
    onnx::shape_inference::InferShapes(copy, onnx::OpSchemaRegistry::Instance(), opts);
  } catch (const std::exception& e) {
    return Fail(Error::Model(std::string("backbone: shape inference failed: ") + e.what()));
  }
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& v : copy.graph().value_info()) {
    std::vector<int64_t> s;
    bool known = true;
    for (const auto& d : v.type().tensor_type().shape().dim()) {
      known = known && d.has_dim_value();
      s.push_back(d.has_dim_value() ? d.dim_value() : -1);
    }
    if (known) shapes[v.name()] = s;
  }
  std::vector<std::vector<int64_t>> out;
  for (const auto& t : tensors) {
    auto it = shapes.find(t);
    if (it == shapes.end() || it->second.size() != 4) {
      return Fail(Error::Model(
          fmt::format("backbone: the shape of layer '{}' cannot be inferred as [1,C,h,w]", t)));
    }
    out.push_back(it->second);
  }
  return out;
}

}  // namespace

std::vector<std::string> LayerCandidates(const onnx::ModelProto& m, size_t max) {
  std::vector<std::string> out;
  for (const auto& o : m.graph().output()) {
    if (out.size() < max) out.push_back(o.name());
  }
  for (const auto& n : m.graph().node()) {
    for (const auto& o : n.output()) {
      if (out.size() < max && std::find(out.begin(), out.end(), o) == out.end()) out.push_back(o);
    }
  }
  return out;
}

namespace {

// The seeded channel subset (sorted), or all channels.
std::vector<int64_t> ChooseChannels(int64_t total, int64_t dims, uint64_t seed) {
  std::vector<int64_t> all(static_cast<size_t>(total));
  std::iota(all.begin(), all.end(), 0);
  if (dims >= total) return all;
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < dims; ++i) {  // partial Fisher-Yates
    std::uniform_int_distribution<int64_t> pick(i, total - 1);
    std::swap(all[static_cast<size_t>(i)], all[static_cast<size_t>(pick(rng))]);
  }
  all.resize(static_cast<size_t>(dims));
  std::sort(all.begin(), all.end());
  return all;
}

// Keep each layer's chosen channels, pool, resize to the embedding grid, concatenate. Pooling
// and resizing act on each channel alone, so choosing the channels first gives the same
// embedding as choosing them from the concatenation, with the pools, resizes and the concat run
// over d channels instead of all of them (a layer with none chosen is not pooled at all).
void AppendEmbeddingHead(EmbeddingGraph& eg, const std::vector<std::string>& tensors,
                         const EmbeddingSpec& spec) {
  onnx::GraphProto* g = eg.model.mutable_graph();
  const bool subset = static_cast<int64_t>(spec.channels.size()) < eg.total_channels;
  // Channels in increasing order (ChooseChannels' subsets) keep their order when chosen per
  // layer; any other order is chosen from the concatenation.
  const bool per_layer = subset && std::adjacent_find(spec.channels.begin(), spec.channels.end(),
                                                      [](int64_t a, int64_t b) {
                                                        return a >= b;
                                                      }) == spec.channels.end();
  std::vector<std::string> parts;
  int64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    std::string t = tensors[i];
    const auto& s = eg.layer_shapes[i];
    const std::string p = fmt::format("tend_emb{}", i);
    std::vector<int64_t> local;
    for (int64_t c : spec.channels) {
      if (c >= offset && c < offset + s[1]) local.push_back(c - offset);
    }
    offset += s[1];
    if (per_layer && local.empty()) continue;
    int64_t channels = s[1];
    if (per_layer && static_cast<int64_t>(local.size()) < s[1]) {
      *g->add_initializer() = Int64Tensor(p + "_channels", local);
      IntAttr(Add(g, "Gather", {t, p + "_channels"}, {p + "_kept"}), "axis", 1);
      t = p + "_kept";
      channels = static_cast<int64_t>(local.size());
    }
    if (spec.pool > 1) {
      auto* n = Add(g, "AveragePool", {t}, {p + "_pool"});
      IntsAttr(n, "kernel_shape", {spec.pool, spec.pool});
      IntsAttr(n, "strides", {1, 1});
      const int64_t r = spec.pool / 2;
      IntsAttr(n, "pads", {r, r, r, r});
      IntAttr(n, "count_include_pad", 1);
      t = p + "_pool";
    }
    if (const int64_t c = eg.layer_crops[i]; c > 0) {  // s is the cropped shape
      *g->add_initializer() = Int64Tensor(p + "_crop_starts", {c, c});
      *g->add_initializer() = Int64Tensor(p + "_crop_ends", {c + s[2], c + s[3]});
      *g->add_initializer() = Int64Tensor(p + "_crop_axes", {2, 3});
      Add(g, "Slice", {t, p + "_crop_starts", p + "_crop_ends", p + "_crop_axes"}, {p + "_crop"});
      t = p + "_crop";
    }
    if (s[2] != eg.height || s[3] != eg.width) {
      *g->add_initializer() = Int64Tensor(p + "_size", {1, channels, eg.height, eg.width});
      auto* n = Add(g, "Resize", {t, "", "", p + "_size"}, {p + "_resized"});
      StrAttr(n, "mode", "linear");
      StrAttr(n, "coordinate_transformation_mode", "half_pixel");
      t = p + "_resized";
    }
    parts.push_back(t);
  }
  std::string cat = parts[0];
  if (parts.size() > 1) {
    cat = "tend_emb_concat";
    IntAttr(Add(g, "Concat", parts, {cat}), "axis", 1);
  }
  if (subset && !per_layer) {
    *g->add_initializer() = Int64Tensor("tend_emb_channels", spec.channels);
    IntAttr(Add(g, "Gather", {cat, "tend_emb_channels"}, {kEmbeddingOutput}), "axis", 1);
  } else {
    Add(g, "Identity", {cat}, {kEmbeddingOutput});
  }
  SetOutput(g->add_output(), kEmbeddingOutput, {1, eg.dims, eg.height, eg.width});
}

// Prepends the node that computes the backbone's input `padded` from "image": the image mirrored
// `border` pixels out on each side (Pad, mode reflect).
void PrependReflectBorder(onnx::GraphProto* g, int64_t border, const std::string& padded) {
  *g->add_initializer() =
      Int64Tensor("tend_border_pads", {0, 0, border, border, 0, 0, border, border});
  google::protobuf::RepeatedPtrField<onnx::NodeProto> nodes;
  auto* pad = nodes.Add();
  pad->set_op_type("Pad");
  pad->set_name("tend_border");
  pad->add_input("image");
  pad->add_input("tend_border_pads");
  pad->add_output(padded);
  StrAttr(pad, "mode", "reflect");
  for (const auto& n : g->node()) *nodes.Add() = n;
  g->mutable_node()->Swap(&nodes);
}

// With a border, each layer's map covers (H + 2 border) input pixels; the frame's cells are the
// middle ones. Sets eg.layer_crops and turns eg.layer_shapes into the cropped shapes.
Status CropToFrame(EmbeddingGraph& eg, const std::vector<std::string>& tensors, int64_t border,
                   std::array<int64_t, 3> chw) {
  eg.layer_crops.assign(tensors.size(), 0);
  if (border == 0) return Ok();
  const int64_t full[2] = {chw[1] + 2 * border, chw[2] + 2 * border};
  for (size_t i = 0; i < tensors.size(); ++i) {
    auto& s = eg.layer_shapes[i];
    int64_t crop[2];
    for (int a = 0; a < 2; ++a) {
      const int64_t cells = s[2 + a];
      if (full[a] % cells != 0 || border % (full[a] / cells) != 0) {
        return Fail(Error::Invalid(fmt::format(
            "embedding: a border of {} px is not a whole number of cells of layer '{}' ({} cells "
            "over {} px); use a multiple of its stride",
            border, tensors[i], cells, full[a])));
      }
      crop[a] = border / (full[a] / cells);
    }
    if (crop[0] != crop[1])
      return Fail(
          Error::Invalid(fmt::format("embedding: layer '{}' has unequal strides", tensors[i])));
    eg.layer_crops[i] = crop[0];
    s[2] -= 2 * crop[0];
    s[3] -= 2 * crop[1];
  }
  return Ok();
}

}  // namespace

Result<EmbeddingGraph> BuildEmbeddingGraph(const onnx::ModelProto& backbone, EmbeddingSpec& spec,
                                           std::array<int64_t, 3> chw) {
  if (spec.layers.empty()) return Fail(Error::Invalid("embedding: no backbone layers given"));
  if (spec.pool < 1 || spec.pool % 2 == 0)
    return Fail(Error::Invalid("embedding: pool must be odd and >= 1"));
  if (spec.dims < 1) return Fail(Error::Invalid("embedding: dims must be >= 1"));
  if (spec.border < 0 || spec.border >= std::min(chw[1], chw[2])) {
    return Fail(Error::Invalid(
        fmt::format("embedding: border {} px must be >= 0 and smaller than the input ({}x{})",
                    spec.border, chw[2], chw[1])));
  }
  const int64_t opset = DefaultOpset(backbone);
  if (opset < 13) {
    return Fail(Error::Unsupported(
        fmt::format("backbone: opset {} is too old; export it with opset 13 or newer", opset)));
  }
  EmbeddingGraph eg;
  eg.model = backbone;
  onnx::GraphProto* g = eg.model.mutable_graph();
  TEND_ASSIGN_OR_RETURN(int in_idx, FindImageInput(*g));
  const std::string old_name = g->input(in_idx).name();
  TEND_ASSIGN_OR_RETURN(auto tensors, ResolveLayers(eg.model, spec.layers));
  Prune(g, tensors, old_name);
  auto* in = g->mutable_input(0);
  in->set_name("image");
  auto* shape = in->mutable_type()->mutable_tensor_type()->mutable_shape();
  shape->clear_dim();
  for (int64_t d : {int64_t{1}, chw[0], chw[1], chw[2]}) shape->add_dim()->set_dim_value(d);
  // What the backbone reads: the image, or the image with its mirrored border.
  const std::string backbone_in = spec.border > 0 ? "tend_bordered" : "image";
  for (auto& n : *g->mutable_node()) {
    for (int k = 0; k < n.input_size(); ++k) {
      if (n.input(k) == old_name) n.set_input(k, backbone_in);
    }
  }
  for (auto& t : tensors) {
    if (t == old_name) t = backbone_in;
  }
  if (spec.border > 0) PrependReflectBorder(g, spec.border, backbone_in);
  TEND_ASSIGN_OR_RETURN(eg.layer_shapes, InferLayerShapes(eg.model, tensors));
  TEND_RETURN_NOT_OK(CropToFrame(eg, tensors, spec.border, chw));
  size_t finest = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    eg.total_channels += eg.layer_shapes[i][1];
    if (eg.layer_shapes[i][2] * eg.layer_shapes[i][3] >
        eg.layer_shapes[finest][2] * eg.layer_shapes[finest][3]) {
      finest = i;
    }
  }
  eg.height = eg.layer_shapes[finest][2];
  eg.width = eg.layer_shapes[finest][3];
  if (spec.channels.empty())
    spec.channels = ChooseChannels(eg.total_channels, spec.dims, spec.seed);
  for (int64_t c : spec.channels) {
    if (c < 0 || c >= eg.total_channels) {
      return Fail(Error::Model(fmt::format(
          "embedding: channel {} outside the {} channels of the layers", c, eg.total_channels)));
    }
  }
  eg.dims = static_cast<int64_t>(spec.channels.size());
  AppendEmbeddingHead(eg, tensors, spec);
  return eg;
}

json MapOptions::ToJson() const {
  json j = {{"smooth_sigma", smooth_sigma}, {"mask_padding", mask_padding}};
  if (mask_padding) j["pad_value"] = pad_value;
  return j;
}

namespace {

// [n, n] row-major: row i holds a Gaussian of `sigma` centred on i, cut at 4 sigma, normalised
// over the full kernel (so values beyond the border count as zero, as a zero-padded Conv).
std::vector<float> GaussianMatrix(int64_t n, double sigma) {
  const int64_t r = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(4 * sigma)));
  std::vector<double> k(static_cast<size_t>(2 * r + 1));
  double sum = 0;
  for (int64_t t = -r; t <= r; ++t)
    sum += k[static_cast<size_t>(t + r)] = std::exp(-0.5 * t * t / (sigma * sigma));
  std::vector<float> m(static_cast<size_t>(n * n), 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = std::max<int64_t>(0, i - r); j <= std::min(n - 1, i + r); ++j)
      m[static_cast<size_t>(i * n + j)] =
          static_cast<float>(k[static_cast<size_t>(j - i + r)] / sum);
  }
  return m;
}

// valid [1, 1, h, w]: 1 where the patch's cell of the input holds any content, 0 where all padding.
Status AppendPaddingMask(EmbeddingGraph& eg, const MapOptions& mo) {
  onnx::GraphProto* g = eg.model.mutable_graph();
  const auto& dims = g->input(0).type().tensor_type().shape().dim();
  const int64_t H = dims[2].dim_value(), W = dims[3].dim_value();
  if (H % eg.height != 0 || W % eg.width != 0 || H / eg.height != W / eg.width) {
    return Fail(Error::Invalid(
        fmt::format("padding mask: the input {}x{} is not a whole multiple of the grid {}x{}; "
                    "choose --size a multiple of it",
                    W, H, eg.width, eg.height)));
  }
  const int64_t cell = H / eg.height;
  auto& inits = *g->mutable_initializer();
  *inits.Add() = Int64Tensor("tend_mask_starts", {0});
  *inits.Add() = Int64Tensor("tend_mask_ends", {1});
  *inits.Add() = Int64Tensor("tend_mask_axes", {1});
  *inits.Add() = FloatTensor("tend_mask_pad", {mo.pad_value}, {1});
  *inits.Add() = FloatTensor("tend_mask_tol", {mo.pad_tolerance}, {1});
  Add(g, "Slice", {"image", "tend_mask_starts", "tend_mask_ends", "tend_mask_axes"},
      {"tend_mask_c0"});
  Add(g, "Sub", {"tend_mask_c0", "tend_mask_pad"}, {"tend_mask_diff"});
  Add(g, "Abs", {"tend_mask_diff"}, {"tend_mask_abs"});
  Add(g, "Less", {"tend_mask_tol", "tend_mask_abs"}, {"tend_mask_content_b"});
  IntAttr(Add(g, "Cast", {"tend_mask_content_b"}, {"tend_mask_content"}), "to",
          onnx::TensorProto::FLOAT);
  auto* mp = Add(g, "MaxPool", {"tend_mask_content"}, {"tend_mask_valid"});  // [1,1,h,w]
  IntsAttr(mp, "kernel_shape", {cell, cell});
  IntsAttr(mp, "strides", {cell, cell});
  return Ok();
}

// dist [L, 1] (patch scores, locations row-major) -> anomaly_map [1,h,w] (masked, smoothed) and
// anomaly_score [1] = its maximum.
Status AppendMapTail(EmbeddingGraph& eg, const std::string& dist, const MapOptions& mo) {
  onnx::GraphProto* g = eg.model.mutable_graph();
  const int64_t h = eg.height, w = eg.width;
  auto& inits = *g->mutable_initializer();
  *inits.Add() = Int64Tensor("tend_map_shape_hw", {h, w});
  *inits.Add() = Int64Tensor("tend_map_shape_map", {1, h, w});
  *inits.Add() = Int64Tensor("tend_map_shape_map4", {1, 1, h, w});
  *inits.Add() = Int64Tensor("tend_map_shape_score", {1});
  std::string m = "tend_map_hw";
  Add(g, "Reshape", {dist, "tend_map_shape_hw"}, {m});
  if (mo.mask_padding) {
    TEND_RETURN_NOT_OK(AppendPaddingMask(eg, mo));
    Add(g, "Mul", {m, "tend_mask_valid"}, {"tend_map_masked"});
    m = "tend_map_masked";
  }
  if (mo.smooth_sigma > 0) {
    *inits.Add() = FloatTensor("tend_map_smooth_rows", GaussianMatrix(h, mo.smooth_sigma), {h, h});
    *inits.Add() = FloatTensor("tend_map_smooth_cols", GaussianMatrix(w, mo.smooth_sigma), {w, w});
    // rows: G_h M; columns: (G_h M) G_w^T (G symmetric).
    Add(g, "MatMul", {"tend_map_smooth_rows", m}, {"tend_map_smooth_r"});
    Add(g, "MatMul", {"tend_map_smooth_r", "tend_map_smooth_cols"}, {"tend_map_smoothed"});
    m = "tend_map_smoothed";
    if (mo.mask_padding) {
      Add(g, "Mul", {m, "tend_mask_valid"}, {"tend_map_smoothed_masked"});
      m = "tend_map_smoothed_masked";
    }
  }
  Add(g, "Reshape", {m, "tend_map_shape_map"}, {"anomaly_map"});
  Add(g, "Reshape", {"anomaly_map", "tend_map_shape_map4"}, {"tend_map_map4"});
  Add(g, "GlobalMaxPool", {"tend_map_map4"}, {"tend_map_max"});
  Add(g, "Reshape", {"tend_map_max", "tend_map_shape_score"}, {"anomaly_score"});
  SetOutput(g->add_output(), "anomaly_score", {1});
  SetOutput(g->add_output(), "anomaly_map", {1, h, w});
  return Ok();
}

}  // namespace

namespace {

// True when every W_l is lower triangular (zero above the diagonal), as PatchGaussianFitter's
// Cholesky factors are.
bool FactorsLowerTriangular(const PatchGaussian& pg) {
  const int64_t d = pg.dims;
  for (int64_t l = 0; l < pg.locations(); ++l) {
    const float* W = &pg.factor[static_cast<size_t>(l * d * d)];
    for (int64_t r = 0; r < d; ++r)
      for (int64_t c = r + 1; c < d; ++c)
        if (W[r * d + c] != 0.0f) return false;
  }
  return true;
}

// Columns [c0, c1) of every W_l, rows c0..d-1 only: [L, d - c0, c1 - c0]. With W_l lower
// triangular, rows above c0 of those columns are zero, so (x - mu_l) W_l over these columns is
// (x - mu_l)[c0:] times this block.
std::vector<float> FactorBlock(const PatchGaussian& pg, int64_t c0, int64_t c1) {
  const int64_t d = pg.dims, rows = d - c0, cols = c1 - c0;
  std::vector<float> b(static_cast<size_t>(pg.locations() * rows * cols));
  float* out = b.data();
  for (int64_t l = 0; l < pg.locations(); ++l) {
    const float* W = &pg.factor[static_cast<size_t>(l * d * d)];
    for (int64_t r = c0; r < d; ++r)
      for (int64_t c = c0; c < c1; ++c) *out++ = W[r * d + c];
  }
  return b;
}

// tend_patch_centred [L,1,d] -> tend_patch_sq [L,1,1] = |(x - mu_l) W_l|^2 per location. One
// batched MatMul over the full factors, squared and summed; or, for lower-triangular factors, one
// MatMul per column block that reads only the rows at or below the block's first column (the
// zeros above the diagonal are neither stored nor read: with 2 blocks, 75 % of the bytes), each
// block's squares summed (ReduceSumSquare), and the blocks' sums added.
void AppendWhitening(onnx::GraphProto* g, const PatchGaussian& pg, int blocks, int64_t opset) {
  const int64_t d = pg.dims, L = pg.locations();
  auto& inits = *g->mutable_initializer();
  if (blocks <= 1 || d < 2 * blocks || !FactorsLowerTriangular(pg)) {
    *inits.Add() = FloatTensor("tend_patch_factor", pg.factor, {L, d, d});
    *inits.Add() =
        FloatTensor("tend_patch_ones", std::vector<float>(static_cast<size_t>(d), 1.0f), {d, 1});
    Add(g, "MatMul", {"tend_patch_centred", "tend_patch_factor"}, {"tend_patch_whitened"});
    Add(g, "Mul", {"tend_patch_whitened", "tend_patch_whitened"}, {"tend_patch_squares"});
    Add(g, "MatMul", {"tend_patch_squares", "tend_patch_ones"}, {"tend_patch_sq"});
    return;
  }
  std::vector<std::string> sums;
  for (int j = 0; j < blocks; ++j) {
    const int64_t c0 = d * j / blocks, c1 = d * (j + 1) / blocks;
    const std::string p = fmt::format("tend_patch_block{}", j);
    std::string x = "tend_patch_centred";
    if (c0 > 0) {
      *inits.Add() = Int64Tensor(p + "_starts", {c0});
      *inits.Add() = Int64Tensor(p + "_ends", {d});
      *inits.Add() = Int64Tensor(p + "_axes", {2});
      Add(g, "Slice", {x, p + "_starts", p + "_ends", p + "_axes"}, {p + "_x"});
      x = p + "_x";
    }
    *inits.Add() = FloatTensor(p + "_factor", FactorBlock(pg, c0, c1), {L, d - c0, c1 - c0});
    Add(g, "MatMul", {x, p + "_factor"}, {p + "_whitened"});
    auto* r = Add(g, "ReduceSumSquare", {p + "_whitened"}, {p + "_sq"});
    if (opset >= 18) {
      *inits.Add() = Int64Tensor(p + "_sq_axes", {2});
      r->add_input(p + "_sq_axes");
    } else {
      IntsAttr(r, "axes", {2});
    }
    IntAttr(r, "keepdims", 1);
    sums.push_back(p + "_sq");
  }
  Add(g, "Sum", sums, {"tend_patch_sq"});
}

}  // namespace

Status AppendPatchGaussianHead(EmbeddingGraph& eg, const PatchGaussian& pg, const MapOptions& mo,
                               int factor_blocks) {
  if (pg.dims != eg.dims || pg.height != eg.height || pg.width != eg.width) {
    return Fail(
        Error::Internal(fmt::format("patch head: Gaussians are {}x{}x{}, the embedding is {}x{}x{}",
                                    pg.dims, pg.height, pg.width, eg.dims, eg.height, eg.width)));
  }
  onnx::GraphProto* g = eg.model.mutable_graph();
  g->clear_output();
  const int64_t d = pg.dims, L = pg.locations();
  auto& inits = *g->mutable_initializer();
  *inits.Add() = Int64Tensor("tend_patch_shape_dl", {d, L});
  *inits.Add() = Int64Tensor("tend_patch_shape_l1d", {L, 1, d});
  *inits.Add() = FloatTensor("tend_patch_mean", pg.mean, {L, 1, d});
  Add(g, "Reshape", {kEmbeddingOutput, "tend_patch_shape_dl"}, {"tend_patch_dl"});
  IntsAttr(Add(g, "Transpose", {"tend_patch_dl"}, {"tend_patch_ld"}), "perm", {1, 0});
  Add(g, "Reshape", {"tend_patch_ld", "tend_patch_shape_l1d"}, {"tend_patch_x"});
  Add(g, "Sub", {"tend_patch_x", "tend_patch_mean"}, {"tend_patch_centred"});
  AppendWhitening(g, pg, factor_blocks, DefaultOpset(eg.model));
  Add(g, "Sqrt", {"tend_patch_sq"}, {"tend_patch_dist"});
  TEND_RETURN_NOT_OK(AppendMapTail(eg, "tend_patch_dist", mo));
  g->set_name("tend_padim");
  g->set_doc_string(
      fmt::format("tend image anomaly model: backbone embedding [1,{},{},{}], one Gaussian per "
                  "location (PaDiM); "
                  "anomaly_map = Mahalanobis distance per patch, anomaly_score = its maximum",
                  d, pg.height, pg.width));
  return Ok();
}

Status AppendPatchMemoryHead(EmbeddingGraph& eg, const PatchMemory& pm, const MapOptions& mo) {
  if (pm.dims != eg.dims || pm.height != eg.height || pm.width != eg.width || pm.size() < 1) {
    return Fail(Error::Internal(
        fmt::format("memory head: the bank is {} x {} over {}x{}, the embedding is {}x{}x{}",
                    pm.size(), pm.dims, pm.height, pm.width, eg.dims, eg.height, eg.width)));
  }
  onnx::GraphProto* g = eg.model.mutable_graph();
  g->clear_output();
  const int64_t d = pm.dims, L = pm.height * pm.width, n = pm.size();
  // |x - m|^2 = |x|^2 + (|m|^2 - 2 x.m): the bank is stored transposed and scaled by -2.
  std::vector<float> scaled(static_cast<size_t>(d * n)), norms(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    double sq = 0;
    for (int64_t k = 0; k < d; ++k) {
      const float v = pm.bank[static_cast<size_t>(j * d + k)];
      scaled[static_cast<size_t>(k * n + j)] = -2.0f * v;
      sq += static_cast<double>(v) * v;
    }
    norms[static_cast<size_t>(j)] = static_cast<float>(sq);
  }
  auto& inits = *g->mutable_initializer();
  *inits.Add() = Int64Tensor("tend_mem_shape_dl", {d, L});
  *inits.Add() = FloatTensor("tend_mem_bank_t", scaled, {d, n});
  *inits.Add() = FloatTensor("tend_mem_bank_norms", norms, {1, n});
  *inits.Add() =
      FloatTensor("tend_mem_ones", std::vector<float>(static_cast<size_t>(d), 1.0f), {d, 1});
  Add(g, "Reshape", {kEmbeddingOutput, "tend_mem_shape_dl"}, {"tend_mem_dl"});
  IntsAttr(Add(g, "Transpose", {"tend_mem_dl"}, {"tend_mem_x"}), "perm", {1, 0});
  Add(g, "MatMul", {"tend_mem_x", "tend_mem_bank_t"}, {"tend_mem_dot"});
  Add(g, "Add", {"tend_mem_dot", "tend_mem_bank_norms"}, {"tend_mem_partial"});
  auto* rmin = Add(g, "ReduceMin", {"tend_mem_partial"}, {"tend_mem_min"});
  if (DefaultOpset(eg.model) >= 18) {
    *inits.Add() = Int64Tensor("tend_mem_axes", {1});
    rmin->add_input("tend_mem_axes");
  } else {
    IntsAttr(rmin, "axes", {1});
  }
  IntAttr(rmin, "keepdims", 1);
  Add(g, "Mul", {"tend_mem_x", "tend_mem_x"}, {"tend_mem_xsq"});
  Add(g, "MatMul", {"tend_mem_xsq", "tend_mem_ones"}, {"tend_mem_xnorm"});
  Add(g, "Add", {"tend_mem_min", "tend_mem_xnorm"}, {"tend_mem_sq"});
  Add(g, "Relu", {"tend_mem_sq"}, {"tend_mem_sq_pos"});  // rounding can dip below 0
  Add(g, "Sqrt", {"tend_mem_sq_pos"}, {"tend_mem_dist"});
  TEND_RETURN_NOT_OK(AppendMapTail(eg, "tend_mem_dist", mo));
  g->set_name("tend_patchcore");
  g->set_doc_string(fmt::format(
      "tend image anomaly model: backbone embedding [1,{},{},{}], a memory bank of {} good "
      "patches (PatchCore, greedy coreset of {}); anomaly_map = distance to the nearest bank "
      "patch, anomaly_score = its maximum",
      d, pm.height, pm.width, n, pm.patches));
  return Ok();
}

namespace {

// Every tensor computed from the image (the image included).
std::set<std::string> FromImage(const onnx::GraphProto& g, const std::string& image) {
  std::set<std::string> from = {image};
  for (const auto& n : g.node()) {
    bool hit = false;
    for (const auto& in : n.input()) hit = hit || from.count(in) > 0;
    if (hit) from.insert(n.output().begin(), n.output().end());
  }
  return from;
}

// Which nodes the back runs: every node downstream of the embedding, plus the constant nodes
// (not computed from the image, e.g. a quantised weight's DequantizeLinear) whose results it
// reads, so that only image-derived tensors cross from the front.
std::vector<bool> BackNodes(const onnx::GraphProto& g, const std::set<std::string>& from_image) {
  const int count = g.node_size();
  std::vector<bool> back(static_cast<size_t>(count), false);
  std::set<std::string> downstream = {kEmbeddingOutput}, needed;
  for (int i = 0; i < count; ++i) {
    const auto& n = g.node(i);
    for (const auto& in : n.input()) back[i] = back[i] || downstream.count(in) > 0;
    if (!back[i]) continue;
    downstream.insert(n.output().begin(), n.output().end());
    needed.insert(n.input().begin(), n.input().end());
  }
  for (int i = count - 1; i >= 0; --i) {
    const auto& n = g.node(i);
    bool constant = true, used = false;
    for (const auto& o : n.output()) {
      constant = constant && from_image.count(o) == 0;
      used = used || needed.count(o) > 0;
    }
    if (back[i] || !constant || !used) continue;
    back[i] = true;
    needed.insert(n.input().begin(), n.input().end());
  }
  return back;
}

}  // namespace

Result<SplitModel> SplitAtEmbedding(const onnx::ModelProto& model) {
  const auto& g = model.graph();
  TEND_ASSIGN_OR_RETURN(int in_idx, FindImageInput(g));
  const std::string image = g.input(in_idx).name();
  bool found = false;
  for (const auto& n : g.node()) {
    for (const auto& o : n.output()) found = found || o == kEmbeddingOutput;
  }
  if (!found) return Fail(Error::Model("image model: no 'embedding' tensor to split at"));
  // The back: its nodes, in graph order. What it reads that the front computes (the embedding,
  // the padding mask) is carried across, embedding first.
  const std::vector<bool> back = BackNodes(g, FromImage(g, image));
  std::set<std::string> produced, inits, used;
  for (const auto& t : g.initializer()) inits.insert(t.name());
  google::protobuf::RepeatedPtrField<onnx::NodeProto> nodes;
  for (int i = 0; i < g.node_size(); ++i) {
    if (!back[static_cast<size_t>(i)]) continue;
    *nodes.Add() = g.node(i);
    produced.insert(g.node(i).output().begin(), g.node(i).output().end());
  }
  std::vector<std::string> carried = {kEmbeddingOutput};
  for (const auto& n : nodes) {
    for (const auto& in : n.input()) {
      used.insert(in);
      if (in.empty() || produced.count(in) || inits.count(in)) continue;
      if (in == image)
        return Fail(Error::Model("image model: the detector reads the image itself"));
      if (std::find(carried.begin(), carried.end(), in) == carried.end()) carried.push_back(in);
    }
  }
  SplitModel s;
  s.front = model;
  Prune(s.front.mutable_graph(), carried, image);
  for (const auto& t : carried)
    SetOutput(s.front.mutable_graph()->add_output(), t, {-1, -1, -1, -1});
  s.back = model;
  onnx::GraphProto* b = s.back.mutable_graph();
  b->mutable_node()->Swap(&nodes);
  google::protobuf::RepeatedPtrField<onnx::TensorProto> kept;
  for (const auto& t : g.initializer()) {
    if (used.count(t.name())) *kept.Add() = t;
  }
  b->mutable_initializer()->Swap(&kept);
  b->clear_input();
  b->clear_value_info();
  for (const auto& t : carried) SetOutput(b->add_input(), t, {-1, -1, -1, -1});
  return s;
}

}  // namespace tend::detect
