#include "metrics/monitor_metrics.h"

#include <prometheus/metric_family.h>

#include <cmath>

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

MetricFamily& Family(std::vector<MetricFamily>& out, const char* name, const char* help,
                     MetricType type) {
  out.push_back(MetricFamily{name, help, type, {}});
  return out.back();
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

void AppendMonitorFamilies(const MonitorFigures& f, const LabelList& base,
                           std::vector<MetricFamily>& out) {
  out.reserve(out.size() + 8);  // Family() hands out references into `out`
  if (f.health) {
    Family(out, "edge_health_state",
           "Health over many events: 0 ok, 1 warning (a change worth a look), 2 alarm "
           "(degradation confirmed).",
           MetricType::Gauge)
        .metric.push_back(Metric(base, {}, double(f.health->state), false));
    auto& c = Family(out, "edge_health_cusum",
                     "The health monitor's evidence (CUSUM, in commissioning standard deviations): "
                     "warning and alarm.",
                     MetricType::Gauge);
    c.metric.push_back(Metric(base, {{"cusum", "warning"}}, f.health->cusum, false));
    c.metric.push_back(Metric(base, {{"cusum", "alarm"}}, f.health->alarm_cusum, false));
  }
  if (f.drift_level) {
    Family(out, "edge_drift_level",
           "Worst feature drift against commissioning: 0 none, 1 warn (PSI >= 0.1), 2 alert "
           "(PSI >= 0.25).",
           MetricType::Gauge)
        .metric.push_back(Metric(base, {}, double(*f.drift_level), false));
    auto& d = Family(out, "edge_feature_drift",
                     "Population stability index of a feature over the rolling window against "
                     "its commissioning deciles (excess over chance); the top k features only.",
                     MetricType::Gauge);
    for (const auto& [name, psi] : f.feature_drift) {
      d.metric.push_back(Metric(base, {{"feature", name}}, psi, false));
    }
  }
  if (f.input) {
    auto& p = Family(out, "edge_input_problem_windows_total",
                     "Windows with an input problem: flat_line, clipping, non_finite; "
                     "rate_glitch counts timing checks off the nominal sample rate.",
                     MetricType::Counter);
    p.metric.push_back(
        Metric(base, {{"problem", "flat_line"}}, double(f.input->flat_windows), true));
    p.metric.push_back(
        Metric(base, {{"problem", "clipping"}}, double(f.input->clipped_windows), true));
    p.metric.push_back(
        Metric(base, {{"problem", "non_finite"}}, double(f.input->non_finite_windows), true));
    p.metric.push_back(
        Metric(base, {{"problem", "rate_glitch"}}, double(f.input->rate_glitches), true));
  }
  if (f.baseline_shift_sd) {
    Family(out, "edge_baseline_shift_sd",
           "How far the adaptive baseline sits from commissioning: largest feature shift in "
           "commissioning standard deviations (capped).",
           MetricType::Gauge)
        .metric.push_back(Metric(base, {}, *f.baseline_shift_sd, false));
    Family(out, "edge_baseline_adaptations_total", "Adaptive baseline steps committed.",
           MetricType::Counter)
        .metric.push_back(Metric(base, {}, double(f.baseline_steps), true));
  }
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

}  // namespace tend::metrics
