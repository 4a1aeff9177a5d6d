// Telemetry numbers for the design note:
//  - spool append rate with durable (fsync'ed) group commits, by batch size;
//  - pipeline-side cost of OnDecision (must never block);
//  - drain rate of a spooled backlog to a local Mosquitto at QoS 1;
//  - bytes on the wire per press stroke against the raw 2,000 float32 samples.
// Files go to $TEND_BENCH_DIR (default: a temp dir under /tmp, which must be a real disk for
// the fsync numbers to mean anything).
#include <benchmark/benchmark.h>
#include <mqtt/async_client.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>

#include "telemetry/payload.h"
#include "telemetry/spool.h"
#include "telemetry/telemetry.h"
#include "telemetry/test_support.h"

namespace tend::telemetry {
namespace {

std::string BenchDir() {
  const char* d = std::getenv("TEND_BENCH_DIR");
  std::string base = d && *d ? d : "/tmp";
  std::filesystem::create_directories(base);
  std::string tmpl = base + "/tend-bench-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  return ::mkdtemp(buf.data()) ? std::string(buf.data()) : base;
}

const Identity kId{"f1", "line-3", "press-07", "edge-0007"};

Decision Sample(int64_t i, bool alert) {
  Decision d;
  d.window_index = i;
  d.timestamp = std::chrono::system_clock::now();
  d.anomaly_score = alert ? 0.9137f : 0.1234f;
  d.is_alert = alert;
  d.severity = alert ? Severity::kHigh : Severity::kLow;
  d.top_sensors = {"band_200_400_rms", "kurtosis", "crest_factor"};
  d.latency_ms = 1.734;
  d.model_name = "press-ae";
  d.model_version = "3";
  return d;
}

// Durable group commit: state.range(0) messages per transaction (one fsync each).
void BM_SpoolAppendDurable(benchmark::State& state) {
  std::string dir = BenchDir();
  SpoolOptions o;
  o.max_bytes = 1LL << 34;
  o.durable = true;
  auto spool = std::move(*Spool::Open(dir + "/bench.spool", o));
  const int batch = static_cast<int>(state.range(0));
  std::string payload = ScorePayload(Sample(1, false), kId, {1, 1});
  std::vector<OutgoingMessage> msgs;
  int64_t n = 0;
  for (auto _ : state) {
    msgs.clear();
    for (int i = 0; i < batch; ++i)
      msgs.push_back({MessageKind::kScore, kId.ScoresTopic(), 0, false, payload});
    auto r = spool->Commit(msgs);
    if (!r) state.SkipWithError(r.error().message.c_str());
    n += batch;
  }
  state.SetItemsProcessed(n);
  state.counters["msgs_per_s"] =
      benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsRate);
  spool.reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_SpoolAppendDurable)
    ->Arg(1)
    ->Arg(64)
    ->Arg(1024)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// What the pipeline thread pays per decision (the worker commits behind it, durable).
void BM_OnDecision(benchmark::State& state) {
  std::string dir = BenchDir();
  TelemetryOptions o;
  o.spool_path = dir + "/ondecision.spool";
  o.spool_max_bytes = 1LL << 34;
  o.health_interval_s = 0;
  o.queue_capacity = 1 << 16;
  auto t = std::move(*Telemetry::Create(kId, o));
  Decision d = Sample(0, false);
  int64_t i = 0;
  for (auto _ : state) {
    d.window_index = i++;
    t->OnDecision(d);
    if ((i & 4095) == 0) {
      state.PauseTiming();
      (void)t->Commit(std::chrono::seconds(30));
      state.ResumeTiming();
    }
  }
  (void)t->Commit(std::chrono::seconds(60));
  auto s = t->stats();
  state.counters["spooled"] = static_cast<double>(s.spooled);
  state.counters["dropped"] = static_cast<double>(s.dropped_scores);
  t.reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_OnDecision)->Unit(benchmark::kNanosecond);

// A backlog of N alerts (QoS 1) drained to a local Mosquitto: time from connect to empty spool.
void BM_DrainQos1(benchmark::State& state) {
  if (!tend::testing::Broker::Available()) {
    state.SkipWithError("mosquitto not installed");
    return;
  }
  const int64_t n = state.range(0);
  for (auto _ : state) {
    state.PauseTiming();
    std::string dir = BenchDir();
    tend::testing::Broker broker;
    broker.Start();
    broker.Stop();  // fill while the broker is away
    TelemetryOptions o;
    o.broker_url = broker.url();
    o.spool_path = dir + "/drain.spool";
    o.spool_max_bytes = 1LL << 34;
    o.health_interval_s = 0;
    o.reconnect_min_s = 0.05;
    o.reconnect_max_s = 0.05;
    o.queue_capacity = 1 << 16;
    o.max_inflight = static_cast<int>(state.range(1));
    o.mqtt_version = static_cast<int>(state.range(2));
    // scores:0 spools alerts only, so the drain is the QoS 1 stream alone; scores:1 drains the
    // alerts first, then their QoS 0 twins on .../scores (what a device replays after an outage).
    o.spool_scores = state.range(3) != 0;
    auto t = std::move(*Telemetry::Create(kId, o));
    for (int64_t i = 0; i < n; ++i) {
      t->OnDecision(Sample(i, true));  // alert: one QoS 1 message + one QoS 0 score
      if ((i & 8191) == 8191) (void)t->Commit(std::chrono::seconds(60));
    }
    (void)t->Commit(std::chrono::seconds(60));
    broker.Start();
    tend::testing::WaitFor([&] { return t->stats().connected; }, std::chrono::seconds(10));
    state.ResumeTiming();
    tend::testing::WaitFor([&] { return t->stats().spool_depth == 0; }, std::chrono::seconds(300));
    state.PauseTiming();
    if (t->stats().spool_depth != 0) state.SkipWithError("spool did not drain");
    t.reset();
    broker.Stop();
    std::filesystem::remove_all(dir);
    state.ResumeTiming();
  }
  const int64_t per_decision = state.range(3) != 0 ? 2 : 1;
  state.counters["msgs_per_s"] = benchmark::Counter(
      static_cast<double>(per_decision * n * state.iterations()), benchmark::Counter::kIsRate);
  state.counters["qos1_per_s"] =
      benchmark::Counter(static_cast<double>(n * state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_DrainQos1)
    ->ArgNames({"n", "window", "mqtt", "scores"})
    ->Args({100000, 1000, 4, 1})
    ->Args({100000, 100, 4, 1})
    ->Args({100000, 300, 4, 1})
    ->Args({100000, 300, 5, 1})
    ->Args({100000, 300, 4, 0})
    ->Args({100000, 300, 5, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);

// Ceiling for BM_DrainQos1: a bare Paho async client (same library, protocol, payload, in-flight
// window and broker configuration; no spool, no worker) publishing N QoS 1 messages, optionally
// each followed by its QoS 0 twin on .../scores as tend does for an alert. Time from the first
// publish to the last acknowledgement (QoS 0: written to the socket).
void BM_BarePahoQos1(benchmark::State& state) {
  if (!tend::testing::Broker::Available()) {
    state.SkipWithError("mosquitto not installed");
    return;
  }
  const int64_t n = state.range(0);
  const int window = static_cast<int>(state.range(1));
  const bool twin = state.range(2) != 0;
  const int version = static_cast<int>(state.range(3)) == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
  // The broker's max_inflight_messages: 0 (unlimited) as in the tests, 20 = Mosquitto's default.
  const int64_t broker_inflight = state.range(4);
  std::string payload = ScorePayload(Sample(1, true), kId, {1, 1});
  std::string alerts = kId.AlertsTopic(), scores = kId.ScoresTopic();
  struct Listener : mqtt::iaction_listener {
    std::mutex mu;
    std::condition_variable cv;
    int64_t inflight = 0, done = 0, failed = 0;
    void on_success(const mqtt::token&) override { finish(false); }
    void on_failure(const mqtt::token&) override { finish(true); }
    void finish(bool fail) {
      std::lock_guard lk(mu);
      --inflight;
      ++done;
      failed += fail;
      cv.notify_one();
    }
  };
  for (auto _ : state) {
    state.PauseTiming();
    tend::testing::Broker broker("max_inflight_messages " + std::to_string(broker_inflight));
    broker.Start();
    mqtt::create_options co(version, window + 4096);
    mqtt::async_client cli("tcp://127.0.0.1:" + std::to_string(broker.port()), "bare_paho", co,
                           nullptr);
    mqtt::connect_options conn;
    conn.set_mqtt_version(version);
    if (version == MQTTVERSION_5) {
      conn.set_clean_start(true);
    } else {
      conn.set_clean_session(true);
    }
    conn.set_max_inflight(window + 16);
    cli.connect(conn)->wait();
    Listener l;
    const int64_t total = twin ? 2 * n : n;
    state.ResumeTiming();
    for (int64_t i = 0; i < n; ++i) {
      {
        std::unique_lock lk(l.mu);
        l.cv.wait(lk, [&] { return l.inflight < window; });
        l.inflight += twin ? 2 : 1;
      }
      cli.publish(alerts, payload.data(), payload.size(), 1, false, nullptr, l);
      if (twin) cli.publish(scores, payload.data(), payload.size(), 0, false, nullptr, l);
    }
    {
      std::unique_lock lk(l.mu);
      l.cv.wait(lk, [&] { return l.done == total; });
    }
    state.PauseTiming();
    if (l.failed) state.SkipWithError("publishes failed");
    cli.disconnect()->wait();
    broker.Stop();
    state.ResumeTiming();
  }
  state.counters["msgs_per_s"] = benchmark::Counter(
      static_cast<double>((twin ? 2 : 1) * n * state.iterations()), benchmark::Counter::kIsRate);
  state.counters["qos1_per_s"] =
      benchmark::Counter(static_cast<double>(n * state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_BarePahoQos1)
    ->ArgNames({"n", "window", "twin", "mqtt", "broker_inflight"})
    ->Args({100000, 1000, 0, 4, 0})
    ->Args({100000, 1000, 1, 4, 0})
    ->Args({100000, 1000, 0, 5, 0})
    ->Args({100000, 1000, 0, 5, 20})
    ->Args({100000, 100, 0, 4, 0})
    ->Args({100000, 300, 0, 4, 0})
    ->Args({100000, 300, 1, 4, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);

// Bytes on the wire per stroke: an MQTT 3.1.1 PUBLISH is fixed header (1 + varint length) +
// topic (2 + n) + [packet id 2 for QoS 1] + payload; QoS 1 adds a 4-byte PUBACK. Health every
// 15 s is amortised over 3.3 s strokes. TCP/IP/TLS framing is not counted.
size_t PublishBytes(const std::string& topic, size_t payload, int qos) {
  size_t remaining = 2 + topic.size() + (qos > 0 ? 2 : 0) + payload;
  size_t varint = remaining < 128 ? 1 : remaining < 16384 ? 2 : 3;
  return 1 + varint + remaining + (qos > 0 ? 4 : 0);
}

void BM_WireBytesPerStroke(benchmark::State& state) {
  const double alert_fraction = static_cast<double>(state.range(0)) / 100.0;
  std::string score = ScorePayload(Sample(123456, false), kId, {17, 123456});
  std::string alert = ScorePayload(Sample(123457, true), kId, {17, 123457});
  nlohmann::json extra = {{"cpu_pct", 23.4}, {"gpu_pct", 0.0},     {"temp_c", 51.2},
                          {"mem_pct", 41.0}, {"throttled", false}, {"spool_depth", 0}};
  std::string health = HealthPayload(std::chrono::system_clock::now(), kId, {17, 9}, extra);
  double bytes = 0;
  for (auto _ : state) {
    bytes = PublishBytes(kId.ScoresTopic(), score.size(), 0) * (1 - alert_fraction) +
            (PublishBytes(kId.ScoresTopic(), alert.size(), 0) +
             PublishBytes(kId.AlertsTopic(), alert.size(), 1)) *
                alert_fraction +
            PublishBytes(kId.HealthTopic(), health.size(), 0) * 3.3 / 15.0;
    benchmark::DoNotOptimize(bytes);
  }
  // MQTT bytes only; with TCP/IP (IPv4 20 + TCP 32 with timestamps) per message when each
  // publish leaves in its own segment (TCP_NODELAY, one stroke every 3.3 s: nothing to coalesce).
  const double messages = 1 + alert_fraction + 3.3 / 15.0;  // an alert goes out twice
  const double bytes_ip = bytes + 52 * messages;
  const double raw = 2000.0 * sizeof(float);
  state.counters["bytes_per_stroke"] = bytes;
  state.counters["bytes_per_stroke_tcpip"] = bytes_ip;
  state.counters["raw_bytes"] = raw;
  // Against the 200 ms window the decision was made on (float32 and 16-bit ADC counts).
  state.counters["reduction_x"] = raw / bytes;
  state.counters["reduction_int16_x"] = 2000.0 * 2 / bytes;
  // The accelerometer streams continuously: what a device without tend would send is the
  // 10 kHz stream, 3.3 s of it per stroke (float32; the int16 figure is half).
  state.counters["reduction_vs_stream_x"] = 10000.0 * 3.3 * sizeof(float) / bytes;
  state.counters["reduction_vs_stream_tcpip_x"] = 10000.0 * 3.3 * sizeof(float) / bytes_ip;
  state.counters["score_payload_bytes"] = static_cast<double>(score.size());
}
BENCHMARK(BM_WireBytesPerStroke)->Arg(0)->Arg(1)->Arg(100)->Iterations(1);

}  // namespace
}  // namespace tend::telemetry

BENCHMARK_MAIN();
