// The agent's Prometheus exporter: every SPEC metric (edge_*) plus per-stage latency, deadline
// misses, decisions by severity, spool/MQTT figures, model info and process memory, served as text
// exposition on GET /metrics. The decision path only touches atomics; scrapes assemble the text.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "decide/decision.h"
#include "metrics/system_collector.h"

namespace httplib {
class Server;
}

namespace tend::metrics {

// Put on every series, as SPEC requires.
struct Labels {
  std::string device_id, asset_id, factory_id;
};

// What the telemetry module knows and the exporter shows; unknown fields stay absent.
struct TelemetryFigures {
  std::optional<int64_t> spool_depth;          // messages waiting in the durable spool
  std::optional<int64_t> spool_bytes;          // their size on disk
  std::optional<int64_t> spool_dropped_total;  // messages dropped because the spool was full
  std::optional<bool> mqtt_connected;
  std::optional<int64_t> mqtt_reconnects_total;
  // QoS 1 messages the broker refused (MQTT 5 reason code >= 0x80, e.g. an ACL denial).
  std::optional<int64_t> mqtt_refused_total;
  // The spool file is unusable and telemetry is kept in memory (lost on exit).
  std::optional<bool> spool_in_memory;
  std::optional<bool> spool_disk_full;       // the last spool commit hit ENOSPC
  std::optional<int64_t> spool_held_alerts;  // alerts the full disk refused, held in memory
};

// What the over-the-air updater knows (fed by `tend run` through a provider, so that this module
// does not depend on src/ota).
struct OtaFigures {
  // Outcomes since the process started: edge_ota_updates_total{result=...}.
  int64_t installed_total = 0, refused_total = 0, rolled_back_total = 0, failed_total = 0;
  std::optional<double> last_check_unix;       // absent before the first check
  bool in_probation = false;                   // a new model runs on probation
  std::optional<double> model_installed_unix;  // absent until OTA installed a model
  bool stale = false;                          // no model received within max_model_age_s
  double max_model_age_s = 0;                  // the device's staleness limit
};

// Figures of a component the exporter does not know (a PLC link, a Sparkplug node), shown on
// scrapes and in the MQTT health message. Each series carries the device labels; asset_id is the
// series' own when given ("" = the device's).
struct ComponentSeries {
  std::string asset_id;
  double value = 0;
};
struct ComponentFamily {
  std::string name;  // edge_..., Prometheus conventions (_total for counters)
  std::string help;
  bool counter = false;  // else a gauge
  std::vector<ComponentSeries> series;
};
struct ComponentFigures {
  std::vector<ComponentFamily> families;
  nlohmann::json health;  // put under the provider's key in HealthFigures(); null = nothing
};

// Bucket upper bounds of edge_inference_latency_ms (SPEC's 5..1000 plus fine ones below 5 ms, and
// steps around the 3.3 s stroke budget so that the 80 % alert interpolates well).
const std::vector<double>& LatencyBucketsMs();

class Exporter : public DecisionSink {
 public:
  // Options::port value that binds a free ephemeral port (tests); read it back with port().
  static constexpr int kAnyPortForTest = -1;

  struct Options {
    std::string bind = "0.0.0.0";
    // 8000 by default. 0: no HTTP endpoint (--metrics-port 0); the exporter still counts and
    // collects system figures so that HealthFigures() works for the MQTT health message.
    int port = 8000;
    double system_interval_s = 15;    // system collectors refresh period
    double latency_budget_ms = 3300;  // per-window deadline; exported for the p95 alert
    int http_threads = 2;
    SystemCollector::Options sys;
  };

  // Errors: empty device_id, non-positive interval/budget, a port out of range or already in use
  // ("metrics: cannot listen on 0.0.0.0:8000: Address already in use"), a bad proc root.
  static Result<std::unique_ptr<Exporter>> Create(const Labels& labels, const Options& options);
  ~Exporter() override;
  Exporter(const Exporter&) = delete;
  Exporter& operator=(const Exporter&) = delete;

  // The bound port (the real one for kAnyPortForTest); 0 when not serving HTTP.
  int port() const { return port_; }

  // Pipeline thread. Lock-free: relaxed atomics only, nothing allocated. Counted for the asset
  // of Labels::asset_id.
  void OnDecision(const Decision& decision) override;
  // Rare (start, reload, OTA swap): takes a mutex shared with scrapes.
  void OnModelInfo(const ModelInfo& info) override;

  // The sink of one asset of a multi-asset agent: its decisions and model are exported under
  // asset_id=`asset_id`, with its own latency budget (ms; <= 0: Options::latency_budget_ms).
  // Labels::asset_id is the asset OnDecision() counts for. Owned by the exporter; call before
  // decisions flow (not from the pipeline).
  DecisionSink* ForAsset(const std::string& asset_id, double latency_budget_ms = 0);

  // Polled at every scrape and by HealthFigures(), from the HTTP or caller thread (never two at
  // once). It must be cheap, thread-safe, and must not call back into the exporter.
  void SetTelemetryStatsProvider(std::function<TelemetryFigures()> fn);
  // Same contract, for the OTA figures (edge_ota_*, edge_model_stale): polled at every scrape.
  void SetOtaStatusProvider(std::function<OtaFigures()> fn);

  // A component's figures, polled at every scrape and by HealthFigures() (same contract as the
  // telemetry provider). Returns an id for RemoveComponentProvider(), which the component must
  // call before it goes; after it returns, the provider is no longer called.
  int AddComponentProvider(std::string health_key, std::function<ComponentFigures()> fn);
  void RemoveComponentProvider(int id);

  SystemSnapshot LatestSystem() const;
  // Collects system figures now instead of waiting for the next period (tests, `tend` tooling).
  void RefreshSystemNow();

  // The same figures as the scrape, for the MQTT health message: HealthFields(LatestSystem())
  // plus inferences_total, alerts_total, deadline_misses_total, latency_p95_ms/latency_p99_ms
  // (decisions since the previous HealthFigures() call, interpolated from the histogram; null when
  // there were none), latency_budget_ms, model_version/model_provider/model_age_s and the telemetry
  // figures when a provider is set.
  nlohmann::json HealthFigures();

  // The text exposition that GET /metrics returns.
  std::string ScrapeText() const;

 private:
  struct State;
  class AssetState;
  class Families;
  Exporter(const Labels& labels, const Options& options);
  void SystemLoop();
  std::vector<AssetState*> Assets() const;
  void AppendDecisionFamilies(Families& out) const;
  void AppendModelFamilies(Families& out) const;
  void AppendSystemFamilies(Families& out) const;
  void AppendTelemetryFamilies(Families& out) const;
  void AppendOtaFamilies(Families& out) const;
  void AppendComponentFamilies(Families& out) const;

  Labels labels_;
  Options options_;
  std::unique_ptr<State> state_;
  std::unique_ptr<SystemCollector> collector_;
  int port_ = 0;
  std::unique_ptr<httplib::Server> server_;
  std::thread http_thread_;
  std::thread system_thread_;
  mutable std::mutex stop_mutex_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
};

// Numeric major version of a model version string: "3" -> 3, "v3.1" -> 3, "2024.05" -> 2024;
// 0 when it does not start with a number.
double ModelMajorVersion(const std::string& version);

}  // namespace tend::metrics
