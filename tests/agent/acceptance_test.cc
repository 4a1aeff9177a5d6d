// Acceptance figures of the anomaly detector, end to end through the `tend` binary: the press
// simulator (trained on a new die only) and the real CWRU bearing recordings (trained on normal
// windows only, split by time), plus the agent's signal handling. Prints the tables it checks.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "eval/metrics.h"
#include "telemetry/test_support.h"

namespace tend::testing {
namespace {

struct Scored {
  std::vector<double> score, wear;
  std::vector<bool> alert;
};

Scored ReadScores(const std::string& path) {
  Scored s;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    auto j = nlohmann::json::parse(line);
    s.score.push_back(j["anomaly_score"]);
    s.wear.push_back(j.value("wear", -1.0));
    s.alert.push_back(j["is_alert"]);
  }
  return s;
}

class Acceptance : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = TempDir("accept_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name())); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(Acceptance, SimulatedPressDieWear) {
  ASSERT_EQ(Tend("train --input 'sim:strokes=300,wear=0,seed=31' --out press.onnx", dir_).rc, 0);
  auto h = Tend("score --model press.onnx --input 'sim:strokes=1000,wear=0,seed=32' --out healthy.jsonl", dir_);
  ASSERT_EQ(h.rc, 0) << h.err;
  auto w = Tend("score --model press.onnx --input 'sim:strokes=300,wear=0,wear_end=1,seed=33' --out wear.jsonl", dir_);
  ASSERT_EQ(w.rc, 0) << w.err;
  auto healthy = ReadScores(dir_ + "/healthy.jsonl");
  auto worn = ReadScores(dir_ + "/wear.jsonl");
  ASSERT_EQ(healthy.score.size(), 1000u);
  ASSERT_EQ(worn.score.size(), 300u);
  std::printf("\n  wear band      strokes   AUC vs 1000 healthy   recall@LOW\n");
  for (double lo : {0.1, 0.2, 0.3, 0.4, 0.5}) {
    std::vector<double> band;
    int hit = 0;
    for (size_t i = 0; i < worn.score.size(); ++i) {
      if (worn.wear[i] >= lo && worn.wear[i] < lo + 0.1) {
        band.push_back(worn.score[i]);
        hit += worn.alert[i];
      }
    }
    std::printf("  [%.1f, %.1f)   %7zu   %19.4f   %10.3f\n", lo, lo + 0.1, band.size(),
                eval::RocAuc(healthy.score, band), band.empty() ? 0.0 : double(hit) / band.size());
  }
  std::vector<double> degraded;
  for (size_t i = 0; i < worn.score.size(); ++i)
    if (worn.wear[i] >= 0.3) degraded.push_back(worn.score[i]);
  double auc = eval::RocAuc(healthy.score, degraded);
  std::printf("  AUC, wear >= 0.3 vs healthy: %.5f\n", auc);
  EXPECT_GE(auc, 0.99);

  // Sustained alert before wear 0.5: from some window on, at least 8 of every 10 windows alert.
  size_t sustained = worn.score.size();
  for (size_t i = 0; i + 10 <= worn.score.size(); ++i) {
    int n = 0;
    for (size_t k = i; k < worn.score.size() && k < i + 10; ++k) n += worn.alert[k];
    bool holds = true;
    for (size_t j = i; j + 10 <= worn.score.size() && holds; ++j) {
      int m = 0;
      for (size_t k = j; k < j + 10; ++k) m += worn.alert[k];
      holds = m >= 8;
    }
    if (n >= 8 && holds) {
      sustained = i;
      break;
    }
  }
  ASSERT_LT(sustained, worn.score.size()) << "no sustained alert at all";
  std::printf("  sustained alert from stroke %zu at wear %.3f\n", sustained, worn.wear[sustained]);
  EXPECT_LT(worn.wear[sustained], 0.5);

  // The agent (with its debounce) on 1,000 healthy strokes: at most one false alert.
  auto r = Tend("run --model press.onnx --source 'sim:strokes=1000,wear=0,seed=34' --speed 0 --quiet "
                "--summary-json s.json", dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  auto s = nlohmann::json::parse(Slurp(dir_ + "/s.json"));
  int64_t false_alerts = s["alerts"]["LOW"].get<int64_t>() + s["alerts"]["MEDIUM"].get<int64_t>() +
                         s["alerts"]["HIGH"].get<int64_t>();
  std::printf("  agent on 1000 healthy strokes: %lld alerts (raw, before debounce: %lld)\n",
              static_cast<long long>(false_alerts), static_cast<long long>(s["raw_alerts"].get<int64_t>()));
  EXPECT_EQ(s["windows"], 1000);
  EXPECT_LE(false_alerts, 1);
}

TEST_F(Acceptance, CwruBearingsPerFaultClass) {
  std::string d = SharedDir() + "/data/cwru";
  if (!std::filesystem::exists(d + "/normal_0hp_1797rpm_X097_12k.wav")) GTEST_SKIP() << "no CWRU data at " << d;
  std::string faults;
  for (auto* f : {"B007_0hp_1797rpm_X118", "B014_0hp_1797rpm_X185", "B021_0hp_1797rpm_X222",
                  "IR007_0hp_1797rpm_X105", "IR014_0hp_1797rpm_X169", "IR021_0hp_1797rpm_X209",
                  "ORat6007_0hp_1797rpm_X130", "ORat6014_0hp_1797rpm_X197", "ORat6021_0hp_1797rpm_X234"})
    faults += " " + d + "/de12k_" + f + ".wav";
  std::string n0 = d + "/normal_0hp_1797rpm_X097_12k.wav", n1 = d + "/normal_1hp_1772rpm_X098_12k.wav";
  auto eval = [&](const std::string& model, const std::string& normal) {
    auto r = Tend("eval --channel 0 --json --model " + model + " --normal " + normal + " --anomalous" + faults, dir_);
    EXPECT_EQ(r.rc, 0) << r.err;
    return nlohmann::json::parse(r.out);
  };
  // Train on the first 3 s of each normal recording (drive end), test on the rest: no window
  // straddles the split.
  ASSERT_EQ(Tend("train --features bearing --channel 0 --input " + n0 + "@0:3 --out n0.onnx", dir_).rc, 0);
  ASSERT_EQ(Tend("train --features bearing --channel 0 --input " + n1 + "@0:3 --out n1.onnx", dir_).rc, 0);
  auto e0 = eval("n0.onnx", n0 + "@3:");
  auto e1 = eval("n1.onnx", n1 + "@3:");
  std::printf("\n  %-32s %14s %14s\n", "fault class (0 hp)", "AUC (0hp model)", "AUC (1hp model)");
  for (size_t i = 0; i < e0["anomalous_inputs"].size(); ++i) {
    std::string name = std::filesystem::path(e0["anomalous_inputs"][i]["input"].get<std::string>()).filename();
    double a0 = e0["anomalous_inputs"][i]["auc"], a1 = e1["anomalous_inputs"][i]["auc"];
    std::printf("  %-32s %14.4f %14.4f\n", name.c_str(), a0, a1);
    EXPECT_GE(a0, 0.99) << name;
    EXPECT_GE(a1, 0.99) << name;
  }
  double far0 = e0["normal_inputs"][0]["false_alarm_rate"], far1 = e1["normal_inputs"][0]["false_alarm_rate"];
  std::printf("  false-alarm rate on held-out normal, same load: 0hp %.4f (%d windows), 1hp %.4f (%d windows)\n",
              far0, e0["normal_inputs"][0]["windows"].get<int>(), far1, e1["normal_inputs"][0]["windows"].get<int>());
  EXPECT_LE(far0, 0.1);
  EXPECT_LE(far1, 0.1);

  // Change of operating point: the 0 hp model on 1 hp normal, before and after recalibrating on
  // the first 3 s of 1 hp normal (standardisation and thresholds only).
  auto cross = eval("n0.onnx", n1 + "@3:");
  ASSERT_EQ(Tend("train --channel 0 --recalibrate n0.onnx --input " + n1 + "@0:3 --out n0r.onnx", dir_).rc, 0);
  auto recal = eval("n0r.onnx", n1 + "@3:");
  double before = cross["normal_inputs"][0]["false_alarm_rate"], after = recal["normal_inputs"][0]["false_alarm_rate"];
  std::printf("  0hp model on held-out 1hp normal: false-alarm rate %.4f before, %.4f after recalibration; "
              "min fault-class AUC after %.4f\n", before, after,
              [&] { double m = 1; for (auto& x : recal["anomalous_inputs"]) m = std::min(m, x["auc"].get<double>()); return m; }());
  EXPECT_LE(after, 0.1);
  for (auto& x : recal["anomalous_inputs"]) EXPECT_GE(x["auc"].get<double>(), 0.99);
}

pid_t Spawn(const std::string& cmd, const std::string& dir) {
  pid_t pid = fork();
  if (pid == 0) {
    if (chdir(dir.c_str()) != 0) _exit(127);
    execl("/bin/sh", "sh", "-c", ("exec " + cmd + " >run.out 2>run.err").c_str(), (char*)nullptr);
    _exit(127);
  }
  return pid;
}

int WaitExit(pid_t pid) {
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

TEST_F(Acceptance, SighupReloadsWithoutMissingAWindow) {
  ASSERT_EQ(Tend("train --input 'sim:strokes=40,wear=0,seed=41' --out live.onnx", dir_).rc, 0);
  ASSERT_EQ(Tend("train --input 'sim:strokes=40,wear=0,seed=42' --version 2 --out next.onnx", dir_).rc, 0);
  // 60 strokes at 50x real time: about 4 s.
  pid_t pid = Spawn("'" + TendBin() + "' run --model live.onnx --source 'sim:strokes=60,seed=43' --speed 50 "
                    "--quiet --summary-json s.json", dir_);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  std::filesystem::rename(dir_ + "/next.onnx", dir_ + "/live.onnx");
  kill(pid, SIGHUP);
  ASSERT_EQ(WaitExit(pid), 0) << Slurp(dir_ + "/run.err");
  auto s = nlohmann::json::parse(Slurp(dir_ + "/s.json"));
  EXPECT_EQ(s["reloads"], 1);
  EXPECT_EQ(s["windows"], 60);
  EXPECT_EQ(s["deadline_misses"], 0);
  EXPECT_EQ(s["overruns"], 0);
  EXPECT_EQ(s["model"], "press-anomaly v2");
}

TEST_F(Acceptance, SigtermFinishesTheWindowInFlightAndFlushes) {
  ASSERT_EQ(Tend("train --input 'sim:strokes=40,wear=0,seed=51' --out m.onnx", dir_).rc, 0);
  pid_t pid = Spawn("'" + TendBin() + "' run --model m.onnx --source 'sim:strokes=100,seed=52' --speed 20 "
                    "--quiet --decision-log d.jsonl --summary-json s.json", dir_);
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  kill(pid, SIGTERM);
  ASSERT_EQ(WaitExit(pid), 0) << Slurp(dir_ + "/run.err");
  auto s = nlohmann::json::parse(Slurp(dir_ + "/s.json"));
  int64_t windows = s["windows"];
  EXPECT_GT(windows, 0);
  EXPECT_LT(windows, 100);
  std::ifstream log(dir_ + "/d.jsonl");
  std::string line;
  int64_t lines = 0;
  while (std::getline(log, line)) {
    EXPECT_NO_THROW(nlohmann::json::parse(line));
    ++lines;
  }
  EXPECT_EQ(lines, windows);
}

// Over-the-air update inside the running agent: a signed, better model is verified, gated on the
// local reference set and swapped in without a missed window; a signed model that scores worse on
// the reference set is refused and the agent keeps the current one.
TEST_F(Acceptance, OtaInstallsABetterModelAndRefusesAWorseOne) {
  ASSERT_EQ(Tend("train --input 'sim:strokes=40,wear=0,seed=81' --out v1.onnx", dir_).rc, 0);
  ASSERT_EQ(Tend("train --input 'sim:strokes=40,wear=0,seed=82' --version 2 --out v2.onnx", dir_).rc, 0);
  // Trained on a worn die: it calls wear normal, so it fails the reference-set gate.
  ASSERT_EQ(Tend("train --input 'sim:strokes=40,wear=0.9,seed=83' --version 3 --out v3.onnx", dir_).rc, 0);
  ASSERT_EQ(Tend("keygen --out pub", dir_).rc, 0);
  ASSERT_EQ(Tend("registry init reg --key pub.key", dir_).rc, 0);
  auto pub = Tend("publish v2.onnx --name press-anomaly --version 2 --profile x86-cpu-fp32 --key pub.key "
                  "--registry reg --min-quality 0.9", dir_);
  ASSERT_EQ(pub.rc, 0) << pub.err;
  const std::string ota =
      " --quiet --metrics-port 0 --ota-registry reg --ota-model-dir models --ota-root reg/root.json "
      "--ota-interval 1 --ota-reference-normal 'sim:strokes=30,wear=0,seed=84' "
      "--ota-reference-anomalous 'sim:strokes=20,wear=0.5,wear_end=1,seed=85' --summary-json s.json";
  auto r = Tend("run --model v1.onnx --source 'sim:strokes=60,seed=86' --speed 20" + ota, dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  auto s = nlohmann::json::parse(Slurp(dir_ + "/s.json"));
  EXPECT_EQ(s["model"], "press-anomaly v2");
  EXPECT_EQ(s["windows"], 60);
  EXPECT_EQ(s["deadline_misses"], 0);
  EXPECT_EQ(s["overruns"], 0);

  pub = Tend("publish v3.onnx --name press-anomaly --version 3 --profile x86-cpu-fp32 --key pub.key "
             "--registry reg --min-quality 0.9", dir_);
  ASSERT_EQ(pub.rc, 0) << pub.err;
  // No --model: the agent starts on the model OTA installed.
  r = Tend("run --source 'sim:strokes=30,seed=87' --speed 20" + ota, dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  s = nlohmann::json::parse(Slurp(dir_ + "/s.json"));
  EXPECT_EQ(s["model"], "press-anomaly v2");
  EXPECT_EQ(s["windows"], 30);
  auto pos = r.err.rfind("ota: {");
  ASSERT_NE(pos, std::string::npos) << r.err;
  auto status = nlohmann::json::parse(r.err.substr(pos + 5, r.err.find('\n', pos) - pos - 5));
  EXPECT_EQ(status["current_version"], 2);
  EXPECT_EQ(status["installs"], 0);
  EXPECT_EQ(status["highest_version"], 3);  // refused versions are recorded, never retried
  EXPECT_NE(r.err.find("v3 rolled back before commit: quality"), std::string::npos) << r.err;
}


// Probation in the running agent: a signed model that passes the reference-set gate but alert-
// storms on the live stream (trained on a new die only, it calls the moderate wear the press now
// has an anomaly; the old model, trained up to wear 0.4, does not) is rolled back by the device on
// its own; the agent ends on the old model and no window is missed.
TEST_F(Acceptance, OtaProbationRollsBackAnAlertStorm) {
  ASSERT_EQ(Tend("train --input 'sim:strokes=40,wear=0,wear_end=0.4,seed=91' --version 2 --out v2.onnx", dir_).rc, 0);
  ASSERT_EQ(Tend("train --input 'sim:strokes=40,wear=0,seed=92' --version 3 --out v3.onnx", dir_).rc, 0);
  ASSERT_EQ(Tend("keygen --out pub", dir_).rc, 0);
  ASSERT_EQ(Tend("registry init reg --key pub.key", dir_).rc, 0);
  const std::string publish = " --name press-anomaly --profile x86-cpu-fp32 --key pub.key --registry reg --min-quality 0.9";
  auto pub = Tend("publish v2.onnx --version 2" + publish, dir_);
  ASSERT_EQ(pub.rc, 0) << pub.err;
  const std::string ota =
      " --quiet --metrics-port 0 --ota-registry reg --ota-model-dir models --ota-root reg/root.json "
      "--ota-interval 1 --ota-reference-normal 'sim:strokes=30,wear=0,seed=84' "
      "--ota-reference-anomalous 'sim:strokes=20,wear=0.5,wear_end=1,seed=85' "
      "--ota-storm-windows 10 --ota-storm-alerts 5 --summary-json s.json";
  // First run: the factory model (v1.onnx, its card says version 1) is adopted under that same
  // version (#16.9: one version in the log, the metrics and OTA; it used to be "v0" in OTA) and
  // becomes the backup of v2, which OTA installs. --ota-probation 0 lets v2 count as proven at once, as if it had run its 24 h.
  ASSERT_EQ(Tend("train --input 'sim:strokes=40,wear=0,wear_end=0.4,seed=93' --out v1.onnx", dir_).rc, 0);
  auto r = Tend("run --model v1.onnx --source 'sim:strokes=20,wear=0.3,seed=94' --speed 20 "
                "--ota-probation 0" + ota, dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  ASSERT_EQ(nlohmann::json::parse(Slurp(dir_ + "/s.json"))["model"], "press-anomaly v2") << r.err;
  EXPECT_NE(r.err.find("adopted start-up model v1.onnx as press-anomaly v1"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("model press-anomaly v1 ("), std::string::npos) << r.err;  // the agent's log
  EXPECT_NE(r.err.find("installed press-anomaly v2 (quality"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("; backup v1"), std::string::npos) << r.err;

  pub = Tend("publish v3.onnx --version 3" + publish, dir_);
  ASSERT_EQ(pub.rc, 0) << pub.err;
  // This run also reports over MQTT: the OTA state goes to factory/{f}/edge/{device}/ota.
  const bool mqtt = Broker::Available();
  Broker broker;
  Subscriber sub(broker.port(), {"factory/+/edge/+/ota"}, "indep-ota");
  std::string telemetry;
  if (mqtt) {
    ASSERT_TRUE(broker.Start());
    sub.Start();
    ASSERT_TRUE(WaitSubscribed(broker.port(), sub, "factory/probe/edge/probe/ota"));
    telemetry = " --mqtt " + broker.url() +
                " --factory plant-a --line l1 --asset press-7 --device-id edge-7 --state-dir st";
  }
  r = Tend("run --source 'sim:strokes=80,wear=0.3,seed=95' --speed 20 --decision-log d.jsonl" + ota +
               telemetry,
           dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  if (mqtt) {
    // The agent's own state messages, in order: it started on v2, installed v3, rolled back.
    std::vector<nlohmann::json> states;
    WaitFor(
        [&] {
          states.clear();
          for (const auto& m : sub.Messages()) {
            if (m.topic == "factory/plant-a/edge/edge-7/ota") states.push_back(nlohmann::json::parse(m.payload));
          }
          return !states.empty() && states.back()["event"] == "rolled_back";
        },
        std::chrono::seconds(10));
    std::string events;
    for (const auto& st : states) events += st["event"].get<std::string>() + " ";
    std::printf("  OTA states over MQTT: %s\n", events.c_str());
    ASSERT_GE(states.size(), 3u) << events;
    EXPECT_EQ(states.front()["event"], "startup") << events;
    EXPECT_EQ(states.front()["current_version"], 2);
    auto installed = std::find_if(states.begin(), states.end(),
                                  [](const auto& s) { return s["event"] == "installed"; });
    ASSERT_NE(installed, states.end()) << events;
    EXPECT_EQ((*installed)["current_version"], 3);
    EXPECT_EQ((*installed)["state"], "probation");
    EXPECT_EQ(states.back()["event"], "rolled_back") << events;
    EXPECT_EQ(states.back()["current_version"], 2);
    EXPECT_NE(states.back()["last_rollback_reason"].get<std::string>().find("alert storm"),
              std::string::npos);
    EXPECT_EQ(states.back()["device_id"], "edge-7");
    EXPECT_TRUE(states.back()["msg_id"].is_string());
    for (const auto& m : sub.Messages()) {
      if (m.topic == "factory/plant-a/edge/edge-7/ota") {
        EXPECT_EQ(m.qos, 1);
      }
    }
  }
  auto s = nlohmann::json::parse(Slurp(dir_ + "/s.json"));
  EXPECT_EQ(s["model"], "press-anomaly v2") << r.err;
  EXPECT_EQ(s["windows"], 80);
  EXPECT_EQ(s["deadline_misses"], 0);
  EXPECT_EQ(s["overruns"], 0);
  EXPECT_EQ(s["errors"], 0);
  // The gate passed v3 and it served; then the device went back to v2 by itself.
  EXPECT_NE(r.err.find("installed press-anomaly v3"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("rolled back press-anomaly from v3 to v2: misbehaviour during probation: "
                       "press-anomaly v3: alert storm"),
            std::string::npos)
      << r.err;
  auto pos = r.err.rfind("ota: {");
  ASSERT_NE(pos, std::string::npos) << r.err;
  auto status = nlohmann::json::parse(r.err.substr(pos + 5, r.err.find('\n', pos) - pos - 5));
  EXPECT_EQ(status["current_version"], 2);
  EXPECT_EQ(status["backup_version"], 0);  // v3 is rejected: never a rollback target (#16)
  EXPECT_EQ(status["in_probation"], false);
  EXPECT_EQ(status["updates"]["installed"], 1);
  EXPECT_EQ(status["updates"]["rolled_back"], 1);
  EXPECT_NE(status["last_rollback_reason"].get<std::string>().find("alert storm"), std::string::npos);
  // Every window decided once, in order; v3's stretch in the middle, v2 on both sides of it.
  std::ifstream log(dir_ + "/d.jsonl");
  std::string line, versions, alerts;
  int64_t expect_window = 0;
  while (std::getline(log, line)) {
    auto d = nlohmann::json::parse(line);
    EXPECT_EQ(d["window"], expect_window++);
    versions += d["model_version"].get<std::string>();
    alerts += d["is_alert"].get<bool>() ? 'A' : '.';
  }
  EXPECT_EQ(expect_window, 80);
  std::printf("  models: %s\n  alerts: %s\n", versions.c_str(), alerts.c_str());
  auto first3 = versions.find('3'), last3 = versions.rfind('3');
  ASSERT_NE(first3, std::string::npos);
  EXPECT_EQ(versions.find_first_not_of('3', first3), last3 + 1);  // one contiguous stretch
  EXPECT_EQ(versions.back(), '2');
  // v2 does not alert on this die; v3 did, which is why it went.
  EXPECT_EQ(alerts.substr(last3 + 1).find('A'), std::string::npos) << alerts;
  EXPECT_GT(std::count(alerts.begin() + static_cast<std::ptrdiff_t>(first3),
                       alerts.begin() + static_cast<std::ptrdiff_t>(last3) + 1, 'A'),
            5);
  // Not installed again on the next check.
  r = Tend("run --source 'sim:strokes=10,wear=0.3,seed=96' --speed 20" + ota, dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(Slurp(dir_ + "/s.json"))["model"], "press-anomaly v2");
  EXPECT_EQ(r.err.find("installed press-anomaly v3"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace tend::testing
