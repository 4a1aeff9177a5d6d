// Tables of the fleet console and the rollout controller, part of the fleet schema (version 3) of
// both fleet stores, so that every database ingest writes to can also be served and controlled;
// and the indexes the console's per-device queries need on ingest's tables.
#pragma once

#include <string>

namespace tend::fleet {

// Both dialects, after the id column's type is put in (ConsoleSchema); schema version 3 of each
// store (store_sqlite.cc, store_pg.cc) adds these tables and the evidence columns of alerts.
inline constexpr const char* kConsoleSchemaTemplate = R"sql(
CREATE TABLE IF NOT EXISTS console_tokens(
  hash TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, created_ms BIGINT NOT NULL,
  expires_ms BIGINT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS console_sessions(
  hash TEXT PRIMARY KEY, token_hash TEXT NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL,
  csrf TEXT NOT NULL, created_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_log(
  id @ID@, ts_ms BIGINT NOT NULL, actor TEXT NOT NULL, role TEXT NOT NULL,
  action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL, result TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rollout_intents(
  name TEXT NOT NULL, version BIGINT NOT NULL, state TEXT NOT NULL, actor TEXT NOT NULL,
  ts_ms BIGINT NOT NULL, PRIMARY KEY(name, version));
CREATE TABLE IF NOT EXISTS rollout_status(
  name TEXT NOT NULL, version BIGINT NOT NULL, plan TEXT NOT NULL, state TEXT NOT NULL,
  open_waves BIGINT NOT NULL, opened TEXT NOT NULL, reason TEXT NOT NULL,
  control_version BIGINT NOT NULL, updated_ms BIGINT NOT NULL, PRIMARY KEY(name, version));
CREATE TABLE IF NOT EXISTS device_pins(
  device_id TEXT NOT NULL, name TEXT NOT NULL, max_version BIGINT NOT NULL, actor TEXT NOT NULL,
  ts_ms BIGINT NOT NULL, PRIMARY KEY(device_id, name));
CREATE TABLE IF NOT EXISTS rollback_requests(
  id @ID@, device_id TEXT NOT NULL, name TEXT NOT NULL, from_version BIGINT NOT NULL,
  reason TEXT NOT NULL, actor TEXT NOT NULL, ts_ms BIGINT NOT NULL, status TEXT NOT NULL,
  signed_ms BIGINT NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS device_tags(
  device_id TEXT NOT NULL, tag TEXT NOT NULL, PRIMARY KEY(device_id, tag));
CREATE TABLE IF NOT EXISTS device_assets(
  device_id TEXT NOT NULL, factory_id TEXT NOT NULL, line_id TEXT NOT NULL, asset_id TEXT NOT NULL,
  last_seen_ms BIGINT NOT NULL, PRIMARY KEY(device_id, line_id, asset_id));
CREATE INDEX IF NOT EXISTS alerts_by_device ON alerts(device_id, ts_ms);
CREATE INDEX IF NOT EXISTS scores_by_device ON scores(device_id, ts_ms);
CREATE INDEX IF NOT EXISTS health_by_device ON health(device_id, ts_ms);
CREATE INDEX IF NOT EXISTS ota_events_by_device ON ota_events(device_id, ts_ms);
)sql";
inline constexpr const char* kSqliteIdColumn = "INTEGER PRIMARY KEY AUTOINCREMENT";
inline constexpr const char* kPostgresIdColumn = "BIGSERIAL PRIMARY KEY";

inline std::string ConsoleSchema(const char* id_column) {
  std::string s = kConsoleSchemaTemplate;
  for (size_t p; (p = s.find("@ID@")) != std::string::npos;) s.replace(p, 4, id_column);
  return s;
}

// Set after the alert's insert, only for alerts that carry evidence (vision).
inline constexpr const char* kAlertEvidenceUpdate =
    "UPDATE alerts SET event_id=$1, image_ref=$2"
    " WHERE device_id=$3 AND asset_id=$4 AND msg_id=$5";

// The upsert ingest runs for alerts and health: which lines and assets a device serves.
inline constexpr const char* kDeviceAssetUpsert =
    "INSERT INTO device_assets(device_id, factory_id, line_id, asset_id, last_seen_ms)"
    " VALUES($1,$2,$3,$4,$5) ON CONFLICT(device_id, line_id, asset_id) DO UPDATE SET"
    " factory_id=excluded.factory_id, last_seen_ms=excluded.last_seen_ms"
    " WHERE excluded.last_seen_ms > device_assets.last_seen_ms";

}  // namespace tend::fleet
