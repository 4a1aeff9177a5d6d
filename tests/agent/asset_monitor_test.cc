// The asset's monitors in the agent (agent/asset_monitor.h): every decision a sink sees carries
// the health the monitor computed from the model's commissioning baseline, and a model swap
// (SIGHUP, OTA) rebuilds the monitors from the new model's card instead of pausing them.
#include "agent/asset_monitor.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "agent/agent.h"
#include "agent/monitors.h"
#include "agent/served_model.h"
#include "agent/stream_reader.h"
#include "cli_util.h"

namespace tend::agent {
namespace {

using tend::testing::TempDir;
using tend::testing::Tend;

class Collect : public DecisionSink {
 public:
  void OnDecision(const Decision& d) override {
    std::lock_guard<std::mutex> lock(mu);
    decisions.push_back(d);
    decisions.back().features = {};
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu);
    return decisions.size();
  }
  std::mutex mu;
  std::vector<Decision> decisions;
};

Result<std::unique_ptr<ServedModel>> Load(const std::string& path) {
  ServeOptions so;
  so.warmup_runs = 1;
  return ServedModel::Load(path, so);
}

// The health a monitor built from `path`'s card gives these scores, in order.
std::vector<HealthStatus> Replay(const std::string& path, const std::vector<float>& scores) {
  auto m = Load(path);
  EXPECT_TRUE(m) << m.error().message;
  auto b = ScoreBaselineOf((*m)->card());
  auto o = HealthOptionsFor((*m)->card());
  EXPECT_TRUE(b && o);
  auto h = HealthMonitor::Create(*b, *o);
  EXPECT_TRUE(h);
  std::vector<HealthStatus> out;
  for (float s : scores) out.push_back(h->Update(s));
  return out;
}

TEST(AssetMonitorTest, ModelSwapRebuildsTheMonitorsFromTheNewCard) {
  const std::string dir = TempDir("asset_monitor");
  // Two models of the same press with different commissioning data: different score baselines.
  ASSERT_EQ(Tend("train --input 'sim:strokes=60,wear=0,seed=31' --out a.onnx", dir).rc, 0);
  ASSERT_EQ(Tend("train --input 'sim:strokes=60,wear=0,seed=32' --out b.onnx --version 2", dir).rc,
            0);
  auto a = Load(dir + "/a.onnx");
  ASSERT_TRUE(a) << a.error().message;
  auto monitor = AssetMonitor::Create("press-1", MonitorOptions{}, **a);
  ASSERT_TRUE(monitor) << monitor.error().message;
  sources::SourceOptions so;
  so.sample_rate = (*a)->windowing().sample_rate;
  so.channels = (*a)->windowing().channels;
  auto src = sources::OpenSource("sim:strokes=40,wear=0.5,wear_end=1,seed=4", so);
  ASSERT_TRUE(src);
  StreamReaderOptions ro;
  ro.speed = 40;  // ~80 ms a stroke: time to hand the new model over mid-run
  auto reader = StreamEventReader::Create(std::move(*src), (*a)->windowing(), ro);
  ASSERT_TRUE(reader);
  auto agent = Agent::Create(AgentOptions{}, std::move(*a), std::move(*reader));
  ASSERT_TRUE(agent) << agent.error().message;
  Collect c;
  (*agent)->AddSink(&c);
  (*agent)->SetMonitor(monitor->get());
  std::thread run([&] { EXPECT_TRUE((*agent)->Run()); });
  while (c.size() < 10 && !(*agent)->finished()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  auto b = Load(dir + "/b.onnx");
  ASSERT_TRUE(b);
  ASSERT_TRUE((*agent)->SubmitModel(std::move(*b)));
  run.join();

  ASSERT_EQ(c.decisions.size(), 40u);
  std::vector<float> before, after;
  for (const Decision& d : c.decisions) {
    ASSERT_TRUE(d.has_health) << "window " << d.window_index << " has no health (paused?)";
    (d.model_version == "2" ? after : before).push_back(d.anomaly_score);
  }
  ASSERT_GE(before.size(), 10u);
  ASSERT_GE(after.size(), 5u) << "the new model never took over";
  // Each part is exactly what a monitor commissioned from that model's card computes: the new
  // model's monitor starts from its own baseline with no evidence carried over.
  const auto ha = Replay(dir + "/a.onnx", before), hb = Replay(dir + "/b.onnx", after);
  for (size_t i = 0; i < c.decisions.size(); ++i) {
    const Decision& d = c.decisions[i];
    const HealthStatus& want = i < before.size() ? ha[i] : hb[i - before.size()];
    EXPECT_EQ(d.health, want.state) << "window " << i;
    EXPECT_FLOAT_EQ(d.health_cusum, static_cast<float>(want.cusum)) << "window " << i;
    EXPECT_FLOAT_EQ(d.health_alarm_cusum, static_cast<float>(want.alarm_cusum)) << "window " << i;
  }
  const auto summary = (*monitor)->Summary();
  EXPECT_EQ(summary["model"], "press-anomaly v2") << summary.dump();
  EXPECT_EQ(summary["monitor_rebuilds"], 1) << summary.dump();
  std::filesystem::remove_all(dir);
}

TEST(AssetMonitorTest, BadSettingsAreOneLineErrorsNamingTheAsset) {
  const std::string dir = TempDir("asset_monitor_bad");
  ASSERT_EQ(Tend("train --input 'sim:strokes=30,wear=0,seed=31' --out a.onnx", dir).rc, 0);
  auto a = Load(dir + "/a.onnx");
  ASSERT_TRUE(a);
  MonitorOptions o;
  o.adaptive_options.rate = 2;
  auto m = AssetMonitor::Create("press-1", o, **a);
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().message.find("press-1"), std::string::npos) << m.error().message;
  EXPECT_NE(m.error().message.find("rate 2 must be in (0, 0.5]"), std::string::npos)
      << m.error().message;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tend::agent
