// `tend eval`: how well a model separates normal from anomalous data — ROC AUC overall and per
// anomalous input (fault class), and precision / recall / false-alarm rate at each severity
// threshold; a table, --json, and an SVG of the score distributions with the thresholds drawn.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "agent/dataset.h"
#include "agent/served_model.h"
#include "cli/commands.h"
#include "cli/vision_commands.h"
#include "core/fs.h"
#include "detect/select.h"
#include "eval/metrics.h"

namespace tend::cli {
namespace {

struct EvalArgs {
  std::string model;
  std::vector<std::string> normal, anomalous;
  bool json = false;
  std::string plot;
  int channel = -1;
};

struct Scored {
  std::string input;
  std::vector<double> scores;
};

std::vector<Scored> ScoreInputs(agent::ServedModel& model, const std::vector<std::string>& specs,
                                const sources::SourceOptions& so) {
  std::vector<Scored> out;
  agent::ScoreOut s;
  model.PrepareOut(s);
  for (auto& spec : specs) {
    auto in = OrDie(agent::InputSpec::Parse(spec));
    Scored sc{in.ToString(), {}};
    OrDie(agent::ForEachWindow({in}, so, model.windowing(), -1,
                               [&](std::span<const float> w, const agent::WindowInfo& info) -> Status {
                                 auto st = model.Score(w, s);
                                 if (!st) return Fail(st.error().Wrap(info.input->ToString()));
                                 sc.scores.push_back(s.score);
                                 return Ok();
                               }));
    if (sc.scores.empty()) Die(in.ToString() + ": no windows (too short for the model's window?)");
    out.push_back(std::move(sc));
  }
  return out;
}

std::string Svg(const std::vector<Scored>& normal, const std::vector<Scored>& anomalous,
                const SeverityThresholds& t, const std::string& title) {
  // Histograms of log10(score): normal in blue, each anomalous input in its own colour.
  std::vector<double> all;
  for (auto* group : {&normal, &anomalous})
    for (auto& s : *group)
      for (double v : s.scores) all.push_back(std::log10(std::max(v, 1e-6)));
  for (double v : {t.low, t.medium, t.high}) all.push_back(std::log10(std::max<double>(v, 1e-6)));
  double lo = *std::min_element(all.begin(), all.end()), hi = *std::max_element(all.begin(), all.end());
  lo = std::floor(lo * 2) / 2;
  hi = std::ceil(hi * 2) / 2 + 1e-9;
  const int bins = 60, W = 900, H = 420, L = 60, R = 220, T = 40, B = 50;
  auto hist = [&](const std::vector<double>& v) {
    std::vector<double> h(bins, 0);
    for (double x : v) {
      int b = static_cast<int>((std::log10(std::max(x, 1e-6)) - lo) / (hi - lo) * bins);
      h[static_cast<size_t>(std::clamp(b, 0, bins - 1))] += 1.0 / static_cast<double>(v.size());
    }
    return h;
  };
  std::vector<std::pair<std::string, std::vector<double>>> series;
  std::vector<double> nv;
  for (auto& s : normal) nv.insert(nv.end(), s.scores.begin(), s.scores.end());
  series.emplace_back("normal", hist(nv));
  for (auto& s : anomalous) series.emplace_back(s.input, hist(s.scores));
  double ymax = 0;
  for (auto& [_, h] : series) ymax = std::max(ymax, *std::max_element(h.begin(), h.end()));
  const char* colours[] = {"#1f77b4", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b",
                           "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939"};
  auto X = [&](double v) { return L + (v - lo) / (hi - lo) * (W - L - R); };
  auto Y = [&](double v) { return H - B - v / ymax * (H - T - B); };
  std::string s = fmt::format(
      "<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' font-family='sans-serif' font-size='12'>\n"
      "<rect width='100%' height='100%' fill='white'/>\n<text x='{}' y='22' font-size='15'>{}</text>\n",
      W, H, L, title);
  s += fmt::format("<line x1='{}' y1='{}' x2='{}' y2='{}' stroke='black'/>\n", L, H - B, W - R, H - B);
  s += fmt::format("<line x1='{}' y1='{}' x2='{}' y2='{}' stroke='black'/>\n", L, T, L, H - B);
  for (double v = lo; v <= hi; v += 0.5) {
    s += fmt::format("<text x='{:.1f}' y='{}' text-anchor='middle'>1e{:.1f}</text>\n", X(v), H - B + 16, v);
  }
  s += fmt::format("<text x='{}' y='{}' text-anchor='middle'>anomaly score (log scale)</text>\n",
                   (L + W - R) / 2, H - 12);
  s += fmt::format("<text x='14' y='{}' transform='rotate(-90 14 {})' text-anchor='middle'>fraction of windows</text>\n",
                   (T + H - B) / 2, (T + H - B) / 2);
  for (size_t k = 0; k < series.size(); ++k) {
    std::string pts;
    for (int b = 0; b < bins; ++b) {
      double x0 = lo + (hi - lo) * b / bins, x1 = lo + (hi - lo) * (b + 1) / bins;
      double y = Y(series[k].second[static_cast<size_t>(b)]);
      pts += fmt::format("{:.1f},{:.1f} {:.1f},{:.1f} ", X(x0), y, X(x1), y);
    }
    const char* c = colours[k % 12];
    s += fmt::format("<polyline fill='none' stroke='{}' stroke-width='1.6' points='{}'/>\n", c, pts);
    std::string name = series[k].first;
    if (name.size() > 30) name = "..." + name.substr(name.size() - 27);
    s += fmt::format("<rect x='{}' y='{}' width='12' height='12' fill='{}'/><text x='{}' y='{}'>{}</text>\n",
                     W - R + 10, T + 18 * k, c, W - R + 28, T + 18 * k + 11, name);
  }
  const char* names[] = {"LOW", "MEDIUM", "HIGH"};
  float th[] = {t.low, t.medium, t.high};
  for (int i = 0; i < 3; ++i) {
    double x = X(std::log10(std::max<double>(th[i], 1e-6)));
    s += fmt::format("<line x1='{0:.1f}' y1='{1}' x2='{0:.1f}' y2='{2}' stroke='black' stroke-dasharray='5,4'/>"
                     "<text x='{3:.1f}' y='{4}' font-size='11'>{5}</text>\n",
                     x, T, H - B, x + 3, T + 10 + 12 * i, names[i]);
  }
  return s + "</svg>\n";
}

// One score per input (clip: the geometric mean of its windows), and the ROC AUC over clips when
// both sides have at least two.
void AddClipFigures(nlohmann::json& j, const std::vector<Scored>& normal,
                    const std::vector<Scored>& anomalous) {
  if (normal.size() < 2 || anomalous.size() < 2) return;
  std::vector<double> nc, ac;
  for (auto& s : normal) nc.push_back(detect::ClipScore(s.scores));
  for (auto& s : anomalous) ac.push_back(detect::ClipScore(s.scores));
  j["normal_clips"] = nc.size();
  j["anomalous_clips"] = ac.size();
  j["clip_auc"] = eval::RocAuc(nc, ac);
}

void DoEval(const EvalArgs& a) {
  if (a.normal.empty() || a.anomalous.empty()) Die("eval needs --normal and --anomalous inputs");
  if (IsImageModelFile(a.model)) return RunImageEval(a.model, a.normal, a.anomalous, a.json, a.plot);
  agent::ServeOptions sopt;
  sopt.warmup_runs = 2;
  auto model = OrDie(agent::ServedModel::Load(a.model, sopt));
  sources::SourceOptions so;
  so.wav_channel = a.channel;
  auto normal = ScoreInputs(*model, a.normal, so);
  auto anomalous = ScoreInputs(*model, a.anomalous, so);
  auto t = model->thresholds();
  std::vector<double> nv, av;
  for (auto& s : normal) nv.insert(nv.end(), s.scores.begin(), s.scores.end());
  for (auto& s : anomalous) av.insert(av.end(), s.scores.begin(), s.scores.end());

  nlohmann::json j;
  j["model"] = a.model;
  j["normal_windows"] = nv.size();
  j["anomalous_windows"] = av.size();
  j["auc"] = eval::RocAuc(nv, av);
  j["thresholds"] = {{"LOW", t.low}, {"MEDIUM", t.medium}, {"HIGH", t.high}};
  const char* names[] = {"LOW", "MEDIUM", "HIGH"};
  float th[] = {t.low, t.medium, t.high};
  for (int i = 0; i < 3; ++i) {
    auto c = eval::AtThreshold(nv, av, th[i]);
    j["at_threshold"][names[i]] = {{"threshold", th[i]},       {"precision", c.precision},
                                   {"recall", c.recall},       {"false_alarm_rate", c.false_alarm_rate},
                                   {"false_alarms", c.fp},     {"detections", c.tp}};
  }
  AddClipFigures(j, normal, anomalous);
  for (auto& s : normal) {
    auto c = eval::AtThreshold(s.scores, {}, t.low);
    j["normal_inputs"].push_back({{"input", s.input}, {"windows", s.scores.size()},
                                  {"clip_score", detect::ClipScore(s.scores)},
                                  {"false_alarm_rate", c.false_alarm_rate}});
  }
  for (auto& s : anomalous) {
    auto c = eval::AtThreshold(nv, s.scores, t.low);
    j["anomalous_inputs"].push_back({{"input", s.input},
                                     {"windows", s.scores.size()},
                                     {"auc", eval::RocAuc(nv, s.scores)},
                                     {"clip_score", detect::ClipScore(s.scores)},
                                     {"recall_at_low", c.recall}});
  }
  if (!a.plot.empty()) {
    OrDie(fs::WriteFileAtomic(a.plot, Svg(normal, anomalous, t, "tend eval: " + model->card().name +
                                                                 " v" + model->card().version)),
          "writing plot");
    j["plot"] = a.plot;
  }
  if (a.json) {
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("model %s: %zu normal windows, %zu anomalous windows, ROC AUC %.4f\n", a.model.c_str(),
              nv.size(), av.size(), j["auc"].get<double>());
  if (j.contains("clip_auc")) {
    std::printf("per clip (one score per input): %zu normal, %zu anomalous, ROC AUC %.4f\n",
                j["normal_clips"].get<size_t>(), j["anomalous_clips"].get<size_t>(),
                j["clip_auc"].get<double>());
  }
  std::printf("\n");
  std::printf("%-8s %12s %10s %10s %12s\n", "tier", "threshold", "precision", "recall", "false-alarm");
  for (int i = 0; i < 3; ++i) {
    auto& r = j["at_threshold"][names[i]];
    std::printf("%-8s %12.4g %10.4f %10.4f %12.5f\n", names[i], static_cast<double>(th[i]),
                r["precision"].get<double>(), r["recall"].get<double>(), r["false_alarm_rate"].get<double>());
  }
  std::printf("\n%-52s %8s %8s %12s\n", "input", "windows", "AUC", "recall@LOW");
  for (auto& r : j["anomalous_inputs"]) {
    std::string in = r["input"];
    if (in.size() > 52) in = "..." + in.substr(in.size() - 49);
    std::printf("%-52s %8zu %8.4f %12.4f\n", in.c_str(), r["windows"].get<size_t>(), r["auc"].get<double>(),
                r["recall_at_low"].get<double>());
  }
  for (auto& r : j["normal_inputs"]) {
    std::string in = r["input"];
    if (in.size() > 52) in = "..." + in.substr(in.size() - 49);
    std::printf("%-52s %8zu %8s %12s  false-alarm rate %.4f\n", in.c_str(), r["windows"].get<size_t>(),
                "-", "-", r["false_alarm_rate"].get<double>());
  }
  if (!a.plot.empty()) std::printf("\nplot: %s\n", a.plot.c_str());
}

}  // namespace

void RegisterEval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand("eval", "ROC AUC, precision/recall/false alarms per threshold, and a plot");
  cmd->add_option("--model,-m", a->model, "Model (.onnx)")->required();
  cmd->add_option("--normal", a->normal, "Normal inputs (FILE@START:END to cut)")->required();
  cmd->add_option("--anomalous", a->anomalous, "Anomalous inputs, one class per input")->required();
  cmd->add_flag("--json", a->json, "Print JSON");
  cmd->add_option("--plot", a->plot, "Write an SVG of the score distributions with the thresholds");
  cmd->add_option("--channel", a->channel, "Use only this channel of multi-channel inputs");
  cmd->callback([a] { DoEval(*a); });
}

}  // namespace tend::cli
