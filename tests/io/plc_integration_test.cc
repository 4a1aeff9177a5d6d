// The PLC link against an independent Modbus TCP server (Debian's pymodbus, tests/io/
// modbus_server.py) on a free loopback port: reject pulses and counter, a server that dies and
// comes back, exception responses, an unreachable and a silent PLC, and the part trigger.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <random>

#include "io/modbus_test_support.h"
#include "io/plc_sink.h"
#include "io/plc_trigger.h"

namespace tend::io {
namespace {

using namespace std::chrono_literals;
using tend::testing::ModbusServer;
using tend::testing::WaitFor;

constexpr int kCoil = 5, kCounter = 10, kScore = 20, kSeverity = 22, kUnsafe = 7;

Decision MakeDecision(int64_t i, bool alert) {
  Decision d;
  d.window_index = i;
  d.timestamp = std::chrono::system_clock::now();
  d.anomaly_score = alert ? 0.75f : 0.125f;
  d.is_alert = alert;
  d.severity = alert ? Severity::kMedium : Severity::kLow;
  d.top_sensors = {"rms"};
  return d;
}

PlcSinkOptions SinkOptions(const std::string& url) {
  PlcSinkOptions o;
  o.link.url = url;
  o.link.timeout_s = 0.5;
  o.link.reconnect_min_s = 0.05;
  o.link.reconnect_max_s = 0.2;
  o.reject_coil = kCoil;
  o.pulse_s = 0.01;
  o.reject_counter = kCounter;
  o.score_register = kScore;
  o.severity_register = kSeverity;
  o.line_unsafe_coil = kUnsafe;
  return o;
}

class PlcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!ModbusServer::Available()) GTEST_SKIP() << "python3-pymodbus is not installed";
    ASSERT_TRUE(server_.Start()) << server_.Output();
  }
  ModbusServer server_;
};

// Pulses as the PLC saw them: each 1 written to the coil followed by a 0.
int CountPulses(const std::vector<int>& coil) {
  int pulses = 0;
  bool on = false;
  for (int v : coil) {
    if (v && !on) ++pulses;
    on = v != 0;
  }
  return on ? -1 : pulses;  // -1: left on
}

TEST_F(PlcTest, ReplayWithNAlertsLeavesTheCounterAtNAndPulsesTheCoil) {
  auto sink = PlcRejectSink::Create(SinkOptions(server_.url()));
  ASSERT_TRUE(sink) << sink.error().message;
  int alerts = 0, i = 0;
  auto decide = [&](bool alert) {
    alerts += alert;
    (*sink)->OnDecision(MakeDecision(i++, alert));
  };
  // Alerts far apart: each its own pulse (waits for the PLC to see the coil go off again).
  const int kSeparate = 12;
  for (int k = 0; k < kSeparate; ++k) {
    for (int p = 0; p < 8; ++p) decide(false);
    decide(true);
    ASSERT_TRUE(WaitFor([&] { return CountPulses(server_.ValuesAt("co", kCoil)) == k + 1; }, 10s))
        << server_.ValuesAt("co", kCoil).size();
  }
  // A burst: pulses merge, the counter still counts every alert.
  for (int k = 0; k < 60; ++k) decide(k % 2 == 0);
  for (int k = 0; k < 100; ++k) decide(false);
  ASSERT_TRUE((*sink)->Drain(20s));
  ASSERT_TRUE(WaitFor([&] { return CountPulses(server_.ValuesAt("co", kCoil)) >= 0; }, 5s));
  auto st = (*sink)->stats();
  EXPECT_EQ(st.rejects, alerts);
  EXPECT_EQ(st.rejects_written, alerts);
  EXPECT_EQ(st.rejects_missed, 0);
  EXPECT_EQ(st.exceptions + st.link_errors, 0) << st.last_error;
  auto counter = server_.ValuesAt("hr", kCounter);
  ASSERT_FALSE(counter.empty());
  EXPECT_EQ(counter.back(), alerts);
  EXPECT_EQ(st.counter, alerts);
  // Every counter write went up (no lost or repeated increment).
  for (size_t i = 1; i < counter.size(); ++i) EXPECT_GT(counter[i], counter[i - 1]);
  int pulses = CountPulses(server_.ValuesAt("co", kCoil));
  EXPECT_GE(pulses, kSeparate + 1);
  EXPECT_LE(pulses, alerts);
  // Last score and severity: a non-alert as float32 high word first, and 0.
  auto sev = server_.ValuesAt("hr", kSeverity);
  ASSERT_FALSE(sev.empty());
  EXPECT_EQ(sev.back(), 0);
  EXPECT_NE(std::find(sev.begin(), sev.end(), 2), sev.end());  // MEDIUM alerts were shown
  auto hi = server_.ValuesAt("hr", kScore), lo = server_.ValuesAt("hr", kScore + 1);
  ASSERT_FALSE(hi.empty());
  uint32_t bits = (static_cast<uint32_t>(hi.back()) << 16) | static_cast<uint32_t>(lo.back());
  float score;
  std::memcpy(&score, &bits, sizeof score);
  EXPECT_EQ(score, 0.125f);
  EXPECT_TRUE(server_.ValuesAt("co", kUnsafe).empty());  // nothing was missed
  auto lat = (*sink)->RecentRejectLatenciesMs();
  EXPECT_EQ(static_cast<int>(lat.size()), alerts);
}

TEST_F(PlcTest, ServerThatDiesAndComesBackLosesNoIncrementAfterItCameBack) {
  auto sink = PlcRejectSink::Create(SinkOptions(server_.url()));
  ASSERT_TRUE(sink) << sink.error().message;
  int64_t i = 0;
  for (int k = 0; k < 5; ++k) (*sink)->OnDecision(MakeDecision(i++, true));
  ASSERT_TRUE((*sink)->Drain(10s));
  ASSERT_EQ(server_.ValuesAt("hr", kCounter).back(), 5);

  server_.Kill(SIGKILL);  // the PLC dies; decisions go on
  const size_t first_life = server_.ValuesAt("hr", kCounter).size();
  const int kWhileDown = 7;
  for (int k = 0; k < 40; ++k) {
    (*sink)->OnDecision(MakeDecision(i++, k % 6 == 0 && k / 6 < kWhileDown));
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_TRUE((*sink)->Drain(10s));
  ASSERT_TRUE(WaitFor([&] { return !(*sink)->stats().connected; }, 10s));
  auto down = (*sink)->stats();
  EXPECT_EQ(down.rejects_missed, kWhileDown);
  EXPECT_EQ(down.rejects_written, 5);

  ASSERT_TRUE(server_.Start());  // a rebooted PLC: every value is zero again
  ASSERT_TRUE(WaitFor([&] { return (*sink)->stats().connected; }, 10s));
  const int kAfter = 11;
  for (int k = 0; k < kAfter; ++k) {
    (*sink)->OnDecision(MakeDecision(i++, true));
    (*sink)->OnDecision(MakeDecision(i++, false));
    std::this_thread::sleep_for(3ms);
  }
  ASSERT_TRUE((*sink)->Drain(10s));
  auto st = (*sink)->stats();
  EXPECT_EQ(st.rejects, 5 + kWhileDown + kAfter);
  EXPECT_EQ(st.rejects_written, 5 + kAfter);
  EXPECT_EQ(st.rejects_missed, kWhileDown);
  EXPECT_GE(st.connects, 2);
  EXPECT_EQ(st.line_unsafe_set, 1);
  // The restarted server (all zero again) saw exactly the increments made after it came back:
  // its counter writes go up from 1 (or more, batched) to kAfter.
  auto counter = server_.ValuesAt("hr", kCounter);
  ASSERT_GT(counter.size(), first_life);
  std::vector<int> second(counter.begin() + static_cast<long>(first_life), counter.end());
  EXPECT_EQ(second.back(), kAfter);
  EXPECT_GE(second.front(), 1);
  for (size_t k = 1; k < second.size(); ++k) EXPECT_GT(second[k], second[k - 1]);
  auto unsafe = server_.ValuesAt("co", kUnsafe);
  ASSERT_EQ(unsafe.size(), 1u);
  EXPECT_EQ(unsafe[0], 1);
  EXPECT_FALSE(st.last_error.empty());
  EXPECT_EQ(ToJson(st)["rejects_missed"], kWhileDown);
}

TEST_F(PlcTest, ExceptionResponseIsCountedAndTheLinkStaysUp) {
  auto o = SinkOptions(server_.url());
  o.reject_counter = 5000;  // beyond the server's 1,000 registers: exception 2
  auto sink = PlcRejectSink::Create(o);
  ASSERT_TRUE(sink) << sink.error().message;
  for (int k = 0; k < 20; ++k) {
    (*sink)->OnDecision(MakeDecision(k, k % 2 == 0));
    std::this_thread::sleep_for(2ms);
  }
  ASSERT_TRUE((*sink)->Drain(10s));
  auto st = (*sink)->stats();
  EXPECT_GT(st.exceptions, 0);
  EXPECT_EQ(st.link_errors, 0);
  EXPECT_TRUE(st.connected);
  EXPECT_EQ(st.connects, 1);
  EXPECT_EQ(st.rejects_missed, 10);  // the coil pulsed, but the counter could not count them
  EXPECT_NE(st.last_error.find("illegal data address"), std::string::npos) << st.last_error;
  EXPECT_NE(st.last_error.find("5000"), std::string::npos) << st.last_error;
  EXPECT_FALSE(server_.ValuesAt("co", kCoil).empty());
  EXPECT_FALSE(server_.ValuesAt("hr", kSeverity).empty());  // later writes still happen
}

TEST(PlcUnreachable, DecisionsGoOnAndEveryRejectIsCountedMissed) {
  PlcSinkOptions o = SinkOptions("modbus://127.0.0.1:" + std::to_string(testing::FreePort()));
  auto sink = PlcRejectSink::Create(o);
  ASSERT_TRUE(sink) << sink.error().message;
  for (int k = 0; k < 50; ++k) (*sink)->OnDecision(MakeDecision(k, k % 5 == 0));
  ASSERT_TRUE((*sink)->Drain(10s));
  ASSERT_TRUE(WaitFor([&] { return (*sink)->stats().connect_failures >= 2; }, 10s));
  auto st = (*sink)->stats();
  EXPECT_FALSE(st.connected);
  EXPECT_EQ(st.decisions, 50);
  EXPECT_EQ(st.rejects_missed, 10);
  EXPECT_EQ(st.rejects_written, 0);
  EXPECT_NE(st.last_error.find("cannot connect"), std::string::npos) << st.last_error;
}

// A PLC that accepts the connection and never answers: requests time out, the link is dropped
// and retried, and the pipeline never waits for it.
TEST(PlcSilent, TimeoutsCloseTheLinkAndNothingStalls) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 16), 0);  // never accepted: the kernel completes the handshake
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  auto o = SinkOptions("modbus://127.0.0.1:" + std::to_string(ntohs(a.sin_port)));
  o.link.timeout_s = 0.1;
  auto sink = PlcRejectSink::Create(o);
  ASSERT_TRUE(sink) << sink.error().message;
  for (int k = 0; k < 30; ++k) {
    (*sink)->OnDecision(MakeDecision(k, true));
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE((*sink)->Drain(20s));
  auto st = (*sink)->stats();
  EXPECT_EQ(st.decisions, 30);
  EXPECT_GT(st.link_errors, 0);
  EXPECT_EQ(st.rejects_missed + st.queue_dropped, 30);
  EXPECT_EQ(st.rejects_written, 0);
  sink->reset();
  ::close(fd);
}

TEST_F(PlcTest, CounterTriggerNumbersEveryPartAndResynchronisesOnAReset) {
  TriggerOptions o;
  o.link.url = server_.url();
  o.trigger = *ParseTriggerSpec("hr:100");
  o.poll_interval_s = 0.002;
  auto trig = PlcTrigger::Start(o);
  ASSERT_TRUE(trig) << trig.error().message;
  ASSERT_TRUE(WaitFor([&] { return (*trig)->stats().polls > 3; }, 10s));  // baseline 0
  std::vector<int64_t> parts;
  PartEvent ev;
  for (int v = 1; v <= 5; ++v) {
    server_.Set("hr", 100, v);
    ASSERT_TRUE((*trig)->WaitPop(ev, 5s)) << "part " << v;
    parts.push_back(ev.part_number);
  }
  server_.Set("hr", 100, 8);  // three strokes between two polls: three parts
  for (int k = 0; k < 3; ++k) {
    ASSERT_TRUE((*trig)->WaitPop(ev, 5s));
    parts.push_back(ev.part_number);
  }
  EXPECT_EQ(parts, (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8}));
  server_.Set("hr", 100, 0);  // the PLC reset its counter: a step back
  ASSERT_TRUE(WaitFor([&] { return (*trig)->stats().resyncs == 1; }, 5s));
  server_.Set("hr", 100, 1);
  ASSERT_TRUE((*trig)->WaitPop(ev, 5s));
  EXPECT_EQ(ev.part_number, 1);
  EXPECT_FALSE((*trig)->TryPop(ev));
  EXPECT_EQ((*trig)->stats().parts, 9);
}

TEST_F(PlcTest, PartPresentEdgeTakesThePartNumberFromARegister) {
  TriggerOptions o;
  o.link.url = server_.url();
  o.trigger = *ParseTriggerSpec("di:3");
  o.part_register = 200;
  o.poll_interval_s = 0.002;
  std::vector<int64_t> seen;
  std::mutex mu;
  auto trig = PlcTrigger::Start(o, [&](const PartEvent& e) {
    std::lock_guard lk(mu);
    seen.push_back(e.part_number);
  });
  ASSERT_TRUE(trig) << trig.error().message;
  ASSERT_TRUE(WaitFor([&] { return (*trig)->stats().polls > 3; }, 10s));
  PartEvent ev;
  for (int part : {1001, 1002, 1003}) {
    server_.Set("hr", 200, part);
    server_.Set("di", 3, 1);
    ASSERT_TRUE((*trig)->WaitPop(ev, 5s));
    EXPECT_EQ(ev.part_number, part);
    server_.Set("di", 3, 0);
    uint64_t polls = (*trig)->stats().polls;
    ASSERT_TRUE(
        WaitFor([&] { return (*trig)->stats().polls > static_cast<int64_t>(polls) + 2; }, 5s));
  }
  std::lock_guard lk(mu);
  EXPECT_EQ(seen, (std::vector<int64_t>{1001, 1002, 1003}));
}

TEST_F(PlcTest, TriggerReconnectsAfterThePlcComesBack) {
  TriggerOptions o;
  o.link.url = server_.url();
  o.link.reconnect_min_s = 0.05;
  o.link.reconnect_max_s = 0.2;
  o.trigger = *ParseTriggerSpec("coil:4");
  o.poll_interval_s = 0.002;
  auto trig = PlcTrigger::Start(o);
  ASSERT_TRUE(trig) << trig.error().message;
  ASSERT_TRUE(WaitFor([&] { return (*trig)->stats().polls > 3; }, 10s));
  server_.Kill(SIGKILL);
  ASSERT_TRUE(WaitFor([&] { return !(*trig)->stats().connected; }, 10s));
  ASSERT_TRUE(server_.Start());
  ASSERT_TRUE(WaitFor([&] { return (*trig)->stats().connects >= 2; }, 10s));
  uint64_t polls = (*trig)->stats().polls;
  ASSERT_TRUE(
      WaitFor([&] { return (*trig)->stats().polls > static_cast<int64_t>(polls) + 3; }, 5s));
  server_.Set("co", 4, 1);
  PartEvent ev;
  ASSERT_TRUE((*trig)->WaitPop(ev, 5s));
  EXPECT_EQ(ev.part_number, 1);  // tend's own numbering without a part register
  EXPECT_GE((*trig)->stats().link_errors + (*trig)->stats().connect_failures, 1);
}

}  // namespace
}  // namespace tend::io
