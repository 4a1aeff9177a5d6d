#include <sqlite3.h>

#include <filesystem>

#include "core/fs.h"
#include "fleet/console_schema.h"
#include "fleet/sql.h"
#include "fleet/store.h"

namespace tend::fleet {
namespace {

using telemetry::TopicKind;

// Schema version 1: the tables before versioning (PRAGMA user_version 0 with tables present).
// Only run on such a database, to add the tables very old ones lack before migrating.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE IF NOT EXISTS devices(
  device_id TEXT PRIMARY KEY, factory_id TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL DEFAULT '', status_ms INTEGER NOT NULL DEFAULT 0,
  last_seen_ms INTEGER NOT NULL DEFAULT 0, model_version TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS status_history(
  device_id TEXT NOT NULL, factory_id TEXT NOT NULL, status TEXT NOT NULL,
  ts_ms INTEGER NOT NULL, timestamp TEXT NOT NULL, received_ms INTEGER NOT NULL,
  UNIQUE(device_id, status, ts_ms));
CREATE TABLE IF NOT EXISTS alerts(
  msg_id TEXT UNIQUE, device_id TEXT NOT NULL, factory_id TEXT NOT NULL, line_id TEXT NOT NULL,
  asset_id TEXT NOT NULL, ts_ms INTEGER NOT NULL, timestamp TEXT NOT NULL, anomaly_score REAL,
  severity TEXT NOT NULL, top_sensors TEXT NOT NULL, model_version TEXT NOT NULL,
  seq INTEGER NOT NULL, received_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS alerts_by_ts ON alerts(ts_ms);
CREATE TABLE IF NOT EXISTS scores(
  msg_id TEXT UNIQUE, device_id TEXT NOT NULL, asset_id TEXT NOT NULL, ts_ms INTEGER NOT NULL,
  anomaly_score REAL, is_alert INTEGER NOT NULL, severity TEXT NOT NULL,
  model_version TEXT NOT NULL, seq INTEGER NOT NULL, received_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS health(
  msg_id TEXT UNIQUE, device_id TEXT NOT NULL, asset_id TEXT NOT NULL, ts_ms INTEGER NOT NULL,
  payload TEXT NOT NULL, received_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ota_state(
  device_id TEXT PRIMARY KEY, factory_id TEXT NOT NULL, msg_id TEXT, ts_ms INTEGER NOT NULL,
  timestamp TEXT NOT NULL, event TEXT NOT NULL, model TEXT NOT NULL, state TEXT NOT NULL,
  current_version INTEGER NOT NULL, backup_version INTEGER NOT NULL,
  highest_version INTEGER NOT NULL, in_probation INTEGER NOT NULL, stale INTEGER NOT NULL,
  model_age_s INTEGER NOT NULL, rollbacks INTEGER NOT NULL, last_rollback_reason TEXT NOT NULL,
  payload TEXT NOT NULL, received_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ota_events(
  msg_id TEXT UNIQUE, device_id TEXT NOT NULL, factory_id TEXT NOT NULL, ts_ms INTEGER NOT NULL,
  timestamp TEXT NOT NULL, event TEXT NOT NULL, model TEXT NOT NULL,
  current_version INTEGER NOT NULL, backup_version INTEGER NOT NULL, reason TEXT NOT NULL,
  received_ms INTEGER NOT NULL, UNIQUE(device_id, event, ts_ms));
CREATE INDEX IF NOT EXISTS ota_events_by_ts ON ota_events(ts_ms);
)sql";

// The current schema (version kSchemaVersion), for a new database; on an existing one, after the
// migrations, it recreates whatever is missing in its current shape.
constexpr int kSchemaVersion = 3;
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS devices(
  device_id TEXT PRIMARY KEY, factory_id TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL DEFAULT '', status_ms INTEGER NOT NULL DEFAULT 0,
  last_seen_ms INTEGER NOT NULL DEFAULT 0, model_version TEXT NOT NULL DEFAULT '',
  status_order_ms INTEGER NOT NULL DEFAULT 0, status_rank INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS status_history(
  device_id TEXT NOT NULL, factory_id TEXT NOT NULL, status TEXT NOT NULL,
  ts_ms INTEGER NOT NULL, timestamp TEXT NOT NULL, received_ms INTEGER NOT NULL,
  UNIQUE(device_id, status, ts_ms));
CREATE TABLE IF NOT EXISTS alerts(
  msg_id TEXT, device_id TEXT NOT NULL, factory_id TEXT NOT NULL, line_id TEXT NOT NULL,
  asset_id TEXT NOT NULL, ts_ms INTEGER NOT NULL, timestamp TEXT NOT NULL, anomaly_score REAL,
  severity TEXT NOT NULL, top_sensors TEXT NOT NULL, model_version TEXT NOT NULL,
  seq INTEGER NOT NULL, received_ms INTEGER NOT NULL, event_id TEXT NOT NULL DEFAULT '',
  image_ref TEXT NOT NULL DEFAULT '', UNIQUE(device_id, asset_id, msg_id));
CREATE INDEX IF NOT EXISTS alerts_by_ts ON alerts(ts_ms);
CREATE TABLE IF NOT EXISTS scores(
  msg_id TEXT, device_id TEXT NOT NULL, asset_id TEXT NOT NULL, ts_ms INTEGER NOT NULL,
  anomaly_score REAL, is_alert INTEGER NOT NULL, severity TEXT NOT NULL,
  model_version TEXT NOT NULL, seq INTEGER NOT NULL, received_ms INTEGER NOT NULL,
  UNIQUE(device_id, asset_id, msg_id));
CREATE TABLE IF NOT EXISTS health(
  msg_id TEXT, device_id TEXT NOT NULL, asset_id TEXT NOT NULL, ts_ms INTEGER NOT NULL,
  payload TEXT NOT NULL, received_ms INTEGER NOT NULL, UNIQUE(device_id, asset_id, msg_id));
CREATE TABLE IF NOT EXISTS ota_state(
  device_id TEXT PRIMARY KEY, factory_id TEXT NOT NULL, msg_id TEXT, ts_ms INTEGER NOT NULL,
  timestamp TEXT NOT NULL, event TEXT NOT NULL, model TEXT NOT NULL, state TEXT NOT NULL,
  current_version INTEGER NOT NULL, backup_version INTEGER NOT NULL,
  highest_version INTEGER NOT NULL, in_probation INTEGER NOT NULL, stale INTEGER NOT NULL,
  model_age_s INTEGER NOT NULL, rollbacks INTEGER NOT NULL, last_rollback_reason TEXT NOT NULL,
  payload TEXT NOT NULL, received_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ota_events(
  msg_id TEXT, device_id TEXT NOT NULL, factory_id TEXT NOT NULL, ts_ms INTEGER NOT NULL,
  timestamp TEXT NOT NULL, event TEXT NOT NULL, model TEXT NOT NULL,
  current_version INTEGER NOT NULL, backup_version INTEGER NOT NULL, reason TEXT NOT NULL,
  received_ms INTEGER NOT NULL, UNIQUE(device_id, msg_id), UNIQUE(device_id, event, ts_ms));
CREATE INDEX IF NOT EXISTS ota_events_by_ts ON ota_events(ts_ms);
)sql";  // and ConsoleSchema(), see Migrate()

// Migrations, in order: `to` is the version a step leaves the database at. Each runs in the
// open's transaction. A new schema change is one more entry here (and in kSchema).
struct Migration {
  int to;
  const char* sql;
  bool console_tables = false;  // then creates the console's tables (console_schema.h) too
};
constexpr Migration kMigrations[] = {
    // Issue 17: dedup by msg_id alone dropped the alerts of two devices (or two spool lives) whose
    // ids collided; the key is now (device, asset, msg_id). SQLite cannot drop a UNIQUE column
    // constraint, so those tables are rebuilt. Device status gets its ordering key (session,
    // offline after online) so that a crashed device's Last Will wins.
    {2, R"sql(
CREATE TABLE alerts_v2(
  msg_id TEXT, device_id TEXT NOT NULL, factory_id TEXT NOT NULL, line_id TEXT NOT NULL,
  asset_id TEXT NOT NULL, ts_ms INTEGER NOT NULL, timestamp TEXT NOT NULL, anomaly_score REAL,
  severity TEXT NOT NULL, top_sensors TEXT NOT NULL, model_version TEXT NOT NULL,
  seq INTEGER NOT NULL, received_ms INTEGER NOT NULL, UNIQUE(device_id, asset_id, msg_id));
INSERT INTO alerts_v2 SELECT msg_id, device_id, factory_id, line_id, asset_id, ts_ms, timestamp,
  anomaly_score, severity, top_sensors, model_version, seq, received_ms FROM alerts;
DROP TABLE alerts;
ALTER TABLE alerts_v2 RENAME TO alerts;
CREATE INDEX alerts_by_ts ON alerts(ts_ms);
CREATE TABLE scores_v2(
  msg_id TEXT, device_id TEXT NOT NULL, asset_id TEXT NOT NULL, ts_ms INTEGER NOT NULL,
  anomaly_score REAL, is_alert INTEGER NOT NULL, severity TEXT NOT NULL,
  model_version TEXT NOT NULL, seq INTEGER NOT NULL, received_ms INTEGER NOT NULL,
  UNIQUE(device_id, asset_id, msg_id));
INSERT INTO scores_v2 SELECT msg_id, device_id, asset_id, ts_ms, anomaly_score, is_alert,
  severity, model_version, seq, received_ms FROM scores;
DROP TABLE scores;
ALTER TABLE scores_v2 RENAME TO scores;
CREATE TABLE health_v2(
  msg_id TEXT, device_id TEXT NOT NULL, asset_id TEXT NOT NULL, ts_ms INTEGER NOT NULL,
  payload TEXT NOT NULL, received_ms INTEGER NOT NULL, UNIQUE(device_id, asset_id, msg_id));
INSERT INTO health_v2 SELECT msg_id, device_id, asset_id, ts_ms, payload, received_ms FROM health;
DROP TABLE health;
ALTER TABLE health_v2 RENAME TO health;
CREATE TABLE ota_events_v2(
  msg_id TEXT, device_id TEXT NOT NULL, factory_id TEXT NOT NULL, ts_ms INTEGER NOT NULL,
  timestamp TEXT NOT NULL, event TEXT NOT NULL, model TEXT NOT NULL,
  current_version INTEGER NOT NULL, backup_version INTEGER NOT NULL, reason TEXT NOT NULL,
  received_ms INTEGER NOT NULL, UNIQUE(device_id, msg_id), UNIQUE(device_id, event, ts_ms));
INSERT INTO ota_events_v2 SELECT msg_id, device_id, factory_id, ts_ms, timestamp, event, model,
  current_version, backup_version, reason, received_ms FROM ota_events;
DROP TABLE ota_events;
ALTER TABLE ota_events_v2 RENAME TO ota_events;
CREATE INDEX ota_events_by_ts ON ota_events(ts_ms);
ALTER TABLE devices ADD COLUMN status_order_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN status_rank INTEGER NOT NULL DEFAULT 0;
UPDATE devices SET status_order_ms = status_ms, status_rank = (status = 'offline');
)sql"},
    // Issue 15: the fleet console's and the rollout controller's tables, and an alert's evidence
    // (vision: event_id, image_ref).
    {3, R"sql(
ALTER TABLE alerts ADD COLUMN event_id TEXT NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN image_ref TEXT NOT NULL DEFAULT '';
)sql",
     true},
};

class SqliteStore : public FleetStore {
 public:
  explicit SqliteStore(std::string path) : path_(std::move(path)) {}
  ~SqliteStore() override {
    for (auto* s : stmts_) sqlite3_finalize(s);
    if (db_) sqlite3_close(db_);
  }

  Status Open() {
    std::filesystem::path p(path_);
    if (p.has_parent_path()) TEND_RETURN_NOT_OK(fs::MakeDirs(p.parent_path().string()));
    if (sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
        SQLITE_OK) {
      return Fail(Err("open"));
    }
    sqlite3_busy_timeout(db_, 10000);
    TEND_RETURN_NOT_OK(Exec("PRAGMA journal_mode=WAL"));
    TEND_RETURN_NOT_OK(Exec("PRAGMA synchronous=NORMAL"));
    TEND_RETURN_NOT_OK(Exec("BEGIN IMMEDIATE"));
    if (auto st = Migrate(); !st) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return st;
    }
    TEND_RETURN_NOT_OK(Exec("COMMIT"));
    const char* sql[] = {
        // 0 alerts
        "INSERT INTO alerts(msg_id, device_id, factory_id, line_id, asset_id, ts_ms, timestamp,"
        " anomaly_score, severity, top_sensors, model_version, seq, received_ms)"
        " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
        // 1 scores
        "INSERT INTO scores(msg_id, device_id, asset_id, ts_ms, anomaly_score, is_alert, severity,"
        " model_version, seq, received_ms) VALUES(?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
        // 2 health
        "INSERT INTO health(msg_id, device_id, asset_id, ts_ms, payload, received_ms)"
        " VALUES(?,?,?,?,?,?) ON CONFLICT DO NOTHING",
        // 3 status history
        "INSERT INTO status_history(device_id, factory_id, status, ts_ms, timestamp, received_ms)"
        " VALUES(?,?,?,?,?,?) ON CONFLICT DO NOTHING",
        // 4 device seen
        "INSERT INTO devices(device_id, factory_id, last_seen_ms, model_version) VALUES(?,?,?,?)"
        " ON CONFLICT(device_id) DO UPDATE SET factory_id=excluded.factory_id,"
        " last_seen_ms=max(last_seen_ms, excluded.last_seen_ms),"
        " model_version=CASE WHEN excluded.model_version='' THEN model_version"
        " ELSE excluded.model_version END",
        // 5 device status: the later (session, rank) wins (see StatusOrder in store.h)
        "INSERT INTO devices(device_id, factory_id, status, status_ms, status_order_ms,"
        " status_rank, last_seen_ms) VALUES(?,?,?,?,?,?,?) ON CONFLICT(device_id) DO UPDATE SET"
        " status=CASE WHEN (excluded.status_order_ms, excluded.status_rank) >="
        " (status_order_ms, status_rank) THEN excluded.status ELSE status END,"
        " status_ms=CASE WHEN (excluded.status_order_ms, excluded.status_rank) >="
        " (status_order_ms, status_rank) THEN excluded.status_ms ELSE status_ms END,"
        " status_order_ms=CASE WHEN (excluded.status_order_ms, excluded.status_rank) >="
        " (status_order_ms, status_rank) THEN excluded.status_order_ms ELSE status_order_ms END,"
        " status_rank=CASE WHEN (excluded.status_order_ms, excluded.status_rank) >="
        " (status_order_ms, status_rank) THEN excluded.status_rank ELSE status_rank END,"
        " last_seen_ms=max(last_seen_ms, excluded.last_seen_ms)",
        // 6 ota event (history; dedup by msg_id)
        "INSERT INTO ota_events(msg_id, device_id, factory_id, ts_ms, timestamp, event, model,"
        " current_version, backup_version, reason, received_ms) VALUES(?,?,?,?,?,?,?,?,?,?,?)"
        " ON CONFLICT DO NOTHING",
        // 7 ota state (only a newer state replaces an older one)
        "INSERT INTO ota_state(device_id, factory_id, msg_id, ts_ms, timestamp, event, model,"
        " state, current_version, backup_version, highest_version, in_probation, stale,"
        " model_age_s, rollbacks, last_rollback_reason, payload, received_ms)"
        " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(device_id) DO UPDATE SET"
        " factory_id=excluded.factory_id, msg_id=excluded.msg_id, ts_ms=excluded.ts_ms,"
        " timestamp=excluded.timestamp, event=excluded.event, model=excluded.model,"
        " state=excluded.state, current_version=excluded.current_version,"
        " backup_version=excluded.backup_version, highest_version=excluded.highest_version,"
        " in_probation=excluded.in_probation, stale=excluded.stale,"
        " model_age_s=excluded.model_age_s, rollbacks=excluded.rollbacks,"
        " last_rollback_reason=excluded.last_rollback_reason, payload=excluded.payload,"
        " received_ms=excluded.received_ms WHERE excluded.ts_ms >= ota_state.ts_ms",
        // 8 the lines and assets a device serves (console filters)
        kDeviceAssetUpsert,
        // 9 an alert's evidence (vision)
        kAlertEvidenceUpdate,
    };
    for (const char* s : sql) {
      sqlite3_stmt* st = nullptr;
      if (sqlite3_prepare_v2(db_, s, -1, &st, nullptr) != SQLITE_OK) return Fail(Err("prepare"));
      stmts_.push_back(st);
    }
    return Ok();
  }

  Result<bool> Store(const FleetMessage& m, int64_t received_ms) override {
    TEND_RETURN_NOT_OK(Exec("BEGIN IMMEDIATE"));
    auto r = StoreInTxn(m, received_ms);
    if (!r) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return r;
    }
    TEND_RETURN_NOT_OK(Exec("COMMIT"));
    return r;
  }

  Result<int64_t> StoreBatch(const std::vector<FleetMessage>& batch, int64_t received_ms) override {
    TEND_RETURN_NOT_OK(Exec("BEGIN IMMEDIATE"));
    int64_t inserted = 0;
    for (const auto& m : batch) {
      auto r = StoreInTxn(m, received_ms);
      if (!r) {
        sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
        return Fail(r.error());
      }
      inserted += *r ? 1 : 0;
    }
    TEND_RETURN_NOT_OK(Exec("COMMIT"));
    return inserted;
  }

  Result<std::vector<DeviceRow>> Devices() override {
    std::vector<DeviceRow> out;
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(
            db_,
            "SELECT d.device_id, d.factory_id, d.status, d.status_ms, d.last_seen_ms,"
            " d.model_version, o.ts_ms IS NOT NULL, o.timestamp, COALESCE(o.msg_id,''), o.ts_ms,"
            " o.event, o.model, o.state, o.current_version, o.backup_version, o.highest_version,"
            " o.in_probation, o.stale, o.model_age_s, o.rollbacks, o.last_rollback_reason"
            " FROM devices d LEFT JOIN ota_state o ON o.device_id = d.device_id"
            " ORDER BY d.device_id",
            -1, &st, nullptr) != SQLITE_OK) {
      return Fail(Err("query devices"));
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
      DeviceRow d;
      d.device_id = Text(st, 0);
      d.factory_id = Text(st, 1);
      d.status = Text(st, 2);
      d.status_ms = sqlite3_column_int64(st, 3);
      d.last_seen_ms = sqlite3_column_int64(st, 4);
      d.model_version = Text(st, 5);
      d.has_ota = sqlite3_column_int(st, 6) != 0;
      if (d.has_ota) {
        d.ota.timestamp = Text(st, 7);
        d.ota.msg_id = Text(st, 8);
        d.ota.ts_ms = sqlite3_column_int64(st, 9);
        OtaFields& o = d.ota.ota;
        o.event = Text(st, 10);
        o.model = Text(st, 11);
        o.state = Text(st, 12);
        o.current_version = sqlite3_column_int64(st, 13);
        o.backup_version = sqlite3_column_int64(st, 14);
        o.highest_version = sqlite3_column_int64(st, 15);
        o.in_probation = sqlite3_column_int(st, 16) != 0;
        o.stale = sqlite3_column_int(st, 17) != 0;
        o.model_age_s = sqlite3_column_int64(st, 18);
        o.rollbacks = sqlite3_column_int64(st, 19);
        o.last_rollback_reason = Text(st, 20);
      }
      out.push_back(std::move(d));
    }
    sqlite3_finalize(st);
    return out;
  }

  Result<std::vector<AlertRow>> Alerts(int64_t since_ms, int64_t limit) override {
    std::vector<AlertRow> out;
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_,
                           "SELECT COALESCE(msg_id,''), device_id, factory_id, line_id, asset_id,"
                           " timestamp, ts_ms, anomaly_score, severity, top_sensors, model_version,"
                           " seq FROM alerts WHERE ts_ms >= ? ORDER BY ts_ms, seq LIMIT ?",
                           -1, &st, nullptr) != SQLITE_OK) {
      return Fail(Err("query alerts"));
    }
    sqlite3_bind_int64(st, 1, since_ms);
    sqlite3_bind_int64(st, 2, limit);
    while (sqlite3_step(st) == SQLITE_ROW) {
      AlertRow a;
      a.msg_id = Text(st, 0);
      a.device_id = Text(st, 1);
      a.factory_id = Text(st, 2);
      a.line_id = Text(st, 3);
      a.asset_id = Text(st, 4);
      a.timestamp = Text(st, 5);
      a.ts_ms = sqlite3_column_int64(st, 6);
      a.has_score = sqlite3_column_type(st, 7) != SQLITE_NULL;
      a.anomaly_score = sqlite3_column_double(st, 7);
      a.severity = Text(st, 8);
      a.top_sensors = Text(st, 9);
      a.model_version = Text(st, 10);
      a.seq = sqlite3_column_int64(st, 11);
      out.push_back(std::move(a));
    }
    sqlite3_finalize(st);
    return out;
  }

  Result<std::vector<OtaEventRow>> OtaEvents(int64_t since_ms, const std::string& event,
                                             int64_t limit) override {
    std::vector<OtaEventRow> out;
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_,
                           "SELECT COALESCE(msg_id,''), device_id, factory_id, timestamp, ts_ms,"
                           " event, model, current_version, backup_version, reason FROM ota_events"
                           " WHERE ts_ms >= ? AND (? = '' OR event = ?)"
                           " ORDER BY ts_ms, device_id LIMIT ?",
                           -1, &st, nullptr) != SQLITE_OK) {
      return Fail(Err("query ota events"));
    }
    sqlite3_bind_int64(st, 1, since_ms);
    BindText(st, 2, event);
    BindText(st, 3, event);
    sqlite3_bind_int64(st, 4, limit);
    while (sqlite3_step(st) == SQLITE_ROW) {
      OtaEventRow e;
      e.msg_id = Text(st, 0);
      e.device_id = Text(st, 1);
      e.factory_id = Text(st, 2);
      e.timestamp = Text(st, 3);
      e.ts_ms = sqlite3_column_int64(st, 4);
      e.event = Text(st, 5);
      e.model = Text(st, 6);
      e.current_version = sqlite3_column_int64(st, 7);
      e.backup_version = sqlite3_column_int64(st, 8);
      e.reason = Text(st, 9);
      out.push_back(std::move(e));
    }
    sqlite3_finalize(st);
    return out;
  }

  Result<std::vector<std::string>> MessageIds(const std::string& table) override {
    if (table != "alerts" && table != "scores" && table != "health" && table != "ota_events") {
      return Fail(Error::Invalid("unknown table '" + table + "'"));
    }
    std::vector<std::string> out;
    sqlite3_stmt* st = nullptr;
    std::string sql = "SELECT msg_id FROM " + table + " WHERE msg_id IS NOT NULL";
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      return Fail(Err("query " + table));
    }
    while (sqlite3_step(st) == SQLITE_ROW) out.push_back(Text(st, 0));
    sqlite3_finalize(st);
    return out;
  }

  Result<int64_t> StatusHistoryCount() override {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, "SELECT COUNT(*) FROM status_history", -1, &st, nullptr) !=
        SQLITE_OK) {
      return Fail(Err("count status"));
    }
    int64_t n = 0;
    if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
  }

 private:
  static std::string Text(sqlite3_stmt* st, int col) {
    const unsigned char* t = sqlite3_column_text(st, col);
    return t ? reinterpret_cast<const char*>(t) : "";
  }
  Error Err(const std::string& what) const {
    return Error::Io(path_ + ": " + what + ": " + (db_ ? sqlite3_errmsg(db_) : "no database"));
  }
  Status Exec(const char* sql) {
    char* e = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &e) != SQLITE_OK) {
      std::string msg = e ? e : "?";
      sqlite3_free(e);
      return Fail(Error::Io(path_ + ": " + msg));
    }
    return Ok();
  }
  // Brings any earlier schema to kSchemaVersion (inside the caller's transaction).
  Status Migrate() {
    int64_t version = 0, tables = 0;
    TEND_RETURN_NOT_OK(Scalar("PRAGMA user_version", version));
    TEND_RETURN_NOT_OK(
        Scalar("SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name='alerts'", tables));
    if (version > kSchemaVersion) {
      return Fail(Error::Unsupported(path_ + ": fleet database schema " + std::to_string(version) +
                                     " is newer than this build's (" +
                                     std::to_string(kSchemaVersion) + ")"));
    }
    if (version == 0 && tables > 0) {
      version = 1;  // made before schema versions
      TEND_RETURN_NOT_OK(Exec(kSchemaV1));
    }
    if (version > 0) {
      for (const auto& m : kMigrations) {
        if (m.to <= version) continue;
        TEND_RETURN_NOT_OK(Exec(m.sql));
        if (m.console_tables) TEND_RETURN_NOT_OK(Exec(ConsoleSchema(kSqliteIdColumn).c_str()));
      }
    }
    TEND_RETURN_NOT_OK(Exec(kSchema));
    TEND_RETURN_NOT_OK(Exec(ConsoleSchema(kSqliteIdColumn).c_str()));
    const std::string set = "PRAGMA user_version=" + std::to_string(kSchemaVersion);
    return Exec(set.c_str());
  }
  Status Scalar(const char* sql, int64_t& out) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &st, nullptr) != SQLITE_OK) return Fail(Err(sql));
    const int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Fail(Err(sql));
    return Ok();
  }
  static void BindText(sqlite3_stmt* st, int i, const std::string& s) {
    sqlite3_bind_text(st, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
  }
  static void BindMsgId(sqlite3_stmt* st, int i, const std::string& s) {
    if (s.empty()) {
      sqlite3_bind_null(st, i);
    } else {
      BindText(st, i, s);
    }
  }
  Result<bool> Step(sqlite3_stmt* st, const char* what) {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) return Fail(Err(what));
    return sqlite3_changes(db_) > 0;
  }

  Result<bool> StoreInTxn(const FleetMessage& m, int64_t received_ms) {
    bool inserted = false;
    switch (m.kind) {
      case TopicKind::kAlerts: {
        sqlite3_stmt* st = stmts_[0];
        BindMsgId(st, 1, m.msg_id);
        BindText(st, 2, m.device_id);
        BindText(st, 3, m.factory_id);
        BindText(st, 4, m.line_id);
        BindText(st, 5, m.asset_id);
        sqlite3_bind_int64(st, 6, m.ts_ms);
        BindText(st, 7, m.timestamp);
        if (m.has_score)
          sqlite3_bind_double(st, 8, m.anomaly_score);
        else
          sqlite3_bind_null(st, 8);
        BindText(st, 9, m.severity);
        BindText(st, 10, m.top_sensors);
        BindText(st, 11, m.model_version);
        sqlite3_bind_int64(st, 12, m.seq);
        sqlite3_bind_int64(st, 13, received_ms);
        TEND_ASSIGN_OR_RETURN(inserted, Step(st, "insert alert"));
        if (inserted && !m.image_ref.empty() && !m.msg_id.empty()) {
          sqlite3_stmt* ev = stmts_[9];
          BindText(ev, 1, m.event_id);
          BindText(ev, 2, m.image_ref);
          BindText(ev, 3, m.device_id);
          BindText(ev, 4, m.asset_id);
          BindText(ev, 5, m.msg_id);
          TEND_RETURN_NOT_OK(Step(ev, "alert evidence"));
        }
        break;
      }
      case TopicKind::kScores: {
        sqlite3_stmt* st = stmts_[1];
        BindMsgId(st, 1, m.msg_id);
        BindText(st, 2, m.device_id);
        BindText(st, 3, m.asset_id);
        sqlite3_bind_int64(st, 4, m.ts_ms);
        if (m.has_score)
          sqlite3_bind_double(st, 5, m.anomaly_score);
        else
          sqlite3_bind_null(st, 5);
        sqlite3_bind_int(st, 6, m.is_alert ? 1 : 0);
        BindText(st, 7, m.severity);
        BindText(st, 8, m.model_version);
        sqlite3_bind_int64(st, 9, m.seq);
        sqlite3_bind_int64(st, 10, received_ms);
        TEND_ASSIGN_OR_RETURN(inserted, Step(st, "insert score"));
        break;
      }
      case TopicKind::kHealth: {
        sqlite3_stmt* st = stmts_[2];
        BindMsgId(st, 1, m.msg_id);
        BindText(st, 2, m.device_id);
        BindText(st, 3, m.asset_id);
        sqlite3_bind_int64(st, 4, m.ts_ms);
        BindText(st, 5, m.payload);
        sqlite3_bind_int64(st, 6, received_ms);
        TEND_ASSIGN_OR_RETURN(inserted, Step(st, "insert health"));
        break;
      }
      case TopicKind::kStatus: {
        sqlite3_stmt* st = stmts_[3];
        BindText(st, 1, m.device_id);
        BindText(st, 2, m.factory_id);
        BindText(st, 3, m.status);
        sqlite3_bind_int64(st, 4, m.ts_ms);
        BindText(st, 5, m.timestamp);
        sqlite3_bind_int64(st, 6, received_ms);
        TEND_ASSIGN_OR_RETURN(inserted, Step(st, "insert status"));
        sqlite3_stmt* dv = stmts_[5];
        const StatusOrder order = StatusOrderOf(m);
        BindText(dv, 1, m.device_id);
        BindText(dv, 2, m.factory_id);
        BindText(dv, 3, m.status);
        sqlite3_bind_int64(dv, 4, m.ts_ms);
        sqlite3_bind_int64(dv, 5, order.order_ms);
        sqlite3_bind_int(dv, 6, order.rank);
        sqlite3_bind_int64(dv, 7, received_ms);
        TEND_RETURN_NOT_OK(Step(dv, "update device status"));
        return inserted;
      }
      case TopicKind::kOta: {
        const OtaFields& o = m.ota;
        sqlite3_stmt* ev = stmts_[6];
        BindMsgId(ev, 1, m.msg_id);
        BindText(ev, 2, m.device_id);
        BindText(ev, 3, m.factory_id);
        sqlite3_bind_int64(ev, 4, m.ts_ms);
        BindText(ev, 5, m.timestamp);
        BindText(ev, 6, o.event);
        BindText(ev, 7, o.model);
        sqlite3_bind_int64(ev, 8, o.current_version);
        sqlite3_bind_int64(ev, 9, o.backup_version);
        BindText(ev, 10, o.reason);
        sqlite3_bind_int64(ev, 11, received_ms);
        TEND_ASSIGN_OR_RETURN(inserted, Step(ev, "insert ota event"));
        if (!inserted) break;  // a redelivery: the state it carried is already applied
        sqlite3_stmt* os = stmts_[7];
        BindText(os, 1, m.device_id);
        BindText(os, 2, m.factory_id);
        BindMsgId(os, 3, m.msg_id);
        sqlite3_bind_int64(os, 4, m.ts_ms);
        BindText(os, 5, m.timestamp);
        BindText(os, 6, o.event);
        BindText(os, 7, o.model);
        BindText(os, 8, o.state);
        sqlite3_bind_int64(os, 9, o.current_version);
        sqlite3_bind_int64(os, 10, o.backup_version);
        sqlite3_bind_int64(os, 11, o.highest_version);
        sqlite3_bind_int(os, 12, o.in_probation ? 1 : 0);
        sqlite3_bind_int(os, 13, o.stale ? 1 : 0);
        sqlite3_bind_int64(os, 14, o.model_age_s);
        sqlite3_bind_int64(os, 15, o.rollbacks);
        BindText(os, 16, o.last_rollback_reason);
        BindText(os, 17, m.payload);
        sqlite3_bind_int64(os, 18, received_ms);
        TEND_RETURN_NOT_OK(Step(os, "update ota state"));
        break;
      }
      case TopicKind::kUnknown:
        return Fail(Error::Internal("store: unknown topic kind"));
    }
    if ((m.kind == TopicKind::kAlerts || m.kind == TopicKind::kHealth) && !m.device_id.empty()) {
      sqlite3_stmt* as = stmts_[8];
      BindText(as, 1, m.device_id);
      BindText(as, 2, m.factory_id);
      BindText(as, 3, m.line_id);
      BindText(as, 4, m.asset_id);
      sqlite3_bind_int64(as, 5, received_ms);
      TEND_RETURN_NOT_OK(Step(as, "update device assets"));
    }
    if (!m.device_id.empty()) {
      sqlite3_stmt* dv = stmts_[4];
      BindText(dv, 1, m.device_id);
      BindText(dv, 2, m.factory_id);
      sqlite3_bind_int64(dv, 3, received_ms);
      BindText(dv, 4, m.model_version);
      TEND_RETURN_NOT_OK(Step(dv, "update device"));
    }
    return inserted;
  }

  std::string path_;
  sqlite3* db_ = nullptr;
  std::vector<sqlite3_stmt*> stmts_;
};

}  // namespace

Result<int64_t> FleetStore::StoreBatch(const std::vector<FleetMessage>& batch,
                                       int64_t received_ms) {
  int64_t inserted = 0;
  for (const auto& m : batch) {
    TEND_ASSIGN_OR_RETURN(bool fresh, Store(m, received_ms));
    inserted += fresh ? 1 : 0;
  }
  return inserted;
}

Result<std::unique_ptr<FleetStore>> OpenSqliteStore(const std::string& path) {
  auto s = std::make_unique<SqliteStore>(path);
  TEND_RETURN_NOT_OK(s->Open());
  return std::unique_ptr<FleetStore>(std::move(s));
}

Result<std::unique_ptr<FleetStore>> OpenFleetStore(const std::string& db) {
  TEND_ASSIGN_OR_RETURN(DbUrl u, ParseDbUrl(db));
  return u.postgres ? OpenPostgresStore(u.target) : OpenSqliteStore(u.target);
}

}  // namespace tend::fleet

#ifndef TEND_WITH_PQXX
namespace tend::fleet {
Result<std::unique_ptr<FleetStore>> OpenPostgresStore(const std::string& url) {
  return Fail(PostgresUnavailable(url));
}
}  // namespace tend::fleet
#endif
