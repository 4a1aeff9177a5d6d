#include "detect/autoencoder.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

namespace tend::detect {

namespace {

// Uniform in [0, 1) from the top 53 bits: unlike std::uniform_real_distribution, the same on
// every standard library.
double Uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

size_t UniformIndex(std::mt19937_64& rng, size_t n) {
  return std::min(n - 1, static_cast<size_t>(Uniform01(rng) * static_cast<double>(n)));
}

void Shuffle(std::vector<int>& v, std::mt19937_64& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[UniformIndex(rng, i)]);
}

struct AdamState {
  Eigen::MatrixXf mw, vw;
  Eigen::VectorXf mb, vb;
};

// Activations of every layer for a batch of columns; acts[0] is the input.
void Forward(const std::vector<DenseLayer>& layers, std::vector<Eigen::MatrixXf>& acts) {
  for (size_t l = 0; l < layers.size(); ++l) {
    Eigen::MatrixXf& out = acts[l + 1];
    out.resize(layers[l].weight.rows(), acts[l].cols());
    out.noalias() = layers[l].weight * acts[l];
    out.colwise() += layers[l].bias;
    if (layers[l].tanh) out = out.array().tanh();
  }
}

double MeanSquaredError(const std::vector<DenseLayer>& layers, const Eigen::MatrixXf& cols,
                        std::vector<Eigen::MatrixXf>& acts) {
  acts[0] = cols;
  Forward(layers, acts);
  return static_cast<double>((acts.back() - cols).squaredNorm()) / static_cast<double>(cols.size());
}

}  // namespace

Result<AutoencoderFit> TrainAutoencoder(const Eigen::MatrixXf& z, const AutoencoderOptions& opt) {
  const int n = static_cast<int>(z.rows());
  const int f = static_cast<int>(z.cols());
  if (opt.hidden < 1 || opt.bottleneck < 1 || opt.epochs < 1 || opt.batch < 1 || !(opt.lr > 0) ||
      opt.patience < 1 || !(opt.val_fraction > 0 && opt.val_fraction < 0.5))
    return Fail(Error::Invalid(fmt::format(
        "autoencoder options: hidden {}, bottleneck {}, epochs {}, batch {}, lr {}, patience {} "
        "must be positive and val_fraction {} in (0, 0.5)",
        opt.hidden, opt.bottleneck, opt.epochs, opt.batch, opt.lr, opt.patience,
        opt.val_fraction)));
  if (opt.bottleneck >= f)
    return Fail(Error::Invalid(fmt::format(
        "autoencoder bottleneck ({}) must be smaller than the number of features ({}): otherwise "
        "it can learn the identity and detects nothing",
        opt.bottleneck, f)));
  if (n < 16)
    return Fail(
        Error::Invalid(fmt::format("autoencoder needs at least 16 training rows, got {}", n)));

  std::mt19937_64 rng(opt.seed);
  const int sizes[] = {f, opt.hidden, opt.bottleneck, opt.hidden, f};
  const bool act[] = {true, false, true, false};
  AutoencoderFit fit;
  fit.layers.resize(4);
  std::vector<AdamState> adam(4);
  for (int l = 0; l < 4; ++l) {
    DenseLayer& L = fit.layers[l];
    const int in = sizes[l], out = sizes[l + 1];
    const double limit = std::sqrt(6.0 / (in + out));  // Glorot uniform
    L.weight.resize(out, in);
    for (int c = 0; c < in; ++c)
      for (int r = 0; r < out; ++r)
        L.weight(r, c) = static_cast<float>((2 * Uniform01(rng) - 1) * limit);
    L.bias = Eigen::VectorXf::Zero(out);
    L.tanh = act[l];
    adam[l].mw = Eigen::MatrixXf::Zero(out, in);
    adam[l].vw = Eigen::MatrixXf::Zero(out, in);
    adam[l].mb = Eigen::VectorXf::Zero(out);
    adam[l].vb = Eigen::VectorXf::Zero(out);
  }

  // Random validation rows (time order says nothing about generalising within normal).
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  Shuffle(order, rng);
  const int n_val = std::max(4, static_cast<int>(std::lround(opt.val_fraction * n)));
  std::vector<int> train_idx(order.begin() + n_val, order.end());
  std::sort(train_idx.begin(), train_idx.end());  // the per-epoch shuffle alone decides order
  Eigen::MatrixXf val_cols(f, n_val);
  for (int i = 0; i < n_val; ++i) val_cols.col(i) = z.row(order[i]).transpose();
  const Eigen::MatrixXf zt = z.transpose();  // samples as contiguous columns
  fit.n_fit = static_cast<int>(train_idx.size());
  fit.n_val = n_val;

  std::vector<Eigen::MatrixXf> acts(5), val_acts(5);
  Eigen::MatrixXf delta, grad_w;
  Eigen::VectorXf grad_b;
  const float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  int64_t step = 0;
  std::vector<DenseLayer> best = fit.layers;
  double best_val = MeanSquaredError(fit.layers, val_cols, val_acts);
  double best_train = best_val;
  int since_best = 0;

  for (int epoch = 1; epoch <= opt.epochs; ++epoch) {
    Shuffle(train_idx, rng);
    double loss_sum = 0;
    int64_t loss_n = 0;
    for (size_t start = 0; start < train_idx.size(); start += opt.batch) {
      const int b = static_cast<int>(std::min<size_t>(opt.batch, train_idx.size() - start));
      acts[0].resize(f, b);
      for (int i = 0; i < b; ++i) acts[0].col(i) = zt.col(train_idx[start + i]);
      Forward(fit.layers, acts);
      delta = acts[4] - acts[0];
      loss_sum += delta.squaredNorm();
      loss_n += delta.size();
      delta *= 2.0f / static_cast<float>(delta.size());
      ++step;
      const float c1 = 1 - std::pow(beta1, static_cast<float>(step));
      const float c2 = 1 - std::pow(beta2, static_cast<float>(step));
      const float lr_t = static_cast<float>(opt.lr) * std::sqrt(c2) / c1;
      for (int l = 3; l >= 0; --l) {
        DenseLayer& L = fit.layers[l];
        if (L.tanh) delta.array() *= 1 - acts[l + 1].array().square();
        grad_w.noalias() = delta * acts[l].transpose();
        grad_b = delta.rowwise().sum();
        if (l > 0) {
          Eigen::MatrixXf prev = L.weight.transpose() * delta;  // before W changes
          delta.swap(prev);
        }
        AdamState& s = adam[l];
        s.mw = beta1 * s.mw + (1 - beta1) * grad_w;
        s.vw = beta2 * s.vw + (1 - beta2) * grad_w.cwiseAbs2();
        s.mb = beta1 * s.mb + (1 - beta1) * grad_b;
        s.vb = beta2 * s.vb + (1 - beta2) * grad_b.cwiseAbs2();
        L.weight.array() -= lr_t * s.mw.array() / (s.vw.array().sqrt() + eps);
        L.bias.array() -= lr_t * s.mb.array() / (s.vb.array().sqrt() + eps);
      }
    }
    const double train_loss = loss_sum / static_cast<double>(loss_n);
    const double val_loss = MeanSquaredError(fit.layers, val_cols, val_acts);
    if (!std::isfinite(train_loss) || !std::isfinite(val_loss))
      return Fail(Error::Invalid(fmt::format(
          "autoencoder training diverged at epoch {} (loss {}): lower the learning rate ({})",
          epoch, train_loss, opt.lr)));
    fit.epochs_run = epoch;
    if (opt.on_epoch) opt.on_epoch(epoch, opt.epochs, train_loss, val_loss);
    if (val_loss < best_val * (1 - 1e-3)) {
      best_val = val_loss;
      best_train = train_loss;
      best = fit.layers;
      fit.best_epoch = epoch;
      since_best = 0;
    } else if (++since_best >= opt.patience) {
      break;
    }
  }
  fit.layers = std::move(best);
  fit.val_loss = best_val;
  fit.train_loss = best_train;
  return fit;
}

Eigen::MatrixXd ReconstructRows(const std::vector<DenseLayer>& layers, const Eigen::MatrixXd& z) {
  Eigen::MatrixXd a = z;  // rows = samples: a * W^T + b
  for (const auto& L : layers) {
    Eigen::MatrixXd next = a * L.weight.cast<double>().transpose();
    next.rowwise() += L.bias.cast<double>().transpose();
    if (L.tanh) next = next.array().tanh();
    a.swap(next);
  }
  return a;
}

}  // namespace tend::detect
