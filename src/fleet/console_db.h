// What the fleet console and the rollout controller read from and write to the fleet database:
// access tokens and sessions (hashed), the audit log, operator intents (rollout start/pause/abort,
// pins, rollback requests, tags) and the controller's signed rollout states, plus the per-device
// views of what ingest stored. One SqlDb connection; callers serialise access.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "fleet/sql.h"
#include "fleet/store.h"

namespace tend::fleet {

struct TokenRow {
  std::string hash, name, role;
  int64_t created_ms = 0, expires_ms = 0;
  bool revoked = false;
};

struct SessionRow {
  std::string hash, token_hash, name, role, csrf;
  int64_t created_ms = 0, expires_ms = 0;
};

struct AuditRow {
  int64_t id = 0, ts_ms = 0;
  std::string actor, role, action, target, detail, result;
};

// One device as the console's list shows it.
struct DeviceSummary {
  DeviceRow device;  // status, last seen, model version, OTA state
  int64_t alerts_1h = 0, alerts_24h = 0;
  std::string health;  // the latest health payload (JSON text), "" when none
  int64_t health_ts_ms = 0;
  std::vector<std::string> lines, assets, tags;
  std::vector<std::pair<std::string, int64_t>> pins;  // model name -> max version
  std::vector<int64_t> rejected_versions;             // from the latest OTA state
};

struct ScorePoint {
  int64_t ts_ms = 0;
  double score = 0;
  bool has_score = false, is_alert = false;
  std::string severity, asset_id, model_version;
};

struct DeviceAlert {
  AlertRow alert;
  std::string event_id, image_ref;
};

struct HealthSample {
  int64_t ts_ms = 0;
  std::string payload;
};

struct RolloutIntent {
  std::string name;
  int64_t version = 0;
  std::string state;  // running | paused | aborted
  std::string actor;
  int64_t ts_ms = 0;
};

struct RolloutStatusRow {
  std::string name;
  int64_t version = 0;
  std::string plan;  // RolloutPlan JSON
  std::string state;
  int64_t open_waves = 0;
  std::string opened;  // JSON array of ISO times
  std::string reason;
  int64_t control_version = 0, updated_ms = 0;
};

struct PinRow {
  std::string device_id, name;
  int64_t max_version = 0;
  std::string actor;
  int64_t ts_ms = 0;
};

struct RollbackRequestRow {
  int64_t id = 0;
  std::string device_id, name;
  int64_t from_version = 0;
  std::string reason, actor;
  int64_t ts_ms = 0;
  std::string status;  // requested | signed | done | failed | expired
  int64_t signed_ms = 0;
};

class ConsoleDb {
 public:
  // Opens the fleet store first (it creates or migrates every table), then a connection for
  // the console's own statements.
  static Result<std::unique_ptr<ConsoleDb>> Open(const std::string& url);
  SqlDb& sql() { return *db_; }

  // Tokens are stored as hashes only (see console_auth.h).
  Status AddToken(const TokenRow& t);
  Result<std::optional<TokenRow>> FindToken(const std::string& hash);
  Result<std::vector<TokenRow>> Tokens();
  Result<int64_t> RevokeToken(const std::string& name);  // rows changed
  Status AddSession(const SessionRow& s);
  Result<std::optional<SessionRow>> FindSession(const std::string& hash);
  Status DeleteSession(const std::string& hash);
  Status DeleteExpiredSessions(int64_t now_ms);

  Status Audit(const AuditRow& a);
  Result<std::vector<AuditRow>> AuditLog(int64_t offset, int64_t limit, int64_t* total);

  // Every device with its alert counts over [now-1h, now] and [now-24h, now]. The day's counts
  // are the costly part (a day of alerts is scanned): a caller refreshing often passes counts it
  // took with AlertCountsSince a little earlier (24 h figures then never show less than the hour).
  Result<std::vector<DeviceSummary>> DeviceSummaries(
      int64_t now_ms, const std::map<std::string, int64_t>* day_counts = nullptr);
  Result<std::map<std::string, int64_t>> AlertCountsSince(int64_t since_ms);
  Result<std::vector<ScorePoint>> Scores(const std::string& device_id, int64_t since_ms,
                                         int64_t limit);
  Result<std::vector<DeviceAlert>> DeviceAlerts(const std::string& device_id, int64_t limit);
  Result<std::vector<OtaEventRow>> DeviceOtaEvents(const std::string& device_id, int64_t limit);
  Result<std::vector<HealthSample>> DeviceHealth(const std::string& device_id, int64_t since_ms,
                                                 int64_t limit);
  Result<std::optional<std::string>> AlertImageRef(const std::string& device_id,
                                                   const std::string& msg_id);

  Status SetRolloutIntent(const RolloutIntent& i);
  Result<std::vector<RolloutIntent>> RolloutIntents();
  Status PutRolloutStatus(const RolloutStatusRow& r);
  Result<std::vector<RolloutStatusRow>> RolloutStatuses();

  Status SetPin(const PinRow& p);
  Result<int64_t> ClearPin(const std::string& device_id, const std::string& name);
  Result<std::vector<PinRow>> Pins();
  Result<int64_t> AddRollbackRequest(const RollbackRequestRow& r);  // returns the id
  Result<std::vector<RollbackRequestRow>> RollbackRequests(bool open_only, int64_t limit);
  Status SetRollbackStatus(int64_t id, const std::string& status, int64_t signed_ms);

  Status SetTags(const std::string& device_id, const std::vector<std::string>& add,
                 const std::vector<std::string>& remove);
  Result<bool> DeviceExists(const std::string& device_id);

 private:
  explicit ConsoleDb(std::unique_ptr<SqlDb> db) : db_(std::move(db)) {}
  std::unique_ptr<SqlDb> db_;
};

}  // namespace tend::fleet
