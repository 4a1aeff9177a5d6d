// tend as a Sparkplug B edge node (Sparkplug 3.0): the node id is the device id, each asset a
// Sparkplug device in a configured group. Its own MQTT connection (3.1.1, clean session) with the
// broker settings of telemetry (TLS, client certificate); NDEATH is that connection's Will with the
// bdSeq of the NBIRTH that follows (bdSeq persisted across restarts). NBIRTH and a DBIRTH per asset
// on every session (and on an NCMD Node Control/Rebirth), DDATA with the metrics that changed,
// DDEATH when an asset stops; seq 0..255 wrapping. With a primary host configured, births wait for
// its STATE online. Alerts that cannot go out live (broker away, host offline, backlog) are
// committed to a durable spool and sent as historical DDATA, in order, after the births.
// Decisions arrive on the pipeline thread and are only copied into a preallocated ring.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "core/status.h"
#include "decide/decision.h"
#include "telemetry/telemetry.h"

namespace tend::sparkplug {

// One field per CLI flag / config key (see docs/sparkplug.md); the broker settings are those of
// telemetry (--mqtt, --ca, --cert, --key, --mqtt-username, --mqtt-password).
struct SparkplugOptions {
  std::string broker_url;                    // --mqtt                    [mqtt] url
  std::string ca_file, cert_file, key_file;  // --ca --cert --key         [mqtt] ca/cert/key
  std::string username, password;            // --mqtt-username/-password [mqtt] username/password
  std::string group_id;                      // --sparkplug-group G       [sparkplug] group
  std::string edge_node_id;                  // = --device-id             [device] id
  std::string primary_host_id;  // --sparkplug-primary-host H ("" = none)  [sparkplug] primary_host
  std::string state_dir;        // --state-dir: bdSeq and the historical spool live in it
  int64_t spool_max_bytes = 64 << 20;  // --sparkplug-spool-mb           [sparkplug] spool_mb
  double reconnect_min_s = 0.5, reconnect_max_s = 30;
  int keepalive_s = 30;
  double connect_timeout_s = 10;
  int queue_capacity = 4096;  // decisions between the pipeline and the worker
  Status Validate() const;
};
// The broker settings of a telemetry configuration (the same connection options).
void CopyBrokerSettings(const telemetry::TelemetryOptions& from, SparkplugOptions& to);

struct SparkplugStats {
  bool connected = false;
  bool in_session = false;  // births sent on the current connection
  bool waiting_for_host = false;
  int64_t bd_seq = -1;            // of the current (or last) connection
  int64_t births = 0;             // NBIRTHs sent (each session and each rebirth)
  int64_t rebirths = 0;           // NCMD Node Control/Rebirth honoured
  int64_t commands_rejected = 0;  // NCMD payloads that did not decode (malformed)
  int64_t data_sent = 0;          // live DDATA
  int64_t historical_sent = 0;    // spooled alerts sent as historical DDATA
  int64_t alerts_spooled = 0;
  int64_t historical_dropped = 0;  // spooled for a device that has since stopped
  int64_t queue_dropped = 0;       // decisions dropped because the worker was that far behind
  int64_t spool_depth = 0;
  int64_t decisions = 0;
  std::string last_error;
};

// For the health payload and metrics.
nlohmann::json ToJson(const SparkplugStats& s);

class SparkplugDevice;

class SparkplugNode {
 public:
  // Validates, reads the persisted bdSeq, opens the spool and starts connecting (in the
  // background: an unreachable broker never delays the start).
  static Result<std::unique_ptr<SparkplugNode>> Create(const SparkplugOptions& options);
  // Intentional disconnect: publishes NDEATH, then disconnects.
  ~SparkplugNode();

  // A device per asset (the device id is the asset id). Before the first birth or at any time:
  // a device added in session gets its DBIRTH at once.
  Result<std::unique_ptr<SparkplugDevice>> AddDevice(const std::string& asset_id);
  SparkplugStats stats() const;
  // Waits until every decision received so far was handled and the spool is empty.
  Status Flush(std::chrono::milliseconds timeout);

  class Impl;

 private:
  explicit SparkplugNode(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// One asset as a Sparkplug device. Destroying it publishes its DDEATH (when in session).
class SparkplugDevice : public DecisionSink {
 public:
  ~SparkplugDevice() override;
  void OnDecision(const Decision& decision) override;  // copies a few numbers; never blocks
  void OnModelInfo(const ModelInfo& info) override;
  const std::string& device_id() const { return id_; }

 private:
  friend class SparkplugNode;
  SparkplugDevice(std::shared_ptr<SparkplugNode::Impl> node, int index, std::string id);
  std::shared_ptr<SparkplugNode::Impl> node_;
  int index_;
  std::string id_;
};

}  // namespace tend::sparkplug
