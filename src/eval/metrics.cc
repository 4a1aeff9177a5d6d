#include "eval/metrics.h"

#include <algorithm>
#include <utility>

namespace tend::eval {

double RocAuc(const std::vector<double>& normal, const std::vector<double>& anomalous) {
  if (normal.empty() || anomalous.empty()) return 0.5;
  // Rank-sum over the pooled, sorted scores with average ranks for ties.
  std::vector<std::pair<double, int>> all;
  all.reserve(normal.size() + anomalous.size());
  for (double v : normal) all.emplace_back(v, 0);
  for (double v : anomalous) all.emplace_back(v, 1);
  std::sort(all.begin(), all.end(), [](auto& a, auto& b) { return a.first < b.first; });
  double rank_sum = 0;
  size_t i = 0;
  while (i < all.size()) {
    size_t j = i;
    while (j < all.size() && all[j].first == all[i].first) ++j;
    double avg = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2.0;
    for (size_t k = i; k < j; ++k)
      if (all[k].second == 1) rank_sum += avg;
    i = j;
  }
  double na = static_cast<double>(anomalous.size()), nn = static_cast<double>(normal.size());
  return (rank_sum - na * (na + 1) / 2.0) / (na * nn);
}

AtThresholdResult AtThreshold(const std::vector<double>& normal, const std::vector<double>& anomalous,
                              double threshold) {
  AtThresholdResult r;
  for (double v : normal) (v >= threshold ? r.fp : r.tn)++;
  for (double v : anomalous) (v >= threshold ? r.tp : r.fn)++;
  r.precision = r.tp + r.fp ? static_cast<double>(r.tp) / static_cast<double>(r.tp + r.fp) : 0;
  r.recall = r.tp + r.fn ? static_cast<double>(r.tp) / static_cast<double>(r.tp + r.fn) : 0;
  r.false_alarm_rate = r.fp + r.tn ? static_cast<double>(r.fp) / static_cast<double>(r.fp + r.tn) : 0;
  return r;
}

}  // namespace tend::eval
