#include "agent/latency_histogram.h"

#include <algorithm>
#include <cmath>

namespace tend::agent {
namespace {
constexpr double kMinMs = 1e-3;       // 1 µs
constexpr double kGrowth = 1.01;      // 1 % per bucket
constexpr int kBuckets = 1853;        // log(1e5 ms / 1e-3 ms) / log(1.01)
const double kLogGrowth = std::log(kGrowth);
}  // namespace

LatencyHistogram::LatencyHistogram() : counts_(kBuckets + 1, 0) {}

void LatencyHistogram::Add(double ms) {
  if (!(ms >= 0)) ms = 0;
  int b = ms <= kMinMs ? 0 : static_cast<int>(std::log(ms / kMinMs) / kLogGrowth) + 1;
  counts_[static_cast<size_t>(std::min(b, kBuckets))]++;
  ++n_;
  sum_ += ms;
  max_ = std::max(max_, ms);
}

double LatencyHistogram::Percentile(double p) const {
  if (n_ == 0) return 0;
  int64_t rank = static_cast<int64_t>(std::ceil(p / 100.0 * static_cast<double>(n_)));
  rank = std::clamp<int64_t>(rank, 1, n_);
  int64_t seen = 0;
  for (int b = 0; b <= kBuckets; ++b) {
    seen += counts_[static_cast<size_t>(b)];
    if (seen >= rank) {
      // Upper edge of the bucket, never above the true maximum.
      double edge = b == 0 ? kMinMs : kMinMs * std::pow(kGrowth, b);
      return std::min(edge, max_);
    }
  }
  return max_;
}

LatencyHistogram::Summary LatencyHistogram::Summarize() const {
  Summary s;
  s.n = n_;
  if (n_ == 0) return s;
  s.mean_ms = sum_ / static_cast<double>(n_);
  s.p50_ms = Percentile(50);
  s.p95_ms = Percentile(95);
  s.p99_ms = Percentile(99);
  s.p999_ms = Percentile(99.9);
  s.max_ms = max_;
  return s;
}

nlohmann::json LatencyHistogram::Summary::ToJson() const {
  return {{"n", n},           {"mean_ms", mean_ms}, {"p50_ms", p50_ms}, {"p95_ms", p95_ms},
          {"p99_ms", p99_ms}, {"p999_ms", p999_ms}, {"max_ms", max_ms}};
}

}  // namespace tend::agent
