#include "detect/select.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "eval/metrics.h"

namespace tend::detect {
namespace {

using nlohmann::json;

std::vector<double> ScoresOf(const TrainedDetector& det, const Matrix& x) {
  auto s = ScoreReference(det, x);
  if (!s) return {};
  return std::vector<double>(s->begin(), s->end());
}

// Per-clip scores when `clip` names at least two clips, else the window scores.
std::vector<double> ByClip(const std::vector<double>& scores, const std::vector<int>& clip,
                           size_t first_row) {
  if (clip.empty()) return scores;
  std::map<int, std::vector<double>> groups;
  for (size_t i = 0; i < scores.size(); ++i) groups[clip[first_row + i]].push_back(scores[i]);
  std::vector<double> out;
  for (auto& [id, s] : groups) out.push_back(ClipScore(s));
  return out;
}

size_t ClipCount(const std::vector<int>& clip, size_t first_row, size_t rows) {
  if (clip.empty()) return rows;
  std::vector<int> ids(clip.begin() + static_cast<std::ptrdiff_t>(first_row),
                       clip.begin() + static_cast<std::ptrdiff_t>(first_row + rows));
  std::sort(ids.begin(), ids.end());
  return static_cast<size_t>(std::unique(ids.begin(), ids.end()) - ids.begin());
}

Result<Selection> ByAnomalies(const Rows& normal, const Rows& anomalous,
                              const std::vector<std::string>& names, const SelectOptions& opt) {
  const Matrix& x = *normal.x;
  const size_t hold_clips_needed = 2;
  json table = json::array();
  std::string best;
  double best_auc = -1;
  bool per_clip = false;
  for (const std::string& d : opt.candidates) {
    TrainOptions t = opt.train;
    t.detector = d;
    auto det = Train(x, names, t);
    if (!det) {
      table.push_back({{"detector", d}, {"skipped", det.error().message}});
      continue;
    }
    const size_t n_fit = det->calibration["n_train"].get<size_t>();
    const size_t n_hold = static_cast<size_t>(x.rows()) - n_fit;
    per_clip = ClipCount(normal.clip, n_fit, n_hold) >= hold_clips_needed &&
               ClipCount(anomalous.clip, 0, static_cast<size_t>(anomalous.x->rows())) >=
                   hold_clips_needed &&
               !normal.clip.empty() && !anomalous.clip.empty();
    const auto hs = ScoresOf(*det, x.bottomRows(static_cast<Eigen::Index>(n_hold)));
    const auto as = ScoresOf(*det, *anomalous.x);
    const double auc =
        per_clip ? eval::RocAuc(ByClip(hs, normal.clip, n_fit), ByClip(as, anomalous.clip, 0))
                 : eval::RocAuc(hs, as);
    table.push_back({{"detector", d}, {"auc", auc}});
    if (auc > best_auc + kAucTie) {
      best_auc = auc;
      best = d;
    }
  }
  if (best.empty()) return Fail(Error::Invalid("no detector could be trained on this data"));
  Selection s;
  s.detector = best;
  s.reason = fmt::format(
      "{}: best {} ROC AUC of held-out normal vs anomalous {} ({:.4f}; within {} counts as a "
      "tie, decided by preference order {})",
      best, per_clip ? "per-clip" : "per-window", per_clip ? "clips" : "windows", best_auc, kAucTie,
      fmt::join(opt.candidates, " > "));
  s.report = {{"rule", "anomalies: best held-out ROC AUC, ties to preference order"},
              {"per_clip", per_clip},
              {"candidates", table},
              {"chosen", best},
              {"reason", s.reason}};
  return s;
}

Result<Selection> ByForwardValidation(const Rows& normal, const std::vector<std::string>& names,
                                      const SelectOptions& opt) {
  const Matrix& x = *normal.x;
  const int n = static_cast<int>(x.rows());
  const int nt = std::max(kMinHoldoutWindows, static_cast<int>(std::lround(0.25 * n)));
  const int nf = n - 2 * nt;
  json table = json::array();
  std::string chosen, fewest;
  int fewest_alerts = n + 1;
  for (const std::string& d : opt.candidates) {
    TrainOptions t = opt.train;
    t.detector = d;
    t.holdout_fraction = static_cast<double>(nt) / (nf + nt);
    auto det = Train(x.topRows(nf + nt), names, t);
    if (!det) {
      table.push_back({{"detector", d}, {"skipped", det.error().message}});
      continue;
    }
    const auto later = ScoresOf(*det, x.bottomRows(nt));
    const int alerts = static_cast<int>(std::count_if(
        later.begin(), later.end(), [&](double v) { return v >= det->thresholds.low; }));
    table.push_back({{"detector", d}, {"later_windows_over_low", alerts}});
    if (chosen.empty() && alerts <= kMaxHeldOutAlerts) chosen = d;
    if (alerts < fewest_alerts) {
      fewest_alerts = alerts;
      fewest = d;
    }
  }
  if (fewest.empty()) return Fail(Error::Invalid("no detector could be trained on this data"));
  Selection s;
  s.detector = chosen.empty() ? fewest : chosen;
  s.reason = chosen.empty()
                 ? fmt::format(
                       "{}: fewest of the last {} normal windows over its LOW threshold ({}), "
                       "though every candidate had more than {}: the normal data drifts",
                       s.detector, nt, fewest_alerts, kMaxHeldOutAlerts)
                 : fmt::format(
                       "{}: first in preference order ({}) whose LOW threshold holds on the "
                       "last {} normal windows (at most {} over it)",
                       s.detector, fmt::join(opt.candidates, " > "), nt, kMaxHeldOutAlerts);
  s.report = {{"rule",
               "normal only: fit on the first half, calibrate on the next quarter, count the "
               "last quarter's windows over LOW; first in preference order with at most " +
                   std::to_string(kMaxHeldOutAlerts)},
              {"rows", {{"fit", nf}, {"calibrate", nt}, {"later", nt}}},
              {"candidates", table},
              {"chosen", s.detector},
              {"reason", s.reason}};
  return s;
}

}  // namespace

Result<Selection> SelectDetector(const Rows& normal, const Rows* anomalous,
                                 const std::vector<std::string>& names, const SelectOptions& opt) {
  if (normal.x == nullptr || opt.candidates.empty())
    return Fail(Error::Invalid("SelectDetector: no normal rows or no candidates"));
  for (const auto& d : opt.candidates)
    if (!KnownDetector(d)) return Fail(Error::Invalid(fmt::format("unknown detector '{}'", d)));
  if (anomalous != nullptr && anomalous->x != nullptr && anomalous->x->rows() > 0) {
    if (anomalous->x->cols() != normal.x->cols())
      return Fail(Error::Invalid("anomalous rows have another feature count than normal rows"));
    return ByAnomalies(normal, *anomalous, names, opt);
  }
  if (normal.x->rows() < kMinSelectRows) {
    Selection s;
    s.detector = opt.candidates.front();
    s.reason = fmt::format(
        "{}: {} normal windows are too few to compare detectors on newer normal data (need {}); "
        "kept the first in preference order",
        s.detector, normal.x->rows(), kMinSelectRows);
    s.report = {
        {"rule", "too few windows to compare"}, {"chosen", s.detector}, {"reason", s.reason}};
    return s;
  }
  return ByForwardValidation(normal, names, opt);
}

double ClipScore(const std::vector<double>& s) {
  if (s.empty()) return 0;
  double mean = 0;
  for (double v : s) mean += v;
  mean /= static_cast<double>(s.size());
  const double c = mean > 0 ? 1e-6 * mean : 1e-30;
  double log_sum = 0;
  for (double v : s) log_sum += std::log(std::max(v, 0.0) + c);
  return std::exp(log_sum / static_cast<double>(s.size())) - c;
}

}  // namespace tend::detect
