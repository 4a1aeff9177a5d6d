// Sink "mqtt": SPEC's MQTT telemetry (scores, alerts, health, status and device states) through
// the durable spool, with the figures of the Prometheus exporter in the health message. Off
// unless mqtt.url is set. Decisions of every asset go to that asset's topics.
#include "core/log.h"
#include "runtime/registry.h"
#include "runtime/spec.h"
#include "runtime/telemetry_metrics.h"
#include "telemetry/telemetry.h"

namespace tend::runtime {
namespace {

class MqttSink final : public Sink {
 public:
  explicit MqttSink(std::unique_ptr<telemetry::Telemetry> t) : telemetry_(std::move(t)) {}
  ~MqttSink() override { Stop(); }

  Result<DecisionSink*> ForAsset(const AssetContext&) override {
    return static_cast<DecisionSink*>(telemetry_.get());
  }
  void Stop() override {
    if (!telemetry_ || stopped_) return;
    stopped_ = true;
    // In degraded mode (spool file unusable) nothing is committed to disk: do not say it is.
    TEND_LOG_INFO("{}",
                  telemetry_->stats().spool_in_memory
                      ? "stopping: delivering the telemetry held in memory (the spool file is "
                        "unusable; up to 5 s; stop again to quit at once)"
                      : "stopping: committing telemetry to the spool and delivering what is "
                        "queued (up to 5 s; stop again to quit at once)");
    auto fl = telemetry_->Flush(std::chrono::seconds(5));
    if (!fl) TEND_LOG_WARN("{}", fl.error().message);
    stats_ = telemetry_->stats();
  }
  void Report(nlohmann::json& summary) const override {
    const auto& ts = stats_;
    summary["telemetry"] = {{"spooled", ts.spooled},
                            {"delivered", ts.delivered},
                            {"spool_depth", ts.spool_depth},
                            {"dropped_scores", ts.dropped_scores},
                            {"dropped_alerts", ts.dropped_alerts}};
  }
  telemetry::Telemetry& telemetry() { return *telemetry_; }

 private:
  std::unique_ptr<telemetry::Telemetry> telemetry_;
  bool stopped_ = false;
  telemetry::Telemetry::Stats stats_;
};

// Telemetry under a default identity lands on the same topics as every other device left at the
// defaults (and the host name as device id clashes for cloned images): say so loudly.
void WarnAboutDefaultIdentity(const DeviceContext& ctx) {
  std::string defaults;
  auto note = [&](const Settings& s, const char* key, const char* flag, const std::string& value) {
    if (s.IsSet(key)) return;
    defaults +=
        std::string(defaults.empty() ? "" : ", ") + key + " = \"" + value + "\" (" + flag + ")";
  };
  const Settings& s = *ctx.settings;
  note(s, "identity.factory", "--factory", ctx.identity->factory_id);
  note(s, "identity.line", "--line", ctx.identity->line_id);
  for (const auto& a : *ctx.assets) note(a.settings, "identity.asset", "--asset", a.id);
  note(s, "identity.device_id", "--device-id", ctx.identity->device_id + ", the host name");
  if (defaults.empty()) return;
  TEND_LOG_WARN(
      "telemetry is on with DEFAULT IDENTITY values: {}. Every device left at the "
      "defaults publishes on the same topics; set them in [identity] or with the flags.",
      defaults);
}

Result<std::unique_ptr<Sink>> CreateMqttSink(DeviceContext& ctx) {
  const Settings& s = *ctx.settings;
  telemetry::TelemetryOptions o;
  o.broker_url = s.GetString("mqtt.url");
  if (o.broker_url.empty()) return std::unique_ptr<Sink>();
  o.mqtt_version = static_cast<int>(s.GetInt("mqtt.version"));
  o.ca_file = s.GetString("mqtt.ca_file");
  o.cert_file = s.GetString("mqtt.cert_file");
  o.key_file = s.GetString("mqtt.key_file");
  o.username = s.GetString("mqtt.username");
  o.password = s.GetString("mqtt.password");
  o.spool_path = s.GetString("mqtt.spool_path");
  if (o.spool_path.empty()) {
    TEND_RETURN_NOT_OK(ctx.use_state_dir());  // one agent per state directory
    o.spool_path = ctx.state_dir + "/spool.db";
  }
  o.spool_max_bytes = s.GetInt("mqtt.spool_max_bytes");
  o.spool_scores = s.GetBool("mqtt.spool_scores");
  o.spool_health = s.GetBool("mqtt.spool_health");
  o.health_interval_s = s.GetFloat("mqtt.health_interval_s");
  TEND_RETURN_NOT_OK(
      ctx.identity->Validate().map_error([](Error e) { return e.Wrap("identity"); }));
  for (const auto& a : *ctx.assets) {
    TEND_RETURN_NOT_OK(ctx.identity->ForAsset(a.id).Validate().map_error(
        [&](Error e) { return e.Wrap("identity of asset '" + a.id + "'"); }));
  }
  WarnAboutDefaultIdentity(ctx);
  TEND_ASSIGN_OR_RETURN(auto t,
                        telemetry::Telemetry::Create(*ctx.identity, o).map_error([](Error e) {
                          return e.Wrap("telemetry");
                        }));
  if (ctx.services->exporter) ConnectTelemetryAndMetrics(*t, *ctx.services->exporter);
  TEND_LOG_INFO("telemetry to {} as {} (spool {})", o.broker_url, ctx.identity->ClientId(),
                o.spool_path);
  auto sink = std::make_unique<MqttSink>(std::move(t));
  ctx.services->telemetry = &sink->telemetry();
  return std::unique_ptr<Sink>(std::move(sink));
}

}  // namespace
}  // namespace tend::runtime

TEND_COMPONENT(sink_mqtt) {
  using namespace tend;
  using D = SettingDef;
  runtime::SinkDescriptor d;
  d.name = "mqtt";
  d.description = "MQTT telemetry (SPEC topics) through a durable spool; off unless mqtt.url";
  d.keys = {
      D::String("mqtt.url", "",
                "Broker: mqtt://host:1883 or mqtts://host:8883 (\"\": no telemetry)")
          .Flag("--mqtt"),
      D::Int("mqtt.version", 5, 4, 5,
             "5 (refusals such as ACL denials are reported) or 4 (MQTT 3.1.1)")
          .Flag("--mqtt-version"),
      D::Path("mqtt.ca_file", "", "CA certificate to verify the broker (mqtts)").Flag("--ca"),
      D::Path("mqtt.cert_file", "", "This device's client certificate (mqtts)").Flag("--cert"),
      D::Path("mqtt.key_file", "", "This device's private key (mqtts)").Flag("--key"),
      D::String("mqtt.username", "", "Broker user name"),
      D::String("mqtt.password", "", "Broker password"),
      D::Path("mqtt.spool_path", "", "Store-and-forward spool (default <state-dir>/spool.db)")
          .Flag("--spool"),
      D::Int("mqtt.spool_max_bytes", 256ll << 20, 1 << 20, 1e12,
             "Spool size limit; when full: health, then scores oldest first, alerts last"),
      D::Bool("mqtt.spool_scores", true, "Spool scores too (not only alerts)"),
      D::Bool("mqtt.spool_health", false, "Spool health messages too"),
      D::Float("mqtt.health_interval_s", 15, 1, 86400, "Seconds between health messages (0 = none)")
          .Special({0}),
  };
  d.create = runtime::CreateMqttSink;
  return registry.AddSink(std::move(d));
}
