// The telemetry sink of the agent: every decision becomes a SPEC.md MQTT message, appended to
// the durable spool first (group commit on a worker thread) and delivered from there, in order
// per topic, alerts ahead of scores, with reconnect and backoff. The pipeline thread only copies
// the decision into a preallocated buffer: it never waits for the disk or the network.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "core/status.h"
#include "decide/decision.h"
#include "telemetry/identity.h"
#include "telemetry/spool.h"

namespace tend::telemetry {

struct TelemetryOptions {
  std::string broker_url;  // mqtt://host:port or mqtts://host:port ("" = spool only, no network)
  // 5 = MQTT 5 (default), 4 = 3.1.1. Only MQTT 5 tells the device that the broker refused a
  // message (PUBACK reason code, e.g. an ACL denial); a 3.1.1 broker acknowledges and discards it.
  int mqtt_version = 5;
  std::string ca_file, cert_file, key_file;  // TLS (mqtts): CA to verify the broker, our cert
  std::string username, password;
  std::string spool_path;  // e.g. <state_dir>/spool.db
  int64_t spool_max_bytes = 256 << 20;
  bool spool_durable = true;  // fsync every group commit (false: survives crashes, not power loss)
  bool spool_scores = true, spool_health = false;
  double health_interval_s = 15;  // <= 0: no periodic health messages
  double reconnect_min_s = 0.5;   // backoff doubles from min to max, +-20 % jitter
  double reconnect_max_s = 30;
  int keepalive_s = 60;
  double connect_timeout_s = 10;
  // Messages handed to the client and not yet acknowledged. Paho C scans its in-flight list per
  // acknowledgement, so large windows are slower (see docs/telemetry.md); 300 drains fastest here.
  int max_inflight = 300;
  int queue_capacity = 16384;  // decisions buffered between the pipeline and the worker
  // Degraded mode. When the spool file cannot be opened (unwritable or missing directory, full
  // disk on a new spool), messages are spooled in memory up to this many bytes and the file is
  // retried every disk_retry_s; alerts a full disk refuses at run time are held in memory up to
  // the same bound. Only beyond it are messages dropped (and counted).
  int64_t memory_queue_bytes = 16 << 20;
  double disk_retry_s = 10;
  // While connected, unreported drops and refusals are sent as a report at most this often (and
  // always right after each connect). <= 0: only after connects.
  double drop_report_interval_s = 60;
};

class Telemetry : public DecisionSink {
 public:
  static Result<std::unique_ptr<Telemetry>> Create(const Identity& identity,
                                                   const TelemetryOptions& options);
  // Copies the decision into a preallocated slot and returns; if the worker has fallen
  // queue_capacity decisions behind, the decision is dropped and counted (never blocks).
  void OnDecision(const Decision& decision) override;
  void OnModelInfo(const ModelInfo& info) override;
  // Extra health fields (cpu_pct, gpu_pct, temp_c, memory_pct, throttled, ...) from the metrics
  // module; called on the telemetry worker thread every health_interval_s.
  void SetHealthProvider(std::function<nlohmann::json()> fn);
  // Publishes a device state (e.g. name "ota") retained at QoS 1 on
  // factory/{factory_id}/edge/{device_id}/{name}, spooled durably like an alert (never evicted
  // before scores). device_id, timestamp (ISO-8601 UTC, now) and msg_id are added when absent.
  // Only the newest undelivered state per name is kept. Thread-safe; never blocks on the disk or
  // the network. An invalid name (see ValidateEdgeStateName) or a non-object payload is logged
  // and ignored.
  void PublishDeviceState(const std::string& name, nlohmann::json payload);

  struct Stats {
    int64_t spooled = 0;    // messages committed to the spool
    int64_t delivered = 0;  // acknowledged by the broker (QoS 1) or written to the socket (QoS 0)
    int64_t dropped_scores = 0, dropped_alerts = 0, dropped_health = 0;  // evicted or rejected
    int64_t spool_bytes = 0, spool_depth = 0;
    int64_t reconnects = 0;  // successful connections after the first
    bool connected = false;
    // Why the last connection attempt failed, e.g. "Connection refused" or "the broker refused
    // the connection: Not authorized ..."; empty once connected.
    std::string connect_error;
    bool disk_full = false;  // the last commit hit ENOSPC
    int64_t decisions = 0;   // OnDecision calls
    // Degraded: the spool file is unusable and messages are kept in memory (lost on exit);
    // spool_error says why (empty when the file spool works).
    bool spool_in_memory = false;
    std::string spool_error;
    int64_t held_alerts = 0;  // alerts the full disk refused, held in memory for the next commit
    // MQTT 5 only: QoS 1 messages the broker refused (PUBACK reason code >= 0x80, e.g. 0x87
    // not authorized). Removed from the spool, not counted as delivered; per topic since start.
    int64_t refused = 0;
    std::map<std::string, int64_t> refused_by_topic;
  };
  Stats stats() const;
  const SpoolOpenReport& spool_report() const;

  // Waits until every decision received so far is committed to the spool (not delivered).
  Status Commit(std::chrono::milliseconds timeout);
  // Commits everything received so far; then, if a broker is configured and connected, waits
  // (up to `timeout`) for the spool to drain. Timeout error if messages remain (they stay on
  // disk and are sent by the next run).
  Status Flush(std::chrono::milliseconds timeout);

  // Commits what is pending, publishes `offline` (retained, QoS 1) on the status topic when
  // connected — a clean DISCONNECT suppresses the Last Will, so a graceful stop says it
  // explicitly — and disconnects.
  ~Telemetry() override;

  class Impl;

 private:
  explicit Telemetry(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tend::telemetry
