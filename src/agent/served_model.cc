#include "agent/served_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <fmt/format.h>

#include "core/log.h"

namespace tend::agent {
namespace {

double MsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

std::string ShapeStr(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) r += ',';
    r += std::to_string(s[i]);  // appended, not "," + ...: GCC 12 -O3 warns (-Wrestrict) on that
  }
  return r + "]";
}

}  // namespace

Result<WindowingSpec> WindowingFromCard(const detect::ModelCard& card) {
  const auto& fs = card.feature_spec;
  if (!fs.is_object() || !fs.contains("windowing")) {
    return Fail(Error::Model("model metadata: tend.feature_spec has no 'windowing' object"));
  }
  auto w = WindowingSpec::FromJson(fs["windowing"]);
  if (!w) return Fail(w.error().Wrap("model metadata"));
  return *w;
}

Result<dsp::FeatureSpec> FeaturesFromCard(const detect::ModelCard& card) {
  const auto& fs = card.feature_spec;
  if (!fs.is_object() || !fs.contains("features")) {
    return Fail(Error::Model("model metadata: tend.feature_spec has no 'features' object"));
  }
  auto spec = dsp::FeatureSpec::FromJson(fs["features"]);
  if (!spec) return Fail(spec.error().Wrap("model metadata: features"));
  return *spec;
}

Result<std::unique_ptr<ServedModel>> ServedModel::Load(const std::string& path,
                                                       const ServeOptions& opts) {
  std::unique_ptr<ServedModel> m(new ServedModel());
  m->path_ = path;
  TEND_ASSIGN_OR_RETURN(m->session_, model::Session::LoadFile(path, opts.session));
  TEND_RETURN_NOT_OK(m->Init(opts));
  return m;
}

Result<std::unique_ptr<ServedModel>> ServedModel::LoadBytes(std::span<const uint8_t> bytes,
                                                            const std::string& name,
                                                            const ServeOptions& opts) {
  std::unique_ptr<ServedModel> m(new ServedModel());
  m->path_ = name;
  TEND_ASSIGN_OR_RETURN(m->session_, model::Session::LoadBytes(bytes, opts.session, name));
  TEND_RETURN_NOT_OK(m->Init(opts));
  return m;
}

Status ServedModel::Init(const ServeOptions& opts) {
  auto fail = [&](const std::string& what) { return Fail(Error::Model(path_ + ": " + what)); };
  auto card = detect::ModelCard::FromMetadata(session_->metadata());
  if (!card) return Fail(card.error().Wrap(path_));
  card_ = std::move(*card);
  auto w = WindowingFromCard(card_);
  if (!w) return Fail(w.error().Wrap(path_));
  windowing_ = *w;
  input_.event = EventSpec::Make(ElementType::kF32, {windowing_.channels, windowing_.window});
  input_.windowing = windowing_;
  top_k_ = std::max(0, opts.top_k);

  if (session_->inputs().size() != 1) {
    return fail(fmt::format("expected 1 input, the graph has {}", session_->inputs().size()));
  }
  if (session_->outputs().empty()) return fail("the graph has no outputs");
  const auto& in = session_->inputs()[0];
  raw_ = card_.input_kind == "raw";
  std::vector<int64_t> shape;
  if (raw_) {
    // Raw-window models take the planar window as [1, channels, window] (or [1, window] mono).
    if (in.shape.size() == 3) {
      shape = {1, windowing_.channels, windowing_.window};
    } else if (in.shape.size() == 2 && windowing_.channels == 1) {
      shape = {1, windowing_.window};
    } else {
      return fail(fmt::format("raw-window model input '{}' has shape {}; expected [N,{},{}]",
                              in.name, ShapeStr(in.shape), windowing_.channels, windowing_.window));
    }
  } else if (card_.input_kind == "features") {
    auto spec = FeaturesFromCard(card_);
    if (!spec) return Fail(spec.error().Wrap(path_));
    if (spec->sample_rate != windowing_.sample_rate || spec->channels != windowing_.channels ||
        spec->window != windowing_.window) {
      return fail("model metadata contradicts itself: feature spec and windowing disagree on "
                  "sample rate, channels or window length");
    }
    auto names = spec->FeatureNames();
    if (names != card_.feature_names) {
      return fail(fmt::format(
          "model metadata: the feature spec yields {} features that differ from the {} feature "
          "names the model was trained on (train/serve skew)",
          names.size(), card_.feature_names.size()));
    }
    TEND_ASSIGN_OR_RETURN(extractor_, dsp::FeatureExtractor::Create(*spec));
    shape = {1, static_cast<int64_t>(spec->Size())};
    std::vector<std::vector<int64_t>> out_shapes;
    for (auto& o : session_->outputs()) out_shapes.push_back(o.shape);
    auto st = card_.CheckAgainstGraph(in.shape, out_shapes);
    if (!st) return Fail(st.error().Wrap(path_));
  } else {
    return fail("model metadata: tend.input_kind must be 'features' or 'raw', got '" +
                card_.input_kind + "'");
  }
  auto st = session_->Prepare({shape});
  if (!st) return Fail(st.error().Wrap(path_));
  for (size_t i = 0; i < session_->outputs().size(); ++i) {
    if (session_->outputs()[i].name == "contributions") contrib_output_ = static_cast<int>(i);
  }
  if (contrib_output_ >= 0 &&
      session_->output(static_cast<size_t>(contrib_output_)).size() != card_.feature_names.size()) {
    contrib_output_ = -1;  // raw models may report per-channel or nothing: no top_sensors then
  }
  order_.resize(card_.feature_names.size());
  TEND_RETURN_NOT_OK(session_->Warmup(opts.warmup_runs));
  loaded_unix_ = std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
  TEND_LOG_INFO("model {} v{} ({}, {} input, {} features) on {}", card_.name, card_.version,
                card_.detector, card_.input_kind, card_.feature_names.size(), session_->provider());
  return Ok();
}

void ServedModel::PrepareOut(ScoreOut& out) const {
  out.top.assign(static_cast<size_t>(top_k_), 0);
  out.n_top = 0;
}

Status ServedModel::Score(std::span<const float> window, ScoreOut& out) {
  size_t need = static_cast<size_t>(windowing_.channels) * static_cast<size_t>(windowing_.window);
  if (window.size() != need) {
    return Fail(Error::Invalid(
        fmt::format("window has {} samples, the model expects {}", window.size(), need)));
  }
  auto t0 = std::chrono::steady_clock::now();
  auto input = session_->input(0);
  if (raw_) {
    for (size_t i = 0; i < window.size(); ++i) {
      if (!std::isfinite(window[i])) [[unlikely]] {
        return Fail(Error::Invalid(fmt::format("window has a {} sample (channel {}, sample {})",
                                               std::isnan(window[i]) ? "NaN" : "Inf",
                                               i / static_cast<size_t>(windowing_.window),
                                               i % static_cast<size_t>(windowing_.window))));
      }
    }
    std::copy(window.begin(), window.end(), input.begin());
  } else {
    TEND_RETURN_NOT_OK(extractor_->Compute(window, input));
    if (adaptive_) {
      std::copy(input.begin(), input.end(), raw_features_.begin());
      adaptive_->Apply(input);
    }
  }
  auto t1 = std::chrono::steady_clock::now();
  out.features_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  TEND_RETURN_NOT_OK(session_->Run());
  out.inference_ms = MsSince(t1);
  out.score = session_->output(0)[0];
  out.n_top = 0;
  if (contrib_output_ >= 0 && top_k_ > 0) {
    auto c = session_->output(static_cast<size_t>(contrib_output_));
    for (size_t i = 0; i < order_.size(); ++i) order_[i] = static_cast<int>(i);
    int k = std::min<int>(top_k_, static_cast<int>(order_.size()));
    std::partial_sort(order_.begin(), order_.begin() + k, order_.end(),
                      [&](int a, int b) { return c[static_cast<size_t>(a)] > c[static_cast<size_t>(b)]; });
    for (int i = 0; i < k; ++i) out.top[static_cast<size_t>(i)] = order_[static_cast<size_t>(i)];
    out.n_top = k;
  }
  return Ok();
}

Status ServedModel::Score(const EventView& event, ScoreOut& out) {
  if (!(event.spec == input_.event)) {
    return Fail(Error::Invalid(fmt::format("event is {}, the model takes {}", event.spec.ToString(),
                                           input_.event.ToString())));
  }
  return Score(event.as<float>(), out);
}

std::span<const float> ServedModel::last_features() const {
  if (raw_) return {};
  if (adaptive_) return raw_features_;
  return session_->input(0);
}

bool ServedModel::SetAdaptiveBaseline(const AdaptiveBaseline* baseline) {
  if (raw_) return false;
  if (baseline && baseline->mean().size() != session_->input(0).size()) return false;
  raw_features_.resize(session_->input(0).size());
  adaptive_ = baseline;
  return true;
}

SeverityThresholds ServedModel::thresholds() const {
  return {card_.thresholds.low, card_.thresholds.medium, card_.thresholds.high};
}

ModelInfo ServedModel::info() const {
  ModelInfo i;
  i.name = card_.name;
  i.version = card_.version;
  i.provider = session_->provider();
  i.loaded_unix = loaded_unix_;
  // card_.created is ISO-8601 UTC ("2026-11-29T16:00:00Z").
  std::tm tm{};
  if (strptime(card_.created.c_str(), "%Y-%m-%dT%H:%M:%S", &tm)) i.created_unix = timegm(&tm);
  return i;
}

}  // namespace tend::agent
