// What the agent needs from a model, whatever its kind: the input it wants (an event spec, and
// for sample streams the windowing that cuts them), its thresholds and identity, and Score(),
// which turns one event into a score without allocating. Model kinds (features, raw window, an
// image model, ...) implement this; the runtime's registry picks the kind from the model file.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "agent/windowing.h"
#include "core/event.h"
#include "core/status.h"
#include "decide/adaptive_baseline.h"
#include "decide/decider.h"
#include "decide/decision.h"

namespace tend::agent {

// What a model wants from its source. A sample stream (vibration, sound) is cut into windows by
// `windowing`, each window then being the f32 [channels, window] event; a frame source (a
// camera) must deliver events of exactly `event`.
// Camera frames: the rectangle of each frame (in the camera's pixels) that a model looks at;
// width and height 0: the whole frame.
struct FrameRoi {
  int x = 0, y = 0, width = 0, height = 0;
  bool whole() const { return width == 0 && height == 0; }
  bool operator==(const FrameRoi&) const = default;
};

struct ModelInput {
  EventSpec event;
  std::optional<WindowingSpec> windowing;
  // Camera frames: the frame source crops this from every frame and fits it to `event` (the
  // network's size) exactly as the model's preprocessing did when it was fitted.
  FrameRoi roi;
  // Camera frames: how the ROI becomes `event` — "stretch" (resized whatever its shape) or
  // "letterbox" (aspect ratio kept, padded, and with `frame_standardize` the content's intensity
  // standardised to u8 levels), as vision::PreprocessSpec's "fit".
  std::string frame_fit = "stretch";
  bool frame_standardize = false;

  std::string Describe() const;
  // Two models are interchangeable in an agent only when they take the same input.
  bool SameAs(const ModelInput& o) const;
};

struct ScoreOut {
  float score = 0;
  std::vector<int> top;  // indices into Model::contributor_names(), best first
  int n_top = 0;
  double features_ms = 0;  // preparing the input (features, copy, decode)
  double inference_ms = 0;
  std::string evidence_ref;  // set by kinds that keep evidence (e.g. an image path); else empty
};

class Model {
 public:
  virtual ~Model() = default;

  virtual const std::string& kind() const = 0;  // the registered model kind, e.g. "features"
  virtual const std::string& name() const = 0;
  virtual const std::string& version() const = 0;
  virtual const std::string& path() const = 0;
  virtual const ModelInput& input() const = 0;
  virtual SeverityThresholds thresholds() const = 0;
  virtual ModelInfo info() const = 0;
  // Names that ScoreOut::top indexes (features, channels, image regions).
  virtual const std::vector<std::string>& contributor_names() const = 0;

  // Sizes `out` once (top-k buffer) so that Score() never allocates.
  virtual void PrepareOut(ScoreOut& out) const = 0;
  // Scores one event of input().event. An event the model cannot score (wrong shape, NaN
  // samples) is an error: the agent then takes the fail-safe decision for it and counts it.
  virtual Status Score(const EventView& event, ScoreOut& out) = 0;
  // The feature vector of the last scored event, for monitors; empty when the kind has none.
  virtual std::span<const float> last_features() const { return {}; }
  // Standardise the features against an adaptive baseline (decide/adaptive_baseline.h) from the
  // next event on; nullptr: the model's own (commissioning) standardisation again. The baseline
  // must outlive its use. false when the kind has no features to adapt. last_features() stays
  // the raw features (what drift monitoring and the baseline itself compare).
  virtual bool SetAdaptiveBaseline(const AdaptiveBaseline* /*baseline*/) { return false; }
};

}  // namespace tend::agent
