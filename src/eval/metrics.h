// Detection quality figures: ROC AUC (Mann–Whitney, ties counted half) and the confusion
// figures at a threshold. Used by `tend eval`, `tend compare` and the OTA quality gate.
#pragma once

#include <cstdint>
#include <vector>

namespace tend::eval {

double RocAuc(const std::vector<double>& normal, const std::vector<double>& anomalous);

struct AtThresholdResult {
  int64_t tp = 0, fp = 0, fn = 0, tn = 0;
  double precision = 0, recall = 0, false_alarm_rate = 0;
};
// A window is flagged when score >= threshold.
AtThresholdResult AtThreshold(const std::vector<double>& normal, const std::vector<double>& anomalous,
                              double threshold);

}  // namespace tend::eval
