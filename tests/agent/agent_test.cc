// The agent loop itself: one decision per window whatever happens, the fail-safe when the
// deadline passes, model swaps between windows, and what it refuses.
#include "agent/agent.h"

#include <atomic>
#include <thread>

#include <gtest/gtest.h>

#include "agent/latency_histogram.h"
#include "cli_util.h"

namespace tend::agent {
namespace {

using tend::testing::TempDir;
using tend::testing::Tend;

class Collect : public DecisionSink {
 public:
  void OnDecision(const Decision& d) override { decisions.push_back(d); }
  void OnModelInfo(const ModelInfo& i) override { models.push_back(i); }
  std::vector<Decision> decisions;
  std::vector<ModelInfo> models;
};

class AgentTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(TempDir("agent"));
    ASSERT_EQ(Tend("train --input 'sim:strokes=40,wear=0,seed=21' --out a.onnx", *dir_).rc, 0);
    ASSERT_EQ(Tend("train --input 'sim:strokes=40,wear=0,seed=22' --out b.onnx --version 2", *dir_).rc, 0);
    ASSERT_EQ(Tend("train --input 'sim:strokes=40,wear=0,seed=23' --hop 1000 --out fixed.onnx", *dir_).rc, 0);
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }
  AgentOptions Opts(const std::string& model, const std::string& source) {
    AgentOptions o;
    o.model_path = *dir_ + "/" + model;
    o.source = source;
    o.speed = 0;
    o.print = false;
    o.serve.warmup_runs = 1;
    return o;
  }
  static std::string* dir_;
};
std::string* AgentTest::dir_ = nullptr;

TEST_F(AgentTest, EveryWindowGetsExactlyOneDecisionInOrder) {
  auto a = Agent::Create(Opts("a.onnx", "sim:strokes=25,wear=0,wear_end=1,seed=3"));
  ASSERT_TRUE(a) << a.error().message;
  Collect c;
  (*a)->AddSink(&c);
  ASSERT_TRUE((*a)->Run());
  ASSERT_EQ(c.decisions.size(), 25u);
  for (size_t i = 0; i < c.decisions.size(); ++i) EXPECT_EQ(c.decisions[i].window_index, static_cast<int64_t>(i));
  auto s = (*a)->summary();
  EXPECT_EQ(s.windows, 25);
  EXPECT_EQ(s.fail_safe, 0);
  EXPECT_EQ(s.overruns, 0);
  ASSERT_EQ(c.models.size(), 1u);
  EXPECT_EQ(c.models[0].provider, "CPUExecutionProvider");
  EXPECT_TRUE(c.decisions.back().is_alert);  // wear 1.0 at the end
}

TEST_F(AgentTest, MissedDeadlinesGetTheFailSafeDecisionOnce) {
  auto o = Opts("a.onnx", "sim:strokes=8,wear=0,seed=4");
  o.deadline_s = 0.005;
  o.inject_delay_ms_for_test = 30;  // every window takes longer than its deadline
  o.fail_safe_alert = true;
  auto a = Agent::Create(o);
  ASSERT_TRUE(a) << a.error().message;
  Collect c;
  (*a)->AddSink(&c);
  ASSERT_TRUE((*a)->Run());
  ASSERT_EQ(c.decisions.size(), 8u);
  auto s = (*a)->summary();
  EXPECT_EQ(s.fail_safe, 8);
  EXPECT_EQ(s.windows, 8);
  for (auto& d : c.decisions) {
    EXPECT_TRUE(d.fail_safe);
    EXPECT_TRUE(d.is_alert);
    EXPECT_EQ(d.severity, Severity::kHigh);
  }
}

TEST_F(AgentTest, PassFailSafeAndNoMissesWithAGenerousDeadline) {
  auto o = Opts("a.onnx", "sim:strokes=5,wear=0,seed=4");
  o.deadline_s = 0.005;
  o.inject_delay_ms_for_test = 30;
  o.fail_safe_alert = false;
  auto a = Agent::Create(o);
  ASSERT_TRUE(a);
  Collect c;
  (*a)->AddSink(&c);
  ASSERT_TRUE((*a)->Run());
  for (auto& d : c.decisions) EXPECT_FALSE(d.is_alert);
  auto o2 = Opts("a.onnx", "sim:strokes=5,wear=0,seed=4");
  auto b = Agent::Create(o2);
  ASSERT_TRUE((*b)->Run());
  EXPECT_EQ((*b)->summary().fail_safe, 0);
}

TEST_F(AgentTest, SwapsModelsBetweenWindowsAndRefusesOtherWindowing) {
  auto a = Agent::Create(Opts("a.onnx", "sim:strokes=6,seed=5"));
  ASSERT_TRUE(a);
  ServeOptions so;
  so.warmup_runs = 1;
  auto fixed = ServedModel::Load(*dir_ + "/fixed.onnx", so);
  ASSERT_TRUE(fixed) << fixed.error().message;
  auto st = (*a)->SubmitModel(std::move(*fixed));
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("cuts windows differently"), std::string::npos);
  auto b = ServedModel::Load(*dir_ + "/b.onnx", so);
  ASSERT_TRUE(b);
  ASSERT_TRUE((*a)->SubmitModel(std::move(*b)));
  Collect c;
  (*a)->AddSink(&c);
  ASSERT_TRUE((*a)->Run());
  EXPECT_EQ(c.decisions.size(), 6u);
  ASSERT_EQ(c.models.size(), 2u);
  EXPECT_EQ(c.models.back().version, "2");
}

TEST_F(AgentTest, RejectsBadOptions) {
  auto o = Opts("a.onnx", "sim");
  o.deadline_s = 0;
  EXPECT_FALSE(Agent::Create(o));
  o = Opts("a.onnx", "sim");
  o.debounce = {4, 3};
  EXPECT_FALSE(Agent::Create(o));
  o = Opts("a.onnx", "nosuchfile.wav");
  auto r = Agent::Create(o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("nosuchfile.wav"), std::string::npos);
}

TEST(LatencyHistogram, PercentilesWithinOnePercent) {
  LatencyHistogram h;
  for (int i = 1; i <= 10000; ++i) h.Add(i * 0.001);  // 1 µs .. 10 ms uniformly
  auto s = h.Summarize();
  EXPECT_EQ(s.n, 10000);
  EXPECT_NEAR(s.p50_ms, 5.0, 0.05);
  EXPECT_NEAR(s.p99_ms, 9.9, 0.1);
  EXPECT_DOUBLE_EQ(s.max_ms, 10.0);
  EXPECT_NEAR(s.mean_ms, 5.0005, 1e-6);
}

}  // namespace
}  // namespace tend::agent

namespace tend::agent {
namespace {

// OTA's hand-over under load: 1,000 windows/s (10 kHz, hop 10 samples) while models are swapped
// 100 times; no window may be missed, dropped or decided by the fail-safe.
TEST_F(AgentTest, HotSwapUnderLoadMissesNothing) {
  ASSERT_EQ(Tend("train --input 'sim:strokes=20,wear=0,seed=61' --window 2000 --hop 10 --out f1.onnx", *dir_).rc, 0);
  ASSERT_EQ(Tend("train --input 'sim:strokes=20,wear=0,seed=62' --window 2000 --hop 10 --version 2 --out f2.onnx", *dir_).rc, 0);
  auto o = Opts("f1.onnx", "sim:strokes=4,seed=63");  // 13.3 s of signal
  o.speed = 2;                                         // 2,000 windows/s of wall time
  // Room for every window and a generous deadline: what is checked is that swapping loses
  // nothing, not how fast a shared CI machine is (the worst latency is printed).
  o.queue_windows = 16384;
  o.deadline_s = 60;
  auto a = Agent::Create(o);
  ASSERT_TRUE(a) << a.error().message;
  ServeOptions so;
  so.warmup_runs = 2;
  std::vector<std::unique_ptr<ServedModel>> models;
  for (int i = 0; i < 100; ++i) {
    auto m = ServedModel::Load(*dir_ + (i % 2 ? "/f1.onnx" : "/f2.onnx"), so);
    ASSERT_TRUE(m) << m.error().message;
    models.push_back(std::move(*m));
  }
  Collect c;
  (*a)->AddSink(&c);
  std::atomic<bool> done{false};
  std::thread swapper([&] {
    for (auto& m : models) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (done.load()) break;
      EXPECT_TRUE((*a)->SubmitModel(std::move(m)));
    }
  });
  ASSERT_TRUE((*a)->Run());
  done.store(true);
  swapper.join();
  auto s = (*a)->summary();
  int64_t expected = (static_cast<int64_t>(4 * 10000 * 60 / 18.0) - 2000) / 10 + 1;
  std::printf("  %lld windows, %zu model changes, worst latency %.3f ms, p99 %.3f ms\n",
              static_cast<long long>(s.windows), c.models.size(), s.latency.max_ms, s.latency.p99_ms);
  EXPECT_GE(static_cast<int64_t>(c.models.size()), 90);
  EXPECT_EQ(s.overruns, 0);
  EXPECT_EQ(s.fail_safe, 0);
  EXPECT_EQ(s.errors, 0);
  EXPECT_NEAR(static_cast<double>(s.windows), static_cast<double>(expected), 2);
  for (size_t i = 0; i < c.decisions.size(); ++i) ASSERT_EQ(c.decisions[i].window_index, static_cast<int64_t>(i));
}

}  // namespace
}  // namespace tend::agent
