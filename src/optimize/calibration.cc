#include "optimize/calibration.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace tend::optimize {

Result<CalibrationMethod> ParseCalibrationMethod(const std::string& name) {
  if (name == "minmax") return CalibrationMethod::kMinMax;
  if (name == "percentile") return CalibrationMethod::kPercentile;
  if (name == "entropy") return CalibrationMethod::kEntropy;
  return Fail(Error::Invalid("unknown calibration method '" + name +
                             "' (expected minmax, percentile or entropy)"));
}

const char* CalibrationMethodName(CalibrationMethod m) {
  switch (m) {
    case CalibrationMethod::kMinMax:
      return "minmax";
    case CalibrationMethod::kPercentile:
      return "percentile";
    case CalibrationMethod::kEntropy:
      return "entropy";
  }
  return "minmax";
}

Histogram::Histogram(double lo, double hi, int bins)
    : lo_(lo), hi_(hi), counts_(static_cast<size_t>(std::max(1, bins)), 0) {}

void Histogram::Add(std::span<const float> values, bool absolute) {
  const double n = static_cast<double>(counts_.size());
  const double width = hi_ - lo_;
  const double inv = width > 0 ? n / width : 0;
  const auto last = static_cast<int64_t>(counts_.size()) - 1;
  for (float f : values) {
    const double v = absolute ? std::fabs(static_cast<double>(f)) : static_cast<double>(f);
    int64_t b = static_cast<int64_t>(std::floor((v - lo_) * inv));
    b = std::clamp<int64_t>(b, 0, last);
    ++counts_[static_cast<size_t>(b)];
  }
  total_ += values.size();
}

namespace {

// MXNet's _smooth_distribution: give empty bins a little mass taken from the non-empty ones so
// that KL(P||Q) stays finite. Returns false when every bin is empty.
bool Smooth(std::vector<double>& p) {
  constexpr double kEps = 1e-4;
  size_t zeros = 0;
  for (double v : p) zeros += (v == 0);
  const size_t nonzeros = p.size() - zeros;
  if (nonzeros == 0) return false;
  const double eps1 = kEps * static_cast<double>(zeros) / static_cast<double>(nonzeros);
  for (double& v : p) v = v == 0 ? kEps : v - eps1;
  return true;
}

double KlDivergence(const std::vector<double>& p, const std::vector<double>& q) {
  const double sp = std::accumulate(p.begin(), p.end(), 0.0);
  const double sq = std::accumulate(q.begin(), q.end(), 0.0);
  double kl = 0;
  for (size_t k = 0; k < p.size(); ++k) {
    const double pk = p[k] / sp, qk = q[k] / sq;
    if (pk > 0) kl += pk * std::log(pk / qk);
  }
  return kl;
}

}  // namespace

double EntropyThreshold(const std::vector<uint64_t>& counts, double bin_width, int levels) {
  const size_t n = counts.size();
  const auto nq = static_cast<size_t>(std::max(1, levels));
  if (n == 0) return 0;
  if (n <= nq) return static_cast<double>(n) * bin_width;
  // Suffix sums give the outlier mass beyond each candidate threshold in O(1).
  std::vector<double> suffix(n + 1, 0.0);
  for (size_t k = n; k-- > 0;) suffix[k] = suffix[k + 1] + static_cast<double>(counts[k]);
  if (suffix[0] == 0) return 0;

  double best_kl = std::numeric_limits<double>::infinity();
  size_t best_i = n;
  std::vector<double> p, q;
  for (size_t i = nq; i <= n; ++i) {
    p.assign(counts.begin(), counts.begin() + static_cast<std::ptrdiff_t>(i));
    p[i - 1] += suffix[i];
    // Quantise the clipped histogram (without the outliers) into nq levels and expand it back
    // over the non-empty bins of each level.
    q.assign(i, 0.0);
    const size_t merged = i / nq;
    for (size_t j = 0; j < nq; ++j) {
      const size_t start = j * merged;
      const size_t stop = (j == nq - 1) ? i : start + merged;
      double total = 0;
      size_t nonzero = 0;
      for (size_t k = start; k < stop; ++k) {
        total += static_cast<double>(counts[k]);
        nonzero += (p[k] != 0);
      }
      if (nonzero == 0) continue;
      for (size_t k = start; k < stop; ++k) {
        if (p[k] != 0) q[k] = total / static_cast<double>(nonzero);
      }
    }
    if (!Smooth(p) || !Smooth(q)) continue;
    const double kl = KlDivergence(p, q);
    if (kl < best_kl) {
      best_kl = kl;
      best_i = i;
    }
  }
  return static_cast<double>(best_i) * bin_width;
}

Range PercentileRange(const Histogram& hist, double percentile) {
  const auto& c = hist.counts();
  const double total = static_cast<double>(hist.total());
  if (total == 0 || c.empty())
    return {static_cast<float>(hist.lo()), static_cast<float>(hist.hi())};
  const double tail = total * std::clamp(100.0 - percentile, 0.0, 100.0) / 200.0;
  const double w = hist.bin_width();
  // Lower: the left edge of the first bin where the cumulative count passes the tail.
  double cum = 0;
  size_t lo_bin = 0;
  for (; lo_bin < c.size(); ++lo_bin) {
    cum += static_cast<double>(c[lo_bin]);
    if (cum > tail) break;
  }
  cum = 0;
  size_t hi_bin = c.size();
  while (hi_bin > 0) {
    cum += static_cast<double>(c[hi_bin - 1]);
    if (cum > tail) break;
    --hi_bin;
  }
  Range r;
  r.min = static_cast<float>(hist.lo() + static_cast<double>(lo_bin) * w);
  r.max = static_cast<float>(hist.lo() + static_cast<double>(hi_bin) * w);
  if (r.max < r.min) r.max = r.min;
  return r;
}

void RangeCollector::ObserveFirstPass(const std::string& tensor, std::span<const float> values) {
  if (values.empty()) return;
  auto [mn, mx] = std::minmax_element(values.begin(), values.end());
  auto it = minmax_.find(tensor);
  if (it == minmax_.end()) {
    minmax_[tensor] = Range{*mn, *mx};
  } else {
    it->second.min = std::min(it->second.min, *mn);
    it->second.max = std::max(it->second.max, *mx);
  }
}

void RangeCollector::StartSecondPass() {
  hists_.clear();
  for (const auto& [name, r] : minmax_) {
    if (options_.method == CalibrationMethod::kEntropy) {
      const double absmax = std::max(std::fabs(r.min), std::fabs(r.max));
      hists_.emplace(name, Histogram(0.0, absmax, options_.histogram_bins));
    } else {
      hists_.emplace(name, Histogram(r.min, r.max, options_.histogram_bins * 4));
    }
  }
}

void RangeCollector::ObserveSecondPass(const std::string& tensor, std::span<const float> values) {
  auto it = hists_.find(tensor);
  if (it == hists_.end()) return;
  it->second.Add(values, options_.method == CalibrationMethod::kEntropy);
}

std::map<std::string, Range> RangeCollector::Ranges() const {
  std::map<std::string, Range> out;
  for (const auto& [name, mm] : minmax_) {
    Range r = mm;
    auto h = hists_.find(name);
    if (h != hists_.end() && h->second.total() > 0) {
      if (options_.method == CalibrationMethod::kPercentile) {
        r = PercentileRange(h->second, options_.percentile);
      } else if (options_.method == CalibrationMethod::kEntropy) {
        // A non-negative tensor (after ReLU) uses all 256 uint8 levels on [0, T]; a signed one
        // gets 128 levels on each side.
        const bool one_sided = mm.min >= 0;
        const double t =
            EntropyThreshold(h->second.counts(), h->second.bin_width(), one_sided ? 256 : 128);
        r.min = std::max(mm.min, static_cast<float>(-t));
        r.max = std::min(mm.max, static_cast<float>(t));
      }
      r.min = std::max(r.min, mm.min);
      r.max = std::min(r.max, mm.max);
    }
    r.min = std::min(r.min, 0.0f);
    r.max = std::max(r.max, 0.0f);
    out[name] = r;
  }
  return out;
}

QuantParams AsymmetricUInt8(Range r) {
  const double lo = std::min(0.0, static_cast<double>(r.min));
  const double hi = std::max(0.0, static_cast<double>(r.max));
  QuantParams q;
  const double scale = (hi - lo) / 255.0;
  if (!(scale >= std::numeric_limits<float>::min())) return q;  // empty or degenerate range
  q.scale = static_cast<float>(scale);
  q.zero_point = static_cast<int32_t>(std::clamp(std::lround(-lo / scale), 0L, 255L));
  return q;
}

QuantParams SymmetricInt8(Range r) {
  const double amax =
      std::max(std::fabs(static_cast<double>(r.min)), std::fabs(static_cast<double>(r.max)));
  QuantParams q;
  const double scale = amax / 127.0;
  if (!(scale >= std::numeric_limits<float>::min())) return q;
  q.scale = static_cast<float>(scale);
  return q;
}

}  // namespace tend::optimize
