// The runtime through the `tend` binary: components added as one file and one CMake line each
// show up in `tend doctor --json` and run; a two-asset config decides every window of each asset
// with its own id; a replayed recording loses no window.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "../agent/cli_util.h"
#include "sim_models_suite.h"

namespace tend::testing {
namespace {

std::string WithTestComponents() {
  return std::string(std::getenv("TEND_BINARY_DIR")) + "/tend_with_test_components";
}

std::set<std::string> Names(const nlohmann::json& list) {
  std::set<std::string> s;
  for (const auto& c : list) s.insert(c["name"].get<std::string>());
  return s;
}

class RuntimeCli : public SimModelsSuite<RuntimeCli> {
 public:
  static constexpr const char* kDirName = "runtime_cli";

 protected:
};

TEST_F(RuntimeCli, DoctorListsTheComponentsOfTheBinary) {
  auto r = Tend("doctor --json", dir());
  ASSERT_EQ(r.rc, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(Names(j["sources"]), (std::set<std::string>{"wav", "csv", "raw", "sim", "images"}));
  EXPECT_EQ(Names(j["stages"]), (std::set<std::string>{"plc_trigger"}));
  EXPECT_EQ(Names(j["model_kinds"]), (std::set<std::string>{"features", "raw", "image"}));
  EXPECT_EQ(Names(j["sinks"]),
            (std::set<std::string>{"stdout", "decision_log", "prometheus", "monitors", "mqtt",
                                   "sim_truth", "plc", "sparkplug"}));
  for (const char* k : {"sources", "stages", "model_kinds", "sinks"}) {
    for (const auto& c : j[k]) EXPECT_FALSE(c["description"].get<std::string>().empty());
  }
  // The keys of a component come with type, default and range.
  bool found = false;
  for (const auto& s : j["sinks"]) {
    for (const auto& k : s["keys"]) {
      if (k["key"] == "metrics.port") {
        found = true;
        EXPECT_EQ(k["type"], "int");
        EXPECT_EQ(k["default"], "8000");
        EXPECT_EQ(k["range"], "an integer in [0, 65535]");
      }
    }
  }
  EXPECT_TRUE(found);
  auto human = Tend("doctor", dir());
  EXPECT_NE(human.out.find("model kinds:"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("decision_log"), std::string::npos) << human.out;
}

// A source, an event stage and a sink added as one file and one tend_add_component() line each
// (tests/runtime/components), with no edit in src/cli or src/agent: listed and usable.
TEST_F(RuntimeCli, ComponentsAddedAsOneFileAndOneLineAreListedAndRun) {
  auto doctor = RunCmd("'" + WithTestComponents() + "' doctor --json", dir());
  ASSERT_EQ(doctor.rc, 0) << doctor.err;
  auto j = nlohmann::json::parse(doctor.out);
  EXPECT_TRUE(Names(j["sources"]).count("noise")) << j["sources"].dump();
  EXPECT_TRUE(Names(j["sinks"]).count("tally")) << j["sinks"].dump();
  EXPECT_TRUE(Names(j["stages"]).count("stamp")) << j["stages"].dump();
  auto r = RunCmd("'" + WithTestComponents() +
                      "' run --model fixed.onnx --source noise:seconds=5,seed=3 --speed 0 --json "
                      "--metrics-port 0 --tally tally.json --summary-json s.json --stamp 500",
                  dir());
  ASSERT_EQ(r.rc, 0) << r.err;
  auto tally = nlohmann::json::parse(Slurp(dir() + "/tally.json"));
  auto s = nlohmann::json::parse(Slurp(dir() + "/s.json"));
  // 5 s at 10 kHz, 2,000-sample windows every 200 samples.
  EXPECT_EQ(s["windows"], (50000 - 2000) / 200 + 1);
  EXPECT_EQ(tally["asset-1"]["decisions"], s["windows"]);
  // The stage's tag reaches every decision.
  int64_t lines = 0;
  std::istringstream out(r.out);
  for (std::string line; std::getline(out, line); ++lines) {
    auto d = nlohmann::json::parse(line);
    EXPECT_EQ(d["part_id"], 500 + d["window"].get<int64_t>()) << line;
  }
  EXPECT_EQ(lines, s["windows"]);
}

// SPEC: one edge box, several assets, each with its own source, model, deadline and decisions.
TEST_F(RuntimeCli, TwoAssetConfigDecidesEveryWindowOfEachWithItsOwnId) {
  std::filesystem::create_directories(dir() + "/recordings");
  auto sim =
      Tend("simulate --sim 'sim:strokes=20,wear=0,seed=7' --out recordings/press07.wav", dir());
  ASSERT_EQ(sim.rc, 0) << sim.err;
  std::filesystem::create_directories(dir() + "/etc");
  // Paths in the file are relative to its own folder.
  std::ofstream(dir() + "/etc/two.toml") << R"([agent]
speed = 0

[metrics]
port = 0

[[asset]]
id = "press-07"
source = "../recordings/press07.wav"
model = "../m.onnx"

[[asset]]
id = "press-08"
source = "sim:strokes=15,seed=2"
model = "../m.onnx"
deadline_s = 2.0
)";
  auto r = Tend("run --config etc/two.toml --json --summary-json s2.json", dir());
  ASSERT_EQ(r.rc, 0) << r.err;
  std::map<std::string, std::vector<int64_t>> windows;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    auto d = nlohmann::json::parse(line);
    windows[d["asset_id"].get<std::string>()].push_back(d["window"].get<int64_t>());
  }
  ASSERT_EQ(windows.size(), 2u) << r.out;
  ASSERT_EQ(windows["press-07"].size(), 20u);
  ASSERT_EQ(windows["press-08"].size(), 15u);
  for (const auto& [asset, w] : windows) {
    for (size_t i = 0; i < w.size(); ++i) EXPECT_EQ(w[i], static_cast<int64_t>(i)) << asset;
  }
  EXPECT_NE(r.err.find("press-07 summary: 20 windows"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("press-08 summary: 15 windows"), std::string::npos) << r.err;
  // The single-asset flags and [[asset]] tables do not mix.
  auto mixed = Tend("run --config etc/two.toml --source sim", dir());
  EXPECT_NE(mixed.rc, 0);
  EXPECT_NE(LastLine(mixed.err).find("--source: etc/two.toml has [[asset]] tables"),
            std::string::npos)
      << mixed.err;
}

// A recording replayed as fast as possible is waited for, not dropped from: every window is
// decided even with a backlog of 16 windows (before: a full backlog dropped windows as overruns).
TEST_F(RuntimeCli, ReplayAtSpeedZeroDecidesEveryWindow) {
  auto sim = Tend("simulate --sim 'sim:strokes=60,wear=0,seed=8' --out long.wav", dir());
  ASSERT_EQ(sim.rc, 0) << sim.err;
  auto r = Tend(
      "run --model fixed.onnx --source long.wav --speed 0 --queue 16 --quiet "
      "--metrics-port 0 --summary-json s3.json",
      dir());
  ASSERT_EQ(r.rc, 0) << r.err;
  auto s = nlohmann::json::parse(Slurp(dir() + "/s3.json"));
  const int64_t frames = static_cast<int64_t>(s["signal_s"].get<double>() * 10000 + 0.5);
  EXPECT_EQ(s["windows"].get<int64_t>(), (frames - 2000) / 200 + 1);
  EXPECT_EQ(s["overruns"], 0);
  EXPECT_EQ(r.err.find("backlog full"), std::string::npos);
}

// The monitors sink (#14): per asset, health over many events and feature drift against the
// model's commissioning baseline. A healthy press stays ok; a wearing one warns, then alarms (the
// state changes are logged with their window, and the summary has the first of each); an asset
// can turn its monitors off; inconsistent drift levels are a one-line error naming the keys.
// Commissioned on 300 strokes (on 40, the calibration's spread is too uncertain for a quiet
// warning CUSUM; docs/alarms.md).
TEST_F(RuntimeCli, MonitorsWarnAndAlarmOnAWearingPressAndStayQuietOnAHealthyOne) {
  std::filesystem::create_directories(dir() + "/mon");
  auto t = Tend("train --input 'sim:strokes=300,wear=0,seed=5' --out mon/m.onnx", dir());
  ASSERT_EQ(t.rc, 0) << t.err;
  std::ofstream(dir() + "/mon/run.toml") << R"([agent]
speed = 0

[metrics]
port = 0

[[asset]]
id = "healthy"
source = "sim:strokes=300,wear=0,seed=9"
model = "m.onnx"

[[asset]]
id = "wearing"
source = "sim:strokes=150,wear=0.7,wear_end=1,seed=2"
model = "m.onnx"
drift_window = 50

[[asset]]
id = "unmonitored"
source = "sim:strokes=20,wear=0.7,wear_end=1,seed=3"
model = "m.onnx"
health_monitor = false
drift_monitor = false
input_health = false
)";
  auto r = Tend("run --config mon/run.toml --quiet --summary-json mon/s.json", dir());
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto s = nlohmann::json::parse(Slurp(dir() + "/mon/s.json"));
  ASSERT_TRUE(s.contains("monitors")) << s.dump(1);
  const auto& m = s["monitors"];
  EXPECT_FALSE(m.contains("unmonitored")) << m.dump(1);
  const auto& ok = m["healthy"];
  EXPECT_EQ(ok["health"], "ok") << ok.dump();
  EXPECT_TRUE(ok["first_warning_window"].is_null()) << ok.dump();
  EXPECT_TRUE(ok["first_alarm_window"].is_null()) << ok.dump();
  // 300 events do not fill the default 360-event drift window: no drift figure yet.
  EXPECT_FALSE(ok.contains("drift_level")) << ok.dump();
  const auto& worn = m["wearing"];
  EXPECT_EQ(worn["health"], "alarm") << worn.dump();
  ASSERT_TRUE(worn["first_warning_window"].is_number()) << worn.dump();
  ASSERT_TRUE(worn["first_alarm_window"].is_number()) << worn.dump();
  EXPECT_LE(worn["first_warning_window"].get<int64_t>(), worn["first_alarm_window"].get<int64_t>());
  EXPECT_NE(worn["drift_level"], "none") << worn.dump();
  EXPECT_FALSE(worn["feature_drift"].empty()) << worn.dump();
  const std::string logged = "wearing: health alarm at window " +
                             std::to_string(worn["first_alarm_window"].get<int64_t>());
  EXPECT_NE(r.err.find(logged), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("healthy: health"), std::string::npos) << r.err;

  std::ofstream(dir() + "/mon/bad.toml") << R"([agent]
speed = 0
source = "sim:strokes=5,seed=1"
model = "m.onnx"

[monitors]
drift_warn = 0.5
drift_alert = 0.25
)";
  auto bad = Tend("run --config mon/bad.toml --quiet --metrics-port 0", dir());
  EXPECT_NE(bad.rc, 0);
  EXPECT_NE(LastLine(bad.err).find("drift monitor (monitors.drift_*)"), std::string::npos)
      << bad.err;
  EXPECT_NE(LastLine(bad.err).find("0 < warn (0.5) < alert (0.25)"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace tend::testing
