#include "inspect/image_model.h"

#include <fmt/format.h>
#include <onnx/onnx_pb.h>

#include <chrono>
#include <cmath>
#include <cstring>

#include "core/fs.h"
#include "detect/image_graph.h"
#include "model/metadata.h"

namespace tend::inspect {

namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::vector<int64_t> Dims(const onnx::ValueInfoProto& v) {
  std::vector<int64_t> d;
  for (const auto& x : v.type().tensor_type().shape().dim())
    d.push_back(x.has_dim_value() ? x.dim_value() : -1);
  return d;
}

Result<std::unique_ptr<model::Session>> SessionOf(const onnx::ModelProto& m,
                                                  const std::string& name,
                                                  const model::SessionOptions& o) {
  std::string bytes;
  if (!m.SerializeToString(&bytes))
    return Fail(Error::Internal(name + ": could not serialise the graph"));
  return model::Session::LoadBytes({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()},
                                   o, name);
}

int OutputIndex(const model::Session& s, const char* name) {
  for (size_t i = 0; i < s.outputs().size(); ++i) {
    if (s.outputs()[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace

ImageModel::~ImageModel() = default;

Result<std::unique_ptr<ImageModel>> ImageModel::Load(const std::string& path,
                                                     const ImageServeOptions& opts) {
  TEND_ASSIGN_OR_RETURN(std::string bytes, fs::ReadFile(path));
  std::unique_ptr<ImageModel> m(new ImageModel());
  m->path_ = path;
  TEND_RETURN_NOT_OK(m->Init(bytes, opts));
  return m;
}

Result<std::unique_ptr<ImageModel>> ImageModel::LoadBytes(const std::string& bytes,
                                                          const std::string& name,
                                                          const ImageServeOptions& opts) {
  std::unique_ptr<ImageModel> m(new ImageModel());
  m->path_ = name;
  TEND_RETURN_NOT_OK(m->Init(bytes, opts));
  return m;
}

Status ImageModel::Init(const std::string& bytes, const ImageServeOptions& opts) {
  onnx::ModelProto proto;
  TEND_RETURN_NOT_OK(model::ParseModelProto(
      {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, path_, proto));
  std::map<std::string, std::string> props;
  for (const auto& p : proto.metadata_props()) props[p.key()] = p.value();
  auto card = detect::ModelCard::FromMetadata(props);
  if (!card) return Fail(card.error().Wrap(path_));
  card_ = std::move(*card);
  if (card_.input_kind != "image") {
    return Fail(Error::Model(
        fmt::format("{}: not an image model (input kind '{}')", path_, card_.input_kind)));
  }
  auto pre = vision::PreprocessSpec::FromJson(card_.feature_spec["preprocess"]);
  if (!pre) return Fail(pre.error().Wrap(path_ + ": model metadata"));
  pre_ = *pre;
  const auto& g = proto.graph();
  if (g.input_size() < 1) return Fail(Error::Model(path_ + ": the graph has no input"));
  std::vector<std::string> names;
  std::vector<std::vector<int64_t>> shapes;
  for (const auto& o : g.output()) {
    names.push_back(o.name());
    shapes.push_back(Dims(o));
  }
  if (auto st = card_.CheckAgainstGraph(Dims(g.input(0)), names, shapes); !st)
    return Fail(st.error().Wrap(path_));
  vision::PreprocessSpec run = pre_;
  if (opts.frames_fitted) {
    run.roi = {};  // the frame source cropped it already
    // ... and letterboxed it, standardised in u8 levels: what is left is the normalisation.
    if (run.fit == "letterbox") {
      run.fit = "stretch";
      run.intensity = "raw";
    }
  }
  preprocessor_ = std::make_unique<vision::Preprocessor>(run);
  auto split = detect::SplitAtEmbedding(proto);
  if (split) {
    TEND_ASSIGN_OR_RETURN(front_, SessionOf(split->front, path_ + " (backbone)", opts.session));
    TEND_ASSIGN_OR_RETURN(back_, SessionOf(split->back, path_ + " (detector)", opts.session));
  } else {
    TEND_ASSIGN_OR_RETURN(front_, SessionOf(proto, path_, opts.session));
  }
  const std::vector<int64_t> in = {1, pre_.channels, pre_.height, pre_.width};
  TEND_RETURN_NOT_OK(front_->Prepare({in}));
  if (back_) {
    // The back's inputs are the front's outputs, in the same order (embedding, then the mask).
    std::vector<std::vector<int64_t>> shapes;
    for (size_t i = 0; i < front_->outputs().size(); ++i) shapes.push_back(front_->output_shape(i));
    TEND_RETURN_NOT_OK(back_->Prepare(shapes));
  }
  model::Session& last = back_ ? *back_ : *front_;
  score_out_ = OutputIndex(last, detect::kScoreOutput);
  map_out_ = OutputIndex(last, detect::kAnomalyMapOutput);
  if (score_out_ < 0 || map_out_ < 0) {
    return Fail(Error::Model(path_ + ": the graph lacks 'anomaly_score' or 'anomaly_map'"));
  }
  const auto& ms = last.output_shape(static_cast<size_t>(map_out_));
  if (ms.size() != 3 || ms[0] != 1 ||
      last.output_shape(static_cast<size_t>(score_out_)) != std::vector<int64_t>{1}) {
    return Fail(
        Error::Model(path_ + ": anomaly_score must be [1] and anomaly_map [1,h,w] for one frame"));
  }
  loaded_unix_ = std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
  for (int i = 0; i < opts.warmup_runs; ++i) {
    ImageScore s;
    PrepareOut(s);
    TEND_RETURN_NOT_OK(RunSessions(s));
  }
  return Ok();
}

void ImageModel::PrepareOut(ImageScore& out) const {
  const model::Session& last = back_ ? *back_ : *front_;
  const auto& ms = last.output_shape(static_cast<size_t>(map_out_));
  out.map_height = static_cast<int>(ms[1]);
  out.map_width = static_cast<int>(ms[2]);
  out.map.assign(static_cast<size_t>(ms[1] * ms[2]), 0.0f);
}

Status ImageModel::RunSessions(ImageScore& out) {
  auto t0 = Clock::now();
  TEND_RETURN_NOT_OK(front_->Run());
  out.inference_ms = MsSince(t0);
  auto t1 = Clock::now();
  model::Session* last = front_.get();
  if (back_) {
    for (size_t i = 0; i < front_->outputs().size(); ++i) {
      auto src = front_->output(i);
      auto dst = back_->input(i);
      std::memcpy(dst.data(), src.data(), std::min(src.size(), dst.size()) * sizeof(float));
    }
    TEND_RETURN_NOT_OK(back_->Run());
    last = back_.get();
  }
  out.score = last->output(static_cast<size_t>(score_out_))[0];
  auto map = last->output(static_cast<size_t>(map_out_));
  if (out.map.size() != map.size())
    return Fail(Error::Internal("image model: PrepareOut was not called"));
  std::memcpy(out.map.data(), map.data(), map.size() * sizeof(float));
  out.scoring_ms = MsSince(t1);
  if (!std::isfinite(out.score))
    return Fail(Error::Model(path_ + ": the model returned a non-finite score"));
  return Ok();
}

Status ImageModel::Score(const vision::ImageView& frame, ImageScore& out) {
  auto t0 = Clock::now();
  TEND_RETURN_NOT_OK(preprocessor_->Run(frame, front_->input(0)));
  out.preprocess_ms = MsSince(t0);
  return RunSessions(out);
}

Status ImageModel::ScorePreprocessed(std::span<const float> input, ImageScore& out) {
  auto dst = front_->input(0);
  if (input.size() != dst.size()) {
    return Fail(Error::Invalid(
        fmt::format("image model: input of {} values, expected {}", input.size(), dst.size())));
  }
  std::memcpy(dst.data(), input.data(), input.size() * sizeof(float));
  out.preprocess_ms = 0;
  return RunSessions(out);
}

SeverityThresholds ImageModel::thresholds() const {
  return {card_.thresholds.low, card_.thresholds.medium, card_.thresholds.high};
}

ModelInfo ImageModel::info() const {
  ModelInfo i;
  i.name = card_.name;
  i.version = card_.version;
  i.provider = front_->provider();
  auto created = card_.CreatedUnix();
  i.created_unix = created ? *created : 0;
  i.loaded_unix = loaded_unix_;
  return i;
}

Result<bool> IsImageModel(const std::string& path) {
  TEND_ASSIGN_OR_RETURN(auto props, model::ReadMetadataProps(path));
  auto it = props.find(detect::kKeyInputKind);
  return it != props.end() && it->second == "\"image\"";
}

}  // namespace tend::inspect
