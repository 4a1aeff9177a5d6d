// Latency statistics shared by `tend bench`, the benchmarks and anything else that times runs:
// percentiles matter more than the mean on an edge box with a hard per-window deadline.
#pragma once

#include <cstddef>
#include <vector>

namespace tend::model {

struct LatencyStats {
  double mean_ms = 0, p50_ms = 0, p95_ms = 0, p99_ms = 0, p999_ms = 0, max_ms = 0;
  double throughput_fps = 0;  // runs per second
  size_t n = 0;
};

// Percentiles interpolate linearly between closest ranks (numpy's default), so p50 of 1..100 is
// 50.5. Throughput is n / wall_s; when wall_s <= 0 it falls back to n / sum(samples).
// Empty samples give all zeros.
LatencyStats ComputeLatencyStats(std::vector<double> samples_ms, double wall_s);

// The q-quantile (0 <= q <= 1) of sorted samples, interpolated as above.
double Quantile(const std::vector<double>& sorted_samples, double q);

}  // namespace tend::model
