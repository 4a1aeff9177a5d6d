// Child process for crash and outage tests (not a test itself):
//   telemetry_helper spool-append SPOOL
//       appends batches of messages forever, printing "committed <boot> <last_seq>" after each
//       durable commit; the test kills it at random moments and checks nothing committed is lost.
//   telemetry_helper agent SPOOL BROKER_URL DEVICE START COUNT RATE ALERT_EVERY [CA CERT KEY]
//       a Telemetry sink fed COUNT synthetic decisions (window_index START..) at RATE per second,
//       every ALERT_EVERY-th an alert; prints "committed <window_index>" as the spool commits,
//       then "done" after a Flush. Exit code 0 on success.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "telemetry/spool.h"
#include "telemetry/telemetry.h"

using namespace tend::telemetry;

static int SpoolAppend(const std::string& path) {
  SpoolOptions o;
  o.max_bytes = 1LL << 30;
  auto s = Spool::Open(path, o);
  if (!s) {
    std::fprintf(stderr, "open: %s\n", s.error().message.c_str());
    return 2;
  }
  int64_t boot = (*s)->boot_epoch();
  int64_t seq = 0;
  std::vector<OutgoingMessage> batch;
  for (;;) {
    batch.clear();
    int n = 1 + static_cast<int>(seq % 37);
    for (int i = 0; i < n; ++i) {
      ++seq;
      MessageKind k = seq % 5 == 0 ? MessageKind::kAlert : MessageKind::kScore;
      batch.push_back({k, k == MessageKind::kAlert ? "t/alerts" : "t/scores", 1, false,
                       "{\"boot\":" + std::to_string(boot) + ",\"seq\":" + std::to_string(seq) +
                           ",\"pad\":\"" + std::string(200 + seq % 300, 'p') + "\"}"});
    }
    auto r = (*s)->Commit(batch);
    if (!r) {
      std::fprintf(stderr, "commit: %s\n", r.error().message.c_str());
      return 3;
    }
    std::printf("committed %lld %lld\n", static_cast<long long>(boot), static_cast<long long>(seq));
    std::fflush(stdout);
  }
}

static int Agent(int argc, char** argv) {
  if (argc < 9) return 2;
  Identity id{"f1", "l1", "press-1", argv[4]};
  TelemetryOptions o;
  o.spool_path = argv[2];
  o.broker_url = argv[3];
  o.reconnect_min_s = 0.2;
  o.reconnect_max_s = 1;
  o.health_interval_s = 1;
  if (argc >= 12) {
    o.ca_file = argv[9];
    o.cert_file = argv[10];
    o.key_file = argv[11];
  }
  int64_t start = std::atoll(argv[5]);
  int64_t count = std::atoll(argv[6]);
  double rate = std::atof(argv[7]);
  int64_t alert_every = std::atoll(argv[8]);
  auto t = Telemetry::Create(id, o);
  if (!t) {
    std::fprintf(stderr, "create: %s\n", t.error().message.c_str());
    return 2;
  }
  auto period = std::chrono::duration<double>(1.0 / rate);
  auto next = std::chrono::steady_clock::now();
  for (int64_t i = start; i < start + count; ++i) {
    tend::Decision d;
    d.window_index = i;
    d.timestamp = std::chrono::system_clock::now();
    d.anomaly_score = static_cast<float>(i % 100) / 100.0f;
    d.is_alert = alert_every > 0 && i % alert_every == 0;
    d.severity = d.is_alert ? tend::Severity::kHigh : tend::Severity::kLow;
    d.top_sensors = {"rms"};
    d.model_version = "1";
    (*t)->OnDecision(d);
    if (i % 10 == 9) {
      if ((*t)->Commit(std::chrono::seconds(5))) {
        std::printf("committed %lld\n", static_cast<long long>(i));
        std::fflush(stdout);
      }
    }
    next += std::chrono::duration_cast<std::chrono::steady_clock::duration>(period);
    std::this_thread::sleep_until(next);
  }
  auto st = (*t)->Flush(std::chrono::seconds(20));
  std::printf("%s\n", st ? "done" : ("flush: " + st.error().message).c_str());
  std::fflush(stdout);
  return st ? 0 : 1;
}

int main(int argc, char** argv) {
  if (argc >= 3 && std::string(argv[1]) == "spool-append") return SpoolAppend(argv[2]);
  if (argc >= 2 && std::string(argv[1]) == "agent") return Agent(argc, argv);
  std::fprintf(stderr, "usage: telemetry_helper spool-append SPOOL | agent ...\n");
  return 2;
}
