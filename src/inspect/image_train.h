// Fitting an image anomaly model on folders of good parts: every image is decoded, preprocessed
// the way the model will record it, run through the backbone's embedding graph, and fed to the
// per-location Gaussians (detect/patch_gaussian.h); the scoring head is appended to the same
// graph; held-out good images (every k-th, never fitted) are scored by that finished graph to
// calibrate LOW/MEDIUM/HIGH (detect/calibrate.h). The result is one self-describing ONNX file.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"
#include "detect/image_graph.h"
#include "detect/model_card.h"
#include "detect/patch_memory.h"
#include "vision/preprocess.h"

namespace tend::inspect {

struct ImageTrainOptions {
  std::vector<std::string> inputs;  // image sets (sources/image_files.h), good parts only
  std::string backbone;             // ONNX file
  vision::PreprocessSpec preprocess;
  // Layers empty: the backbone's recommended layers (its "tend.backbone" metadata), else error.
  detect::EmbeddingSpec embedding;
  bool mean_std_given = false;  // preprocess.mean/std set by the user; else the backbone's
  // "padim" (per-location Gaussians, detect/patch_gaussian.h) or "patchcore" (memory bank with a
  // greedy coreset, detect/patch_memory.h).
  std::string detector = "padim";
  double eps = 0.01;               // padim: covariance ridge
  detect::CoresetOptions coreset;  // patchcore
  // Smoothing of the anomaly map (mask_padding and pad_value are set from `preprocess`: on for
  // "letterbox").
  detect::MapOptions map;
  // Also fit each fitting image mirrored left-right (the held-out ones are scored as they are).
  bool flip = false;
  // Every round(1/holdout)-th image (in input order) is held out for calibration; at least
  // detect::kMinHoldoutWindows images.
  double holdout = 0.2;
  std::string name = "part-inspection", version = "1";
  int threads = 1;  // ONNX Runtime intra-op threads while fitting
  std::function<void(const std::string& stage, double fraction)> progress;
};

struct ImageTrainResult {
  std::string bytes;  // the model file
  detect::ModelCard card;
  int64_t fit_images = 0, holdout_images = 0;
  std::vector<double> holdout_scores;
};

Result<ImageTrainResult> TrainImageModel(ImageTrainOptions options);

// Every image of the inputs (folders, globs, DIR@every=N...), in input order.
Result<std::vector<std::string>> ListImageInputs(const std::vector<std::string>& inputs);

// tend train's split of the inputs' images: every k-th (k = round(1 / holdout), index k-1 mod k)
// held out for the thresholds, never fitted; the rest fitted. `tend train --recalibrate` of an
// image model re-derives the held-out images with it.
struct ImageSplit {
  std::vector<std::string> fit, holdout;
  size_t every = 0;
};
Result<ImageSplit> SplitImageInputs(const std::vector<std::string>& inputs, double holdout);

// The backbone file's "tend.backbone" metadata (provenance, recommended preprocessing and
// layers); an empty object when it has none.
Result<nlohmann::json> BackboneInfo(const std::string& path);

}  // namespace tend::inspect
