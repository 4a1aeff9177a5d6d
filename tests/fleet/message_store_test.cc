// Fleet-side parsing of device messages (SPEC checks, malformed classification) and the SQLite
// store (dedup by msg_id, device status, alerts --since, OTA state and event history).
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>

#include "fleet/ingest.h"
#include "fleet/message.h"
#include "fleet/sql.h"
#include "fleet/ota_support.h"
#include "fleet/store.h"
#include "telemetry/payload.h"
#include "telemetry/test_support.h"

namespace tend::fleet {
namespace {

using telemetry::Identity;
using telemetry::MessageId;
using telemetry::TopicKind;

const Identity kId{"f1", "l1", "press-1", "edge-1"};

Decision MakeDecision(bool alert, int64_t ms) {
  Decision d;
  d.timestamp = std::chrono::system_clock::time_point{std::chrono::milliseconds(ms)};
  d.anomaly_score = alert ? 0.91f : 0.12f;
  d.is_alert = alert;
  d.severity = alert ? Severity::kHigh : Severity::kLow;
  d.top_sensors = {"rms"};
  d.model_version = "3";
  return d;
}

TEST(FleetMessage, ParsesWhatTheAgentSends) {
  auto payload = telemetry::ScorePayload(MakeDecision(true, 1714564800123), kId, MessageId{2, 7});
  auto o = ParseFleetMessage(kId.AlertsTopic(), payload);
  ASSERT_EQ(o.reason, Malformed::kNone) << o.detail;
  EXPECT_EQ(o.message.kind, TopicKind::kAlerts);
  EXPECT_EQ(o.message.device_id, "edge-1");
  EXPECT_EQ(o.message.msg_id, "edge-1-2-7");
  EXPECT_EQ(o.message.ts_ms, 1714564800123);
  EXPECT_EQ(o.message.severity, "HIGH");
  EXPECT_EQ(o.message.model_version, "3");
  EXPECT_NEAR(o.message.anomaly_score, 0.91, 1e-4);
  auto st = ParseFleetMessage(
      kId.StatusTopic(), telemetry::StatusPayload(std::chrono::system_clock::now(), kId, true));
  ASSERT_EQ(st.reason, Malformed::kNone) << st.detail;
  EXPECT_EQ(st.message.status, "online");
  auto h = ParseFleetMessage(kId.HealthTopic(),
                             telemetry::HealthPayload(std::chrono::system_clock::now(), kId,
                                                      MessageId{1, 1}, {{"cpu_pct", 3.0}}));
  EXPECT_EQ(h.reason, Malformed::kNone) << h.detail;
}

TEST(FleetMessage, ClassifiesMalformedInput) {
  auto good = telemetry::ScoreJson(MakeDecision(false, 1714564800000), kId, MessageId{1, 1});
  EXPECT_EQ(ParseFleetMessage(kId.ScoresTopic(), "{not json").reason, Malformed::kBadJson);
  EXPECT_EQ(ParseFleetMessage(kId.ScoresTopic(), "").reason, Malformed::kBadJson);
  EXPECT_EQ(ParseFleetMessage(kId.ScoresTopic(), "[1,2]").reason, Malformed::kWrongType);
  EXPECT_EQ(ParseFleetMessage(kId.ScoresTopic(), std::string(70000, ' ')).reason,
            Malformed::kTooLarge);
  EXPECT_EQ(ParseFleetMessage("factory/f1/other", good.dump()).reason, Malformed::kUnknownTopic);
  struct Case {
    const char* field;
    nlohmann::json value;
  } cases[] = {{"anomaly_score", "high"},
               {"is_alert", 1},
               {"severity", "CRITICAL"},
               {"top_sensors", "rms"},
               {"top_sensors", {1, 2}},
               {"timestamp", 17},
               {"asset_id", "other"},
               {"seq", "x"},
               {"msg_id", 5}};
  for (const auto& c : cases) {
    auto j = good;
    j[c.field] = c.value;
    auto o = ParseFleetMessage(kId.ScoresTopic(), j.dump());
    EXPECT_EQ(o.reason, Malformed::kWrongType) << c.field;
    EXPECT_FALSE(o.detail.empty());
  }
  auto missing = good;
  missing.erase("severity");
  EXPECT_EQ(ParseFleetMessage(kId.ScoresTopic(), missing.dump()).reason, Malformed::kWrongType);
  // An alerts topic carrying a non-alert, a status with a foreign device id.
  EXPECT_EQ(ParseFleetMessage(kId.AlertsTopic(), good.dump()).reason, Malformed::kWrongType);
  EXPECT_EQ(ParseFleetMessage("factory/f1/edge/other/status",
                              telemetry::StatusPayload(std::chrono::system_clock::now(), kId, true))
                .reason,
            Malformed::kWrongType);
}

class FleetStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = tend::testing::MakeTempDir("fleetstore"); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

FleetMessage Parsed(const std::string& topic, const std::string& payload) {
  auto o = ParseFleetMessage(topic, payload);
  EXPECT_EQ(o.reason, Malformed::kNone) << o.detail;
  return o.message;
}

TEST_F(FleetStoreTest, DedupsByMessageIdAndTracksDevices) {
  auto store = OpenFleetStore("sqlite:" + dir_ + "/fleet.db");
  ASSERT_TRUE(store) << store.error().message;
  auto& s = **store;
  const int64_t t0 = 1714564800000;
  for (int i = 0; i < 5; ++i) {
    auto a = Parsed(kId.AlertsTopic(), telemetry::ScorePayload(MakeDecision(true, t0 + i * 1000),
                                                               kId, MessageId{1, i}));
    auto r = s.Store(a, t0 + i * 1000 + 5);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_TRUE(*r);
    // The same message again (a redelivery) is a duplicate.
    r = s.Store(a, t0 + i * 1000 + 9);
    ASSERT_TRUE(r);
    EXPECT_FALSE(*r);
  }
  auto alerts = s.Alerts(0, 100);
  ASSERT_TRUE(alerts);
  ASSERT_EQ(alerts->size(), 5u);
  EXPECT_EQ((*alerts)[0].msg_id, "edge-1-1-0");
  EXPECT_EQ((*alerts)[4].seq, 4);
  auto since = s.Alerts(t0 + 3000, 100);
  ASSERT_EQ(since->size(), 2u);
  EXPECT_EQ((*since)[0].ts_ms, t0 + 3000);

  // Status: a late "online" older than the stored "offline" does not win.
  auto offline = Parsed(
      kId.StatusTopic(),
      telemetry::StatusPayload(
          std::chrono::system_clock::time_point{std::chrono::milliseconds(t0 + 9000)}, kId, false));
  auto online = Parsed(
      kId.StatusTopic(),
      telemetry::StatusPayload(
          std::chrono::system_clock::time_point{std::chrono::milliseconds(t0 + 8000)}, kId, true));
  ASSERT_TRUE(s.Store(offline, t0 + 9001));
  ASSERT_TRUE(s.Store(online, t0 + 9002));
  auto devices = s.Devices();
  ASSERT_TRUE(devices);
  ASSERT_EQ(devices->size(), 1u);
  EXPECT_EQ((*devices)[0].device_id, "edge-1");
  EXPECT_EQ((*devices)[0].status, "offline");
  EXPECT_EQ((*devices)[0].model_version, "3");
  EXPECT_EQ((*devices)[0].last_seen_ms, t0 + 9002);
  EXPECT_EQ(*s.StatusHistoryCount(), 2);
}

// ---- OTA state (factory/{f}/edge/{d}/ota) ----------------------------------------------------

using testing::AgentOtaState;
using testing::OtaShape;
using testing::WirePayload;

// ---- Issue 17 ------------------------------------------------------------------------------

using telemetry::StatusPayload;
using telemetry::StatusSession;

FleetMessage Status(bool online, int64_t ts_ms, StatusSession session, const Identity& id = kId) {
  return Parsed(
      id.StatusTopic(),
      StatusPayload(std::chrono::system_clock::time_point{std::chrono::milliseconds(ts_ms)}, id,
                    online, session));
}

std::string DeviceStatus(FleetStore& s, const std::string& device = "edge-1") {
  auto d = s.Devices();
  EXPECT_TRUE(d) << (d ? "" : d.error().message);
  for (const auto& row : *d) {
    if (row.device_id == device) return row.status;
  }
  return "";
}

// Defect 4: the Last Will is fixed at connect time, so it is stamped before the `online` sent
// once connected; "newest timestamp wins" kept a crashed device online forever. The session
// stamp orders them: the Will wins over its own connection's online, the next connection's
// online wins over the Will, whatever order they arrive in.
TEST_F(FleetStoreTest, LastWillWinsOverItsOwnOnlineAndLosesToTheNextConnection) {
  auto store = OpenFleetStore("sqlite:" + dir_ + "/fleet.db");
  ASSERT_TRUE(store) << store.error().message;
  auto& s = **store;
  const int64_t s1 = 1800000000000, s2 = s1 + 60000;
  ASSERT_TRUE(s.Store(Status(true, s1 + 40, {s1, "aaaaaaaaaaaaaaaa", false}), s1 + 41));
  EXPECT_EQ(DeviceStatus(s), "online");
  ASSERT_TRUE(s.Store(Status(false, s1, {s1, "aaaaaaaaaaaaaaaa", true}), s1 + 50000));
  EXPECT_EQ(DeviceStatus(s), "offline") << "the crashed device's Will lost to its own online";
  ASSERT_TRUE(s.Store(Status(true, s2 + 30, {s2, "bbbbbbbbbbbbbbbb", false}), s2 + 31));
  EXPECT_EQ(DeviceStatus(s), "online");
  // The first connection's Will delivered again late (QoS 1): the newer connection stays online.
  ASSERT_TRUE(s.Store(Status(false, s1, {s1, "aaaaaaaaaaaaaaaa", true}), s2 + 100));
  EXPECT_EQ(DeviceStatus(s), "online");
  // A graceful stop of the second connection.
  ASSERT_TRUE(s.Store(Status(false, s2 + 9000, {s2, "bbbbbbbbbbbbbbbb", false}), s2 + 9001));
  EXPECT_EQ(DeviceStatus(s), "offline");
  // Senders without a session (SPEC minimum): the newer timestamp wins, as before.
  const Identity other{"f1", "l1", "press-1", "edge-2"};
  ASSERT_TRUE(s.Store(Status(false, s1 + 9000, {}, other), s1 + 9001));
  ASSERT_TRUE(s.Store(Status(true, s1 + 8000, {}, other), s1 + 9002));
  EXPECT_EQ(DeviceStatus(s, "edge-2"), "offline");
}

// Defects 3 and 5: dedup was a global UNIQUE(msg_id): two devices sharing an id (or one device
// whose spool was reset) lost each other's alerts as "duplicates". The key is now
// (device, asset, msg_id).
TEST_F(FleetStoreTest, DedupIsPerDeviceAndAsset) {
  auto store = OpenFleetStore("sqlite:" + dir_ + "/fleet.db");
  ASSERT_TRUE(store) << store.error().message;
  auto& s = **store;
  const int64_t t0 = 1800000000000;
  const Identity a{"f1", "l1", "press-1", "clone"}, b{"f1", "l1", "press-2", "clone"},
      c{"f1", "l1", "press-1", "edge-9"};
  for (const Identity* id : {&a, &b, &c}) {
    // The same msg_id, as a cloned image with the same device id or a reset spool produces.
    auto m = Parsed(id->AlertsTopic(),
                    telemetry::ScorePayload(MakeDecision(true, t0), *id, MessageId{1, 1}));
    m.msg_id = "clone-1-1";
    auto r = s.Store(m, t0 + 1);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_TRUE(*r) << id->asset_id << "/" << id->device_id << " was dropped as a duplicate";
    r = s.Store(m, t0 + 2);  // a real redelivery is still a duplicate
    ASSERT_TRUE(r);
    EXPECT_FALSE(*r);
  }
  EXPECT_EQ(s.Alerts(0, 100)->size(), 3u);
}

// A database from before schema versions (UNIQUE(msg_id), no status order) keeps its rows and
// gets the new dedup key and status order (version 2) and the console's tables (3) on open.
TEST_F(FleetStoreTest, MigratesAnUnversionedDatabase) {
  const std::string path = dir_ + "/v1.db";
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, R"sql(
CREATE TABLE devices(device_id TEXT PRIMARY KEY, factory_id TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL DEFAULT '', status_ms INTEGER NOT NULL DEFAULT 0,
  last_seen_ms INTEGER NOT NULL DEFAULT 0, model_version TEXT NOT NULL DEFAULT '');
CREATE TABLE alerts(msg_id TEXT UNIQUE, device_id TEXT NOT NULL, factory_id TEXT NOT NULL,
  line_id TEXT NOT NULL, asset_id TEXT NOT NULL, ts_ms INTEGER NOT NULL, timestamp TEXT NOT NULL,
  anomaly_score REAL, severity TEXT NOT NULL, top_sensors TEXT NOT NULL,
  model_version TEXT NOT NULL, seq INTEGER NOT NULL, received_ms INTEGER NOT NULL);
INSERT INTO alerts VALUES('dev-1-1', 'dev', 'f1', 'l1', 'a1', 1, '1970', 0.5, 'HIGH', '[]', '1',
  1, 2);
INSERT INTO devices(device_id, status, status_ms) VALUES('dev', 'online', 1800000000000);
)sql",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto store = OpenFleetStore("sqlite:" + path);
  ASSERT_TRUE(store) << store.error().message;
  EXPECT_EQ((*store)->Alerts(0, 10)->size(), 1u);
  const Identity other{"f1", "l1", "a2", "dev2"};
  auto m = Parsed(other.AlertsTopic(), telemetry::ScorePayload(MakeDecision(true, 1800000000000),
                                                               other, MessageId{1, 1}));
  m.msg_id = "dev-1-1";
  auto r = (*store)->Store(m, 1800000000001);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(*r);
  EXPECT_EQ(DeviceStatus(**store, "dev"), "online");
  // An older offline does not win over the migrated status; a newer one does.
  const Identity dev{"f1", "l1", "a1", "dev"};
  ASSERT_TRUE((*store)->Store(Status(false, 1700000000000, {}, dev), 1800000000002));
  EXPECT_EQ(DeviceStatus(**store, "dev"), "online");
  ASSERT_TRUE((*store)->Store(Status(false, 1800000000500, {}, dev), 1800000000600));
  EXPECT_EQ(DeviceStatus(**store, "dev"), "offline");
  store->reset();
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(st, 0), 3);
  sqlite3_finalize(st);
  // Version 3: the console's tables and an alert's evidence columns came with the migration.
  for (const char* q : {"SELECT event_id, image_ref FROM alerts", "SELECT hash FROM console_tokens",
                        "SELECT id FROM audit_log", "SELECT device_id FROM device_assets",
                        "SELECT name FROM rollout_status"}) {
    EXPECT_EQ(sqlite3_exec(db, q, nullptr, nullptr, nullptr), SQLITE_OK)
        << q << ": " << sqlite3_errmsg(db);
  }
  sqlite3_close(db);
}

// Defect 9: impossible timestamps and ids were stored: a status stamped 2099 froze a device,
// 2026-02-31, +026 and -001 years went in, ids with NUL, newline or a right-to-left override
// faked lines in `fleet status`. Each is now refused with its own reason.
TEST(FleetMessage, RefusesImpossibleTimestampsAndIds) {
  auto good = telemetry::ScoreJson(MakeDecision(true, 1800000000000), kId, MessageId{1, 1});
  for (const char* ts : {"2026-02-31T00:00:00Z", "2025-02-29T12:00:00Z", "+026-01-01T00:00:00Z",
                         "-001-01-01T00:00:00Z", "2026-1-01T00:00:00.0Z", "2026-01-01T24:00:00Z",
                         "2026-01-01T00:00:00 Z", "20260-01-01T00:00:00Z"}) {
    auto j = good;
    j["timestamp"] = ts;
    auto o = ParseFleetMessage(kId.AlertsTopic(), j.dump());
    EXPECT_EQ(o.reason, Malformed::kBadTimestamp) << ts << ": " << o.detail;
  }
  auto leap = good;
  leap["timestamp"] = "2024-02-29T12:00:00Z";
  EXPECT_EQ(ParseFleetMessage(kId.AlertsTopic(), leap.dump()).reason, Malformed::kNone);

  const int64_t now = 1800000000000;
  auto future = good;
  future["timestamp"] = "2099-01-01T00:00:00Z";
  auto o = ParseFleetMessage(kId.AlertsTopic(), future.dump());
  ASSERT_EQ(o.reason, Malformed::kNone);
  std::string detail;
  EXPECT_EQ(CheckClock(o.message, now, kDefaultMaxClockSkewMs, &detail), Malformed::kBadTimestamp);
  EXPECT_NE(detail.find("ahead of the fleet's clock"), std::string::npos) << detail;
  o = ParseFleetMessage(kId.AlertsTopic(), good.dump());
  EXPECT_EQ(CheckClock(o.message, now, kDefaultMaxClockSkewMs, nullptr), Malformed::kNone);
  auto epoch = good;
  epoch["timestamp"] = "1970-01-01T00:00:01Z";
  o = ParseFleetMessage(kId.AlertsTopic(), epoch.dump());
  EXPECT_EQ(CheckClock(o.message, now, kDefaultMaxClockSkewMs, nullptr), Malformed::kBadTimestamp);
  auto frozen =
      Parsed(kId.StatusTopic(),
             StatusPayload(std::chrono::system_clock::time_point{std::chrono::milliseconds(now)},
                           kId, true, {4070908800000, "", false}));  // session in 2099
  EXPECT_EQ(CheckClock(frozen, now, kDefaultMaxClockSkewMs, nullptr), Malformed::kBadTimestamp);

  for (const std::string& dev : {std::string("edge\0x", 6), std::string("edge\nFAKE"),
                                 std::string("edge\xe2\x80\xae"
                                             "1"),
                                 std::string("edge 1"), std::string(65, 'x')}) {
    const Identity bad{"f1", "l1", "press-1", dev};
    auto st = ParseFleetMessage(
        bad.StatusTopic(),
        R"({"device_id":"x","status":"online","timestamp":"2027-01-15T08:00:00Z"})");
    EXPECT_EQ(st.reason, Malformed::kBadId) << dev;
    auto j = good;
    j["device_id"] = dev;
    EXPECT_EQ(ParseFleetMessage(kId.AlertsTopic(), j.dump()).reason, Malformed::kBadId) << dev;
  }
  auto rtl = good;
  rtl["top_sensors"] = {"rms\xe2\x80\xae"};
  EXPECT_EQ(ParseFleetMessage(kId.AlertsTopic(), rtl.dump()).reason, Malformed::kBadId);
  auto nl = good;
  nl["model_version"] = "3\nedge-7  online";
  EXPECT_EQ(ParseFleetMessage(kId.AlertsTopic(), nl.dump()).reason, Malformed::kBadId);
  auto id = good;
  id["msg_id"] = "edge-1-1-1\r";
  EXPECT_EQ(ParseFleetMessage(kId.AlertsTopic(), id.dump()).reason, Malformed::kBadId);
  EXPECT_STREQ(MalformedName(Malformed::kBadId), "bad_id");
  EXPECT_STREQ(MalformedName(Malformed::kBadTimestamp), "bad_timestamp");
}

// Defect 5: two live processes with one device id replace each other on the broker; their
// `online`s alternate. A restart (a new process) or a redelivery is not that.
TEST(FleetIngest, DuplicateDeviceDetectorSpotsTwoLiveProcesses) {
  DuplicateDeviceDetector d(600000);
  EXPECT_EQ(d.OnOnline("dev", "aaaa", 1, 1000), "");
  EXPECT_EQ(d.OnOnline("dev", "aaaa", 2, 2000), "");      // a reconnect of the same process
  EXPECT_EQ(d.OnOnline("dev", "bbbb", 3, 3000), "");      // a restart, so far
  EXPECT_EQ(d.OnOnline("dev", "aaaa", 2, 3500), "");      // a's old online redelivered
  EXPECT_EQ(d.OnOnline("dev", "aaaa", 4, 4000), "bbbb");  // a is back: two live processes
  EXPECT_EQ(d.OnOnline("other", "bbbb", 5, 5000), "");
  EXPECT_EQ(d.OnOnline("dev2", "cccc", 1, 1000), "");
  EXPECT_EQ(d.OnOnline("dev2", "dddd", 2, 2000), "");
  EXPECT_EQ(d.OnOnline("dev2", "cccc", 3, 2000 + 600001), "");  // outside the window
}

TEST(FleetTopic, ParsesTheEdgeOtaTopicAndNothingElseNew) {
  auto p = telemetry::ParseTopic(kId.EdgeTopic("ota"));
  EXPECT_EQ(p.kind, TopicKind::kOta);
  EXPECT_EQ(p.factory_id, "f1");
  EXPECT_EQ(p.device_id, "edge-1");
  EXPECT_TRUE(p.line_id.empty());
  EXPECT_EQ(telemetry::ParseTopic(kId.StatusTopic()).kind, TopicKind::kStatus);
  EXPECT_EQ(telemetry::ParseTopic(kId.AlertsTopic()).kind, TopicKind::kAlerts);
  for (const char* t : {"factory/f1/edge/edge-1/other", "factory/f1/edge//ota",
                        "factory/f1/edge/edge-1/ota/x", "factory/f1/line/l1/asset/a1/ota",
                        "plant/f1/edge/edge-1/ota", "factory/f1/edge/edge-1/OTA"}) {
    EXPECT_EQ(telemetry::ParseTopic(t).kind, TopicKind::kUnknown) << t;
  }
}

TEST(FleetMessage, ParsesTheOtaStateTheAgentSends) {
  OtaShape s{"rolled_back", 1, 2, false, 1, "misbehaviour during probation: alert storm", 1, 0, 1};
  auto payload = WirePayload(AgentOtaState(s, 1714564800), kId, 1714564800250, 9);
  auto o = ParseFleetMessage(kId.EdgeTopic("ota"), payload);
  ASSERT_EQ(o.reason, Malformed::kNone) << o.detail;
  const FleetMessage& m = o.message;
  EXPECT_EQ(m.kind, TopicKind::kOta);
  EXPECT_EQ(m.device_id, "edge-1");
  EXPECT_EQ(m.factory_id, "f1");
  EXPECT_EQ(m.msg_id, "edge-1-1-9");
  EXPECT_EQ(m.ts_ms, 1714564800250);
  EXPECT_EQ(m.ota.event, "rolled_back");
  EXPECT_EQ(m.ota.model, "press-anomaly");
  EXPECT_EQ(m.ota.state, "serving");
  EXPECT_EQ(m.ota.current_version, 1);
  EXPECT_EQ(m.ota.backup_version, 2);
  EXPECT_EQ(m.ota.highest_version, 2);
  EXPECT_FALSE(m.ota.in_probation);
  EXPECT_FALSE(m.ota.stale);
  EXPECT_EQ(m.ota.rollbacks, 1);
  EXPECT_EQ(m.ota.model_age_s, 60);
  EXPECT_EQ(m.ota.last_rollback_reason, "misbehaviour during probation: alert storm");
  EXPECT_EQ(m.ota.reason, "misbehaviour during probation: alert storm");

  // A device without a model yet, on probation, and a refusal's reason (the updater's error).
  auto none = nlohmann::json::parse(payload);
  none["state"] = "no-model";
  none["current_version"] = 0;
  EXPECT_EQ(ParseFleetMessage(kId.EdgeTopic("ota"), none.dump()).reason, Malformed::kNone);
  OtaShape prob{"installed", 3, 1, true};
  auto p = ParseFleetMessage(kId.EdgeTopic("ota"),
                             WirePayload(AgentOtaState(prob, 1714564800), kId, 1714564800000, 1));
  ASSERT_EQ(p.reason, Malformed::kNone) << p.detail;
  EXPECT_EQ(p.message.ota.state, "probation");
  EXPECT_TRUE(p.message.ota.in_probation);
  auto refused = nlohmann::json::parse(payload);
  refused["event"] = "refused";
  refused["last_error"] = "v4: quality 0.61 below 0.9";
  auto r = ParseFleetMessage(kId.EdgeTopic("ota"), refused.dump());
  ASSERT_EQ(r.reason, Malformed::kNone) << r.detail;
  EXPECT_EQ(r.message.ota.reason, "v4: quality 0.61 below 0.9");
}

TEST(FleetMessage, ClassifiesMalformedOtaState) {
  const auto good =
      nlohmann::json::parse(WirePayload(AgentOtaState({}, 1714564800), kId, 1714564800000, 1));
  ASSERT_EQ(ParseFleetMessage(kId.EdgeTopic("ota"), good.dump()).reason, Malformed::kNone);
  struct Case {
    const char* field;
    nlohmann::json value;
  } cases[] = {{"event", 3},
               {"event", ""},
               {"event", nullptr},
               {"current_version", "2"},
               {"current_version", 1.5},
               {"current_version", -1},
               {"current_version", nullptr},
               {"stale", "no"},
               {"stale", 0},
               {"stale", nullptr},
               {"state", "broken"},
               {"state", 1},
               {"device_id", "edge-2"},
               {"device_id", nullptr},
               {"timestamp", nullptr},
               {"msg_id", 7},
               {"backup_version", "1"},
               {"in_probation", "yes"},
               {"last_rollback_reason", 1},
               {"model", false},
               {"updates", "many"},
               {"updates", {{"installed", "one"}}}};
  for (const auto& c : cases) {
    auto j = good;
    j[c.field] = c.value;
    auto o = ParseFleetMessage(kId.EdgeTopic("ota"), j.dump());
    EXPECT_EQ(o.reason, Malformed::kWrongType) << c.field << " = " << c.value.dump();
    EXPECT_FALSE(o.detail.empty());
  }
  // A string that is not a real UTC time is a bad timestamp (counted apart since issue 17).
  auto yesterday = good;
  yesterday["timestamp"] = "yesterday";
  EXPECT_EQ(ParseFleetMessage(kId.EdgeTopic("ota"), yesterday.dump()).reason,
            Malformed::kBadTimestamp);
  for (const char* k : {"event", "current_version", "stale", "state", "device_id", "timestamp"}) {
    auto j = good;
    j.erase(k);
    EXPECT_EQ(ParseFleetMessage(kId.EdgeTopic("ota"), j.dump()).reason, Malformed::kWrongType)
        << "without " << k;
  }
  EXPECT_EQ(ParseFleetMessage(kId.EdgeTopic("ota"), "[1]").reason, Malformed::kWrongType);
  EXPECT_EQ(ParseFleetMessage(kId.EdgeTopic("ota"), "{oops").reason, Malformed::kBadJson);
  EXPECT_EQ(ParseFleetMessage("factory/f1/edge/edge-1/otaa", good.dump()).reason,
            Malformed::kUnknownTopic);
}

// Shared subscriptions for the SPEC topics, a plain one for the retained OTA state.
TEST(FleetIngest, OtaStateIsSubscribedPlainly) {
  auto f = IngestTopicFilters("g1");
  ASSERT_EQ(f.size(), 5u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(f[i].rfind("$share/g1/factory/", 0), 0u) << f[i];
  EXPECT_EQ(f[4], "factory/+/edge/+/ota");
  auto plain = IngestTopicFilters("");
  ASSERT_EQ(plain.size(), 5u);
  for (const auto& t : plain) EXPECT_EQ(t.find("$share"), std::string::npos) << t;
}

TEST_F(FleetStoreTest, OtaStateNewestWinsAndHistoryDedupsSqlite) {
  auto store = OpenFleetStore("sqlite:" + dir_ + "/fleet.db");
  ASSERT_TRUE(store) << store.error().message;
  testing::ExpectOtaStoreBehaviour(**store);
}

TEST_F(FleetStoreTest, DevicesWithoutOtaStateHaveNone) {
  auto store = OpenFleetStore("sqlite:" + dir_ + "/fleet.db");
  ASSERT_TRUE(store) << store.error().message;
  auto a = Parsed(kId.AlertsTopic(),
                  telemetry::ScorePayload(MakeDecision(true, 1714564800000), kId, MessageId{1, 1}));
  ASSERT_TRUE((*store)->Store(a, 1714564800001));
  auto d = (*store)->Devices();
  ASSERT_TRUE(d);
  ASSERT_EQ(d->size(), 1u);
  EXPECT_FALSE((*d)[0].has_ota);
  auto ev = (*store)->OtaEvents(0, "", 10);
  ASSERT_TRUE(ev);
  EXPECT_TRUE(ev->empty());
}

// A fleet database made before OTA state existed opens, keeps its data and gains the OTA tables.
TEST_F(FleetStoreTest, OpensAFleetDatabaseFromBeforeOtaState) {
  const std::string path = dir_ + "/old.db";
  {
    auto store = OpenFleetStore("sqlite:" + path);
    ASSERT_TRUE(store) << store.error().message;
    auto a = Parsed(kId.AlertsTopic(), telemetry::ScorePayload(MakeDecision(true, 1714564800000),
                                                               kId, MessageId{1, 1}));
    ASSERT_TRUE((*store)->Store(a, 1714564800001));
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(db, "DROP TABLE ota_events; DROP TABLE ota_state;", nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(db);
  auto store = OpenFleetStore("sqlite:" + path);
  ASSERT_TRUE(store) << store.error().message;
  EXPECT_EQ((*store)->Alerts(0, 10)->size(), 1u);
  auto m =
      testing::ParsedOta(kId, WirePayload(AgentOtaState({}, 1714564800), kId, 1714564800500, 2));
  auto r = (*store)->Store(m, 1714564800600);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(*r);
  auto d = (*store)->Devices();
  ASSERT_TRUE(d);
  ASSERT_EQ(d->size(), 1u);
  EXPECT_TRUE((*d)[0].has_ota);
  EXPECT_EQ((*d)[0].ota.ota.current_version, 1);
}

TEST(FleetStore, BadUrlsAreClearErrors) {
  auto r = OpenFleetStore("mysql://x");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("mysql://x"), std::string::npos);
  EXPECT_FALSE(OpenFleetStore(""));
  auto pg = OpenFleetStore("postgresql://nobody@127.0.0.1:1/none");
  ASSERT_FALSE(pg);
}

// The ingest store and the console's SQL layer read `--db` through one parser: the same strings
// are accepted and refused, with the same message.
TEST(FleetStore, StoreAndSqlLayerReadTheSameDatabaseUrls) {
  EXPECT_EQ(ParseDbUrl("sqlite:/tmp/a.db")->target, "/tmp/a.db");
  EXPECT_FALSE(ParseDbUrl("fleet.db")->postgres);
  EXPECT_TRUE(ParseDbUrl("postgres://u@127.0.0.1/db")->postgres);
  EXPECT_EQ(ParseDbUrl("postgresql://u@127.0.0.1/db")->target, "postgresql://u@127.0.0.1/db");
  for (const std::string bad : {"", "mysql://x"}) {
    auto store = OpenFleetStore(bad);
    auto sql = SqlDb::Open(bad);
    ASSERT_FALSE(store);
    ASSERT_FALSE(sql);
    EXPECT_EQ(store.error().message, sql.error().message) << bad;
  }
}

}  // namespace
}  // namespace tend::fleet
