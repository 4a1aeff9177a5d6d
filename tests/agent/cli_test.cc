// The CLI as a user meets it: train, run, score and eval on the simulator, and every kind of bad
// input ending in one "tend: error:" line and a non-zero exit.
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_util.h"

namespace tend::testing {
namespace {

void WriteFloatWav(const std::string& path, int rate, int channels, const std::vector<float>& x) {
  std::ofstream f(path, std::ios::binary);
  auto u32 = [&](uint32_t v) { f.write(reinterpret_cast<const char*>(&v), 4); };
  auto u16 = [&](uint16_t v) { f.write(reinterpret_cast<const char*>(&v), 2); };
  uint32_t data = static_cast<uint32_t>(x.size() * 4);
  f.write("RIFF", 4);
  u32(36 + data);
  f.write("WAVEfmt ", 8);
  u32(16);
  u16(3);
  u16(static_cast<uint16_t>(channels));
  u32(static_cast<uint32_t>(rate));
  u32(static_cast<uint32_t>(rate * channels * 4));
  u16(static_cast<uint16_t>(channels * 4));
  u16(32);
  f.write("data", 4);
  u32(data);
  f.write(reinterpret_cast<const char*>(x.data()), static_cast<std::streamsize>(data));
}

std::vector<float> Noise(size_t n, unsigned seed) {
  std::vector<float> x(n);
  uint32_t s = seed;
  for (auto& v : x) {
    s = s * 1664525u + 1013904223u;
    v = static_cast<float>((s >> 8) & 0xffff) / 65536.0f - 0.5f;
  }
  return x;
}

class Cli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(TempDir("cli"));
    auto r = Tend("train --input 'sim:strokes=60,wear=0,seed=5' --out m.onnx", *dir_);
    ASSERT_EQ(r.rc, 0) << r.err;
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }
  static const std::string& dir() { return *dir_; }
  // Expects failure with exactly one error line that contains `needle`.
  static void ExpectError(const CmdResult& r, const std::string& needle) {
    EXPECT_NE(r.rc, 0);
    std::string last = LastLine(r.err);
    EXPECT_EQ(last.rfind("tend: error: ", 0), 0u) << r.err;
    EXPECT_NE(last.find(needle), std::string::npos) << "error line: " << last;
    EXPECT_EQ(r.err.find("terminate called"), std::string::npos);
  }
  static std::string* dir_;
};
std::string* Cli::dir_ = nullptr;

TEST_F(Cli, RunPrintsOneSpecShapedJsonLinePerStroke) {
  auto r = Tend("run --model m.onnx --source 'sim:strokes=12,wear=0,wear_end=1,seed=3' --speed 0 --json "
                "--asset press-1 --decision-log log/decisions.jsonl",
                dir());
  ASSERT_EQ(r.rc, 0) << r.err;
  std::istringstream in(r.out);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    EXPECT_TRUE(j["timestamp"].is_string());
    EXPECT_EQ(j["timestamp"].get<std::string>().back(), 'Z');
    EXPECT_EQ(j["asset_id"], "press-1");
    EXPECT_TRUE(j["anomaly_score"].is_number());
    double s = j["anomaly_score"];
    EXPECT_NEAR(s, std::round(s * 1e4) / 1e4, 1e-9);
    EXPECT_TRUE(std::set<std::string>({"NONE", "LOW", "MEDIUM", "HIGH"}).count(j["severity"]));
    if (!j["is_alert"].get<bool>() && j["anomaly_score"].get<double>() < 1e-9) {
      EXPECT_EQ(j["severity"], "NONE");
    }
    EXPECT_TRUE(j["is_alert"].is_boolean());
    EXPECT_EQ(j["top_sensors"].size(), 3u);
    EXPECT_EQ(j["window"], n);
    ++n;
  }
  EXPECT_EQ(n, 12);
  // The decision log holds the same decisions.
  std::ifstream log(dir() + "/log/decisions.jsonl");
  int logged = 0;
  while (std::getline(log, line)) ++logged;
  EXPECT_EQ(logged, 12);
  EXPECT_NE(r.err.find("summary: 12 windows"), std::string::npos) << r.err;
}

// Under systemd (Type=notify, WatchdogSec=): READY=1 once deciding, WATCHDOG=1 while the pipeline
// turns, STOPPING=1 at the end, all as datagrams on $NOTIFY_SOCKET as sd_notify(3) sends them.
TEST_F(Cli, RunTalksToSystemd) {
  const std::string sock = dir() + "/notify.sock";
  std::filesystem::remove(sock);
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(sock.size(), sizeof(addr.sun_path));
  std::memcpy(addr.sun_path, sock.c_str(), sock.size());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << std::strerror(errno);
  int big = 1 << 20;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
  ::setenv("NOTIFY_SOCKET", sock.c_str(), 1);
  ::setenv("WATCHDOG_USEC", "100000", 1);  // 100 ms: a ping every 50 ms
  // Read while tend runs, as systemd does (the socket queues only ~10 datagrams).
  std::vector<std::string> got;
  std::atomic<bool> done{false};
  std::thread reader([&] {
    char buf[4096];
    while (!done.load()) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) got.emplace_back(buf, static_cast<size_t>(n));
    }
  });
  auto r = Tend("run --model m.onnx --source 'sim:strokes=15,seed=8' --speed 20 --quiet --metrics-port 0",
                dir());
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  done.store(true);
  reader.join();
  ::close(fd);
  ASSERT_EQ(r.rc, 0) << r.err;
  ASSERT_GE(got.size(), 3u) << r.err;
  EXPECT_EQ(got.front().rfind("READY=1\nSTATUS=deciding with ", 0), 0u) << got.front();
  EXPECT_EQ(got.back(), "STOPPING=1");
  const auto pings = std::count(got.begin(), got.end(), std::string("WATCHDOG=1"));
  EXPECT_GE(pings, 5) << "15 strokes at 20x take ~2.5 s: ~50 pings expected";
  EXPECT_NE(r.err.find("systemd watchdog: 100 ms"), std::string::npos) << r.err;
  // A watchdog meant for another process is not ours to feed; bad values are ignored too.
  ::setenv("WATCHDOG_USEC", "100000", 1);
  ::setenv("WATCHDOG_PID", "1", 1);
  r = Tend("run --model m.onnx --source 'sim:strokes=2,seed=8' --speed 0 --quiet --metrics-port 0", dir());
  ::unsetenv("WATCHDOG_PID");
  ::unsetenv("WATCHDOG_USEC");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.err.find("systemd watchdog"), std::string::npos) << r.err;
}

// deploy/systemd/tend.service is a unit systemd accepts as written (no unknown keys, a valid
// ExecStart), pointing at this build's binary.
TEST_F(Cli, SystemdUnitVerifies) {
  if (::access("/usr/bin/systemd-analyze", X_OK) != 0) GTEST_SKIP() << "systemd-analyze not installed";
  std::string unit = Slurp(std::string(std::getenv("TEND_SOURCE_DIR")) + "/deploy/systemd/tend.service");
  ASSERT_NE(unit.find("Type=notify"), std::string::npos);
  ASSERT_NE(unit.find("WatchdogSec="), std::string::npos);
  const std::string installed = "/usr/local/bin/tend";
  for (size_t at; (at = unit.find(installed)) != std::string::npos;) unit.replace(at, installed.size(), TendBin());
  { std::ofstream(dir() + "/tend.service") << unit; }
  auto r = RunCmd("/usr/bin/systemd-analyze verify tend.service", dir());
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.err, "") << "systemd has objections to the unit";
}

TEST_F(Cli, ScoreAndEvalOnSimulatedWear) {
  auto r = Tend("score --model m.onnx --input 'sim:strokes=10,wear=0.8,seed=4' --out s.jsonl", dir());
  ASSERT_EQ(r.rc, 0) << r.err;
  std::ifstream f(dir() + "/s.jsonl");
  std::string line;
  int n = 0, alerts = 0;
  while (std::getline(f, line)) {
    auto j = nlohmann::json::parse(line);
    for (auto* k : {"window", "t", "anomaly_score", "severity", "is_alert", "top_sensors"})
      EXPECT_TRUE(j.contains(k)) << k;
    alerts += j["is_alert"].get<bool>();
    ++n;
  }
  EXPECT_EQ(n, 10);
  EXPECT_EQ(alerts, 10);  // wear 0.8 is far from a new die

  auto e = Tend("eval --model m.onnx --normal 'sim:strokes=40,wear=0,seed=6' "
                "--anomalous 'sim:strokes=20,wear=0.6,seed=7' --json --plot p.svg",
                dir());
  ASSERT_EQ(e.rc, 0) << e.err;
  auto j = nlohmann::json::parse(e.out);
  EXPECT_GT(j["auc"].get<double>(), 0.99);
  EXPECT_EQ(j["normal_windows"], 40);
  EXPECT_EQ(Slurp(dir() + "/p.svg").rfind("<svg", 0), 0u);
}

// Issue 17, defect 11: `--out /dev/null` as root renamed a regular file over the device node.
// A device (a private null device made with mknod, when root), a FIFO and a symlink are written
// through and stay what they were; a regular file is still replaced atomically.
TEST_F(Cli, ScoreOutWritesThroughSpecialFilesAndSymlinks) {
  const std::string cmd = "score --model m.onnx --input 'sim:strokes=3,wear=0,seed=4' --out ";
  ASSERT_EQ(::mkfifo((dir() + "/pipe").c_str(), 0600), 0);
  std::string from_pipe;
  std::thread reader([&] { from_pipe = Slurp(dir() + "/pipe"); });
  auto r = Tend(cmd + "pipe", dir());
  reader.join();
  ASSERT_EQ(r.rc, 0) << r.err;
  struct stat st {};
  ASSERT_EQ(::lstat((dir() + "/pipe").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode)) << "the FIFO was replaced";
  EXPECT_EQ(std::count(from_pipe.begin(), from_pipe.end(), '\n'), 3) << from_pipe;

  std::filesystem::create_directories(dir() + "/real");
  std::filesystem::create_symlink("real/scores.jsonl", dir() + "/link.jsonl");
  r = Tend(cmd + "link.jsonl", dir());
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(std::filesystem::is_symlink(dir() + "/link.jsonl")) << "the symlink was replaced";
  const std::string via_link = Slurp(dir() + "/real/scores.jsonl");
  EXPECT_EQ(std::count(via_link.begin(), via_link.end(), '\n'), 3) << via_link;

  if (::mknod((dir() + "/null").c_str(), S_IFCHR | 0666, ::makedev(1, 3)) == 0) {
    r = Tend(cmd + "null", dir());
    ASSERT_EQ(r.rc, 0) << r.err;
    ASSERT_EQ(::lstat((dir() + "/null").c_str(), &st), 0);
    EXPECT_TRUE(S_ISCHR(st.st_mode)) << "the device node was replaced by a file";
  }
  r = Tend(cmd + "plain.jsonl", dir());
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir() + "/plain.jsonl.partial"));
  EXPECT_TRUE(std::filesystem::is_regular_file(dir() + "/plain.jsonl"));
}

TEST_F(Cli, TrainingDataTooShort) {
  ExpectError(Tend("train --input 'sim:strokes=5,seed=1' --out short.onnx", dir()), "too few");
  EXPECT_FALSE(std::filesystem::exists(dir() + "/short.onnx"));
}

TEST_F(Cli, TrainingDataWithNaN) {
  auto x = Noise(30000, 1);
  x[12345] = std::numeric_limits<float>::quiet_NaN();
  WriteFloatWav(dir() + "/nan.wav", 10000, 1, x);
  ExpectError(Tend("train --input nan.wav --out nan.onnx", dir()), "NaN");
  auto y = Noise(30000, 2);
  y[777] = std::numeric_limits<float>::infinity();
  WriteFloatWav(dir() + "/inf.wav", 10000, 1, y);
  ExpectError(Tend("score --model m.onnx --input inf.wav", dir()), "Inf");
}

TEST_F(Cli, SourceRateOrChannelsDifferFromModel) {
  WriteFloatWav(dir() + "/8k.wav", 8000, 1, Noise(20000, 3));
  ExpectError(Tend("run --model m.onnx --source 8k.wav --speed 0", dir()), "sample rate 8000 Hz");
  WriteFloatWav(dir() + "/stereo.wav", 10000, 2, Noise(20000, 4));
  ExpectError(Tend("score --model m.onnx --input stereo.wav", dir()), "2 channel(s), but the model expects 1");
}

TEST_F(Cli, ModelFilesThatAreMissingBrokenOrInconsistent) {
  ExpectError(Tend("run --model nope.onnx --source sim", dir()), "nope.onnx");
  std::ofstream(dir() + "/text.onnx") << "this is not a model\n";
  ExpectError(Tend("score --model text.onnx --input sim:strokes=2", dir()), "text.onnx");
  // Valid ONNX without tend's metadata, and with metadata that contradicts the graph.
  auto py = [&](const std::string& code) {
    return RunCmd("/usr/bin/python3 -c \"" + code + "\"", dir());
  };
  ASSERT_EQ(py("import onnx; m=onnx.load('m.onnx'); del m.metadata_props[:]; onnx.save(m,'bare.onnx')").rc, 0);
  ExpectError(Tend("score --model bare.onnx --input sim:strokes=2", dir()), "missing key");
  ASSERT_EQ(py("import onnx,json; m=onnx.load('m.onnx');"
               "p=[x for x in m.metadata_props if x.key=='tend.feature_names'][0];"
               "p.value=json.dumps(json.loads(p.value)[:-1]); onnx.save(m,'skew.onnx')")
                .rc,
            0);
  auto r = Tend("score --model skew.onnx --input sim:strokes=2", dir());
  EXPECT_NE(r.rc, 0);
  EXPECT_EQ(LastLine(r.err).rfind("tend: error: ", 0), 0u) << r.err;
}

TEST_F(Cli, ConfigErrorsNameFileLineAndKey) {
  std::ofstream(dir() + "/typo.toml") << "[agent]\nmodel = \"m.onnx\"\nspeeed = 2\n";
  ExpectError(Tend("run --config typo.toml", dir()), "typo.toml:3: unknown key 'agent.speeed'");
  std::ofstream(dir() + "/type.toml") << "[agent]\nmodel = \"m.onnx\"\ndeadline_s = \"fast\"\n";
  ExpectError(Tend("run --config type.toml", dir()), "type.toml:3: 'agent.deadline_s' must be a number");
  std::ofstream(dir() + "/ok.toml") << "[agent]\nmodel = \"m.onnx\"\nsource = \"sim:strokes=3\"\nspeed = 0\n"
                                       "[decide]\ndebounce_k = 1\ndebounce_n = 1\n";
  auto r = Tend("run --config ok.toml --quiet", dir());
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("summary: 3 windows"), std::string::npos) << r.err;
}

TEST_F(Cli, CorruptAndTruncatedWav) {
  std::ofstream(dir() + "/junk.wav") << "RIFFxxxxWAVEjunk";
  ExpectError(Tend("run --model m.onnx --source junk.wav --speed 0", dir()), "junk.wav");
  auto x = Noise(5000, 5);
  WriteFloatWav(dir() + "/full.wav", 10000, 1, x);
  auto bytes = Slurp(dir() + "/full.wav");
  std::ofstream(dir() + "/cut.wav", std::ios::binary) << bytes.substr(0, bytes.size() / 2 + 3);
  ExpectError(Tend("score --model m.onnx --input cut.wav", dir()), "cut.wav");
}

TEST_F(Cli, DoctorSaysTheMachineCanRunTheAgent) {
  auto r = Tend("doctor --json", dir());
  ASSERT_EQ(r.rc, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j["can_run_agent"].get<bool>());
  EXPECT_NE(j["providers_available"].dump().find("CPUExecutionProvider"), std::string::npos);
  auto v = Tend("--version", dir());
  EXPECT_EQ(v.rc, 0);
  EXPECT_EQ(v.out.rfind("tend ", 0), 0u);
}

}  // namespace
}  // namespace tend::testing
