// PostgreSQL flavour of the fleet store (libpqxx): the same tables and dedup rules as SQLite,
// so several ingest instances can share one database.
#include <algorithm>
#include <map>
#include <optional>
#include <pqxx/pqxx>
#include <stdexcept>
#include <tuple>

#include "fleet/console_schema.h"
#include "fleet/pg_guard.h"
#include "fleet/store.h"

namespace tend::fleet {
namespace {

using telemetry::TopicKind;

// Schema version 1 (before versioning); see store_sqlite.cc for the scheme.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE IF NOT EXISTS devices(
  device_id TEXT PRIMARY KEY, factory_id TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL DEFAULT '', status_ms BIGINT NOT NULL DEFAULT 0,
  last_seen_ms BIGINT NOT NULL DEFAULT 0, model_version TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS status_history(
  device_id TEXT NOT NULL, factory_id TEXT NOT NULL, status TEXT NOT NULL,
  ts_ms BIGINT NOT NULL, timestamp TEXT NOT NULL, received_ms BIGINT NOT NULL,
  UNIQUE(device_id, status, ts_ms));
CREATE TABLE IF NOT EXISTS alerts(
  msg_id TEXT UNIQUE, device_id TEXT NOT NULL, factory_id TEXT NOT NULL, line_id TEXT NOT NULL,
  asset_id TEXT NOT NULL, ts_ms BIGINT NOT NULL, timestamp TEXT NOT NULL,
  anomaly_score DOUBLE PRECISION, severity TEXT NOT NULL, top_sensors TEXT NOT NULL,
  model_version TEXT NOT NULL, seq BIGINT NOT NULL, received_ms BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS alerts_by_ts ON alerts(ts_ms);
CREATE TABLE IF NOT EXISTS scores(
  msg_id TEXT UNIQUE, device_id TEXT NOT NULL, asset_id TEXT NOT NULL, ts_ms BIGINT NOT NULL,
  anomaly_score DOUBLE PRECISION, is_alert BOOLEAN NOT NULL, severity TEXT NOT NULL,
  model_version TEXT NOT NULL, seq BIGINT NOT NULL, received_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS health(
  msg_id TEXT UNIQUE, device_id TEXT NOT NULL, asset_id TEXT NOT NULL, ts_ms BIGINT NOT NULL,
  payload TEXT NOT NULL, received_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS ota_state(
  device_id TEXT PRIMARY KEY, factory_id TEXT NOT NULL, msg_id TEXT, ts_ms BIGINT NOT NULL,
  timestamp TEXT NOT NULL, event TEXT NOT NULL, model TEXT NOT NULL, state TEXT NOT NULL,
  current_version BIGINT NOT NULL, backup_version BIGINT NOT NULL,
  highest_version BIGINT NOT NULL, in_probation BOOLEAN NOT NULL, stale BOOLEAN NOT NULL,
  model_age_s BIGINT NOT NULL, rollbacks BIGINT NOT NULL, last_rollback_reason TEXT NOT NULL,
  payload TEXT NOT NULL, received_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS ota_events(
  msg_id TEXT UNIQUE, device_id TEXT NOT NULL, factory_id TEXT NOT NULL, ts_ms BIGINT NOT NULL,
  timestamp TEXT NOT NULL, event TEXT NOT NULL, model TEXT NOT NULL,
  current_version BIGINT NOT NULL, backup_version BIGINT NOT NULL, reason TEXT NOT NULL,
  received_ms BIGINT NOT NULL, UNIQUE(device_id, event, ts_ms));
CREATE INDEX IF NOT EXISTS ota_events_by_ts ON ota_events(ts_ms);
)sql";

// The current schema, for a new database, and run after the migrations on an existing one.
constexpr int kSchemaVersion = 3;
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS devices(
  device_id TEXT PRIMARY KEY, factory_id TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL DEFAULT '', status_ms BIGINT NOT NULL DEFAULT 0,
  last_seen_ms BIGINT NOT NULL DEFAULT 0, model_version TEXT NOT NULL DEFAULT '',
  status_order_ms BIGINT NOT NULL DEFAULT 0, status_rank INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS status_history(
  device_id TEXT NOT NULL, factory_id TEXT NOT NULL, status TEXT NOT NULL,
  ts_ms BIGINT NOT NULL, timestamp TEXT NOT NULL, received_ms BIGINT NOT NULL,
  UNIQUE(device_id, status, ts_ms));
CREATE TABLE IF NOT EXISTS alerts(
  msg_id TEXT, device_id TEXT NOT NULL, factory_id TEXT NOT NULL, line_id TEXT NOT NULL,
  asset_id TEXT NOT NULL, ts_ms BIGINT NOT NULL, timestamp TEXT NOT NULL,
  anomaly_score DOUBLE PRECISION, severity TEXT NOT NULL, top_sensors TEXT NOT NULL,
  model_version TEXT NOT NULL, seq BIGINT NOT NULL, received_ms BIGINT NOT NULL,
  event_id TEXT NOT NULL DEFAULT '', image_ref TEXT NOT NULL DEFAULT '',
  CONSTRAINT alerts_dedup UNIQUE(device_id, asset_id, msg_id));
CREATE INDEX IF NOT EXISTS alerts_by_ts ON alerts(ts_ms);
CREATE TABLE IF NOT EXISTS scores(
  msg_id TEXT, device_id TEXT NOT NULL, asset_id TEXT NOT NULL, ts_ms BIGINT NOT NULL,
  anomaly_score DOUBLE PRECISION, is_alert BOOLEAN NOT NULL, severity TEXT NOT NULL,
  model_version TEXT NOT NULL, seq BIGINT NOT NULL, received_ms BIGINT NOT NULL,
  CONSTRAINT scores_dedup UNIQUE(device_id, asset_id, msg_id));
CREATE TABLE IF NOT EXISTS health(
  msg_id TEXT, device_id TEXT NOT NULL, asset_id TEXT NOT NULL, ts_ms BIGINT NOT NULL,
  payload TEXT NOT NULL, received_ms BIGINT NOT NULL,
  CONSTRAINT health_dedup UNIQUE(device_id, asset_id, msg_id));
CREATE TABLE IF NOT EXISTS ota_state(
  device_id TEXT PRIMARY KEY, factory_id TEXT NOT NULL, msg_id TEXT, ts_ms BIGINT NOT NULL,
  timestamp TEXT NOT NULL, event TEXT NOT NULL, model TEXT NOT NULL, state TEXT NOT NULL,
  current_version BIGINT NOT NULL, backup_version BIGINT NOT NULL,
  highest_version BIGINT NOT NULL, in_probation BOOLEAN NOT NULL, stale BOOLEAN NOT NULL,
  model_age_s BIGINT NOT NULL, rollbacks BIGINT NOT NULL, last_rollback_reason TEXT NOT NULL,
  payload TEXT NOT NULL, received_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS ota_events(
  msg_id TEXT, device_id TEXT NOT NULL, factory_id TEXT NOT NULL, ts_ms BIGINT NOT NULL,
  timestamp TEXT NOT NULL, event TEXT NOT NULL, model TEXT NOT NULL,
  current_version BIGINT NOT NULL, backup_version BIGINT NOT NULL, reason TEXT NOT NULL,
  received_ms BIGINT NOT NULL, CONSTRAINT ota_events_dedup UNIQUE(device_id, msg_id),
  UNIQUE(device_id, event, ts_ms));
CREATE INDEX IF NOT EXISTS ota_events_by_ts ON ota_events(ts_ms);
)sql";  // and ConsoleSchema(), see Migrate()

struct Migration {
  int to;
  const char* sql;
  bool console_tables = false;  // then creates the console's tables (console_schema.h) too
};
// Issue 17: dedup per (device, asset, msg_id) instead of a global UNIQUE(msg_id); device status
// ordered by (session, rank). Issue 15: the console. A new schema change is one more entry.
constexpr Migration kMigrations[] = {
    {2, R"sql(
ALTER TABLE alerts DROP CONSTRAINT IF EXISTS alerts_msg_id_key;
ALTER TABLE alerts ADD CONSTRAINT alerts_dedup UNIQUE(device_id, asset_id, msg_id);
ALTER TABLE scores DROP CONSTRAINT IF EXISTS scores_msg_id_key;
ALTER TABLE scores ADD CONSTRAINT scores_dedup UNIQUE(device_id, asset_id, msg_id);
ALTER TABLE health DROP CONSTRAINT IF EXISTS health_msg_id_key;
ALTER TABLE health ADD CONSTRAINT health_dedup UNIQUE(device_id, asset_id, msg_id);
ALTER TABLE ota_events DROP CONSTRAINT IF EXISTS ota_events_msg_id_key;
ALTER TABLE ota_events ADD CONSTRAINT ota_events_dedup UNIQUE(device_id, msg_id);
ALTER TABLE devices ADD COLUMN IF NOT EXISTS status_order_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN IF NOT EXISTS status_rank INTEGER NOT NULL DEFAULT 0;
UPDATE devices SET status_order_ms = status_ms,
  status_rank = CASE WHEN status = 'offline' THEN 1 ELSE 0 END;
)sql"},
    // Issue 15: the fleet console's and the rollout controller's tables, and an alert's evidence.
    {3, R"sql(
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS event_id TEXT NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS image_ref TEXT NOT NULL DEFAULT '';
)sql",
     true},
};

// Brings any earlier schema to kSchemaVersion inside `w` (which holds the advisory lock).
void Migrate(pqxx::work& w) {
  w.exec("CREATE TABLE IF NOT EXISTS tend_schema(version INTEGER NOT NULL)");
  auto v = w.exec("SELECT version FROM tend_schema");
  int version = v.empty() ? 0 : v[0][0].as<int>();
  if (version > kSchemaVersion) {
    throw std::runtime_error("fleet database schema " + std::to_string(version) +
                             " is newer than this build's (" + std::to_string(kSchemaVersion) +
                             ")");
  }
  if (version == 0 && w.exec("SELECT to_regclass('alerts') IS NOT NULL")[0][0].as<bool>()) {
    version = 1;  // made before schema versions
    w.exec(kSchemaV1);
  }
  if (version > 0) {
    for (const auto& m : kMigrations) {
      if (m.to <= version) continue;
      w.exec(m.sql);
      if (m.console_tables) w.exec(ConsoleSchema(kPostgresIdColumn));
    }
  }
  w.exec(kSchema);
  w.exec(ConsoleSchema(kPostgresIdColumn));
  w.exec("DELETE FROM tend_schema");
  w.exec("INSERT INTO tend_schema(version) VALUES(" + std::to_string(kSchemaVersion) + ")");
}

const char* NullIfEmpty(const std::string& s) { return s.empty() ? nullptr : s.c_str(); }

class PostgresStore : public FleetStore {
 public:
  explicit PostgresStore(std::string url) : url_(std::move(url)) {}

  Status Open() {
    return PgGuard("connect", [&]() -> Status {
      conn_ = std::make_unique<pqxx::connection>(url_);
      {
        pqxx::work w(*conn_);
        // Two ingest instances may create the schema at once: serialise on an advisory lock.
        w.exec("SELECT pg_advisory_xact_lock(7403)");
        Migrate(w);
        w.commit();
      }
      conn_->prepare("alert",
                     "INSERT INTO alerts(msg_id, device_id, factory_id, line_id, asset_id, ts_ms,"
                     " timestamp, anomaly_score, severity, top_sensors, model_version, seq,"
                     " received_ms) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)"
                     " ON CONFLICT DO NOTHING");
      conn_->prepare("score",
                     "INSERT INTO scores(msg_id, device_id, asset_id, ts_ms, anomaly_score,"
                     " is_alert, severity, model_version, seq, received_ms)"
                     " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT DO NOTHING");
      conn_->prepare("health",
                     "INSERT INTO health(msg_id, device_id, asset_id, ts_ms, payload, received_ms)"
                     " VALUES($1,$2,$3,$4,$5,$6) ON CONFLICT DO NOTHING");
      conn_->prepare("status",
                     "INSERT INTO status_history(device_id, factory_id, status, ts_ms, timestamp,"
                     " received_ms) VALUES($1,$2,$3,$4,$5,$6) ON CONFLICT DO NOTHING");
      conn_->prepare("seen",
                     "INSERT INTO devices(device_id, factory_id, last_seen_ms, model_version)"
                     " VALUES($1,$2,$3,$4) ON CONFLICT(device_id) DO UPDATE SET"
                     " factory_id=excluded.factory_id,"
                     " last_seen_ms=GREATEST(devices.last_seen_ms, excluded.last_seen_ms),"
                     " model_version=CASE WHEN excluded.model_version='' THEN"
                     " devices.model_version ELSE excluded.model_version END");
      // The later (session, rank) wins: see StatusOrder in store.h.
      std::string devstatus =
          "INSERT INTO devices(device_id, factory_id, status, status_ms, status_order_ms,"
          " status_rank, last_seen_ms) VALUES($1,$2,$3,$4,$5,$6,$7)"
          " ON CONFLICT(device_id) DO UPDATE SET";
      for (const char* col : {"status", "status_ms", "status_order_ms", "status_rank"}) {
        devstatus += std::string(" ") + col +
                     "=CASE WHEN (excluded.status_order_ms, excluded.status_rank) >="
                     " (devices.status_order_ms, devices.status_rank) THEN excluded." +
                     col + " ELSE devices." + col + " END,";
      }
      devstatus += " last_seen_ms=GREATEST(devices.last_seen_ms, excluded.last_seen_ms)";
      conn_->prepare("devstatus", devstatus);
      conn_->prepare("otaevent",
                     "INSERT INTO ota_events(msg_id, device_id, factory_id, ts_ms, timestamp,"
                     " event, model, current_version, backup_version, reason, received_ms)"
                     " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) ON CONFLICT DO NOTHING");
      conn_->prepare("asset", kDeviceAssetUpsert);
      conn_->prepare("evidence", kAlertEvidenceUpdate);
      conn_->prepare(
          "otastate",
          "INSERT INTO ota_state(device_id, factory_id, msg_id, ts_ms, timestamp, event, model,"
          " state, current_version, backup_version, highest_version, in_probation, stale,"
          " model_age_s, rollbacks, last_rollback_reason, payload, received_ms)"
          " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18)"
          " ON CONFLICT(device_id) DO UPDATE SET"
          " factory_id=excluded.factory_id, msg_id=excluded.msg_id, ts_ms=excluded.ts_ms,"
          " timestamp=excluded.timestamp, event=excluded.event, model=excluded.model,"
          " state=excluded.state, current_version=excluded.current_version,"
          " backup_version=excluded.backup_version, highest_version=excluded.highest_version,"
          " in_probation=excluded.in_probation, stale=excluded.stale,"
          " model_age_s=excluded.model_age_s, rollbacks=excluded.rollbacks,"
          " last_rollback_reason=excluded.last_rollback_reason, payload=excluded.payload,"
          " received_ms=excluded.received_ms WHERE excluded.ts_ms >= ota_state.ts_ms");
      return Ok();
    });
  }

  Result<bool> Store(const FleetMessage& m, int64_t received_ms) override {
    bool inserted = false;
    auto st = PgGuard("store", [&]() -> Status {
      pqxx::work w(*conn_);
      TEND_ASSIGN_OR_RETURN(inserted, StoreIn(w, m, received_ms));
      w.commit();
      return Ok();
    });
    if (!st) return Fail(st.error());
    return inserted;
  }

  // A batch in one transaction, in four phases: new rows (scores and health as multi-row
  // INSERTs, a round trip per 200 rows), then OTA states, device assets and devices, each table
  // with one upsert per key in key order. Every writer takes row locks in that order (Store()
  // too), so two ingest instances never deadlock; a deadlock with some other writer is retried.
  Result<int64_t> StoreBatch(const std::vector<FleetMessage>& batch, int64_t received_ms) override {
    const bool qos0_only = std::all_of(batch.begin(), batch.end(), [](const FleetMessage& m) {
      return m.kind == TopicKind::kScores || m.kind == TopicKind::kHealth;
    });
    Status st;
    int64_t inserted = 0;
    for (int attempt = 0; attempt < 3; ++attempt) {
      st = PgGuard("store batch", [&]() -> Status {
        pqxx::work w(*conn_);
        if (qos0_only) w.exec("SET LOCAL synchronous_commit TO OFF");  // see store.h
        TEND_ASSIGN_OR_RETURN(inserted, StoreBatchIn(w, batch, received_ms));
        w.commit();
        return Ok();
      });
      if (st || st.error().message.find("deadlock detected") == std::string::npos) break;
    }
    if (!st) return Fail(st.error());
    return inserted;
  }

  Result<int64_t> StoreBatchIn(pqxx::work& w, const std::vector<FleetMessage>& batch,
                               int64_t received_ms) {
    std::vector<const FleetMessage*> scores, health, others, new_ota;
    for (const auto& m : batch) {
      (m.kind == TopicKind::kScores   ? scores
       : m.kind == TopicKind::kHealth ? health
                                      : others)
          .push_back(&m);
    }
    auto by_id = [](const FleetMessage* a, const FleetMessage* b) {  // the dedup key's order
      return std::tie(a->device_id, a->asset_id, a->msg_id) <
             std::tie(b->device_id, b->asset_id, b->msg_id);
    };
    std::stable_sort(scores.begin(), scores.end(), by_id);
    std::stable_sort(health.begin(), health.end(), by_id);
    std::stable_sort(
        others.begin(), others.end(),
        [](const FleetMessage* a, const FleetMessage* b) { return a->device_id < b->device_id; });
    const std::string rcv = std::to_string(received_ms);
    int64_t inserted = InsertScores(w, scores, rcv) + InsertHealth(w, health, rcv);
    for (const FleetMessage* m : others) {  // alerts, status, OTA events: rare, one by one
      TEND_ASSIGN_OR_RETURN(bool fresh, StoreRowOnly(w, *m, received_ms));
      inserted += fresh ? 1 : 0;
      if (fresh && m->kind == TopicKind::kOta) new_ota.push_back(m);
    }
    for (const FleetMessage* m : new_ota) OtaStateUpsert(w, *m, received_ms);
    UpsertAssets(w, batch, rcv);
    UpsertDevices(w, batch, received_ms);
    return inserted;
  }

  // `head` + VALUES (...),(...) + `tail` for rows of `cols` text cells (nullopt: NULL), 200 rows
  // a statement; returns the rows affected.
  static int64_t MultiRow(pqxx::work& w, const std::string& head, const std::string& tail,
                          size_t cols, const std::vector<std::optional<std::string>>& cells) {
    int64_t n = 0;
    const size_t rows = cells.size() / cols;
    for (size_t r0 = 0; r0 < rows; r0 += 200) {
      const size_t r1 = std::min(rows, r0 + 200);
      std::string sql = head;
      std::vector<const char*> ptrs;
      for (size_t r = r0; r < r1; ++r) {
        sql += r == r0 ? "(" : ",(";
        for (size_t c = 0; c < cols; ++c) {
          sql += (c ? ",$" : "$") + std::to_string((r - r0) * cols + c + 1);
          const auto& cell = cells[r * cols + c];
          ptrs.push_back(cell ? cell->c_str() : nullptr);
        }
        sql += ")";
      }
      sql += tail;
      n += static_cast<int64_t>(
          w.exec_params(sql, pqxx::prepare::make_dynamic_params(ptrs)).affected_rows());
    }
    return n;
  }

  static std::optional<std::string> OrNull(const std::string& s) {
    return s.empty() ? std::nullopt : std::optional<std::string>(s);
  }

  static int64_t InsertScores(pqxx::work& w, const std::vector<const FleetMessage*>& rows,
                              const std::string& rcv) {
    std::vector<std::optional<std::string>> cells;
    for (const FleetMessage* m : rows) {
      cells.insert(cells.end(),
                   {OrNull(m->msg_id), m->device_id, m->asset_id, std::to_string(m->ts_ms),
                    m->has_score ? std::optional<std::string>(std::to_string(m->anomaly_score))
                                 : std::nullopt,
                    m->is_alert ? "true" : "false", m->severity, m->model_version,
                    std::to_string(m->seq), rcv});
    }
    return MultiRow(
        w,
        "INSERT INTO scores(msg_id, device_id, asset_id, ts_ms, anomaly_score, is_alert,"
        " severity, model_version, seq, received_ms) VALUES ",
        " ON CONFLICT DO NOTHING", 10, cells);
  }

  static int64_t InsertHealth(pqxx::work& w, const std::vector<const FleetMessage*>& rows,
                              const std::string& rcv) {
    std::vector<std::optional<std::string>> cells;
    for (const FleetMessage* m : rows) {
      cells.insert(cells.end(), {OrNull(m->msg_id), m->device_id, m->asset_id,
                                 std::to_string(m->ts_ms), m->payload, rcv});
    }
    return MultiRow(w,
                    "INSERT INTO health(msg_id, device_id, asset_id, ts_ms, payload, received_ms)"
                    " VALUES ",
                    " ON CONFLICT DO NOTHING", 6, cells);
  }

  // Alerts (with their evidence), status history and OTA events: the new row only.
  Result<bool> StoreRowOnly(pqxx::work& w, const FleetMessage& m, int64_t received_ms) {
    switch (m.kind) {
      case TopicKind::kAlerts: {
        std::string score = m.has_score ? std::to_string(m.anomaly_score) : std::string();
        bool fresh =
            w.exec_prepared("alert", NullIfEmpty(m.msg_id), m.device_id, m.factory_id, m.line_id,
                            m.asset_id, m.ts_ms, m.timestamp, m.has_score ? score.c_str() : nullptr,
                            m.severity, m.top_sensors, m.model_version, m.seq, received_ms)
                .affected_rows() > 0;
        if (fresh && !m.image_ref.empty() && !m.msg_id.empty()) {
          w.exec_prepared("evidence", m.event_id, m.image_ref, m.device_id, m.asset_id, m.msg_id);
        }
        return fresh;
      }
      case TopicKind::kStatus:
        return w.exec_prepared("status", m.device_id, m.factory_id, m.status, m.ts_ms, m.timestamp,
                               received_ms)
                   .affected_rows() > 0;
      case TopicKind::kOta: {
        const OtaFields& o = m.ota;
        return w.exec_prepared("otaevent", NullIfEmpty(m.msg_id), m.device_id, m.factory_id,
                               m.ts_ms, m.timestamp, o.event, o.model, o.current_version,
                               o.backup_version, o.reason, received_ms)
                   .affected_rows() > 0;
      }
      default:
        return Fail(Error::Internal("store: unexpected message kind in a batch"));
    }
  }

  static void OtaStateUpsert(pqxx::work& w, const FleetMessage& m, int64_t received_ms) {
    const OtaFields& o = m.ota;
    w.exec_prepared("otastate", m.device_id, m.factory_id, NullIfEmpty(m.msg_id), m.ts_ms,
                    m.timestamp, o.event, o.model, o.state, o.current_version, o.backup_version,
                    o.highest_version, o.in_probation, o.stale, o.model_age_s, o.rollbacks,
                    o.last_rollback_reason, m.payload, received_ms);
  }

  // One upsert per (device, line, asset) the batch's alerts and health name, in key order.
  static void UpsertAssets(pqxx::work& w, const std::vector<FleetMessage>& batch,
                           const std::string& rcv) {
    std::map<std::tuple<std::string, std::string, std::string>, std::string> keys;  // -> factory
    for (const auto& m : batch) {
      if ((m.kind == TopicKind::kAlerts || m.kind == TopicKind::kHealth) && !m.device_id.empty()) {
        keys[{m.device_id, m.line_id, m.asset_id}] = m.factory_id;
      }
    }
    std::vector<std::optional<std::string>> cells;
    for (const auto& [k, factory] : keys) {
      cells.insert(cells.end(), {std::get<0>(k), factory, std::get<1>(k), std::get<2>(k), rcv});
    }
    MultiRow(w,
             "INSERT INTO device_assets(device_id, factory_id, line_id, asset_id, last_seen_ms)"
             " VALUES ",
             " ON CONFLICT(device_id, line_id, asset_id) DO UPDATE SET"
             " factory_id=excluded.factory_id, last_seen_ms=excluded.last_seen_ms"
             " WHERE excluded.last_seen_ms > device_assets.last_seen_ms",
             5, cells);
  }

  // One upsert per device, in device order: last seen, the newest model version and the latest
  // status the batch carries (the same rules as "seen" and "devstatus": the later (session,
  // rank) wins, see StatusOrder in store.h).
  static void UpsertDevices(pqxx::work& w, const std::vector<FleetMessage>& batch,
                            int64_t received_ms) {
    struct Dev {
      std::string factory, version, status;
      int64_t status_ms = 0;
      StatusOrder order;
    };
    std::map<std::string, Dev> devs;
    for (const auto& m : batch) {
      if (m.device_id.empty()) continue;
      Dev& d = devs[m.device_id];
      d.factory = m.factory_id;
      if (m.kind == TopicKind::kStatus) {
        const StatusOrder o = StatusOrderOf(m);
        if (d.status.empty() ||
            std::tie(o.order_ms, o.rank) >= std::tie(d.order.order_ms, d.order.rank)) {
          d.status = m.status;
          d.status_ms = m.ts_ms;
          d.order = o;
        }
      } else if (!m.model_version.empty()) {
        d.version = m.model_version;
      }
    }
    std::vector<std::optional<std::string>> cells;
    const std::string rcv = std::to_string(received_ms);
    for (const auto& [id, d] : devs) {
      cells.insert(cells.end(), {id, d.factory, d.status, std::to_string(d.status_ms),
                                 std::to_string(d.order.order_ms), std::to_string(d.order.rank),
                                 rcv, d.version});
    }
    std::string tail = " ON CONFLICT(device_id) DO UPDATE SET factory_id=excluded.factory_id,";
    for (const char* col : {"status", "status_ms", "status_order_ms", "status_rank"}) {
      tail += std::string(" ") + col +
              "=CASE WHEN excluded.status <> '' AND (excluded.status_order_ms,"
              " excluded.status_rank) >= (devices.status_order_ms, devices.status_rank)"
              " THEN excluded." +
              col + " ELSE devices." + col + " END,";
    }
    tail +=
        " last_seen_ms=GREATEST(devices.last_seen_ms, excluded.last_seen_ms),"
        " model_version=CASE WHEN excluded.model_version='' THEN devices.model_version"
        " ELSE excluded.model_version END";
    MultiRow(w,
             "INSERT INTO devices(device_id, factory_id, status, status_ms, status_order_ms,"
             " status_rank, last_seen_ms, model_version) VALUES ",
             tail, 8, cells);
  }

  // One message inside `w`; libpqxx errors are thrown (callers run it inside Guard).
  Result<bool> StoreIn(pqxx::work& w, const FleetMessage& m, int64_t received_ms) {
    bool inserted = false;
    {
      std::string score = m.has_score ? std::to_string(m.anomaly_score) : std::string();
      const char* score_p = m.has_score ? score.c_str() : nullptr;
      switch (m.kind) {
        case TopicKind::kAlerts:
          inserted = w.exec_prepared("alert", NullIfEmpty(m.msg_id), m.device_id, m.factory_id,
                                     m.line_id, m.asset_id, m.ts_ms, m.timestamp, score_p,
                                     m.severity, m.top_sensors, m.model_version, m.seq, received_ms)
                         .affected_rows() > 0;
          if (inserted && !m.image_ref.empty() && !m.msg_id.empty()) {
            w.exec_prepared("evidence", m.event_id, m.image_ref, m.device_id, m.asset_id, m.msg_id);
          }
          break;
        case TopicKind::kScores:
          inserted =
              w.exec_prepared("score", NullIfEmpty(m.msg_id), m.device_id, m.asset_id, m.ts_ms,
                              score_p, m.is_alert, m.severity, m.model_version, m.seq, received_ms)
                  .affected_rows() > 0;
          break;
        case TopicKind::kHealth:
          inserted = w.exec_prepared("health", NullIfEmpty(m.msg_id), m.device_id, m.asset_id,
                                     m.ts_ms, m.payload, received_ms)
                         .affected_rows() > 0;
          break;
        case TopicKind::kStatus:
          inserted = w.exec_prepared("status", m.device_id, m.factory_id, m.status, m.ts_ms,
                                     m.timestamp, received_ms)
                         .affected_rows() > 0;
          w.exec_prepared("devstatus", m.device_id, m.factory_id, m.status, m.ts_ms,
                          StatusOrderOf(m).order_ms, StatusOrderOf(m).rank, received_ms);
          break;
        case TopicKind::kOta: {
          const OtaFields& o = m.ota;
          inserted = w.exec_prepared("otaevent", NullIfEmpty(m.msg_id), m.device_id, m.factory_id,
                                     m.ts_ms, m.timestamp, o.event, o.model, o.current_version,
                                     o.backup_version, o.reason, received_ms)
                         .affected_rows() > 0;
          // A redelivery carries a state already applied.
          if (inserted) {
            w.exec_prepared("otastate", m.device_id, m.factory_id, NullIfEmpty(m.msg_id), m.ts_ms,
                            m.timestamp, o.event, o.model, o.state, o.current_version,
                            o.backup_version, o.highest_version, o.in_probation, o.stale,
                            o.model_age_s, o.rollbacks, o.last_rollback_reason, m.payload,
                            received_ms);
          }
          break;
        }
        case TopicKind::kUnknown:
          return Fail(Error::Internal("store: unknown topic kind"));
      }
      if ((m.kind == TopicKind::kAlerts || m.kind == TopicKind::kHealth) && !m.device_id.empty()) {
        w.exec_prepared("asset", m.device_id, m.factory_id, m.line_id, m.asset_id, received_ms);
      }
      if (m.kind != TopicKind::kStatus && !m.device_id.empty()) {
        w.exec_prepared("seen", m.device_id, m.factory_id, received_ms, m.model_version);
      }
    }
    return inserted;
  }

  Result<std::vector<DeviceRow>> Devices() override {
    std::vector<DeviceRow> out;
    auto st = PgGuard("query devices", [&]() -> Status {
      pqxx::read_transaction w(*conn_);
      for (const auto& r :
           w.exec("SELECT d.device_id, d.factory_id, d.status, d.status_ms, d.last_seen_ms,"
                  " d.model_version, o.ts_ms IS NOT NULL, o.timestamp, COALESCE(o.msg_id,''),"
                  " o.ts_ms, o.event, o.model, o.state, o.current_version, o.backup_version,"
                  " o.highest_version, o.in_probation, o.stale, o.model_age_s, o.rollbacks,"
                  " o.last_rollback_reason FROM devices d"
                  " LEFT JOIN ota_state o ON o.device_id = d.device_id ORDER BY d.device_id")) {
        DeviceRow d;
        d.device_id = r[0].as<std::string>();
        d.factory_id = r[1].as<std::string>();
        d.status = r[2].as<std::string>();
        d.status_ms = r[3].as<int64_t>();
        d.last_seen_ms = r[4].as<int64_t>();
        d.model_version = r[5].as<std::string>();
        d.has_ota = r[6].as<bool>();
        if (d.has_ota) {
          d.ota.timestamp = r[7].as<std::string>();
          d.ota.msg_id = r[8].as<std::string>();
          d.ota.ts_ms = r[9].as<int64_t>();
          OtaFields& o = d.ota.ota;
          o.event = r[10].as<std::string>();
          o.model = r[11].as<std::string>();
          o.state = r[12].as<std::string>();
          o.current_version = r[13].as<int64_t>();
          o.backup_version = r[14].as<int64_t>();
          o.highest_version = r[15].as<int64_t>();
          o.in_probation = r[16].as<bool>();
          o.stale = r[17].as<bool>();
          o.model_age_s = r[18].as<int64_t>();
          o.rollbacks = r[19].as<int64_t>();
          o.last_rollback_reason = r[20].as<std::string>();
        }
        out.push_back(std::move(d));
      }
      return Ok();
    });
    if (!st) return Fail(st.error());
    return out;
  }

  Result<std::vector<AlertRow>> Alerts(int64_t since_ms, int64_t limit) override {
    std::vector<AlertRow> out;
    auto st = PgGuard("query alerts", [&]() -> Status {
      pqxx::read_transaction w(*conn_);
      auto res = w.exec_params(
          "SELECT COALESCE(msg_id,''), device_id, factory_id, line_id, asset_id, timestamp, ts_ms,"
          " anomaly_score, severity, top_sensors, model_version, seq FROM alerts"
          " WHERE ts_ms >= $1 ORDER BY ts_ms, seq LIMIT $2",
          since_ms, limit);
      for (const auto& r : res) {
        AlertRow a;
        a.msg_id = r[0].as<std::string>();
        a.device_id = r[1].as<std::string>();
        a.factory_id = r[2].as<std::string>();
        a.line_id = r[3].as<std::string>();
        a.asset_id = r[4].as<std::string>();
        a.timestamp = r[5].as<std::string>();
        a.ts_ms = r[6].as<int64_t>();
        a.has_score = !r[7].is_null();
        a.anomaly_score = a.has_score ? r[7].as<double>() : 0;
        a.severity = r[8].as<std::string>();
        a.top_sensors = r[9].as<std::string>();
        a.model_version = r[10].as<std::string>();
        a.seq = r[11].as<int64_t>();
        out.push_back(std::move(a));
      }
      return Ok();
    });
    if (!st) return Fail(st.error());
    return out;
  }

  Result<std::vector<OtaEventRow>> OtaEvents(int64_t since_ms, const std::string& event,
                                             int64_t limit) override {
    std::vector<OtaEventRow> out;
    auto st = PgGuard("query ota events", [&]() -> Status {
      pqxx::read_transaction w(*conn_);
      auto res = w.exec_params(
          "SELECT COALESCE(msg_id,''), device_id, factory_id, timestamp, ts_ms, event, model,"
          " current_version, backup_version, reason FROM ota_events"
          " WHERE ts_ms >= $1 AND ($2 = '' OR event = $2) ORDER BY ts_ms, device_id LIMIT $3",
          since_ms, event, limit);
      for (const auto& r : res) {
        OtaEventRow e;
        e.msg_id = r[0].as<std::string>();
        e.device_id = r[1].as<std::string>();
        e.factory_id = r[2].as<std::string>();
        e.timestamp = r[3].as<std::string>();
        e.ts_ms = r[4].as<int64_t>();
        e.event = r[5].as<std::string>();
        e.model = r[6].as<std::string>();
        e.current_version = r[7].as<int64_t>();
        e.backup_version = r[8].as<int64_t>();
        e.reason = r[9].as<std::string>();
        out.push_back(std::move(e));
      }
      return Ok();
    });
    if (!st) return Fail(st.error());
    return out;
  }

  Result<std::vector<std::string>> MessageIds(const std::string& table) override {
    if (table != "alerts" && table != "scores" && table != "health" && table != "ota_events") {
      return Fail(Error::Invalid("unknown table '" + table + "'"));
    }
    std::vector<std::string> out;
    auto st = PgGuard("query " + table, [&]() -> Status {
      pqxx::read_transaction w(*conn_);
      for (const auto& r : w.exec("SELECT msg_id FROM " + table + " WHERE msg_id IS NOT NULL")) {
        out.push_back(r[0].as<std::string>());
      }
      return Ok();
    });
    if (!st) return Fail(st.error());
    return out;
  }

  Result<int64_t> StatusHistoryCount() override {
    int64_t n = 0;
    auto st = PgGuard("count status", [&]() -> Status {
      pqxx::read_transaction w(*conn_);
      n = w.exec("SELECT COUNT(*) FROM status_history")[0][0].as<int64_t>();
      return Ok();
    });
    if (!st) return Fail(st.error());
    return n;
  }

 private:
  std::string url_;
  std::unique_ptr<pqxx::connection> conn_;
};

}  // namespace

Result<std::unique_ptr<FleetStore>> OpenPostgresStore(const std::string& url) {
  auto s = std::make_unique<PostgresStore>(url);
  TEND_RETURN_NOT_OK(s->Open());
  return std::unique_ptr<FleetStore>(std::move(s));
}

}  // namespace tend::fleet
