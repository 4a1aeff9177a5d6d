// End-to-end checks with the real Prometheus tools: promtool on the shipped rules/config and on a
// live scrape, and a real Prometheus server scraping a running exporter, queried over its HTTP API,
// with the shipped latency rule firing when windows turn slow.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <thread>

#include "agent/agent.h"
#include "agent/served_model.h"
#include "agent/stream_reader.h"
#include "metrics/exporter.h"
#include "test_util.h"

namespace tend::metrics {
namespace {

using testing::ChildProcess;
using testing::CommandResult;
using testing::RunCommand;
using testing::TempDir;
using testing::WriteFile;

std::string SourceDir() {
  const char* env = std::getenv("TEND_SOURCE_DIR");
  return env ? env : TEND_SOURCE_DIR;
}
std::string DeployDir() { return SourceDir() + "/deploy/prometheus"; }

bool HaveProgram(const std::string& name) {
  return RunCommand({"sh", "-c", "command -v " + name}).exit_code == 0;
}

#define REQUIRE_PROGRAM(name)                                                              \
  do {                                                                                     \
    if (!HaveProgram(name)) GTEST_SKIP() << name << " not installed (Debian: prometheus)"; \
  } while (0)

// A fake machine so that the system gauges have known values.
struct FakeSys {
  TempDir dir;
  FakeSys() {
    WriteFile(dir.path() + "/proc/stat", "cpu  100 0 50 800 50 0 0 0 0 0\n");
    WriteFile(dir.path() + "/proc/meminfo", "MemTotal: 1000 kB\nMemAvailable: 400 kB\n");
    WriteFile(dir.path() + "/proc/self/status", "VmRSS:\t2048 kB\n");
    WriteFile(dir.path() + "/sys/class/thermal/thermal_zone0/type", "CPU-therm\n");
    WriteFile(dir.path() + "/sys/class/thermal/thermal_zone0/temp", "57000\n");
    WriteFile(dir.path() + "/sys/devices/gpu.0/load", "250\n");
    WriteFile(dir.path() + "/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", "1500000\n");
    WriteFile(dir.path() + "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", "2000000\n");
    WriteFile(dir.path() + "/sys/devices/system/cpu/cpu0/thermal_throttle/core_throttle_count",
              "0\n");
  }
  SystemCollector::Options options() const {
    SystemCollector::Options o;
    o.proc_root = dir.path() + "/proc";
    o.sys_root = dir.path() + "/sys";
    o.nvml_library = "";
    return o;
  }
};

const Labels kLabels{"edge-press-01", "press-01", "plant-a"};

// An exporter showing every family: decisions, a model, telemetry figures.
std::unique_ptr<Exporter> FullExporter(const SystemCollector::Options& sys) {
  Exporter::Options o;
  o.bind = "127.0.0.1";
  o.port = Exporter::kAnyPortForTest;
  o.sys = sys;
  auto e = Exporter::Create(kLabels, o);
  if (!e) {
    ADD_FAILURE() << e.error().message;
    return nullptr;
  }
  ModelInfo m{"press-ae", "3.1", "CPUExecutionProvider", 1700000000, 1700000100};
  (*e)->OnModelInfo(m);
  (*e)->SetTelemetryStatsProvider([] {
    TelemetryFigures t;
    t.spool_depth = 1;
    t.spool_bytes = 100;
    t.spool_dropped_total = 0;
    t.mqtt_connected = true;
    t.mqtt_reconnects_total = 0;
    return t;
  });
  (*e)->SetOtaStatusProvider([] {
    OtaFigures f;
    f.installed_total = 1;
    f.last_check_unix = 1700000200;
    f.in_probation = true;
    f.model_installed_unix = 1700000100;
    f.max_model_age_s = 4838400;
    return f;
  });
  return std::move(*e);
}

// Windows flowing through the pipeline under test. Today the decisions go straight into the
// exporter with a chosen latency; the lead will swap this for the real agent with a slow model.
void FeedWindows(DecisionSink& sink, const std::atomic<double>& latency_ms,
                 const std::atomic<bool>& stop) {
  int64_t i = 0;
  while (!stop.load()) {
    Decision d;
    d.window_index = i++;
    d.latency_ms = latency_ms.load();
    d.inference_ms = d.latency_ms * 0.8;
    d.features_ms = d.latency_ms * 0.1;
    d.anomaly_score = 0.1f;
    d.severity = (i % 50 == 0) ? Severity::kHigh : Severity::kLow;
    d.is_alert = (i % 50 == 0);
    d.timestamp = std::chrono::system_clock::now();
    sink.OnDecision(d);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

TEST(PromtoolTest, ShippedRulesAreValid) {
  REQUIRE_PROGRAM("promtool");
  CommandResult r = RunCommand({"promtool", "check", "rules", DeployDir() + "/tend_rules.yml"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("SUCCESS: 12 rules found"), std::string::npos) << r.output;
}

TEST(PromtoolTest, ShippedRuleUnitTestsPass) {
  REQUIRE_PROGRAM("promtool");
  CommandResult r = RunCommand({"promtool", "test", "rules", DeployDir() + "/tend_rules_test.yml"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("SUCCESS"), std::string::npos) << r.output;
}

TEST(PromtoolTest, ShippedScrapeConfigIsValid) {
  REQUIRE_PROGRAM("promtool");
  CommandResult r = RunCommand({"promtool", "check", "config", DeployDir() + "/prometheus.yml"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// promtool's linter on a live scrape of the real machine's collectors (with every other family
// present too). The only finding allowed is the one SPEC forces on us: existing dashboards use
// edge_inference_latency_ms, whose "_ms" the linter flags as an abbreviated unit.
TEST(PromtoolTest, CheckMetricsOnLiveScrape) {
  REQUIRE_PROGRAM("promtool");
  SystemCollector::Options real;
  auto e = FullExporter(real);
  ASSERT_TRUE(e);
  for (int i = 0; i < 20; ++i) {
    Decision d;
    d.latency_ms = 0.05 * i;
    d.is_alert = i % 7 == 0;
    e->OnDecision(d);
  }
  httplib::Client cli("127.0.0.1", e->port());
  auto res = cli.Get("/metrics");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  TempDir tmp;
  const std::string scrape = tmp.path() + "/scrape.txt";
  WriteFile(scrape, res->body);
  CommandResult r = RunCommand({"promtool", "check", "metrics"}, scrape);
  std::istringstream lines(r.output);
  std::string line;
  int findings = 0;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    ++findings;
    EXPECT_EQ(line, "edge_inference_latency_ms metric names should not contain abbreviated units")
        << "unexpected promtool finding";
  }
  EXPECT_EQ(findings, 1) << r.output;
  EXPECT_EQ(r.exit_code, findings == 0 ? 0 : 3) << r.output;
}

// The shipped rules with short windows: [5m] -> [10s] and `for: 5m` -> `for: 0s`, so that a test
// can see them fire in seconds while evaluating exactly the shipped expressions otherwise.
std::string FastRules() {
  std::string rules = testing::ReadFileOrEmpty(DeployDir() + "/tend_rules.yml");
  rules = std::regex_replace(rules, std::regex(R"(\[[0-9]+[smhd]\])"), "[10s]");
  rules = std::regex_replace(rules, std::regex(R"(for: [0-9]+[smhd])"), "for: 0s");
  return rules;
}

class PrometheusServer {
 public:
  PrometheusServer(const std::string& dir, int target_port) : port_(testing::FreeLoopbackPort()) {
    WriteFile(dir + "/rules.yml", FastRules());
    WriteFile(dir + "/prometheus.yml",
              "global:\n"
              "  scrape_interval: 1s\n"
              "  scrape_timeout: 1s\n"
              "  evaluation_interval: 1s\n"
              "rule_files: ['" +
                  dir +
                  "/rules.yml']\n"
                  "scrape_configs:\n"
                  "  - job_name: tend\n"
                  "    honor_labels: true\n"
                  "    static_configs:\n"
                  "      - targets: ['127.0.0.1:" +
                  std::to_string(target_port) + "']\n");
    log_ = dir + "/prometheus.log";
    process_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{"prometheus", "--config.file=" + dir + "/prometheus.yml",
                                 "--storage.tsdb.path=" + dir + "/data",
                                 "--web.listen-address=127.0.0.1:" + std::to_string(port_),
                                 "--log.level=warn"},
        log_);
  }

  bool WaitReady() {
    httplib::Client cli("127.0.0.1", port_);
    for (int i = 0; i < 300; ++i) {
      if (!process_->Running()) return false;
      auto res = cli.Get("/-/ready");
      if (res && res->status == 200) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  // GET /api/v1/<path>; returns the parsed body (status "success" checked by callers).
  nlohmann::json Api(const std::string& path, const httplib::Params& params = {}) {
    httplib::Client cli("127.0.0.1", port_);
    auto res = cli.Get(("/api/v1/" + path).c_str(), params, httplib::Headers{});
    if (!res) return {{"status", "no-response"}};
    auto j = nlohmann::json::parse(res->body, nullptr, false);
    if (j.is_discarded()) return {{"status", "bad-json"}, {"body", res->body}};
    return j;
  }
  nlohmann::json Query(const std::string& promql) { return Api("query", {{"query", promql}}); }

  // Polls `promql` until `accept(result array)` or ~timeout.
  template <typename F>
  nlohmann::json PollQuery(const std::string& promql, F accept, int timeout_s = 30) {
    nlohmann::json last;
    for (int i = 0; i < timeout_s * 5; ++i) {
      last = Query(promql);
      if (last.value("status", "") == "success" && accept(last["data"]["result"])) return last;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return last;
  }

  std::string Log() const { return testing::ReadFileOrEmpty(log_); }

 private:
  int port_;
  std::string log_;
  std::unique_ptr<ChildProcess> process_;
};

double ValueOf(const nlohmann::json& sample) {
  return std::stod(sample["value"][1].get<std::string>());
}

// Every PromQL expression of the shipped Grafana dashboard, with its variables filled in.
std::vector<std::string> DashboardQueries(const std::string& device_id) {
  auto j = nlohmann::json::parse(
      testing::ReadFileOrEmpty(SourceDir() + "/deploy/grafana/tend-fleet.json"));
  std::vector<std::string> out;
  std::function<void(const nlohmann::json&)> walk = [&](const nlohmann::json& node) {
    if (node.is_object()) {
      if (node.contains("expr") && node["expr"].is_string()) {
        std::string q = node["expr"].get<std::string>();
        q = std::regex_replace(q, std::regex(R"(\$__rate_interval)"), "1m");
        q = std::regex_replace(q, std::regex(R"(\$__range)"), "1h");
        q = std::regex_replace(q, std::regex(R"(\$__interval)"), "15s");
        q = std::regex_replace(q, std::regex(R"(\$factory_id)"), ".*");
        q = std::regex_replace(q, std::regex(R"(\$device_id)"), device_id);
        out.push_back(q);
      }
      for (const auto& [k, v] : node.items()) walk(v);
    } else if (node.is_array()) {
      for (const auto& v : node) walk(v);
    }
  };
  walk(j);
  return out;
}

TEST(PrometheusIntegrationTest, ScrapesQueriesAndLatencyAlertFires) {
  REQUIRE_PROGRAM("prometheus");
  FakeSys sys;
  auto exporter = FullExporter(sys.options());
  ASSERT_TRUE(exporter);

  std::atomic<double> latency_ms{0.05};
  std::atomic<bool> stop{false};
  std::thread feeder([&] { FeedWindows(*exporter, latency_ms, stop); });
  struct Join {
    std::atomic<bool>& stop;
    std::thread& t;
    ~Join() {
      stop = true;
      t.join();
    }
  } join{stop, feeder};

  TempDir dir;
  PrometheusServer prom(dir.path(), exporter->port());
  ASSERT_TRUE(prom.WaitReady()) << prom.Log();

  // The series arrive with the agent's labels plus Prometheus' job/instance.
  auto r = prom.PollQuery("edge_inference_total", [](const nlohmann::json& res) {
    return res.size() == 1 && ValueOf(res[0]) > 0;
  });
  ASSERT_EQ(r.value("status", ""), "success") << r.dump() << prom.Log();
  ASSERT_EQ(r["data"]["result"].size(), 1u) << r.dump() << prom.Log();
  const auto& metric = r["data"]["result"][0]["metric"];
  EXPECT_EQ(metric["device_id"], "edge-press-01");
  EXPECT_EQ(metric["asset_id"], "press-01");
  EXPECT_EQ(metric["factory_id"], "plant-a");
  EXPECT_EQ(metric["job"], "tend");
  EXPECT_EQ(metric["instance"], "127.0.0.1:" + std::to_string(exporter->port()));

  auto one = [&](const std::string& q) {
    auto res = prom.Query(q);
    EXPECT_EQ(res.value("status", ""), "success") << q << ": " << res.dump();
    EXPECT_EQ(res["data"]["result"].size(), 1u) << q << ": " << res.dump();
    return res["data"]["result"].empty() ? nlohmann::json() : res["data"]["result"][0];
  };
  EXPECT_EQ(ValueOf(one("edge_device_temperature_c{device_id=\"edge-press-01\"}")), 57);
  EXPECT_EQ(ValueOf(one("edge_gpu_usage_percent")), 25);
  EXPECT_EQ(ValueOf(one("edge_memory_usage_percent")), 60);
  EXPECT_EQ(ValueOf(one("edge_cpu_frequency_hertz")), 1.5e9);
  auto model = one("edge_model_version");
  EXPECT_EQ(model["metric"]["version_string"], "3.1");
  EXPECT_EQ(ValueOf(model), 3);
  EXPECT_EQ(one("edge_anomaly_alerts_total{severity=\"HIGH\"}")["metric"]["severity"], "HIGH");
  EXPECT_EQ(prom.Query("edge_inference_latency_ms_bucket")["data"]["result"].size(),
            LatencyBucketsMs().size() + 1);

  // Fast windows: the p95 is far below 80 % of 3.3 s and the rule stays quiet.
  const std::string p95 =
      "histogram_quantile(0.95, sum by (le) (rate(edge_inference_latency_ms_bucket[10s])))";
  r = prom.PollQuery(p95, [](const nlohmann::json& res) {
    return res.size() == 1 && res[0]["value"][1] != "NaN";
  });
  ASSERT_EQ(r["data"]["result"].size(), 1u) << r.dump();
  EXPECT_LT(ValueOf(r["data"]["result"][0]), 1.0);
  auto alerts = prom.Api("alerts");
  ASSERT_EQ(alerts.value("status", ""), "success") << alerts.dump();
  for (const auto& a : alerts["data"]["alerts"]) {
    EXPECT_NE(a["labels"]["alertname"], "EdgeLatencyP95NearBudget") << a.dump();
  }

  // Slow windows (3 s of a 3.3 s budget): the shipped rule fires, naming the device.
  latency_ms = 3000;
  r = prom.PollQuery(
      "ALERTS{alertname=\"EdgeLatencyP95NearBudget\",alertstate=\"firing\"}",
      [](const nlohmann::json& res) { return res.size() == 1; }, 40);
  ASSERT_EQ(r["data"]["result"].size(), 1u) << r.dump() << prom.Log();
  const auto& alert = r["data"]["result"][0]["metric"];
  EXPECT_EQ(alert["device_id"], "edge-press-01");
  EXPECT_EQ(alert["asset_id"], "press-01");
  EXPECT_EQ(alert["factory_id"], "plant-a");
  EXPECT_EQ(alert["severity"], "warning");
  alerts = prom.Api("alerts");
  bool firing = false;
  for (const auto& a : alerts["data"]["alerts"]) {
    if (a["labels"]["alertname"] == "EdgeLatencyP95NearBudget" && a["state"] == "firing") {
      firing = true;
      EXPECT_NE(a["annotations"]["summary"].get<std::string>().find("edge-press-01"),
                std::string::npos);
    }
  }
  EXPECT_TRUE(firing) << alerts.dump();
  // 3 s windows are under budget: no deadline miss was counted.
  EXPECT_EQ(ValueOf(one("edge_deadline_misses_total")), 0);

  // Every dashboard query parses and runs against the live server.
  const auto queries = DashboardQueries("edge-press-01");
  EXPECT_GE(queries.size(), 20u);
  for (const auto& q : queries) {
    EXPECT_EQ(q.find('$'), std::string::npos) << "unsubstituted variable in " << q;
    auto res = prom.Query(q);
    EXPECT_EQ(res.value("status", ""), "success") << q << ": " << res.dump();
  }
}

// The same chain with the real agent in front: a model trained by `tend train`, the press
// simulator as the source, and inference forced slow (45 ms of a 50 ms budget): Prometheus
// scraping the agent's exporter must see its series and fire the p95 latency rule.
TEST(PrometheusIntegrationTest, RealAgentWithSlowInferenceFiresTheLatencyRule) {
  REQUIRE_PROGRAM("prometheus");
  TempDir dir;
  std::string bin = std::string(std::getenv("TEND_BINARY_DIR")) + "/tend";
  auto trained = RunCommand(
      {bin, "train", "--input", "sim:strokes=30,wear=0,seed=71", "--out", dir.path() + "/m.onnx"});
  ASSERT_EQ(trained.exit_code, 0) << trained.output;

  agent::ServeOptions so;
  so.warmup_runs = 1;
  auto m = agent::ServedModel::Load(dir.path() + "/m.onnx", so);
  ASSERT_TRUE(m) << m.error().message;
  sources::SourceOptions src_opts;
  src_opts.sample_rate = (*m)->windowing().sample_rate;
  auto src = sources::OpenSource("sim:strokes=0,seed=72", src_opts);  // endless
  ASSERT_TRUE(src) << src.error().message;
  agent::StreamReaderOptions ro;
  ro.speed = 20;  // a stroke every ~170 ms
  auto reader = agent::StreamEventReader::Create(std::move(*src), (*m)->windowing(), ro);
  ASSERT_TRUE(reader) << reader.error().message;
  agent::AgentOptions o;
  o.asset_id = "press-07";
  o.deadline_s = 0.05;  // 50 ms budget...
  auto a = agent::Agent::Create(o, std::move(*m), std::move(*reader));
  ASSERT_TRUE(a) << a.error().message;
  // ...and every window takes ~45 ms: above 80 %, below 100 %.
  (*a)->SetAfterScoreHookForTest(
      [] { std::this_thread::sleep_for(std::chrono::milliseconds(45)); });
  Exporter::Options eo;
  eo.bind = "127.0.0.1";
  eo.port = Exporter::kAnyPortForTest;
  eo.latency_budget_ms = o.deadline_s * 1000;
  eo.system_interval_s = 1;
  auto exporter = Exporter::Create({"edge-agent-07", "press-07", "plant-b"}, eo);
  ASSERT_TRUE(exporter) << exporter.error().message;
  (*a)->AddSink(exporter->get());
  std::atomic<bool> stop{false};
  std::thread runner([&] { EXPECT_TRUE((*a)->Run(&stop)); });
  struct Join {
    std::atomic<bool>& stop;
    std::thread& t;
    ~Join() {
      stop = true;
      t.join();
    }
  } join{stop, runner};

  PrometheusServer prom(dir.path(), (*exporter)->port());
  ASSERT_TRUE(prom.WaitReady()) << prom.Log();
  auto r = prom.PollQuery(
      "edge_inference_total{device_id=\"edge-agent-07\"}",
      [](const nlohmann::json& res) { return res.size() == 1 && ValueOf(res[0]) > 0; });
  ASSERT_EQ(r["data"]["result"].size(), 1u) << r.dump() << prom.Log();
  EXPECT_EQ(r["data"]["result"][0]["metric"]["asset_id"], "press-07");
  EXPECT_EQ(r["data"]["result"][0]["metric"]["factory_id"], "plant-b");
  auto model = prom.PollQuery("edge_model_version",
                              [](const nlohmann::json& res) { return res.size() == 1; });
  ASSERT_EQ(model["data"]["result"].size(), 1u) << model.dump();
  EXPECT_EQ(model["data"]["result"][0]["metric"]["version_string"], "1");
  r = prom.PollQuery(
      "ALERTS{alertname=\"EdgeLatencyP95NearBudget\",alertstate=\"firing\",device_id=\"edge-agent-"
      "07\"}",
      [](const nlohmann::json& res) { return res.size() == 1; }, 60);
  ASSERT_EQ(r["data"]["result"].size(), 1u) << r.dump() << prom.Log();
  auto s = (*a)->summary();
  EXPECT_GT(s.windows, 0);
}

}  // namespace
}  // namespace tend::metrics
