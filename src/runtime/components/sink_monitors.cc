// Sink "monitors": reports each asset's monitors (docs/alarms.md): health over many events
// (ok / warning / alarm), per-feature drift against commissioning, input health of the raw
// window and the adaptive baseline. The monitors themselves run in the agent, between the
// decider and the sinks (agent/asset_monitor.h: every sink sees the health fields of a decision,
// and a model swap rebuilds them from the new model's card); configured by the `monitors.*`
// settings (src/runtime/run_settings.cc). This sink hands their figures to the Prometheus
// exporter (edge_health_*, edge_feature_drift, edge_input_problem_windows_total,
// edge_baseline_*), and from there to the MQTT health message, and adds each asset's final
// state, first warning and first alarm to the run summary.
#include <map>

#include "agent/asset_monitor.h"
#include "core/log.h"
#include "metrics/exporter.h"
#include "runtime/registry.h"
#include "runtime/spec.h"

namespace tend::runtime {
namespace {

class MonitorsSink final : public Sink {
 public:
  explicit MonitorsSink(DeviceServices* services) : services_(services) {}
  // Sinks are destroyed in reverse creation order: the exporter is still there.
  ~MonitorsSink() override { Unregister(); }

  Result<DecisionSink*> ForAsset(const AssetContext& asset) override {
    const agent::AssetMonitor* m = asset.monitor;
    if (!m) return static_cast<DecisionSink*>(nullptr);
    if (services_->exporter) {
      services_->exporter->SetMonitorProvider(asset.spec->id, [m] { return m->Figures(); });
    }
    assets_[asset.spec->id] = m;
    return static_cast<DecisionSink*>(nullptr);  // it reads the monitors, not the decisions
  }

  void Stop() override { Unregister(); }

  void Report(nlohmann::json& summary) const override {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [id, m] : assets_) {
      if (m->monitoring()) j[id] = m->Summary();
    }
    if (!j.empty()) summary["monitors"] = std::move(j);
  }

 private:
  void Unregister() {
    if (!services_->exporter) return;
    for (const auto& [id, m] : assets_) services_->exporter->SetMonitorProvider(id, nullptr);
  }

  DeviceServices* services_;
  std::map<std::string, const agent::AssetMonitor*> assets_;
};

}  // namespace
}  // namespace tend::runtime

TEND_COMPONENT(sink_monitors) {
  using namespace tend;
  runtime::SinkDescriptor d;
  d.name = "monitors";
  d.description =
      "reports each asset's monitors (health ok/warning/alarm, per-feature drift, input health, "
      "adaptive baseline; monitors.* settings) as metrics, MQTT health fields and the summary";
  d.create = [](runtime::DeviceContext& ctx) -> Result<std::unique_ptr<runtime::Sink>> {
    return std::unique_ptr<runtime::Sink>(std::make_unique<runtime::MonitorsSink>(ctx.services));
  };
  return registry.AddSink(std::move(d));
}
