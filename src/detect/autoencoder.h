// A small dense autoencoder (F -> hidden -> bottleneck -> hidden -> F, tanh on the hidden
// layers, linear bottleneck and output) trained on the device with Adam and mini-batches:
// no Python at run time. Deterministic for a given seed on any platform (own uniform draws
// from std::mt19937_64, whose sequence the standard fixes).
#pragma once

#include <Eigen/Dense>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/status.h"

namespace tend::detect {

struct DenseLayer {
  Eigen::MatrixXf weight;  // out x in
  Eigen::VectorXf bias;    // out
  bool tanh = false;       // activation after the affine map
};

struct AutoencoderOptions {
  int hidden = 16, bottleneck = 4;
  int epochs = 300;  // upper bound; early stopping usually ends sooner
  int batch = 32;
  double lr = 1e-3;            // Adam step size (beta1 0.9, beta2 0.999, eps 1e-8)
  double val_fraction = 0.15;  // random rows held out for early stopping (at least 4)
  int patience = 30;           // epochs without a 0.1 % validation improvement before stopping
  uint64_t seed = 1;
  // Called after every epoch (1-based) with the mean training loss and the validation loss.
  std::function<void(int epoch, int epochs, double train_loss, double val_loss)> on_epoch;
};

struct AutoencoderFit {
  std::vector<DenseLayer> layers;  // the best epoch's weights
  int epochs_run = 0, best_epoch = 0, n_fit = 0, n_val = 0;
  double train_loss = 0, val_loss = 0;  // mean squared error per element, at the best epoch
};

// `z`: standardised training rows (rows = windows). Needs at least 16 rows.
Result<AutoencoderFit> TrainAutoencoder(const Eigen::MatrixXf& z, const AutoencoderOptions& opt);

// Reconstruction of each row of `z` (double precision, for reference scoring).
Eigen::MatrixXd ReconstructRows(const std::vector<DenseLayer>& layers, const Eigen::MatrixXd& z);

}  // namespace tend::detect
