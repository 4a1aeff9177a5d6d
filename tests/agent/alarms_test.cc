// `tend train` choosing from the input, and the alarm figures on real data, end to end through
// the binary: a press recording gets stroke windows (issue #16 item 1), valve sound clips get one
// window per clip and the sound features, and two FEMTO bearings stay quiet through their healthy
// drift and alarm before failure. The full six-bearing table is `make measure-alarms`.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "cli_util.h"
#include "detect/onnx_export.h"
#include "eval/metrics.h"

namespace tend::testing {
namespace {

namespace fs = std::filesystem;

class AlarmsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir("alarms_" +
                   std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

bool Contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// #16 item 1: a press recorded with `tend simulate`, trained with nothing but --input. Fixed
// 0.2 s windows put the stroke anywhere in the window and the model learnt its position (AUC
// 0.49); the stroke probe finds the strokes and cuts one window per stroke.
TEST_F(AlarmsTest, TrainingOnAPressRecordingFindsTheStrokes) {
  ASSERT_EQ(Tend("simulate --sim 'sim:strokes=200,wear=0,seed=1' --out healthy.wav", dir_).rc, 0);
  ASSERT_EQ(Tend("simulate --sim 'sim:strokes=100,wear=0,seed=3' --out normal.wav", dir_).rc, 0);
  ASSERT_EQ(
      Tend("simulate --sim 'sim:strokes=100,wear=0.6,wear_end=1,seed=2' --out worn.wav", dir_).rc,
      0);
  auto t = Tend("train --input healthy.wav --out m.onnx", dir_);
  ASSERT_EQ(t.rc, 0) << t.err;
  EXPECT_TRUE(Contains(t.out, "windows: one per stroke")) << t.out;
  EXPECT_TRUE(Contains(t.out, "stroke onsets in the first 60 s of healthy.wav")) << t.out;
  EXPECT_TRUE(Contains(t.out, "features: press")) << t.out;
  auto e = Tend("eval --json --model m.onnx --normal normal.wav --anomalous worn.wav", dir_);
  ASSERT_EQ(e.rc, 0) << e.err;
  const auto j = nlohmann::json::parse(e.out);
  EXPECT_EQ(j["normal_windows"], 100);
  EXPECT_GE(j["auc"].get<double>(), 0.99);
  // The choice is in the model card.
  auto card = detect::ReadModelCard(dir_ + "/m.onnx");
  ASSERT_TRUE(card) << card.error().message;
  EXPECT_EQ(card->training_summary["input_choice"]["kind"], "strokes");
  EXPECT_EQ(card->training_summary["detector_selection"]["chosen"], card->detector);
  EXPECT_EQ(card->feature_spec["windowing"]["mode"], "trigger");
  EXPECT_TRUE(card->feature_reference.is_object());
  // Asking for fixed windows is still possible, and says so.
  t = Tend("train --input healthy.wav --hop 2000 --out f.onnx", dir_);
  ASSERT_EQ(t.rc, 0) << t.err;
  EXPECT_TRUE(Contains(t.out, "windows: fixed")) << t.out;
  EXPECT_TRUE(Contains(t.out, "asked for (--hop)")) << t.out;
}

TEST_F(AlarmsTest, BadChoicesAreOneLineErrors) {
  ASSERT_EQ(Tend("simulate --sim 'sim:strokes=30,seed=1' --out a.wav", dir_).rc, 0);
  auto r = Tend("train --input a.wav --features guitar --out m.onnx", dir_);
  EXPECT_NE(r.rc, 0);
  EXPECT_TRUE(Contains(LastLine(r.err), "--features must be auto, press, bearing")) << r.err;
  r = Tend("train --input a.wav --detector magic --out m.onnx", dir_);
  EXPECT_NE(r.rc, 0);
  EXPECT_TRUE(Contains(LastLine(r.err), "unknown detector 'magic'")) << r.err;
  ASSERT_EQ(Tend("train --input a.wav --out m.onnx", dir_).rc, 0);
  r = Tend("score --model m.onnx --input a.wav --debounce-k 4 --debounce-n 3", dir_);
  EXPECT_NE(r.rc, 0);
  EXPECT_TRUE(Contains(LastLine(r.err), "debounce k must be in 1..n")) << r.err;
  EXPECT_FALSE(fs::exists(dir_ + "/bad.jsonl"));
}

std::vector<std::string> ValveClips(const std::string& kind) {
  std::vector<std::string> out;
  const fs::path d = fs::path(SharedDir()) / "data" / "valve-sound";
  if (SharedDir().empty() || !fs::exists(d)) return out;
  for (const auto& e : fs::directory_iterator(d)) {
    const std::string n = e.path().filename().string();
    if (Contains(n, "_" + kind + "_") && n.ends_with(".wav")) out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string Join(const std::vector<std::string>& v, size_t from, size_t to) {
  std::string s;
  for (size_t i = from; i < to && i < v.size(); ++i) s += " '" + v[i] + "'";
  return s;
}

// Real machine sound (DCASE 2023 valve, one session): 25 normal clips and nothing else; the
// other 25 normal against the 50 anomalous, one score per clip. (make measure-alarms runs
// several random splits next to a numpy reference.)
TEST_F(AlarmsTest, ValveClipsWithDefaultsSeparateAtTheClipLevel) {
  const auto normal = ValveClips("normal"), anomalous = ValveClips("anomaly");
  if (normal.size() < 50 || anomalous.size() < 50)
    GTEST_SKIP() << "no valve data in TEND_SHARED_DIR";
  // Every other clip: the two halves mix operating patterns and recording order.
  std::vector<std::string> train, test;
  for (size_t i = 0; i < normal.size(); ++i) (i % 2 ? test : train).push_back(normal[i]);
  auto t = Tend("train --input" + Join(train, 0, 25) + " --out v.onnx", dir_);
  ASSERT_EQ(t.rc, 0) << t.err;
  EXPECT_TRUE(Contains(t.out, "are clips")) << t.out;
  EXPECT_TRUE(Contains(t.out, "features: sound")) << t.out;
  auto e = Tend("eval --json --model v.onnx --normal" + Join(test, 0, 25) + " --anomalous" +
                    Join(anomalous, 0, 50),
                dir_);
  ASSERT_EQ(e.rc, 0) << e.err;
  const auto j = nlohmann::json::parse(e.out);
  EXPECT_EQ(j["normal_clips"], 25);
  EXPECT_EQ(j["anomalous_clips"], 50);
  std::printf("  valve, 25 normal clips: clip AUC %.4f\n", j["clip_auc"].get<double>());
  EXPECT_GE(j["clip_auc"].get<double>(), 0.85);
  // score --clips: one line per clip.
  auto s = Tend("score --clips --model v.onnx --input" + Join(test, 0, 3), dir_);
  ASSERT_EQ(s.rc, 0) << s.err;
  std::istringstream lines(s.out);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    const auto c = nlohmann::json::parse(line);
    EXPECT_EQ(c["windows"], 1);
    EXPECT_GT(c["clip_score"].get<double>(), 0);
    ++n;
  }
  EXPECT_EQ(n, 3);
}

struct BearingRun {
  std::vector<double> life, score;
  std::vector<bool> alert;
  std::vector<std::string> health;
};

BearingRun ScoreBearing(const std::string& name, const std::string& dir, std::string* trained) {
  BearingRun r;
  const std::string base = SharedDir() + "/data/femto/" + name;
  std::ifstream csv(base + ".csv");
  std::string line;
  std::getline(csv, line);
  while (std::getline(csv, line)) r.life.push_back(std::stod(line.substr(line.rfind(',') + 1)));
  const size_t n20 = static_cast<size_t>(
      std::find_if(r.life.begin(), r.life.end(), [](double f) { return f >= 0.2; }) -
      r.life.begin());
  // One snapshot per window (SOURCE.md): --window 2560; WAV time = window index x 0.1 s.
  auto t = Tend("train --window 2560 --input '" + base + ".wav@0:" + std::to_string(n20 * 0.1) +
                    "' --out b.onnx",
                dir);
  EXPECT_EQ(t.rc, 0) << t.err;
  *trained = t.out;
  // To failure through the agent: every window decided (--speed 0), the health state per window
  // from the monitors sink's logged state changes ("bearing: health alarm at window N").
  auto s = Tend("run --source '" + base +
                    ".wav' --model b.onnx --speed 0 --json --metrics-port 0 "
                    "--debounce-k 2 --debounce-n 3 --asset bearing",
                dir);
  EXPECT_EQ(s.rc, 0) << s.err;
  std::istringstream out(s.out);
  while (std::getline(out, line)) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["window"], r.score.size());
    r.score.push_back(j["anomaly_score"]);
    r.alert.push_back(j["is_alert"]);
  }
  r.health.assign(r.score.size(), "ok");
  std::istringstream err(s.err);
  const std::string key = "bearing: health ";
  while (std::getline(err, line)) {
    const size_t at = line.find(key), w = line.find(" at window ");
    if (at == std::string::npos || w == std::string::npos) continue;
    std::string state = line.substr(at + key.size());
    state = state.substr(0, state.find(' '));
    const size_t from = std::stoul(line.substr(w + 11));
    for (size_t i = from; i < r.health.size(); ++i) r.health[i] = state;
  }
  r.life.resize(std::min(r.life.size(), r.score.size()));
  return r;
}

// Run to failure on real bearings (FEMTO) with `tend run`, commissioned on the first 20 % of life:
// Bearing2_2's healthy vibration rises 18 dB in one band between 25 % and 60 % of life (a plain
// Mahalanobis alerts on 91 % of those windows); Bearing3_1 fails abruptly in its last 5 %.
TEST_F(AlarmsTest, FemtoBearingsStayQuietThroughHealthyDriftAndAlarmBeforeFailure) {
  if (SharedDir().empty() || !fs::exists(SharedDir() + "/data/femto/Bearing2_2.wav")) {
    GTEST_SKIP() << "no FEMTO data in TEND_SHARED_DIR";
  }
  for (const char* name : {"Bearing2_2", "Bearing3_1"}) {
    std::string trained;
    const BearingRun r = ScoreBearing(name, dir_, &trained);
    ASSERT_GT(r.score.size(), 500u);
    EXPECT_TRUE(Contains(trained, "features: vibration")) << trained;
    std::vector<double> healthy, end;
    int alerts = 0;
    for (size_t i = 0; i < r.life.size(); ++i) {
      if (r.life[i] >= 0.2 && r.life[i] < 0.5) {
        healthy.push_back(r.score[i]);
        alerts += r.alert[i];
      }
      if (r.life[i] >= 0.95) end.push_back(r.score[i]);
    }
    size_t alarm_from = r.life.size();
    while (alarm_from > 0 && r.health[alarm_from - 1] == "alarm") --alarm_from;
    const double alert_share = double(alerts) / healthy.size();
    const double auc = eval::RocAuc(healthy, end);
    std::printf(
        "  %s: alerts on %.2f %% of windows at 20-50 %% of life, sustained alarm from %.3f, "
        "AUC healthy vs last 5 %% %.4f\n",
        name, 100 * alert_share, alarm_from < r.life.size() ? r.life[alarm_from] : -1.0, auc);
    EXPECT_LE(alert_share, 0.02) << name;
    ASSERT_LT(alarm_from, r.life.size()) << name << ": no sustained alarm";
    EXPECT_LT(r.life[alarm_from], 0.99) << name;
    EXPECT_GT(r.life[alarm_from], 0.5) << name << ": the alarm came during the healthy stretch";
    EXPECT_GE(auc, 0.95) << name;
  }
}

}  // namespace
}  // namespace tend::testing
