// A tend vibration model ready to serve: the ONNX session, its model card (metadata), the feature
// extractor rebuilt from the card, and preallocated buffers. Score() turns one planar window into a
// score and the top contributing features without allocating. It serves the two model kinds of
// tend's own model files (tend.input_kind "features" and "raw"; see src/runtime/components).
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "agent/model.h"
#include "agent/windowing.h"
#include "core/status.h"
#include "decide/decider.h"
#include "decide/decision.h"
#include "detect/model_card.h"
#include "dsp/features.h"
#include "model/session.h"

namespace tend::agent {

struct ServeOptions {
  model::SessionOptions session;
  int top_k = 3;
  int warmup_runs = 10;
};

class ServedModel final : public Model {
 public:
  static Result<std::unique_ptr<ServedModel>> Load(const std::string& path, const ServeOptions& opts);
  static Result<std::unique_ptr<ServedModel>> LoadBytes(std::span<const uint8_t> bytes,
                                                        const std::string& name,
                                                        const ServeOptions& opts);

  // `window` is planar (channels x window samples). Fills `out` (call PrepareOut once first).
  // A NaN or Inf sample is an error naming the sample.
  Status Score(std::span<const float> window, ScoreOut& out);
  // Model: the event must be f32 [channels, window].
  Status Score(const EventView& event, ScoreOut& out) override;
  void PrepareOut(ScoreOut& out) const override;

  const detect::ModelCard& card() const { return card_; }
  const WindowingSpec& windowing() const { return windowing_; }
  const std::vector<std::string>& feature_names() const { return card_.feature_names; }
  const std::string& kind() const override { return card_.input_kind; }
  const std::string& name() const override { return card_.name; }
  const std::string& version() const override { return card_.version; }
  const ModelInput& input() const override { return input_; }
  const std::vector<std::string>& contributor_names() const override { return card_.feature_names; }
  SeverityThresholds thresholds() const override;
  ModelInfo info() const override;
  const std::string& path() const override { return path_; }
  bool raw_input() const { return raw_; }
  // Features of the last scored window (feature models only): what training sees, too.
  std::span<const float> last_features() const override;
  bool SetAdaptiveBaseline(const AdaptiveBaseline* baseline) override;

 private:
  ServedModel() = default;
  Status Init(const ServeOptions& opts);

  std::string path_;
  std::unique_ptr<model::Session> session_;
  detect::ModelCard card_;
  WindowingSpec windowing_;
  ModelInput input_;
  std::unique_ptr<dsp::FeatureExtractor> extractor_;
  bool raw_ = false;
  int contrib_output_ = -1;
  int top_k_ = 3;
  std::vector<int> order_;  // scratch for top-k
  const AdaptiveBaseline* adaptive_ = nullptr;
  std::vector<float> raw_features_;  // the features before adaptation (sized when adapting)
  int64_t loaded_unix_ = 0;
};

// Parses the card's "feature_spec" object: {"windowing": {...}, "features": {...}}.
Result<WindowingSpec> WindowingFromCard(const detect::ModelCard& card);
Result<dsp::FeatureSpec> FeaturesFromCard(const detect::ModelCard& card);

}  // namespace tend::agent
