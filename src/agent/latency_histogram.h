// Fixed-memory latency histogram (log-spaced buckets, ~1 % resolution from 1 µs to 100 s):
// percentiles over runs of any length without keeping every sample, so memory stays flat.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

namespace tend::agent {

class LatencyHistogram {
 public:
  LatencyHistogram();
  void Add(double ms);
  double Percentile(double p) const;  // p in [0, 100]
  struct Summary {
    int64_t n = 0;
    double mean_ms = 0, p50_ms = 0, p95_ms = 0, p99_ms = 0, p999_ms = 0, max_ms = 0;
    nlohmann::json ToJson() const;
  };
  Summary Summarize() const;

 private:
  std::vector<int64_t> counts_;
  int64_t n_ = 0;
  double sum_ = 0, max_ = 0;
};

}  // namespace tend::agent
