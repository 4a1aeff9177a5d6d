// A plain ONNX Runtime session for offline work — calibration runs with every activation exposed
// as an output, and FP32-vs-quantised checks — where per-run allocation is fine and outputs have
// shapes nobody knows in advance. Serving and latency measurement use tend::model::Session.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace tend::optimize {

struct OrtTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;  // float outputs only; other element types are skipped by Run()
};

struct OrtRunnerOptions {
  int threads = 1;
  // Basic optimisations only by default: constant folding without the layout and fusion passes
  // that would make the first load of a large calibration graph slow.
  bool full_optimization = false;
  // Where ONNX Runtime writes the graph it actually runs (for tests that check kernel fusion).
  std::string optimized_model_path;
};

class OrtRunner {
 public:
  ~OrtRunner();
  static Result<std::unique_ptr<OrtRunner>> Create(const std::string& model_bytes,
                                                   const std::string& name,
                                                   const OrtRunnerOptions& options = {});

  size_t input_count() const { return input_names_.size(); }
  const std::string& input_name(size_t i) const { return input_names_[i]; }
  // Declared shape; dynamic dimensions are -1.
  const std::vector<int64_t>& input_shape(size_t i) const { return input_shapes_[i]; }
  bool input_is_float(size_t i) const { return input_float_[i]; }
  const std::vector<std::string>& output_names() const { return output_names_; }

  // Runs the single float input with `shape` and returns the requested float outputs
  // (all outputs when `outputs` is empty), in the requested order.
  Result<std::vector<OrtTensor>> Run(std::span<const float> input,
                                     const std::vector<int64_t>& shape,
                                     const std::vector<std::string>& outputs = {});

 private:
  struct Impl;
  explicit OrtRunner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::string name_;
  std::vector<std::string> input_names_;
  std::vector<std::vector<int64_t>> input_shapes_;
  std::vector<bool> input_float_;
  std::vector<std::string> output_names_;
};

}  // namespace tend::optimize
