// The fleet console, staged rollouts and rollbacks end to end with real programs on loopback:
// Mosquitto, `tend fleet ingest`, `tend registry control` (the publisher side's controller),
// `tend fleet serve`, `tend fleet simulate` (devices running the real OTA updater) and a real
// agent (`tend run` with OTA against the registry), plus Debian's chromium driven by
// puppeteer-core for the operator's view.
//   ManualRollbackReachesARunningAgent: issue #16 item 2.
//   BadReleaseStopsAfterTheCanaryWave: the acceptance scenario of issue #15.
//   OperatorInTheBrowser: log in, devices, a device's alerts and plot, start and abort a staged
//   rollout, roll a real agent back; then the effect on the store and on that agent.
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "agent/cli_util.h"
#include "fleet/console_db.h"
#include "ota/rollout.h"
#include "ota/updater.h"
#include "telemetry/test_support.h"

namespace tend::fleet {
namespace {

using nlohmann::json;
using tend::testing::Broker;
using tend::testing::Spawn;
using tend::testing::StopChild;
using tend::testing::WaitFor;
using namespace std::chrono_literals;

std::string Hostname() {
  char buf[256] = {0};
  ::gethostname(buf, sizeof buf - 1);
  std::string h(buf);
  for (char& c : h) {
    if (c == '/' || c == '+' || c == '#' || c == ' ') c = '_';
  }
  return h.empty() ? "edge-device" : h;
}

// Model versions in a decision log, in order ("1122211").
std::string Versions(const std::string& path) {
  std::ifstream f(path);
  std::string line, out;
  while (std::getline(f, line)) {
    auto d = json::parse(line, nullptr, false);
    if (d.is_object() && d.contains("model_version")) out += d["model_version"].get<std::string>();
  }
  return out;
}

// A fleet around one registry: processes are stopped (SIGTERM, waited for) in reverse order.
class FleetRig : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!Broker::Available()) GTEST_SKIP() << "mosquitto not installed";
    dir_ = tend::testing::TempDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    db_ = "sqlite:" + dir_ + "/fleet.db";
  }
  void TearDown() override {
    for (auto it = pids_.rbegin(); it != pids_.rend(); ++it) StopChild(*it);
    pids_.clear();
    if (!::testing::Test::HasFailure()) std::filesystem::remove_all(dir_);
  }
  void Tend(const std::string& args) {
    auto r = tend::testing::Tend(args, dir_);
    ASSERT_EQ(r.rc, 0) << args << "\n" << r.err;
    last_out_ = r.out;
  }
  pid_t Start(const std::string& name, const std::string& args) {
    const std::string cmd = "exec '" + tend::testing::TendBin() + "' " + args;
    pid_t pid = Spawn({"/bin/sh", "-c", "cd '" + dir_ + "' && " + cmd}, dir_ + "/" + name + ".log");
    pids_.push_back(pid);
    return pid;
  }
  std::string Log(const std::string& name) {
    return tend::testing::Slurp(dir_ + "/" + name + ".log");
  }
  // Trains the two models (v1 good; v2 alert-storms on a moderately worn die) and a registry.
  void MakeModelsAndRegistry() {
    Tend("train --input 'sim:strokes=40,wear=0,wear_end=0.4,seed=91' --version 1 --out v1.onnx");
    Tend("train --input 'sim:strokes=40,wear=0,seed=92' --version 2 --out v2.onnx");
    Tend("keygen --out pub");
    Tend("registry init reg --key pub.key");
  }
  void Publish(const std::string& model, int version, const std::string& extra = "") {
    Tend("publish " + model + " --name press-anomaly --version " + std::to_string(version) +
         " --profile x86-cpu-fp32 --key pub.key --registry reg --min-quality 0.9" + extra);
  }
  void StartFleetSide(double control_every_s = 1) {
    ASSERT_TRUE(broker_.Start());
    Start("ingest", "fleet ingest --mqtt " + broker_.url() + " --db " + db_ + " --group rig");
    ASSERT_TRUE(
        WaitFor([&] { return Log("ingest").find("ingesting from") != std::string::npos; }, 20s))
        << Log("ingest");
    Start("control", "registry control reg --key pub.key --db " + db_ + " --every " +
                         std::to_string(static_cast<int>(control_every_s)) + "s --expires 60s");
    Start("console", "fleet serve --db " + db_ + " --port 0 --host 127.0.0.1");
    std::smatch m;
    ASSERT_TRUE(WaitFor(
        [&] {
          const std::string out = Log("console");
          return std::regex_search(out, m,
                                   std::regex("console on http://127\\.0\\.0\\.1:([0-9]+)/"));
        },
        20s))
        << Log("console");
    const std::string out = Log("console");
    std::regex_search(out, m, std::regex("console on http://127\\.0\\.0\\.1:([0-9]+)/"));
    console_port_ = std::stoi(m[1]);
    Tend("fleet token create --db " + db_ + " --role operator --name rig-operator");
    token_ = last_out_.substr(0, last_out_.find('\n'));
    ASSERT_EQ(token_.rfind("tend_", 0), 0u) << last_out_;
  }
  // The real agent: OTA against the registry, telemetry to the broker, device id = host name.
  void StartAgent(const std::string& wear = "0.3") {
    Start("agent", "run --model v1.onnx --source 'sim:strokes=100000,wear=" + wear +
                       ",seed=94' --speed 5 --quiet --metrics-port 0 --decision-log d.jsonl"
                       " --ota-registry reg --ota-model-dir models --ota-root reg/root.json"
                       " --ota-interval 1 --ota-reference-normal 'sim:strokes=30,wear=0,seed=84'"
                       " --ota-reference-anomalous 'sim:strokes=20,wear=0.5,wear_end=1,seed=85'"
                       " --ota-storm-windows 10 --ota-storm-alerts 5 --mqtt " +
                       broker_.url() +
                       " --factory plant-r --line line-9 --asset press-real --state-dir st");
  }
  json Api(const std::string& method, const std::string& path, const std::string& body = "") {
    httplib::Client c("127.0.0.1", console_port_);
    c.set_read_timeout(20, 0);
    httplib::Headers h = {{"Authorization", "Bearer " + token_}};
    auto r = method == "GET" ? c.Get(path, h) : c.Post(path, h, body, "application/json");
    if (!r) return json{{"error", "no answer"}};
    json j = json::parse(r->body, nullptr, false);
    if (r->status != 200) return json{{"error", r->body}, {"status", r->status}};
    return j;
  }
  // The device's latest OTA state as the console shows it (null until ingest stored one).
  json DeviceOta(const std::string& id) {
    json d = Api("GET", "/api/devices/" + id);
    return d.contains("ota") ? d["ota"] : json(nullptr);
  }
  json Rollout(const std::string& name, int64_t version) {
    json r = Api("GET", "/api/rollouts");
    if (!r.contains("rollouts")) return nullptr;
    for (const auto& ro : r["rollouts"]) {
      if (ro["name"] == name && ro["version"] == version) return ro;
    }
    return nullptr;
  }
  // A wave salt that puts the real agent in the last wave and >= min_canaries simulated devices
  // in the first, so the scenario does not depend on luck.
  std::string PickSalt(const std::string& percents, const std::string& prefix, int sims,
                       int min_canaries) {
    for (int i = 0; i < 10000; ++i) {
      const std::string salt = "rig-" + std::to_string(i);
      auto plan = ota::MakeRolloutPlan(percents, "1h", 20, 1, salt);
      if (ota::WaveOf(*plan, Hostname()) != static_cast<int>(plan->waves.size()) - 1) continue;
      int canaries = 0;
      for (int k = 0; k < sims; ++k) {
        char id[64];
        std::snprintf(id, sizeof id, "%s-%04d", prefix.c_str(), k + 1);
        canaries += ota::WaveOf(*plan, id) == 0;
      }
      if (canaries >= min_canaries) return salt;
    }
    return "";
  }

  Broker broker_;
  std::string dir_, db_, token_, last_out_;
  int console_port_ = 0;
  std::vector<pid_t> pids_;
};

// Issue #16 item 2: `tend ota rollback` on the device takes effect on the running agent (its
// updater watches its state file and hands the backup to the pipeline between two windows), and
// the agent does not reinstall the rolled-back release.
TEST_F(FleetRig, ManualRollbackReachesARunningAgent) {
  MakeModelsAndRegistry();
  Tend("train --input 'sim:strokes=40,wear=0,wear_end=0.4,seed=93' --version 3 --out v3.onnx");
  Publish("v3.onnx", 3);
  ASSERT_TRUE(broker_.Start());
  StartAgent();
  ASSERT_TRUE(
      WaitFor([&] { return Versions(dir_ + "/d.jsonl").find('3') != std::string::npos; }, 60s))
      << Log("agent");
  auto r = tend::testing::Tend("ota rollback --model-dir models --reason 'false alarms at press 7'",
                               dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("picks it up"), std::string::npos) << r.out;
  // Back on the adopted start-up model (card version 1) within seconds, without a restart.
  ASSERT_TRUE(WaitFor(
      [&] {
        const std::string v = Versions(dir_ + "/d.jsonl");
        return v.size() > v.find('3') && v.back() == '1' && v.rfind('3') < v.size() - 3;
      },
      20s))
      << Versions(dir_ + "/d.jsonl") << "\n"
      << Log("agent");
  std::this_thread::sleep_for(3s);  // several OTA checks later: v3 stays rejected
  StopChild(pids_.back());
  pids_.pop_back();
  const std::string v = Versions(dir_ + "/d.jsonl");
  const size_t first3 = v.find('3'), last3 = v.rfind('3');
  EXPECT_EQ(v.find_first_not_of('3', first3), last3 + 1) << v;  // one stretch of v3
  EXPECT_EQ(v.substr(last3 + 1).find_first_not_of('1'), std::string::npos) << v;
  // Every window decided once, in order, across both swaps.
  std::ifstream log(dir_ + "/d.jsonl");
  std::string line;
  int64_t expect = 0;
  while (std::getline(log, line)) EXPECT_EQ(json::parse(line)["window"], expect++);
  auto st = ota::LoadState(dir_ + "/models");
  ASSERT_TRUE(st) << st.error().message;
  EXPECT_EQ(st->current->version, 1);  // the start-up model, by its card's version
  EXPECT_FALSE(st->backup.has_value());  // v3 is not a rollback target any more (#16 item 3)
  EXPECT_EQ(st->last_rollback_reason, "false alarms at press 7");
  const std::string agent = Log("agent");
  EXPECT_NE(agent.find("changed outside the updater"), std::string::npos) << agent;
  EXPECT_EQ(agent.find("installed press-anomaly v3", agent.find("changed outside")),
            std::string::npos);
}

// Issue #15's acceptance scenario: a bad release published with a 3-wave plan to 20 simulated
// devices and one real agent stops after the canary wave by its abort rule; devices in later
// waves never install it.
TEST_F(FleetRig, BadReleaseStopsAfterTheCanaryWave) {
  MakeModelsAndRegistry();
  Publish("v1.onnx", 1);  // everyone's first model, no plan
  StartFleetSide();
  Start("simulate", "fleet simulate --mqtt " + broker_.url() +
                        " --devices 20 --rate 2 --prefix sim --model-name press-anomaly"
                        " --registry reg --root reg/root.json --state-dir simdev --ota-interval 1"
                        " --misbehave-versions 2 --misbehave-after 2 --stats-every 0");
  StartAgent();
  const std::string me = Hostname();
  // Everyone runs v1 and the fleet knows it.
  ASSERT_TRUE(WaitFor(
      [&] {
        json l = Api("GET", "/api/devices?limit=100&sort=ota_version");
        if (!l.contains("devices") || l["total"] != 21) return false;
        for (const auto& d : l["devices"]) {
          if (d["ota"].is_null() || d["ota"]["current_version"] != 1) return false;
        }
        return true;
      },
      90s))
      << Api("GET", "/api/devices?limit=100").dump() << "\n"
      << Log("agent");

  const std::string salt = PickSalt("10,50,100", "sim", 20, 2);
  ASSERT_FALSE(salt.empty());
  Publish("v2.onnx", 2,
          " --waves 10,50,100 --soak 20s --abort-failed-percent 20 --wave-salt " + salt);
  ASSERT_TRUE(WaitFor([&] { return !Rollout("press-anomaly", 2).is_null(); }, 20s))
      << Log("control");
  EXPECT_EQ(Rollout("press-anomaly", 2)["state"], "pending");
  json started = Api("POST", "/api/rollouts/press-anomaly/2/start");
  ASSERT_EQ(started["intent"], "running") << started.dump();
  const auto t_start = std::chrono::steady_clock::now();

  // The canaries install v2, alert-storm, roll back; the abort rule stops the rollout.
  json ro;
  ASSERT_TRUE(WaitFor(
      [&] {
        ro = Rollout("press-anomaly", 2);
        return !ro.is_null() && ro["state"] == "aborted";
      },
      60s))
      << ro.dump() << "\n"
      << Log("control");
  EXPECT_EQ(ro["open_waves"], 1) << ro.dump();
  EXPECT_NE(ro["reason"].get<std::string>().find("abort rule"), std::string::npos) << ro.dump();
  std::printf("  rollout: %s\n", ro["reason"].get<std::string>().c_str());
  // Stay past the canary wave's soak: nothing more opens, nobody else installs.
  std::this_thread::sleep_until(t_start + 28s);
  ro = Rollout("press-anomaly", 2);
  EXPECT_EQ(ro["state"], "aborted");
  EXPECT_EQ(ro["open_waves"], 1);

  auto plan = ota::MakeRolloutPlan("10,50,100", "20s", 20, 1, salt);
  int canaries = 0, canaries_rolled_back = 0, later = 0;
  for (int k = 0; k < 20; ++k) {
    char id[32];
    std::snprintf(id, sizeof id, "sim-%04d", k + 1);
    auto st = ota::LoadState(dir_ + "/simdev/" + id);
    ASSERT_TRUE(st) << id << ": " << st.error().message;
    if (ota::WaveOf(*plan, id) == 0) {
      canaries += 1;
      canaries_rolled_back +=
          st->current->version == 1 &&
          std::count(st->rejected_versions.begin(), st->rejected_versions.end(), 2);
    } else {
      later += 1;
      EXPECT_EQ(st->highest_version, 1)
          << id << " (wave " << ota::WaveOf(*plan, id) + 1 << ") installed v2";
      EXPECT_EQ(st->current->version, 1) << id;
    }
  }
  EXPECT_GE(canaries, 2);
  EXPECT_EQ(canaries_rolled_back, canaries);
  EXPECT_EQ(later, 20 - canaries);
  // The real agent is in wave 3: it never installed v2 and never served it.
  auto real = ota::LoadState(dir_ + "/models");
  ASSERT_TRUE(real);
  EXPECT_LE(real->highest_version, 1);  // the adopted v1 raises no floor; v2 never came
  EXPECT_EQ(real->current->version, 1);
  EXPECT_EQ(Versions(dir_ + "/d.jsonl").find('2'), std::string::npos);
  EXPECT_NE(Log("agent").find("waiting for wave 3 of 3"), std::string::npos) << Log("agent");
  // The fleet's history agrees: installs of v2 only on canaries, each followed by a rollback.
  auto db = ConsoleDb::Open(db_);
  ASSERT_TRUE(db);
  int installs = 0;
  const auto summaries = (*db)->DeviceSummaries(0);
  ASSERT_TRUE(summaries);
  for (const auto& d : *summaries) {
    const auto events = (*db)->DeviceOtaEvents(d.device.device_id, 100);
    ASSERT_TRUE(events);
    for (const auto& e : *events) {
      if (e.event == "installed" && e.current_version == 2) {
        installs += 1;
        EXPECT_EQ(ota::WaveOf(*plan, d.device.device_id), 0) << d.device.device_id;
      }
    }
  }
  EXPECT_EQ(installs, canaries);
  std::printf(
      "  %d canaries installed v2 and rolled back; %d devices in later waves (and the real "
      "agent) never installed it\n",
      canaries, later);
}

// The operator's view in a real browser (Debian's chromium, headless, driven by puppeteer-core).
TEST_F(FleetRig, OperatorInTheBrowser) {
  if (::access("/usr/bin/chromium", X_OK) != 0) {
    FAIL() << "/usr/bin/chromium is missing: scripts/bootstrap.sh installs Debian's chromium";
  }
  const std::string src = std::getenv("TEND_SOURCE_DIR"), bin = std::getenv("TEND_BINARY_DIR");
  const std::string node_dir = bin + "/console-node";
  auto deps =
      tend::testing::RunCmd("'" + src + "/scripts/console-test-deps.sh' '" + node_dir + "'", dir_);
  ASSERT_EQ(deps.rc, 0) << deps.err;

  MakeModelsAndRegistry();
  Publish("v2.onnx", 2);  // the agent installs it over its start-up model (v1)
  StartFleetSide();
  Start("simulate", "fleet simulate --mqtt " + broker_.url() +
                        " --devices 10 --rate 20 --prefix sim --model-name press-anomaly"
                        " --wearing 1 --stats-every 0");
  StartAgent("0");  // a healthy press: v2 runs without alert storms
  const std::string me = Hostname();
  ASSERT_TRUE(WaitFor(
      [&] {
        json o = DeviceOta(me);
        return !o.is_null() && o["current_version"] == 2;
      },
      90s))
      << Log("agent");
  const std::string salt = PickSalt("10,50,100", "sim", 10, 0);
  Publish("v1.onnx", 3, " --waves 10,50,100 --soak 1h --wave-salt " + salt);
  ASSERT_TRUE(WaitFor([&] { return !Rollout("press-anomaly", 3).is_null(); }, 20s))
      << Log("control");
  ASSERT_TRUE(WaitFor(
      [&] {  // scores and an alert of the worn press are in
        json a = Api("GET", "/api/devices/sim-0001/alerts");
        return a.contains("alerts") && !a["alerts"].empty();
      },
      30s));

  // Node resolves the script's imports next to the script: run a copy inside node_dir.
  std::filesystem::copy_file(src + "/tests/console/browser_test.mjs",
                             node_dir + "/browser_test.mjs",
                             std::filesystem::copy_options::overwrite_existing);
  const std::string shots =
      std::getenv("TEND_SCREENSHOT_DIR") ? std::getenv("TEND_SCREENSHOT_DIR") : "";
  if (!shots.empty()) std::this_thread::sleep_for(90s);  // docs' screenshots: a longer score plot
  const std::string cmd =
      "cd '" + node_dir + "' && CONSOLE_URL=http://127.0.0.1:" + std::to_string(console_port_) +
      "/ TOKEN=" + token_ + " ALERT_DEVICE=sim-0001 ROLLBACK_DEVICE='" + me +
      "' ROLLOUT=press-anomaly/3 MIN_DEVICES=11 USER_DATA_DIR='" + dir_ +
      "/chromium-profile' SCREENSHOT_DIR='" + shots + "' timeout 180 node browser_test.mjs";
  auto run = tend::testing::RunCmd(cmd, dir_);
  std::printf("%s", run.out.c_str());
  ASSERT_EQ(run.rc, 0) << run.out << run.err;

  // The store: the rollout was started and aborted by the token's holder, the rollback requested.
  auto db = ConsoleDb::Open(db_);
  ASSERT_TRUE(db);
  auto intents = (*db)->RolloutIntents();
  ASSERT_EQ(intents->size(), 1u);
  EXPECT_EQ((*intents)[0].state, "aborted");
  EXPECT_EQ((*intents)[0].actor, "rig-operator");
  int64_t total = 0;
  std::string actions;
  const auto audit = (*db)->AuditLog(0, 100, &total);
  ASSERT_TRUE(audit);
  for (const auto& a : *audit) {
    actions += a.action + ":" + a.result + " ";
    EXPECT_EQ(a.actor, "rig-operator");
  }
  for (const char* a : {"login:ok", "rollout:ok", "rollback:ok"}) {
    EXPECT_NE(actions.find(a), std::string::npos) << actions;
  }
  // The real agent: the controller signs the request, the agent's updater applies it and goes
  // back to its start-up model (OTA's v1, its card's version) without a restart.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto st = ota::LoadState(dir_ + "/models");
        return st && st->current && st->current->version == 1;
      },
      30s))
      << Log("agent") << Log("control");
  ASSERT_TRUE(WaitFor([&] { return Versions(dir_ + "/d.jsonl").back() == '1'; }, 20s));
  auto st = ota::LoadState(dir_ + "/models");
  EXPECT_NE(st->last_rollback_reason.find("browser test: false alarms"), std::string::npos)
      << st->last_rollback_reason;
  EXPECT_EQ(st->highest_version, 2);  // v3's rollout was aborted before reaching it
  ASSERT_TRUE(WaitFor(
      [&] {
        auto reqs = (*db)->RollbackRequests(false, 10);
        return reqs && reqs->size() == 1 && (*reqs)[0].status == "done";
      },
      20s));
  auto control = ota::ReadControl(dir_ + "/reg");
  ASSERT_TRUE(control);
  EXPECT_EQ(control->FindRollout("press-anomaly", 3)->state, "aborted");
}

}  // namespace
}  // namespace tend::fleet
