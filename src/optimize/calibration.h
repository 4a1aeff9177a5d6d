// Activation range estimation for post-training quantisation: min/max, percentile, and the
// KL-divergence ("entropy") threshold search TensorRT uses, over values observed by running the
// FP32 model on calibration windows. Pure arithmetic, no ONNX: the quantiser feeds it tensors.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace tend::optimize {

enum class CalibrationMethod { kMinMax, kPercentile, kEntropy };

Result<CalibrationMethod> ParseCalibrationMethod(const std::string& name);
const char* CalibrationMethodName(CalibrationMethod m);

struct Range {
  float min = 0;
  float max = 0;
};

// Counts of values in `bins` equal bins over [lo, hi]; values outside are clamped into the end
// bins (so tails are kept, as the entropy method requires).
class Histogram {
 public:
  Histogram() = default;
  Histogram(double lo, double hi, int bins);
  void Add(std::span<const float> values, bool absolute);
  double lo() const { return lo_; }
  double hi() const { return hi_; }
  double bin_width() const { return (hi_ - lo_) / static_cast<double>(counts_.size()); }
  const std::vector<uint64_t>& counts() const { return counts_; }
  uint64_t total() const { return total_; }

 private:
  double lo_ = 0, hi_ = 0;
  std::vector<uint64_t> counts_;
  uint64_t total_ = 0;
};

// Threshold T (on |x| or on a non-negative x) that minimises KL(P || Q), where P is the histogram
// clipped at T (outliers folded into the last bin) and Q is P quantised into `levels` levels.
// `counts` start at 0; returns the upper edge of the best bin count. TensorRT's algorithm with
// MXNet's smoothing of empty bins. Needs counts.size() >= levels.
double EntropyThreshold(const std::vector<uint64_t>& counts, double bin_width, int levels);

// [lower, upper] such that (100 - percentile)/2 % of the values lie below lower and as many
// above upper (two-sided), from a histogram of signed values.
Range PercentileRange(const Histogram& hist, double percentile);

struct CalibrationOptions {
  CalibrationMethod method = CalibrationMethod::kMinMax;
  double percentile = 99.999;  // percentile method: % of values kept inside the range
  int histogram_bins = 2048;   // entropy method; percentile uses 4x more for resolution
};

// Two passes for the histogram methods: first min/max of every tensor (which fixes the histogram
// edges), then histograms. Min/max needs only the first pass.
class RangeCollector {
 public:
  explicit RangeCollector(const CalibrationOptions& options) : options_(options) {}

  bool NeedsSecondPass() const { return options_.method != CalibrationMethod::kMinMax; }
  void ObserveFirstPass(const std::string& tensor, std::span<const float> values);
  void StartSecondPass();
  void ObserveSecondPass(const std::string& tensor, std::span<const float> values);

  // Final ranges; every range contains 0 (so that zero is exactly representable, which padding
  // and ReLU rely on).
  std::map<std::string, Range> Ranges() const;
  // Raw observed min/max (first pass).
  const std::map<std::string, Range>& MinMax() const { return minmax_; }

 private:
  CalibrationOptions options_;
  std::map<std::string, Range> minmax_;
  std::map<std::string, Histogram> hists_;
};

// Quantisation parameters of an asymmetric uint8 tensor covering `r` (which must contain 0).
struct QuantParams {
  float scale = 1;
  int32_t zero_point = 0;
};
QuantParams AsymmetricUInt8(Range r);
// Symmetric int8 (zero point 0) covering max(|min|, |max|) with 127 steps each side.
QuantParams SymmetricInt8(Range r);

}  // namespace tend::optimize
