// The HTTP half of the console: cpp-httplib stays inside this file.
#include "fleet/console_server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/fs.h"
#include "core/log.h"
#include "fleet/console_api.h"
#include "fleet/console_auth.h"
#include "fleet/console_db.h"
#include "ota/metadata.h"

namespace tend::fleet {
namespace {

using httplib::Request;
using httplib::Response;
using nlohmann::json;

constexpr const char* kCookie = "tend_session";
constexpr const char* kSecurityPolicy =
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

int HttpStatusOf(const Error& e) {
  switch (e.code) {
    case ErrorCode::kInvalidArgument:
      return 400;
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kUnsupported:
      return 409;  // the action does not apply in this state (e.g. resuming an aborted rollout)
    default:
      return 500;
  }
}

std::string CookieValue(const Request& req, const std::string& name) {
  const std::string header = req.get_header_value("Cookie");
  size_t pos = 0;
  while (pos < header.size()) {
    size_t end = header.find(';', pos);
    if (end == std::string::npos) end = header.size();
    std::string part = header.substr(pos, end - pos);
    while (!part.empty() && part.front() == ' ') part.erase(0, 1);
    if (part.rfind(name + "=", 0) == 0) return part.substr(name.size() + 1);
    pos = end + 1;
  }
  return "";
}

std::string BearerToken(const Request& req) {
  const std::string h = req.get_header_value("Authorization");
  return h.rfind("Bearer ", 0) == 0 ? h.substr(7) : std::string();
}

std::multimap<std::string, std::string> Params(const Request& req) {
  return {req.params.begin(), req.params.end()};
}

Result<int64_t> NumberParam(const Request& req, const char* key, int64_t def, int64_t lo,
                            int64_t hi) {
  if (!req.has_param(key)) return def;
  const std::string v = req.get_param_value(key);
  if (v.empty() || v.size() > 9 || v.find_first_not_of("0123456789") != std::string::npos) {
    return Fail(Error::Invalid(std::string("parameter ") + key + " must be a number"));
  }
  const int64_t n = std::stoll(v);
  if (n < lo || n > hi) {
    return Fail(Error::Invalid(std::string("parameter ") + key + " must be between " +
                               std::to_string(lo) + " and " + std::to_string(hi)));
  }
  return n;
}

}  // namespace

class ConsoleServer::Impl {
 public:
  explicit Impl(ConsoleOptions o) : opt_(std::move(o)) {}
  ~Impl() { Stop(); }
  Status Start();
  void Stop() {
    {
      std::lock_guard lock(snap_mu_);
      refresh_stop_ = true;
    }
    refresh_cv_.notify_all();
    if (refresher_.joinable()) refresher_.join();
    if (server_) server_->stop();
    if (thread_.joinable()) thread_.join();
  }
  void Wait() {
    if (thread_.joinable()) thread_.join();
  }
  int port() const { return port_; }
  bool tls() const { return !opt_.cert_file.empty(); }

 private:
  using Getter = std::function<Result<json>(const Request&, const Principal&)>;
  // Returns the response; `target` names what was acted on, for the audit log.
  using Actor =
      std::function<Result<json>(const Request&, const Principal&, const json&, std::string*)>;

  int64_t NowMs() const {
    if (opt_.clock_ms) return opt_.clock_ms();
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  static void Reply(Response& res, int status, const json& body) {
    res.status = status;
    res.set_header("Cache-Control", "no-store");
    // Ids and messages can carry bytes that are not UTF-8 (device ids come from MQTT topics).
    res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
  }
  Result<std::optional<Principal>> Authenticate(const Request& req);
  void AuditLocked(const Principal& who, const std::string& action, const std::string& target,
                   const json& detail, const std::string& result);
  void Get(const std::string& pattern, Getter g);
  void Action(const std::string& pattern, const std::string& name, Actor a);
  // The fleet snapshot the device list is served from: refreshed by its own thread (and
  // connection) every snapshot_max_age_s, so no request waits for it; computed per request when
  // that is 0. A device missing from it is looked up afresh (`snap` is replaced).
  Result<std::shared_ptr<const FleetSnapshot>> SnapshotLocked();
  Result<const DeviceView*> DeviceLocked(std::shared_ptr<const FleetSnapshot>& snap,
                                         const std::string& id);
  // day_counts: the refresher's cached 24 h alert counts (null: counted now).
  Result<std::shared_ptr<const FleetSnapshot>> ComputeSnapshot(
      ConsoleDb& db, const std::map<std::string, int64_t>* day_counts = nullptr);
  void Invalidate();  // after an action: refresh now
  void RefreshLoop();

  void StaticRoutes();
  void SessionRoutes();
  void AuditRoute();
  void DeviceRoutes();
  void DeviceDataRoutes();
  void DeviceHistoryRoutes();
  void EvidenceRoute();
  void DeviceActions();
  void GroupActions();
  void RolloutRoutes();

  ConsoleOptions opt_;
  std::unique_ptr<httplib::Server> server_;
  std::unique_ptr<ConsoleDb> db_;
  std::mutex db_mu_;                       // one connection: every statement under this lock
  std::unique_ptr<ConsoleDb> refresh_db_;  // the refresher's own connection
  std::mutex snap_mu_;
  std::condition_variable refresh_cv_;
  bool refresh_now_ = false, refresh_stop_ = false;
  std::shared_ptr<const FleetSnapshot> snap_;  // guarded by snap_mu_
  std::thread refresher_;
  std::thread thread_;
  std::atomic<bool> listen_done_{false};
  int port_ = 0;
};

Result<std::optional<Principal>> ConsoleServer::Impl::Authenticate(const Request& req) {
  const int64_t now = NowMs();
  const std::string bearer = BearerToken(req);
  if (!bearer.empty()) return PrincipalFromToken(*db_, bearer, now);
  const std::string sid = CookieValue(req, kCookie);
  if (!sid.empty()) return PrincipalFromSession(*db_, sid, now);
  return std::optional<Principal>();
}

void ConsoleServer::Impl::AuditLocked(const Principal& who, const std::string& action,
                                      const std::string& target, const json& detail,
                                      const std::string& result) {
  AuditRow a{0,
             NowMs(),
             who.name.empty() ? "anonymous" : who.name,
             RoleName(who.role),
             action,
             target,
             detail.dump(-1, ' ', false, json::error_handler_t::replace),
             result};
  Status st = db_->Audit(a);
  if (!st) TEND_LOG_ERROR("console: audit log: {}", st.error().message);
}

void ConsoleServer::Impl::Get(const std::string& pattern, Getter g) {
  server_->Get(pattern, [this, g](const Request& req, Response& res) {
    std::lock_guard lock(db_mu_);
    auto who = Authenticate(req);
    if (!who) return Reply(res, 500, {{"error", who.error().message}});
    if (!*who) return Reply(res, 401, {{"error", "authentication required"}});
    auto out = g(req, **who);
    if (!out) return Reply(res, HttpStatusOf(out.error()), {{"error", out.error().message}});
    Reply(res, 200, *out);
  });
}

void ConsoleServer::Impl::Action(const std::string& pattern, const std::string& name, Actor a) {
  server_->Post(pattern, [this, name, a](const Request& req, Response& res) {
    std::lock_guard lock(db_mu_);
    auto who = Authenticate(req);
    if (!who) return Reply(res, 500, {{"error", who.error().message}});
    if (!*who) return Reply(res, 401, {{"error", "authentication required"}});
    const Principal& p = **who;
    json detail = {{"path", req.path}};
    if (p.role < Role::kOperator) {
      AuditLocked(p, name, req.path, detail, "forbidden: needs the operator role");
      return Reply(res, 403, {{"error", "this action needs the operator role"}});
    }
    if (p.via_session && !SecretsEqual(req.get_header_value("X-CSRF-Token"), p.csrf)) {
      AuditLocked(p, name, req.path, detail, "forbidden: CSRF token missing or wrong");
      return Reply(res, 403, {{"error", "CSRF token missing or wrong"}});
    }
    auto body = ParseBody(req.body);
    std::string target = req.path;
    Result<json> out = body ? a(req, p, *body, &target) : Result<json>(Fail(body.error()));
    if (body) detail["body"] = *body;
    if (!out) {
      AuditLocked(p, name, target, detail, "error: " + out.error().message);
      return Reply(res, HttpStatusOf(out.error()), {{"error", out.error().message}});
    }
    AuditLocked(p, name, target, detail, "ok");
    Reply(res, 200, *out);
  });
}

Result<std::shared_ptr<const FleetSnapshot>> ConsoleServer::Impl::ComputeSnapshot(
    ConsoleDb& db, const std::map<std::string, int64_t>* day_counts) {
  const int64_t now = NowMs();
  TEND_ASSIGN_OR_RETURN(auto devices, db.DeviceSummaries(now, day_counts));
  return MakeSnapshot(std::move(devices), now);
}

Result<std::shared_ptr<const FleetSnapshot>> ConsoleServer::Impl::SnapshotLocked() {
  if (opt_.snapshot_max_age_s <= 0) return ComputeSnapshot(*db_);
  std::lock_guard lock(snap_mu_);
  return snap_;
}

void ConsoleServer::Impl::Invalidate() {
  {
    std::lock_guard lock(snap_mu_);
    refresh_now_ = true;
  }
  refresh_cv_.notify_all();
}

// The day's alert counts scan a day of alerts: they are taken once a minute, the rest of the
// snapshot every snapshot_max_age_s.
void ConsoleServer::Impl::RefreshLoop() {
  const auto period = std::chrono::duration<double>(opt_.snapshot_max_age_s);
  std::map<std::string, int64_t> day;
  int64_t day_taken_ms = 0;
  std::unique_lock lock(snap_mu_);
  while (!refresh_stop_) {
    refresh_cv_.wait_for(lock, period, [this] { return refresh_stop_ || refresh_now_; });
    if (refresh_stop_) return;
    refresh_now_ = false;
    lock.unlock();
    if (NowMs() - day_taken_ms >= 60 * 1000) {
      auto counts = refresh_db_->AlertCountsSince(NowMs() - 86400 * 1000);
      if (counts) {
        day = std::move(*counts);
        day_taken_ms = NowMs();
      }
    }
    auto fresh = ComputeSnapshot(*refresh_db_, day_taken_ms ? &day : nullptr);
    if (!fresh) TEND_LOG_WARN("console: device list refresh: {}", fresh.error().message);
    lock.lock();
    if (fresh) snap_ = std::move(*fresh);
  }
}

Result<const DeviceView*> ConsoleServer::Impl::DeviceLocked(
    std::shared_ptr<const FleetSnapshot>& snap, const std::string& id) {
  TEND_RETURN_NOT_OK(CheckIdentifier(id, "device id"));
  const DeviceView* d = snap->Find(id);
  if (!d) {
    // A device that appeared since the snapshot: look again once (on this connection).
    TEND_ASSIGN_OR_RETURN(snap, ComputeSnapshot(*db_));
    d = snap->Find(id);
    if (d && opt_.snapshot_max_age_s > 0) {
      std::lock_guard lock(snap_mu_);
      snap_ = snap;
    }
  }
  if (!d) return Fail(Error::NotFound("no device \"" + id + "\""));
  return d;
}

void ConsoleServer::Impl::StaticRoutes() {
  auto serve = [](const std::string& path) {
    return [path](const Request&, Response& res) {
      const ConsoleAsset* a = FindConsoleAsset(path);
      if (!a) {
        res.status = 404;
        return;
      }
      res.set_header("Cache-Control", "no-cache");
      res.set_content(reinterpret_cast<const char*>(a->data), a->size, a->content_type);
    };
  };
  for (const char* p : {"/", "/app.js", "/style.css", "/favicon.svg"}) server_->Get(p, serve(p));
  server_->Get("/index.html", serve("/"));
}

void ConsoleServer::Impl::SessionRoutes() {
  server_->Post("/api/login", [this](const Request& req, Response& res) {
    std::lock_guard lock(db_mu_);
    auto body = ParseBody(req.body);
    if (!body) return Reply(res, 400, {{"error", body.error().message}});
    auto token = OptionalText(*body, "token", 256);
    std::string t = token ? *token : "";
    if (t.empty()) t = BearerToken(req);
    auto s = OpenSession(*db_, t, opt_.session_ttl_s, NowMs());
    if (!s) return Reply(res, 500, {{"error", s.error().message}});
    if (!*s) {
      AuditLocked(Principal{}, "login", "/api/login", json::object(), "refused: unknown token");
      return Reply(res, 401, {{"error", "unknown, revoked or expired token"}});
    }
    std::string cookie = std::string(kCookie) + "=" + (*s)->id +
                         "; Path=/; HttpOnly; SameSite=Strict; Max-Age=" +
                         std::to_string(((*s)->expires_ms - NowMs()) / 1000);
    if (tls()) cookie += "; Secure";
    res.set_header("Set-Cookie", cookie);
    AuditLocked((*s)->who, "login", "/api/login", json::object(), "ok");
    Reply(res, 200,
          {{"name", (*s)->who.name},
           {"role", RoleName((*s)->who.role)},
           {"csrf", (*s)->csrf},
           {"expires_ms", (*s)->expires_ms}});
  });
  // Logging out needs no operator role (viewers end their sessions too), but a session needs
  // its CSRF token: another site must not be able to log an operator out.
  server_->Post("/api/logout", [this](const Request& req, Response& res) {
    std::lock_guard lock(db_mu_);
    auto who = Authenticate(req);
    if (!who || !*who) return Reply(res, 401, {{"error", "authentication required"}});
    const Principal& p = **who;
    if (p.via_session && !SecretsEqual(req.get_header_value("X-CSRF-Token"), p.csrf)) {
      AuditLocked(p, "logout", "/api/logout", json::object(),
                  "forbidden: CSRF token missing or wrong");
      return Reply(res, 403, {{"error", "CSRF token missing or wrong"}});
    }
    if (p.via_session) (void)db_->DeleteSession(p.session_hash);
    AuditLocked(p, "logout", "/api/logout", json::object(), "ok");
    res.set_header("Set-Cookie", std::string(kCookie) + "=; Path=/; Max-Age=0");
    Reply(res, 200, {{"ok", true}});
  });
  Get("/api/me", [](const Request&, const Principal& p) -> Result<json> {
    json j = {{"name", p.name}, {"role", RoleName(p.role)}, {"session", p.via_session}};
    if (p.via_session) j["csrf"] = p.csrf;  // same-origin readers only (no CORS)
    return j;
  });
}

void ConsoleServer::Impl::AuditRoute() {
  Get("/api/audit", [this](const Request& req, const Principal&) -> Result<json> {
    TEND_ASSIGN_OR_RETURN(int64_t offset, NumberParam(req, "offset", 0, 0, 100000000));
    TEND_ASSIGN_OR_RETURN(int64_t limit, NumberParam(req, "limit", 100, 1, 1000));
    int64_t total = 0;
    TEND_ASSIGN_OR_RETURN(auto rows, db_->AuditLog(offset, limit, &total));
    json out = json::array();
    for (const auto& a : rows) {
      out.push_back({{"id", a.id},
                     {"ts_ms", a.ts_ms},
                     {"actor", a.actor},
                     {"role", a.role},
                     {"action", a.action},
                     {"target", a.target},
                     {"detail", json::parse(a.detail, nullptr, false)},
                     {"result", a.result}});
    }
    return json{{"total", total}, {"offset", offset}, {"limit", limit}, {"entries", out}};
  });
}

void ConsoleServer::Impl::DeviceRoutes() {
  Get("/api/devices", [this](const Request& req, const Principal&) -> Result<json> {
    TEND_ASSIGN_OR_RETURN(DeviceQuery q, ParseDeviceQuery(Params(req)));
    TEND_ASSIGN_OR_RETURN(auto snap, SnapshotLocked());
    return ListDevices(*snap, q);
  });
  Get(R"(/api/devices/([^/]+))", [this](const Request& req, const Principal&) -> Result<json> {
    TEND_ASSIGN_OR_RETURN(auto snap, SnapshotLocked());
    TEND_ASSIGN_OR_RETURN(const DeviceView* d, DeviceLocked(snap, req.matches[1]));
    TEND_ASSIGN_OR_RETURN(auto statuses, db_->RolloutStatuses());
    TEND_ASSIGN_OR_RETURN(auto requests, db_->RollbackRequests(false, 1000));
    json j = d->json;
    j["health"] = d->health;
    j["thresholds"] = d->thresholds;
    j["rollouts"] = DeviceRolloutsJson(*d, statuses);
    json rb = json::array();
    for (const auto& r : requests) {
      if (r.device_id != d->summary.device.device_id) continue;
      rb.push_back({{"id", r.id},
                    {"name", r.name},
                    {"from_version", r.from_version},
                    {"reason", r.reason},
                    {"actor", r.actor},
                    {"ts_ms", r.ts_ms},
                    {"status", r.status}});
    }
    j["rollback_requests"] = rb;
    return j;
  });
}

// A device's scores and alerts.
void ConsoleServer::Impl::DeviceDataRoutes() {
  Get(R"(/api/devices/([^/]+)/scores)",
      [this](const Request& req, const Principal&) -> Result<json> {
        TEND_RETURN_NOT_OK(CheckIdentifier(req.matches[1], "device id"));
        TEND_ASSIGN_OR_RETURN(int64_t minutes, NumberParam(req, "minutes", 360, 1, 7 * 24 * 60));
        TEND_ASSIGN_OR_RETURN(int64_t limit, NumberParam(req, "limit", 2000, 1, 20000));
        TEND_ASSIGN_OR_RETURN(auto pts,
                              db_->Scores(req.matches[1], NowMs() - minutes * 60000, limit));
        json out = json::array();
        for (const auto& p : pts) {
          out.push_back({{"t", p.ts_ms},
                         {"score", p.has_score ? json(p.score) : json(nullptr)},
                         {"alert", p.is_alert},
                         {"severity", p.severity},
                         {"asset", p.asset_id},
                         {"model_version", p.model_version}});
        }
        return json{{"device_id", req.matches[1].str()}, {"points", out}};
      });
  Get(R"(/api/devices/([^/]+)/alerts)",
      [this](const Request& req, const Principal&) -> Result<json> {
        TEND_RETURN_NOT_OK(CheckIdentifier(req.matches[1], "device id"));
        TEND_ASSIGN_OR_RETURN(int64_t limit, NumberParam(req, "limit", 100, 1, 1000));
        TEND_ASSIGN_OR_RETURN(auto rows, db_->DeviceAlerts(req.matches[1], limit));
        json out = json::array();
        for (const auto& r : rows) {
          const AlertRow& a = r.alert;
          out.push_back({{"msg_id", a.msg_id},
                         {"timestamp", a.timestamp},
                         {"t", a.ts_ms},
                         {"line_id", a.line_id},
                         {"asset_id", a.asset_id},
                         {"score", a.has_score ? json(a.anomaly_score) : json(nullptr)},
                         {"severity", a.severity},
                         {"top_sensors", json::parse(a.top_sensors, nullptr, false)},
                         {"model_version", a.model_version},
                         {"event_id", r.event_id},
                         {"image_ref", r.image_ref},
                         {"evidence", !r.image_ref.empty() && !opt_.evidence_dir.empty()}});
        }
        return json{{"device_id", req.matches[1].str()}, {"alerts", out}};
      });
}

// A device's OTA history and health samples.
void ConsoleServer::Impl::DeviceHistoryRoutes() {
  Get(R"(/api/devices/([^/]+)/ota)", [this](const Request& req, const Principal&) -> Result<json> {
    TEND_RETURN_NOT_OK(CheckIdentifier(req.matches[1], "device id"));
    TEND_ASSIGN_OR_RETURN(int64_t limit, NumberParam(req, "limit", 100, 1, 1000));
    TEND_ASSIGN_OR_RETURN(auto rows, db_->DeviceOtaEvents(req.matches[1], limit));
    json out = json::array();
    for (const auto& e : rows) {
      out.push_back({{"timestamp", e.timestamp},
                     {"event", e.event},
                     {"model", e.model},
                     {"current_version", e.current_version},
                     {"backup_version", e.backup_version},
                     {"reason", e.reason}});
    }
    return json{{"device_id", req.matches[1].str()}, {"events", out}};
  });
  Get(R"(/api/devices/([^/]+)/health)",
      [this](const Request& req, const Principal&) -> Result<json> {
        TEND_RETURN_NOT_OK(CheckIdentifier(req.matches[1], "device id"));
        TEND_ASSIGN_OR_RETURN(int64_t minutes, NumberParam(req, "minutes", 360, 1, 7 * 24 * 60));
        TEND_ASSIGN_OR_RETURN(auto rows,
                              db_->DeviceHealth(req.matches[1], NowMs() - minutes * 60000, 2000));
        json out = json::array();
        for (const auto& h : rows) {
          json p = json::parse(h.payload, nullptr, false);
          if (!p.is_object()) continue;
          out.push_back({{"t", h.ts_ms},
                         {"cpu_pct", p.value("cpu_pct", json(nullptr))},
                         {"temp_c", p.value("temp_c", json(nullptr))},
                         {"spool_depth", p.value("spool_depth", json(nullptr))},
                         {"type", p.value("type", std::string("health"))}});
        }
        return json{{"device_id", req.matches[1].str()}, {"samples", out}};
      });
}

// Evidence images of vision alerts, mirrored into --evidence-dir/<device>/<file>.
void ConsoleServer::Impl::EvidenceRoute() {
  server_->Get(
      R"(/api/devices/([^/]+)/alerts/([^/]+)/evidence)", [this](const Request& req, Response& res) {
        std::lock_guard lock(db_mu_);
        auto who = Authenticate(req);
        if (!who || !*who) return Reply(res, 401, {{"error", "authentication required"}});
        const std::string device = req.matches[1], msg = req.matches[2];
        if (opt_.evidence_dir.empty() || !CheckIdentifier(device, "device") ||
            !CheckIdentifier(msg, "message id")) {
          return Reply(res, 404, {{"error", "no evidence"}});
        }
        auto ref = db_->AlertImageRef(device, msg);
        if (!ref || !*ref) return Reply(res, 404, {{"error", "no evidence for this alert"}});
        const std::string file = std::filesystem::path(**ref).filename().string();
        if (!ota::CheckName(file, "evidence file") || !ota::CheckName(device, "device")) {
          return Reply(res, 404, {{"error", "no evidence"}});
        }
        auto bytes =
            fs::ReadBinaryFile((std::filesystem::path(opt_.evidence_dir) / device / file).string());
        if (!bytes) return Reply(res, 404, {{"error", "evidence image not mirrored here"}});
        const bool png = file.ends_with(".png");
        res.set_header("Cache-Control", "private, max-age=3600");
        res.set_content(reinterpret_cast<const char*>(bytes->data()), bytes->size(),
                        png ? "image/png" : "image/jpeg");
      });
}

void ConsoleServer::Impl::DeviceActions() {
  Action(R"(/api/devices/([^/]+)/rollback)", "rollback",
         [this](const Request& req, const Principal& p, const json& body,
                std::string* target) -> Result<json> {
           TEND_ASSIGN_OR_RETURN(auto snap, SnapshotLocked());
           TEND_ASSIGN_OR_RETURN(const DeviceView* d, DeviceLocked(snap, req.matches[1]));
           *target = d->summary.device.device_id;
           if (!d->summary.device.has_ota) {
             return Fail(Error::Unsupported(*target + " has reported no OTA state"));
           }
           TEND_ASSIGN_OR_RETURN(std::string reason, OptionalText(body, "reason", 256));
           const OtaFields& o = d->summary.device.ota.ota;
           RollbackRequestRow r{0,
                                *target,
                                o.model,
                                o.current_version,
                                reason.empty() ? "rollback from the fleet console" : reason,
                                p.name,
                                NowMs(),
                                "requested",
                                0};
           TEND_ASSIGN_OR_RETURN(r.id, db_->AddRollbackRequest(r));
           return json{{"request_id", r.id},
                       {"device_id", r.device_id},
                       {"name", r.name},
                       {"from_version", r.from_version},
                       {"status", "requested"},
                       {"note",
                        "the controller signs it into control.json on its next tick; "
                        "the device rolls back on its next control poll"}};
         });
  Action(R"(/api/devices/([^/]+)/pin)", "pin",
         [this](const Request& req, const Principal& p, const json& body,
                std::string* target) -> Result<json> {
           TEND_ASSIGN_OR_RETURN(auto snap, SnapshotLocked());
           TEND_ASSIGN_OR_RETURN(const DeviceView* d, DeviceLocked(snap, req.matches[1]));
           *target = d->summary.device.device_id;
           TEND_ASSIGN_OR_RETURN(int64_t max, RequiredInt(body, "max_version", 0, INT64_MAX));
           TEND_ASSIGN_OR_RETURN(std::string name, OptionalText(body, "name", 128));
           if (name.empty() && d->summary.device.has_ota) name = d->summary.device.ota.ota.model;
           TEND_RETURN_NOT_OK(ota::CheckName(name, "model name"));
           TEND_RETURN_NOT_OK(db_->SetPin({*target, name, max, p.name, NowMs()}));
           Invalidate();
           return json{{"device_id", *target}, {"name", name}, {"max_version", max}};
         });
  Action(R"(/api/devices/([^/]+)/unpin)", "unpin",
         [this](const Request& req, const Principal&, const json& body,
                std::string* target) -> Result<json> {
           TEND_ASSIGN_OR_RETURN(auto snap, SnapshotLocked());
           TEND_ASSIGN_OR_RETURN(const DeviceView* d, DeviceLocked(snap, req.matches[1]));
           *target = d->summary.device.device_id;
           TEND_ASSIGN_OR_RETURN(std::string name, OptionalText(body, "name", 128));
           if (name.empty() && d->summary.device.has_ota) name = d->summary.device.ota.ota.model;
           TEND_ASSIGN_OR_RETURN(int64_t n, db_->ClearPin(*target, name));
           if (n == 0) return Fail(Error::NotFound(*target + " is not pinned for " + name));
           Invalidate();
           return json{{"device_id", *target}, {"name", name}, {"pinned", false}};
         });
}

// Tags, and pins for a group of devices.
void ConsoleServer::Impl::GroupActions() {
  Action(R"(/api/devices/([^/]+)/tags)", "tags",
         [this](const Request& req, const Principal&, const json& body,
                std::string* target) -> Result<json> {
           TEND_ASSIGN_OR_RETURN(auto snap, SnapshotLocked());
           TEND_ASSIGN_OR_RETURN(const DeviceView* d, DeviceLocked(snap, req.matches[1]));
           *target = d->summary.device.device_id;
           TEND_ASSIGN_OR_RETURN(auto add, OptionalTags(body, "add"));
           TEND_ASSIGN_OR_RETURN(auto remove, OptionalTags(body, "remove"));
           TEND_RETURN_NOT_OK(db_->SetTags(*target, add, remove));
           Invalidate();
           return json{{"device_id", *target}, {"added", add}, {"removed", remove}};
         });
  // A group: every device the list filter matches now (devices joining later are not pinned).
  Action("/api/pins", "pin-group",
         [this](const Request&, const Principal& p, const json& body,
                std::string* target) -> Result<json> {
           std::multimap<std::string, std::string> filter;
           for (const char* k : {"q", "factory", "line", "asset", "tag", "status", "ota"}) {
             TEND_ASSIGN_OR_RETURN(std::string v, OptionalText(body, k, 128));
             if (!v.empty()) filter.emplace(k, v);
           }
           if (filter.empty()) return Fail(Error::Invalid("a group pin needs a filter"));
           TEND_ASSIGN_OR_RETURN(DeviceQuery q, ParseDeviceQuery(filter));
           TEND_ASSIGN_OR_RETURN(std::string name, OptionalText(body, "name", 128));
           TEND_RETURN_NOT_OK(ota::CheckName(name, "model name"));
           const bool unpin = body.contains("max_version") && body["max_version"].is_null();
           int64_t max = -1;
           if (!unpin) {
             TEND_ASSIGN_OR_RETURN(max, RequiredInt(body, "max_version", 0, INT64_MAX));
           }
           TEND_ASSIGN_OR_RETURN(auto snap, SnapshotLocked());
           json ids = json::array();
           TEND_RETURN_NOT_OK(db_->sql().Transaction([&]() -> Status {
             for (const auto& d : snap->devices) {
               if (!Matches(d, q)) continue;
               const std::string& id = d.summary.device.device_id;
               if (unpin) {
                 TEND_RETURN_NOT_OK(db_->ClearPin(id, name));
               } else {
                 TEND_RETURN_NOT_OK(db_->SetPin({id, name, max, p.name, NowMs()}));
               }
               ids.push_back(id);
             }
             return Ok();
           }));
           *target = "group " + json(body).dump();
           Invalidate();
           return json{{"devices", ids},
                       {"name", name},
                       {"max_version", unpin ? json(nullptr) : json(max)}};
         });
}

void ConsoleServer::Impl::RolloutRoutes() {
  Get("/api/rollouts", [this](const Request&, const Principal&) -> Result<json> {
    TEND_ASSIGN_OR_RETURN(auto statuses, db_->RolloutStatuses());
    TEND_ASSIGN_OR_RETURN(auto intents, db_->RolloutIntents());
    TEND_ASSIGN_OR_RETURN(auto snap, SnapshotLocked());
    return RolloutsJson(statuses, intents, *snap);
  });
  Get("/api/rollbacks", [this](const Request&, const Principal&) -> Result<json> {
    TEND_ASSIGN_OR_RETURN(auto rows, db_->RollbackRequests(false, 500));
    json out = json::array();
    for (const auto& r : rows) {
      out.push_back({{"id", r.id},
                     {"device_id", r.device_id},
                     {"name", r.name},
                     {"from_version", r.from_version},
                     {"reason", r.reason},
                     {"actor", r.actor},
                     {"ts_ms", r.ts_ms},
                     {"status", r.status},
                     {"signed_ms", r.signed_ms}});
    }
    return json{{"requests", out}};
  });
  Action(
      R"(/api/rollouts/([^/]+)/([0-9]{1,18})/(start|pause|resume|abort))", "rollout",
      [this](const Request& req, const Principal& p, const json&,
             std::string* target) -> Result<json> {
        const std::string name = req.matches[1], action = req.matches[3];
        const int64_t version = std::stoll(req.matches[2]);
        TEND_RETURN_NOT_OK(ota::CheckName(name, "model name"));
        *target = name + " v" + std::to_string(version) + " " + action;
        TEND_ASSIGN_OR_RETURN(auto statuses, db_->RolloutStatuses());
        const RolloutStatusRow* st = nullptr;
        for (const auto& s : statuses) {
          if (s.name == name && s.version == version) st = &s;
        }
        if (!st) {
          return Fail(Error::NotFound("no staged rollout of " + name + " v" +
                                      std::to_string(version) + " (is the controller running?)"));
        }
        if (st->state == "aborted" && action != "abort") {
          return Fail(Error::Unsupported(name + " v" + std::to_string(version) +
                                         " was aborted; publish a new release"));
        }
        const std::string state = action == "pause"   ? "paused"
                                  : action == "abort" ? "aborted"
                                                      : "running";
        TEND_RETURN_NOT_OK(db_->SetRolloutIntent({name, version, state, p.name, NowMs()}));
        return json{{"name", name},
                    {"version", version},
                    {"intent", state},
                    {"note", "the controller applies it on its next tick"}};
      });
}

Status ConsoleServer::Impl::Start() {
  if (opt_.cert_file.empty() != opt_.key_file.empty()) {
    return Fail(Error::Invalid("console: TLS needs both --cert and --key"));
  }
  if (opt_.session_ttl_s <= 0) return Fail(Error::Invalid("console: session TTL must be > 0"));
  TEND_ASSIGN_OR_RETURN(db_, ConsoleDb::Open(opt_.db));
  if (opt_.snapshot_max_age_s > 0) {
    TEND_ASSIGN_OR_RETURN(refresh_db_, ConsoleDb::Open(opt_.db));
    TEND_ASSIGN_OR_RETURN(snap_, ComputeSnapshot(*refresh_db_));
    refresher_ = std::thread([this] { RefreshLoop(); });
  }
  if (tls()) {
    for (const auto& f : {opt_.cert_file, opt_.key_file}) {
      if (!fs::Exists(f)) return Fail(Error::NotFound("console: " + f + " does not exist"));
    }
    auto ssl = std::make_unique<httplib::SSLServer>(opt_.cert_file.c_str(), opt_.key_file.c_str());
    if (!ssl->is_valid()) {
      return Fail(Error::Invalid("console: cannot use " + opt_.cert_file + " / " + opt_.key_file +
                                 " (not a PEM certificate and matching key?)"));
    }
    server_ = std::move(ssl);
  } else {
    server_ = std::make_unique<httplib::Server>();
  }
  server_->set_payload_max_length(64 * 1024);
  server_->set_read_timeout(10, 0);
  server_->set_default_headers({{"Content-Security-Policy", kSecurityPolicy},
                                {"X-Content-Type-Options", "nosniff"},
                                {"X-Frame-Options", "DENY"},
                                {"Referrer-Policy", "no-referrer"}});
  StaticRoutes();
  SessionRoutes();
  AuditRoute();
  DeviceRoutes();
  DeviceDataRoutes();
  DeviceHistoryRoutes();
  EvidenceRoute();
  DeviceActions();
  GroupActions();
  RolloutRoutes();
  if (opt_.port == 0) {
    port_ = server_->bind_to_any_port(opt_.host);
    if (port_ <= 0) return Fail(Error::Io("console: cannot bind " + opt_.host));
  } else {
    if (!server_->bind_to_port(opt_.host, opt_.port)) {
      return Fail(Error::Io("console: cannot bind " + opt_.host + ":" + std::to_string(opt_.port) +
                            " (address in use?)"));
    }
    port_ = opt_.port;
  }
  thread_ = std::thread([this] {
    server_->listen_after_bind();
    listen_done_ = true;
  });
  // stop() is a no-op until the listener runs: wait for it (or for its failure).
  while (!server_->is_running() && !listen_done_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (listen_done_) return Fail(Error::Io("console: the HTTP listener stopped at once"));
  TEND_LOG_INFO(
      "console on {}://{}:{}/ (database {})", tls() ? "https" : "http", opt_.host, port_,
      opt_.db.substr(
          0, opt_.db.find('@') == std::string::npos ? opt_.db.size() : opt_.db.find("://") + 3));
  return Ok();
}

ConsoleServer::ConsoleServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ConsoleServer::~ConsoleServer() = default;

Result<std::unique_ptr<ConsoleServer>> ConsoleServer::Start(const ConsoleOptions& opts) {
  auto impl = std::make_unique<Impl>(opts);
  TEND_RETURN_NOT_OK(impl->Start());
  return std::unique_ptr<ConsoleServer>(new ConsoleServer(std::move(impl)));
}

int ConsoleServer::port() const { return impl_->port(); }
bool ConsoleServer::tls() const { return impl_->tls(); }
void ConsoleServer::Stop() { impl_->Stop(); }
void ConsoleServer::Wait() { impl_->Wait(); }

}  // namespace tend::fleet
