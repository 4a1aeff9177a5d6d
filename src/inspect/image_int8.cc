#include "inspect/image_int8.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/fs.h"
#include "detect/calibrate.h"
#include "inspect/image_model.h"
#include "inspect/image_train.h"
#include "model/metadata.h"
#include "vision/decode.h"
#include "vision/preprocess.h"

namespace tend::inspect {

namespace {

using nlohmann::json;

Result<detect::ModelCard> ImageCard(const std::string& path) {
  TEND_ASSIGN_OR_RETURN(auto props, model::ReadMetadataProps(path));
  auto card = detect::ModelCard::FromMetadata(props);
  if (!card) return Fail(card.error().Wrap(path));
  if (card->input_kind != "image") {
    return Fail(Error::Invalid(fmt::format(
        "{}: not an image model (input kind '{}'); for signal models use `tend windows`", path,
        card->input_kind)));
  }
  return std::move(*card);
}

// Flips a planar [C,H,W] input in place.
void FlipPlanes(std::span<float> x, int channels, int height, int width, Flip f) {
  const size_t w = static_cast<size_t>(width), h = static_cast<size_t>(height);
  for (int c = 0; c < channels; ++c) {
    float* p = x.data() + static_cast<size_t>(c) * w * h;
    if (f == Flip::kHorizontal) {
      for (size_t y = 0; y < h; ++y) std::reverse(p + y * w, p + (y + 1) * w);
    } else if (f == Flip::kVertical) {
      for (size_t y = 0; y < h / 2; ++y)
        std::swap_ranges(p + y * w, p + (y + 1) * w, p + (h - 1 - y) * w);
    }
  }
}

// Decodes and preprocesses one file into `out`.
Status PreprocessFile(const std::string& path, vision::Decoder& dec, vision::Preprocessor& pre,
                      vision::Image& img, std::span<float> out) {
  TEND_ASSIGN_OR_RETURN(std::string bytes, fs::ReadFile(path));
  auto st = dec.Decode({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, {}, img);
  if (st) st = pre.Run(img.view(), out);
  if (!st) return Fail(st.error().Wrap(path));
  return Ok();
}

}  // namespace

Result<std::vector<Flip>> ParseAugmentations(const std::vector<std::string>& names) {
  std::vector<Flip> out;
  for (const auto& n : names) {
    Flip f;
    if (n == "hflip") {
      f = Flip::kHorizontal;
    } else if (n == "vflip") {
      f = Flip::kVertical;
    } else {
      return Fail(Error::Invalid("augmentation '" + n + "': expected hflip or vflip"));
    }
    if (std::find(out.begin(), out.end(), f) == out.end()) out.push_back(f);
  }
  return out;
}

Result<ImageCalibrationSet> ImageCalibrationData(const std::string& model_path,
                                                 const ImageCalibrationOptions& o) {
  TEND_ASSIGN_OR_RETURN(detect::ModelCard card, ImageCard(model_path));
  auto spec = vision::PreprocessSpec::FromJson(card.feature_spec["preprocess"]);
  if (!spec) return Fail(spec.error().Wrap(model_path + ": model metadata"));
  TEND_ASSIGN_OR_RETURN(std::vector<std::string> files, ListImageInputs(o.inputs));
  if (files.empty()) return Fail(Error::Invalid("no images in the inputs"));
  // Rows in order: image 0 as it is, its flips, image 1, ...; thinned evenly to max_samples.
  std::vector<Flip> variants = {Flip::kNone};
  variants.insert(variants.end(), o.augment.begin(), o.augment.end());
  const size_t total = files.size() * variants.size();
  size_t n = total;
  if (o.max_samples > 0) n = std::min(n, static_cast<size_t>(o.max_samples));
  ImageCalibrationSet r;
  r.images = static_cast<int64_t>(files.size());
  r.training_inputs = card.training_summary.value("inputs", std::vector<std::string>{});
  const size_t row = spec->InputSize();
  r.data.shape = {static_cast<int64_t>(n), spec->channels, spec->height, spec->width};
  r.data.data.resize(n * row);
  vision::Decoder dec;
  vision::Preprocessor pre(*spec);
  vision::Image img;
  std::vector<float> base(row);
  size_t decoded = static_cast<size_t>(-1);
  for (size_t k = 0; k < n; ++k) {
    const size_t i = k * total / n;  // (image, variant) pair
    const size_t file = i / variants.size();
    if (file != decoded) {
      TEND_RETURN_NOT_OK(PreprocessFile(files[file], dec, pre, img, base));
      decoded = file;
    }
    std::span<float> dst(r.data.data.data() + k * row, row);
    std::memcpy(dst.data(), base.data(), row * sizeof(float));
    const Flip f = variants[i % variants.size()];
    FlipPlanes(dst, spec->channels, spec->height, spec->width, f);
    if (f != Flip::kNone) ++r.augmented;
    if (o.progress) o.progress(static_cast<int64_t>(k + 1), static_cast<int64_t>(n));
  }
  return r;
}

namespace {

// The held-out images of tend train's split (SplitImageInputs), checked against the counts the
// card recorded at fitting time.
Result<ImageSplit> HeldOut(const detect::ModelCard& card, const std::string& path,
                           const ImageRecalibrationOptions& o) {
  TEND_ASSIGN_OR_RETURN(ImageSplit split, SplitImageInputs(o.inputs, o.holdout));
  const auto& ts = card.training_summary;
  const int64_t fit = ts.value("fit_images", int64_t{-1}),
                hold = ts.value("holdout_images", int64_t{-1});
  const int64_t n_hold = static_cast<int64_t>(split.holdout.size());
  const int64_t n_fit = static_cast<int64_t>(split.fit.size());
  if ((hold >= 0 && hold != n_hold) || (fit >= 0 && fit != n_fit)) {
    return Fail(Error::Invalid(fmt::format(
        "{}: these inputs at holdout {} give {} fitting / {} held-out images, the model was fitted "
        "on {} / {} (its inputs: {}): give the fit's --input and --holdout",
        path, o.holdout, n_fit, n_hold, fit, hold, ts.value("inputs", json::array()).dump())));
  }
  return split;
}

}  // namespace

Result<ImageRecalibrationResult> RecalibrateImageModel(const std::string& model_path,
                                                       const ImageRecalibrationOptions& o) {
  TEND_ASSIGN_OR_RETURN(std::string bytes, fs::ReadFile(model_path));
  TEND_ASSIGN_OR_RETURN(detect::ModelCard card, ImageCard(model_path));
  TEND_ASSIGN_OR_RETURN(ImageSplit split, HeldOut(card, model_path, o));
  const std::vector<std::string>& held = split.holdout;
  const size_t every = split.every;
  ImageServeOptions so;
  so.session.intra_op_threads = o.threads;
  so.warmup_runs = 0;
  TEND_ASSIGN_OR_RETURN(auto served, ImageModel::LoadBytes(bytes, model_path, so));
  ImageRecalibrationResult r;
  ImageScore s;
  served->PrepareOut(s);
  vision::Decoder dec;
  vision::Image img;
  for (size_t i = 0; i < held.size(); ++i) {
    TEND_ASSIGN_OR_RETURN(std::string enc, fs::ReadFile(held[i]));
    auto st = dec.Decode({reinterpret_cast<const uint8_t*>(enc.data()), enc.size()}, {}, img);
    if (st) st = served->Score(img.view(), s);
    if (!st) return Fail(st.error().Wrap(held[i]));
    r.holdout_scores.push_back(s.score);
    if (o.progress) o.progress(static_cast<double>(i + 1) / static_cast<double>(held.size()));
  }
  TEND_ASSIGN_OR_RETURN(auto cal, detect::CalibrateThresholds(r.holdout_scores));
  r.before = card.thresholds;
  card.thresholds = cal.thresholds;
  card.calibration = cal.report;
  card.calibration["holdout"] =
      fmt::format("every {}th good image (index {} mod {}), never fitted; scored by this model",
                  every, every - 1, every);
  card.version = o.version.empty() ? card.version + ".r" : o.version;
  card.created = detect::NowIso8601Utc();
  card.training_summary["recalibrated_from"] = model_path;
  TEND_RETURN_NOT_OK(card.Validate());
  // The card's keys replaced; the other properties (the quantiser's record) kept.
  TEND_ASSIGN_OR_RETURN(
      r.bytes, model::WithMetadataProps({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()},
                                        model_path, card.ToMetadata()));
  r.card = std::move(card);
  r.holdout_images = static_cast<int64_t>(held.size());
  return r;
}

}  // namespace tend::inspect
