// `tend run` with the plc sink, the way a plant engineer wires it: a recorded press run replayed
// through the real agent against an independent Modbus TCP server (Debian's pymodbus,
// tests/io/modbus_server.py). The server logs every write it receives, and a separate pymodbus
// client reads the coil and the counter back at the end: neither is tend's own code.
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "../agent/cli_util.h"
#include "io/modbus_test_support.h"

namespace tend::testing {
namespace {

using namespace std::chrono_literals;

// "hr 10" or "co 5" read by a pymodbus client of its own: the value the PLC program would see.
int ReadBack(int port, const std::string& table, int addr) {
  const std::string py =
      "from pymodbus.client import ModbusTcpClient\n"
      "c = ModbusTcpClient('127.0.0.1', port=" +
      std::to_string(port) +
      ")\n"
      "assert c.connect()\n"
      "r = c." +
      (table == "hr" ? "read_holding_registers" : "read_coils") + "(" + std::to_string(addr) +
      ", 1)\n"
      "print(int(r.registers[0]) if hasattr(r, 'registers') else int(r.bits[0]))\n";
  const std::string dir = MakeTempDir("readback");
  std::ofstream(dir + "/r.py") << py;
  auto r = RunCmd("/usr/bin/python3 r.py", dir);
  std::filesystem::remove_all(dir);
  if (r.rc != 0) return -1;
  return std::stoi(r.out);
}

int64_t AlertLines(const std::string& out) {
  int64_t n = 0;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.value("is_alert", false)) ++n;
  }
  return n;
}

class LinePlc : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(TempDir("line_plc"));
    // A press that wears out: the later strokes are alerts.
    auto r = Tend("train --input 'sim:strokes=40,wear=0,seed=5' --out press.onnx", *dir_);
    ASSERT_EQ(r.rc, 0) << r.err;
    r = Tend("simulate --sim 'sim:strokes=60,wear=0,wear_end=1,seed=2' --out run.wav", *dir_);
    ASSERT_EQ(r.rc, 0) << r.err;
    // 16 strokes, the later ones alerts (the part trigger's tests).
    r = Tend("simulate --sim 'sim:strokes=16,wear=0,wear_end=1,seed=2' --out short.wav", *dir_);
    ASSERT_EQ(r.rc, 0) << r.err;
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }
  void SetUp() override {
    if (!ModbusServer::Available()) GTEST_SKIP() << "python3-pymodbus not installed";
    if (Tend("doctor --json", dir()).out.find("\"plc\"") == std::string::npos) {
      GTEST_SKIP() << "tend built without the plc sink";
    }
  }
  static const std::string& dir() { return *dir_; }
  static std::string* dir_;
};
std::string* LinePlc::dir_ = nullptr;

// A replay with N alerts leaves the reject counter at N and the coil pulsed; the last severity
// is in its register; the run summary says what was written.
TEST_F(LinePlc, ReplayWithNAlertsLeavesTheCounterAtNAndPulsesTheCoil) {
  ModbusServer plc;
  ASSERT_TRUE(plc.Start()) << plc.Output();
  auto r = Tend(
      "run --model press.onnx --source run.wav --speed 0 --json --metrics-port 0 "
      "--state-dir st1 --summary-json s1.json --plc " +
          plc.url() +
          " --plc-reject-coil 5 --plc-reject-counter 10 --plc-pulse-ms 20 "
          "--plc-severity-register 12",
      dir());
  ASSERT_EQ(r.rc, 0) << r.err;
  const int64_t n = AlertLines(r.out);
  ASSERT_GT(n, 0) << "the recording must have alerts";
  auto summary = nlohmann::json::parse(Slurp(dir() + "/s1.json"));
  const auto& stats = summary["plc"]["asset-1"];
  ASSERT_TRUE(stats.is_object()) << summary.dump();
  EXPECT_EQ(stats["rejects"], n);
  EXPECT_EQ(stats["rejects_written"], n);
  EXPECT_EQ(stats["rejects_missed"], 0);
  // Decision handed over -> coil write acknowledged, for every reject (the figure docs/plc.md
  // reports; its size is a measurement, not checked here).
  EXPECT_EQ(stats["coil_latency_ms"]["n"], n) << stats.dump();

  // What the server received: the counter went up to N, never down; the coil went 1 then 0.
  auto counter = plc.ValuesAt("hr", 10);
  ASSERT_FALSE(counter.empty());
  EXPECT_EQ(counter.back(), n);
  for (size_t i = 1; i < counter.size(); ++i) EXPECT_GT(counter[i], counter[i - 1]);
  auto coil = plc.ValuesAt("co", 5);
  EXPECT_NE(std::find(coil.begin(), coil.end(), 1), coil.end()) << "the coil was never pulsed";
  ASSERT_FALSE(coil.empty());
  EXPECT_EQ(coil.back(), 0) << "a pulse must end";
  EXPECT_FALSE(plc.ValuesAt("hr", 12).empty());
  // And what a PLC program reads afterwards, over its own connection.
  EXPECT_EQ(ReadBack(plc.port(), "hr", 10), n);
  EXPECT_EQ(ReadBack(plc.port(), "co", 5), 0);
}

// An unreachable PLC: every window is still decided, the run ends normally, each reject is
// counted as missed with a log line, and the metrics say the link is down.
TEST_F(LinePlc, UnreachablePlcNeverStopsDecisionsAndCountsEveryMissedReject) {
  const int metrics_port = FreePort();
  const std::string dead = "modbus://127.0.0.1:" + std::to_string(FreePort());
  // Paced (not --speed 0) so that the metrics endpoint can be scraped while it runs.
  std::string out_path = dir() + "/dead.out";
  pid_t pid = Spawn({TendBin(),
                     "run",
                     "--model",
                     dir() + "/press.onnx",
                     "--source",
                     dir() + "/run.wav",
                     "--speed",
                     "40",
                     "--json",
                     "--metrics-port",
                     std::to_string(metrics_port),
                     "--state-dir",
                     dir() + "/st2",
                     "--summary-json",
                     dir() + "/s2.json",
                     "--plc",
                     dead,
                     "--plc-reject-coil",
                     "5",
                     "--plc-reject-counter",
                     "10",
                     "--plc-timeout-ms",
                     "100"},
                    out_path);
  ASSERT_GT(pid, 0);
  std::string scrape;
  ASSERT_TRUE(WaitFor(
      [&] {
        httplib::Client cli("127.0.0.1", metrics_port);
        auto res = cli.Get("/metrics");
        if (res && res->status == 200) scrape = res->body;
        return scrape.find("edge_plc_link_up") != std::string::npos;
      },
      30s))
      << ReadAll(out_path);
  EXPECT_NE(scrape.find("edge_plc_rejects_missed_total"), std::string::npos);
  EXPECT_NE(scrape.find("edge_plc_rejects_total"), std::string::npos);
  std::istringstream lines(scrape);
  int link_lines = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("edge_plc_link_up{", 0) == 0) {
      ++link_lines;
      EXPECT_NE(line.find("asset_id=\"asset-1\""), std::string::npos) << line;
      EXPECT_EQ(line.back(), '0') << line;
    }
  }
  EXPECT_EQ(link_lines, 1) << scrape;
  ASSERT_EQ(WaitExit(pid), 0) << ReadAll(out_path);
  const std::string out = ReadAll(out_path);
  const int64_t n = AlertLines(out);
  ASSERT_GT(n, 0);
  auto summary = nlohmann::json::parse(Slurp(dir() + "/s2.json"));
  EXPECT_EQ(summary["windows"], summary["scored"]) << summary.dump();
  const auto& stats = summary["plc"]["asset-1"];
  EXPECT_EQ(stats["rejects"], n);
  EXPECT_EQ(stats["rejects_written"], 0);
  EXPECT_EQ(stats["rejects_missed"], n);
  EXPECT_GT(stats["connect_failures"].get<int64_t>(), 0);
  EXPECT_NE(out.find("missed"), std::string::npos) << "no log line about missed rejects:\n" << out;
}

// A PLC that dies mid-run and comes back (its registers zero again, as after a reboot): decisions
// go on, the rejects decided while it was away are counted as missed, and every reject after it
// came back reaches its counter.
TEST_F(LinePlc, PlcThatDiesMidRunAndComesBackLosesNoIncrementAfterItCameBack) {
  ModbusServer plc;
  ASSERT_TRUE(plc.Start()) << plc.Output();
  const std::string out_path = dir() + "/restart.out";
  pid_t pid = Spawn({TendBin(),
                     "run",
                     "--model",
                     dir() + "/press.onnx",
                     "--source",
                     dir() + "/run.wav",
                     "--speed",
                     "20",
                     "--json",
                     "--metrics-port",
                     "0",
                     "--state-dir",
                     dir() + "/st5",
                     "--summary-json",
                     dir() + "/s5.json",
                     "--plc",
                     plc.url(),
                     "--plc-reject-coil",
                     "5",
                     "--plc-reject-counter",
                     "10",
                     "--plc-pulse-ms",
                     "20",
                     "--plc-timeout-ms",
                     "200",
                     "--plc-reconnect-max-s",
                     "0.3"},
                    out_path);
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(WaitFor([&] { return !plc.ValuesAt("hr", 10).empty(); }, 30s)) << ReadAll(out_path);
  plc.Kill();
  const int before = plc.ValuesAt("hr", 10).back();  // what the first life of the PLC counted
  std::this_thread::sleep_for(1500ms);               // alerts decided meanwhile are missed
  ASSERT_TRUE(plc.Start()) << plc.Output();
  ASSERT_EQ(WaitExit(pid), 0) << ReadAll(out_path);
  const int64_t n = AlertLines(ReadAll(out_path));
  auto summary = nlohmann::json::parse(Slurp(dir() + "/s5.json"));
  const auto& stats = summary["plc"]["asset-1"];
  ASSERT_TRUE(stats.is_object()) << summary.dump();
  EXPECT_EQ(stats["rejects"], n);
  EXPECT_GT(stats["rejects_missed"].get<int64_t>(), 0) << stats.dump();
  EXPECT_EQ(stats["rejects_written"].get<int64_t>() + stats["rejects_missed"].get<int64_t>(), n);
  EXPECT_GE(stats["connects"].get<int64_t>(), 2);
  // The restarted PLC's counter holds every reject written after it came back.
  const int after = ReadBack(plc.port(), "hr", 10);
  // (One more only when the kill fell between the first PLC applying a write and tend reading
  // its answer: that reject then counts as missed although the PLC has it.)
  const int64_t written = stats["rejects_written"].get<int64_t>();
  EXPECT_GE(before + after, written) << stats.dump();
  EXPECT_LE(before + after, written + 1) << stats.dump();
  EXPECT_GT(after, 0);
  EXPECT_NE(ReadAll(out_path).find("were missed while the link was down"), std::string::npos);
}

// Decisions as JSON objects, from a --json output (lines that are not JSON are skipped).
std::vector<nlohmann::json> DecisionLines(const std::string& out) {
  std::vector<nlohmann::json> v;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.contains("window")) v.push_back(std::move(j));
  }
  return v;
}

// The part trigger through `tend run`: a stroke counter in a holding register that the PLC
// (here the test, through the pymodbus server) steps once per stroke, after tend decided the
// previous stroke and before the next one. Every decision carries the part number the counter
// reached before its stroke; once the PLC stops advancing the events are decided without one and
// counted as unmatched; each reject is written to the PLC with its part number first.
TEST_F(LinePlc, PartTriggerTagsEveryStrokeWithThePlcsPartNumber) {
  ModbusServer plc;
  ASSERT_TRUE(plc.Start()) << plc.Output();
  const std::string out_path = dir() + "/trigger.out";
  // 16 strokes 3.33 s apart, replayed 6x: one every 0.56 s. The tolerance (1.5 s) covers the
  // time between the counter's step (right after the previous decision) and the next window.
  pid_t pid = Spawn({TendBin(),
                     "run",
                     "--model",
                     dir() + "/press.onnx",
                     "--source",
                     dir() + "/short.wav",
                     "--speed",
                     "6",
                     "--json",
                     "--metrics-port",
                     "0",
                     "--state-dir",
                     dir() + "/st6",
                     "--summary-json",
                     dir() + "/s6.json",
                     "--plc",
                     plc.url(),
                     "--plc-reject-coil",
                     "5",
                     "--plc-reject-counter",
                     "10",
                     "--plc-pulse-ms",
                     "20",
                     "--plc-reject-part-register",
                     "30",
                     "--plc-trigger",
                     "counter:20",
                     "--plc-trigger-tolerance-ms",
                     "1500"},
                    out_path);
  ASSERT_GT(pid, 0);
  constexpr int kAdvancing = 9;  // the PLC counts parts 1..9, then stops
  for (int part = 1; part <= kAdvancing; ++part) {
    ASSERT_TRUE(
        WaitFor([&] { return DecisionLines(ReadAll(out_path)).size() >= size_t(part); }, 30s))
        << ReadAll(out_path);
    plc.Set("hr", 20, part);
  }
  ASSERT_EQ(WaitExit(pid), 0) << ReadAll(out_path);
  const auto d = DecisionLines(ReadAll(out_path));
  ASSERT_EQ(d.size(), 16u) << ReadAll(out_path);
  std::vector<int64_t> alert_parts;
  for (size_t i = 0; i < d.size(); ++i) {
    const int64_t want = i >= 1 && i <= size_t(kAdvancing) ? int64_t(i) : -1;
    EXPECT_EQ(d[i].value("part_id", int64_t{-1}), want) << d[i].dump();
    if (d[i]["is_alert"].get<bool>()) alert_parts.push_back(d[i].value("part_id", int64_t{-1}));
  }
  auto summary = nlohmann::json::parse(Slurp(dir() + "/s6.json"));
  const auto& t = summary["plc_trigger"]["asset-1"];
  ASSERT_TRUE(t.is_object()) << summary.dump();
  EXPECT_EQ(t["parts"], kAdvancing) << t.dump();
  EXPECT_EQ(t["matched"], kAdvancing) << t.dump();
  EXPECT_EQ(t["unmatched"], 16 - kAdvancing) << t.dump();
  EXPECT_EQ(t["parts_missed"], 0) << t.dump();
  // The reject's part number (int32, high word first) before its coil and counter, per reject.
  ASSERT_FALSE(alert_parts.empty());
  std::vector<int64_t> written;
  for (const auto& w : plc.Writes()) {
    if (w.table == "hr" && w.addr == 30 && w.values.size() == 2) {
      written.push_back(static_cast<int32_t>(uint32_t(w.values[0]) << 16 | uint32_t(w.values[1])));
    }
  }
  EXPECT_EQ(written, alert_parts);
  EXPECT_EQ(ReadBack(plc.port(), "hr", 10), static_cast<int>(alert_parts.size()));
  EXPECT_NE(ReadAll(out_path).find("without a part"), std::string::npos) << ReadAll(out_path);
}

// An unreachable trigger PLC: one clear log line, every event decided (without a part number)
// and counted as unmatched; the run ends normally. A bad trigger spec or a trigger without a PLC
// is refused at start with one line.
TEST_F(LinePlc, UnreachableTriggerPlcLeavesDecisionsGoingAndCountsThem) {
  const std::string dead = "modbus://127.0.0.1:" + std::to_string(FreePort());
  auto r = Tend(
      "run --model press.onnx --source short.wav --speed 0 --json --metrics-port 0 "
      "--state-dir st7 --summary-json s7.json --plc-trigger counter:20 "
      "--plc-trigger-url " +
          dead + " --plc-timeout-ms 100",
      dir());
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto d = DecisionLines(r.out);
  ASSERT_EQ(d.size(), 16u) << r.out;
  for (const auto& j : d) EXPECT_FALSE(j.contains("part_id")) << j.dump();
  auto summary = nlohmann::json::parse(Slurp(dir() + "/s7.json"));
  const auto& t = summary["plc_trigger"]["asset-1"];
  EXPECT_EQ(t["unmatched"], 16) << t.dump();
  EXPECT_EQ(t["connected"], false) << t.dump();
  EXPECT_GT(t["connect_failures"].get<int64_t>(), 0) << t.dump();
  EXPECT_NE(r.err.find("plc trigger: 1 failed request"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(dead), std::string::npos) << r.err;

  auto bad = Tend(
      "run --model press.onnx --source short.wav --speed 0 --metrics-port 0 "
      "--state-dir st8 --plc-trigger-url " +
          dead + " --plc-trigger counter",
      dir());
  EXPECT_NE(bad.rc, 0);
  EXPECT_NE(LastLine(bad.err).find("PLC trigger 'counter'"), std::string::npos) << bad.err;
  auto none = Tend(
      "run --model press.onnx --source short.wav --speed 0 --metrics-port 0 "
      "--state-dir st9 --plc-trigger di:3",
      dir());
  EXPECT_NE(none.rc, 0);
  EXPECT_NE(LastLine(none.err).find("--plc-trigger-url"), std::string::npos) << none.err;
}

// The keys of the config file and the flags are one definition: a [[asset]] plc table works the
// same, and a PLC URL with nothing to write is refused with one line naming the flags.
TEST_F(LinePlc, ConfigKeysPerAssetAndNothingToWriteIsRefused) {
  ModbusServer plc;
  ASSERT_TRUE(plc.Start()) << plc.Output();
  std::ofstream(dir() + "/plc.toml")
      << "[agent]\nspeed = 0\n[metrics]\nport = 0\n"
      << "[[asset]]\nid = \"press-07\"\nmodel = \"press.onnx\"\n"
      << "source = \"run.wav\"\nplc = \"" << plc.url() << "\"\nplc_reject_counter = 20\n";
  auto r = Tend("run --config plc.toml --json --state-dir st3 --summary-json s3.json", dir());
  ASSERT_EQ(r.rc, 0) << r.err;
  const int64_t n = AlertLines(r.out);
  ASSERT_GT(n, 0);
  EXPECT_EQ(ReadBack(plc.port(), "hr", 20), n);
  EXPECT_TRUE(plc.ValuesAt("co", 5).empty()) << "no coil was configured";

  auto bad = Tend(
      "run --model press.onnx --source run.wav --speed 0 --metrics-port 0 "
      "--state-dir st4 --plc " +
          plc.url(),
      dir());
  EXPECT_NE(bad.rc, 0);
  EXPECT_NE(LastLine(bad.err).find("--plc-reject-coil"), std::string::npos) << bad.err;
  auto range = Tend(
      "run --model press.onnx --source run.wav --plc " + plc.url() + " --plc-reject-coil 70000",
      dir());
  EXPECT_NE(range.rc, 0);
  EXPECT_NE(LastLine(range.err).find("plc.reject_coil"), std::string::npos) << range.err;
}

}  // namespace
}  // namespace tend::testing
