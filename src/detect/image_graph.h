// The graph of an image anomaly model, built from any ONNX CNN backbone with the ONNX protobuf
// schema (no Python): the backbone is cut after the chosen layers, a fixed subset of their
// channels kept (chosen per layer), each layer's feature map averaged over 3x3 neighbours (a
// patch sees its surroundings), resized to the finest layer's grid and concatenated. That
// "embedding" [1, d, h, w] is what the detector is fitted on; the scoring head (per-location
// Gaussians, patch_gaussian.h) is then appended to the same graph, so serving computes exactly
// what training saw:
//
//   image [1,C,H,W] -> [Pad reflect] -> backbone layers -> Gather(channels) -> AveragePool 3x3
//     -> [Slice: crop the border] -> Resize -> Concat
//     -> embedding [1,d,h,w] -> (x - mu_l) W_l per location -> |.| -> [x padding mask]
//     -> [Gaussian smoothing] -> anomaly_map [1,h,w] -> max -> anomaly_score [1]
// (the mask and the smoothing only when asked for: MapOptions)
#pragma once

#include <onnx/onnx_pb.h>

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"
#include "detect/patch_gaussian.h"
#include "detect/patch_memory.h"

namespace tend::detect {

inline constexpr const char* kEmbeddingOutput = "embedding";

struct EmbeddingSpec {
  // Backbone tensors (or node names: their first output), any order; the finest grid (largest
  // h*w) sets the embedding grid.
  std::vector<std::string> layers;
  int pool = 3;  // AveragePool kernel (stride 1, same padding); 1 = none
  // Pixels of mirrored image added on each side before the backbone (ONNX Pad, mode reflect);
  // each layer's map is cropped back to the frame's cells after pooling, so the grid still
  // covers exactly the frame. Patches at the frame's edge then see mirrored content instead of
  // the backbone's zero padding. Must be a whole number of cells of every layer (a multiple of
  // the coarsest layer's stride) and smaller than the frame. 0 = none.
  int64_t border = 0;
  int64_t dims = 100;  // channels kept (a fixed random subset, PaDiM); >= all = keep all
  uint64_t seed = 1;
  std::vector<int64_t> channels;  // the kept channels of the concatenation (filled by Build)

  nlohmann::json ToJson() const;
  static Result<EmbeddingSpec> FromJson(const nlohmann::json& j);
};

struct EmbeddingGraph {
  onnx::ModelProto model;  // input "image" [1,C,H,W], output "embedding" [1,d,h,w]
  int64_t dims = 0, height = 0, width = 0;
  int64_t total_channels = 0;  // of the concatenation, before the channel subset
  std::vector<std::vector<int64_t>> layer_shapes;  // [1,c,h,w] per layer, spec order (cropped)
  std::vector<int64_t> layer_crops;  // cells cropped from each side of each layer (border)
};

// `backbone` must have one float input [N,C,H,W] (dims may be symbolic); it is fixed to
// [1, chw[0], chw[1], chw[2]] and renamed "image". Errors name a missing layer (with candidate
// names), a layer whose shape cannot be inferred, an opset below 13. `spec.channels` is filled
// when empty (a seeded random subset of `dims`).
Result<EmbeddingGraph> BuildEmbeddingGraph(const onnx::ModelProto& backbone, EmbeddingSpec& spec,
                                           std::array<int64_t, 3> chw);

// What happens to a head's patch scores before the image score is taken (both heads).
struct MapOptions {
  // Letterboxed inputs: a patch whose cell of the input (channel 0) is all padding — within half
  // a level of `pad_value`, the normalised vision::PreprocessSpec::kPadLevel — scores 0. The
  // input size must be a whole multiple of the grid.
  bool mask_padding = false;
  float pad_value = 0, pad_tolerance = 0;
  // Gaussian smoothing of the map before its maximum (sigma in grid cells; 0 = none), as
  // anomalib's PatchCore and PaDiM smooth theirs: one noisy patch weighs less than a blob.
  // Separable, as two MatMuls with fixed matrices (zero beyond the border).
  double smooth_sigma = 0;
  nlohmann::json ToJson() const;
};

// Appends the PaDiM head to an embedding graph: outputs "anomaly_score" [1] and "anomaly_map"
// [1,h,w]; "embedding" stops being an output. `g` must match the graph's grid and dims.
// The whitening (x - mu_l) W_l reads every factor once per frame (memory-bound: 1,024 locations
// x 100 x 100 floats = 41 MB). PatchGaussianFitter's factors are lower triangular, so the head
// splits the columns into `factor_blocks` blocks and stores, per block, only the rows at or below
// its first column: (B + 1) / 2B of the bytes. 2 blocks (75 %) measured fastest with ONNX
// Runtime's per-location GEMV (FP32 and INT8; more blocks pay more per-call overhead than they
// save: docs/vision.md, "Latency"). 1 = the full [L, d, d] factors; factors that are not lower
// triangular always get those.
inline constexpr int kDefaultFactorBlocks = 2;
Status AppendPatchGaussianHead(EmbeddingGraph& graph, const PatchGaussian& g,
                               const MapOptions& map = {},
                               int factor_blocks = kDefaultFactorBlocks);

// Appends the PatchCore head instead: anomaly_map [1,h,w] = per patch the Euclidean distance to
// the nearest bank entry (one MatMul against the bank, ReduceMin), anomaly_score [1] = its max.
Status AppendPatchMemoryHead(EmbeddingGraph& graph, const PatchMemory& m,
                             const MapOptions& map = {});

// Splits a finished image model at its "embedding" tensor: `front` (image -> embedding: the
// backbone, what INT8 quantisation speeds up) and `back` (embedding -> anomaly_score,
// anomaly_map: the detector), so that serving can time them as separate stages. Whatever else
// the back reads from the front (the padding mask) becomes a further output of the front and
// input of the back, after "embedding" and under the same name. Errors when the graph has no
// "embedding" tensor.
struct SplitModel {
  onnx::ModelProto front, back;
};
Result<SplitModel> SplitAtEmbedding(const onnx::ModelProto& model);

// Tensor names a user could pass as layers: graph outputs and node outputs of a model file, in
// graph order (for error messages and `--layers` help).
std::vector<std::string> LayerCandidates(const onnx::ModelProto& model, size_t max = 40);

}  // namespace tend::detect
