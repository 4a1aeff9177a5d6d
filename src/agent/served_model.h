// A model ready to serve: the ONNX session, its model card (metadata), the feature extractor
// rebuilt from the card, and preallocated buffers. Score() turns one planar window into a score
// and the top contributing features without allocating.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

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

struct ScoreOut {
  float score = 0;
  std::vector<int> top;  // indices into feature_names(), best first (size top_k once prepared)
  int n_top = 0;
  double features_ms = 0;
  double inference_ms = 0;
};

class ServedModel {
 public:
  static Result<std::unique_ptr<ServedModel>> Load(const std::string& path, const ServeOptions& opts);
  static Result<std::unique_ptr<ServedModel>> LoadBytes(std::span<const uint8_t> bytes,
                                                        const std::string& name,
                                                        const ServeOptions& opts);

  // `window` is planar (channels x window samples). Fills `out` (call PrepareOut once first).
  Status Score(std::span<const float> window, ScoreOut& out);
  void PrepareOut(ScoreOut& out) const;

  const detect::ModelCard& card() const { return card_; }
  const WindowingSpec& windowing() const { return windowing_; }
  const std::vector<std::string>& feature_names() const { return card_.feature_names; }
  SeverityThresholds thresholds() const;
  ModelInfo info() const;
  const std::string& path() const { return path_; }
  bool raw_input() const { return raw_; }
  // Features of the last scored window (feature models only): what training sees, too.
  std::span<const float> last_features() const;

 private:
  ServedModel() = default;
  Status Init(const ServeOptions& opts);

  std::string path_;
  std::unique_ptr<model::Session> session_;
  detect::ModelCard card_;
  WindowingSpec windowing_;
  std::unique_ptr<dsp::FeatureExtractor> extractor_;
  bool raw_ = false;
  int contrib_output_ = -1;
  int top_k_ = 3;
  std::vector<int> order_;  // scratch for top-k
  int64_t loaded_unix_ = 0;
};

// Parses the card's "feature_spec" object: {"windowing": {...}, "features": {...}}.
Result<WindowingSpec> WindowingFromCard(const detect::ModelCard& card);
Result<dsp::FeatureSpec> FeaturesFromCard(const detect::ModelCard& card);

}  // namespace tend::agent
