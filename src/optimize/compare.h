// Side-by-side comparison of model variants (FP32 / FP16 / INT8) on the same validation windows:
// accuracy (ROC AUC for anomaly scores, accuracy for classifiers), score agreement with the
// reference, latency percentiles and file size. The ship/no-ship rule of the precision ladder
// lives here: a variant that loses more than `max_drop` of the reference's metric fails.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/latency.h"
#include "model/session.h"
#include "optimize/npy.h"

namespace tend::optimize {

struct ValidationSet {
  std::string name;           // for messages, e.g. the .npy path
  NpyArray x;                 // [N, ...input dims...]
  std::vector<float> labels;  // empty, or N labels: 0/1 for scores, class indices for classifiers
};

struct CompareOptions {
  // Output to score: "" = "anomaly_score" when the model has it, else its first output.
  std::string output;
  // Largest allowed drop of the metric (AUC or accuracy, as a fraction: 0.015 = 1.5 points).
  double max_drop = 0.015;
  int warmup = 10;
  int iterations = 200;  // timed runs per model, after warm-up (SPEC: at least 100)
  // Timed runs are interleaved in rounds (model A, B, C, A, B, C, ...) so that load from other
  // processes on a shared machine hits every model alike.
  int rounds = 10;
  // A variant whose p50 speed-up is below this is reported as slower than the reference: a
  // lower precision is only worth shipping when it is faster (INT8 kernels can lose to FP32 on
  // small models or CPUs without VNNI). Below 1 so that run-to-run noise is not called slower.
  double slower_below = 0.95;
  model::SessionOptions session;
  std::function<void(const std::string& stage, double fraction)> progress;
};

struct ModelResult {
  std::string path;
  std::string precision;  // tend.precision from the file, else "fp32"
  int64_t size_bytes = 0;
  std::string provider;
  std::string output;  // the output that was scored
  double metric = 0;   // AUC or accuracy; meaningful when the report's metric is set
  double drop = 0;     // reference metric - this metric (positive = worse)
  double max_abs_diff = 0, mean_abs_diff = 0, correlation = 1;  // scores vs the reference
  model::LatencyStats latency;
  double speedup_p50 = 1;  // reference p50 / this p50
  bool slower = false;     // speedup_p50 < CompareOptions::slower_below (never the reference)
  bool pass = true;
  std::vector<float> scores;  // one per validation window
};

struct CompareReport {
  std::string metric;  // "auc", "accuracy" or "" (no labels: no accuracy gate)
  double max_drop = 0.015;
  int64_t samples = 0;
  std::vector<ModelResult> models;  // models[0] is the reference
  bool pass = true;

  nlohmann::json ToJson() const;
  std::string ToTable() const;
};

// Loads every model, scores every validation window (batch 1, as served), then times
// `iterations` runs per model. Errors: no models, data that does not fit a model's input,
// labels that do not match the data or the output kind, models that fail to load or run.
Result<CompareReport> CompareModels(const std::vector<std::string>& paths,
                                    const ValidationSet& validation, const CompareOptions& options);

// Fills each model's speed-up, slower flag, metric drop and pass from its measurements against
// models[0], and the report's pass (CompareModels calls it; separate so it can be checked alone).
void Judge(CompareReport& report, double max_drop, double slower_below);

// Area under the ROC curve of `scores` against 0/1 `labels` (ties count one half).
// Error when either class is absent or a label is not 0/1.
Result<double> RocAuc(std::span<const float> scores, std::span<const float> labels);

}  // namespace tend::optimize
