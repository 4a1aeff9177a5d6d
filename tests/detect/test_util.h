// Shared helpers for the detect tests: seeded Gaussian data with a chosen covariance.
#pragma once

#include <fmt/format.h>

#include <Eigen/Dense>
#include <random>
#include <string>
#include <vector>

namespace tend::detect::testing {

inline std::vector<std::string> Names(int f, const std::string& prefix = "f") {
  std::vector<std::string> n;
  for (int i = 0; i < f; ++i) n.push_back(fmt::format("{}{}", prefix, i));
  return n;
}

// n rows of N(mean, L L'), seeded.
inline Eigen::MatrixXf Gaussian(int n, const Eigen::VectorXd& mean, const Eigen::MatrixXd& chol,
                                uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd;
  const int f = static_cast<int>(mean.size());
  Eigen::MatrixXf x(n, f);
  Eigen::VectorXd u(f);
  for (int r = 0; r < n; ++r) {
    for (int c = 0; c < f; ++c) u[c] = nd(rng);
    x.row(r) = (mean + chol * u).cast<float>().transpose();
  }
  return x;
}

inline Eigen::MatrixXf StandardGaussian(int n, int f, uint64_t seed) {
  return Gaussian(n, Eigen::VectorXd::Zero(f), Eigen::MatrixXd::Identity(f, f), seed);
}

// A fixed, well-conditioned covariance with strong correlations, and its Cholesky factor.
inline Eigen::MatrixXd TestCovariance(int f) {
  Eigen::MatrixXd a(f, f);
  for (int i = 0; i < f; ++i)
    for (int j = 0; j < f; ++j) a(i, j) = std::sin(1.0 + i * 1.7 + j * 0.9) + (i == j ? 1.5 : 0);
  Eigen::MatrixXd cov = a * a.transpose();
  for (int i = 0; i < f; ++i) cov(i, i) += 0.5;
  // Mixed units, as real features have.
  for (int i = 0; i < f; ++i) {
    const double s = std::pow(10.0, (i % 4) - 1);
    cov.row(i) *= s;
    cov.col(i) *= s;
  }
  return cov;
}

}  // namespace tend::detect::testing
