// INT8 for image models: the calibration set `tend quantize` needs, made from image folders through
// the model's own preprocessing (so calibration sees exactly what serving sees), and the
// re-derivation of LOW/MEDIUM/HIGH for a converted model on the held-out good images its FP32 fit
// used (`tend train --recalibrate` of an image model), so an INT8 model ships with thresholds of
// its own scores.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/status.h"
#include "detect/model_card.h"
#include "optimize/npy.h"

namespace tend::inspect {

// Label-free augmentations of a calibration image (applied to the preprocessed input, which is
// the same as flipping the ROI: resize and per-frame standardisation commute with a flip).
enum class Flip { kNone, kHorizontal, kVertical };

// "hflip" / "vflip" (the identity is always included). Error names the unknown one.
Result<std::vector<Flip>> ParseAugmentations(const std::vector<std::string>& names);

struct ImageCalibrationOptions {
  std::vector<std::string> inputs;  // image sets (sources/image_files.h): good parts, fitting split
  std::vector<Flip> augment;        // besides the image as it is
  // At most this many inputs (0 = all), spread evenly over (image, augmentation) pairs in order;
  // only the chosen images are decoded.
  int64_t max_samples = 0;
  std::function<void(int64_t done, int64_t total)> progress;
};

struct ImageCalibrationSet {
  optimize::NpyArray data;  // [N, C, H, W] float32: the network's input, as ImageModel computes it
  int64_t images = 0;       // distinct images listed in the inputs
  int64_t augmented = 0;    // rows that are a flipped copy
  std::vector<std::string> training_inputs;  // the model card's fitting inputs (for a warning)
};

// Every image of `inputs` preprocessed as the image model at `model_path` says (its card's ROI,
// resize, colour, intensity normalisation, mean/std), plus the requested flips of each. Errors: not
// an image model, a bad image (named), no images.
Result<ImageCalibrationSet> ImageCalibrationData(const std::string& model_path,
                                                 const ImageCalibrationOptions& options);

struct ImageRecalibrationOptions {
  // The good-image sets the model was fitted on (`tend train --input ...`), in the same order; the
  // held-out images are every round(1/holdout)-th of them, exactly as tend train chose them.
  std::vector<std::string> inputs;
  double holdout = 0.25;
  std::string version;  // "" = the model's version + ".r"
  int threads = 1;
  std::function<void(double fraction)> progress;
};

struct ImageRecalibrationResult {
  std::string bytes;  // the same graph, the card's thresholds and calibration replaced
  detect::ModelCard card;
  detect::Thresholds before;
  std::vector<double> holdout_scores;
  int64_t holdout_images = 0;
};

// Scores the held-out good images with the model as it is (e.g. after `tend quantize`) and
// calibrates its thresholds from those scores (detect/calibrate.h, the rule tend train uses).
// Errors: not an image model, a held-out count that differs from the one the card records (other
// inputs or another --holdout than the fit), a bad image.
Result<ImageRecalibrationResult> RecalibrateImageModel(const std::string& model_path,
                                                       const ImageRecalibrationOptions& options);

}  // namespace tend::inspect
