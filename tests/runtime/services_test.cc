// The pieces the runtime took over from the CLI, tested on their own: OTA state events and
// figures, the systemd watchdog's judgement, the decision queue of the stdout and log sinks, the
// telemetry figures the exporter shows.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "ota/registry.h"
#include "runtime/decision_queue.h"
#include "runtime/registry.h"
#include "runtime/ota_service.h"
#include "runtime/systemd_watchdog.h"
#include "runtime/telemetry_metrics.h"

namespace tend::runtime {
namespace {

nlohmann::json Status(int installed, int rolled_back, int refused, int version, bool probation,
                      bool stale) {
  return {{"updates",
           {{"installed", installed},
            {"rolled_back", rolled_back},
            {"refused", refused},
            {"failed", 0}}},
          {"current_version", version},
          {"in_probation", probation},
          {"stale", stale},
          {"last_check_unix", 0},
          {"model_installed_unix", 1700000000},
          {"max_model_age_s", 100}};
}

TEST(OtaServiceTest, EventsNameTheMostImportantChange) {
  const auto base = Status(0, 0, 0, 1, false, false);
  EXPECT_EQ(OtaEvent(nullptr, base), "startup");
  EXPECT_EQ(OtaEvent(base, base), "");
  EXPECT_EQ(OtaEvent(base, Status(1, 0, 0, 2, true, false)), "installed");
  EXPECT_EQ(OtaEvent(base, Status(1, 1, 1, 1, false, false)), "rolled_back");
  EXPECT_EQ(OtaEvent(base, Status(0, 0, 1, 1, false, false)), "refused");
  EXPECT_EQ(OtaEvent(base, Status(0, 0, 0, 3, false, false)), "changed");
  EXPECT_EQ(OtaEvent(Status(1, 0, 0, 2, true, false), Status(1, 0, 0, 2, false, false)),
            "probation_ended");
  EXPECT_EQ(OtaEvent(base, Status(0, 0, 0, 1, false, true)), "stale");
  auto f = OtaFiguresOf(Status(2, 1, 3, 4, true, true));
  EXPECT_EQ(f.installed_total, 2);
  EXPECT_EQ(f.rolled_back_total, 1);
  EXPECT_EQ(f.refused_total, 3);
  EXPECT_FALSE(f.last_check_unix.has_value());
  ASSERT_TRUE(f.model_installed_unix.has_value());
  EXPECT_EQ(*f.model_installed_unix, 1700000000);
  EXPECT_TRUE(f.in_probation);
  EXPECT_TRUE(f.stale);
}

// Staged rollouts, pins and console rollbacks address a device by the id it publishes under: the
// OTA service hands identity.device_id (--device-id) to the updater, not the host name.
TEST(OtaServiceTest, UpdaterUsesTheAgentsDeviceId) {
  char tmpl[] = "/tmp/tend-ota-service-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  auto key = ota::GenerateKeyPair();
  ASSERT_TRUE(key);
  ASSERT_TRUE(ota::WriteRoot(dir + "/reg", ota::MakeRoot({*key}, 1, 1, 4000000000), {*key}));
  const std::vector<SettingDef> defs = CoreRunSettings();
  Settings s(&defs);
  s.Set("ota.registry", std::string(dir + "/reg"), "test");
  s.Set("ota.model_dir", std::string(dir + "/models"), "test");
  s.Set("ota.root", std::string(dir + "/reg/root.json"), "test");
  s.Set("identity.device_id", std::string("press-7-edge"), "test");
  ReferenceSet ref;
  ref.normal = {"sim:strokes=2"};
  ref.anomalous = {"sim:strokes=2,wear=1"};
  auto svc = OtaService::Create(
      s,
      [](const std::string&, int) -> Result<std::unique_ptr<agent::Model>> {
        return Fail(Error::Invalid("not loaded in this test"));
      },
      ref);
  ASSERT_TRUE(svc) << svc.error().message;
  EXPECT_EQ((*svc)->StatusJson()["device_id"], "press-7-edge");
  std::filesystem::remove_all(dir);
}

// Pings only while every pipeline moves (or has finished); says once when one is stuck.
TEST(SystemdWatchdogTest, PingsOnlyWhileEveryPipelineMoves) {
  std::atomic<int64_t> a{0}, b{0};
  std::atomic<bool> b_done{false};
  int pings = 0;
  SystemdWatchdog w({{[&] { return a.load(); }, [] { return false; }},
                     {[&] { return b.load(); }, [&] { return b_done.load(); }}},
                    std::chrono::seconds(1), [&] { ++pings; });
  EXPECT_TRUE(w.Check());  // first look: both are new
  a++;
  b++;
  EXPECT_TRUE(w.Check());
  a++;  // b stuck
  EXPECT_FALSE(w.Check());
  EXPECT_EQ(pings, 2);
  b_done = true;  // b's source ended: finished pipelines do not hold the watchdog back
  a++;
  EXPECT_TRUE(w.Check());
  EXPECT_FALSE(w.Check());  // a stopped moving
  EXPECT_EQ(pings, 3);
}

Decision Numbered(int64_t i) {
  Decision d;
  d.asset_id = "press-1";
  d.window_index = i;
  d.top_sensors = {"rms", "kurtosis"};
  return d;
}

// A lossless producer (a replay) waits for the writer: every decision arrives, in order.
TEST(DecisionQueueTest, LosslessProducerWaitsAndKeepsOrder) {
  std::vector<int64_t> seen;
  std::atomic<bool> slow{true};
  DecisionQueue q("test", 4, [&](const Decision& d, int tag) {
    EXPECT_EQ(tag, 7);
    EXPECT_EQ(d.top_sensors.size(), 2u);
    if (slow) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    seen.push_back(d.window_index);
  });
  q.Start();
  for (int64_t i = 0; i < 200; ++i) q.Push(Numbered(i), 7, true);
  q.Stop();
  ASSERT_EQ(seen.size(), 200u);
  for (int64_t i = 0; i < 200; ++i) EXPECT_EQ(seen[static_cast<size_t>(i)], i);
  EXPECT_EQ(q.dropped(), 0);
}

// A live producer never waits: a writer that is stuck costs counted drops, not a blocked pipeline.
TEST(DecisionQueueTest, LiveProducerDropsAndCountsWhenTheWriterIsStuck) {
  std::atomic<bool> release{false};
  std::atomic<int> written{0};
  DecisionQueue q("test", 4, [&](const Decision&, int) {
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ++written;
  });
  q.Start();
  for (int64_t i = 0; i < 50; ++i) q.Push(Numbered(i), 0, false);
  release = true;
  q.Stop();
  // The writer held one slot's decision while 4 waited: at most 5 written, the rest counted.
  EXPECT_LE(written.load(), 5);
  EXPECT_EQ(written.load() + q.dropped(), 50);
}

TEST(TelemetryMetricsTest, TelemetryFiguresForTheExporter) {
  telemetry::Telemetry::Stats st;
  st.spool_depth = 5;
  st.dropped_scores = 2;
  st.dropped_alerts = 1;
  st.dropped_health = 4;
  st.connected = true;
  st.refused = 3;
  auto f = TelemetryFiguresOf(st);
  EXPECT_EQ(*f.spool_depth, 5);
  EXPECT_EQ(*f.spool_dropped_total, 7);
  EXPECT_TRUE(*f.mqtt_connected);
  EXPECT_EQ(*f.mqtt_refused_total, 3);
}

}  // namespace
}  // namespace tend::runtime
