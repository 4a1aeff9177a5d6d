// INT8 for image models in `tend quantize --calibrate-images`, `tend windows` and `tend train
// --recalibrate`: parsing and printing only, the work is in src/inspect/image_int8.h.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/vision_commands.h"
#include "core/fs.h"
#include "inspect/image_int8.h"

namespace tend::cli {

namespace {

// Warns when the calibration images are not the model's own fitting inputs: activation ranges
// should come from good parts of the fitting split, never from the evaluation fifth or defects.
void WarnIfNotFittingSet(const std::vector<std::string>& inputs,
                         const std::vector<std::string>& fitted) {
  for (const auto& in : inputs) {
    if (std::find(fitted.begin(), fitted.end(), in) != fitted.end()) continue;
    std::fprintf(stderr,
                 "note: calibration input %s is not one the model was fitted on; calibrate on good "
                 "parts of the fitting split, never on held-out evaluation or defect images\n",
                 in.c_str());
  }
}

}  // namespace

optimize::NpyArray ImageCalibrationNpy(const std::string& model,
                                       const std::vector<std::string>& inputs,
                                       const std::vector<std::string>& augment,
                                       int64_t max_samples) {
  if (inputs.empty()) Die("no calibration images given");
  if (max_samples < 0) Die("--max-samples must be >= 0");
  inspect::ImageCalibrationOptions o;
  o.inputs = inputs;
  o.augment = OrDie(inspect::ParseAugmentations(augment), "--augment");
  o.max_samples = max_samples;
  auto progress = std::make_shared<Progress>("preprocessing calibration images");
  o.progress = [progress](int64_t done, int64_t total) {
    progress->Update(static_cast<double>(done) / static_cast<double>(total),
                     fmt::format("{}/{}", done, total));
  };
  auto set = OrDie(inspect::ImageCalibrationData(model, o), model);
  progress->Done(fmt::format("{} inputs", set.data.rows()));
  WarnIfNotFittingSet(inputs, set.training_inputs);
  // stderr: `tend quantize --json` keeps stdout for its report.
  std::fprintf(stderr, "calibration: %lld inputs %s from %lld images (%lld flipped copies)\n",
               static_cast<long long>(set.data.rows()),
               optimize::ShapeString(set.data.shape).c_str(), static_cast<long long>(set.images),
               static_cast<long long>(set.augmented));
  return std::move(set.data);
}

void RunImageRecalibrate(const std::string& model, const std::vector<std::string>& inputs,
                         const std::string& out, double holdout, const std::string& version,
                         int threads) {
  if (out.empty()) Die("no output model path given (--out MODEL.onnx)");
  inspect::ImageRecalibrationOptions o;
  o.inputs = inputs;
  o.holdout = holdout;
  o.version = version;
  o.threads = threads;
  auto progress = std::make_shared<Progress>("scoring held-out images");
  o.progress = [progress](double f) { progress->Update(f); };
  auto r = OrDie(inspect::RecalibrateImageModel(model, o), "recalibration");
  progress->Done(fmt::format("{} images", r.holdout_images));
  OrDie(fs::WriteFileAtomic(out, r.bytes), "writing model");
  const auto& b = r.before;
  const auto& t = r.card.thresholds;
  std::printf(
      "recalibrated %s on %lld held-out good images: LOW %.4g -> %.4g, MEDIUM %.4g -> %.4g, HIGH "
      "%.4g -> %.4g -> %s\n",
      model.c_str(), static_cast<long long>(r.holdout_images), static_cast<double>(b.low),
      static_cast<double>(t.low), static_cast<double>(b.medium), static_cast<double>(t.medium),
      static_cast<double>(b.high), static_cast<double>(t.high), out.c_str());
}

}  // namespace tend::cli
