// Sink "prometheus": SPEC's edge_* metrics (labelled device_id, asset_id, factory_id) on
// http://BIND:PORT/metrics. Always counted (the MQTT health message uses the figures); served over
// HTTP unless metrics.port is 0. A port in use does not stop a press from being watched: it says
// so and goes on without the endpoint.
#include "core/log.h"
#include "metrics/exporter.h"
#include "runtime/registry.h"
#include "runtime/spec.h"
#include "telemetry/identity.h"

namespace tend::runtime {
namespace {

class PrometheusSink final : public Sink {
 public:
  explicit PrometheusSink(std::unique_ptr<metrics::Exporter> e) : exporter_(std::move(e)) {}
  Result<DecisionSink*> ForAsset(const AssetContext& asset) override {
    return exporter_->ForAsset(asset.spec->id, asset.settings->GetFloat("agent.deadline_s") * 1000);
  }
  metrics::Exporter& exporter() { return *exporter_; }

 private:
  std::unique_ptr<metrics::Exporter> exporter_;
};

Result<std::unique_ptr<Sink>> CreatePrometheusSink(DeviceContext& ctx) {
  const Settings& s = *ctx.settings;
  metrics::Exporter::Options mo;
  mo.port = static_cast<int>(s.GetInt("metrics.port"));
  mo.bind = s.GetString("metrics.bind");
  mo.latency_budget_ms = s.GetFloat("agent.deadline_s") * 1000;
  mo.system_interval_s = s.GetFloat("metrics.system_interval_s");
  const auto& id = *ctx.identity;
  metrics::Labels labels{id.device_id, id.asset_id, id.factory_id};
  auto exporter = metrics::Exporter::Create(labels, mo);
  if (!exporter && mo.port != 0) {
    TEND_LOG_ERROR("metrics endpoint disabled: {}", exporter.error().message);
    mo.port = 0;
    exporter = metrics::Exporter::Create(labels, mo);
  }
  if (!exporter) return Fail(exporter.error().Wrap("metrics"));
  if (mo.port != 0 && (*exporter)->port() > 0) {
    TEND_LOG_INFO("metrics on http://{}:{}/metrics", mo.bind, (*exporter)->port());
  }
  auto sink = std::make_unique<PrometheusSink>(std::move(*exporter));
  ctx.services->exporter = &sink->exporter();
  return std::unique_ptr<Sink>(std::move(sink));
}

}  // namespace
}  // namespace tend::runtime

TEND_COMPONENT(sink_prometheus) {
  using namespace tend;
  runtime::SinkDescriptor d;
  d.name = "prometheus";
  d.description = "Prometheus metrics (SPEC edge_* names) on http://BIND:PORT/metrics";
  d.keys = {
      SettingDef::Int("metrics.port", 8000, 0, 65535, "Prometheus /metrics port (0 = off)")
          .Flag("--metrics-port"),
      SettingDef::String("metrics.bind", "0.0.0.0", "Address the metrics endpoint listens on"),
      SettingDef::Float("metrics.system_interval_s", 15, 0.1, 86400,
                        "Seconds between system figures (CPU, memory, temperatures)"),
  };
  d.create = runtime::CreatePrometheusSink;
  return registry.AddSink(std::move(d));
}
