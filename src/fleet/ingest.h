// `tend fleet ingest`: subscribes to every device's scores, alerts, health, status and OTA state
// through an MQTT shared subscription ($share/GROUP/...) so that several instances split the load,
// and stores each message once. The retained OTA state comes through a plain subscription.
// Malformed messages are counted by reason and skipped, never fatal.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>

#include "core/status.h"
#include "fleet/store.h"

namespace tend::fleet {

struct IngestOptions {
  std::string broker_url;            // mqtt://host:port or mqtts://host:port
  std::string group = "tend-fleet";  // shared-subscription group; "" = plain subscription
  std::string client_id;             // default fleet_<group>_<pid>
  int mqtt_version = 5;
  std::string ca_file, cert_file, key_file, username, password;
  size_t max_payload_bytes = 64 * 1024;
  double connect_timeout_s = 10;
  // Messages are written in batches by a writer thread: one transaction per batch_ms or
  // batch_max messages, whichever comes first (0: each message in its own transaction, on the
  // MQTT callback thread). Paho C acknowledges a QoS 1 PUBLISH when it arrives, before the
  // callback runs, so storing in the callback never held the PUBACK back; batches only add up to
  // batch_ms to what a crashed instance loses (see docs/telemetry.md).
  double batch_ms = 50;
  size_t batch_max = 1000;
  // Beyond this many queued messages (database stalled) QoS 0 messages are dropped, counted;
  // alerts, status and OTA states are always queued.
  size_t batch_queue_max = 200000;
  // Device timestamps further ahead of this machine's clock are refused (bad_timestamp).
  int64_t max_clock_skew_ms = kDefaultMaxClockSkewMs;
  // Two live connections claiming one device id take turns on the broker (same client id): an
  // `online` from a process that had been replaced by another within this window is reported.
  int64_t duplicate_window_ms = 10 * 60 * 1000;
};

struct IngestStats {
  int64_t received = 0, stored = 0, duplicates = 0;
  int64_t too_large = 0, bad_json = 0, wrong_type = 0, unknown_topic = 0;
  int64_t bad_id = 0, bad_timestamp = 0;  // refused: see Malformed
  int64_t store_errors = 0;
  int64_t batch_dropped = 0;  // QoS 0 messages dropped because the writer fell far behind
  int64_t queued = 0;         // QoS 0 messages waiting for the writer now
  int64_t batches = 0;
  // Times an `online` showed two live processes claiming one device id (logged at error level).
  int64_t duplicate_device_ids = 0;
  bool connected = false;
};

// Spots two live processes claiming one device id (cloned images with the host name as device
// id): their connections share the MQTT client id, so the broker keeps replacing one with the
// other and their `online` statuses alternate. A process id (StatusSession::instance) that comes
// back after another took over is the sign; a restarted agent has a new one and never comes back.
class DuplicateDeviceDetector {
 public:
  explicit DuplicateDeviceDetector(int64_t window_ms) : window_ms_(window_ms) {}
  // For each `online` with an instance id; returns the other instance when the pattern shows.
  // A redelivered `online` (same or older session of its instance) is not a comeback.
  std::string OnOnline(const std::string& device_id, const std::string& instance,
                       int64_t session_ms, int64_t received_ms);

 private:
  struct Seen {
    std::string instance;
    int64_t session_ms;
    int64_t received_ms;
  };
  int64_t window_ms_;
  std::map<std::string, std::deque<Seen>> recent_;  // per device, newest last, within the window
};

// The topic filters ingest subscribes to, with the $share/GROUP/ prefix when group is set; the
// OTA state filter (factory/+/edge/+/ota) is always plain, for its retained messages.
std::vector<std::string> IngestTopicFilters(const std::string& group);

class Ingest {
 public:
  // Connects and subscribes (waiting up to connect_timeout_s); afterwards reconnects on its own.
  static Result<std::unique_ptr<Ingest>> Start(const IngestOptions& options,
                                               std::unique_ptr<FleetStore> store);

  ~Ingest();
  IngestStats stats() const;
  void Stop();

  class Impl;

 private:
  explicit Ingest(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tend::fleet
