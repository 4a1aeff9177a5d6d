// Runs the real `tend` binary: keygen -> publish -> registry serve -> ota check/status/rollback on
// a model trained by `tend train`, and bad input (one error line, non-zero exit, never a crash).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "ota_test_util.h"
#include "raw_server.h"
#include "../telemetry/test_support.h"

namespace tend::ota {
namespace {

using namespace testing;

struct Outcome {
  int exit_code = -1;
  bool crashed = false;
  std::string out, err;
};

std::string TendBinary() {
  const char* dir = std::getenv("TEND_BINARY_DIR");
  std::string bin = dir ? std::string(dir) + "/tend" : "";
  return !bin.empty() && fs::Exists(bin) ? bin : "";
}

class OtaCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bin_ = TendBinary();
    if (bin_.empty()) GTEST_SKIP() << "build/tend not built (TEND_BINARY_DIR)";
  }

  // `timeout_s` > 0 kills a command that should have failed at once but runs on (a server).
  Outcome Tend(const std::string& args, int timeout_s = 0) {
    std::string out = dir_ / "out", err = dir_ / "err";
    std::string cmd = (timeout_s > 0 ? "timeout " + std::to_string(timeout_s) + " " : "") + bin_ +
                      " --log-level warn " + args + " >" + out + " 2>" + err + " </dev/null";
    int rc = std::system(cmd.c_str());
    Outcome o;
    o.crashed = rc == -1 || !WIFEXITED(rc);
    if (WIFEXITED(rc)) o.exit_code = WEXITSTATUS(rc);
    o.out = ReadText(out);
    o.err = ReadText(err);
    return o;
  }

  // A failure must be one "tend: error: ..." line naming `needle`.
  void ExpectError(const std::string& args, const std::string& needle) {
    Outcome o = Tend(args);
    EXPECT_FALSE(o.crashed) << args;
    EXPECT_NE(o.exit_code, 0) << args;
    EXPECT_EQ(o.err.rfind("tend: error: ", 0), 0u) << args << "\n" << o.err;
    EXPECT_NE(o.err.find(needle), std::string::npos) << args << "\n" << o.err;
  }

  std::string bin_;
  ScratchDir dir_;
};

// Issue 17, defect 2: a registry that drips its headers kept `tend run` from stopping on SIGTERM
// for over a minute (the updater's Stop() joined a fetch in flight). The real agent, polling a
// registry that sends one header byte every 100 ms for a minute, must exit on SIGTERM while that
// registry is still dripping.
TEST_F(OtaCliTest, AgentStopsWithoutWaitingForARegistryThatDrips) {
  RawServer registry([](int fd, const std::atomic<bool>& stop) {
    RawServer::Send(fd, "HTTP/1.1 200 OK\r\nX-Slow: ");
    for (int i = 0; i < 600 && RawServer::Nap(100, stop); ++i) {
      if (!RawServer::Send(fd, "z")) return;
    }
  });
  Outcome t = Tend("train --input sim:strokes=60,wear=0,seed=3 --out " + (dir_ / "m.onnx") +
                   " --name press-ae --version 1");
  ASSERT_EQ(t.exit_code, 0) << t.err;
  KeyPair k = NewKey();
  ASSERT_TRUE(WriteRoot(dir_ / "reg", MakeRoot({k}, 1, 1, std::time(nullptr) + 365 * kDay), {k}));
  const std::string log = dir_ / "agent.log";
  pid_t pid = ::fork();
  if (pid == 0) {
    std::vector<std::string> argv = {bin_, "run", "--model", dir_ / "m.onnx", "--source",
                                     "sim:strokes=100000,wear=0,seed=3", "--speed", "1",
                                     "--metrics-port", "0", "--state-dir", dir_ / "state",
                                     "--ota-registry", registry.url(), "--ota-model-dir",
                                     dir_ / "models", "--ota-root", dir_ / "reg/root.json",
                                     "--ota-name", "press-ae", "--ota-interval", "3600",
                                     "--ota-reference-normal", "sim:strokes=30,wear=0,seed=84",
                                     "--ota-reference-anomalous",
                                     "sim:strokes=20,wear=0.5,wear_end=1,seed=85"};
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    FILE* f = std::freopen(log.c_str(), "w", stderr);
    (void)f;
    ::dup2(2, 1);
    ::execv(args[0], args.data());
    std::_Exit(127);
  }
  ASSERT_GT(pid, 0);
  int status = 0;
  for (int i = 0; i < 6000 && !registry.in_script(); ++i) {
    if (::waitpid(pid, &status, WNOHANG) == pid) break;  // it gave up (see the log)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!registry.in_script()) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    FAIL() << "the agent never asked the registry\n" << ReadText(log);
  }
  ::kill(pid, SIGTERM);
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(registry.in_script()) << "the agent waited until the registry gave up";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << ReadText(log);
  registry.Stop();
}

// Issue 16, item 9: a model showed two version numbers, v1 in the log and v0 in OTA (the updater
// adopted the start-up model as version 0). A real `tend run` with OTA and telemetry on a model
// whose card says version 3: the log, every decision, OTA's state file, the retained OTA state a
// real Mosquitto holds (read by mosquitto_sub) and the exit JSON all name version 3.
TEST_F(OtaCliTest, OneModelVersionInTheLogOtaStateMqttAndExitJson) {
  if (!tend::testing::Broker::Available()) GTEST_SKIP() << "/usr/sbin/mosquitto not installed";
  Outcome t = Tend("train --input sim:strokes=60,wear=0,seed=3 --out " + (dir_ / "m.onnx") +
                   " --name press-ae --version 3");
  ASSERT_EQ(t.exit_code, 0) << t.err;
  KeyPair k = NewKey();
  ASSERT_TRUE(WriteRoot(dir_ / "reg", MakeRoot({k}, 1, 1, std::time(nullptr) + 365 * kDay), {k}));
  tend::testing::Broker broker;
  ASSERT_TRUE(broker.Start());
  const std::string log = dir_ / "agent.log", out = dir_ / "decisions.jsonl";
  const std::string cmd =
      bin_ + " --log-level info run --model " + (dir_ / "m.onnx") +
      " --source sim:strokes=4,wear=0,seed=7 --speed 0 --json --metrics-port 0 --state-dir " +
      (dir_ / "state") + " --mqtt " + broker.url() +
      " --factory f1 --line l1 --asset press-v --device-id edge-v --ota-registry " +
      (dir_ / "reg") + " --ota-model-dir " + (dir_ / "models") + " --ota-root " +
      (dir_ / "reg/root.json") +
      " --ota-name press-ae --ota-interval 3600 --ota-reference-normal "
      "sim:strokes=30,wear=0,seed=84 --ota-reference-anomalous "
      "sim:strokes=20,wear=0.5,wear_end=1,seed=85 --summary-json " +
      (dir_ / "exit.json") + " >" + out + " 2>" + log + " </dev/null";
  const int rc = std::system(cmd.c_str());
  const std::string agent_log = ReadText(log);
  ASSERT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << rc << "\n" << agent_log;

  // The log: every "press-ae vN" says 3 (the model load line and OTA's start-up state line).
  std::set<std::string> logged;
  const std::regex named("press-ae v([0-9]+)");
  for (std::sregex_iterator i(agent_log.begin(), agent_log.end(), named), end; i != end; ++i) {
    logged.insert((*i)[1]);
  }
  EXPECT_EQ(logged, std::set<std::string>{"3"}) << agent_log;
  EXPECT_NE(agent_log.find("model press-ae v3 ("), std::string::npos) << agent_log;
  EXPECT_NE(agent_log.find("ota: startup: press-ae v3"), std::string::npos) << agent_log;

  // Every decision.
  std::istringstream decisions(ReadText(out));
  int n = 0;
  for (std::string line; std::getline(decisions, line); ++n) {
    EXPECT_EQ(nlohmann::json::parse(line)["model_version"], "3") << line;
  }
  EXPECT_EQ(n, 4);

  // OTA's own state, as `tend ota status` reads it.
  Outcome st = Tend("ota status --model-dir " + (dir_ / "models"));
  ASSERT_EQ(st.exit_code, 0) << st.err;
  auto sj = nlohmann::json::parse(st.out);
  EXPECT_EQ(sj["current_version"], 3) << st.out;
  EXPECT_EQ(sj["current"]["version"], 3) << st.out;

  // The retained OTA state on the broker, read by an independent client.
  // No -C 1: mosquitto_sub 2.0.11 can hang on its way out after the count, even on SIGTERM.
  tend::testing::Subscriber sub(broker.port(), {"factory/f1/edge/edge-v/ota"}, "version-check");
  sub.Start();
  ASSERT_TRUE(
      tend::testing::WaitFor([&] { return !sub.Messages().empty(); }, std::chrono::seconds(20)))
      << broker.log();
  const auto retained = sub.Messages().front();
  EXPECT_EQ(retained.retained, 1);
  auto mj = nlohmann::json::parse(retained.payload);
  EXPECT_EQ(mj["model"], "press-ae") << retained.payload;
  EXPECT_EQ(mj["current_version"], 3) << retained.payload;

  // The exit JSON.
  auto ej = nlohmann::json::parse(ReadText(dir_ / "exit.json"));
  EXPECT_EQ(ej["model"], "press-ae v3") << ej.dump();
  EXPECT_EQ(ej["assets"][0]["model"], "press-ae v3") << ej.dump();
}

TEST_F(OtaCliTest, PublishServeCheckRollback) {
  const std::string reg = dir_ / "registry", dev = dir_ / "device", key = dir_ / "pub";
  ASSERT_EQ(Tend("keygen --out " + key).exit_code, 0);
  ExpectError("keygen --out " + key, "pub.key");  // never overwrites a secret key
  // `--out NAME.key` names the secret key file (the README's spelling), not NAME.key.key.
  ASSERT_EQ(Tend("keygen --out " + (dir_ / "second.key")).exit_code, 0);
  EXPECT_TRUE(fs::Exists(dir_ / "second.key"));
  EXPECT_TRUE(fs::Exists(dir_ / "second.pub"));
  EXPECT_FALSE(fs::Exists(dir_ / "second.key.key"));
  Outcome t = Tend("train --input sim:strokes=200,wear=0,seed=3 --out " + (dir_ / "m1.onnx") +
                   " --name press-ae --version 1");
  ASSERT_EQ(t.exit_code, 0) << t.err;
  t = Tend("train --input sim:strokes=200,wear=0,seed=4 --out " + (dir_ / "m2.onnx") +
           " --name press-ae --version 2");
  ASSERT_EQ(t.exit_code, 0) << t.err;

  Outcome p = Tend("publish " + (dir_ / "m1.onnx") + " --name press-ae --version 1 --profile " +
                   kProfile + " --min-quality 0.8 --key " + key + ".key --registry " + reg);
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_EQ(nlohmann::json::parse(p.out)["version"], 1);
  ExpectError("publish " + (dir_ / "m1.onnx") + " --name press-ae --version 1 --profile " +
                  kProfile + " --key " + key + ".key --registry " + reg,
              "not above published version 1");
  ExpectError("publish " + (dir_ / "m1.onnx") + " --name press-ae --version 2 --profile " +
                  kProfile + " --key " + key + ".pub --registry " + reg,
              "not a private key");

  // Serve it on a free port and update over HTTP.
  std::string serve_out = dir_ / "serve.out";
  pid_t pid = ::fork();
  if (pid == 0) {
    std::freopen(serve_out.c_str(), "w", stdout);
    ::execl(bin_.c_str(), bin_.c_str(), "--log-level", "warn", "registry", "serve", reg.c_str(),
            "--host", "127.0.0.1", "--port", "0", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::string url;
  for (int i = 0; i < 1000 && url.empty(); ++i) {
    std::string s = fs::Exists(serve_out) ? ReadText(serve_out) : "";
    size_t at = s.find("http://");
    size_t nl = s.find('\n', at);
    if (at != std::string::npos && nl != std::string::npos) url = s.substr(at, nl - at);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_FALSE(url.empty()) << "registry serve did not start";
  // A release that asks for a measured quality: this command has none, and says which flag
  // installs it anyway (exit 3), before fetching anything.
  Outcome unmeasured =
      Tend("ota check --registry " + url + " --model-dir " + dev + " --name press-ae --profile " +
           kProfile + " --root " + reg + "/root.json");
  EXPECT_EQ(unmeasured.exit_code, 3) << unmeasured.err;
  EXPECT_NE(unmeasured.err.find("quality >= 0.8 but no quality gate"), std::string::npos)
      << unmeasured.err;
  EXPECT_NE(unmeasured.err.find("pass --allow-unmeasured"), std::string::npos) << unmeasured.err;
  const std::string check = "ota check --registry " + url + " --model-dir " + dev +
                            " --name press-ae --profile " + kProfile + " --root " + reg +
                            "/root.json --allow-unmeasured";
  Outcome c = Tend(check);
  EXPECT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(nlohmann::json::parse(c.out)["current_version"], 1) << c.out;

  // Without --name the release takes the model card's name (press-ae, from `train --name`).
  p = Tend("publish " + (dir_ / "m2.onnx") + " --version 2 --profile " + kProfile + " --key " +
           key + ".key --registry " + reg);
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_EQ(nlohmann::json::parse(p.out)["name"], "press-ae");
  c = Tend(check);
  EXPECT_EQ(c.exit_code, 0) << c.err;
  Outcome st = Tend("ota status --model-dir " + dev);
  ASSERT_EQ(st.exit_code, 0) << st.err;
  auto sj = nlohmann::json::parse(st.out);
  EXPECT_EQ(sj["current"]["version"], 2);
  EXPECT_EQ(sj["backup"]["version"], 1);
  EXPECT_EQ(sj["current"]["sha256"], Sha256Hex(ReadText(dir_ / "m2.onnx")));
  // The agent's status fields too (StateStatusJson), consistent with the slots.
  EXPECT_EQ(sj["current_version"], 2);
  EXPECT_EQ(sj["backup_version"], 1);
  EXPECT_EQ(sj["state"], "probation");
  EXPECT_EQ(sj["in_probation"], true);
  EXPECT_GT(sj["probation_remaining_s"].get<int64_t>(), 0);
  EXPECT_EQ(sj["stale"], false);
  EXPECT_EQ(sj["max_model_age_s"], 8 * 7 * 86400);
  // A second server on the same port fails (it used to share the port: cpp-httplib sets
  // SO_REUSEPORT) and the error names the OS's reason.
  const std::string port = url.substr(url.rfind(':') + 1);
  Outcome second = Tend("registry serve " + reg + " --host 127.0.0.1 --port " + port, 20);
  EXPECT_EQ(second.exit_code, 1) << "124: still serving after 20 s\n" << second.err;
  EXPECT_NE(second.err.find("tend: error: registry server: cannot bind 127.0.0.1:" + port +
                            ": Address already in use"),
            std::string::npos)
      << second.err;
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  // And with nothing listening there any more, a check says why it cannot connect.
  Outcome down = Tend(check);
  EXPECT_EQ(down.exit_code, 3) << down.err;
  EXPECT_NE(
      down.err.find("tend: error: " + url + "/2.root.json: cannot connect: Connection refused"),
      std::string::npos)
      << down.err;

  ASSERT_EQ(Tend("ota rollback --model-dir " + dev).exit_code, 0);
  st = Tend("ota status --model-dir " + dev);
  sj = nlohmann::json::parse(st.out);
  EXPECT_EQ(sj["current"]["version"], 1);
  EXPECT_EQ(sj["rollbacks"], 1);

  // A release that is not a tend model: signed, but refused by the load check (exit 4).
  WriteText(dir_ / "junk.onnx", FakeModel(9));
  ASSERT_EQ(Tend("publish " + (dir_ / "junk.onnx") + " --name press-ae --version 3 --profile " +
                 kProfile + " --key " + key + ".key --registry " + reg)
                .exit_code,
            0);
  Outcome j = Tend("ota check --registry " + reg + " --model-dir " + dev +
                   " --name press-ae --profile " + kProfile + " --allow-unmeasured");
  EXPECT_EQ(j.exit_code, 4) << j.err;
  EXPECT_NE(j.err.find("candidate does not load"), std::string::npos) << j.err;
}

TEST_F(OtaCliTest, BadInput) {
  ExpectError("ota status --model-dir " + (dir_ / "none"), "ota_state.json");
  ExpectError("ota rollback --model-dir " + (dir_ / "none"), "ota_state.json");
  ExpectError("ota check --registry " + (dir_ / "none") + " --model-dir " + (dir_ / "dev") +
                  " --name m --profile p --root x.json",
              "registry directory does not exist");
  ExpectError(
      "ota check --registry ftp://x --model-dir " + (dir_ / "dev") + " --name m --profile p",
      "only http://");
  ExpectError("publish " + (dir_ / "missing.onnx") + " --name m --version 1 --profile p --key " +
                  (dir_ / "nokey.key") + " --registry " + (dir_ / "reg"),
              "nokey.key");
  ExpectError("registry serve " + (dir_ / "nope") + " --port 0", "does not exist");
}

}  // namespace
}  // namespace tend::ota
