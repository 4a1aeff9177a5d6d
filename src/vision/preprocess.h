// What a model looks at, recorded in the model file and applied by the same code in training and
// serving: crop a region of interest, resize to the network's input with an antialiased bilinear
// filter, take grey or RGB, optionally standardise the frame's intensity, normalise
// ((x - mean) / std per channel, x = v / 255) and lay the result out planar [channels, height,
// width] as float. Anything that changes a pixel lives here, so a
// served model cannot drift from the one that was fitted (anomalib's issue #3644).
#pragma once

#include <array>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "vision/image.h"

namespace tend::vision {

// A rectangle in frame pixels; width == 0 means the whole frame.
struct Roi {
  int x = 0, y = 0, width = 0, height = 0;
  bool whole() const { return width == 0 && height == 0; }
  // The rectangle actually used for a frame of w x h: the whole frame, or this one when it fits.
  Result<Roi> Resolve(int frame_width, int frame_height) const;
};

struct PreprocessSpec {
  Roi roi;
  int width = 256, height = 256;  // network input
  std::string color = "grey";     // "grey" (BT.601 luma) or "rgb"
  int channels = 3;               // network input channels: 1, or 3 (grey is replicated)
  std::array<float, 3> mean = {0.5f, 0.5f, 0.5f};  // on v / 255
  std::array<float, 3> std = {0.5f, 0.5f, 0.5f};
  std::string resize = "bilinear-antialias";
  // "stretch": the ROI is resized to width x height whatever its shape. "letterbox": its aspect
  // ratio is kept (scaled by min(width / roi_w, height / roi_h)), centred on the canvas, the
  // rest padded with kPadLevel; intensity is standardised over the content only and rounded to
  // u8 levels before normalisation (so a frame fitted to the canvas first gives the same input),
  // and no content pixel takes kPadLevel (one at 128 becomes 129), so the graph can tell padding
  // from content (image_graph.h masks padding patches out of the score).
  std::string fit = "stretch";
  static constexpr int kPadLevel = 128;
  // "standardize": x = 0.5 + kStandardizedStd * (v - mean_frame) / std_frame over the resized
  // ROI, so exposure and lighting drift between parts does not look like a defect (on the
  // magnetic tiles it is worth 0.2 AUROC: the brightest good tiles scored highest without it).
  // The price: a part that is only brighter or darker overall is not seen. "raw": x = v / 255.
  std::string intensity = "standardize";
  static constexpr float kStandardizedStd = 0.2f;

  size_t InputSize() const {
    return static_cast<size_t>(channels) * static_cast<size_t>(width) * static_cast<size_t>(height);
  }
  // {"roi": [x, y, w, h] | null, "width", "height", "color", "channels", "mean", "std", "resize",
  //  "intensity", "fit" (only when "letterbox")}
  nlohmann::json ToJson() const;
  // Strict: unknown keys and wrong types are errors naming the key.
  static Result<PreprocessSpec> FromJson(const nlohmann::json& j);
  Status Validate() const;
};

// Runs a PreprocessSpec. Holds its filter taps and scratch rows: after the first frame of a given
// size nothing is allocated. Not thread-safe (one per thread).
class Preprocessor {
 public:
  explicit Preprocessor(PreprocessSpec spec) : spec_(std::move(spec)) {}
  const PreprocessSpec& spec() const { return spec_; }
  // Where the last frame's content lies on the canvas (the whole canvas unless "letterbox").
  const Roi& content() const { return content_; }

  // `out` holds spec().InputSize() floats. Errors: a frame that is not grey or RGB, an ROI that
  // does not fit the frame.
  Status Run(const ImageView& frame, std::span<float> out);
  // The u8 image the network sees (ROI, resize, grey/RGB; before normalisation), for evidence
  // and overlays; `out` becomes width x height x (1 for grey, 3 for rgb).
  Status RunU8(const ImageView& frame, Image& out);

 private:
  struct Taps {
    int in = -1, out = -1;
    std::vector<int> first;      // first input index per output
    std::vector<int> count;      // taps per output
    std::vector<float> weights;  // out x max_taps
    int max_taps = 0;
    bool identity = false;  // in == out: every output is its input pixel (one tap of weight 1)
  };
  static void MakeTaps(int in, int out, Taps& t);
  // Resizes the ROI of `frame` into tmp planes (spec colour: 1 or 3 planes of width x height).
  Status Resample(const ImageView& frame);
  // Letterbox: standardises the content to u8 levels (or keeps raw levels) and pads the canvas.
  void LetterboxLevels();

  PreprocessSpec spec_;
  Roi content_;
  Taps h_, v_;
  std::vector<uint8_t> row_;   // one grey ROI row (RGB frames, grey spec)
  std::vector<float> horiz_;   // roi_height x width x planes
  std::vector<float> planes_;  // planes x height x width, values 0..255
};

}  // namespace tend::vision
