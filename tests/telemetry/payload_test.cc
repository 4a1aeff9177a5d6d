// Topics, identity validation, broker URLs and SPEC payloads, checked field by field.
#include "telemetry/payload.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "decide/drift.h"
#include "telemetry/identity.h"
#include "telemetry/mqtt_url.h"

namespace tend::telemetry {
namespace {

Identity Id() { return {"f1", "l2", "press-7", "edge-42"}; }

TEST(Identity, TopicsFollowSpec) {
  auto id = Id();
  ASSERT_TRUE(id.Validate());
  EXPECT_EQ(id.ScoresTopic(), "factory/f1/line/l2/asset/press-7/scores");
  EXPECT_EQ(id.AlertsTopic(), "factory/f1/line/l2/asset/press-7/alerts");
  EXPECT_EQ(id.HealthTopic(), "factory/f1/line/l2/asset/press-7/health");
  EXPECT_EQ(id.StatusTopic(), "factory/f1/edge/edge-42/status");
  EXPECT_EQ(id.ClientId(), "edge_edge-42");
  EXPECT_EQ(kScoresQos, 0);
  EXPECT_EQ(kAlertsQos, 1);
  EXPECT_EQ(kHealthQos, 0);
  EXPECT_EQ(kStatusQos, 1);
  EXPECT_TRUE(kStatusRetained);
}

TEST(Identity, RejectsWildcardsSlashesAndEmpty) {
  for (const char* bad : {"", "a/b", "a+", "#", "a b"}) {
    auto id = Id();
    id.device_id = bad;
    auto st = id.Validate();
    ASSERT_FALSE(st) << bad;
    EXPECT_NE(st.error().message.find("device_id"), std::string::npos);
  }
  auto id = Id();
  id.factory_id = std::string(65, 'x');
  EXPECT_FALSE(id.Validate());
}

TEST(Identity, ParseTopicRoundTrips) {
  auto id = Id();
  auto p = ParseTopic(id.AlertsTopic());
  EXPECT_EQ(p.kind, TopicKind::kAlerts);
  EXPECT_EQ(p.factory_id, "f1");
  EXPECT_EQ(p.line_id, "l2");
  EXPECT_EQ(p.asset_id, "press-7");
  EXPECT_EQ(ParseTopic(id.ScoresTopic()).kind, TopicKind::kScores);
  EXPECT_EQ(ParseTopic(id.HealthTopic()).kind, TopicKind::kHealth);
  auto s = ParseTopic(id.StatusTopic());
  EXPECT_EQ(s.kind, TopicKind::kStatus);
  EXPECT_EQ(s.device_id, "edge-42");
  EXPECT_EQ(ParseTopic("factory/f/line/l/asset/a/other").kind, TopicKind::kUnknown);
  EXPECT_EQ(ParseTopic("factory//line/l/asset/a/alerts").kind, TopicKind::kUnknown);
  EXPECT_EQ(ParseTopic("x/f/edge/d/status").kind, TopicKind::kUnknown);
}

// The one list the publisher and the ACL generator share: SPEC's four topics plus the OTA state,
// each parsing back to its kind (the fleet side reads what the devices write).
TEST(Identity, PublishedTopicsListEveryTopicWithSpecQosAndRetain) {
  auto t = PublishedTopics(Id());
  ASSERT_EQ(t.size(), 5u);
  EXPECT_EQ(t[0].topic, "factory/f1/line/l2/asset/press-7/scores");
  EXPECT_EQ(t[1].topic, "factory/f1/line/l2/asset/press-7/alerts");
  EXPECT_EQ(t[2].topic, "factory/f1/line/l2/asset/press-7/health");
  EXPECT_EQ(t[3].topic, "factory/f1/edge/edge-42/status");
  EXPECT_EQ(t[4].topic, "factory/f1/edge/edge-42/ota");
  const int qos[] = {0, 1, 0, 1, 1};
  const bool retained[] = {false, false, false, true, true};
  for (size_t i = 0; i < t.size(); ++i) {
    EXPECT_EQ(t[i].qos, qos[i]) << t[i].topic;
    EXPECT_EQ(t[i].retained, retained[i]) << t[i].topic;
    EXPECT_EQ(ParseTopic(t[i].topic).kind, t[i].kind) << t[i].topic;
    EXPECT_NE(t[i].kind, TopicKind::kUnknown) << t[i].topic;
  }
}

// docs/spec.md's topic table is exactly PublishedTopics with SPEC's placeholders, QoS and retain
// flags (#16 item 8: the page is the contract as the code implements it).
TEST(Identity, SpecPageListsExactlyThePublishedTopics) {
  std::ifstream f(std::string(TEND_SOURCE_DIR) + "/docs/spec.md");
  ASSERT_TRUE(f) << "docs/spec.md";
  std::vector<TopicSpec> documented;
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("| `factory/", 0) != 0) continue;
    std::vector<std::string> cells;
    std::istringstream row(line.substr(1));
    for (std::string c; std::getline(row, c, '|');) {
      c.erase(0, c.find_first_not_of(" `"));
      c.erase(c.find_last_not_of(" `") + 1);
      cells.push_back(c);
    }
    ASSERT_GE(cells.size(), 3u) << line;
    documented.push_back({TopicKind::kUnknown, cells[0], std::stoi(cells[1]), cells[2] == "yes"});
  }
  const auto published =
      PublishedTopics({"{factory_id}", "{line_id}", "{asset_id}", "{device_id}"});
  ASSERT_EQ(documented.size(), published.size());
  for (size_t i = 0; i < published.size(); ++i) {
    EXPECT_EQ(documented[i].topic, published[i].topic);
    EXPECT_EQ(documented[i].qos, published[i].qos) << published[i].topic;
    EXPECT_EQ(documented[i].retained, published[i].retained) << published[i].topic;
  }
}

// A listening loopback socket on a free port; closed by the destructor.
struct Listener {
  int fd = -1, port = 0;
  Listener() {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd, 4);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~Listener() { ::close(fd); }
};

// #16 item 10: "cannot connect (rc -1)" said nothing; the reason comes from the broker's refusal
// or, for Paho's catch-all rc -1, from a TCP probe of the address.
TEST(BrokerUrl, ConnectFailuresSayWhy) {
  auto addr = ParseBrokerUrl("mqtt://127.0.0.1:1883");
  ASSERT_TRUE(addr);
  using std::chrono::milliseconds;
  EXPECT_EQ(DescribeConnectFailure(*addr, -1, 0x87, milliseconds(500)),
            "the broker refused the connection: Not authorized (MQTT 5 reason code 135)");
  EXPECT_EQ(DescribeConnectFailure(*addr, 4, 0, milliseconds(500)),
            "the broker refused the connection: bad user name or password");
  int closed_port = 0;
  {
    Listener l;
    closed_port = l.port;
    addr->port = l.port;
    // Something listens but is no MQTT broker (or the CONNECT failed for another reason).
    EXPECT_EQ(DescribeConnectFailure(*addr, -1, 0, milliseconds(500)),
              "TCP to 127.0.0.1:" + std::to_string(l.port) +
                  " works, but the MQTT CONNECT failed (Paho rc -1)");
    addr->tls = true;
    EXPECT_NE(DescribeConnectFailure(*addr, -1, 0, milliseconds(500)).find("TLS handshake"),
              std::string::npos);
    addr->tls = false;
  }
  addr->port = closed_port;  // nothing listens there now
  EXPECT_EQ(DescribeConnectFailure(*addr, -1, 0, milliseconds(500)), "Connection refused");
}

TEST(BrokerUrl, ParsesSchemesAndPorts) {
  auto a = ParseBrokerUrl("mqtt://broker.local");
  ASSERT_TRUE(a);
  EXPECT_FALSE(a->tls);
  EXPECT_EQ(a->port, 1883);
  EXPECT_EQ(a->paho_uri, "tcp://broker.local:1883");
  auto b = ParseBrokerUrl("mqtts://10.0.0.2:9883");
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->tls);
  EXPECT_EQ(b->port, 9883);
  EXPECT_EQ(b->paho_uri, "ssl://10.0.0.2:9883");
  EXPECT_EQ(ParseBrokerUrl("mqtts://h")->port, 8883);
  for (const char* bad : {"http://h", "mqtt://", "mqtt://h:0", "mqtt://h:70000", "mqtt://h:x",
                          "mqtt://u:p@h", "h:1883"}) {
    auto r = ParseBrokerUrl(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().message.find(bad), std::string::npos) << r.error().message;
  }
}

TEST(Iso8601, FormatsUtcMillisecondsAndParsesBack) {
  using namespace std::chrono;
  system_clock::time_point t{milliseconds(1714564800123)};  // 2024-05-01T12:00:00.123Z
  EXPECT_EQ(FormatIso8601(t), "2024-05-01T12:00:00.123Z");
  auto ms = ParseIso8601Ms("2024-05-01T12:00:00.123Z");
  ASSERT_TRUE(ms);
  EXPECT_EQ(*ms, 1714564800123);
  EXPECT_EQ(*ParseIso8601Ms("2024-05-01T12:00:00Z"), 1714564800000);
  EXPECT_EQ(*ParseIso8601Ms("2024-05-01T12:00:00.5+00:00"), 1714564800500);
  for (const char* bad : {"", "2024-05-01", "2024-05-01T12:00:00", "2024-13-01T12:00:00Z",
                          "2024-05-01T12:00:00.Z", "2024-05-01T12:00:00+02:00", "yesterday"}) {
    EXPECT_FALSE(ParseIso8601Ms(bad)) << bad;
  }
}

TEST(Payload, ScoreHasSpecFieldsAndTypes) {
  Decision d;
  d.timestamp = std::chrono::system_clock::time_point{std::chrono::milliseconds(1714564800123)};
  d.anomaly_score = 0.123456f;
  d.severity = Severity::kHigh;
  d.is_alert = true;
  d.top_sensors = {"rms", "kurtosis"};
  d.latency_ms = 1.23456;
  d.model_version = "3.1";
  d.window_index = 77;
  auto j = nlohmann::json::parse(ScorePayload(d, Id(), MessageId{5, 9}));
  EXPECT_EQ(j["timestamp"], "2024-05-01T12:00:00.123Z");
  EXPECT_EQ(j["asset_id"], "press-7");
  ASSERT_TRUE(j["anomaly_score"].is_number_float());
  EXPECT_DOUBLE_EQ(j["anomaly_score"].get<double>(), 0.1235);
  EXPECT_EQ(j["is_alert"], true);
  EXPECT_EQ(j["severity"], "HIGH");
  EXPECT_EQ(j["top_sensors"], nlohmann::json::array({"rms", "kurtosis"}));
  EXPECT_EQ(j["device_id"], "edge-42");
  EXPECT_EQ(j["model_version"], "3.1");
  EXPECT_EQ(j["msg_id"], "edge-42-5-9");
  EXPECT_EQ(j["seq"], 9);
  EXPECT_EQ(j["boot"], 5);
  EXPECT_EQ(j["window_index"], 77);
  EXPECT_DOUBLE_EQ(j["latency_ms"].get<double>(), 1.235);
  // Redundant with the topic, so not repeated on every stroke; fail_safe only when it is true.
  EXPECT_FALSE(j.contains("factory_id"));
  EXPECT_FALSE(j.contains("line_id"));
  EXPECT_FALSE(j.contains("fail_safe"));
  // The monitors' fields only when the asset has them (docs/spec.md).
  for (const char* k : {"health", "health_cusum", "input_problems", "baseline_step"}) {
    EXPECT_FALSE(j.contains(k)) << k;
  }
  {
    Decision m = d;
    m.has_health = true;
    m.health = HealthState::kWarning;
    m.health_cusum = 8.123456f;
    m.input_problems = kFlatLine | kNonFinite;
    m.baseline_step = 0;
    auto mj = nlohmann::json::parse(ScorePayload(m, Id(), MessageId{5, 9}));
    EXPECT_EQ(mj["health"], "warning");
    EXPECT_DOUBLE_EQ(mj["health_cusum"].get<double>(), 8.1235);
    EXPECT_EQ(mj["input_problems"], "flat_line,non_finite");
    EXPECT_EQ(mj["baseline_step"], 0);
  }
  d.fail_safe = true;
  EXPECT_EQ(nlohmann::json::parse(ScorePayload(d, Id(), MessageId{5, 9}))["fail_safe"], true);
  d.fail_safe = false;
  // 4 decimals on the wire, not just after parsing.
  EXPECT_NE(ScorePayload(d, Id(), MessageId{5, 9}).find("\"anomaly_score\":0.1235,"),
            std::string::npos);
  for (auto [sev, name] : {std::pair{Severity::kLow, "LOW"}, {Severity::kMedium, "MEDIUM"}}) {
    d.severity = sev;
    EXPECT_EQ(nlohmann::json::parse(ScorePayload(d, Id(), {}))["severity"], name);
  }
  // #16.9: below every threshold is NONE on the wire (before: LOW, the first alert tier's word).
  d.severity = Severity::kNone;
  d.is_alert = false;
  EXPECT_EQ(nlohmann::json::parse(ScorePayload(d, Id(), {}))["severity"], "NONE");
  // The part/stroke number and the evidence reference only when the event has them.
  EXPECT_FALSE(j.contains("event_id"));
  EXPECT_FALSE(j.contains("image_ref"));
  EXPECT_FALSE(j.contains("part_id"));
  d.event_id = 4711;
  d.part_id = 90210;  // the PLC's part number (part trigger)
  d.evidence_ref = "evidence/press-7/4711.png";
  auto e = nlohmann::json::parse(ScorePayload(d, Id(), {}));
  EXPECT_EQ(e["event_id"], 4711);
  EXPECT_EQ(e["part_id"], 90210);
  EXPECT_EQ(e["image_ref"], "evidence/press-7/4711.png");
  d.event_id = -1;
  d.part_id = -1;
  d.evidence_ref.clear();
  d.anomaly_score = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(nlohmann::json::parse(ScorePayload(d, Id(), {}))["anomaly_score"].is_null());
}

TEST(Payload, HealthRoundsAndMergesExtras) {
  auto t = std::chrono::system_clock::time_point{std::chrono::seconds(1714564800)};
  nlohmann::json extra = {{"cpu_pct", 12.345}, {"gpu_pct", 0}, {"temp_c", 41.26}, {"mem_pct", 50}};
  auto j = nlohmann::json::parse(HealthPayload(t, Id(), MessageId{1, 2}, extra));
  EXPECT_EQ(j["timestamp"], "2024-05-01T12:00:00.000Z");
  EXPECT_EQ(j["device_id"], "edge-42");
  EXPECT_DOUBLE_EQ(j["cpu_pct"].get<double>(), 12.3);
  EXPECT_DOUBLE_EQ(j["gpu_pct"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(j["temp_c"].get<double>(), 41.3);
  EXPECT_EQ(j["mem_pct"], 50);
  EXPECT_EQ(j["msg_id"], "edge-42-1-2");
  // Unmeasured values are explicit nulls, never invented numbers.
  auto k = nlohmann::json::parse(HealthPayload(t, Id(), {}, nlohmann::json::object()));
  EXPECT_TRUE(k.contains("cpu_pct") && k["cpu_pct"].is_null());
  EXPECT_TRUE(k.contains("temp_c") && k["temp_c"].is_null());
}

TEST(Payload, StatusOnlineOffline) {
  auto t = std::chrono::system_clock::time_point{std::chrono::seconds(1714564800)};
  auto on = nlohmann::json::parse(StatusPayload(t, Id(), true));
  EXPECT_EQ(on, (nlohmann::json{{"device_id", "edge-42"},
                                {"status", "online"},
                                {"timestamp", "2024-05-01T12:00:00.000Z"}}));
  EXPECT_EQ(nlohmann::json::parse(StatusPayload(t, Id(), false))["status"], "offline");
  // Issue 17, defect 4: the connection's session stamp (and the process) travel with every
  // status, and the Last Will says it is one.
  auto will = nlohmann::json::parse(
      StatusPayload(t, Id(), false, {1714564800123, "0a1b2c3d4e5f6789", true}));
  EXPECT_EQ(will["session"], 1714564800123);
  EXPECT_EQ(will["instance"], "0a1b2c3d4e5f6789");
  EXPECT_EQ(will["will"], true);
  auto online = nlohmann::json::parse(
      StatusPayload(t, Id(), true, {1714564800123, "0a1b2c3d4e5f6789", false}));
  EXPECT_FALSE(online.contains("will"));
  EXPECT_EQ(online["session"], 1714564800123);
  EXPECT_EQ(NewInstanceId().size(), 16u);
  EXPECT_NE(NewInstanceId(), NewInstanceId());
}

// Issue 17, defect 9: the device refuses ids the fleet would refuse, at start, with the id shown.
TEST(Identity, IdsUseTheStrictAlphabet) {
  for (const char* bad : {"edge\n1", "edge\xe2\x80\xae", "edge:1", "\x7f", "caf\xc3\xa9"}) {
    auto id = Id();
    id.asset_id = bad;
    auto st = id.Validate();
    ASSERT_FALSE(st) << bad;
    EXPECT_NE(st.error().message.find("outside [A-Za-z0-9._-]"), std::string::npos)
        << st.error().message;
    EXPECT_EQ(st.error().message.find('\n'), std::string::npos);
  }
  auto id = Id();
  id.device_id = "Edge_Press-07.plant";
  EXPECT_TRUE(id.Validate());
}

}  // namespace
}  // namespace tend::telemetry
