#include "model/latency.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace tend::model {

double Quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  q = std::clamp(q, 0.0, 1.0);
  double pos = q * static_cast<double>(sorted.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(pos));
  size_t hi = std::min(lo + 1, sorted.size() - 1);
  double frac = pos - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

LatencyStats ComputeLatencyStats(std::vector<double> samples_ms, double wall_s) {
  LatencyStats s;
  s.n = samples_ms.size();
  if (samples_ms.empty()) return s;
  std::sort(samples_ms.begin(), samples_ms.end());
  double sum = std::accumulate(samples_ms.begin(), samples_ms.end(), 0.0);
  s.mean_ms = sum / static_cast<double>(s.n);
  s.p50_ms = Quantile(samples_ms, 0.50);
  s.p95_ms = Quantile(samples_ms, 0.95);
  s.p99_ms = Quantile(samples_ms, 0.99);
  s.p999_ms = Quantile(samples_ms, 0.999);
  s.max_ms = samples_ms.back();
  double seconds = wall_s > 0 ? wall_s : sum / 1000.0;
  s.throughput_fps = seconds > 0 ? static_cast<double>(s.n) / seconds : 0;
  return s;
}

}  // namespace tend::model
