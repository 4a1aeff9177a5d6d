// The PLC and Sparkplug sinks on the pipeline thread and on the wire (loopback):
//  - BM_DecisionToCoil: OnDecision(alert) until the PLC has received the coil write, against an
//    in-process Modbus TCP server (libmodbus' server side in a thread, so the figure is tend's
//    path, not a slow test server); reports p50/p99/max in microseconds.
//  - BM_*OnDecision: the cost of OnDecision on the pipeline thread, next to the baseline of
//    copying a Decision into a preallocated slot (what the telemetry sink does), in the same run.
#include <benchmark/benchmark.h>
#include <modbus/modbus.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <thread>
#include <vector>

#include "io/plc_sink.h"
#include "telemetry/sparkplug_node.h"

namespace {

using Clock = std::chrono::steady_clock;

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// A Modbus TCP server for one client; counts "coil on" writes.
class Server {
 public:
  Server() : port_(FreePort()) {
    ctx_ = modbus_new_tcp("127.0.0.1", port_);
    map_ = modbus_mapping_new(100, 0, 100, 0);
    listen_ = modbus_tcp_listen(ctx_, 1);
    thread_ = std::thread([this] { Serve(); });
  }
  ~Server() {
    ::shutdown(listen_, SHUT_RDWR);  // a client that never connected: accept() returns
    thread_.join();
    modbus_mapping_free(map_);
    modbus_close(ctx_);
    modbus_free(ctx_);
    if (listen_ >= 0) ::close(listen_);
  }
  std::string url() const { return "modbus://127.0.0.1:" + std::to_string(port_); }
  std::atomic<int64_t> coil_on{0};

 private:
  void Serve() {
    if (modbus_tcp_accept(ctx_, &listen_) < 0) return;
    uint8_t q[MODBUS_TCP_MAX_ADU_LENGTH];
    for (;;) {
      int n = modbus_receive(ctx_, q);
      if (n < 0) return;  // the client went away
      if (n == 0) continue;
      modbus_reply(ctx_, q, n, map_);
      // MBAP header (7 bytes), function 0x05 write single coil, value 0xFF00 = on.
      if (n >= 12 && q[7] == 0x05 && q[10] == 0xFF) coil_on.fetch_add(1);
    }
  }
  int port_;
  modbus_t* ctx_;
  modbus_mapping_t* map_;
  int listen_;
  std::thread thread_;
};

tend::Decision MakeDecision(bool alert) {
  tend::Decision d;
  d.timestamp = std::chrono::system_clock::now();
  d.anomaly_score = alert ? 0.9f : 0.1f;
  d.is_alert = alert;
  d.severity = alert ? tend::Severity::kHigh : tend::Severity::kLow;
  d.top_sensors = {"rms", "crest", "kurtosis"};
  d.model_name = "press";
  d.model_version = "3";
  return d;
}

tend::io::PlcSinkOptions Options(const std::string& url) {
  tend::io::PlcSinkOptions o;
  o.link.url = url;
  o.reject_coil = 5;
  o.pulse_s = 0.0005;
  o.reject_counter = 10;
  o.queue_capacity = 4096;
  return o;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

void BM_DecisionToCoil(benchmark::State& state) {
  Server server;
  auto sink = tend::io::PlcRejectSink::Create(Options(server.url()));
  if (!sink) {
    state.SkipWithError(sink.error().message.c_str());
    return;
  }
  while (!(*sink)->stats().connected) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const tend::Decision d = MakeDecision(true);
  std::vector<double> us;
  for (auto _ : state) {
    int64_t before = server.coil_on.load();
    auto t0 = Clock::now();
    (*sink)->OnDecision(d);
    while (server.coil_on.load() == before) {
    }
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    // Let the pulse end and the counter be written before the next reject.
    (void)(*sink)->Drain(std::chrono::seconds(5));
  }
  state.counters["p50_us"] = Percentile(us, 0.50);
  state.counters["p99_us"] = Percentile(us, 0.99);
  state.counters["max_us"] = Percentile(us, 1.0);
  state.counters["missed"] = static_cast<double>((*sink)->stats().rejects_missed);
  sink->reset();
}
BENCHMARK(BM_DecisionToCoil)->Iterations(2000)->UseRealTime();

// Baseline: copy a Decision into a preallocated slot (the telemetry sink's hand-off).
void BM_BaselineDecisionCopy(benchmark::State& state) {
  const tend::Decision d = MakeDecision(false);
  std::vector<tend::Decision> slots(1024, d);
  size_t i = 0;
  for (auto _ : state) {
    slots[i++ & 1023] = d;
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_BaselineDecisionCopy);

void BM_PlcOnDecision(benchmark::State& state) {
  Server server;
  auto o = Options(server.url());
  o.queue_capacity = 1 << 20;  // never full here: this measures the hand-off, not the drop path
  auto sink = tend::io::PlcRejectSink::Create(o);
  if (!sink) {
    state.SkipWithError(sink.error().message.c_str());
    return;
  }
  const tend::Decision pass = MakeDecision(false), reject = MakeDecision(true);
  int64_t i = 0;
  for (auto _ : state) (*sink)->OnDecision(++i % 50 == 0 ? reject : pass);
  state.counters["queue_dropped"] = static_cast<double>((*sink)->stats().queue_dropped);
  sink->reset();
}
BENCHMARK(BM_PlcOnDecision)->Iterations(200000);

void BM_SparkplugOnDecision(benchmark::State& state) {
  tend::sparkplug::SparkplugOptions o;
  o.broker_url = "mqtt://127.0.0.1:" + std::to_string(FreePort());  // nobody: events only queue
  o.group_id = "bench";
  o.edge_node_id = "edge";
  o.queue_capacity = 1 << 20;
  char tmpl[] = "/tmp/tend-bench-spb-XXXXXX";
  o.state_dir = ::mkdtemp(tmpl);
  auto node = tend::sparkplug::SparkplugNode::Create(o);
  if (!node) {
    state.SkipWithError(node.error().message.c_str());
    return;
  }
  auto dev = (*node)->AddDevice("press-1");
  const tend::Decision pass = MakeDecision(false);
  for (auto _ : state) (*dev)->OnDecision(pass);
  state.counters["queue_dropped"] = static_cast<double>((*node)->stats().queue_dropped);
  dev->reset();
  node->reset();
  std::filesystem::remove_all(o.state_dir);
}
BENCHMARK(BM_SparkplugOnDecision)->Iterations(200000);

}  // namespace

BENCHMARK_MAIN();
