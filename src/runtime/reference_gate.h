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
  std::vector<std::string> normal, anomalous;  // input specs ("a.wav", "b.wav@0:60", "sim:...")
  sources::SourceOptions source;               // raw/CSV sample rate and channels, channel pick
};

// Scores every window of the reference inputs with `model` (which must take windowed sample
// streams) and returns the ROC AUC of anomalous against normal. Errors: an empty set, a model
// without windowing, a bad input.
Result<double> ReferenceAuc(agent::Model& model, const ReferenceSet& set);

}  // namespace tend::runtime
