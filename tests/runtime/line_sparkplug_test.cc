// `tend run` with the sparkplug sink against a real Mosquitto on a free loopback port: two assets
// (two Sparkplug devices of one edge node), everything tend published captured by mosquitto_sub
// and decoded by an independent codec (Eclipse Tahu's JavaScript sparkplug-payload, installed by
// the sparkplug_js_setup test). The comments name the Sparkplug 3.0 tck-id each check covers.
#include <gtest/gtest.h>
#include <signal.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "../agent/cli_util.h"
#include "telemetry/sparkplug_capture.h"

namespace tend::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

class LineSparkplug : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(TempDir("line_spb"));
    auto r = Tend("train --input 'sim:strokes=40,wear=0,seed=5' --out press.onnx", *dir_);
    ASSERT_EQ(r.rc, 0) << r.err;
    // A short press run that wears out: the last strokes are alerts.
    r = Tend("simulate --sim 'sim:strokes=24,wear=0,wear_end=1,seed=2' --out run.wav", *dir_);
    ASSERT_EQ(r.rc, 0) << r.err;
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }
  void SetUp() override {
    if (!Broker::Available()) GTEST_SKIP() << "mosquitto not installed";
    ASSERT_TRUE(std::filesystem::exists(kJs + "/node_modules/sparkplug-payload"))
        << "the decoder is missing: run the sparkplug_js_setup test (ctest -R sparkplug)";
    ASSERT_TRUE(broker_.Start());
    cap_ = std::make_unique<Capture>(broker_.port(), "cap-" + std::to_string(::getpid()));
    cap_->Start();
    ASSERT_TRUE(WaitFor([&] { return broker_.log().find("cap-") != std::string::npos; }, 10s));
  }
  // The config of a two-asset agent on this broker.
  std::string WriteConfig(const std::string& name, const std::string& speed) {
    std::ofstream(dir() + "/" + name)
        << "[agent]\nspeed = " << speed << "\n[metrics]\nport = 0\n"
        << "[identity]\nfactory = \"plant-a\"\nline = \"line-2\"\ndevice_id = \"edge-7\"\n"
        << "[mqtt]\nurl = \"" << broker_.url() << "\"\nhealth_interval_s = 0\n"
        << "[sparkplug]\ngroup = \"plant-a\"\n"
        << "[[asset]]\nid = \"press-a\"\nmodel = \"press.onnx\"\nsource = \"run.wav\"\n"
        << "[[asset]]\nid = \"press-b\"\nmodel = \"press.onnx\"\nsource = \"run.wav\"\n";
    return name;
  }
  static const std::string& dir() { return *dir_; }
  static std::string* dir_;
  Broker broker_;
  std::unique_ptr<Capture> cap_;
};
std::string* LineSparkplug::dir_ = nullptr;

std::map<std::string, int64_t> AlertsByAsset(const std::string& out) {
  std::map<std::string, int64_t> n;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    auto j = json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.value("is_alert", false)) ++n[j["asset_id"].get<std::string>()];
  }
  return n;
}

// A replay: NBIRTH, a DBIRTH per asset, DDATA whose Alert Count ends at each asset's alerts (as
// the agent printed them), seq 0..255 without a gap, then DDEATH per asset and the NDEATH with
// the NBIRTH's bdSeq when the run ends.
TEST_F(LineSparkplug, ReplayPublishesBirthsDataAndDeathsPerAsset) {
  auto r = Tend("run --config " + WriteConfig("spb.toml", "40") +
                    " --json --state-dir st1 --summary-json s1.json",
                dir());
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto alerts = AlertsByAsset(r.out);
  ASSERT_GT(alerts.count("press-a"), 0u) << "the recording must have alerts";
  ASSERT_TRUE(WaitFor([&] { return !cap_->On("NDEATH").empty(); }, 15s)) << r.err;
  auto msgs = cap_->Messages();
  ASSERT_GE(msgs.size(), 6u);
  const json& nb = msgs[0];
  EXPECT_EQ(nb["topic"], "spBv1.0/plant-a/NBIRTH/edge-7");  // tck-id-topics-nbirth-topic
  EXPECT_EQ(nb["payload"]["seq"], 0);                       // tck-id-topics-nbirth-seq-num
  const json* bd = Metric(nb, "bdSeq");                     // tck-id-topics-nbirth-bdseq-included
  ASSERT_NE(bd, nullptr);
  EXPECT_NE(Metric(nb, "Node Control/Rebirth"), nullptr);  // tck-id-topics-nbirth-rebirth-metric
  // tck-id-payloads-dbirth-order: the DBIRTHs follow the NBIRTH; one device per asset.
  std::set<std::string> births = {msgs[1]["topic"], msgs[2]["topic"]};
  EXPECT_EQ(births, (std::set<std::string>{"spBv1.0/plant-a/DBIRTH/edge-7/press-a",
                                           "spBv1.0/plant-a/DBIRTH/edge-7/press-b"}));
  for (int k : {1, 2}) {
    const json* name = Metric(msgs[k], "Model/Name");  // tck-id-topics-dbirth-metrics
    ASSERT_NE(name, nullptr) << msgs[k].dump();
    EXPECT_FALSE((*name)["value"].get<std::string>().empty());
  }
  // tck-id-payloads-sequence-num-incrementing: +1 per message of the session, wrapping at 256.
  size_t end = msgs.size();
  for (size_t i = 1; i < msgs.size(); ++i) {
    if (Capture::Type(msgs[i]) == "NDEATH") {
      end = i;
      break;
    }
    ASSERT_EQ(msgs[i]["payload"]["seq"].get<int>(),
              (msgs[i - 1]["payload"]["seq"].get<int>() + 1) % 256)
        << "message " << i << " on " << msgs[i]["topic"];
  }
  ASSERT_EQ(end, msgs.size() - 1) << "the NDEATH comes last";
  // The last Alert Count of each device is what the agent decided.
  std::map<std::string, int64_t> count;
  for (const auto& m : msgs) {
    if (Capture::Type(m) != "DDATA") continue;
    const std::string t = m["topic"];
    if (const json* c = Metric(m, "Alert Count")) count[t.substr(t.rfind('/') + 1)] = (*c)["value"];
  }
  for (const auto& [asset, n] : alerts) EXPECT_EQ(count[asset], n) << asset;
  // The run ended: each asset's DDEATH (tck-id-topics-ddeath-topic), then the NDEATH with the
  // NBIRTH's bdSeq (tck-id-operational-behavior-edge-node-intentional-disconnect-ndeath).
  EXPECT_EQ(cap_->On("DDEATH").size(), 2u);
  EXPECT_EQ((*Metric(msgs.back(), "bdSeq"))["value"], (*bd)["value"]);
  auto summary = json::parse(Slurp(dir() + "/s1.json"));
  EXPECT_EQ(summary["sparkplug"]["births"], 1) << summary.dump();
  EXPECT_EQ(summary["sparkplug"]["commands_rejected"], 0);
}

// kill -9 of a running agent: the broker publishes the NDEATH Will (tck-id-topics-ndeath-topic)
// with the NBIRTH's bdSeq (tck-id-topics-ndeath-payload); the next run's NBIRTH carries the next
// bdSeq, read from the state directory (tck-id-topics-nbirth-bdseq-increment).
TEST_F(LineSparkplug, Kill9LeavesTheNdeathWillWithTheBirthsBdSeq) {
  const std::string cfg = WriteConfig("spb_live.toml", "1");
  const std::string out = dir() + "/live.out";
  auto start = [&] {
    return Spawn({TendBin(), "run", "--config", dir() + "/" + cfg, "--state-dir", dir() + "/st2",
                  "--summary-json", dir() + "/live.json"},
                 out);
  };
  pid_t pid = start();
  ASSERT_TRUE(WaitFor([&] { return cap_->On("DBIRTH").size() >= 2; }, 20s)) << ReadAll(out);
  const int64_t bd = (*Metric(cap_->On("NBIRTH").at(0), "bdSeq"))["value"];
  ::kill(pid, SIGKILL);
  WaitExit(pid);
  ASSERT_TRUE(WaitFor([&] { return !cap_->On("NDEATH").empty(); }, 15s)) << broker_.log();
  auto nd = cap_->On("NDEATH");
  ASSERT_EQ(nd.size(), 1u);
  EXPECT_EQ(nd[0]["topic"], "spBv1.0/plant-a/NDEATH/edge-7");
  EXPECT_EQ((*Metric(nd[0], "bdSeq"))["value"], bd);
  EXPECT_TRUE(cap_->On("DDEATH").empty()) << "a killed process sends nothing itself";

  pid = start();
  ASSERT_TRUE(WaitFor([&] { return cap_->On("DBIRTH").size() >= 4; }, 20s)) << ReadAll(out);
  // A host's rebirth request (an NCMD encoded by Tahu's codec): NBIRTH again, same bdSeq
  // (tck-id-operational-behavior-data-commands-rebirth-action-2); a malformed NCMD is counted and
  // the session goes on.
  const std::string ncmd = dir() + "/ncmd.bin", bad = dir() + "/bad.bin";
  ASSERT_EQ(std::system(("node " + kJs + "/decode.js --encode '" +
                         R"({"timestamp":1,"metrics":[{"name":"Node Control/Rebirth",)" +
                         R"("type":"Boolean","value":true}]})" + "' " + ncmd)
                            .c_str()),
            0);
  std::ofstream(bad) << "not protobuf \xff\xff";
  for (const auto& f : {bad, ncmd}) {
    ASSERT_EQ(WaitExit(Spawn({"/usr/bin/mosquitto_pub", "-h", "127.0.0.1", "-p",
                              std::to_string(broker_.port()), "-q", "1", "-t",
                              "spBv1.0/plant-a/NCMD/edge-7", "-f", f})),
              0);
  }
  ASSERT_TRUE(WaitFor([&] { return cap_->On("NBIRTH").size() >= 3; }, 15s)) << ReadAll(out);
  EXPECT_EQ((*Metric(cap_->On("NBIRTH").at(2), "bdSeq"))["value"], (bd + 1) % 256);
  EXPECT_EQ(cap_->On("NBIRTH").at(2)["payload"]["seq"], 0);
  ::kill(pid, SIGTERM);
  EXPECT_EQ(WaitExit(pid), 0) << ReadAll(out);
  EXPECT_EQ((*Metric(cap_->On("NBIRTH").at(1), "bdSeq"))["value"], (bd + 1) % 256);
  auto summary = json::parse(Slurp(dir() + "/live.json"));
  EXPECT_EQ(summary["sparkplug"]["rebirths"], 1) << summary.dump();
  EXPECT_EQ(summary["sparkplug"]["commands_rejected"], 1);
}

TEST_F(LineSparkplug, GroupWithoutABrokerIsRefusedInOneLine) {
  auto r = Tend(
      "run --model press.onnx --source run.wav --metrics-port 0 --state-dir st3 "
      "--sparkplug-group plant-a",
      dir());
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(LastLine(r.err).find("--mqtt"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace tend::testing
