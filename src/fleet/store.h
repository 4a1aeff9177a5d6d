// Where the fleet keeps what devices send: devices (online/offline, last seen, model version),
// status history, alerts, scores, health, and each device's OTA state and event history. SQLite by
// default, PostgreSQL for a real deployment (several ingest instances writing to one database).
// Deduplicates by (device, asset, message id) so at-least-once delivery stores each message once
// and two devices (or two lives of one device's spool) can never claim each other's messages.
// Schema changes go through a versioned migration list in each store (kMigrations).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "fleet/message.h"

namespace tend::fleet {

// The latest OTA state a device reported (newest device timestamp wins).
struct OtaStateRow {
  std::string timestamp, msg_id;
  int64_t ts_ms = 0;
  OtaFields ota;
};

struct DeviceRow {
  std::string device_id, factory_id;
  std::string status;  // online | offline | "" (never reported)
  int64_t status_ms = 0;
  int64_t last_seen_ms = 0;  // receive time of the latest message from the device
  std::string model_version;
  bool has_ota = false;  // the device has reported an OTA state
  OtaStateRow ota;
};

// One entry of the OTA event history (every OTA state message: installs, refusals, rollbacks...).
struct OtaEventRow {
  std::string msg_id, device_id, factory_id, timestamp;
  int64_t ts_ms = 0;
  std::string event, model;
  int64_t current_version = 0, backup_version = 0;
  std::string reason;
};

struct AlertRow {
  std::string msg_id, device_id, factory_id, line_id, asset_id;
  std::string timestamp;
  int64_t ts_ms = 0;
  double anomaly_score = 0;
  bool has_score = false;
  std::string severity, top_sensors, model_version;
  int64_t seq = -1;
};

// Which device status wins: the one with the later (order_ms, rank). order_ms is the status's
// connection stamp (session) when it has one, else its timestamp; rank puts offline after online
// within one connection, so a crashed device's Last Will (stamped at connect) beats the `online`
// sent just after it, and the next connection's `online` beats that Will.
struct StatusOrder {
  int64_t order_ms = 0;
  int rank = 0;
};
inline StatusOrder StatusOrderOf(const FleetMessage& m) {
  return {m.session_ms > 0 ? m.session_ms : m.ts_ms, m.status == "offline" ? 1 : 0};
}

class FleetStore {
 public:
  virtual ~FleetStore() = default;
  // Stores the message and updates its device; returns false for a duplicate (device, asset,
  // msg_id) (nothing stored). Malformed messages never get here.
  virtual Result<bool> Store(const FleetMessage& m, int64_t received_ms) = 0;
  // Stores messages in one transaction and returns how many were new. A batch of QoS 0 messages
  // only (scores, health) is committed on PostgreSQL without waiting for the WAL flush: a database
  // crash can lose the last fraction of a second of them, which the broker was free to drop too;
  // a batch with any alert, status or OTA state is committed durably. The default stores them
  // one by one.
  virtual Result<int64_t> StoreBatch(const std::vector<FleetMessage>& batch, int64_t received_ms);
  virtual Result<std::vector<DeviceRow>> Devices() = 0;
  // Alerts with a device timestamp >= since_ms, oldest first.
  virtual Result<std::vector<AlertRow>> Alerts(int64_t since_ms, int64_t limit) = 0;
  // OTA events with a device timestamp >= since_ms, oldest first; `event` "" means all.
  virtual Result<std::vector<OtaEventRow>> OtaEvents(int64_t since_ms, const std::string& event,
                                                     int64_t limit) = 0;
  // msg_ids stored in `table` (alerts | scores | health | ota_events): for tests and audits.
  virtual Result<std::vector<std::string>> MessageIds(const std::string& table) = 0;
  virtual Result<int64_t> StatusHistoryCount() = 0;
};

// "sqlite:PATH", a plain PATH, or "postgresql://..." / "postgres://..." (libpqxx).
Result<std::unique_ptr<FleetStore>> OpenFleetStore(const std::string& db);

// Implementations (store_sqlite.cc, store_pg.cc).
Result<std::unique_ptr<FleetStore>> OpenSqliteStore(const std::string& path);
Result<std::unique_ptr<FleetStore>> OpenPostgresStore(const std::string& url);

}  // namespace tend::fleet
