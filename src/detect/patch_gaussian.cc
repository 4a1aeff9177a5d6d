#include "detect/patch_gaussian.h"

#include <fmt/format.h>

#include <Eigen/Dense>
#include <cmath>

namespace tend::detect {

namespace {
constexpr int64_t kBatch = 32;
}

PatchGaussianFitter::PatchGaussianFitter(int64_t dims, int64_t height, int64_t width)
    : d_(dims), h_(height), w_(width) {
  const int64_t L = h_ * w_;
  batch_.resize(static_cast<size_t>(kBatch * d_ * L));
  sum_.assign(static_cast<size_t>(L * d_), 0.0);
  cross_.assign(static_cast<size_t>(L * d_ * d_), 0.0);
}

Status PatchGaussianFitter::Add(std::span<const float> e) {
  const int64_t L = h_ * w_;
  if (static_cast<int64_t>(e.size()) != d_ * L) {
    return Fail(Error::Internal(fmt::format("patch fit: embedding has {} values, expected {}x{}x{}",
                                            e.size(), d_, h_, w_)));
  }
  for (size_t i = 0; i < e.size(); ++i) {
    if (!std::isfinite(e[i])) {
      const int64_t loc = static_cast<int64_t>(i) % L;
      return Fail(
          Error::Invalid(fmt::format("patch fit: embedding value {} at location ({}, {}) "
                                     "is not finite",
                                     static_cast<int64_t>(i) / L, loc / w_, loc % w_)));
    }
  }
  std::copy(e.begin(), e.end(), batch_.begin() + in_batch_ * d_ * L);
  ++in_batch_;
  ++n_;
  if (in_batch_ == kBatch) Flush();
  return Ok();
}

// One GEMM per location over the buffered images: cross_l += X_l^T X_l.
void PatchGaussianFitter::Flush() const {
  if (in_batch_ == 0) return;
  const int64_t L = h_ * w_;
  Eigen::MatrixXd x(in_batch_, d_);
  for (int64_t l = 0; l < L; ++l) {
    for (int64_t b = 0; b < in_batch_; ++b) {
      const float* e = &batch_[static_cast<size_t>(b * d_ * L)];
      for (int64_t k = 0; k < d_; ++k) x(b, k) = e[k * L + l];
    }
    Eigen::Map<Eigen::VectorXd> s(&sum_[static_cast<size_t>(l * d_)], d_);
    s += x.colwise().sum().transpose();
    Eigen::Map<Eigen::MatrixXd> c(&cross_[static_cast<size_t>(l * d_ * d_)], d_, d_);
    c.selfadjointView<Eigen::Lower>().rankUpdate(x.transpose());
  }
  in_batch_ = 0;
}

Result<PatchGaussian> PatchGaussianFitter::Fit(double eps) const {
  if (n_ < 2) return Fail(Error::Invalid(fmt::format("patch fit: {} images, need at least 2", n_)));
  if (!(eps > 0)) return Fail(Error::Invalid("patch fit: eps must be > 0"));
  Flush();
  const int64_t L = h_ * w_;
  PatchGaussian g;
  g.dims = d_;
  g.height = h_;
  g.width = w_;
  g.samples = n_;
  g.eps = eps;
  g.mean.resize(static_cast<size_t>(L * d_));
  g.factor.resize(static_cast<size_t>(L * d_ * d_));
  const double n = static_cast<double>(n_);
  const Eigen::MatrixXd I = Eigen::MatrixXd::Identity(d_, d_);
  for (int64_t l = 0; l < L; ++l) {
    Eigen::Map<const Eigen::VectorXd> s(&sum_[static_cast<size_t>(l * d_)], d_);
    Eigen::Map<const Eigen::MatrixXd> c(&cross_[static_cast<size_t>(l * d_ * d_)], d_, d_);
    const Eigen::VectorXd mu = s / n;
    Eigen::MatrixXd cov = c.selfadjointView<Eigen::Lower>();
    cov = (cov - n * mu * mu.transpose()) / (n - 1) + eps * I;
    Eigen::LLT<Eigen::MatrixXd> llt(cov);
    if (llt.info() != Eigen::Success) {
      return Fail(
          Error::Internal(fmt::format("patch fit: covariance at location {} is not "
                                      "positive definite",
                                      l)));
    }
    const Eigen::MatrixXd prec = llt.solve(I);
    Eigen::LLT<Eigen::MatrixXd> pllt(0.5 * (prec + prec.transpose()));
    if (pllt.info() != Eigen::Success) {
      return Fail(
          Error::Internal(fmt::format("patch fit: precision at location {} is not "
                                      "positive definite",
                                      l)));
    }
    const Eigen::MatrixXd W = pllt.matrixL();
    for (int64_t k = 0; k < d_; ++k)
      g.mean[static_cast<size_t>(l * d_ + k)] = static_cast<float>(mu(k));
    float* f = &g.factor[static_cast<size_t>(l * d_ * d_)];
    for (int64_t r = 0; r < d_; ++r)
      for (int64_t col = 0; col < d_; ++col) f[r * d_ + col] = static_cast<float>(W(r, col));
  }
  return g;
}

void ScorePatches(const PatchGaussian& g, std::span<const float> e, std::span<float> out) {
  const int64_t L = g.locations(), d = g.dims;
  std::vector<double> diff(static_cast<size_t>(d));
  for (int64_t l = 0; l < L; ++l) {
    for (int64_t k = 0; k < d; ++k) {
      diff[static_cast<size_t>(k)] =
          e[static_cast<size_t>(k * L + l)] - g.mean[static_cast<size_t>(l * d + k)];
    }
    const float* W = &g.factor[static_cast<size_t>(l * d * d)];
    double sq = 0;
    for (int64_t c = 0; c < d; ++c) {
      double v = 0;
      for (int64_t r = 0; r < d; ++r) v += diff[static_cast<size_t>(r)] * W[r * d + c];
      sq += v * v;
    }
    out[static_cast<size_t>(l)] = static_cast<float>(std::sqrt(sq));
  }
}

}  // namespace tend::detect
