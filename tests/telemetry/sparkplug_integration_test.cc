// The Sparkplug B edge node against a real Mosquitto on a free loopback port; everything tend
// published is captured by mosquitto_sub and decoded by an independent codec (Eclipse Tahu's
// JavaScript sparkplug-payload, tests/telemetry/sparkplug_js, installed by the
// sparkplug_js_setup test). The comments name the Sparkplug 3.0 tck-id each check covers.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "telemetry/sparkplug_capture.h"
#include "telemetry/sparkplug_node.h"
#include "telemetry/test_support.h"

namespace tend::sparkplug {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using tend::testing::Broker;
using tend::testing::WaitFor;

const std::string kGroup = "plant-a", kNode = "edge-1";
using tend::testing::Capture;
using tend::testing::kJs;
using tend::testing::Metric;

Decision MakeDecision(int64_t i, bool alert, float score) {
  Decision d;
  d.window_index = i;
  d.timestamp = std::chrono::system_clock::now();
  d.anomaly_score = score;
  d.is_alert = alert;
  d.severity = alert ? Severity::kHigh : Severity::kLow;
  d.latency_ms = 1.5;
  return d;
}

void Publish(int port, const std::string& topic, const std::string& file_or_msg, bool file,
             bool retain = false) {
  std::vector<std::string> argv = {"/usr/bin/mosquitto_pub",
                                   "-h",
                                   "127.0.0.1",
                                   "-p",
                                   std::to_string(port),
                                   "-t",
                                   topic,
                                   "-q",
                                   "1"};
  argv.push_back(file ? "-f" : "-m");
  argv.push_back(file_or_msg);
  if (retain) argv.push_back("-r");
  ASSERT_EQ(tend::testing::WaitExit(tend::testing::Spawn(argv)), 0);
}

class SparkplugTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!Broker::Available()) GTEST_SKIP() << "mosquitto not installed";
    ASSERT_TRUE(std::filesystem::exists(kJs + "/node_modules/sparkplug-payload"))
        << "the decoder is missing: run the sparkplug_js_setup test (ctest -R sparkplug)";
    ASSERT_TRUE(broker_.Start());
    cap_ = std::make_unique<Capture>(broker_.port(), "cap-" + std::to_string(::getpid()));
    cap_->Start();
    ASSERT_TRUE(WaitFor([&] { return broker_.log().find("cap-") != std::string::npos; }, 10s));
    state_ = tend::testing::MakeTempDir("spbstate");
  }
  void TearDown() override {
    std::error_code ec;
    if (!state_.empty()) std::filesystem::remove_all(state_, ec);
  }
  SparkplugOptions Options() const {
    SparkplugOptions o;
    o.broker_url = broker_.url();
    o.group_id = kGroup;
    o.edge_node_id = kNode;
    o.state_dir = state_;
    o.reconnect_min_s = 0.05;
    o.reconnect_max_s = 0.3;
    return o;
  }
  std::string Ncmd(const std::string& payload_json) {
    std::string f = state_ + "/ncmd.bin";
    std::string cmd = "node " + kJs + "/decode.js --encode '" + payload_json + "' " + f;
    EXPECT_EQ(std::system(cmd.c_str()), 0);
    return f;
  }

  Broker broker_;
  std::unique_ptr<Capture> cap_;
  std::string state_;
};

// Every message from the node after `from` (inclusive) has seq one more than the one before,
// wrapping 255 -> 0 (tck-id-payloads-sequence-num-incrementing, -ddata-seq-inc, -dbirth-seq-inc).
void ExpectSeqRun(const std::vector<json>& msgs, size_t from) {
  for (size_t i = from + 1; i < msgs.size(); ++i) {
    if (Capture::Type(msgs[i]) == "NDEATH" || Capture::Type(msgs[i]) == "NBIRTH") return;
    ASSERT_EQ(msgs[i]["payload"]["seq"].get<int>(),
              (msgs[i - 1]["payload"]["seq"].get<int>() + 1) % 256)
        << "message " << i << " on " << msgs[i]["topic"];
  }
}

TEST_F(SparkplugTest, BirthsDataAndDeathsFollowTheSpecification) {
  auto node = SparkplugNode::Create(Options());
  ASSERT_TRUE(node) << node.error().message;
  auto press = (*node)->AddDevice("press-1");
  auto cam = (*node)->AddDevice("cam-1");
  ASSERT_TRUE(press && cam);
  ModelInfo mi{"press", "3", "CPU", 0, 0};
  (*press)->OnModelInfo(mi);
  ASSERT_TRUE((*node)->Flush(20s));
  int alerts = 0;
  for (int i = 0; i < 300; ++i) {  // > 256 messages: seq wraps
    bool alert = i % 10 != 3;
    alerts += alert;
    (*press)->OnDecision(MakeDecision(i, alert, 0.001f * static_cast<float>(i + 1)));
    if (i % 50 == 0) std::this_thread::sleep_for(5ms);
  }
  ASSERT_TRUE((*node)->Flush(20s));
  cam->reset();  // the camera asset stops: DDEATH
  std::this_thread::sleep_for(300ms);
  int64_t bd = (*node)->stats().bd_seq;
  EXPECT_EQ(bd, 0);  // tck-id-topics-nbirth-bdseq-increment: starts at zero
  node->reset();     // intentional disconnect: NDEATH
  ASSERT_TRUE(WaitFor([&] { return !cap_->On("NDEATH").empty(); }, 10s));
  auto msgs = cap_->Messages();
  ASSERT_GE(msgs.size(), 4u);
  // NBIRTH first: topic, QoS 0, not retained, seq 0, timestamp, bdSeq Int64 and Rebirth false.
  const json& nb = msgs[0];
  EXPECT_EQ(nb["topic"], "spBv1.0/plant-a/NBIRTH/edge-1");  // tck-id-topics-nbirth-topic
  EXPECT_EQ(nb["qos"], 0);                                  // tck-id-topics-nbirth-mqtt
  EXPECT_EQ(nb["retained"], 0);
  EXPECT_EQ(nb["payload"]["seq"], 0);  // tck-id-topics-nbirth-seq-num
  EXPECT_GT(nb["payload"]["timestamp"].get<int64_t>(), 1600000000000);  // -nbirth-timestamp
  const json* bds = Metric(nb, "bdSeq");  // tck-id-topics-nbirth-bdseq-included
  ASSERT_NE(bds, nullptr);
  EXPECT_EQ((*bds)["type"], "Int64");
  EXPECT_EQ((*bds)["value"], bd);
  const json* rb = Metric(nb, "Node Control/Rebirth");  // tck-id-topics-nbirth-rebirth-metric
  ASSERT_NE(rb, nullptr);
  EXPECT_EQ((*rb)["type"], "Boolean");
  EXPECT_EQ((*rb)["value"], false);
  EXPECT_FALSE(rb->contains("alias"));  // -data-commands-rebirth-name-aliases
  // DBIRTHs right after the NBIRTH (tck-id-payloads-dbirth-order), every metric with name,
  // datatype and value (tck-id-topics-dbirth-metrics), model name/version current.
  ASSERT_EQ(Capture::Type(msgs[1]), "DBIRTH");
  ASSERT_EQ(Capture::Type(msgs[2]), "DBIRTH");
  EXPECT_EQ(msgs[1]["topic"], "spBv1.0/plant-a/DBIRTH/edge-1/press-1");
  EXPECT_EQ(msgs[2]["topic"], "spBv1.0/plant-a/DBIRTH/edge-1/cam-1");
  for (int k : {1, 2}) {
    EXPECT_EQ(msgs[k]["qos"], 0);
    EXPECT_EQ(msgs[k]["payload"]["metrics"].size(), 8u);
    for (const auto& m : msgs[k]["payload"]["metrics"]) {
      EXPECT_TRUE(m.contains("name") && m.contains("type") && m.contains("value")) << m.dump();
      EXPECT_TRUE(m.contains("timestamp"))
          << m.dump();  // tck-id-payloads-name-birth-data-requirement
    }
  }
  EXPECT_EQ((*Metric(msgs[1], "Model/Version"))["value"], "3");
  EXPECT_EQ((*Metric(msgs[1], "Anomaly Score"))["type"], "Float");
  EXPECT_EQ((*Metric(msgs[1], "Alert Count"))["type"], "UInt64");
  ExpectSeqRun(msgs, 0);
  // DDATA: QoS 0, timestamp, only changed metrics; the last carries every alert. Each alert goes
  // out at once; other decisions may be coalesced (on change).
  int ddata = 0, wrapped = 0;
  const json* last_count = nullptr;
  for (size_t i = 3; i < msgs.size(); ++i) {
    if (Capture::Type(msgs[i]) != "DDATA") continue;
    ++ddata;
    EXPECT_EQ(msgs[i]["qos"], 0);                           // tck-id-topics-ddata-mqtt
    EXPECT_TRUE(msgs[i]["payload"].contains("timestamp"));  // tck-id-topics-ddata-timestamp
    wrapped += msgs[i]["payload"]["seq"] == 0;
    for (const auto& m : msgs[i]["payload"]["metrics"]) {
      EXPECT_TRUE(m.contains("type") && m.contains("value")) << m.dump();  // decodable alone
      EXPECT_NE(m["name"], "Model/Name");  // unchanged: not repeated (-ddata-payload)
    }
    if (const json* c = Metric(msgs[i], "Alert Count")) last_count = c;
  }
  EXPECT_GE(ddata, alerts);
  EXPECT_LE(ddata, 300);
  EXPECT_EQ(wrapped, 1);  // 3 births + 270..300 data: seq went 255 -> 0 once
  ASSERT_NE(last_count, nullptr);
  EXPECT_EQ((*last_count)["value"], alerts);
  // DDEATH for the stopped asset, with the next seq; NDEATH last with bdSeq and no seq.
  auto dd = cap_->On("DDEATH");
  ASSERT_EQ(dd.size(), 1u);
  EXPECT_EQ(dd[0]["topic"], "spBv1.0/plant-a/DDEATH/edge-1/cam-1");  // tck-id-topics-ddeath-topic
  EXPECT_TRUE(dd[0]["payload"].contains("seq"));                     // tck-id-payloads-ddeath-seq
  const json& nd = msgs.back();
  EXPECT_EQ(Capture::Type(nd),
            "NDEATH");  // tck-id-operational-behavior-edge-node-intentional-disconnect-ndeath
  EXPECT_FALSE(nd["payload"].contains("seq") && !nd["payload"]["seq"].is_null());  // -ndeath-seq
  EXPECT_EQ((*Metric(nd, "bdSeq"))["value"], bd);
}

TEST_F(SparkplugTest, NdeathWillCarriesTheBirthsBdSeqAfterKill9AndBdSeqSurvivesRestarts) {
  const std::string tag = "session bdseq=";
  int runs = 0;
  auto run = [&](int64_t& bd) {
    std::string out = state_ + "/helper-" + std::to_string(++runs) + ".txt";
    pid_t pid = tend::testing::Spawn(
        {TEND_SPARKPLUG_HELPER, broker_.url(), state_, kGroup, kNode, "press-1"}, out, false);
    // In session, and the broker has forwarded this run's NBIRTH.
    bool up =
        WaitFor([&] { return tend::testing::ReadAll(out).find(tag) != std::string::npos; }, 20s) &&
        WaitFor([&] { return static_cast<int>(cap_->On("NBIRTH").size()) == runs; }, 10s);
    ::kill(pid, SIGKILL);  // no clean disconnect: the broker publishes the Will
    tend::testing::WaitExit(pid);
    ASSERT_TRUE(up) << tend::testing::ReadAll(out);
    std::string text = tend::testing::ReadAll(out);
    bd = std::atoll(text.c_str() + text.find(tag) + tag.size());
  };
  int64_t first = -1, second = -1;
  run(first);
  ASSERT_TRUE(WaitFor([&] { return cap_->On("NDEATH").size() == 1; }, 10s));
  run(second);
  ASSERT_TRUE(WaitFor([&] { return cap_->On("NDEATH").size() == 2; }, 10s));
  EXPECT_EQ(second, (first + 1) % 256);  // tck-id-topics-nbirth-bdseq-increment, persisted
  auto births = cap_->On("NBIRTH");
  auto deaths = cap_->On("NDEATH");
  ASSERT_EQ(births.size(), 2u);
  for (int k = 0; k < 2; ++k) {
    // The broker published the Will: topic, QoS 1, not retained, bdSeq of the NBIRTH before it.
    EXPECT_EQ(deaths[k]["topic"], "spBv1.0/plant-a/NDEATH/edge-1");  // tck-id-topics-ndeath-topic
    EXPECT_EQ(deaths[k]["qos"], 1);       // tck-id-payloads-ndeath-will-message-qos
    EXPECT_EQ(deaths[k]["retained"], 0);  // tck-id-payloads-ndeath-will-message-retain
    ASSERT_NE(Metric(deaths[k], "bdSeq"), nullptr);
    EXPECT_EQ((*Metric(deaths[k], "bdSeq"))["value"], (*Metric(births[k], "bdSeq"))["value"]);
    EXPECT_EQ(deaths[k]["payload"]["metrics"].size(), 1u);  // tck-id-topics-ndeath-payload
    EXPECT_FALSE(deaths[k]["payload"].contains("seq") && !deaths[k]["payload"]["seq"].is_null());
  }
  EXPECT_EQ((*Metric(births[0], "bdSeq"))["value"], first);
  EXPECT_EQ((*Metric(births[1], "bdSeq"))["value"], second);
}

TEST_F(SparkplugTest, RebirthOnNcmdAndMalformedCommandsAreCounted) {
  auto node = SparkplugNode::Create(Options());
  ASSERT_TRUE(node) << node.error().message;
  auto press = (*node)->AddDevice("press-1");
  ASSERT_TRUE(press);
  (*press)->OnDecision(MakeDecision(0, false, 0.1f));
  ASSERT_TRUE((*node)->Flush(20s));
  // The NBIRTH went out after the NCMD subscription on the same connection: once the broker
  // forwarded it, the subscription is in place.
  ASSERT_TRUE(WaitFor([&] { return cap_->On("NBIRTH").size() == 1; }, 10s));
  const std::string ncmd = "spBv1.0/plant-a/NCMD/edge-1";
  // Garbage, a Rebirth that is not a boolean: rejected and counted, the session goes on.
  Publish(broker_.port(), ncmd, "not protobuf \xff\xff", false);
  Publish(
      broker_.port(), ncmd,
      Ncmd(
          R"({"timestamp":1,"metrics":[{"name":"Node Control/Rebirth","type":"String","value":"yes"}]})"),
      true);
  ASSERT_TRUE(WaitFor([&] { return (*node)->stats().commands_rejected == 2; }, 10s));
  EXPECT_NE((*node)->stats().last_error.find("NCMD"), std::string::npos);
  EXPECT_EQ((*node)->stats().births, 1);
  // A real rebirth request (tck-id-operational-behavior-data-commands-ncmd-rebirth-*).
  Publish(
      broker_.port(), ncmd,
      Ncmd(
          R"({"timestamp":1,"metrics":[{"name":"Node Control/Rebirth","type":"Boolean","value":true}]})"),
      true);
  ASSERT_TRUE(WaitFor([&] { return (*node)->stats().rebirths == 1; }, 10s));
  (*press)->OnDecision(MakeDecision(1, true, 0.9f));
  ASSERT_TRUE((*node)->Flush(20s));
  ASSERT_TRUE(WaitFor([&] { return cap_->On("NBIRTH").size() == 2; }, 10s));
  auto msgs = cap_->Messages();
  size_t second = 0;
  for (size_t i = 1; i < msgs.size(); ++i) {
    if (Capture::Type(msgs[i]) == "NBIRTH") second = i;
  }
  ASSERT_GT(second, 0u);
  // tck-id-operational-behavior-data-commands-rebirth-action-2/-3: a complete birth sequence,
  // same bdSeq, seq from 0; then data continues in sequence.
  EXPECT_EQ(msgs[second]["payload"]["seq"], 0);
  EXPECT_EQ((*Metric(msgs[second], "bdSeq"))["value"], (*Metric(msgs[0], "bdSeq"))["value"]);
  ASSERT_GT(msgs.size(), second + 2);
  EXPECT_EQ(Capture::Type(msgs[second + 1]), "DBIRTH");
  EXPECT_EQ(msgs[second + 1]["payload"]["seq"], 1);
  EXPECT_EQ(Capture::Type(msgs[second + 2]), "DDATA");
  ExpectSeqRun(msgs, second);
  EXPECT_EQ((*node)->stats().commands_rejected, 2);
  EXPECT_EQ(ToJson((*node)->stats())["commands_rejected"], 2);
}

TEST_F(SparkplugTest, AlertsDuringAnOutageArriveAsHistoryInOrderAfterTheBirths) {
  auto node = SparkplugNode::Create(Options());
  ASSERT_TRUE(node) << node.error().message;
  auto press = (*node)->AddDevice("press-1");
  ASSERT_TRUE(press);
  ASSERT_TRUE((*node)->Flush(20s));
  (*press)->OnDecision(MakeDecision(0, true, 0.8f));  // in session: live
  ASSERT_TRUE((*node)->Flush(20s));
  EXPECT_EQ((*node)->stats().alerts_spooled, 0);
  broker_.Stop();
  ASSERT_TRUE(WaitFor([&] { return !(*node)->stats().connected; }, 10s));
  const int kOutage = 6;
  for (int i = 1; i <= 3 * kOutage; ++i) {
    (*press)->OnDecision(MakeDecision(i, i % 3 == 0, 0.5f + 0.01f * static_cast<float>(i)));
    std::this_thread::sleep_for(3ms);
  }
  ASSERT_TRUE(WaitFor([&] { return (*node)->stats().alerts_spooled == kOutage; }, 10s))
      << (*node)->stats().alerts_spooled << " spooled of " << (*node)->stats().decisions
      << " decisions; " << (*node)->stats().last_error;
  ASSERT_TRUE(broker_.Start());
  ASSERT_TRUE((*node)->Flush(30s));
  EXPECT_EQ((*node)->stats().historical_sent, kOutage);
  ASSERT_TRUE(WaitFor(
      [&] {
        int h = 0;
        for (auto& m : cap_->On("DDATA"))
          h += Metric(m, "Alert Count") && (*Metric(m, "Alert Count")).value("isHistorical", false);
        return h == kOutage;
      },
      20s));
  auto msgs = cap_->Messages();
  size_t birth = 0;
  for (size_t i = 1; i < msgs.size(); ++i) {
    if (Capture::Type(msgs[i]) == "NBIRTH") birth = i;
  }
  ASSERT_GT(birth, 0u);
  ASSERT_EQ(Capture::Type(msgs[birth + 1]), "DBIRTH");
  EXPECT_EQ((*Metric(msgs[birth + 1], "Alert Count"))["value"], 1 + kOutage);  // current value
  std::vector<int64_t> counts, times;
  for (size_t i = birth + 2; i < msgs.size() && counts.size() < kOutage; ++i) {
    ASSERT_EQ(Capture::Type(msgs[i]), "DDATA");
    const json* c = Metric(msgs[i], "Alert Count");
    ASSERT_NE(c, nullptr);
    EXPECT_TRUE((*c)["isHistorical"].get<bool>());
    for (const auto& m : msgs[i]["payload"]["metrics"]) EXPECT_TRUE(m["isHistorical"].get<bool>());
    counts.push_back((*c)["value"]);
    times.push_back((*c)["timestamp"]);
  }
  EXPECT_EQ(counts, (std::vector<int64_t>{2, 3, 4, 5, 6, 7}));  // in order, none lost
  EXPECT_TRUE(std::is_sorted(times.begin(), times.end()));
  ExpectSeqRun(msgs, birth);
}

TEST_F(SparkplugTest, BirthWaitsForThePrimaryHostAndEndsWhenItGoesOffline) {
  auto o = Options();
  o.primary_host_id = "scada";
  auto node = SparkplugNode::Create(o);
  ASSERT_TRUE(node) << node.error().message;
  auto press = (*node)->AddDevice("press-1");
  ASSERT_TRUE(press);
  ASSERT_TRUE(WaitFor([&] { return (*node)->stats().waiting_for_host; }, 10s));
  (*press)->OnDecision(MakeDecision(0, true, 0.9f));  // held as history until the session
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(cap_->On("NBIRTH").empty());  // tck-id-message-flow-edge-node-birth-publish-phid-wait
  const std::string state = "spBv1.0/STATE/scada";
  Publish(broker_.port(), "spBv1.0/STATE/other", R"({"online":true,"timestamp":5})", false, true);
  std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(cap_->On("NBIRTH").empty());  // -phid-wait-id: another host does not count
  Publish(broker_.port(), state, R"({"online":true,"timestamp":10})", false, true);
  ASSERT_TRUE(WaitFor([&] { return cap_->On("NBIRTH").size() == 1; }, 10s));
  ASSERT_TRUE((*node)->Flush(10s));
  EXPECT_EQ((*node)->stats().historical_sent, 1);
  // An offline STATE older than the online one is ignored (-termination-host-offline-timestamp).
  Publish(broker_.port(), state, R"({"online":false,"timestamp":9})", false, true);
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE((*node)->stats().in_session);
  // A current offline STATE ends the session: NDEATH, disconnect, wait again (-phid-offline).
  Publish(broker_.port(), state, R"({"online":false,"timestamp":11})", false, true);
  ASSERT_TRUE(WaitFor([&] { return cap_->On("NDEATH").size() == 1; }, 10s));
  ASSERT_TRUE(WaitFor(
      [&] {
        auto s = (*node)->stats();
        return s.connected && s.waiting_for_host;
      },
      10s));
  Publish(broker_.port(), state, R"({"online":true,"timestamp":12})", false, true);
  ASSERT_TRUE(WaitFor([&] { return cap_->On("NBIRTH").size() == 2; }, 10s));
  auto births = cap_->On("NBIRTH");
  EXPECT_EQ((*Metric(births[1], "bdSeq"))["value"],
            (*Metric(births[0], "bdSeq"))["value"].get<int>() + 1);
}

}  // namespace
}  // namespace tend::sparkplug
