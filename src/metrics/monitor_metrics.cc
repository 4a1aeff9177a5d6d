#include "metrics/monitor_metrics.h"

#include <prometheus/metric_family.h>

#include <algorithm>
#include <cmath>
#include <optional>

namespace tend::metrics {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using LabelList = std::vector<std::pair<std::string, std::string>>;

ClientMetric Metric(const LabelList& base, const LabelList& extra, double v, bool counter) {
  ClientMetric m;
  for (const auto& [k, val] : base) m.label.push_back({k, val});
  for (const auto& [k, val] : extra) m.label.push_back({k, val});
  (counter ? m.counter.value : m.gauge.value) = v;
  return m;
}

double Round4(double v) { return std::round(v * 1e4) / 1e4; }

}  // namespace

MonitorFigures MonitorFiguresOf(const HealthMonitor* health, const DriftMonitor* drift,
                                const std::vector<std::string>& names, const InputHealth* input,
                                const AdaptiveBaseline* baseline) {
  MonitorFigures f;
  if (health) f.health = health->status();
  if (drift && drift->ready()) {
    f.drift_level = drift->Level();
    for (const FeatureDrift& d : drift->Top()) {
      const auto i = static_cast<size_t>(d.feature);
      f.feature_drift.emplace_back(i < names.size() ? names[i] : std::to_string(i), d.psi);
    }
  }
  if (input) f.input = input->status();
  if (baseline) {
    f.baseline_shift_sd = baseline->MaxShiftSd();
    f.baseline_steps = baseline->step();
  }
  return f;
}

namespace {

// A family created on first use, so that names no asset has are left out.
class LazyFamily {
 public:
  LazyFamily(std::vector<MetricFamily>& out, const char* name, const char* help, MetricType type)
      : out_(out), name_(name), help_(help), type_(type) {}
  void Add(ClientMetric m) {
    if (!index_) {
      index_ = out_.size();
      out_.push_back(MetricFamily{name_, help_, type_, {}});
    }
    out_[*index_].metric.push_back(std::move(m));
  }

 private:
  std::vector<MetricFamily>& out_;
  const char* name_;
  const char* help_;
  MetricType type_;
  std::optional<size_t> index_;
};

}  // namespace

std::vector<MetricFamily> AppendMonitorFamilies(const std::vector<LabelledMonitorFigures>& assets) {
  std::vector<MetricFamily> out;
  LazyFamily state(out, "edge_health_state",
                   "Health over many events: 0 ok, 1 warning (a change worth a look), 2 alarm "
                   "(degradation confirmed).",
                   MetricType::Gauge);
  LazyFamily cusum(out, "edge_health_cusum",
                   "The health monitor's evidence (CUSUM, in commissioning standard deviations): "
                   "warning and alarm.",
                   MetricType::Gauge);
  LazyFamily level(out, "edge_drift_level",
                   "Worst feature drift against commissioning: 0 none, 1 warn (PSI >= 0.1), 2 "
                   "alert (PSI >= 0.25).",
                   MetricType::Gauge);
  LazyFamily drift(out, "edge_feature_drift",
                   "Population stability index of a feature over the rolling window against "
                   "its commissioning deciles (excess over chance); the top k features only.",
                   MetricType::Gauge);
  LazyFamily input(out, "edge_input_problem_windows_total",
                   "Windows with an input problem: flat_line, clipping, non_finite; "
                   "rate_glitch counts timing checks off the nominal sample rate.",
                   MetricType::Counter);
  LazyFamily shift(out, "edge_baseline_shift_sd",
                   "How far the adaptive baseline sits from commissioning: largest feature shift "
                   "in commissioning standard deviations (capped).",
                   MetricType::Gauge);
  LazyFamily steps(out, "edge_baseline_adaptations_total", "Adaptive baseline steps committed.",
                   MetricType::Counter);
  for (const auto& [base, f] : assets) {
    if (f.health) {
      state.Add(Metric(base, {}, double(f.health->state), false));
      cusum.Add(Metric(base, {{"cusum", "warning"}}, f.health->cusum, false));
      cusum.Add(Metric(base, {{"cusum", "alarm"}}, f.health->alarm_cusum, false));
    }
    if (f.drift_level) {
      level.Add(Metric(base, {}, double(*f.drift_level), false));
      for (const auto& [name, psi] : f.feature_drift) {
        drift.Add(Metric(base, {{"feature", name}}, psi, false));
      }
    }
    if (f.input) {
      input.Add(Metric(base, {{"problem", "flat_line"}}, double(f.input->flat_windows), true));
      input.Add(Metric(base, {{"problem", "clipping"}}, double(f.input->clipped_windows), true));
      input.Add(
          Metric(base, {{"problem", "non_finite"}}, double(f.input->non_finite_windows), true));
      input.Add(Metric(base, {{"problem", "rate_glitch"}}, double(f.input->rate_glitches), true));
    }
    if (f.baseline_shift_sd) {
      shift.Add(Metric(base, {}, *f.baseline_shift_sd, false));
      steps.Add(Metric(base, {}, double(f.baseline_steps), true));
    }
  }
  return out;
}

void AddMonitorHealthFields(const MonitorFigures& f, nlohmann::json& j) {
  if (f.health) {
    j["health"] = HealthStateName(f.health->state);
    j["health_cusum"] = Round4(f.health->cusum);
    j["health_alarm_cusum"] = Round4(f.health->alarm_cusum);
  }
  if (f.drift_level) {
    j["drift_level"] = DriftLevelName(*f.drift_level);
    nlohmann::json d = nlohmann::json::object();
    for (const auto& [name, psi] : f.feature_drift) d[name] = Round4(psi);
    j["feature_drift"] = d;
  }
  if (f.input) {
    j["input_problems"] = InputProblemNames(f.input->problems);
    j["input_problem_windows"] = {{"flat_line", f.input->flat_windows},
                                  {"clipping", f.input->clipped_windows},
                                  {"non_finite", f.input->non_finite_windows},
                                  {"rate_glitch", f.input->rate_glitches}};
  }
  if (f.baseline_shift_sd) {
    j["baseline_shift_sd"] = Round4(*f.baseline_shift_sd);
    j["baseline_steps"] = f.baseline_steps;
  }
}

void AddMonitorFields(const std::vector<std::pair<std::string, MonitorFigures>>& assets,
                      const std::string& primary, nlohmann::json& j) {
  if (assets.empty()) return;
  auto it =
      std::find_if(assets.begin(), assets.end(), [&](const auto& a) { return a.first == primary; });
  AddMonitorHealthFields(it != assets.end() ? it->second : assets.front().second, j);
  if (assets.size() < 2) return;
  nlohmann::json per = nlohmann::json::object();
  for (const auto& [asset, f] : assets) {
    nlohmann::json one = nlohmann::json::object();
    AddMonitorHealthFields(f, one);
    per[asset] = std::move(one);
  }
  j["monitors"] = std::move(per);
}

}  // namespace tend::metrics
