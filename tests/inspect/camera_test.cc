// A real GigE Vision camera on loopback: Aravis' own fake camera (arv-fake-gv-camera-0.8, from
// Debian's aravis-tools; an independent implementation of the GigE Vision protocol: GVCP control
// on UDP 3956, GVSP streaming) started on 127.0.0.1, and `tend run --source aravis:127.0.0.1`
// deciding N of its frames with an image model fitted here (a tiny random CNN backbone). The test
// starts exactly one camera process and stops exactly that one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "../agent/cli_util.h"
#include "../telemetry/test_support.h"
#include "../vision/test_images.h"
#include "vision/decode.h"

namespace tend {
namespace {

namespace fs = std::filesystem;

constexpr const char* kFakeCamera = "/usr/bin/arv-fake-gv-camera-0.8";

// True once some process has the GVCP port (UDP 3956) bound on 127.0.0.1 (/proc/net/udp lists
// local addresses as hex, little-endian: 0100007F:0F74).
bool GvcpBound() {
  std::ifstream f("/proc/net/udp");
  std::string line;
  while (std::getline(f, line)) {
    if (line.find(" 0100007F:0F74 ") != std::string::npos) return true;
  }
  return false;
}

class GigECamera : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(kFakeCamera)) << "apt-get install aravis-tools (scripts/bootstrap.sh)";
    ASSERT_FALSE(GvcpBound()) << "UDP 127.0.0.1:3956 is taken: another GigE camera runs here";
    dir_ = testing::MakeTempDir("gige");
    // A grey part model: 40 textured 64x64 parts (30 fitted, 10 held out), tiny backbone.
    auto r =
        testing::RunCmd(std::string(TEND_PYTHON) +
                            " '" TEND_SOURCE_DIR "/tests/inspect/make_tiny_backbone.py' tiny.onnx",
                        dir_);
    ASSERT_EQ(r.rc, 0) << r.out << r.err;
    fs::create_directories(dir_ + "/good");
    for (int i = 0; i < 40; ++i) {
      auto img = testing::Gradient(64, 64, 1);
      std::mt19937 rng(static_cast<unsigned>(i));
      std::uniform_int_distribution<int> noise(-12, 12);
      for (auto& v : img.pixels()) v = static_cast<uint8_t>(std::clamp(v + noise(rng), 0, 255));
      auto png = vision::EncodePng(img.view());
      ASSERT_TRUE(png);
      std::ofstream(dir_ + "/good/g" + std::to_string(100 + i) + ".png", std::ios::binary) << *png;
    }
    r = testing::Tend(
        "train --input good --backbone tiny.onnx --layers l1,l2 --size 64x64 --color grey "
        "--dims 16 --out part.onnx",
        dir_);
    ASSERT_EQ(r.rc, 0) << r.out << r.err;
    camera_ =
        testing::Spawn({kFakeCamera, "-i", "127.0.0.1", "-s", "TEND0001"}, dir_ + "/camera.log");
    ASSERT_GT(camera_, 0);
    ASSERT_TRUE(testing::WaitFor(GvcpBound, std::chrono::seconds(20)))
        << "the fake camera did not bind 127.0.0.1:3956: "
        << testing::ReadAll(dir_ + "/camera.log");
  }
  void TearDown() override {
    testing::StopChild(camera_);  // exactly the process this test started
    camera_ = -1;
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  std::string dir_;
  pid_t camera_ = -1;
};

TEST_F(GigECamera, TendRunDecidesNFramesFromTheCamera) {
  constexpr int kFrames = 12;
  // The deadline is generous so that a loaded test machine does not turn frames into fail-safe
  // decisions: what is checked is that every frame from the camera arrives whole and is scored.
  auto r = testing::Tend("run --model part.onnx --source aravis:127.0.0.1 --max-windows " +
                             std::to_string(kFrames) +
                             " --deadline 30 --metrics-port 0 --quiet --state-dir state "
                             "--decision-log decisions.jsonl --summary-json summary.json",
                         dir_);
  ASSERT_EQ(r.rc, 0) << r.out << r.err << testing::ReadAll(dir_ + "/camera.log");
  std::ifstream log(dir_ + "/decisions.jsonl");
  std::vector<nlohmann::json> d;
  for (std::string line; std::getline(log, line);) d.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(d.size(), static_cast<size_t>(kFrames)) << r.err;
  for (int i = 0; i < kFrames; ++i) {
    EXPECT_EQ(d[i]["window"], i);
    EXPECT_FALSE(d[i].contains("fail_safe")) << d[i].dump();
    ASSERT_TRUE(d[i]["anomaly_score"].is_number()) << d[i].dump();
    EXPECT_TRUE(std::isfinite(d[i]["anomaly_score"].get<double>()));
  }
  auto summary = nlohmann::json::parse(testing::ReadAll(dir_ + "/summary.json"));
  EXPECT_EQ(summary["scored"], kFrames);
  EXPECT_EQ(summary["invalid_events"], 0);
  EXPECT_NE(summary["source"].get<std::string>().find("aravis:"), std::string::npos);
}

}  // namespace
}  // namespace tend
