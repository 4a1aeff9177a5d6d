#include "metrics/exporter.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "test_util.h"

namespace tend::metrics {
namespace {

using testing::Find;
using testing::Sample;
using testing::TempDir;
using testing::WriteFile;

// A fake Intel machine for the system gauges: 57 °C package, 25 % memory, 2.5 GHz.
struct FakeSys {
  TempDir dir;
  FakeSys() {
    WriteFile(dir.path() + "/proc/stat", "cpu  100 0 50 800 50 0 0 0 0 0\n");
    WriteFile(dir.path() + "/proc/meminfo",
              "MemTotal: 8000000 kB\nMemFree: 10 kB\nMemAvailable: 6000000 kB\n");
    WriteFile(dir.path() + "/proc/self/status", "VmRSS:\t2048 kB\n");
    WriteFile(dir.path() + "/sys/class/thermal/thermal_zone0/type", "x86_pkg_temp\n");
    WriteFile(dir.path() + "/sys/class/thermal/thermal_zone0/temp", "57000\n");
    WriteFile(dir.path() + "/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", "2500000\n");
    WriteFile(dir.path() + "/sys/devices/system/cpu/cpu0/thermal_throttle/core_throttle_count",
              "7\n");
  }
  SystemCollector::Options options() const {
    SystemCollector::Options o;
    o.proc_root = dir.path() + "/proc";
    o.sys_root = dir.path() + "/sys";
    o.nvml_library = "";
    return o;
  }
};

Labels TestLabels() { return {"edge-press-01", "press-01", "plant-a"}; }

Exporter::Options TestOptions(const FakeSys& sys) {
  Exporter::Options o;
  o.bind = "127.0.0.1";
  o.port = Exporter::kAnyPortForTest;
  o.sys = sys.options();
  o.latency_budget_ms = 3300;
  return o;
}

Decision MakeDecision(double latency_ms, Severity sev = Severity::kNone, bool alert = false) {
  Decision d;
  d.latency_ms = latency_ms;
  d.features_ms = latency_ms * 0.25;
  d.inference_ms = latency_ms * 0.5;
  d.severity = sev;
  d.is_alert = alert;
  d.anomaly_score = 0.5f;
  d.timestamp = std::chrono::system_clock::now();
  return d;
}

std::string Get(int port, const std::string& path, std::string* content_type = nullptr) {
  httplib::Client cli("127.0.0.1", port);
  auto res = cli.Get(path.c_str());
  if (!res) return "";
  if (content_type) *content_type = res->get_header_value("Content-Type");
  return res->status == 200 ? res->body : "";
}

double Value(const std::vector<Sample>& samples, const std::string& name,
             const std::map<std::string, std::string>& match = {}) {
  auto found = Find(samples, name, match);
  EXPECT_EQ(found.size(), 1u) << name;
  return found.empty() ? -1 : found[0].value;
}

TEST(ExporterTest, ScrapeOverHttpHasSpecMetricsLabelsAndBuckets) {
  FakeSys sys;
  auto e = Exporter::Create(TestLabels(), TestOptions(sys));
  ASSERT_TRUE(e) << e.error().message;
  Exporter& ex = **e;
  ASSERT_GT(ex.port(), 0);

  // Six windows with known latencies; two HIGH alerts, one MEDIUM, one fail-safe.
  const std::vector<double> latencies = {0.03, 0.04, 3, 7, 150, 4000};
  for (double l : latencies) ex.OnDecision(MakeDecision(l));
  ex.OnDecision(MakeDecision(1, Severity::kHigh, true));
  ex.OnDecision(MakeDecision(1, Severity::kHigh, true));
  Decision medium = MakeDecision(1, Severity::kMedium, true);
  medium.anomaly_score = 0.875f;
  medium.backlog_windows = 2;
  ex.OnDecision(medium);
  Decision fail_safe = MakeDecision(2);
  fail_safe.fail_safe = true;
  fail_safe.features_ms = fail_safe.inference_ms = 0;  // as the agent sends it: no stages ran
  fail_safe.anomaly_score = std::numeric_limits<float>::quiet_NaN();
  ex.OnDecision(fail_safe);

  ModelInfo info;
  info.name = "press-ae";
  info.version = "3.1";
  info.provider = "CPUExecutionProvider";
  const auto now_s = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  info.created_unix = now_s - 3 * 86400;
  info.loaded_unix = now_s - 60;
  ex.OnModelInfo(info);

  ex.SetTelemetryStatsProvider([] {
    TelemetryFigures t;
    t.spool_depth = 42;
    t.spool_bytes = 4096;
    t.spool_dropped_total = 3;
    t.mqtt_connected = false;
    t.mqtt_reconnects_total = 5;
    t.mqtt_refused_total = 2;
    t.spool_in_memory = true;
    t.spool_disk_full = false;
    t.spool_held_alerts = 4;
    return t;
  });

  std::string content_type;
  const std::string text = Get(ex.port(), "/metrics", &content_type);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(content_type, "text/plain; version=0.0.4; charset=utf-8");
  const auto samples = testing::ParseExposition(text);

  // SPEC: every series carries device_id, asset_id and factory_id.
  for (const auto& s : samples) {
    EXPECT_EQ(s.labels.count("device_id"), 1u) << s.name;
    EXPECT_EQ(s.labels.at("device_id"), "edge-press-01") << s.name;
    EXPECT_EQ(s.labels.at("asset_id"), "press-01") << s.name;
    EXPECT_EQ(s.labels.at("factory_id"), "plant-a") << s.name;
  }

  // Histogram: the latencies above plus 1, 1, 1, 2 ms.
  auto bucket = [&](const std::string& le) {
    return Value(samples, "edge_inference_latency_ms_bucket", {{"le", le}});
  };
  for (const char* le : {"5", "10", "25", "50", "100", "200", "500", "1000"}) {
    EXPECT_EQ(Find(samples, "edge_inference_latency_ms_bucket", {{"le", le}}).size(), 1u)
        << "SPEC bucket le=" << le;
  }
  EXPECT_EQ(bucket("0.01"), 0);
  EXPECT_EQ(bucket("0.05"), 2);
  EXPECT_EQ(bucket("1"), 5);  // 1 ms falls in le=1 (upper bounds are inclusive)
  EXPECT_EQ(bucket("2.5"), 6);
  EXPECT_EQ(bucket("5"), 7);
  EXPECT_EQ(bucket("10"), 8);
  EXPECT_EQ(bucket("200"), 9);
  EXPECT_EQ(bucket("3500"), 9);
  EXPECT_EQ(bucket("5000"), 10);
  EXPECT_EQ(bucket("+Inf"), 10);
  EXPECT_EQ(Value(samples, "edge_inference_latency_ms_count"), 10);
  EXPECT_NEAR(Value(samples, "edge_inference_latency_ms_sum"),
              0.03 + 0.04 + 3 + 7 + 150 + 4000 + 1 + 1 + 1 + 2, 1e-9);
  EXPECT_EQ(Find(samples, "edge_inference_latency_ms_bucket").size(),
            LatencyBucketsMs().size() + 1);

  // Per-stage histograms in seconds: features = latency / 4; the fail-safe window ran no stage.
  EXPECT_NEAR(Value(samples, "edge_stage_latency_seconds_sum", {{"stage", "features"}}),
              (0.03 + 0.04 + 3 + 7 + 150 + 4000 + 3) * 0.25e-3, 1e-12);
  EXPECT_EQ(Value(samples, "edge_stage_latency_seconds_count", {{"stage", "inference"}}), 9);
  EXPECT_EQ(Value(samples, "edge_stage_latency_seconds_count", {{"stage", "end_to_end"}}), 10);
  EXPECT_EQ(Value(samples, "edge_stage_latency_seconds_bucket",
                  {{"stage", "end_to_end"}, {"le", "+Inf"}}),
            10);

  EXPECT_EQ(Value(samples, "edge_inference_total"), 10);
  EXPECT_EQ(Value(samples, "edge_anomaly_alerts_total", {{"severity", "HIGH"}}), 2);
  EXPECT_EQ(Value(samples, "edge_anomaly_alerts_total", {{"severity", "MEDIUM"}}), 1);
  EXPECT_EQ(Value(samples, "edge_anomaly_alerts_total", {{"severity", "LOW"}}), 0);
  // Below every threshold is NONE, not the first alert tier; there is no NONE alert series.
  EXPECT_EQ(Value(samples, "edge_decisions_total", {{"severity", "NONE"}}), 7);
  EXPECT_EQ(Value(samples, "edge_decisions_total", {{"severity", "LOW"}}), 0);
  EXPECT_EQ(Find(samples, "edge_anomaly_alerts_total", {{"severity", "NONE"}}).size(), 0u);
  // The latest scored window (the fail-safe one after it has no score).
  EXPECT_EQ(Value(samples, "edge_anomaly_score"), 0.875);
  EXPECT_EQ(Value(samples, "edge_backlog_windows"), 0);
  // 4000 ms is over the 3300 ms budget; the fail-safe decision is a miss whatever its latency.
  EXPECT_EQ(Value(samples, "edge_deadline_misses_total"), 2);
  EXPECT_EQ(Value(samples, "edge_fail_safe_decisions_total"), 1);
  EXPECT_DOUBLE_EQ(Value(samples, "edge_latency_budget_seconds"), 3.3);
  EXPECT_NEAR(Value(samples, "edge_last_decision_timestamp_seconds"), double(now_s), 5);

  EXPECT_EQ(Value(samples, "edge_model_version", {{"version_string", "3.1"}}), 3);
  EXPECT_EQ(Value(samples, "edge_model_info",
                  {{"model_name", "press-ae"},
                   {"version_string", "3.1"},
                   {"provider", "CPUExecutionProvider"}}),
            1);
  EXPECT_NEAR(Value(samples, "edge_model_age_seconds"), 3 * 86400, 5);
  EXPECT_EQ(Value(samples, "edge_model_loaded_timestamp_seconds"), double(now_s - 60));

  EXPECT_EQ(Value(samples, "edge_device_temperature_c"), 57);
  EXPECT_EQ(
      Value(samples, "edge_sensor_temperature_celsius", {{"sensor", "thermal_zone0/x86_pkg_temp"}}),
      57);
  EXPECT_EQ(Value(samples, "edge_memory_usage_percent"), 25);
  EXPECT_EQ(Value(samples, "edge_cpu_frequency_hertz"), 2.5e9);
  EXPECT_EQ(Value(samples, "edge_thermal_throttle_events_total"), 7);
  EXPECT_EQ(Value(samples, "process_resident_memory_bytes"), 2048.0 * 1024);
  // Absent hardware and unknown values: no series at all.
  EXPECT_TRUE(Find(samples, "edge_gpu_usage_percent").empty());
  EXPECT_TRUE(Find(samples, "edge_cpu_usage_percent").empty());  // /proc/stat did not move
  EXPECT_TRUE(Find(samples, "edge_cpu_max_frequency_hertz").empty());

  EXPECT_EQ(Value(samples, "edge_spool_messages"), 42);
  EXPECT_EQ(Value(samples, "edge_spool_bytes"), 4096);
  EXPECT_EQ(Value(samples, "edge_spool_dropped_total"), 3);
  EXPECT_EQ(Value(samples, "edge_mqtt_connected"), 0);
  EXPECT_EQ(Value(samples, "edge_mqtt_reconnects_total"), 5);
  EXPECT_EQ(Value(samples, "edge_mqtt_refused_total"), 2);
  EXPECT_EQ(Value(samples, "edge_spool_in_memory"), 1);
  EXPECT_EQ(Value(samples, "edge_spool_disk_full"), 0);
  EXPECT_EQ(Value(samples, "edge_spool_held_alerts"), 4);
  EXPECT_EQ(Value(samples, "edge_build_info", {{"version", TEND_VERSION}}), 1);

  // Each family is announced with HELP and TYPE, with the right type.
  EXPECT_NE(text.find("# TYPE edge_inference_latency_ms histogram\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE edge_inference_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE edge_anomaly_alerts_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE edge_anomaly_score gauge\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE edge_model_version gauge\n"), std::string::npos);
  EXPECT_NE(text.find("# HELP edge_inference_total "), std::string::npos);

  // The HTTP body is ScrapeText(): same series (values such as the model age move).
  const auto direct = testing::ParseExposition(ex.ScrapeText());
  ASSERT_EQ(direct.size(), samples.size());
  for (size_t i = 0; i < direct.size(); ++i) EXPECT_EQ(direct[i].name, samples[i].name);
  EXPECT_TRUE(Get(ex.port(), "/nope").empty());
}

// OTA figures come from a provider (the updater in `tend run`); a scrape shows what it says now.
TEST(ExporterTest, OtaStatusOverHttp) {
  FakeSys sys;
  auto e = Exporter::Create(TestLabels(), TestOptions(sys));
  ASSERT_TRUE(e) << e.error().message;
  Exporter& ex = **e;
  // Without a provider (no OTA configured): no edge_ota_* series and no staleness verdict.
  auto before = testing::ParseExposition(Get(ex.port(), "/metrics"));
  ASSERT_FALSE(before.empty());
  for (const auto& s : before) {
    EXPECT_EQ(s.name.rfind("edge_ota_", 0), std::string::npos) << s.name;
    EXPECT_NE(s.name, "edge_model_stale");
  }

  std::mutex mu;
  OtaFigures figures;
  figures.failed_total = 2;
  figures.max_model_age_s = 4838400;
  ex.SetOtaStatusProvider([&] {
    std::lock_guard<std::mutex> lock(mu);
    return figures;
  });
  auto samples = testing::ParseExposition(Get(ex.port(), "/metrics"));
  EXPECT_EQ(Value(samples, "edge_ota_updates_total", {{"result", "installed"}}), 0);
  EXPECT_EQ(Value(samples, "edge_ota_updates_total", {{"result", "failed"}}), 2);
  EXPECT_EQ(Value(samples, "edge_ota_probation"), 0);
  EXPECT_EQ(Value(samples, "edge_model_stale"), 0);
  EXPECT_EQ(Value(samples, "edge_ota_max_model_age_seconds"), 4838400);
  // Never checked, nothing installed yet: those series are absent rather than 0 (1970).
  EXPECT_TRUE(Find(samples, "edge_ota_last_check_timestamp_seconds").empty());
  EXPECT_TRUE(Find(samples, "edge_ota_model_installed_timestamp_seconds").empty());

  {
    std::lock_guard<std::mutex> lock(mu);
    figures.installed_total = 3;
    figures.refused_total = 1;
    figures.rolled_back_total = 1;
    figures.last_check_unix = 1800000000;
    figures.in_probation = true;
    figures.model_installed_unix = 1799990000;
    figures.stale = true;
  }
  const std::string text = Get(ex.port(), "/metrics");
  samples = testing::ParseExposition(text);
  EXPECT_EQ(Value(samples, "edge_ota_updates_total", {{"result", "installed"}}), 3);
  EXPECT_EQ(Value(samples, "edge_ota_updates_total", {{"result", "refused"}}), 1);
  EXPECT_EQ(Value(samples, "edge_ota_updates_total", {{"result", "rolled_back"}}), 1);
  EXPECT_EQ(Find(samples, "edge_ota_updates_total").size(), 4u);
  EXPECT_EQ(Value(samples, "edge_ota_last_check_timestamp_seconds"), 1800000000);
  EXPECT_EQ(Value(samples, "edge_ota_model_installed_timestamp_seconds"), 1799990000);
  EXPECT_EQ(Value(samples, "edge_ota_probation"), 1);
  EXPECT_EQ(Value(samples, "edge_model_stale"), 1);
  for (const auto& s : samples) {
    EXPECT_EQ(s.labels.at("device_id"), "edge-press-01") << s.name;
    EXPECT_EQ(s.labels.at("factory_id"), "plant-a") << s.name;
  }
  EXPECT_NE(text.find("# TYPE edge_ota_updates_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE edge_model_stale gauge\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE edge_ota_probation gauge\n"), std::string::npos);
}

// Health, drift and input monitors: real monitors fed here, snapshot through the provider.
TEST(ExporterTest, MonitorFiguresOverHttpAndInTheHealthMessage) {
  FakeSys sys;
  auto e = Exporter::Create(TestLabels(), TestOptions(sys));
  ASSERT_TRUE(e) << e.error().message;
  Exporter& ex = **e;
  for (const auto& s : testing::ParseExposition(Get(ex.port(), "/metrics"))) {
    EXPECT_EQ(s.name.rfind("edge_health_", 0), std::string::npos) << s.name;
    EXPECT_NE(s.name, "edge_feature_drift");
  }
  auto health = HealthMonitor::Create(ScoreBaseline{0, 0, 1}, HealthOptions{});
  ASSERT_TRUE(health);
  for (int i = 0; i < 12; ++i) health->Update(std::exp(2.0f));  // 2 sd: a warning
  std::vector<float> rows;
  for (int i = 0; i < 100; ++i) {
    rows.push_back(static_cast<float>(i % 10));
    rows.push_back(static_cast<float>(i % 7));
  }
  auto ref = DriftReference::FromRows(rows, 2);
  ASSERT_TRUE(ref);
  DriftOptions dopt;
  dopt.window = 20;
  dopt.min_events = 20;
  dopt.top_k = 2;
  auto drift = DriftMonitor::Create(*ref, dopt);
  ASSERT_TRUE(drift);
  for (int i = 0; i < 20; ++i) drift->Observe(std::vector<float>{100.0f, float(i % 7)});
  auto input = InputHealth::Create(1, 100, {}, InputHealthOptions{});
  ASSERT_TRUE(input);
  input->Observe(std::vector<float>(50, 0.5f));
  const std::vector<std::string> names = {"ch0.rms", "ch0.kurtosis"};
  ex.SetMonitorProvider(
      "press-01", [&] { return MonitorFiguresOf(&*health, &*drift, names, &*input, nullptr); });

  const std::string text = Get(ex.port(), "/metrics");
  auto samples = testing::ParseExposition(text);
  EXPECT_EQ(Value(samples, "edge_health_state"), 1);
  EXPECT_GT(Value(samples, "edge_health_cusum", {{"cusum", "warning"}}), 8);
  EXPECT_EQ(Value(samples, "edge_drift_level"), 2);
  EXPECT_GT(Value(samples, "edge_feature_drift", {{"feature", "ch0.rms"}}), 0.25);
  EXPECT_EQ(Find(samples, "edge_feature_drift").size(), 2u);  // top k
  EXPECT_EQ(Value(samples, "edge_input_problem_windows_total", {{"problem", "flat_line"}}), 0);
  EXPECT_TRUE(Find(samples, "edge_baseline_shift_sd").empty());  // no adaptive baseline
  for (const auto& s : samples) EXPECT_EQ(s.labels.at("asset_id"), "press-01") << s.name;
  EXPECT_NE(text.find("# TYPE edge_feature_drift gauge\n"), std::string::npos);

  const nlohmann::json h = ex.HealthFigures();
  EXPECT_EQ(h["health"], "warning");
  EXPECT_EQ(h["drift_level"], "alert");
  EXPECT_GT(h["feature_drift"]["ch0.rms"].get<double>(), 0.25);
  EXPECT_EQ(h["input_problems"], "ok");
  EXPECT_FALSE(h.contains("monitors"));  // one monitored asset: its fields at the top level

  // A second asset: one family per name, a series per asset; its fields under "monitors".
  auto quiet = HealthMonitor::Create(ScoreBaseline{0, 0, 1}, HealthOptions{});
  ASSERT_TRUE(quiet);
  ex.SetMonitorProvider("press-02",
                        [&] { return MonitorFiguresOf(&*quiet, nullptr, {}, nullptr, nullptr); });
  const std::string two = Get(ex.port(), "/metrics");
  size_t families = 0;
  for (size_t at = 0; (at = two.find("# TYPE edge_health_state ", at)) != std::string::npos; ++at) {
    ++families;
  }
  EXPECT_EQ(families, 1u);
  samples = testing::ParseExposition(two);
  EXPECT_EQ(Value(samples, "edge_health_state", {{"asset_id", "press-01"}}), 1);
  EXPECT_EQ(Value(samples, "edge_health_state", {{"asset_id", "press-02"}}), 0);
  EXPECT_EQ(Find(samples, "edge_drift_level").size(), 1u);  // press-02 has no drift monitor
  const nlohmann::json h2 = ex.HealthFigures();
  EXPECT_EQ(h2["health"], "warning");  // the identity's asset (press-01)
  EXPECT_EQ(h2["monitors"]["press-02"]["health"], "ok");
  EXPECT_EQ(h2["monitors"]["press-01"]["drift_level"], "alert");
  ex.SetMonitorProvider("press-02", nullptr);
  EXPECT_FALSE(ex.HealthFigures().contains("monitors"));
}

// A part whose image could not be decoded gets the fail-safe decision: counted as an invalid
// event and a fail-safe decision, not as a deadline miss (it was not late).
TEST(ExporterTest, InvalidEventsAreCountedApartFromDeadlineMisses) {
  FakeSys sys;
  auto e = Exporter::Create(TestLabels(), TestOptions(sys));
  ASSERT_TRUE(e) << e.error().message;
  auto& ex = **e;
  ex.OnDecision(MakeDecision(2));
  Decision invalid = MakeDecision(1, Severity::kHigh, true);
  invalid.fail_safe = true;
  invalid.fail_safe_reason = kFailSafeInvalidEvent;
  invalid.anomaly_score = std::numeric_limits<float>::quiet_NaN();
  ex.OnDecision(invalid);
  Decision late = MakeDecision(5000, Severity::kHigh, true);
  late.fail_safe = true;
  late.fail_safe_reason = kFailSafeDeadline;
  ex.OnDecision(late);
  const auto samples = testing::ParseExposition(ex.ScrapeText());
  EXPECT_EQ(Value(samples, "edge_invalid_events_total"), 1);
  EXPECT_EQ(Value(samples, "edge_fail_safe_decisions_total"), 2);
  EXPECT_EQ(Value(samples, "edge_deadline_misses_total"), 1);
  EXPECT_EQ(Value(samples, "edge_inference_total"), 3);
}

TEST(ExporterTest, NoDecisionYetMeansNoScoreGauge) {
  FakeSys sys;
  auto e = Exporter::Create(TestLabels(), TestOptions(sys));
  ASSERT_TRUE(e) << e.error().message;
  const auto samples = testing::ParseExposition((*e)->ScrapeText());
  EXPECT_TRUE(Find(samples, "edge_anomaly_score").empty());
  EXPECT_TRUE(Find(samples, "edge_model_version").empty());  // no model reported yet
  EXPECT_EQ(Value(samples, "edge_inference_total"), 0);
  EXPECT_EQ(Value(samples, "edge_inference_latency_ms_count"), 0);
  EXPECT_TRUE(Find(samples, "edge_spool_messages").empty());  // no telemetry provider
}

// A component's figures (the PLC link's, the Sparkplug node's): on every scrape with the device
// labels and the series' own asset, in the health figures under the component's key, and gone
// once the component removed its provider.
TEST(ExporterTest, ComponentFiguresUntilTheComponentGoes) {
  FakeSys sys;
  auto e = Exporter::Create(TestLabels(), TestOptions(sys));
  ASSERT_TRUE(e) << e.error().message;
  int64_t missed = 3;
  const int id = (*e)->AddComponentProvider("plc", [&] {
    ComponentFigures f;
    f.families.push_back(
        {"edge_plc_rejects_missed_total", "Missed.", true, {{"cam-2", 1.0 * missed}}});
    f.families.push_back({"edge_plc_link_up", "Up.", false, {{"", 1}}});
    f.health = {{"cam-2", {{"rejects_missed", missed}}}};
    return f;
  });
  auto samples = testing::ParseExposition((*e)->ScrapeText());
  auto m = Find(samples, "edge_plc_rejects_missed_total");
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].value, 3);
  EXPECT_EQ(m[0].labels.at("asset_id"), "cam-2");
  EXPECT_EQ(m[0].labels.at("device_id"), "edge-press-01");
  auto up = Find(samples, "edge_plc_link_up");
  ASSERT_EQ(up.size(), 1u);
  EXPECT_EQ(up[0].labels.at("asset_id"), "press-01");  // "": the device's asset
  EXPECT_NE((*e)->ScrapeText().find("# TYPE edge_plc_rejects_missed_total counter"),
            std::string::npos);
  missed = 4;
  EXPECT_EQ((*e)->HealthFigures()["plc"]["cam-2"]["rejects_missed"], 4);
  (*e)->RemoveComponentProvider(id);
  EXPECT_TRUE(Find(testing::ParseExposition((*e)->ScrapeText()), "edge_plc_link_up").empty());
  EXPECT_FALSE((*e)->HealthFigures().contains("plc"));
}

TEST(ExporterTest, LabelValuesAreEscaped) {
  FakeSys sys;
  auto e = Exporter::Create({"dev \"1\"", "line\\2", "plant\na"}, TestOptions(sys));
  ASSERT_TRUE(e) << e.error().message;
  const std::string text = (*e)->ScrapeText();
  EXPECT_NE(text.find(R"(device_id="dev \"1\"",asset_id="line\\2",factory_id="plant\na")"),
            std::string::npos)
      << text.substr(0, 400);
  const auto samples = testing::ParseExposition(text);
  EXPECT_EQ(Find(samples, "edge_inference_total", {{"device_id", "dev \"1\""}}).size(), 1u);
}

TEST(ExporterTest, PortTakenIsAClearError) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const int port = ntohs(a.sin_port);

  FakeSys sys;
  auto o = TestOptions(sys);
  o.port = port;
  auto e = Exporter::Create(TestLabels(), o);
  ::close(fd);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, ErrorCode::kIoError);
  EXPECT_EQ(e.error().message, "metrics: cannot listen on 127.0.0.1:" + std::to_string(port) +
                                   ": Address already in use");
}

// Two agents on one box with the same --metrics-port: the second must fail, not share the port
// with the first (cpp-httplib's default SO_REUSEPORT let it bind, and scrapes alternated).
TEST(ExporterTest, SecondExporterOnTheSamePortFails) {
  FakeSys sys;
  auto o = TestOptions(sys);
  o.port = Exporter::kAnyPortForTest;
  auto first = Exporter::Create(TestLabels(), o);
  ASSERT_TRUE(first) << first.error().message;
  o.port = (*first)->port();
  auto second = Exporter::Create(TestLabels(), o);
  ASSERT_FALSE(second) << "a second exporter bound port " << o.port;
  EXPECT_EQ(second.error().message, "metrics: cannot listen on 127.0.0.1:" +
                                        std::to_string(o.port) + ": Address already in use");
}

TEST(ExporterTest, BadOptions) {
  FakeSys sys;
  auto check = [&](Labels l, Exporter::Options o, const std::string& expected) {
    auto e = Exporter::Create(l, o);
    ASSERT_FALSE(e) << expected;
    EXPECT_EQ(e.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(e.error().message.find(expected), std::string::npos) << e.error().message;
  };
  auto o = TestOptions(sys);
  check({"", "a", "f"}, o, "device_id must not be empty");
  o.port = 70000;
  check(TestLabels(), o, "port must be 0..65535 (got 70000)");
  o = TestOptions(sys);
  o.latency_budget_ms = 0;
  check(TestLabels(), o, "latency_budget_ms must be > 0");
  o = TestOptions(sys);
  o.system_interval_s = -1;
  check(TestLabels(), o, "system_interval_s must be > 0");

  o = TestOptions(sys);
  o.bind = "not-an-address";
  auto e = Exporter::Create(TestLabels(), o);
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("metrics: cannot listen on not-an-address"), std::string::npos)
      << e.error().message;

  o = TestOptions(sys);
  o.sys.proc_root = sys.dir.path() + "/missing";
  e = Exporter::Create(TestLabels(), o);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, ErrorCode::kNotFound);
}

TEST(ExporterTest, PortZeroServesNothingButStillCounts) {
  FakeSys sys;
  auto o = TestOptions(sys);
  o.port = 0;
  auto e = Exporter::Create(TestLabels(), o);
  ASSERT_TRUE(e) << e.error().message;
  EXPECT_EQ((*e)->port(), 0);
  (*e)->OnDecision(MakeDecision(10));
  auto h = (*e)->HealthFigures();
  EXPECT_EQ(h.at("inferences_total").get<int64_t>(), 1);
  EXPECT_DOUBLE_EQ(h.at("temp_c").get<double>(), 57.0);
}

TEST(ExporterTest, HealthFiguresIntervalQuantiles) {
  FakeSys sys;
  auto e = Exporter::Create(TestLabels(), TestOptions(sys));
  ASSERT_TRUE(e) << e.error().message;
  Exporter& ex = **e;
  // 100 windows of 30 ms: all in the (25, 50] bucket, so histogram_quantile-style interpolation
  // gives 25 + 25 * q.
  for (int i = 0; i < 100; ++i) ex.OnDecision(MakeDecision(30));
  ex.OnDecision(MakeDecision(30, Severity::kHigh, true));
  auto h = ex.HealthFigures();
  EXPECT_NEAR(h.at("latency_p95_ms").get<double>(), 25 + 25 * 0.95, 1e-3);
  EXPECT_NEAR(h.at("latency_p99_ms").get<double>(), 25 + 25 * 0.99, 1e-3);
  EXPECT_EQ(h.at("inferences_total").get<int64_t>(), 101);
  EXPECT_EQ(h.at("alerts_total").get<int64_t>(), 1);
  EXPECT_EQ(h.at("deadline_misses_total").get<int64_t>(), 0);
  EXPECT_DOUBLE_EQ(h.at("latency_budget_ms").get<double>(), 3300);
  EXPECT_DOUBLE_EQ(h.at("mem_pct").get<double>(), 25.0);
  EXPECT_TRUE(h.at("gpu_pct").is_null());
  EXPECT_FALSE(h.contains("model_version"));
  EXPECT_FALSE(h.contains("spool_depth"));

  // Only the windows since the previous call count: none yet, then ten slow ones.
  h = ex.HealthFigures();
  EXPECT_TRUE(h.at("latency_p95_ms").is_null());
  for (int i = 0; i < 10; ++i) ex.OnDecision(MakeDecision(4000));
  ex.OnModelInfo({"m", "v7", "CUDAExecutionProvider", 0, 1000});
  ex.SetTelemetryStatsProvider([] {
    TelemetryFigures t;
    t.spool_depth = 9;
    t.mqtt_connected = true;
    return t;
  });
  h = ex.HealthFigures();
  EXPECT_NEAR(h.at("latency_p95_ms").get<double>(), 3500 + 1500 * 0.95, 1e-3);
  EXPECT_EQ(h.at("deadline_misses_total").get<int64_t>(), 10);
  EXPECT_EQ(h.at("model_version").get<std::string>(), "v7");
  EXPECT_EQ(h.at("model_provider").get<std::string>(), "CUDAExecutionProvider");
  EXPECT_GT(h.at("model_age_s").get<int64_t>(), 1000);  // since loaded_unix = 1000
  EXPECT_EQ(h.at("spool_depth").get<int64_t>(), 9);
  EXPECT_EQ(h.at("mqtt_connected").get<bool>(), true);
  EXPECT_FALSE(h.contains("spool_bytes"));
}

TEST(ExporterTest, SystemFiguresRefreshInTheBackground) {
  FakeSys sys;
  auto o = TestOptions(sys);
  o.system_interval_s = 0.3;
  auto e = Exporter::Create(TestLabels(), o);
  ASSERT_TRUE(e) << e.error().message;
  // One figure at a time: the CPU share exists only in the first snapshot after the counters
  // moved (the next refresh has no delta), so the two changes are not raced against each other.
  WriteFile(sys.dir.path() + "/sys/class/thermal/thermal_zone0/temp", "91500\n");
  std::optional<double> temp;
  for (int i = 0; i < 2000; ++i) {  // a condition, not a timing threshold: up to 20 s
    temp = (*e)->LatestSystem().temp_c;
    if (temp && *temp > 90) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(temp);
  EXPECT_DOUBLE_EQ(*temp, 91.5);
  WriteFile(sys.dir.path() + "/proc/stat", "cpu  200 0 50 900 50 0 0 0 0 0\n");
  std::optional<double> cpu;
  for (int i = 0; i < 2000 && !cpu; ++i) {
    cpu = (*e)->LatestSystem().cpu_pct;
    if (!cpu) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(cpu);
  EXPECT_DOUBLE_EQ(*cpu, 50.0);  // +100 busy of +200 jiffies
}

// Scrapes racing the pipeline must always see a self-consistent histogram.
TEST(ExporterTest, ConcurrentScrapesAreConsistent) {
  FakeSys sys;
  auto e = Exporter::Create(TestLabels(), TestOptions(sys));
  ASSERT_TRUE(e) << e.error().message;
  Exporter& ex = **e;
  std::atomic<bool> stop{false};
  std::thread feeder([&] {
    int i = 0;
    while (!stop.load()) ex.OnDecision(MakeDecision(0.01 * (i++ % 1000)));
  });
  httplib::Client cli("127.0.0.1", ex.port());
  double last_count = 0;
  for (int i = 0; i < 50; ++i) {
    auto res = cli.Get("/metrics");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200);
    const auto samples = testing::ParseExposition(res->body);
    const auto buckets = Find(samples, "edge_inference_latency_ms_bucket");
    ASSERT_EQ(buckets.size(), LatencyBucketsMs().size() + 1);
    for (size_t b = 1; b < buckets.size(); ++b) {
      ASSERT_LE(buckets[b - 1].value, buckets[b].value);
    }
    const double count = Value(samples, "edge_inference_latency_ms_count");
    EXPECT_EQ(buckets.back().value, count);
    EXPECT_GE(count, last_count);
    last_count = count;
  }
  stop = true;
  feeder.join();
}

TEST(ExporterTest, ModelMajorVersion) {
  EXPECT_EQ(ModelMajorVersion("3"), 3);
  EXPECT_EQ(ModelMajorVersion("3.1"), 3);
  EXPECT_EQ(ModelMajorVersion("v12.0.4"), 12);
  EXPECT_EQ(ModelMajorVersion("V2"), 2);
  EXPECT_EQ(ModelMajorVersion("2024.05.01"), 2024);
  EXPECT_EQ(ModelMajorVersion("beta"), 0);
  EXPECT_EQ(ModelMajorVersion(""), 0);
}

}  // namespace
}  // namespace tend::metrics
