// PatchCore (Roth et al., 2022): a memory bank of patch embeddings of good parts, thinned by a
// greedy coreset; a patch's score is the distance to its nearest neighbour in the bank, wherever
// that patch was (unlike PaDiM's per-location Gaussians, patch_gaussian.h), and the image score is
// the largest patch score. Pure arithmetic over embeddings [d, h, w]; the ONNX head that scores
// with a bank is built in image_graph.h, and ScoreNearest here is the same computation in plain
// C++ (tests, reference).
//
// Serving cost grows with the bank: one [h*w, d] x [d, N] product per image, so the coreset
// fraction is a size/latency knob (docs/vision.md measures it).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/status.h"

namespace tend::detect {

struct PatchMemory {
  int64_t dims = 0, height = 0, width = 0;
  int64_t samples = 0;      // images collected
  int64_t patches = 0;      // patches before the coreset
  std::vector<float> bank;  // [N, d] row-major

  int64_t size() const { return dims > 0 ? static_cast<int64_t>(bank.size()) / dims : 0; }
};

struct CoresetOptions {
  double fraction = 0.01;   // of all collected patches kept (>= 1 patch); 1 = keep every patch
  int64_t max_size = 0;     // also at most this many (0 = no cap)
  int64_t projection = 32;  // greedy selection runs on a random projection to this many dims
  uint64_t seed = 1;
};

// Collects every patch of every image (memory: images * h * w * d floats).
class PatchMemoryCollector {
 public:
  PatchMemoryCollector(int64_t dims, int64_t height, int64_t width);
  // `embedding` is [d, h, w] planar, as the embedding graph outputs it. Non-finite values are an
  // error naming the location.
  Status Add(std::span<const float> embedding);
  int64_t count() const { return n_; }
  // Greedy k-center coreset (each pick is the patch farthest from those already picked, on a
  // seeded random projection), starting from a seeded random patch. Needs >= 1 image.
  Result<PatchMemory> Fit(const CoresetOptions& options) const;

 private:
  int64_t d_, h_, w_, n_ = 0;
  std::vector<float> patches_;  // [n * h * w, d]
};

// Indices (into `points`, [n, d] row-major) of a greedy k-center coreset of `k` points, chosen on
// `points` projected to `projection` dims with a seeded Gaussian matrix (no projection when
// projection >= d).
std::vector<int64_t> GreedyCoreset(std::span<const float> points, int64_t d, int64_t k,
                                   int64_t projection, uint64_t seed);

// Patch scores (Euclidean distance to the nearest bank entry) of one embedding [d, h, w] into
// out [h*w].
void ScoreNearest(const PatchMemory& m, std::span<const float> embedding, std::span<float> out);

}  // namespace tend::detect
