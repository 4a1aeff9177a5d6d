// The health, drift and input monitors (decide/health.h, decide/drift.h,
// decide/adaptive_baseline.h) as Prometheus series and MQTT health fields. The exporter polls a
// provider for these at every scrape and health message (Exporter::SetMonitorProvider), so the
// decision path never waits on them. Cardinality is bounded: only the top-k drifting features
// get an edge_feature_drift series.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "decide/adaptive_baseline.h"
#include "decide/drift.h"
#include "decide/health.h"

namespace prometheus {
struct MetricFamily;
struct ClientMetric;
}  // namespace prometheus

namespace tend::metrics {

struct MonitorFigures {
  std::optional<HealthStatus> health;
  std::optional<DriftLevel> drift_level;  // absent until the drift window is full
  std::vector<std::pair<std::string, double>> feature_drift;  // top k: feature, PSI
  std::optional<InputHealthStatus> input;
  std::optional<double> baseline_shift_sd;  // adaptive baseline: distance from commissioning
  int64_t baseline_steps = 0;               // adaptations committed
};

// Snapshot of the monitors an asset runs (any may be null). `feature_names` names the drift
// monitor's features.
MonitorFigures MonitorFiguresOf(const HealthMonitor* health, const DriftMonitor* drift,
                                const std::vector<std::string>& feature_names,
                                const InputHealth* input, const AdaptiveBaseline* baseline);

// One asset's figures with the labels its series carry (device_id, asset_id, factory_id).
struct LabelledMonitorFigures {
  std::vector<std::pair<std::string, std::string>> labels;
  MonitorFigures figures;
};

// edge_health_state, edge_health_cusum{cusum="warning|alarm"}, edge_drift_level,
// edge_feature_drift{feature}, edge_input_problem_windows_total{problem},
// edge_baseline_shift_sd, edge_baseline_adaptations_total: one family per name, a series per
// asset that has the figure (families no asset has are left out).
std::vector<prometheus::MetricFamily> AppendMonitorFamilies(
    const std::vector<LabelledMonitorFigures>& assets);

// health, health_cusum, drift_level, feature_drift {feature: psi}, input_problems and counts,
// baseline_shift_sd, baseline_steps: for the MQTT health payload.
void AddMonitorHealthFields(const MonitorFigures& f, nlohmann::json& j);

// The MQTT health fields of a device: those of `primary` (the identity's asset; else the first)
// at the top level, and with more than one monitored asset, every asset's under
// "monitors": {asset_id: {...}}.
void AddMonitorFields(const std::vector<std::pair<std::string, MonitorFigures>>& assets,
                      const std::string& primary, nlohmann::json& j);

}  // namespace tend::metrics
