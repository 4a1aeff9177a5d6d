// PaDiM (Defard et al., 2020): one Gaussian per location of a backbone's embedding grid, fitted on
// good parts only. A patch's score is its Mahalanobis distance to the Gaussian of its location;
// the image score is the largest patch score. Pure arithmetic over embeddings [d, h, w] (the
// graph that computes them is image_graph.h); the ONNX head that scores with these parameters
// is built there too, and ScoreMap here is the same computation in plain C++ (tests, reference).
//
// The default over the PatchCore-style memory bank (patch_memory.h, `--detector patchcore`) by
// measurement on the magnetic-tile photographs (docs/vision.md): with the same features, image
// AUROC 0.849 against 0.779, and 0.38x the scoring time of a 1 % coreset bank. The tiles are
// framed the same way, so where a patch is says a lot about what it should look like.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/status.h"

namespace tend::detect {

struct PatchGaussian {
  int64_t dims = 0, height = 0, width = 0;
  int64_t samples = 0;      // images fitted
  double eps = 0;           // ridge added to every covariance
  std::vector<float> mean;  // [L, d], L = height * width, locations row-major
  // [L, d, d] row-major: W_l with inv(Sigma_l) = W_l W_l^T (Cholesky factor of the precision),
  // so the squared distance is |W_l^T (x - mu_l)|^2 = ((x - mu_l)^T W_l)^2 summed.
  std::vector<float> factor;

  int64_t locations() const { return height * width; }
};

// Accumulates per-location first and second moments image by image (memory: L*d*(d+1) doubles,
// independent of the number of images).
class PatchGaussianFitter {
 public:
  PatchGaussianFitter(int64_t dims, int64_t height, int64_t width);
  // `embedding` is [d, h, w] planar, as the embedding graph outputs it. Non-finite values are
  // an error naming the location.
  Status Add(std::span<const float> embedding);
  int64_t count() const { return n_; }
  // Covariance (ddof 1) + eps * I per location, inverted and factored. Needs >= 2 images.
  Result<PatchGaussian> Fit(double eps) const;

 private:
  void Flush() const;
  int64_t d_, h_, w_, n_ = 0;
  mutable std::vector<float> batch_;  // up to kBatch embeddings, [b, d, L]
  mutable int64_t in_batch_ = 0;
  mutable std::vector<double> sum_;    // [L, d]
  mutable std::vector<double> cross_;  // [L, d, d]
};

// Patch scores (Mahalanobis distances, not squared) of one embedding [d, h, w] into out [h*w].
void ScorePatches(const PatchGaussian& g, std::span<const float> embedding, std::span<float> out);

}  // namespace tend::detect
