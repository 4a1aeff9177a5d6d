// tend_inspect: visual inspection on top of the layers below — an image anomaly model served
// frame by frame (ImageModel), fitted on folders of good parts (image_train.h), judged on
// labelled folders (image_eval.h), and the evidence kept for every reject (evidence_store.h).
//
// ImageModel: the model file's card says how a frame becomes the network input (vision's
// PreprocessSpec) and the graph computes the anomaly map and score. The graph is run as two
// sessions split at the "embedding" tensor — the backbone, then the detector — so every frame
// reports preprocess / inference (backbone) / scoring (detector) times; nothing is allocated per
// frame after the first.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "decide/decider.h"
#include "decide/decision.h"
#include "detect/model_card.h"
#include "model/session.h"
#include "vision/image.h"
#include "vision/preprocess.h"

namespace tend::inspect {

struct ImageServeOptions {
  model::SessionOptions session;
  int warmup_runs = 3;
  // Frames come already cropped to the card's ROI and fitted to the network's size (the runtime's
  // "images" source does that, as fitting did): Score() skips the crop. Otherwise Score() takes
  // whole camera frames and crops the ROI itself (tend score, tend eval).
  bool frames_fitted = false;
};

struct ImageScore {
  float score = 0;
  std::vector<float> map;  // map_height x map_width, row-major (sized by PrepareOut)
  int map_width = 0, map_height = 0;
  double preprocess_ms = 0, inference_ms = 0, scoring_ms = 0;
};

class ImageModel {
 public:
  static Result<std::unique_ptr<ImageModel>> Load(const std::string& path,
                                                  const ImageServeOptions& opts);
  static Result<std::unique_ptr<ImageModel>> LoadBytes(const std::string& bytes,
                                                       const std::string& name,
                                                       const ImageServeOptions& opts);
  ~ImageModel();

  void PrepareOut(ImageScore& out) const;
  // One frame (u8 grey or RGB, any size: the ROI must fit). Errors name the problem (a frame the
  // ROI does not fit, a non-finite score).
  Status Score(const vision::ImageView& frame, ImageScore& out);
  // Same, on an input that is already preprocessed ([C,H,W] floats), for calibration data.
  Status ScorePreprocessed(std::span<const float> input, ImageScore& out);

  const detect::ModelCard& card() const { return card_; }
  const vision::PreprocessSpec& preprocess() const { return pre_; }
  SeverityThresholds thresholds() const;
  ModelInfo info() const;
  const std::string& path() const { return path_; }
  // Whether the backbone and detector run as separate sessions (tend-built models); otherwise
  // inference_ms covers both and scoring_ms only the copy of the outputs.
  bool split() const { return back_ != nullptr; }

 private:
  ImageModel() = default;
  Status Init(const std::string& bytes, const ImageServeOptions& opts);
  Status RunSessions(ImageScore& out);

  std::string path_;
  detect::ModelCard card_;
  vision::PreprocessSpec pre_;
  std::unique_ptr<vision::Preprocessor> preprocessor_;
  std::unique_ptr<model::Session> front_, back_;  // back_ null: one session does everything
  int score_out_ = 0, map_out_ = 1;               // output indices in the last session
  int64_t loaded_unix_ = 0;
};

// True when the model file's card says input_kind "image" (cheap: metadata only).
Result<bool> IsImageModel(const std::string& path);

}  // namespace tend::inspect
