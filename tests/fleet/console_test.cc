// The fleet console in-process over real HTTP on a loopback port, with a SQLite fleet database
// filled the way ingest fills it: access control (missing token, wrong role, forged CSRF token,
// expired session, revoked token, TLS), the audit log, the device list (filter, sort, page), a
// device's page, and the rollout controller's decisions and its signed control statement.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <filesystem>

#include "core/fs.h"
#include "fleet/console_api.h"
#include "fleet/console_auth.h"
#include "fleet/console_db.h"
#include "fleet/console_server.h"
#include "fleet/message.h"
#include "fleet/ota_support.h"
#include "fleet/rollout_control.h"
#include "fleet/store.h"
#include "ota/registry.h"
#include "ota/rollout.h"
#include "ota/trust.h"
#include "telemetry/payload.h"
#include "telemetry/test_support.h"

namespace tend::fleet {
namespace {

using nlohmann::json;
using telemetry::Identity;
using telemetry::MessageId;

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::chrono::system_clock::time_point At(int64_t ms) {
  return std::chrono::system_clock::time_point{std::chrono::milliseconds(ms)};
}

void Put(FleetStore& s, const std::string& topic, const std::string& payload) {
  auto o = ParseFleetMessage(topic, payload);
  ASSERT_EQ(o.reason, Malformed::kNone) << o.detail;
  auto r = s.Store(o.message, WallMs());
  ASSERT_TRUE(r) << r.error().message;
}

// A small fleet: `n` devices over two factories, device i with i % 5 alerts in the last hour,
// scores, health with spool figures and thresholds, status and an OTA state.
void FillFleet(const std::string& db, int n) {
  auto store = OpenFleetStore(db);
  ASSERT_TRUE(store) << store.error().message;
  const int64_t now = WallMs();
  for (int i = 0; i < n; ++i) {
    char id[32];
    std::snprintf(id, sizeof id, "edge-%02d", i);
    Identity who{i % 2 ? "plant-b" : "plant-a", "line-" + std::to_string(i % 3),
                 "press-" + std::to_string(i), id};
    Put(**store, who.StatusTopic(), telemetry::StatusPayload(At(now - 60000), who, i % 7 != 3));
    for (int k = 0; k < 10; ++k) {
      Decision d;
      d.timestamp = At(now - 50000 + k * 3300);
      d.anomaly_score = k < i % 5 ? 1.6f : 0.3f;
      d.is_alert = k < i % 5;
      d.severity = d.is_alert ? Severity::kMedium : Severity::kLow;
      d.top_sensors = {"kurtosis", "band_200_400_rms"};
      d.model_version = "1";
      const std::string p = telemetry::ScorePayload(d, who, MessageId{1, k + 1});
      Put(**store, who.ScoresTopic(), p);
      if (d.is_alert) Put(**store, who.AlertsTopic(), p);
    }
    json extra = {{"cpu_pct", 10.0 + i},
                  {"temp_c", 40.0 + i},
                  {"spool_depth", i * 10},
                  {"dropped", {{"scores", i}, {"alerts", 0}, {"health", 0}}},
                  {"thresholds", {{"LOW", 1.0}, {"MEDIUM", 1.5}, {"HIGH", 2.0}}}};
    Put(**store, who.HealthTopic(),
        telemetry::HealthPayload(At(now - 20000), who, MessageId{1, 100}, extra));
    testing::OtaShape shape;
    shape.current = 1;
    shape.backup = 0;
    Put(**store, who.EdgeTopic("ota"),
        testing::WirePayload(testing::AgentOtaState(shape, now / 1000), who, now - 30000, 200));
  }
}

class ConsoleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tend::testing::MakeTempDir("console");
    db_url_ = "sqlite:" + dir_ + "/fleet.db";
    FillFleet(db_url_, 30);
    auto db = ConsoleDb::Open(db_url_);
    ASSERT_TRUE(db) << db.error().message;
    db_ = std::move(*db);
    viewer_ = CreateToken(*db_, "vera", Role::kViewer, 0, WallMs())->token;
    operator_ = CreateToken(*db_, "otto", Role::kOperator, 0, WallMs())->token;
  }
  void TearDown() override {
    if (server_) server_->Stop();
    std::filesystem::remove_all(dir_);
  }
  void StartServer(ConsoleOptions o = {}) {
    o.db = db_url_;
    o.port = 0;
    o.clock_ms = [this] { return WallMs() + skew_ms_.load(); };
    o.snapshot_max_age_s = 0;  // every request sees the database as it is
    auto s = ConsoleServer::Start(o);
    ASSERT_TRUE(s) << s.error().message;
    server_ = std::move(*s);
  }
  httplib::Client Client() {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(10, 0);
    return c;
  }
  static httplib::Headers Bearer(const std::string& t) {
    return {{"Authorization", "Bearer " + t}};
  }
  // Logs in like the page does; returns the cookie header and the CSRF token.
  std::pair<std::string, std::string> Login(const std::string& token) {
    auto c = Client();
    auto r = c.Post("/api/login", json{{"token", token}}.dump(), "application/json");
    EXPECT_TRUE(r);
    if (!r) return {};
    EXPECT_EQ(r->status, 200) << r->body;
    const std::string set = r->get_header_value("Set-Cookie");
    EXPECT_NE(set.find("HttpOnly"), std::string::npos);
    EXPECT_NE(set.find("SameSite=Strict"), std::string::npos);
    return {set.substr(0, set.find(';')), json::parse(r->body)["csrf"].get<std::string>()};
  }
  json AuditEntries() {
    int64_t total = 0;
    auto rows = db_->AuditLog(0, 1000, &total);
    EXPECT_TRUE(rows);
    json out = json::array();
    for (const auto& a : *rows) {
      out.push_back(
          {{"actor", a.actor}, {"action", a.action}, {"target", a.target}, {"result", a.result}});
    }
    return out;
  }

  std::string dir_, db_url_, viewer_, operator_;
  std::unique_ptr<ConsoleDb> db_;
  std::unique_ptr<ConsoleServer> server_;
  std::atomic<int64_t> skew_ms_{0};
};

TEST_F(ConsoleTest, AnonymousRequestsGet401) {
  StartServer();
  auto c = Client();
  for (const char* path : {"/api/devices", "/api/me", "/api/rollouts", "/api/audit",
                           "/api/devices/edge-01", "/api/devices/edge-01/scores"}) {
    auto r = c.Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 401) << path;
    EXPECT_EQ(r->body.find("edge-"), std::string::npos) << path;  // no data leaks
  }
  auto r = c.Post("/api/devices/edge-01/rollback", "{}", "application/json");
  EXPECT_EQ(r->status, 401);
  r = c.Get("/api/devices", Bearer("tend_" + std::string(64, '0')));  // a made-up token
  EXPECT_EQ(r->status, 401);
  r = c.Post("/api/login", json{{"token", "tend_nope"}}.dump(), "application/json");
  EXPECT_EQ(r->status, 401);
  // The page itself carries no data and is served to anyone, with a strict policy.
  r = c.Get("/");
  ASSERT_EQ(r->status, 200);
  EXPECT_NE(r->body.find("app.js"), std::string::npos);
  EXPECT_NE(r->get_header_value("Content-Security-Policy").find("script-src 'self'"),
            std::string::npos);
  EXPECT_EQ(c.Get("/app.js")->status, 200);
  // The tokens are not in the database in the clear.
  const auto tokens = db_->Tokens();
  ASSERT_TRUE(tokens);
  for (const auto& t : *tokens) {
    EXPECT_NE(t.hash, viewer_);
    EXPECT_EQ(t.hash, HashSecret(t.name == "vera" ? viewer_ : operator_));
  }
}

TEST_F(ConsoleTest, ViewerReadsButAnActionGets403AndIsAudited) {
  StartServer();
  auto c = Client();
  auto r = c.Get("/api/devices?limit=5", Bearer(viewer_));
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(r->body)["total"], 30);
  r = c.Post("/api/devices/edge-01/rollback", Bearer(viewer_), "{}", "application/json");
  EXPECT_EQ(r->status, 403);
  r = c.Post("/api/devices/edge-01/pin", Bearer(viewer_), R"({"max_version":1})",
             "application/json");
  EXPECT_EQ(r->status, 403);
  // A viewer's session is no different.
  auto [cookie, csrf] = Login(viewer_);
  r = c.Post("/api/devices/edge-01/rollback", {{"Cookie", cookie}, {"X-CSRF-Token", csrf}}, "{}",
             "application/json");
  EXPECT_EQ(r->status, 403);
  EXPECT_TRUE(db_->RollbackRequests(false, 10)->empty());
  json audit = AuditEntries();
  int forbidden = 0;
  for (const auto& a : audit) {
    if (a["actor"] == "vera" && a["result"].get<std::string>().find("forbidden") == 0)
      forbidden += 1;
  }
  EXPECT_EQ(forbidden, 3) << audit.dump();
}

TEST_F(ConsoleTest, ForgedOrMissingCsrfTokenIsRefused) {
  StartServer();
  auto c = Client();
  auto [cookie, csrf] = Login(operator_);
  ASSERT_FALSE(csrf.empty());
  const std::string body = R"({"reason":"csrf test"})";
  auto r = c.Post("/api/devices/edge-02/rollback", {{"Cookie", cookie}}, body, "application/json");
  EXPECT_EQ(r->status, 403);
  EXPECT_NE(r->body.find("CSRF"), std::string::npos);
  std::string forged = csrf;
  forged.back() = forged.back() == 'a' ? 'b' : 'a';
  r = c.Post("/api/devices/edge-02/rollback", {{"Cookie", cookie}, {"X-CSRF-Token", forged}}, body,
             "application/json");
  EXPECT_EQ(r->status, 403);
  // Another session's token does not fit either.
  auto [cookie2, csrf2] = Login(operator_);
  r = c.Post("/api/devices/edge-02/rollback", {{"Cookie", cookie}, {"X-CSRF-Token", csrf2}}, body,
             "application/json");
  EXPECT_EQ(r->status, 403);
  EXPECT_TRUE(db_->RollbackRequests(false, 10)->empty());
  r = c.Post("/api/devices/edge-02/rollback", {{"Cookie", cookie}, {"X-CSRF-Token", csrf}}, body,
             "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  auto reqs = db_->RollbackRequests(false, 10);
  ASSERT_EQ(reqs->size(), 1u);
  EXPECT_EQ((*reqs)[0].device_id, "edge-02");
  EXPECT_EQ((*reqs)[0].actor, "otto");
  EXPECT_EQ((*reqs)[0].from_version, 1);
  int csrf_refusals = 0;
  for (const auto& a : AuditEntries())
    csrf_refusals += a["result"].get<std::string>().find("CSRF") != std::string::npos;
  EXPECT_EQ(csrf_refusals, 3);
  (void)cookie2;
}

TEST_F(ConsoleTest, ExpiredSessionGets401) {
  ConsoleOptions o;
  o.session_ttl_s = 60;
  StartServer(o);
  auto c = Client();
  auto [cookie, csrf] = Login(operator_);
  auto r = c.Get("/api/me", {{"Cookie", cookie}});
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(json::parse(r->body)["role"], "operator");
  EXPECT_EQ(json::parse(r->body)["csrf"], csrf);
  skew_ms_ = 61 * 1000;
  r = c.Get("/api/me", {{"Cookie", cookie}});
  EXPECT_EQ(r->status, 401);
  r = c.Post("/api/devices/edge-01/tags", {{"Cookie", cookie}, {"X-CSRF-Token", csrf}},
             R"({"add":["late"]})", "application/json");
  EXPECT_EQ(r->status, 401);
  // The token itself still works, and logs in again.
  EXPECT_EQ(c.Get("/api/me", Bearer(operator_))->status, 200);
  auto [cookie2, csrf2] = Login(operator_);
  EXPECT_EQ(c.Get("/api/me", {{"Cookie", cookie2}})->status, 200);
  // Logging out ends the session at once.
  EXPECT_EQ(
      c.Post("/api/logout", {{"Cookie", cookie2}, {"X-CSRF-Token", csrf2}}, "", "application/json")
          ->status,
      200);
  EXPECT_EQ(c.Get("/api/me", {{"Cookie", cookie2}})->status, 401);
}

TEST_F(ConsoleTest, RevokedAndExpiredTokensEndTheirSessions) {
  StartServer();
  auto c = Client();
  auto [cookie, csrf] = Login(viewer_);
  ASSERT_EQ(c.Get("/api/me", {{"Cookie", cookie}})->status, 200);
  ASSERT_EQ(*db_->RevokeToken("vera"), 1);
  EXPECT_EQ(c.Get("/api/me", Bearer(viewer_))->status, 401);
  EXPECT_EQ(c.Get("/api/me", {{"Cookie", cookie}})->status, 401);
  auto shortlived = CreateToken(*db_, "temp", Role::kOperator, 30, WallMs());
  ASSERT_TRUE(shortlived);
  EXPECT_EQ(c.Get("/api/me", Bearer(shortlived->token))->status, 200);
  skew_ms_ = 31 * 1000;
  EXPECT_EQ(c.Get("/api/me", Bearer(shortlived->token))->status, 401);
}

TEST_F(ConsoleTest, EveryActionIsInTheAuditLog) {
  StartServer();
  auto c = Client();
  ASSERT_TRUE(db_->PutRolloutStatus(
      {"press-anomaly", 2,
       ota::ToJson(*ota::MakeRolloutPlan("10,100", "1h", 20, 1, "press-anomaly")).dump(), "pending",
       0, "[]", "", 1, WallMs()}));
  const auto h = Bearer(operator_);
  struct Call {
    std::string path, body, action;
    int status;
  } calls[] = {
      {"/api/devices/edge-03/rollback", R"({"reason":"false alarms"})", "rollback", 200},
      {"/api/devices/edge-03/pin", R"({"max_version":1})", "pin", 200},
      {"/api/devices/edge-03/unpin", "{}", "unpin", 200},
      {"/api/devices/edge-03/unpin", "{}", "unpin", 404},
      {"/api/devices/edge-03/tags", R"({"add":["canary","press-hall-2"]})", "tags", 200},
      {"/api/pins", R"({"factory":"plant-b","name":"press-anomaly","max_version":1})", "pin-group",
       200},
      {"/api/rollouts/press-anomaly/2/start", "", "rollout", 200},
      {"/api/rollouts/press-anomaly/2/pause", "", "rollout", 200},
      {"/api/rollouts/press-anomaly/9/start", "", "rollout", 404},
      {"/api/devices/no-such/rollback", "{}", "rollback", 404},
      {"/api/devices/edge-03/pin", R"({"max_version":"one"})", "pin", 400},
      {"/api/devices/edge-03/tags", "{not json", "tags", 400},
  };
  for (const auto& call : calls) {
    auto r = c.Post(call.path, h, call.body, "application/json");
    ASSERT_TRUE(r) << call.path;
    EXPECT_EQ(r->status, call.status) << call.path << ": " << r->body;
  }
  json audit = AuditEntries();
  ASSERT_EQ(audit.size(), std::size(calls)) << audit.dump(1);
  // Newest first: the log mirrors the calls in reverse, with who and the outcome.
  for (size_t i = 0; i < std::size(calls); ++i) {
    const json& a = audit[std::size(calls) - 1 - i];
    EXPECT_EQ(a["actor"], "otto");
    EXPECT_EQ(a["action"], calls[i].action) << calls[i].path;
    EXPECT_EQ(a["result"].get<std::string>().rfind(calls[i].status == 200 ? "ok" : "error", 0), 0u)
        << calls[i].path << " " << a.dump();
  }
  EXPECT_EQ(audit[std::size(calls) - 1]["target"], "edge-03");
  // The effects are in the store.
  auto pins = db_->Pins();
  EXPECT_EQ(pins->size(), 15u);  // the odd devices of plant-b
  auto intents = db_->RolloutIntents();
  ASSERT_EQ(intents->size(), 1u);
  EXPECT_EQ((*intents)[0].state, "paused");
  auto r = c.Get("/api/audit?limit=2", h);
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(json::parse(r->body)["total"], std::size(calls));
  EXPECT_EQ(json::parse(r->body)["entries"].size(), 2u);
  // Aborted is final.
  ASSERT_EQ(c.Post("/api/rollouts/press-anomaly/2/abort", h, "", "application/json")->status, 200);
  ASSERT_TRUE(db_->PutRolloutStatus(
      {"press-anomaly", 2,
       ota::ToJson(*ota::MakeRolloutPlan("10,100", "1h", 20, 1, "press-anomaly")).dump(), "aborted",
       1, "[\"2027-01-01T00:00:00Z\"]", "aborted by otto", 2, WallMs()}));
  EXPECT_EQ(c.Post("/api/rollouts/press-anomaly/2/resume", h, "", "application/json")->status, 409);
}

TEST_F(ConsoleTest, DeviceListFiltersSortsAndPages) {
  StartServer();
  auto c = Client();
  const auto h = Bearer(viewer_);
  auto get = [&](const std::string& q) {
    auto r = c.Get("/api/devices?" + q, h);
    EXPECT_TRUE(r);
    EXPECT_EQ(r->status, 200) << q << ": " << r->body;
    return json::parse(r->body);
  };
  json all = get("limit=1000");
  ASSERT_EQ(all["total"], 30);
  const json& d1 = all["devices"][1];
  EXPECT_EQ(d1["device_id"], "edge-01");
  EXPECT_EQ(d1["factory_id"], "plant-b");
  EXPECT_EQ(d1["alerts_1h"], 1);
  EXPECT_EQ(d1["alerts_24h"], 1);
  EXPECT_EQ(d1["spool_backlog"], 10);
  EXPECT_EQ(d1["spool_dropped"], 1);
  EXPECT_EQ(d1["status"], "online");
  EXPECT_EQ(d1["ota"]["current_version"], 1);
  EXPECT_EQ(d1["ota"]["state"], "serving");
  EXPECT_EQ(d1["lines"], json::array({"line-1"}));
  EXPECT_EQ(d1["assets"], json::array({"press-1"}));
  EXPECT_EQ(get("factory=plant-a&limit=100")["total"], 15);
  EXPECT_EQ(get("line=line-0&limit=100")["total"], 10);
  EXPECT_EQ(get("q=edge-2&limit=100")["total"], 10);
  EXPECT_EQ(get("status=offline")["total"], 4);  // 3, 10, 17, 24
  json top = get("sort=alerts_24h&order=desc&limit=3");
  for (const auto& d : top["devices"]) EXPECT_EQ(d["alerts_24h"], 4);
  json page2 = get("sort=device_id&offset=10&limit=10");
  EXPECT_EQ(page2["devices"].size(), 10u);
  EXPECT_EQ(page2["devices"][0]["device_id"], "edge-10");
  EXPECT_EQ(get("sort=device_id&order=desc&limit=1")["devices"][0]["device_id"], "edge-29");
  EXPECT_EQ(get("sort=backlog&order=desc&limit=1")["devices"][0]["device_id"], "edge-29");
  for (const char* bad :
       {"sort=nope", "limit=0", "limit=5000", "offset=-1", "order=up", "color=red"}) {
    auto r = c.Get(std::string("/api/devices?") + bad, h);
    EXPECT_EQ(r->status, 400) << bad;
  }
}

TEST_F(ConsoleTest, DevicePageHasScoresThresholdsAlertsOtaAndHealth) {
  StartServer();
  auto c = Client();
  const auto h = Bearer(viewer_);
  auto d = json::parse(c.Get("/api/devices/edge-04", h)->body);
  EXPECT_EQ(d["device_id"], "edge-04");
  EXPECT_EQ(d["thresholds"]["LOW"], 1.0);
  EXPECT_EQ(d["thresholds"]["HIGH"], 2.0);
  EXPECT_EQ(d["health"]["temp_c"], 44.0);
  auto s = json::parse(c.Get("/api/devices/edge-04/scores?minutes=10", h)->body);
  ASSERT_EQ(s["points"].size(), 10u);
  EXPECT_EQ(s["points"][0]["alert"], true);
  EXPECT_NEAR(s["points"][0]["score"].get<double>(), 1.6, 1e-6);
  EXPECT_LT(s["points"][0]["t"].get<int64_t>(), s["points"][9]["t"].get<int64_t>());
  auto a = json::parse(c.Get("/api/devices/edge-04/alerts", h)->body);
  ASSERT_EQ(a["alerts"].size(), 4u);
  EXPECT_EQ(a["alerts"][0]["severity"], "MEDIUM");
  EXPECT_EQ(a["alerts"][0]["top_sensors"], json::array({"kurtosis", "band_200_400_rms"}));
  auto o = json::parse(c.Get("/api/devices/edge-04/ota", h)->body);
  ASSERT_EQ(o["events"].size(), 1u);
  EXPECT_EQ(o["events"][0]["event"], "startup");
  auto hs = json::parse(c.Get("/api/devices/edge-04/health", h)->body);
  ASSERT_EQ(hs["samples"].size(), 1u);
  EXPECT_EQ(c.Get("/api/devices/nobody", h)->status, 404);
  EXPECT_EQ(c.Get("/api/devices/edge-04/scores?minutes=x", h)->status, 400);
}

// A vision alert's evidence image, mirrored into --evidence-dir, is served to signed-in users.
TEST_F(ConsoleTest, ServesEvidenceImagesOfVisionAlerts) {
  const std::string evidence = dir_ + "/evidence";
  std::filesystem::create_directories(evidence + "/cam-1");
  const std::string png = std::string("\x89PNG\r\n\x1a\n", 8) + std::string(100, 'x');
  ASSERT_TRUE(fs::WriteFileAtomic(evidence + "/cam-1/part-42.png", png));
  {
    auto store = OpenFleetStore(db_url_);
    ASSERT_TRUE(store);
    Identity cam{"plant-a", "line-0", "camera-1", "cam-1"};
    Decision d;
    d.timestamp = At(WallMs());
    d.anomaly_score = 0.97f;
    d.is_alert = true;
    d.severity = Severity::kHigh;
    d.top_sensors = {"patch_12_7"};
    json j = telemetry::ScoreJson(d, cam, MessageId{1, 1});
    j["event_id"] = 42;
    j["image_ref"] = "/var/lib/tend/evidence/part-42.png";
    Put(**store, cam.AlertsTopic(), j.dump());
  }
  ConsoleOptions o;
  o.evidence_dir = evidence;
  StartServer(o);
  auto c = Client();
  auto alerts = json::parse(c.Get("/api/devices/cam-1/alerts", Bearer(viewer_))->body)["alerts"];
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0]["event_id"], "42");
  EXPECT_EQ(alerts[0]["evidence"], true);
  const std::string path = "/api/devices/cam-1/alerts/" + alerts[0]["msg_id"].get<std::string>() + "/evidence";
  EXPECT_EQ(c.Get(path)->status, 401);
  auto r = c.Get(path, Bearer(viewer_));
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "image/png");
  EXPECT_EQ(r->body, png);
  EXPECT_EQ(c.Get("/api/devices/cam-1/alerts/nope/evidence", Bearer(viewer_))->status, 404);
  EXPECT_EQ(c.Get("/api/devices/edge-01/alerts/x/evidence", Bearer(viewer_))->status, 404);
}

// TLS with --cert/--key: the same rules over HTTPS; plain HTTP is not served on that port.
TEST_F(ConsoleTest, ServesHttpsWithCertAndKey) {
  const std::string cert = dir_ + "/cert.pem", key = dir_ + "/key.pem";
  const std::string cmd =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
      "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout '" +
      key + "' -out '" + cert + "' >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  ConsoleOptions o;
  o.cert_file = cert;
  o.key_file = key;
  StartServer(o);
  ASSERT_TRUE(server_->tls());
  httplib::SSLClient c("127.0.0.1", server_->port());
  c.set_ca_cert_path(cert.c_str());
  c.enable_server_certificate_verification(true);
  auto r = c.Get("/api/me");
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->status, 401);
  r = c.Get("/api/me", Bearer(operator_));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  r = c.Post("/api/login", json{{"token", operator_}}.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_NE(r->get_header_value("Set-Cookie").find("; Secure"), std::string::npos);
  auto plain = Client().Get("/api/me");
  EXPECT_TRUE(!plain || plain->status != 401);  // no HTTP answer from the TLS port
  ConsoleOptions half;
  half.cert_file = cert;
  half.db = db_url_;
  EXPECT_FALSE(ConsoleServer::Start(half));
}

// ---- the rollout controller ---------------------------------------------------------------

ota::RolloutPlan ThreeWaves() {
  return *ota::MakeRolloutPlan("10,50,100", "60", 20, 1, "press-anomaly");
}

TEST(RolloutControl, AdvanceOpensWavesAfterTheSoakAndStopsOnAbort) {
  const auto plan = ThreeWaves();
  std::vector<WaveProgress> quiet(3);
  RolloutIntent run{"m", 7, "running", "otto", 0};
  // No intent: pending, nothing opens.
  auto rc = Advance("m", 7, plan, nullptr, nullptr, quiet, 1000);
  EXPECT_EQ(rc.state, "pending");
  EXPECT_EQ(rc.open_waves, 0);
  rc = Advance("m", 7, plan, nullptr, &run, quiet, 1000);
  EXPECT_EQ(rc.state, "running");
  EXPECT_EQ(rc.open_waves, 1);
  rc = Advance("m", 7, plan, &rc, &run, quiet, 1059);  // soak not over
  EXPECT_EQ(rc.open_waves, 1);
  rc = Advance("m", 7, plan, &rc, &run, quiet, 1060);
  EXPECT_EQ(rc.open_waves, 2);
  EXPECT_EQ(rc.opened, (std::vector<int64_t>{1000, 1060}));
  RolloutIntent pause{"m", 7, "paused", "otto", 0};
  auto paused = Advance("m", 7, plan, &rc, &pause, quiet, 5000);
  EXPECT_EQ(paused.state, "paused");
  EXPECT_EQ(paused.open_waves, 2);
  // The abort rule: 1 of 4 canaries failed = 25 % > 20 %.
  std::vector<WaveProgress> bad = {{4, 2, 1, 1}, {0, 0, 0, 0}, {0, 0, 0, 0}};
  EXPECT_EQ(AbortRuleFired(plan, bad, 0, 7), "");  // no open wave: nothing to judge
  auto aborted = Advance("m", 7, plan, &rc, &run, bad, 1061);
  EXPECT_EQ(aborted.state, "aborted");
  EXPECT_NE(
      aborted.reason.find("1 of 4 devices in wave 1 of 3 refused or rolled back v7 (25 % > 20 %)"),
      std::string::npos)
      << aborted.reason;
  // Final: neither the operator nor good news reopens it.
  EXPECT_EQ(Advance("m", 7, plan, &aborted, &run, quiet, 9999).state, "aborted");
  RolloutIntent abort{"m", 7, "aborted", "otto", 0};
  EXPECT_EQ(Advance("m", 7, plan, &rc, &abort, quiet, 1061).reason, "aborted by otto");
  // Completes once the last wave is open and nobody is pending.
  ota::RolloutControl last = rc;
  last.open_waves = 3;
  last.opened = {1000, 1060, 1120};
  std::vector<WaveProgress> done = {{1, 1, 0, 0}, {4, 4, 0, 0}, {5, 5, 0, 0}};
  EXPECT_EQ(Advance("m", 7, plan, &last, &run, done, 2000).state, "complete");
}

TEST(RolloutControl, ProgressCountsDevicesOfTheModelByWave) {
  const auto plan = ThreeWaves();
  std::vector<DeviceOtaFacts> devices;
  for (int i = 0; i < 200; ++i) {
    DeviceOtaFacts f{"edge-" + std::to_string(i), i % 10 ? "press-anomaly" : "other", 1, {}};
    if (i % 3 == 0) f.current_version = 7;
    if (i % 3 == 1 && i % 2) f.rejected_versions = {7};
    devices.push_back(f);
  }
  auto p = Progress(plan, "press-anomaly", 7, devices);
  int64_t n = 0, inst = 0, fail = 0, pend = 0;
  for (const auto& w : p) {
    n += w.devices;
    inst += w.installed;
    fail += w.failed;
    pend += w.pending;
    EXPECT_EQ(w.devices, w.installed + w.failed + w.pending);
  }
  EXPECT_EQ(n, 180);  // the other model's devices do not count
  EXPECT_GT(inst, 50);
  EXPECT_GT(fail, 20);
  EXPECT_GT(pend, 50);
}

// RunControlOnce against a real registry and database: the operator's start opens wave 1 in a
// signed control.json, failures in it abort the rollout, and pins and rollback requests are
// relayed and tracked.
TEST(RolloutControl, RunOnceSignsWhatTheDatabaseAsks) {
  const std::string dir = tend::testing::MakeTempDir("control");
  const std::string reg = dir + "/registry", url = "sqlite:" + dir + "/fleet.db";
  auto key = ota::GenerateKeyPair();
  ASSERT_TRUE(key);
  int64_t now = 1800000000;
  ASSERT_TRUE(ota::WriteRoot(reg, ota::MakeRoot({*key}, 1, 1, now + 365 * 86400), {*key}));
  ASSERT_TRUE(fs::WriteFileAtomic(dir + "/m.onnx", std::string(100, 'm')));
  ota::PublishOptions po;
  po.model_path = dir + "/m.onnx";
  po.name = "press-anomaly";
  po.version = 2;
  po.profiles = {"x86-cpu-fp32"};
  po.now = now;
  po.rollout = ThreeWaves();
  ASSERT_TRUE(ota::Publish(reg, po, {*key}));
  FillFleet(url, 30);
  auto db = ConsoleDb::Open(url);
  ASSERT_TRUE(db);
  ControllerOptions o;
  o.registry_dir = reg;
  o.keys = {*key};
  o.expires_s = 300;
  o.clock = [&] { return now; };
  auto root_env = ota::ParseEnvelope(*fs::ReadFile(reg + "/root.json"), "root");
  auto root = *ota::ParseRoot(root_env->signed_part, "root");
  auto verify = [&] {
    auto c = ota::VerifyControl(root, *fs::ReadFile(reg + "/control.json"), 0, now);
    EXPECT_TRUE(c) << (c ? "" : c.error().message);
    return c ? *c : ota::ControlMeta{};
  };
  auto r = RunControlOnce(o, **db);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(verify().FindRollout("press-anomaly", 2)->state, "pending");
  ASSERT_TRUE((*db)->SetRolloutIntent({"press-anomaly", 2, "running", "otto", now * 1000}));
  ASSERT_TRUE((*db)->SetPin({"edge-05", "press-anomaly", 1, "otto", now * 1000}));
  auto id = (*db)->AddRollbackRequest(
      {0, "edge-06", "press-anomaly", 1, "false alarms", "otto", now * 1000, "requested", 0});
  ASSERT_TRUE(id);
  r = RunControlOnce(o, **db);
  ASSERT_TRUE(r) << r.error().message;
  ota::ControlMeta c = verify();
  EXPECT_EQ(c.version, 2);
  EXPECT_EQ(c.expires, now + 300);
  EXPECT_EQ(c.FindRollout("press-anomaly", 2)->state, "running");
  EXPECT_EQ(c.FindRollout("press-anomaly", 2)->open_waves, 1);
  EXPECT_EQ(*c.PinFor("edge-05", "press-anomaly"), 1);
  ASSERT_NE(c.RollbackFor("edge-06", "press-anomaly"), nullptr);
  EXPECT_EQ(c.RollbackFor("edge-06", "press-anomaly")->request, "r" + std::to_string(*id));
  EXPECT_EQ((*db)->RollbackRequests(false, 10)->at(0).status, "signed");
  auto st = (*db)->RolloutStatuses();
  ASSERT_EQ(st->size(), 1u);
  EXPECT_EQ((*st)[0].state, "running");
  EXPECT_EQ((*st)[0].control_version, 2);
  // A canary rolls back: more than 20 % of wave 1 failed, the rollout aborts for good.
  const ota::RolloutPlan plan = ThreeWaves();
  auto store = OpenFleetStore(url);
  for (int i = 0; i < 30; ++i) {
    char dev[32];
    std::snprintf(dev, sizeof dev, "edge-%02d", i);
    if (ota::WaveOf(plan, dev) != 0) continue;
    Identity who{i % 2 ? "plant-b" : "plant-a", "line-" + std::to_string(i % 3),
                 "press-" + std::to_string(i), dev};
    testing::OtaShape s{"rolled_back", 1, 0, false, 1, "alert storm", 1, 0, 1};
    json j = testing::AgentOtaState(s, now);
    j["rejected_versions"] = {2};
    Put(**store, who.EdgeTopic("ota"), testing::WirePayload(j, who, WallMs(), 300));
    break;
  }
  now += 10;
  r = RunControlOnce(o, **db);
  ASSERT_TRUE(r);
  c = verify();
  EXPECT_EQ(c.FindRollout("press-anomaly", 2)->state, "aborted");
  EXPECT_NE(c.FindRollout("press-anomaly", 2)->reason.find("abort rule"), std::string::npos);
  // The device left the version: the request is done and leaves the statement.
  Identity six{"plant-a", "line-0", "press-6", "edge-06"};
  testing::OtaShape back{"rolled_back", 0, -1, false, 1, "operator", 0, 0, 1};
  Put(**store, six.EdgeTopic("ota"),
      testing::WirePayload(testing::AgentOtaState(back, now), six, WallMs() + 1000, 301));
  now += 1000;  // past any soak: an aborted rollout still opens nothing
  r = RunControlOnce(o, **db);
  ASSERT_TRUE(r);
  c = verify();
  EXPECT_EQ(c.FindRollout("press-anomaly", 2)->open_waves, 1);
  EXPECT_EQ(c.RollbackFor("edge-06", "press-anomaly"), nullptr);
  EXPECT_EQ((*db)->RollbackRequests(false, 10)->at(0).status, "done");
  // The controller never signs with a key that is not the timestamp role's.
  auto other = ota::GenerateKeyPair();
  o.keys = {*other};
  EXPECT_FALSE(RunControlOnce(o, **db));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tend::fleet
