#include "inspect/image_eval.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "eval/metrics.h"

namespace tend::inspect {

using nlohmann::json;

Result<ScoredImages> ScoreImageSet(ImageModel& model, const std::string& set,
                                   const ImageCallback& each) {
  TEND_ASSIGN_OR_RETURN(auto src, sources::OpenImageFiles(set, {}));
  ScoredImages out;
  out.input = set;
  ImageScore s;
  model.PrepareOut(s);
  sources::Frame f;
  for (;;) {
    TEND_ASSIGN_OR_RETURN(bool more, src->Next(f));
    if (!more) break;
    if (!f.status) return Fail(f.status.error().Wrap(set));
    auto st = model.Score(f.image.view(), s);
    if (!st) return Fail(st.error().Wrap(f.path));
    out.files.push_back(f.path);
    out.scores.push_back(s.score);
    if (each) TEND_RETURN_NOT_OK(each(f, s));
  }
  return out;
}

namespace {

std::vector<double> Pool(const std::vector<ScoredImages>& sets) {
  std::vector<double> v;
  for (const auto& s : sets) v.insert(v.end(), s.scores.begin(), s.scores.end());
  return v;
}

constexpr const char* kTiers[] = {"LOW", "MEDIUM", "HIGH"};

}  // namespace

json EvaluationReport(const SeverityThresholds& t, const std::vector<ScoredImages>& normal,
                      const std::vector<ScoredImages>& anomalous) {
  const auto nv = Pool(normal), av = Pool(anomalous);
  const float th[] = {t.low, t.medium, t.high};
  json j;
  j["normal_images"] = nv.size();
  j["anomalous_images"] = av.size();
  j["auc"] = eval::RocAuc(nv, av);
  j["thresholds"] = {{"LOW", t.low}, {"MEDIUM", t.medium}, {"HIGH", t.high}};
  for (int i = 0; i < 3; ++i) {
    auto c = eval::AtThreshold(nv, av, th[i]);
    j["at_threshold"][kTiers[i]] = {{"threshold", th[i]},
                                    {"recall", c.recall},
                                    {"false_reject_rate", c.false_alarm_rate},
                                    {"precision", c.precision},
                                    {"rejects", c.tp + c.fp},
                                    {"false_rejects", c.fp},
                                    {"misses", c.fn}};
  }
  j["anomalous_inputs"] = json::array();
  for (const auto& s : anomalous) {
    json r = {{"input", s.input}, {"images", s.scores.size()}, {"auc", eval::RocAuc(nv, s.scores)}};
    for (int i = 0; i < 3; ++i) {
      r[fmt::format("recall_at_{}", kTiers[i])] = eval::AtThreshold(nv, s.scores, th[i]).recall;
    }
    j["anomalous_inputs"].push_back(r);
  }
  j["normal_inputs"] = json::array();
  for (const auto& s : normal) {
    json r = {{"input", s.input}, {"images", s.scores.size()}};
    for (int i = 0; i < 3; ++i) {
      r[fmt::format("false_reject_rate_at_{}", kTiers[i])] =
          eval::AtThreshold(s.scores, {}, th[i]).false_alarm_rate;
    }
    j["normal_inputs"].push_back(r);
  }
  return j;
}

namespace {

// Fractions of `v` in `bins` equal bins over [lo, hi] (values outside go to the end bins).
std::vector<double> Histogram(const std::vector<double>& v, double lo, double hi, int bins) {
  std::vector<double> h(static_cast<size_t>(bins), 0);
  for (double x : v) {
    int b = static_cast<int>((x - lo) / (hi - lo) * bins);
    h[static_cast<size_t>(std::clamp(b, 0, bins - 1))] += 1.0 / static_cast<double>(v.size());
  }
  return h;
}

}  // namespace

std::string ScoreDistributionSvg(const SeverityThresholds& t,
                                 const std::vector<ScoredImages>& normal,
                                 const std::vector<ScoredImages>& anomalous,
                                 const std::string& title) {
  std::vector<std::pair<std::string, std::vector<double>>> series = {{"good parts", Pool(normal)}};
  for (const auto& s : anomalous) series.emplace_back(s.input, s.scores);
  std::vector<double> all = {t.low, t.medium, t.high};
  for (const auto& [_, v] : series) all.insert(all.end(), v.begin(), v.end());
  const double lo = std::floor(*std::min_element(all.begin(), all.end()));
  const double hi = std::ceil(*std::max_element(all.begin(), all.end())) + 1e-9;
  const int bins = 50, W = 900, H = 420, L = 60, R = 240, T = 40, B = 50;
  std::vector<std::vector<double>> hists;
  double ymax = 1e-9;
  for (const auto& [_, v] : series) {
    hists.push_back(Histogram(v, lo, hi, bins));
    ymax = std::max(ymax, *std::max_element(hists.back().begin(), hists.back().end()));
  }
  auto X = [&](double v) { return L + (v - lo) / (hi - lo) * (W - L - R); };
  auto Y = [&](double v) { return H - B - v / ymax * (H - T - B); };
  static const char* kColours[] = {"#1f77b4", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd",
                                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  std::string s = fmt::format(
      "<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' font-family='sans-serif' "
      "font-size='12'>\n"
      "<rect width='100%' height='100%' fill='white'/>\n<text x='{}' y='22' "
      "font-size='15'>{}</text>\n"
      "<line x1='{}' y1='{}' x2='{}' y2='{}' stroke='black'/>\n",
      W, H, L, title, L, H - B, W - R, H - B);
  const double step = std::max(1.0, std::round((hi - lo) / 8));
  for (double v = lo; v <= hi; v += step) {
    s += fmt::format("<text x='{:.1f}' y='{}' text-anchor='middle'>{:g}</text>\n", X(v), H - B + 16,
                     v);
  }
  s += fmt::format(
      "<text x='{}' y='{}' text-anchor='middle'>anomaly score (largest patch distance)</text>\n",
      (L + W - R) / 2, H - 12);
  for (size_t k = 0; k < series.size(); ++k) {
    std::string pts;
    for (int b = 0; b < bins; ++b) {
      const double y = Y(hists[k][static_cast<size_t>(b)]);
      pts += fmt::format("{:.1f},{:.1f} {:.1f},{:.1f} ", X(lo + (hi - lo) * b / bins), y,
                         X(lo + (hi - lo) * (b + 1) / bins), y);
    }
    const char* c = kColours[k % 10];
    std::string name = series[k].first;
    if (name.size() > 32) name = "..." + name.substr(name.size() - 29);
    s += fmt::format(
        "<polyline fill='none' stroke='{}' stroke-width='1.6' points='{}'/>\n"
        "<rect x='{}' y='{}' width='12' height='12' fill='{}'/><text x='{}' y='{}'>{} "
        "({})</text>\n",
        c, pts, W - R + 10, T + 18 * k, c, W - R + 28, T + 18 * k + 11, name,
        series[k].second.size());
  }
  const float th[] = {t.low, t.medium, t.high};
  for (int i = 0; i < 3; ++i) {
    s += fmt::format(
        "<line x1='{0:.1f}' y1='{1}' x2='{0:.1f}' y2='{2}' stroke='black' stroke-dasharray='5,4'/>"
        "<text x='{3:.1f}' y='{4}' font-size='11'>{5}</text>\n",
        X(th[i]), T, H - B, X(th[i]) + 3, T + 10 + 12 * i, kTiers[i]);
  }
  return s + "</svg>\n";
}

Result<double> ImageReferenceAuc(const std::string& model_path,
                                 const std::vector<std::string>& normal,
                                 const std::vector<std::string>& anomalous,
                                 const ImageServeOptions& options) {
  if (normal.empty() || anomalous.empty()) {
    return Fail(Error::Invalid("image reference set: needs good and defect folders"));
  }
  TEND_ASSIGN_OR_RETURN(auto model, ImageModel::Load(model_path, options));
  auto pooled = [&](const std::vector<std::string>& sets) -> Result<std::vector<double>> {
    std::vector<double> v;
    for (const auto& set : sets) {
      TEND_ASSIGN_OR_RETURN(auto s, ScoreImageSet(*model, set));
      v.insert(v.end(), s.scores.begin(), s.scores.end());
    }
    return v;
  };
  TEND_ASSIGN_OR_RETURN(auto nv, pooled(normal));
  TEND_ASSIGN_OR_RETURN(auto av, pooled(anomalous));
  return eval::RocAuc(nv, av);
}

}  // namespace tend::inspect
