// Sink "monitors": health over many events and per-feature drift, per asset (docs/alarms.md).
// For every asset whose model carries a commissioning baseline (tend's own model files: the
// calibration's score distribution and "tend.feature_reference"), a HealthMonitor turns the score
// stream into ok / warning (a change worth a look) / alarm (degradation confirmed), and a
// DriftMonitor compares each feature over a rolling window with its commissioning deciles (PSI).
// The figures go to the Prometheus exporter (edge_health_*, edge_feature_drift, ...) and from
// there into the MQTT health message; state changes are logged; the run summary gets each
// asset's first warning and first alarm. The monitors are updated on the pipeline thread (they
// allocate nothing per event) under a mutex that scrapes hold only to copy the figures.
#include <fmt/format.h>

#include <map>
#include <mutex>
#include <optional>

#include "agent/monitors.h"
#include "agent/served_model.h"
#include "core/log.h"
#include "decide/drift.h"
#include "decide/health.h"
#include "metrics/exporter.h"
#include "metrics/monitor_metrics.h"
#include "runtime/registry.h"
#include "runtime/spec.h"

namespace tend::runtime {
namespace {

struct MonitorSettings {
  bool health = true, drift = true;
  HealthOptions health_options;  // alarm_z comes from the model
  DriftOptions drift_options;
};

MonitorSettings SettingsOf(const Settings& s) {
  MonitorSettings m;
  m.health = s.GetBool("monitors.health");
  m.drift = s.GetBool("monitors.drift");
  m.health_options.h_warning = s.GetFloat("monitors.health_warning_h");
  m.health_options.h_alarm = s.GetFloat("monitors.health_alarm_h");
  m.drift_options.window = static_cast<int>(s.GetInt("monitors.drift_window"));
  m.drift_options.min_events = m.drift_options.window;
  m.drift_options.warn = s.GetFloat("monitors.drift_warn");
  m.drift_options.alert = s.GetFloat("monitors.drift_alert");
  return m;
}

// One asset's monitors, built from the model card it started with.
class AssetMonitors final : public DecisionSink {
 public:
  AssetMonitors(std::string asset_id, std::string model_name, std::string model_version,
                std::vector<std::string> feature_names)
      : asset_id_(std::move(asset_id)),
        model_name_(std::move(model_name)),
        model_version_(std::move(model_version)),
        names_(std::move(feature_names)) {}

  std::optional<HealthMonitor> health;
  std::optional<DriftMonitor> drift;

  void OnDecision(const Decision& d) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (paused_) return;
    if (health) {
      const HealthStatus& h =
          d.fail_safe ? health->UpdateFailSafe() : health->Update(d.anomaly_score);
      if (h.changed) OnHealthChange(h.state, d);
    }
    if (drift && !d.fail_safe && d.features.size() == drift->features()) {
      const DriftLevel before = drift->Level();
      drift->Observe(d.features);
      if (drift->Level() != before) {
        TEND_LOG_INFO("{}: feature drift {} at window {}", asset_id_,
                      DriftLevelName(drift->Level()), d.window_index);
      }
    }
  }

  // The baselines belong to the model they came from: another model pauses the monitors (its
  // score and features are on another scale) until the agent restarts with it.
  void OnModelInfo(const ModelInfo& info) override {
    std::lock_guard<std::mutex> lock(mu_);
    const bool same = info.name == model_name_ && info.version == model_version_;
    if (!same && !paused_) {
      TEND_LOG_WARN(
          "{}: health and drift monitors paused: they were commissioned with {} v{}, the agent now "
          "serves {} v{} (restart the agent to monitor the new model)",
          asset_id_, model_name_, model_version_, info.name, info.version);
    }
    paused_ = !same;
  }

  metrics::MonitorFigures Figures() const {
    std::lock_guard<std::mutex> lock(mu_);
    if (paused_) return {};
    return metrics::MonitorFiguresOf(health ? &*health : nullptr, drift ? &*drift : nullptr, names_,
                                     nullptr, nullptr);
  }

  nlohmann::json Summary() const {
    std::lock_guard<std::mutex> lock(mu_);
    nlohmann::json j = nlohmann::json::object();
    metrics::AddMonitorHealthFields(
        metrics::MonitorFiguresOf(health ? &*health : nullptr, drift ? &*drift : nullptr, names_,
                                  nullptr, nullptr),
        j);
    j["first_warning_window"] = first_warning_ ? nlohmann::json(*first_warning_) : nullptr;
    j["first_alarm_window"] = first_alarm_ ? nlohmann::json(*first_alarm_) : nullptr;
    if (paused_) j["paused"] = true;
    return j;
  }

 private:
  void OnHealthChange(HealthState state, const Decision& d) {
    if (state == HealthState::kWarning && !first_warning_) first_warning_ = d.window_index;
    if (state == HealthState::kAlarm && !first_alarm_) first_alarm_ = d.window_index;
    if (state == HealthState::kOk) {
      TEND_LOG_INFO("{}: health ok again at window {}", asset_id_, d.window_index);
      return;
    }
    TEND_LOG_WARN("{}: health {} at window {} (score {:.4f})", asset_id_, HealthStateName(state),
                  d.window_index, static_cast<double>(d.anomaly_score));
  }

  const std::string asset_id_, model_name_, model_version_;
  const std::vector<std::string> names_;
  mutable std::mutex mu_;  // the pipeline thread updates, scrapes and the summary read
  bool paused_ = false;
  std::optional<int64_t> first_warning_, first_alarm_;
};

class MonitorsSink final : public Sink {
 public:
  explicit MonitorsSink(DeviceServices* services) : services_(services) {}
  // Sinks are destroyed in reverse creation order: the exporter is still there.
  ~MonitorsSink() override { Unregister(); }

  Result<DecisionSink*> ForAsset(const AssetContext& asset) override {
    const MonitorSettings ms = SettingsOf(*asset.settings);
    if (!ms.health && !ms.drift) return static_cast<DecisionSink*>(nullptr);
    const auto* served = dynamic_cast<const agent::ServedModel*>(asset.model);
    if (!served) {
      TEND_LOG_INFO("{}: no health or drift monitors (a {} model has no commissioning baseline)",
                    asset.spec->id, asset.model->kind());
      return static_cast<DecisionSink*>(nullptr);
    }
    TEND_ASSIGN_OR_RETURN(auto m, Build(asset.spec->id, served->card(), ms));
    if (!m->health && !m->drift) return static_cast<DecisionSink*>(nullptr);
    AssetMonitors* raw = m.get();
    if (services_->exporter) {
      services_->exporter->SetMonitorProvider(asset.spec->id, [raw] { return raw->Figures(); });
    }
    assets_[asset.spec->id] = std::move(m);
    return static_cast<DecisionSink*>(raw);
  }

  void Stop() override { Unregister(); }

  void Report(nlohmann::json& summary) const override {
    if (assets_.empty()) return;
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [id, m] : assets_) j[id] = m->Summary();
    summary["monitors"] = std::move(j);
  }

 private:
  // A model without a baseline is monitored as far as it can be, and says what is missing.
  static Result<std::unique_ptr<AssetMonitors>> Build(const std::string& id,
                                                      const detect::ModelCard& card,
                                                      const MonitorSettings& ms) {
    auto m = std::make_unique<AssetMonitors>(id, card.name, card.version, card.feature_names);
    if (ms.health) {
      auto baseline = agent::ScoreBaselineOf(card);
      auto options = agent::HealthOptionsFor(card);
      if (baseline && options) {
        HealthOptions o = ms.health_options;
        o.alarm_z = options->alarm_z;
        TEND_ASSIGN_OR_RETURN(auto h, HealthMonitor::Create(*baseline, o).map_error([&](Error e) {
          return e.Wrap(fmt::format("{}: health monitor (monitors.health_*)", id));
        }));
        m->health.emplace(std::move(h));
      } else {
        TEND_LOG_WARN("{}: no health monitor: {}", id,
                      (baseline ? options.error() : baseline.error()).message);
      }
    }
    if (ms.drift) {
      auto ref = agent::FeatureReferenceOf(card);
      if (ref) {
        TEND_ASSIGN_OR_RETURN(
            auto d, DriftMonitor::Create(std::move(*ref), ms.drift_options).map_error([&](Error e) {
              return e.Wrap(fmt::format("{}: drift monitor (monitors.drift_*)", id));
            }));
        m->drift.emplace(std::move(d));
      } else {
        TEND_LOG_WARN("{}: no drift monitor: {}", id, ref.error().message);
      }
    }
    return m;
  }

  void Unregister() {
    if (!services_->exporter) return;
    for (const auto& [id, m] : assets_) services_->exporter->SetMonitorProvider(id, nullptr);
  }

  DeviceServices* services_;
  std::map<std::string, std::unique_ptr<AssetMonitors>> assets_;
};

}  // namespace
}  // namespace tend::runtime

TEND_COMPONENT(sink_monitors) {
  using namespace tend;
  runtime::SinkDescriptor d;
  d.name = "monitors";
  d.description =
      "health over many events (ok/warning/alarm) and per-feature drift against commissioning, "
      "per asset, as metrics and MQTT health fields";
  const HealthOptions h;
  const DriftOptions dr;
  d.keys = {
      SettingDef::Bool("monitors.health", true,
                       "Health over many events: CUSUM warning and alarm against the model's "
                       "commissioning score distribution")
          .PerAsset("health_monitor"),
      SettingDef::Bool("monitors.drift", true,
                       "Per-feature drift (PSI) against the model's commissioning deciles")
          .PerAsset("drift_monitor"),
      SettingDef::Float("monitors.health_warning_h", h.h_warning, 1, 1000,
                        "Warning CUSUM level (commissioning sd): higher = fewer false warnings")
          .PerAsset("health_warning_h"),
      SettingDef::Float("monitors.health_alarm_h", h.h_alarm, 1, 1000,
                        "Alarm CUSUM level (evidence over the alert threshold)")
          .PerAsset("health_alarm_h"),
      SettingDef::Int("monitors.drift_window", dr.window, 10, 1000000,
                      "Events in the rolling drift window (no drift figure before it is full)")
          .PerAsset("drift_window"),
      SettingDef::Float("monitors.drift_warn", dr.warn, 0.001, 10, "PSI of a drift warning")
          .PerAsset("drift_warn"),
      SettingDef::Float("monitors.drift_alert", dr.alert, 0.001, 10, "PSI of a drift alert")
          .PerAsset("drift_alert"),
  };
  d.create = [](runtime::DeviceContext& ctx) -> Result<std::unique_ptr<runtime::Sink>> {
    return std::unique_ptr<runtime::Sink>(std::make_unique<runtime::MonitorsSink>(ctx.services));
  };
  return registry.AddSink(std::move(d));
}
