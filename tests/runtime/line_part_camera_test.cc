// The part trigger with a camera, through `tend run`: a smart camera drops one image per part into
// a watched folder right after the PLC (the independent pymodbus server) raised "part present"
// (discrete input 3) with the part's number in holding register 12. Every decision carries the
// number the PLC had for that part; a frame that comes while the PLC shows no new part is decided
// without one and counted as unmatched.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "../agent/cli_util.h"
#include "io/modbus_test_support.h"
#include "vision/decode.h"
#include "vision/image.h"

namespace tend::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// A textured part: a gradient plus per-pixel noise.
void WritePart(const std::string& path, int seed) {
  vision::Image img(64, 64, 3);
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::uniform_int_distribution<int> noise(-12, 12);
  for (int y = 0; y < 64; ++y) {
    for (int x = 0; x < 64; ++x) {
      for (int c = 0; c < 3; ++c) {
        const int v = x * 2 + y + 20 * c + noise(rng);
        img.data()[(static_cast<size_t>(y) * 64 + x) * 3 + c] =
            static_cast<uint8_t>(std::clamp(v, 0, 255));
      }
    }
  }
  auto png = vision::EncodePng(img.view());
  ASSERT_TRUE(png) << png.error().message;
  std::ofstream(path, std::ios::binary) << *png;
}

std::vector<nlohmann::json> Decisions(const std::string& out) {
  std::vector<nlohmann::json> v;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.contains("window")) v.push_back(std::move(j));
  }
  return v;
}

TEST(LinePartCamera, EveryFrameCarriesThePartNumberThePlcHadForIt) {
  if (!ModbusServer::Available()) GTEST_SKIP() << "python3-pymodbus not installed";
  const std::string dir = TempDir("line_camera");
  fs::create_directories(dir + "/good");
  fs::create_directories(dir + "/drop");
  auto r = RunCmd("/usr/bin/python3 '" TEND_SOURCE_DIR
                  "/tests/inspect/make_tiny_backbone.py' "
                  "tiny.onnx",
                  dir);
  if (r.rc != 0) GTEST_SKIP() << "no onnx/numpy for the test backbone: " << r.err;
  for (int i = 0; i < 40; ++i) WritePart(dir + "/good/g" + std::to_string(100 + i) + ".png", i);
  r = Tend(
      "train --input images:good --backbone tiny.onnx --layers l1,l2 --size 64x64 "
      "--dims 16 --out part.onnx",
      dir);
  ASSERT_EQ(r.rc, 0) << r.out << r.err;

  ModbusServer plc;
  ASSERT_TRUE(plc.Start()) << plc.Output();
  constexpr int kParts = 5;  // frames 0..4 with parts, frame 5 without
  const std::string out_path = dir + "/run.out";
  pid_t pid = Spawn({TendBin(),
                     "run",
                     "--model",
                     dir + "/part.onnx",
                     "--source",
                     "watch:" + dir + "/drop",
                     "--json",
                     "--max-windows",
                     std::to_string(kParts + 1),
                     "--metrics-port",
                     "0",
                     "--state-dir",
                     dir + "/st",
                     "--summary-json",
                     dir + "/s.json",
                     "--plc-trigger",
                     "discrete:3",
                     "--plc-trigger-url",
                     plc.url(),
                     "--plc-part-register",
                     "12",
                     "--plc-trigger-tolerance-ms",
                     "3000"},
                    out_path);
  ASSERT_GT(pid, 0);
  // tend is up when its trigger has connected (the pymodbus server logs nothing for reads: wait
  // for the run's start-up line instead).
  ASSERT_TRUE(WaitFor(
      [&] { return ReadAll(out_path).find("takes part numbers") != std::string::npos; }, 60s))
      << ReadAll(out_path);
  std::this_thread::sleep_for(500ms);  // the first polls set the baseline (input low)
  for (int k = 0; k <= kParts; ++k) {
    if (k < kParts) {
      plc.Set("hr", 12, 7000 + k);  // the part's number, then "part present"
      plc.Set("di", 3, 1);
      std::this_thread::sleep_for(300ms);  // the trigger polls every 5 ms
    }
    const std::string tmp = dir + "/frame" + std::to_string(k) + ".tmp";
    WritePart(tmp, 500 + k);
    fs::rename(tmp, dir + "/drop/frame" + std::to_string(k) + ".png");
    ASSERT_TRUE(WaitFor([&] { return Decisions(ReadAll(out_path)).size() > size_t(k); }, 60s))
        << ReadAll(out_path);
    plc.Set("di", 3, 0);
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_EQ(WaitExit(pid), 0) << ReadAll(out_path);
  const auto d = Decisions(ReadAll(out_path));
  ASSERT_EQ(d.size(), size_t(kParts + 1));
  for (int k = 0; k < kParts; ++k) EXPECT_EQ(d[k].value("part_id", -1), 7000 + k) << d[k].dump();
  EXPECT_FALSE(d[kParts].contains("part_id")) << d[kParts].dump();
  auto summary = nlohmann::json::parse(Slurp(dir + "/s.json"));
  const auto& t = summary["plc_trigger"]["asset-1"];
  EXPECT_EQ(t["parts"], kParts) << t.dump();
  EXPECT_EQ(t["matched"], kParts) << t.dump();
  EXPECT_EQ(t["unmatched"], 1) << t.dump();
  EXPECT_EQ(t["parts_missed"], 0) << t.dump();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace tend::testing
