#include "detect/patch_memory.h"

#include <fmt/format.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

namespace tend::detect {

namespace {
using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
}

PatchMemoryCollector::PatchMemoryCollector(int64_t dims, int64_t height, int64_t width)
    : d_(dims), h_(height), w_(width) {}

Status PatchMemoryCollector::Add(std::span<const float> e) {
  const int64_t L = h_ * w_;
  if (static_cast<int64_t>(e.size()) != d_ * L) {
    return Fail(Error::Internal(fmt::format(
        "patch memory: embedding has {} values, expected {}x{}x{}", e.size(), d_, h_, w_)));
  }
  for (size_t i = 0; i < e.size(); ++i) {
    if (!std::isfinite(e[i])) {
      const int64_t loc = static_cast<int64_t>(i) % L;
      return Fail(Error::Invalid(
          fmt::format("patch memory: embedding value {} at location ({}, {}) is not finite",
                      static_cast<int64_t>(i) / L, loc / w_, loc % w_)));
    }
  }
  const size_t base = patches_.size();
  patches_.resize(base + e.size());
  float* out = patches_.data() + base;
  for (int64_t l = 0; l < L; ++l) {  // planar [d, L] -> rows [L, d]
    for (int64_t k = 0; k < d_; ++k) out[l * d_ + k] = e[static_cast<size_t>(k * L + l)];
  }
  ++n_;
  return Ok();
}

std::vector<int64_t> GreedyCoreset(std::span<const float> points, int64_t d, int64_t k,
                                   int64_t projection, uint64_t seed) {
  const int64_t n = d > 0 ? static_cast<int64_t>(points.size()) / d : 0;
  k = std::min(k, n);
  std::vector<int64_t> picked;
  if (k <= 0) return picked;
  Eigen::Map<const RowMatrix> x(points.data(), n, d);
  std::mt19937_64 rng(seed);
  RowMatrix p;
  if (projection > 0 && projection < d) {
    std::normal_distribution<float> gauss(0.0f, 1.0f / std::sqrt(static_cast<float>(projection)));
    Eigen::MatrixXf r(d, projection);
    for (int64_t i = 0; i < r.size(); ++i) r.data()[i] = gauss(rng);
    p = x * r;
  } else {
    p = x;
  }
  std::vector<float> nearest(static_cast<size_t>(n), std::numeric_limits<float>::infinity());
  int64_t next = std::uniform_int_distribution<int64_t>(0, n - 1)(rng);
  picked.reserve(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) {
    picked.push_back(next);
    const auto c = p.row(next);
    float best = -1;
    for (int64_t j = 0; j < n; ++j) {
      const float dist = (p.row(j) - c).squaredNorm();
      float& m = nearest[static_cast<size_t>(j)];
      m = std::min(m, dist);
      if (m > best) {
        best = m;
        next = j;
      }
    }
  }
  return picked;
}

Result<PatchMemory> PatchMemoryCollector::Fit(const CoresetOptions& o) const {
  if (n_ < 1) return Fail(Error::Invalid("patch memory: no images collected"));
  if (!(o.fraction > 0 && o.fraction <= 1))
    return Fail(Error::Invalid(fmt::format("coreset fraction {} must be in (0, 1]", o.fraction)));
  const int64_t total = static_cast<int64_t>(patches_.size()) / d_;
  int64_t k = std::max<int64_t>(1, std::llround(o.fraction * static_cast<double>(total)));
  if (o.max_size > 0) k = std::min(k, o.max_size);
  PatchMemory m;
  m.dims = d_;
  m.height = h_;
  m.width = w_;
  m.samples = n_;
  m.patches = total;
  if (k >= total) {
    m.bank = patches_;
    return m;
  }
  const auto idx = GreedyCoreset(patches_, d_, k, o.projection, o.seed);
  m.bank.resize(idx.size() * static_cast<size_t>(d_));
  for (size_t i = 0; i < idx.size(); ++i) {
    std::copy_n(patches_.begin() + idx[i] * d_, d_, m.bank.begin() + static_cast<int64_t>(i) * d_);
  }
  return m;
}

void ScoreNearest(const PatchMemory& m, std::span<const float> e, std::span<float> out) {
  const int64_t L = m.height * m.width, d = m.dims, n = m.size();
  std::vector<float> x(static_cast<size_t>(d));
  for (int64_t l = 0; l < L; ++l) {
    for (int64_t k = 0; k < d; ++k) x[static_cast<size_t>(k)] = e[static_cast<size_t>(k * L + l)];
    double best = std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < n; ++j) {
      const float* b = &m.bank[static_cast<size_t>(j * d)];
      double sq = 0;
      for (int64_t k = 0; k < d; ++k) {
        const double v = static_cast<double>(x[static_cast<size_t>(k)]) - b[k];
        sq += v * v;
      }
      best = std::min(best, sq);
    }
    out[static_cast<size_t>(l)] = static_cast<float>(std::sqrt(best));
  }
}

}  // namespace tend::detect
