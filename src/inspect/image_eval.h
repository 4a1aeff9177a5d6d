// Judging an image model on labelled folders, the way `tend eval` and the OTA quality gate need
// it: every image scored exactly as served (ImageModel), then ROC AUC overall and per anomalous
// folder (one folder = one defect kind), recall of each folder and the false-reject rate of the
// good folders at LOW / MEDIUM / HIGH, and an SVG of the score distributions with the tiers.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"
#include "inspect/image_model.h"
#include "sources/frame_source.h"

namespace tend::inspect {

struct ScoredImages {
  std::string input;               // the image set spec
  std::vector<std::string> files;  // in scoring order
  std::vector<double> scores;
};

// Sees each image with its score (JSON lines, overlays). An error stops the scoring.
using ImageCallback = std::function<Status(const sources::Frame&, const ImageScore&)>;

// Scores every image of an image set (sources/image_files.h). A bad image is an error naming it.
Result<ScoredImages> ScoreImageSet(ImageModel& model, const std::string& set,
                                   const ImageCallback& each = {});

// {"auc", "normal_images", "anomalous_images", "thresholds", "at_threshold": {LOW: {threshold,
//  recall, false_reject_rate, precision, rejects, misses}, ...}, "anomalous_inputs": [{input,
//  images, auc, recall_at_low, recall_at_medium, recall_at_high}], "normal_inputs": [{input,
//  images, false_reject_rate_at_low, ...}]}
nlohmann::json EvaluationReport(const SeverityThresholds& t,
                                const std::vector<ScoredImages>& normal,
                                const std::vector<ScoredImages>& anomalous);

// Histograms of the scores (good parts in blue, each defect folder in its own colour) with the
// three thresholds as dashed lines.
std::string ScoreDistributionSvg(const SeverityThresholds& t,
                                 const std::vector<ScoredImages>& normal,
                                 const std::vector<ScoredImages>& anomalous,
                                 const std::string& title);

// The OTA quality gate for image models: ROC AUC of the candidate at `model_path` on the device's
// local reference images with known answers (good folders vs defect folders), scored as the agent
// would score them. Mirrors the vibration gate (ReferenceAuc in the agent's runtime).
Result<double> ImageReferenceAuc(const std::string& model_path,
                                 const std::vector<std::string>& normal,
                                 const std::vector<std::string>& anomalous,
                                 const ImageServeOptions& options);

}  // namespace tend::inspect
