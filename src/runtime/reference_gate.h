// The OTA quality gate: ROC AUC of a candidate model on the device's local reference set
// (normal and anomalous recordings with known answers), scored exactly as the agent scores them.
#pragma once

#include <string>
#include <vector>

#include "agent/model.h"
#include "core/status.h"
#include "sources/source.h"

namespace tend::runtime {

struct ReferenceSet {
  // input specs ("a.wav", "b.wav@0:60", "sim:..."; image models: "good/", "defects/*.png")
  std::vector<std::string> normal, anomalous;
  sources::SourceOptions source;  // raw/CSV sample rate and channels, channel pick
};

// Scores every event of the reference inputs with `model` and returns the ROC AUC of anomalous
// against normal: every window of sample streams for a model that takes windows; every image of
// folders/globs/files ("good/", "parts/*.png", "good@every=5") for an image model, each fitted
// to the model's input (ROI, size, grey/RGB) exactly as the "images" source fits camera frames.
// Errors: an empty set, a model that takes neither, a bad input (an undecodable reference image
// too).
Result<double> ReferenceAuc(agent::Model& model, const ReferenceSet& set);

}  // namespace tend::runtime
