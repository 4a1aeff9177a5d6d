// Fleet-side parsing of device messages (SPEC checks, malformed classification) and the SQLite
// store (dedup by msg_id, device status, alerts --since).
#include <gtest/gtest.h>

#include <filesystem>

#include "fleet/message.h"
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
               {"timestamp", "yesterday"},
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

TEST(FleetStore, BadUrlsAreClearErrors) {
  auto r = OpenFleetStore("mysql://x");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("mysql://x"), std::string::npos);
  EXPECT_FALSE(OpenFleetStore(""));
  auto pg = OpenFleetStore("postgresql://nobody@127.0.0.1:1/none");
  ASSERT_FALSE(pg);
}

}  // namespace
}  // namespace tend::fleet
