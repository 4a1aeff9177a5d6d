// The asset's monitors through `tend run` (#14, docs/alarms.md "In the agent"): the health of
// every decision in stdout (text and JSON) and the decision log, agreeing with the run summary;
// input health on a recording that flat-lines a channel (CSV), one with NaN bursts (WAV), one that
// clips (PCM16 WAV) and one whose time column shows a sample-rate glitch (CSV); `tend score
// --health` deciding the same health as `tend run`; the adaptive baseline absorbing a slow healthy
// drift but not a slowly rising fault.
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "../agent/cli_util.h"
#include "telemetry/test_support.h"

namespace tend::testing {
namespace {

constexpr double kRate = 4000;
constexpr int64_t kDriftWindows = 3000;
constexpr double kDriftGain = 1.15;
// A quick baseline for a test of thousands of windows (the defaults, a weight of 1/1000 per
// accepted window and a step every 200, are for months of windows).
constexpr const char* kAdaptiveFlags = "--config quick.toml --adaptive-baseline";

class MonitorsCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir("monitors_cli_" +
                   std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

std::vector<nlohmann::json> JsonLines(const std::string& text) {
  std::vector<nlohmann::json> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

// A machine: per channel a 180 Hz and a 730 Hz tone over broadband noise, times gain(t).
std::vector<float> Machine(int channels, int64_t frames, uint32_t seed,
                           const std::function<double(int64_t)>& gain) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> noise(0, 0.3);
  std::vector<float> x(static_cast<size_t>(frames * channels));
  for (int64_t i = 0; i < frames; ++i) {
    const double t = static_cast<double>(i) / kRate, g = gain(i);
    for (int c = 0; c < channels; ++c) {
      const double v =
          std::sin(2 * M_PI * 180 * t + c) + 0.5 * std::sin(2 * M_PI * 730 * t) + noise(rng);
      x[static_cast<size_t>(i * channels + c)] = static_cast<float>(g * v);
    }
  }
  return x;
}

void WriteWav(const std::string& path, int channels, const std::vector<float>& interleaved) {
  std::ofstream f(path, std::ios::binary);
  auto u32 = [&](uint32_t v) { f.write(reinterpret_cast<const char*>(&v), 4); };
  auto u16 = [&](uint16_t v) { f.write(reinterpret_cast<const char*>(&v), 2); };
  const auto bytes = static_cast<uint32_t>(interleaved.size() * 4);
  f.write("RIFF", 4);
  u32(36 + bytes);
  f.write("WAVEfmt ", 8);
  u32(16);
  u16(3);  // IEEE float
  u16(static_cast<uint16_t>(channels));
  u32(static_cast<uint32_t>(kRate));
  u32(static_cast<uint32_t>(kRate) * 4 * static_cast<uint32_t>(channels));
  u16(static_cast<uint16_t>(4 * channels));
  u16(32);
  f.write("data", 4);
  u32(bytes);
  f.write(reinterpret_cast<const char*>(interleaved.data()), bytes);
}

void WriteCsv(const std::string& path, int channels, const std::vector<float>& interleaved) {
  std::ofstream f(path);
  f << "time";
  for (int c = 0; c < channels; ++c) f << ",ch" << c;
  f << "\n";
  char buf[64];
  const size_t frames = interleaved.size() / static_cast<size_t>(channels);
  for (size_t i = 0; i < frames; ++i) {
    std::snprintf(buf, sizeof buf, "%.6f", static_cast<double>(i) / kRate);
    f << buf;
    for (int c = 0; c < channels; ++c) {
      std::snprintf(buf, sizeof buf, ",%.5f", interleaved[i * static_cast<size_t>(channels) + c]);
      f << buf;
    }
    f << "\n";
  }
}

// 16-bit PCM (what a recorder that clips writes): full scale is -32768..32767.
void WritePcm16(const std::string& path, const std::vector<float>& mono) {
  std::ofstream f(path, std::ios::binary);
  auto u32 = [&](uint32_t v) { f.write(reinterpret_cast<const char*>(&v), 4); };
  auto u16 = [&](uint16_t v) { f.write(reinterpret_cast<const char*>(&v), 2); };
  const auto bytes = static_cast<uint32_t>(mono.size() * 2);
  f.write("RIFF", 4);
  u32(36 + bytes);
  f.write("WAVEfmt ", 8);
  u32(16);
  u16(1);  // PCM
  u16(1);
  u32(static_cast<uint32_t>(kRate));
  u32(static_cast<uint32_t>(kRate) * 2);
  u16(2);
  u16(16);
  f.write("data", 4);
  u32(bytes);
  for (float v : mono) {
    const auto q = static_cast<int16_t>(std::clamp(std::lround(v * 32768.0), -32768L, 32767L));
    f.write(reinterpret_cast<const char*>(&q), 2);
  }
}

// A one-channel CSV with its own time column: row i at times[i].
void WriteTimedCsv(const std::string& path, const std::vector<double>& times,
                   const std::vector<float>& mono) {
  std::ofstream f(path);
  f << "time,ch0\n";
  char buf[64];
  for (size_t i = 0; i < mono.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%.7f,%.5f\n", times[i], static_cast<double>(mono[i]));
    f << buf;
  }
}

// Build item 1: the health state is in every decision (computed by the agent before the sinks),
// so stdout, --json and the decision log agree with each other and with the run summary.
TEST_F(MonitorsCli, HealthIsInEveryDecisionOfEveryOutput) {
  ASSERT_EQ(Tend("train --input 'sim:strokes=300,wear=0,seed=5' --out m.onnx", dir_).rc, 0);
  auto r = Tend(
      "run --model m.onnx --source 'sim:strokes=150,wear=0.7,wear_end=1,seed=2' --speed 0 "
      "--json --decision-log dl.jsonl --summary-json s.json --metrics-port 0",
      dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto lines = JsonLines(r.out), logged = JsonLines(Slurp(dir_ + "/dl.jsonl"));
  ASSERT_EQ(lines.size(), 150u);
  ASSERT_EQ(logged.size(), 150u);
  int64_t first_warning = -1, first_alarm = -1;
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto& d = lines[i];
    ASSERT_TRUE(d.contains("health") && d.contains("health_cusum")) << d.dump();
    EXPECT_EQ(logged[i]["health"], d["health"]) << i;
    EXPECT_EQ(logged[i]["health_cusum"], d["health_cusum"]) << i;
    if (d["health"] == "warning" && first_warning < 0) first_warning = d["window"];
    if (d["health"] == "alarm" && first_alarm < 0) first_alarm = d["window"];
  }
  const auto s = nlohmann::json::parse(Slurp(dir_ + "/s.json"))["monitors"]["asset-1"];
  ASSERT_GE(first_alarm, 0) << "a wearing press must alarm";
  EXPECT_EQ(s["first_alarm_window"], first_alarm) << s.dump();
  EXPECT_EQ(s["first_warning_window"], first_warning) << s.dump();
  EXPECT_EQ(s["health"], lines.back()["health"]);
  // Text: one health column.
  auto t = Tend(
      "run --model m.onnx --source 'sim:strokes=150,wear=0.7,wear_end=1,seed=2' --speed 0 "
      "--metrics-port 0",
      dir_);
  ASSERT_EQ(t.rc, 0) << t.err;
  std::istringstream in(t.out);
  int alarm_lines = 0, lines_seen = 0;
  for (std::string line; std::getline(in, line); ++lines_seen) {
    EXPECT_NE(line.find(" health="), std::string::npos) << line;
    alarm_lines += line.find(" health=alarm ") != std::string::npos;
  }
  EXPECT_EQ(lines_seen, 150);
  int alarm_json = 0;
  for (const auto& d : lines) alarm_json += d["health"] == "alarm";
  EXPECT_EQ(alarm_lines, alarm_json);
  // Off for an asset: no health fields at all.
  std::ofstream(dir_ + "/off.toml") << R"([agent]
speed = 0
source = "sim:strokes=5,seed=2"
model = "m.onnx"

[metrics]
port = 0

[monitors]
health = false
)";
  auto off = Tend("run --config off.toml --json", dir_);
  ASSERT_EQ(off.rc, 0) << off.err;
  for (const auto& d : JsonLines(off.out)) EXPECT_FALSE(d.contains("health")) << d.dump();
}

// Build item 3: input health from the raw window the agent scores. A CSV whose second channel
// goes dead (exactly constant) half-way, and a WAV with NaN bursts in three windows.
TEST_F(MonitorsCli, InputHealthReportsAFlatLinedChannelAndNaNBursts) {
  const int64_t window = 400;  // 0.1 s
  WriteWav(dir_ + "/healthy.wav", 2, Machine(2, 300 * window, 1, [](int64_t) { return 1.0; }));
  auto train = Tend("train --input healthy.wav --window 400 --out m.onnx", dir_);
  ASSERT_EQ(train.rc, 0) << train.err;

  auto flat = Machine(2, 100 * window, 2, [](int64_t) { return 1.0; });
  for (size_t i = 50 * window * 2 + 1; i < flat.size(); i += 2) flat[i] = 0.25f;  // ch1 dead
  WriteCsv(dir_ + "/flat.csv", 2, flat);
  auto r = Tend(
      "run --model m.onnx --source flat.csv --speed 0 --json --metrics-port 0 "
      "--summary-json f.json",
      dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto lines = JsonLines(r.out);
  ASSERT_EQ(lines.size(), 100u);
  for (const auto& d : lines) {
    const int64_t w = d["window"];
    // Flat for 3 windows in a row before it counts (InputHealthOptions::flat_windows).
    if (w < 52) {
      EXPECT_FALSE(d.contains("input_problems")) << d.dump();
    } else {
      EXPECT_EQ(d.value("input_problems", ""), "flat_line") << d.dump();
    }
  }
  auto s = nlohmann::json::parse(Slurp(dir_ + "/f.json"))["monitors"]["asset-1"];
  EXPECT_EQ(s["input_windows"]["flat_line"], 48) << s.dump();
  EXPECT_EQ(s["input_windows"]["non_finite"], 0) << s.dump();
  EXPECT_NE(r.err.find("asset-1: input flat_line at window 52"), std::string::npos) << r.err;

  auto bursts = Machine(1, 100 * window, 3, [](int64_t) { return 1.0; });
  std::vector<float> two(bursts.size() * 2);
  for (size_t i = 0; i < bursts.size(); ++i) two[2 * i] = two[2 * i + 1] = bursts[i];
  for (int64_t w : {10, 40, 77}) {
    for (int64_t k = 0; k < 7; ++k) two[static_cast<size_t>((w * window + 100 + k) * 2)] = NAN;
  }
  WriteWav(dir_ + "/nan.wav", 2, two);
  r = Tend(
      "run --model m.onnx --source nan.wav --speed 0 --json --metrics-port 0 "
      "--summary-json n.json",
      dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  int bad = 0;
  for (const auto& d : JsonLines(r.out)) {
    const int64_t w = d["window"];
    const bool burst = w == 10 || w == 40 || w == 77;
    EXPECT_EQ(d.value("input_problems", ""), burst ? "non_finite" : "") << d.dump();
    EXPECT_EQ(d.value("fail_safe", false), burst) << d.dump();
    bad += burst;
  }
  EXPECT_EQ(bad, 3);
  s = nlohmann::json::parse(Slurp(dir_ + "/n.json"));
  EXPECT_EQ(s["monitors"]["asset-1"]["input_windows"]["non_finite"], 3) << s.dump();
  EXPECT_EQ(s["monitors"]["asset-1"]["input_windows"]["non_finite_samples"], 21) << s.dump();
  EXPECT_EQ(s["errors"], 3);
}

// Clipping and a sample-rate glitch through `tend run`, reported in the decisions
// (input_problems), the run summary and the metrics. A PCM16 recording whose level rises past
// full scale for windows 20-29 (the recorder rides its rails), and a CSV whose time column shows
// the sampling slowed to 0.8 of its rate for windows 40-49 (each step 1.25 x the nominal one,
// which the CSV reader accepts as sampling, not as a gap) and that clips for windows 10-19.
TEST_F(MonitorsCli, ClippingAndARateGlitchReachDecisionsSummaryAndMetrics) {
  const int64_t window = 400;
  auto scaled = [](std::vector<float> x, double by) {
    for (float& v : x) v = static_cast<float>(v * by);
    return x;
  };
  WritePcm16(dir_ + "/healthy.wav",
             scaled(Machine(1, 300 * window, 1, [](int64_t) { return 1.0; }), 0.25));
  auto train = Tend("train --input healthy.wav --window 400 --out m.onnx", dir_);
  ASSERT_EQ(train.rc, 0) << train.err;
  auto in = [&](int64_t i, int64_t from, int64_t to) {
    return i >= from * window && i < to * window;
  };
  WritePcm16(
      dir_ + "/clip.wav",
      scaled(Machine(1, 60 * window, 2, [&](int64_t i) { return in(i, 20, 30) ? 3.0 : 1.0; }),
             0.25));
  auto r = Tend(
      "run --model m.onnx --source clip.wav --speed 0 --json --metrics-port 0 "
      "--summary-json c.json",
      dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  auto lines = JsonLines(r.out);
  ASSERT_EQ(lines.size(), 60u);
  for (const auto& d : lines) {
    const int64_t w = d["window"];
    EXPECT_EQ(d.value("input_problems", ""), w >= 20 && w < 30 ? "clipping" : "") << d.dump();
  }
  auto s = nlohmann::json::parse(Slurp(dir_ + "/c.json"))["monitors"]["asset-1"];
  EXPECT_EQ(s["input_windows"]["clipping"], 10) << s.dump();
  EXPECT_EQ(s["input_windows"]["rate_glitch"], 0) << s.dump();
  EXPECT_NE(r.err.find("asset-1: input clipping at window 20"), std::string::npos) << r.err;

  // The CSV: 120 windows, clipping in 10-19 (at +-0.3, the level the rails of this sensor give),
  // the sampling slowed in 40-49.
  const int64_t frames = 120 * window;
  auto x = scaled(Machine(1, frames, 3, [](int64_t) { return 1.0; }), 0.25);
  for (int64_t i = 10 * window; i < 20 * window; ++i) {
    float& v = x[static_cast<size_t>(i)];
    v = std::clamp(3 * v, -0.3f, 0.3f);
  }
  std::vector<double> t(static_cast<size_t>(frames));
  for (int64_t i = 1; i < frames; ++i) {
    const bool slow = i > 40 * window && i < 50 * window;  // steps inside windows 40-49
    t[static_cast<size_t>(i)] = t[static_cast<size_t>(i - 1)] + (slow ? 1.25 : 1.0) / kRate;
  }
  WriteTimedCsv(dir_ + "/glitch.csv", t, x);
  // Paced (not --speed 0) so that the metrics can be scraped while it runs: 12 s of signal at
  // 4x, the glitch over after 5 s of signal.
  const int port = FreePort();
  std::ofstream(dir_ + "/loopback.toml") << "[metrics]\nbind = \"127.0.0.1\"\n";
  const std::string out_path = dir_ + "/glitch.out";
  pid_t pid =
      Spawn({TendBin(), "run", "--model", dir_ + "/m.onnx", "--source", dir_ + "/glitch.csv",
             "--speed", "4", "--json", "--metrics-port", std::to_string(port), "--state-dir",
             dir_ + "/st", "--config", dir_ + "/loopback.toml", "--summary-json", dir_ + "/g.json"},
            out_path, /*merge_stderr=*/false);
  ASSERT_GT(pid, 0);
  std::string scrape;
  auto counter = [&](const std::string& problem) {
    const std::string key = "problem=\"" + problem + "\"";
    std::istringstream ls(scrape);
    for (std::string line; std::getline(ls, line);) {
      if (line.rfind("edge_input_problem_windows_total{", 0) == 0 &&
          line.find(key) != std::string::npos) {
        return std::stod(line.substr(line.rfind(' ') + 1));
      }
    }
    return -1.0;
  };
  const bool seen = WaitFor(
      [&] {
        httplib::Client cli("127.0.0.1", port);
        auto res = cli.Get("/metrics");
        if (res && res->status == 200) scrape = res->body;
        return counter("rate_glitch") >= 10;
      },
      std::chrono::seconds(60));
  ASSERT_EQ(WaitExit(pid), 0) << ReadAll(out_path);
  ASSERT_TRUE(seen) << scrape;
  EXPECT_EQ(counter("rate_glitch"), 10) << scrape;
  EXPECT_EQ(counter("clipping"), 10) << scrape;
  lines = JsonLines(ReadAll(out_path));
  ASSERT_EQ(lines.size(), 120u);
  for (const auto& d : lines) {
    const int64_t w = d["window"];
    const std::string want = w >= 10 && w < 20   ? "clipping"
                             : w >= 40 && w < 50 ? "rate_glitch"
                                                 : "";
    EXPECT_EQ(d.value("input_problems", ""), want) << d.dump();
  }
  s = nlohmann::json::parse(Slurp(dir_ + "/g.json"))["monitors"]["asset-1"];
  EXPECT_EQ(s["input_windows"]["rate_glitch"], 10) << s.dump();
  EXPECT_EQ(s["input_windows"]["clipping"], 10) << s.dump();
}

// `tend score --health` runs the agent's own monitors (agent/asset_monitor.h) on the windows it
// scores: the same input gives the same health, CUSUMs and input problems as `tend run`.
TEST_F(MonitorsCli, ScoreHealthIsTheHealthTendRunDecides) {
  ASSERT_EQ(Tend("train --input 'sim:strokes=300,wear=0,seed=5' --out m.onnx", dir_).rc, 0);
  const std::string input = "'sim:strokes=150,wear=0.7,wear_end=1,seed=2'";
  auto run =
      Tend("run --model m.onnx --source " + input + " --speed 0 --json --metrics-port 0", dir_);
  ASSERT_EQ(run.rc, 0) << run.err;
  auto score = Tend("score --model m.onnx --health --input " + input, dir_);
  ASSERT_EQ(score.rc, 0) << score.err;
  const auto a = JsonLines(run.out), b = JsonLines(score.out);
  ASSERT_EQ(a.size(), 150u);
  ASSERT_EQ(b.size(), a.size());
  int alarms = 0, warnings = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(b[i]["window"], a[i]["window"]) << i;
    ASSERT_EQ(b[i]["anomaly_score"], a[i]["anomaly_score"]) << i;
    for (const char* k : {"health", "health_cusum", "health_alarm_cusum", "input_problems"}) {
      EXPECT_EQ(b[i].value(k, nlohmann::json()), a[i].value(k, nlohmann::json()))
          << k << " at window " << i << "\nrun:   " << a[i].dump() << "\nscore: " << b[i].dump();
    }
    alarms += a[i]["health"] == "alarm";
    warnings += a[i]["health"] == "warning";
  }
  EXPECT_GT(alarms, 0) << "the wearing press must alarm: the comparison covers every state";
  EXPECT_GT(warnings, 0);
}

// Build item 2: the adaptive baseline (opt-in). A slow healthy drift (the machine's level rises
// 15 % over 2,500 windows, then stays) is absorbed: fewer alerts than without adaptation, every
// step recorded. A slowly rising fault (the level doubles over 3,000 windows) is not learned
// away: the baseline stops at its cap, and the fault alarms with adaptation as without.
TEST_F(MonitorsCli, AdaptiveBaselineAbsorbsASlowHealthyDriftButNotARisingFault) {
  const int64_t window = 400;
  WriteWav(dir_ + "/healthy.wav", 1, Machine(1, 600 * window, 1, [](int64_t) { return 1.0; }));
  auto train = Tend("train --input healthy.wav --window 400 --out m.onnx", dir_);
  ASSERT_EQ(train.rc, 0) << train.err;
  std::ofstream(dir_ + "/quick.toml") << "[monitors]\nadaptive_rate = 0.05\n"
                                         "adaptive_commit_every = 10\n";
  auto ramp = [&](double to, int64_t over) {
    return [=](int64_t i) {
      return 1 +
             (to - 1) * std::min(1.0, static_cast<double>(i) / static_cast<double>(over * window));
    };
  };
  WriteWav(dir_ + "/drift.wav", 1, Machine(1, kDriftWindows * window, 2, ramp(kDriftGain, 2500)));
  WriteWav(dir_ + "/fault.wav", 1, Machine(1, 3000 * window, 3, ramp(2.0, 3000)));
  struct Run {
    int alerts = 0;
    int64_t first_alarm = -1, steps = 0, adapted_lines = 0;
    std::string health;
  };
  auto run = [&](const std::string& input, bool adaptive) {
    const std::string flags = adaptive ? kAdaptiveFlags : "";
    auto r = Tend("run --model m.onnx --source " + input + " --speed 0 --json --metrics-port 0 " +
                      flags + " --summary-json s.json",
                  dir_);
    EXPECT_EQ(r.rc, 0) << r.err;
    Run out;
    for (const auto& d : JsonLines(r.out)) {
      out.alerts += d["is_alert"].get<bool>();
      if (d["health"] == "alarm" && out.first_alarm < 0) out.first_alarm = d["window"];
      out.adapted_lines += d.value("baseline_adapted", false);
      EXPECT_EQ(d.contains("baseline_step"), adaptive) << d.dump();
      if (adaptive) out.steps = std::max<int64_t>(out.steps, d["baseline_step"]);
      out.health = d["health"];
    }
    const auto s = nlohmann::json::parse(Slurp(dir_ + "/s.json"))["monitors"]["asset-1"];
    if (adaptive) {
      EXPECT_EQ(s["baseline_steps"], out.steps) << s.dump();
      EXPECT_EQ(static_cast<int64_t>(s["baseline_journal"].size()),
                std::min<int64_t>(out.steps, 32));
    }
    return out;
  };
  const Run drift = run("drift.wav", false), drift_a = run("drift.wav", true);
  std::printf("drift: %d alerts without adaptation, %d with (%lld steps)\n", drift.alerts,
              drift_a.alerts, static_cast<long long>(drift_a.steps));
  EXPECT_GT(drift.alerts, 50) << "the drift must matter without adaptation";
  EXPECT_LT(drift_a.alerts * 4, drift.alerts);
  EXPECT_GT(drift_a.steps, 0);
  EXPECT_EQ(drift_a.adapted_lines, drift_a.steps);
  const Run fault = run("fault.wav", false), fault_a = run("fault.wav", true);
  std::printf("fault: alarm from window %lld without adaptation, %lld with\n",
              static_cast<long long>(fault.first_alarm),
              static_cast<long long>(fault_a.first_alarm));
  ASSERT_GE(fault.first_alarm, 0);
  ASSERT_GE(fault_a.first_alarm, 0) << "the rising fault was learned away";
  EXPECT_EQ(fault_a.health, "alarm");
}

}  // namespace
}  // namespace tend::testing
