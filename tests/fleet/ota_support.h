// OTA state messages as the agent sends them (ota::StateStatusJson plus the fields
// ota::Updater::StatusJson and the agent's OtaSupervisor add), and the store behaviour both
// fleet stores (SQLite, PostgreSQL) must show for them.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>

#include "fleet/message.h"
#include "fleet/store.h"
#include "ota/updater.h"
#include "telemetry/identity.h"
#include "telemetry/payload.h"

namespace tend::fleet::testing {

struct OtaShape {
  std::string event = "startup";
  int64_t current = 1, backup = -1;  // -1: no backup slot
  bool probation = false;
  int64_t rollbacks = 0;
  std::string rollback_reason;
  int64_t installed = 0, refused = 0, rolled_back = 0;
};

// The payload the agent hands to Telemetry::PublishDeviceState("ota", ...) at unix time `now`.
inline nlohmann::json AgentOtaState(const OtaShape& s, int64_t now) {
  ota::OtaState st;
  st.model_name = "press-anomaly";
  st.current = ota::ModelSlot{"press-anomaly.v" + std::to_string(s.current) + ".onnx",
                              s.current,
                              std::string(64, 'a'),
                              1234,
                              now - 60,
                              0.97};
  if (s.backup >= 0) {
    st.backup = ota::ModelSlot{"press-anomaly.v" + std::to_string(s.backup) + ".onnx",
                               s.backup,
                               std::string(64, 'b'),
                               1200,
                               now - 7200,
                               0.95};
  }
  st.highest_version = std::max(s.current, s.backup);
  st.probation_until = s.probation ? now + 3600 : 0;
  st.rollbacks = s.rollbacks;
  st.last_rollback_reason = s.rollback_reason;
  auto j = ota::StateStatusJson(st, now, 56 * 86400);
  j["profile"] = "x86-cpu-fp32";
  j["checks"] = 3;
  j["updates"] = {{"installed", s.installed},
                  {"refused", s.refused},
                  {"rolled_back", s.rolled_back},
                  {"failed", 0}};
  j["failures"] = 0;
  j["installs"] = s.installed;
  j["last_check"] = "";
  j["last_check_unix"] = now;
  j["last_result"] = s.rolled_back > 0 ? "rolled back: " + s.rollback_reason : "up to date";
  j["last_error"] = "";
  j["event"] = s.event;
  j["serving"] = {{"windows", 10}, {"alerts", 0}};
  return j;
}

// What Telemetry adds before publishing: device_id, msg_id and the timestamp.
inline std::string WirePayload(nlohmann::json j, const telemetry::Identity& id, int64_t ts_ms,
                               int64_t seq) {
  j["device_id"] = id.device_id;
  j["msg_id"] = telemetry::FormatMessageId(id.device_id, {1, seq});
  j["timestamp"] = telemetry::FormatIso8601(
      std::chrono::system_clock::time_point{std::chrono::milliseconds(ts_ms)});
  return j.dump();
}

inline FleetMessage ParsedOta(const telemetry::Identity& id, const std::string& payload) {
  auto o = ParseFleetMessage(id.EdgeTopic("ota"), payload);
  EXPECT_EQ(o.reason, Malformed::kNone) << o.detail;
  return o.message;
}

// Startup, install, rollback, a late older message and a redelivery: the newest state wins, every
// distinct message is in the history once, the redelivery is a duplicate.
inline void ExpectOtaStoreBehaviour(FleetStore& s) {
  const telemetry::Identity id{"f1", "l1", "press-9", "edge-ota"};
  const int64_t t0 = 1714564800000, now = t0 / 1000;
  auto startup = ParsedOta(id, WirePayload(AgentOtaState({}, now), id, t0, 1));
  OtaShape installed{"installed", 2, 1, true, 0, "", 1, 0, 0};
  auto inst = ParsedOta(id, WirePayload(AgentOtaState(installed, now), id, t0 + 1000, 2));
  OtaShape rolled{
      "rolled_back", 1, 2, false, 1, "misbehaviour during probation: alert storm", 1, 0, 1};
  auto back = ParsedOta(id, WirePayload(AgentOtaState(rolled, now), id, t0 + 2000, 3));
  OtaShape refused{"refused", 1, 2, false, 1, "misbehaviour during probation: alert storm",
                   1,         1, 1};
  auto late = ParsedOta(id, WirePayload(AgentOtaState(refused, now), id, t0 + 1500, 4));
  for (const auto* m : {&startup, &inst, &back, &late}) {
    auto r = s.Store(*m, t0 + 5000);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_TRUE(*r) << m->ota.event;
  }
  auto again = s.Store(back, t0 + 6000);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_FALSE(*again);  // redelivery

  auto devices = s.Devices();
  ASSERT_TRUE(devices) << devices.error().message;
  ASSERT_EQ(devices->size(), 1u);
  const DeviceRow& d = (*devices)[0];
  EXPECT_EQ(d.device_id, "edge-ota");
  ASSERT_TRUE(d.has_ota);
  EXPECT_EQ(d.ota.ota.event, "rolled_back");  // the late, older "refused" did not win
  EXPECT_EQ(d.ota.ota.current_version, 1);
  EXPECT_EQ(d.ota.ota.backup_version, 2);
  EXPECT_EQ(d.ota.ota.highest_version, 2);
  EXPECT_EQ(d.ota.ota.state, "serving");
  EXPECT_FALSE(d.ota.ota.stale);
  EXPECT_EQ(d.ota.ota.rollbacks, 1);
  EXPECT_EQ(d.ota.ota.model, "press-anomaly");
  EXPECT_EQ(d.ota.ota.last_rollback_reason, "misbehaviour during probation: alert storm");
  EXPECT_EQ(d.ota.ts_ms, t0 + 2000);
  EXPECT_EQ(d.ota.msg_id, "edge-ota-1-3");

  auto all = s.OtaEvents(0, "", 100);
  ASSERT_TRUE(all) << all.error().message;
  ASSERT_EQ(all->size(), 4u);
  EXPECT_EQ((*all)[0].event, "startup");
  EXPECT_EQ((*all)[1].event, "installed");
  EXPECT_EQ((*all)[1].current_version, 2);
  EXPECT_EQ((*all)[1].backup_version, 1);
  EXPECT_EQ((*all)[2].event, "refused");
  EXPECT_EQ((*all)[3].event, "rolled_back");
  EXPECT_EQ((*all)[3].reason, "misbehaviour during probation: alert storm");
  auto rb = s.OtaEvents(0, "rolled_back", 100);
  ASSERT_TRUE(rb);
  ASSERT_EQ(rb->size(), 1u);
  EXPECT_EQ((*rb)[0].device_id, "edge-ota");
  EXPECT_EQ((*rb)[0].timestamp, "2024-05-01T12:00:02.000Z");
  auto since = s.OtaEvents(t0 + 1500, "", 100);
  ASSERT_TRUE(since);
  EXPECT_EQ(since->size(), 2u);
  auto ids = s.MessageIds("ota_events");
  ASSERT_TRUE(ids);
  EXPECT_EQ(ids->size(), 4u);

  // In probation: state "probation", and a stale flag as the device reported it.
  OtaShape prob{"installed", 3, 1, true, 1, "misbehaviour during probation: alert storm", 2, 1, 1};
  auto j = AgentOtaState(prob, now);
  j["stale"] = true;
  auto p = ParsedOta(id, WirePayload(j, id, t0 + 3000, 5));
  ASSERT_TRUE(s.Store(p, t0 + 7000));
  devices = s.Devices();
  ASSERT_TRUE(devices);
  EXPECT_EQ((*devices)[0].ota.ota.state, "probation");
  EXPECT_TRUE((*devices)[0].ota.ota.in_probation);
  EXPECT_TRUE((*devices)[0].ota.ota.stale);
  EXPECT_EQ((*devices)[0].ota.ota.current_version, 3);
}

}  // namespace tend::fleet::testing
