// Image models in `tend train`, `score`, `eval`, `bench` and `quantize`: each of those commands
// dispatches here with one call when its input is images (or its model an image model), so the
// vibration code paths stay untouched. The work is in src/inspect; this only parses and prints.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "optimize/npy.h"

namespace tend::cli {

struct ImageTrainFlags {
  std::string backbone;  // "" = the default backbone
  std::vector<std::string> layers;
  std::string size = "256x256", color = "grey", roi, intensity = "standardize";
  std::string fit = "stretch";  // stretch or letterbox (keep the aspect ratio, pad)
  std::vector<float> mean, std;
  int64_t dims = 100;
  double eps = 0.01;
  int threads = 1;
  std::string detector = "auto";  // from `tend train --detector`: auto, padim, patchcore
  double coreset = 0.01;          // patchcore: fraction of the fitted patches kept
  int64_t coreset_max = 0;        // patchcore: at most this many (0 = no cap)
  double smooth = 0;              // anomaly-map smoothing sigma, grid cells
  int pool = 3;                   // neighbourhood averaged into each patch (odd)
  int64_t border = 0;             // reflect padding before the backbone, pixels per side
  bool flip = false;              // also fit mirrored images
};

// Adds --backbone, --layers, --size, --color, --roi, --intensity, --mean, --std, --dims, --eps,
// --coreset, --coreset-max, --smooth, --pool, --border, --flip, --threads to `tend train`.
void AddImageTrainFlags(CLI::App& cmd, ImageTrainFlags& flags);
// True when the inputs are image sets; dies when images and signals are mixed.
bool IsImageInputs(const std::vector<std::string>& inputs);
void RunImageTrain(const CLI::App& cmd, const ImageTrainFlags& flags,
                   const std::vector<std::string>& inputs, const std::string& out,
                   const std::string& name, const std::string& version, double holdout,
                   uint64_t seed);

// True when the model file is an image model (its card says input_kind "image").
bool IsImageModelFile(const std::string& path);
void RunImageScore(const std::string& model, const std::vector<std::string>& inputs,
                   const std::string& out, const std::string& overlay_dir);
void RunImageEval(const std::string& model, const std::vector<std::string>& normal,
                  const std::vector<std::string>& anomalous, bool json, const std::string& plot);

struct ImageBenchFlags {
  std::vector<std::string> inputs;
  std::string frame_size;  // "WxH": frames resized and re-encoded; "" = the files as they are
};
void AddImageBenchFlags(CLI::App& cmd, ImageBenchFlags& flags);
void RunImageBench(const std::string& model, const ImageBenchFlags& flags, int frames, int warmup,
                   int threads, bool json);

// INT8 for image models (cmd_vision_int8.cc). The calibration input of `tend quantize
// --calibrate-images` / `tend windows` for an image model: the images preprocessed through the
// model's card, with the flips asked for (--augment hflip,vflip), at most max_samples of them.
optimize::NpyArray ImageCalibrationNpy(const std::string& model,
                                       const std::vector<std::string>& inputs,
                                       const std::vector<std::string>& augment,
                                       int64_t max_samples);
// `tend train --recalibrate IMAGE_MODEL --input DIR...`: thresholds from the held-out good images
// scored by that model (after `tend quantize`, its own INT8 scores).
void RunImageRecalibrate(const std::string& model, const std::vector<std::string>& inputs,
                         const std::string& out, double holdout, const std::string& version,
                         int threads);

// The default backbone: $TEND_BACKBONE, else backbones/mobilenet_v2_imagenet.onnx next to the
// tend binary, in ../share/tend, or in ../third_party (a build inside the checkout).
std::string DefaultBackbone();

}  // namespace tend::cli
