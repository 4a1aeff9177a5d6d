#include "fleet/console_db.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <unordered_map>

namespace tend::fleet {
namespace {

using nlohmann::json;

constexpr const char* kDevicesSql =
    "SELECT d.device_id, d.factory_id, d.status, d.status_ms, d.last_seen_ms, d.model_version,"
    " CASE WHEN o.ts_ms IS NULL THEN 0 ELSE 1 END, o.timestamp, COALESCE(o.msg_id,''), o.ts_ms,"
    " o.event, o.model, o.state, o.current_version, o.backup_version, o.highest_version,"
    " CASE WHEN o.in_probation THEN 1 ELSE 0 END, CASE WHEN o.stale THEN 1 ELSE 0 END,"
    " o.model_age_s, o.rollbacks, o.last_rollback_reason, o.payload"
    " FROM devices d LEFT JOIN ota_state o ON o.device_id = d.device_id ORDER BY d.device_id";

DeviceRow DeviceFrom(const SqlRow& r, std::vector<int64_t>* rejected) {
  DeviceRow d;
  d.device_id = r.Str(0);
  d.factory_id = r.Str(1);
  d.status = r.Str(2);
  d.status_ms = r.Int(3);
  d.last_seen_ms = r.Int(4);
  d.model_version = r.Str(5);
  d.has_ota = r.Int(6) != 0;
  if (!d.has_ota) return d;
  d.ota.timestamp = r.Str(7);
  d.ota.msg_id = r.Str(8);
  d.ota.ts_ms = r.Int(9);
  OtaFields& o = d.ota.ota;
  o.event = r.Str(10);
  o.model = r.Str(11);
  o.state = r.Str(12);
  o.current_version = r.Int(13);
  o.backup_version = r.Int(14);
  o.highest_version = r.Int(15);
  o.in_probation = r.Int(16) != 0;
  o.stale = r.Int(17) != 0;
  o.model_age_s = r.Int(18);
  o.rollbacks = r.Int(19);
  o.last_rollback_reason = r.Str(20);
  json p = json::parse(r.Str(21), nullptr, false);
  if (rejected && p.is_object() && p.contains("rejected_versions") &&
      p["rejected_versions"].is_array()) {
    for (const auto& v : p["rejected_versions"]) {
      if (v.is_number_integer()) rejected->push_back(v.get<int64_t>());
    }
  }
  return d;
}

AuditRow AuditFrom(const SqlRow& r) {
  return {r.Int(0), r.Int(1), r.Str(2), r.Str(3), r.Str(4), r.Str(5), r.Str(6), r.Str(7)};
}

}  // namespace

Result<std::unique_ptr<ConsoleDb>> ConsoleDb::Open(const std::string& url) {
  TEND_ASSIGN_OR_RETURN(auto store, OpenFleetStore(url));  // schema and migrations
  store.reset();
  TEND_ASSIGN_OR_RETURN(auto db, SqlDb::Open(url));
  return std::unique_ptr<ConsoleDb>(new ConsoleDb(std::move(db)));
}

Status ConsoleDb::AddToken(const TokenRow& t) {
  return db_
      ->Exec(
          "INSERT INTO console_tokens(hash, name, role, created_ms, expires_ms, revoked)"
          " VALUES($1,$2,$3,$4,$5,0)",
          {t.hash, t.name, t.role, t.created_ms, t.expires_ms})
      .map([](int64_t) {});
}

Result<std::optional<TokenRow>> ConsoleDb::FindToken(const std::string& hash) {
  TEND_ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT hash, name, role, created_ms, expires_ms,"
                                              " revoked FROM console_tokens WHERE hash=$1",
                                              {hash}));
  if (rows.empty()) return std::optional<TokenRow>();
  const auto& r = rows[0];
  return std::optional<TokenRow>(
      TokenRow{r.Str(0), r.Str(1), r.Str(2), r.Int(3), r.Int(4), r.Int(5) != 0});
}

Result<std::vector<TokenRow>> ConsoleDb::Tokens() {
  TEND_ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT hash, name, role, created_ms, expires_ms,"
                                              " revoked FROM console_tokens ORDER BY created_ms"));
  std::vector<TokenRow> out;
  for (const auto& r : rows) {
    out.push_back({r.Str(0), r.Str(1), r.Str(2), r.Int(3), r.Int(4), r.Int(5) != 0});
  }
  return out;
}

Result<int64_t> ConsoleDb::RevokeToken(const std::string& name) {
  TEND_ASSIGN_OR_RETURN(int64_t n, db_->Exec("UPDATE console_tokens SET revoked=1 WHERE name=$1"
                                             " AND revoked=0",
                                             {name}));
  // Sessions opened with a revoked token end with it.
  TEND_RETURN_NOT_OK(
      db_->Exec("DELETE FROM console_sessions WHERE token_hash IN"
                " (SELECT hash FROM console_tokens WHERE revoked=1)"));
  return n;
}

Status ConsoleDb::AddSession(const SessionRow& s) {
  return db_
      ->Exec(
          "INSERT INTO console_sessions(hash, token_hash, name, role, csrf, created_ms,"
          " expires_ms) VALUES($1,$2,$3,$4,$5,$6,$7)",
          {s.hash, s.token_hash, s.name, s.role, s.csrf, s.created_ms, s.expires_ms})
      .map([](int64_t) {});
}

Result<std::optional<SessionRow>> ConsoleDb::FindSession(const std::string& hash) {
  TEND_ASSIGN_OR_RETURN(auto rows,
                        db_->Query("SELECT hash, token_hash, name, role, csrf, created_ms,"
                                   " expires_ms FROM console_sessions WHERE hash=$1",
                                   {hash}));
  if (rows.empty()) return std::optional<SessionRow>();
  const auto& r = rows[0];
  return std::optional<SessionRow>(
      SessionRow{r.Str(0), r.Str(1), r.Str(2), r.Str(3), r.Str(4), r.Int(5), r.Int(6)});
}

Status ConsoleDb::DeleteSession(const std::string& hash) {
  return db_->Exec("DELETE FROM console_sessions WHERE hash=$1", {hash}).map([](int64_t) {});
}

Status ConsoleDb::DeleteExpiredSessions(int64_t now_ms) {
  return db_->Exec("DELETE FROM console_sessions WHERE expires_ms <= $1", {now_ms})
      .map([](int64_t) {});
}

Status ConsoleDb::Audit(const AuditRow& a) {
  return db_
      ->Exec(
          "INSERT INTO audit_log(ts_ms, actor, role, action, target, detail, result)"
          " VALUES($1,$2,$3,$4,$5,$6,$7)",
          {a.ts_ms, a.actor, a.role, a.action, a.target, a.detail, a.result})
      .map([](int64_t) {});
}

Result<std::vector<AuditRow>> ConsoleDb::AuditLog(int64_t offset, int64_t limit, int64_t* total) {
  TEND_ASSIGN_OR_RETURN(auto count, db_->Query("SELECT COUNT(*) FROM audit_log"));
  if (total) *total = count.empty() ? 0 : count[0].Int(0);
  TEND_ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT id, ts_ms, actor, role, action, target,"
                                              " detail, result FROM audit_log ORDER BY id DESC"
                                              " LIMIT $1 OFFSET $2",
                                              {limit, offset}));
  std::vector<AuditRow> out;
  for (const auto& r : rows) out.push_back(AuditFrom(r));
  return out;
}

Result<std::map<std::string, int64_t>> ConsoleDb::AlertCountsSince(int64_t since_ms) {
  TEND_ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT device_id, COUNT(*) FROM alerts WHERE"
                                              " ts_ms >= $1 GROUP BY device_id",
                                              {since_ms}));
  std::map<std::string, int64_t> out;
  for (const auto& r : rows) out[r.Str(0)] = r.Int(1);
  return out;
}

Result<std::vector<DeviceSummary>> ConsoleDb::DeviceSummaries(
    int64_t now_ms, const std::map<std::string, int64_t>* day_counts) {
  TEND_ASSIGN_OR_RETURN(auto rows, db_->Query(kDevicesSql));
  std::vector<DeviceSummary> out;
  out.reserve(rows.size());
  std::unordered_map<std::string, size_t> at;
  for (const auto& r : rows) {
    DeviceSummary s;
    s.device = DeviceFrom(r, &s.rejected_versions);
    at[s.device.device_id] = out.size();
    out.push_back(std::move(s));
  }
  auto each = [&](const std::vector<SqlRow>& rs, auto&& fn) {
    for (const auto& r : rs) {
      auto it = at.find(r.Str(0));
      if (it != at.end()) fn(out[it->second], r);
    }
  };
  TEND_ASSIGN_OR_RETURN(auto hour, AlertCountsSince(now_ms - 3600 * 1000));
  std::map<std::string, int64_t> day_now;
  if (!day_counts) {
    TEND_ASSIGN_OR_RETURN(day_now, AlertCountsSince(now_ms - 86400 * 1000));
    day_counts = &day_now;
  }
  for (auto& s : out) {
    auto h = hour.find(s.device.device_id);
    auto d = day_counts->find(s.device.device_id);
    s.alerts_1h = h == hour.end() ? 0 : h->second;
    s.alerts_24h = std::max(s.alerts_1h, d == day_counts->end() ? 0 : d->second);
  }
  // The latest periodic health message (spool drop reports share the topic).
  TEND_ASSIGN_OR_RETURN(
      auto health,
      db_->Query("SELECT d.device_id, (SELECT h.payload FROM health h WHERE h.device_id ="
                 " d.device_id AND h.payload NOT LIKE $1 ORDER BY h.ts_ms DESC LIMIT 1)"
                 " FROM devices d",
                 {"%spool_drop_report%"}));
  each(health, [](DeviceSummary& s, const SqlRow& r) { s.health = r.Str(1); });
  TEND_ASSIGN_OR_RETURN(auto assets, db_->Query("SELECT device_id, line_id, asset_id FROM"
                                                " device_assets ORDER BY line_id, asset_id"));
  each(assets, [](DeviceSummary& s, const SqlRow& r) {
    if (std::find(s.lines.begin(), s.lines.end(), r.Str(1)) == s.lines.end()) {
      s.lines.push_back(r.Str(1));
    }
    s.assets.push_back(r.Str(2));
  });
  TEND_ASSIGN_OR_RETURN(auto tags,
                        db_->Query("SELECT device_id, tag FROM device_tags ORDER BY tag"));
  each(tags, [](DeviceSummary& s, const SqlRow& r) { s.tags.push_back(r.Str(1)); });
  TEND_ASSIGN_OR_RETURN(auto pins,
                        db_->Query("SELECT device_id, name, max_version FROM device_pins"));
  each(pins, [](DeviceSummary& s, const SqlRow& r) { s.pins.emplace_back(r.Str(1), r.Int(2)); });
  return out;
}

Result<std::vector<ScorePoint>> ConsoleDb::Scores(const std::string& device_id, int64_t since_ms,
                                                  int64_t limit) {
  TEND_ASSIGN_OR_RETURN(
      auto rows, db_->Query("SELECT ts_ms, anomaly_score, CASE WHEN is_alert THEN 1 ELSE 0 END,"
                            " severity, asset_id, model_version FROM scores WHERE device_id=$1"
                            " AND ts_ms >= $2 ORDER BY ts_ms DESC LIMIT $3",
                            {device_id, since_ms, limit}));
  std::vector<ScorePoint> out;
  out.reserve(rows.size());
  for (auto it = rows.rbegin(); it != rows.rend(); ++it) {
    ScorePoint p;
    p.ts_ms = it->Int(0);
    p.has_score = !it->IsNull(1);
    p.score = it->Real(1);
    p.is_alert = it->Int(2) != 0;
    p.severity = it->Str(3);
    p.asset_id = it->Str(4);
    p.model_version = it->Str(5);
    out.push_back(std::move(p));
  }
  return out;
}

Result<std::vector<DeviceAlert>> ConsoleDb::DeviceAlerts(const std::string& device_id,
                                                         int64_t limit) {
  TEND_ASSIGN_OR_RETURN(
      auto rows,
      db_->Query("SELECT COALESCE(msg_id,''), device_id, factory_id, line_id, asset_id, timestamp,"
                 " ts_ms, anomaly_score, severity, top_sensors, model_version, seq, event_id,"
                 " image_ref FROM alerts WHERE device_id=$1 ORDER BY ts_ms DESC LIMIT $2",
                 {device_id, limit}));
  std::vector<DeviceAlert> out;
  for (const auto& r : rows) {
    DeviceAlert d;
    AlertRow& a = d.alert;
    a.msg_id = r.Str(0);
    a.device_id = r.Str(1);
    a.factory_id = r.Str(2);
    a.line_id = r.Str(3);
    a.asset_id = r.Str(4);
    a.timestamp = r.Str(5);
    a.ts_ms = r.Int(6);
    a.has_score = !r.IsNull(7);
    a.anomaly_score = r.Real(7);
    a.severity = r.Str(8);
    a.top_sensors = r.Str(9);
    a.model_version = r.Str(10);
    a.seq = r.Int(11);
    d.event_id = r.Str(12);
    d.image_ref = r.Str(13);
    out.push_back(std::move(d));
  }
  return out;
}

Result<std::vector<OtaEventRow>> ConsoleDb::DeviceOtaEvents(const std::string& device_id,
                                                            int64_t limit) {
  TEND_ASSIGN_OR_RETURN(
      auto rows, db_->Query("SELECT COALESCE(msg_id,''), device_id, factory_id, timestamp, ts_ms,"
                            " event, model, current_version, backup_version, reason FROM"
                            " ota_events WHERE device_id=$1 ORDER BY ts_ms DESC LIMIT $2",
                            {device_id, limit}));
  std::vector<OtaEventRow> out;
  for (const auto& r : rows) {
    out.push_back({r.Str(0), r.Str(1), r.Str(2), r.Str(3), r.Int(4), r.Str(5), r.Str(6), r.Int(7),
                   r.Int(8), r.Str(9)});
  }
  return out;
}

Result<std::vector<HealthSample>> ConsoleDb::DeviceHealth(const std::string& device_id,
                                                          int64_t since_ms, int64_t limit) {
  TEND_ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT ts_ms, payload FROM health WHERE"
                                              " device_id=$1 AND ts_ms >= $2 ORDER BY ts_ms"
                                              " DESC LIMIT $3",
                                              {device_id, since_ms, limit}));
  std::vector<HealthSample> out;
  for (auto it = rows.rbegin(); it != rows.rend(); ++it) out.push_back({it->Int(0), it->Str(1)});
  return out;
}

Result<std::optional<std::string>> ConsoleDb::AlertImageRef(const std::string& device_id,
                                                            const std::string& msg_id) {
  TEND_ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT image_ref FROM alerts WHERE device_id=$1"
                                              " AND msg_id=$2",
                                              {device_id, msg_id}));
  if (rows.empty() || rows[0].Str(0).empty()) return std::optional<std::string>();
  return std::optional<std::string>(rows[0].Str(0));
}

Status ConsoleDb::SetRolloutIntent(const RolloutIntent& i) {
  return db_
      ->Exec(
          "INSERT INTO rollout_intents(name, version, state, actor, ts_ms)"
          " VALUES($1,$2,$3,$4,$5) ON CONFLICT(name, version) DO UPDATE SET"
          " state=excluded.state, actor=excluded.actor, ts_ms=excluded.ts_ms",
          {i.name, i.version, i.state, i.actor, i.ts_ms})
      .map([](int64_t) {});
}

Result<std::vector<RolloutIntent>> ConsoleDb::RolloutIntents() {
  TEND_ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT name, version, state, actor, ts_ms FROM"
                                              " rollout_intents ORDER BY name, version"));
  std::vector<RolloutIntent> out;
  for (const auto& r : rows) out.push_back({r.Str(0), r.Int(1), r.Str(2), r.Str(3), r.Int(4)});
  return out;
}

Status ConsoleDb::PutRolloutStatus(const RolloutStatusRow& r) {
  return db_
      ->Exec(
          "INSERT INTO rollout_status(name, version, plan, state, open_waves, opened, reason,"
          " control_version, updated_ms) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9)"
          " ON CONFLICT(name, version) DO UPDATE SET plan=excluded.plan,"
          " state=excluded.state, open_waves=excluded.open_waves, opened=excluded.opened,"
          " reason=excluded.reason, control_version=excluded.control_version,"
          " updated_ms=excluded.updated_ms",
          {r.name, r.version, r.plan, r.state, r.open_waves, r.opened, r.reason, r.control_version,
           r.updated_ms})
      .map([](int64_t) {});
}

Result<std::vector<RolloutStatusRow>> ConsoleDb::RolloutStatuses() {
  TEND_ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT name, version, plan, state, open_waves,"
                                              " opened, reason, control_version, updated_ms FROM"
                                              " rollout_status ORDER BY name, version DESC"));
  std::vector<RolloutStatusRow> out;
  for (const auto& r : rows) {
    out.push_back(
        {r.Str(0), r.Int(1), r.Str(2), r.Str(3), r.Int(4), r.Str(5), r.Str(6), r.Int(7), r.Int(8)});
  }
  return out;
}

Status ConsoleDb::SetPin(const PinRow& p) {
  return db_
      ->Exec(
          "INSERT INTO device_pins(device_id, name, max_version, actor, ts_ms)"
          " VALUES($1,$2,$3,$4,$5) ON CONFLICT(device_id, name) DO UPDATE SET"
          " max_version=excluded.max_version, actor=excluded.actor, ts_ms=excluded.ts_ms",
          {p.device_id, p.name, p.max_version, p.actor, p.ts_ms})
      .map([](int64_t) {});
}

Result<int64_t> ConsoleDb::ClearPin(const std::string& device_id, const std::string& name) {
  return db_->Exec("DELETE FROM device_pins WHERE device_id=$1 AND name=$2", {device_id, name});
}

Result<std::vector<PinRow>> ConsoleDb::Pins() {
  TEND_ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT device_id, name, max_version, actor, ts_ms"
                                              " FROM device_pins ORDER BY device_id, name"));
  std::vector<PinRow> out;
  for (const auto& r : rows) out.push_back({r.Str(0), r.Str(1), r.Int(2), r.Str(3), r.Int(4)});
  return out;
}

Result<int64_t> ConsoleDb::AddRollbackRequest(const RollbackRequestRow& r) {
  TEND_ASSIGN_OR_RETURN(
      auto rows, db_->Query("INSERT INTO rollback_requests(device_id, name, from_version, reason,"
                            " actor, ts_ms, status, signed_ms) VALUES($1,$2,$3,$4,$5,$6,"
                            "'requested',0) RETURNING id",
                            {r.device_id, r.name, r.from_version, r.reason, r.actor, r.ts_ms}));
  if (rows.empty()) return Fail(Error::Internal("rollback request: no id returned"));
  return rows[0].Int(0);
}

Result<std::vector<RollbackRequestRow>> ConsoleDb::RollbackRequests(bool open_only, int64_t limit) {
  TEND_ASSIGN_OR_RETURN(
      auto rows,
      db_->Query(std::string("SELECT id, device_id, name, from_version, reason, actor, ts_ms,"
                             " status, signed_ms FROM rollback_requests") +
                     (open_only ? " WHERE status IN ('requested','signed')" : "") +
                     " ORDER BY id DESC LIMIT $1",
                 {limit}));
  std::vector<RollbackRequestRow> out;
  for (const auto& r : rows) {
    out.push_back(
        {r.Int(0), r.Str(1), r.Str(2), r.Int(3), r.Str(4), r.Str(5), r.Int(6), r.Str(7), r.Int(8)});
  }
  return out;
}

Status ConsoleDb::SetRollbackStatus(int64_t id, const std::string& status, int64_t signed_ms) {
  return db_
      ->Exec("UPDATE rollback_requests SET status=$1, signed_ms=$2 WHERE id=$3",
             {status, signed_ms, id})
      .map([](int64_t) {});
}

Status ConsoleDb::SetTags(const std::string& device_id, const std::vector<std::string>& add,
                          const std::vector<std::string>& remove) {
  return db_->Transaction([&]() -> Status {
    for (const auto& t : add) {
      TEND_RETURN_NOT_OK(
          db_->Exec("INSERT INTO device_tags(device_id, tag) VALUES($1,$2)"
                    " ON CONFLICT DO NOTHING",
                    {device_id, t}));
    }
    for (const auto& t : remove) {
      TEND_RETURN_NOT_OK(
          db_->Exec("DELETE FROM device_tags WHERE device_id=$1 AND tag=$2", {device_id, t}));
    }
    return Ok();
  });
}

Result<bool> ConsoleDb::DeviceExists(const std::string& device_id) {
  TEND_ASSIGN_OR_RETURN(auto rows,
                        db_->Query("SELECT 1 FROM devices WHERE device_id=$1", {device_id}));
  return !rows.empty();
}

}  // namespace tend::fleet
