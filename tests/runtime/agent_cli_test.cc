// What a plant engineer meets running `tend run` (issues #16 and #17), each with the behaviour it
// had before pinned down: decisions flushed line by line on a pipe, a source required, one agent
// per state directory, loud default identities, a clean first Ctrl-C and an immediate second one,
// NaN samples on stdin decided fail-safe, every numeric setting range-checked with its key named,
// and the text output's columns one token each.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <vector>

#include "../agent/cli_util.h"
#include "sim_models_suite.h"
#include "sources/source.h"

namespace tend::testing {
namespace {

using Clock = std::chrono::steady_clock;

// `tend ARGS` in `dir` with stdin and stdout as pipes held by the test; stderr to err_path.
struct Proc {
  pid_t pid = -1;
  int in = -1, out = -1;
  std::string err_path;

  static Proc Start(const std::string& args, const std::string& dir) {
    int i[2], o[2];
    EXPECT_EQ(::pipe2(i, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(o, O_CLOEXEC), 0);
    static int started = 0;
    const std::string err = "proc" + std::to_string(started++) + ".err";  // one per process
    Proc p;
    p.err_path = dir + "/" + err;
    p.pid = ::fork();
    if (p.pid == 0) {
      ::dup2(i[0], 0);
      ::dup2(o[1], 1);
      if (::chdir(dir.c_str()) != 0) _exit(127);
      const std::string cmd = "exec '" + TendBin() + "' " + args + " 2>" + err;
      ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    ::close(i[0]);
    ::close(o[1]);
    p.in = i[1];
    p.out = o[0];
    return p;
  }
  void CloseIn() {
    if (in >= 0) ::close(in);
    in = -1;
  }
  // Reads what stdout has within `wait` (a bound on a hang, not a speed check).
  std::string ReadLineWithin(std::chrono::seconds wait) {
    std::string got;
    const auto until = Clock::now() + wait;
    while (Clock::now() < until && got.find('\n') == std::string::npos) {
      pollfd pfd{out, POLLIN, 0};
      if (::poll(&pfd, 1, 100) <= 0) continue;
      char buf[4096];
      ssize_t n = ::read(out, buf, sizeof buf);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
    return got;
  }
  bool ErrContainsWithin(const std::string& needle, std::chrono::seconds wait) const {
    const auto until = Clock::now() + wait;
    while (Clock::now() < until) {
      if (Slurp(err_path).find(needle) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  int Wait() {
    CloseIn();
    int st = 0;
    ::waitpid(pid, &st, 0);
    if (out >= 0) ::close(out);
    out = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
};

void WriteAll(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w <= 0) return;
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// Interleaved float32 samples of a simulated press run.
std::vector<float> Simulated(const std::string& spec) {
  auto src = sources::OpenSource(spec, {});
  EXPECT_TRUE(src) << src.error().message;
  std::vector<float> all, buf(4096);
  for (;;) {
    auto n = (*src)->Read(buf, buf.size());
    if (!n || *n == 0) break;
    all.insert(all.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*n));
  }
  return all;
}

// A TCP listener on loopback that accepts and never answers (an MQTT broker that hangs).
class SilentServer {
 public:
  SilentServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    ::listen(fd_, 8);
  }
  ~SilentServer() { ::close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1, port_ = 0;
};

class AgentCli : public SimModelsSuite<AgentCli> {
 public:
  static constexpr const char* kDirName = "agent_cli";

 protected:
  static void ExpectError(const CmdResult& r, const std::string& needle) {
    EXPECT_NE(r.rc, 0) << r.err;
    const std::string last = LastLine(r.err);
    EXPECT_EQ(last.rfind("tend: error: ", 0), 0u) << r.err;
    EXPECT_NE(last.find(needle), std::string::npos) << "error line: " << last;
    EXPECT_EQ(r.err.find("terminate called"), std::string::npos);
  }
};

// #16.5: a consumer on a pipe gets each decision when it is made (before: stdout was block
// buffered and the first line came after 4 KB).
TEST_F(AgentCli, DecisionsReachAPipeAsTheyAreDecided) {
  Proc p = Proc::Start("run --model m.onnx --source - --speed 0 --json --metrics-port 0", dir());
  const auto x = Simulated("sim:strokes=3,seed=4");
  WriteAll(p.in, x.data(), x.size() * sizeof(float));  // stdin stays open: the agent keeps going
  const std::string line = p.ReadLineWithin(std::chrono::seconds(60));
  ASSERT_NE(line.find('\n'), std::string::npos)
      << "no decision line while the agent runs; stderr:\n"
      << Slurp(p.err_path);
  auto j = nlohmann::json::parse(line.substr(0, line.find('\n')));
  EXPECT_EQ(j["window"], 0);
  EXPECT_EQ(p.Wait(), 0) << Slurp(p.err_path);
}

// #16.6: no source, no run (before: the simulator ran silently, under a real identity too); and
// telemetry under default identity values is said loudly. (The agents are stopped with two
// signals: the second exits at once instead of waiting for the absent broker.)
TEST_F(AgentCli, RequiresASourceAndWarnsAboutDefaultIdentities) {
  ExpectError(Tend("run --model m.onnx --metrics-port 0", dir()), "no source for asset 'asset-1'");
  const SilentServer broker;
  const std::string mqtt = " --mqtt mqtt://127.0.0.1:" + std::to_string(broker.port());
  auto run = [&](const std::string& args) {
    Proc p = Proc::Start(
        "run --model m.onnx --source - --speed 1 --quiet --metrics-port 0" + args + mqtt, dir());
    EXPECT_TRUE(p.ErrContainsWithin("telemetry to mqtt://", std::chrono::seconds(60)))
        << Slurp(p.err_path);
    ::kill(p.pid, SIGINT);
    p.ErrContainsWithin("stopping:", std::chrono::seconds(30));
    ::kill(p.pid, SIGINT);
    p.Wait();
    return Slurp(p.err_path);
  };
  std::string err = run(" --state-dir st1");
  EXPECT_NE(err.find("DEFAULT IDENTITY values: identity.factory = \"factory-1\""),
            std::string::npos)
      << err;
  err = run(" --state-dir st2 --factory plant-a --line line-3 --asset press-07 --device-id edge-7");
  EXPECT_NE(err.find("telemetry to mqtt://"), std::string::npos) << err;
  EXPECT_EQ(err.find("DEFAULT IDENTITY"), std::string::npos) << err;
}

// #16.7: a second agent on a state directory refuses at once, naming the first (before: it waited
// on "database is locked", then ran degraded and took over the first one's MQTT client id).
TEST_F(AgentCli, SecondAgentOnTheSameStateDirectoryRefuses) {
  Proc first = Proc::Start(
      "run --model m.onnx --source 'sim:strokes=1000,seed=2' --speed 1 "
      "--quiet --metrics-port 0 --state-dir shared-state",
      dir());
  ASSERT_TRUE(first.ErrContainsWithin("on CPUExecutionProvider", std::chrono::seconds(60)))
      << Slurp(first.err_path);
  auto second = Tend(
      "run --model m.onnx --source 'sim:strokes=2,seed=3' --speed 0 --quiet "
      "--metrics-port 0 --state-dir shared-state",
      dir());
  ExpectError(second, "state directory shared-state is in use by another tend (pid " +
                          std::to_string(first.pid) + ")");
  ::kill(first.pid, SIGTERM);
  EXPECT_EQ(first.Wait(), 0) << Slurp(first.err_path);
  // Once the first is gone the directory is free again.
  auto third = Tend(
      "run --model m.onnx --source 'sim:strokes=2,seed=3' --speed 0 --quiet "
      "--metrics-port 0 --state-dir shared-state",
      dir());
  EXPECT_EQ(third.rc, 0) << third.err;
}

// #16.10: the first Ctrl-C says what the agent waits for; a second one ends it at once (before:
// seconds of silence and a second Ctrl-C ignored).
TEST_F(AgentCli, FirstStopSaysWhatItWaitsForSecondStopExitsNow) {
  const SilentServer
      broker;  // telemetry's connection hangs: the shutdown has something to wait for
  Proc p = Proc::Start(
      "run --model m.onnx --source - --speed 1 --quiet --metrics-port 0 "
      "--state-dir st-stop --factory f --line l --asset a --device-id d "
      "--mqtt mqtt://127.0.0.1:" +
          std::to_string(broker.port()),
      dir());
  ASSERT_TRUE(p.ErrContainsWithin("telemetry to mqtt://", std::chrono::seconds(60)))
      << Slurp(p.err_path);
  ::kill(p.pid, SIGINT);
  ASSERT_TRUE(
      p.ErrContainsWithin("stopping: finishing the window in flight", std::chrono::seconds(30)))
      << Slurp(p.err_path);
  ::kill(p.pid, SIGINT);
  EXPECT_EQ(p.Wait(), 130) << Slurp(p.err_path);
  const std::string err = Slurp(p.err_path);
  EXPECT_NE(err.find("stop again to quit at once"), std::string::npos) << err;
  EXPECT_NE(err.find("second stop signal: exiting now"), std::string::npos) << err;
}

// #17.11: a NaN sample on stdin costs the windows that contain it a counted fail-safe decision;
// the agent goes on (before: it ended with exit 1 and no decision for that window).
TEST_F(AgentCli, NanSampleOnStdinGetsFailSafeDecisionsAndTheRunGoesOn) {
  auto x = Simulated("sim:strokes=4,seed=11");  // 4 x 3.33 s at 10 kHz, mono
  x[10000] = std::numeric_limits<float>::quiet_NaN();
  Proc p = Proc::Start(
      "run --model fixed.onnx --source - --speed 0 --json --metrics-port 0 "
      "--summary-json nan.json",
      dir());
  std::thread writer([&] {
    WriteAll(p.in, x.data(), x.size() * sizeof(float));
    p.CloseIn();
  });
  std::string out;
  char buf[65536];
  for (ssize_t n; (n = ::read(p.out, buf, sizeof buf)) > 0;)
    out.append(buf, static_cast<size_t>(n));
  writer.join();
  ASSERT_EQ(p.Wait(), 0) << Slurp(p.err_path);
  const int64_t expected = (static_cast<int64_t>(x.size()) - 2000) / 200 + 1;
  int64_t lines = 0, fail_safe = 0;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line); ++lines) {
    auto j = nlohmann::json::parse(line);
    const int64_t start = j["window"].get<int64_t>() * 200;
    const bool has_nan = start <= 10000 && 10000 < start + 2000;
    EXPECT_EQ(j.value("fail_safe", false), has_nan) << line;
    fail_safe += has_nan;
  }
  EXPECT_EQ(lines, expected);
  EXPECT_EQ(fail_safe, 10);  // windows starting at 8,200 ... 10,000
  auto s = nlohmann::json::parse(Slurp(dir() + "/nan.json"));
  EXPECT_EQ(s["errors"], 10);
  EXPECT_NE(Slurp(p.err_path).find("is NaN"), std::string::npos);
}

// #17.7: every numeric setting has a sane range, checked in one place; the error names the key.
TEST_F(AgentCli, NumericSettingsOutOfRangeAreRefusedNamingTheKey) {
  struct Case {
    std::string toml, needle;
  } cases[] = {
      {"[ota]\ninterval_s = nan\n", "'ota.interval_s' must be a finite number in [1, 2592000]"},
      {"[ota]\ninterval_s = inf\n", "'ota.interval_s'"},
      {"[ota]\ninterval_s = 1e-300\n", "'ota.interval_s'"},
      {"[agent]\ndeadline_s = inf\n", "'agent.deadline_s' must be a finite number"},
      {"[agent]\nspeed = nan\n", "'agent.speed'"},
      {"[agent]\nchannel = -7\n", "'agent.channel' must be an integer in [0, 255] or -1, got -7"},
      {"[agent]\nqueue_windows = 100000000\n", "'agent.queue_windows'"},
      {"[decide]\ntop_sensors = 2147483647\n", "'decide.top_sensors'"},
      {"[mqtt]\nhealth_interval_s = nan\n", "'mqtt.health_interval_s'"},
      {"[mqtt]\nhealth_interval_s = 1e300\n", "'mqtt.health_interval_s'"},
      {"[metrics]\nport = 70000\n", "'metrics.port'"},
  };
  int n = 0;
  for (const auto& c : cases) {
    const std::string name = "range" + std::to_string(n++) + ".toml";
    std::ofstream(dir() + "/" + name) << c.toml;
    auto r = Tend("run --config " + name + " --model m.onnx --source sim:strokes=2", dir());
    ExpectError(r, name + ":");
    ExpectError(r, c.needle);
  }
  ExpectError(Tend("run --model m.onnx --source sim --threads 300", dir()),
              "--threads (model.intra_op_threads): must be an integer in [0, 64], got 300");
  ExpectError(Tend("run --model m.onnx --source sim --deadline inf", dir()),
              "--deadline (agent.deadline_s)");
  ExpectError(Tend("score --model m.onnx --input 'x.wav@1e300:'", dir()), "bad time '1e300'");
}

// #16.10: paths in a config file are read from the file's folder, whatever the working directory
// (before: from the working directory, so `tend run --config /etc/tend/tend.toml` found nothing).
TEST_F(AgentCli, ConfigPathsResolveAgainstTheConfigFolder) {
  std::filesystem::create_directories(dir() + "/plant/models");
  std::filesystem::copy_file(dir() + "/m.onnx", dir() + "/plant/models/press.onnx",
                             std::filesystem::copy_options::overwrite_existing);
  std::ofstream(dir() + "/plant/tend.toml") << "[agent]\nmodel = \"models/press.onnx\"\n"
                                               "decision_log = \"decisions.jsonl\"\n"
                                               "speed = 0\n[metrics]\nport = 0\n";
  auto r = Tend("run --config plant/tend.toml --source 'sim:strokes=3,seed=9' --quiet", dir());
  ASSERT_EQ(r.rc, 0) << r.err;
  std::ifstream log(dir() + "/plant/decisions.jsonl");
  int lines = 0;
  for (std::string line; std::getline(log, line);) ++lines;
  EXPECT_EQ(lines, 3) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir() + "/decisions.jsonl")) << "resolved against the cwd";
}

// #16.9: the score column is one whitespace-separated token whatever its size (before:
// "score=    1.2345" split in two, "score=12345.6789" did not).
TEST_F(AgentCli, TextLinesSplitIntoTheSameColumnsForAnyScore) {
  auto r = Tend(
      "run --model m.onnx --source 'sim:strokes=8,amp=4000,seed=3' --speed 0 "
      "--metrics-port 0",
      dir());
  ASSERT_EQ(r.rc, 0) << r.err;
  std::istringstream in(r.out);
  int lines = 0;
  bool big = false;
  for (std::string line; std::getline(in, line); ++lines) {
    std::istringstream cols(line);
    std::string index, t, score, severity;
    cols >> index >> t >> score >> severity;
    EXPECT_EQ(index.rfind("#", 0), 0u) << line;
    EXPECT_EQ(t.rfind("t=", 0), 0u) << line;
    ASSERT_EQ(score.rfind("score=", 0), 0u) << line;
    const double v = std::stod(score.substr(6));
    big |= v >= 10000;
    EXPECT_TRUE(severity == "NONE" || severity == "LOW" || severity == "MEDIUM" ||
                severity == "HIGH")
        << line;
  }
  EXPECT_EQ(lines, 8);
  EXPECT_TRUE(big) << "no score >= 10,000 in:\n" << r.out;
}

}  // namespace
}  // namespace tend::testing
