#include "inspect/image_train.h"

#include <fmt/format.h>
#include <onnx/onnx_pb.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <span>

#include "core/fs.h"
#include "detect/calibrate.h"
#include "detect/patch_gaussian.h"
#include "detect/patch_memory.h"
#include "inspect/image_model.h"
#include "model/metadata.h"
#include "model/session.h"
#include "sources/frame_source.h"
#include "sources/image_files.h"

namespace tend::inspect {

namespace {

using nlohmann::json;

Result<onnx::ModelProto> ReadProto(const std::string& path) {
  TEND_ASSIGN_OR_RETURN(std::string bytes, fs::ReadFile(path));
  onnx::ModelProto m;
  TEND_RETURN_NOT_OK(model::ParseModelProto(
      {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, path, m));
  return m;
}

Result<std::string> Serialize(const onnx::ModelProto& m) {
  std::string out;
  if (!m.SerializeToString(&out)) return Fail(Error::Internal("image model: could not serialise"));
  return out;
}

// Calls fn(frame) for every image of every input, in order; a bad image is an error naming it.
Status ForEachImage(const std::vector<std::string>& inputs,
                    const std::function<Status(const sources::Frame&, int64_t)>& fn) {
  int64_t n = 0;
  sources::Frame f;
  for (const auto& in : inputs) {
    TEND_ASSIGN_OR_RETURN(auto src, sources::OpenImageFiles(in, {}));
    for (;;) {
      TEND_ASSIGN_OR_RETURN(bool more, src->Next(f));
      if (!more) break;
      if (!f.status) return Fail(f.status.error().Wrap(in));
      TEND_RETURN_NOT_OK(fn(f, n++));
    }
  }
  return Ok();
}

// Recommended preprocessing and layers from the backbone's own metadata.
Status ApplyBackboneDefaults(const json& info, ImageTrainOptions& o) {
  if (o.embedding.layers.empty()) {
    if (!info.contains("default_layers")) {
      return Fail(Error::Invalid(o.backbone +
                                 ": the backbone recommends no layers; name them (--layers A,B)"));
    }
    o.embedding.layers = info["default_layers"].get<std::vector<std::string>>();
  }
  if (!o.mean_std_given && info.contains("preprocess")) {
    const auto& p = info["preprocess"];
    auto mean = p.value("mean", std::vector<float>{}), sd = p.value("std", std::vector<float>{});
    for (size_t c = 0; c < 3 && c < mean.size() && c < sd.size(); ++c) {
      o.preprocess.mean[c] = mean[c];
      o.preprocess.std[c] = sd[c];
    }
  }
  return Ok();
}

json Provenance(const std::string& path, const json& info) {
  json p = info.is_object() ? info : json::object();
  p.erase("default_layers");
  p["file"] = std::filesystem::path(path).filename().string();
  return p;
}

}  // namespace

Result<json> BackboneInfo(const std::string& path) {
  TEND_ASSIGN_OR_RETURN(auto props, model::ReadMetadataProps(path));
  auto it = props.find("tend.backbone");
  if (it == props.end()) return json::object();
  json j = json::parse(it->second, nullptr, false);
  if (!j.is_object())
    return Fail(Error::Corrupt(path + ": metadata 'tend.backbone' is not a JSON object"));
  return j;
}

Result<std::vector<std::string>> ListImageInputs(const std::vector<std::string>& inputs) {
  std::vector<std::string> all;
  for (const auto& in : inputs) {
    TEND_ASSIGN_OR_RETURN(auto spec, sources::ImageSetSpec::Parse(in));
    auto list = sources::ListImages(spec);
    if (!list) return Fail(list.error().Wrap(in));
    for (auto& e : *list) all.push_back(e.path);
  }
  return all;
}

Result<ImageSplit> SplitImageInputs(const std::vector<std::string>& inputs, double holdout) {
  if (!(holdout > 0 && holdout < 0.9)) return Fail(Error::Invalid("holdout must be in (0, 0.9)"));
  TEND_ASSIGN_OR_RETURN(std::vector<std::string> all, ListImageInputs(inputs));
  const size_t k = std::max<size_t>(2, static_cast<size_t>(std::lround(1.0 / holdout)));
  ImageSplit s;
  s.every = k;
  for (size_t i = 0; i < all.size(); ++i) (i % k == k - 1 ? s.holdout : s.fit).push_back(all[i]);
  if (s.holdout.size() < static_cast<size_t>(detect::kMinHoldoutWindows) || s.fit.size() < 10) {
    return Fail(Error::Invalid(fmt::format(
        "{} good images: need at least {} (10 to fit, {} held out for thresholds at holdout {})",
        all.size(), 10 + detect::kMinHoldoutWindows, detect::kMinHoldoutWindows, holdout)));
  }
  return s;
}

namespace {

void MirrorLeftRight(const vision::ImageView& in, vision::Image& out) {
  out.Reset(in.width, in.height, in.channels);
  const int c = in.channels;
  for (int y = 0; y < in.height; ++y) {
    const uint8_t* s = in.row(y);
    uint8_t* d = out.data() + static_cast<size_t>(y) * in.width * c;
    for (int x = 0; x < in.width; ++x)
      std::copy_n(s + static_cast<size_t>(in.width - 1 - x) * c, c, d + static_cast<size_t>(x) * c);
  }
}

// The head's map options: padding masked for letterboxed inputs (channel 0's value at the pad
// level, give or take half a level).
detect::MapOptions MapOptionsFor(const ImageTrainOptions& o) {
  detect::MapOptions m = o.map;
  m.mask_padding = o.preprocess.fit == "letterbox";
  const float sd = o.preprocess.std[0];
  m.pad_value = (vision::PreprocessSpec::kPadLevel / 255.0f - o.preprocess.mean[0]) / sd;
  m.pad_tolerance = 0.5f / 255.0f / sd;
  return m;
}

// Runs the embedding graph on every fitting image and hands each embedding to `add`.
Status ForEachEmbedding(const detect::EmbeddingGraph& eg, const ImageTrainOptions& o,
                        const std::vector<std::string>& files,
                        const std::function<Status(std::span<const float>)>& add) {
  model::SessionOptions so;
  so.intra_op_threads = o.threads;
  TEND_ASSIGN_OR_RETURN(std::string bytes, Serialize(eg.model));
  TEND_ASSIGN_OR_RETURN(
      auto session,
      model::Session::LoadBytes({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, so,
                                "embedding"));
  TEND_RETURN_NOT_OK(
      session->Prepare({{1, o.preprocess.channels, o.preprocess.height, o.preprocess.width}}));
  vision::Preprocessor pre(o.preprocess);
  vision::Image mirrored;
  auto embed = [&](const vision::ImageView& v) -> Status {
    TEND_RETURN_NOT_OK(pre.Run(v, session->input(0)));
    TEND_RETURN_NOT_OK(session->Run());
    return add(session->output(0));
  };
  return ForEachImage(files, [&](const sources::Frame& f, int64_t i) -> Status {
    auto st = embed(f.image.view());
    if (st && o.flip) {
      MirrorLeftRight(f.image.view(), mirrored);
      st = embed(mirrored.view());
    }
    if (!st) return Fail(st.error().Wrap(f.path));
    if (o.progress)
      o.progress("fitting", static_cast<double>(i + 1) / static_cast<double>(files.size()));
    return Ok();
  });
}

// Fits the chosen detector on the fitting images and appends its head to the graph; returns the
// card's "detector" section.
Result<json> FitDetector(detect::EmbeddingGraph& eg, const ImageTrainOptions& o,
                         const std::vector<std::string>& files) {
  if (o.detector == "padim") {
    detect::PatchGaussianFitter fitter(eg.dims, eg.height, eg.width);
    TEND_RETURN_NOT_OK(
        ForEachEmbedding(eg, o, files, [&](std::span<const float> e) { return fitter.Add(e); }));
    TEND_ASSIGN_OR_RETURN(detect::PatchGaussian g, fitter.Fit(o.eps));
    TEND_RETURN_NOT_OK(detect::AppendPatchGaussianHead(eg, g, MapOptionsFor(o)));
    return json{{"kind", "padim"},
                {"eps", g.eps},
                {"grid", {g.height, g.width}},
                {"dims", g.dims},
                {"fit_images", g.samples},
                {"flip", o.flip},
                {"map", MapOptionsFor(o).ToJson()}};
  }
  if (o.detector == "patchcore") {
    detect::PatchMemoryCollector collector(eg.dims, eg.height, eg.width);
    TEND_RETURN_NOT_OK(
        ForEachEmbedding(eg, o, files, [&](std::span<const float> e) { return collector.Add(e); }));
    if (o.progress) o.progress("coreset", 0.0);
    TEND_ASSIGN_OR_RETURN(detect::PatchMemory m, collector.Fit(o.coreset));
    TEND_RETURN_NOT_OK(detect::AppendPatchMemoryHead(eg, m, MapOptionsFor(o)));
    return json{{"kind", "patchcore"},
                {"grid", {m.height, m.width}},
                {"dims", m.dims},
                {"fit_images", m.samples},
                {"patches", m.patches},
                {"flip", o.flip},
                {"map", MapOptionsFor(o).ToJson()},
                {"bank", m.size()},
                {"coreset",
                 {{"fraction", o.coreset.fraction},
                  {"max_size", o.coreset.max_size},
                  {"projection", o.coreset.projection},
                  {"seed", o.coreset.seed}}}};
  }
  return Fail(Error::Invalid("image detector '" + o.detector + "': expected padim or patchcore"));
}

detect::ModelCard MakeCard(const ImageTrainOptions& o, const detect::EmbeddingGraph& eg,
                           const json& info, const json& detector) {
  detect::ModelCard c;
  c.name = o.name;
  c.version = o.version;
  c.detector = o.detector;
  c.input_kind = "image";
  c.created = detect::NowIso8601Utc();
  c.feature_spec = {{"preprocess", o.preprocess.ToJson()},
                    {"embedding", o.embedding.ToJson()},
                    {"detector", detector},
                    {"backbone", Provenance(o.backbone, info)}};
  c.thresholds = {1, 2, 3};  // replaced by the calibration
  c.training_summary = {{"inputs", o.inputs},
                        {"fit_images", detector.value("fit_images", int64_t{0})},
                        {"embedding_grid", {eg.height, eg.width}},
                        {"embedding_channels_total", eg.total_channels}};
  return c;
}

Status SetCard(onnx::ModelProto& m, const detect::ModelCard& c) {
  TEND_RETURN_NOT_OK(c.Validate());
  m.clear_metadata_props();
  for (const auto& [k, v] : c.ToMetadata()) {
    auto* p = m.add_metadata_props();
    p->set_key(k);
    p->set_value(v);
  }
  return Ok();
}

}  // namespace

Result<ImageTrainResult> TrainImageModel(ImageTrainOptions o) {
  const auto t0 = std::chrono::steady_clock::now();
  TEND_ASSIGN_OR_RETURN(ImageSplit split, SplitImageInputs(o.inputs, o.holdout));
  TEND_ASSIGN_OR_RETURN(json info, BackboneInfo(o.backbone));
  TEND_RETURN_NOT_OK(ApplyBackboneDefaults(info, o));
  TEND_RETURN_NOT_OK(o.preprocess.Validate());
  TEND_ASSIGN_OR_RETURN(onnx::ModelProto backbone, ReadProto(o.backbone));
  TEND_ASSIGN_OR_RETURN(
      detect::EmbeddingGraph eg,
      detect::BuildEmbeddingGraph(
          backbone, o.embedding, {o.preprocess.channels, o.preprocess.height, o.preprocess.width}));
  TEND_ASSIGN_OR_RETURN(json detector, FitDetector(eg, o, split.fit));
  detect::ModelCard card = MakeCard(o, eg, info, detector);
  TEND_RETURN_NOT_OK(SetCard(eg.model, card));
  // Calibrate on held-out good images, scored by the finished model exactly as served.
  TEND_ASSIGN_OR_RETURN(std::string provisional, Serialize(eg.model));
  ImageServeOptions so;
  so.session.intra_op_threads = o.threads;
  so.warmup_runs = 0;
  TEND_ASSIGN_OR_RETURN(auto served, ImageModel::LoadBytes(provisional, "calibration", so));
  ImageTrainResult r;
  ImageScore s;
  served->PrepareOut(s);
  TEND_RETURN_NOT_OK(ForEachImage(split.holdout, [&](const sources::Frame& f, int64_t i) -> Status {
    auto st = served->Score(f.image.view(), s);
    if (!st) return Fail(st.error().Wrap(f.path));
    r.holdout_scores.push_back(s.score);
    if (o.progress)
      o.progress("calibrating",
                 static_cast<double>(i + 1) / static_cast<double>(split.holdout.size()));
    return Ok();
  }));
  TEND_ASSIGN_OR_RETURN(auto cal, detect::CalibrateThresholds(r.holdout_scores));
  card.thresholds = cal.thresholds;
  card.calibration = cal.report;
  card.calibration["holdout"] = fmt::format("every {}th good image (index {} mod {}), never fitted",
                                            split.every, split.every - 1, split.every);
  card.training_summary["holdout_images"] = split.holdout.size();
  card.training_summary["train_seconds"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  TEND_RETURN_NOT_OK(SetCard(eg.model, card));
  TEND_ASSIGN_OR_RETURN(r.bytes, Serialize(eg.model));
  r.card = std::move(card);
  r.fit_images = static_cast<int64_t>(split.fit.size());
  r.holdout_images = static_cast<int64_t>(split.holdout.size());
  return r;
}

}  // namespace tend::inspect
