// Sink "sparkplug": tend as a Sparkplug B edge node (sparkplug::SparkplugNode). The node id is the
// device id, each asset a Sparkplug device, in group sparkplug.group; the broker and its TLS and
// credentials are the mqtt sink's settings (mqtt.url, --ca, --cert, --key, mqtt.username,
// mqtt.password), on its own connection whose Will is the NDEATH. bdSeq and the historical spool
// live in the state directory. Off unless both sparkplug.group and mqtt.url are set; it runs
// alongside the JSON telemetry, not instead of it (SPEC).
#include "core/log.h"
#include "metrics/exporter.h"
#include "runtime/registry.h"
#include "runtime/spec.h"
#include "telemetry/identity.h"
#include "telemetry/sparkplug_node.h"

namespace tend::runtime {
namespace {

class SparkplugSink final : public Sink {
 public:
  SparkplugSink(std::unique_ptr<sparkplug::SparkplugNode> node, metrics::Exporter* exporter)
      : node_(std::move(node)), exporter_(exporter) {}
  ~SparkplugSink() override {
    if (provider_ > 0) exporter_->RemoveComponentProvider(provider_);
    Stop();
  }

  Result<DecisionSink*> ForAsset(const AssetContext& asset) override {
    TEND_ASSIGN_OR_RETURN(auto dev, node_->AddDevice(asset.spec->id).map_error([](Error e) {
      return e.Wrap("sparkplug");
    }));
    devices_.push_back(std::move(dev));
    return static_cast<DecisionSink*>(devices_.back().get());
  }

  Status Start() override {
    if (exporter_ && provider_ == 0) {
      provider_ = exporter_->AddComponentProvider("sparkplug", [this] { return Figures(); });
    }
    return Ok();
  }

  // Delivers what is queued (bounded), then each asset's DDEATH and the node's NDEATH.
  // Only Stop() replaces node_ (mu_ guards it against Figures() and Report()).
  void Stop() override {
    if (!node_) return;
    TEND_LOG_INFO("stopping: delivering Sparkplug data (up to 5 s), then DDEATH and NDEATH");
    auto st = node_->Flush(std::chrono::seconds(5));
    if (!st) TEND_LOG_WARN("sparkplug: {}", st.error().message);
    devices_.clear();
    std::unique_ptr<sparkplug::SparkplugNode> gone;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_ = node_->stats();
      gone = std::move(node_);
    }
    gone.reset();  // NDEATH, disconnect (scrapes do not wait)
  }

  void Report(nlohmann::json& summary) const override {
    std::lock_guard<std::mutex> lock(mu_);
    summary["sparkplug"] = sparkplug::ToJson(node_ ? node_->stats() : stats_);
  }

 private:
  metrics::ComponentFigures Figures() const {
    std::lock_guard<std::mutex> lock(mu_);
    const auto s = node_ ? node_->stats() : stats_;
    auto one = [](const char* name, const char* help, bool counter, double v) {
      return metrics::ComponentFamily{name, help, counter, {{"", v}}};
    };
    metrics::ComponentFigures f;
    f.families = {
        one("edge_sparkplug_session",
            "1 while the Sparkplug edge node is in session (connected, NBIRTH sent).", false,
            s.in_session ? 1 : 0),
        one("edge_sparkplug_births_total", "NBIRTHs sent (each session and each rebirth).", true,
            static_cast<double>(s.births)),
        one("edge_sparkplug_historical_sent_total",
            "Alerts sent late as historical Sparkplug data (is_historical).", true,
            static_cast<double>(s.historical_sent)),
        one("edge_sparkplug_spool_depth", "Alerts waiting in the Sparkplug spool.", false,
            static_cast<double>(s.spool_depth)),
        one("edge_sparkplug_commands_rejected_total", "NCMD payloads that did not decode.", true,
            static_cast<double>(s.commands_rejected)),
    };
    f.health = sparkplug::ToJson(s);
    return f;
  }

  std::unique_ptr<sparkplug::SparkplugNode> node_;
  std::vector<std::unique_ptr<sparkplug::SparkplugDevice>> devices_;
  metrics::Exporter* exporter_;
  int provider_ = 0;
  mutable std::mutex mu_;
  sparkplug::SparkplugStats stats_;  // after Stop
};

Result<std::unique_ptr<Sink>> CreateSparkplugSink(DeviceContext& ctx) {
  const Settings& s = *ctx.settings;
  sparkplug::SparkplugOptions o;
  o.group_id = s.GetString("sparkplug.group");
  if (o.group_id.empty()) return std::unique_ptr<Sink>();
  o.broker_url = s.GetString("mqtt.url");
  if (o.broker_url.empty()) {
    return Fail(Error::Invalid(
        "sparkplug: --sparkplug-group needs a broker: give --mqtt (mqtt.url); Sparkplug uses the "
        "same broker settings as the JSON telemetry"));
  }
  o.ca_file = s.GetString("mqtt.ca_file");
  o.cert_file = s.GetString("mqtt.cert_file");
  o.key_file = s.GetString("mqtt.key_file");
  o.username = s.GetString("mqtt.username");
  o.password = s.GetString("mqtt.password");
  o.edge_node_id = ctx.identity->device_id;
  o.primary_host_id = s.GetString("sparkplug.primary_host");
  o.spool_max_bytes = s.GetInt("sparkplug.spool_mb") << 20;
  TEND_RETURN_NOT_OK(ctx.use_state_dir());  // bdSeq and the spool: one agent per state directory
  o.state_dir = ctx.state_dir;
  TEND_ASSIGN_OR_RETURN(auto node, sparkplug::SparkplugNode::Create(o));
  TEND_LOG_INFO(
      "sparkplug: edge node spBv1.0/{}/N*/{} on {}{}", o.group_id, o.edge_node_id, o.broker_url,
      o.primary_host_id.empty() ? "" : " (births wait for primary host " + o.primary_host_id + ")");
  return std::unique_ptr<Sink>(
      std::make_unique<SparkplugSink>(std::move(node), ctx.services->exporter));
}

}  // namespace
}  // namespace tend::runtime

TEND_COMPONENT(sink_sparkplug) {
  using namespace tend;
  using D = SettingDef;
  runtime::SinkDescriptor d;
  d.name = "sparkplug";
  d.description =
      "Sparkplug B edge node (node = device id, a device per asset) on the mqtt broker; off "
      "unless sparkplug.group";
  d.keys = {
      D::String("sparkplug.group", "", "Sparkplug group id (\"\": no Sparkplug)")
          .Flag("--sparkplug-group"),
      D::String("sparkplug.primary_host", "",
                "Primary host id: births wait for spBv1.0/STATE/{host} online (\"\": none)")
          .Flag("--sparkplug-primary-host"),
      D::Int("sparkplug.spool_mb", 64, 1, 1 << 20,
             "Size limit of the spool of alerts sent later as historical data (MiB)")
          .Flag("--sparkplug-spool-mb"),
  };
  d.create = runtime::CreateSparkplugSink;
  return registry.AddSink(std::move(d));
}
