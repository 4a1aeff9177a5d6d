// The agent loop itself: one decision per window whatever happens, the fail-safe when the
// deadline passes, model swaps between windows, and what it refuses.
#include "agent/agent.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <limits>
#include <memory>
#include <thread>

#include "agent/latency_histogram.h"
#include "agent/model_watch.h"
#include "agent/served_model.h"
#include "agent/stream_reader.h"
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
    ASSERT_EQ(
        Tend("train --input 'sim:strokes=40,wear=0,seed=22' --out b.onnx --version 2", *dir_).rc,
        0);
    ASSERT_EQ(
        Tend("train --input 'sim:strokes=40,wear=0,seed=23' --hop 1000 --out fixed.onnx", *dir_).rc,
        0);
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }
  // What the runtime does for one asset: the model, the source cut to its windowing, an agent.
  struct Setup {
    std::string model, source;
    AgentOptions opts;
    double speed = 0;
    double delay_ms = 0;  // extra time spent in the pipeline per window (SetAfterScoreHookForTest)
    int64_t delay_only = -1;  // >= 0: only that window takes delay_ms
    // Wraps the stream reader (e.g. to say when each event arrived).
    std::function<std::unique_ptr<EventReader>(std::unique_ptr<EventReader>)> wrap;
  };
  Setup Opts(const std::string& model, const std::string& source) {
    Setup s;
    s.model = *dir_ + "/" + model;
    s.source = source;
    return s;
  }
  static Result<std::unique_ptr<ServedModel>> LoadModel(const std::string& path) {
    ServeOptions so;
    so.warmup_runs = 1;
    return ServedModel::Load(path, so);
  }
  static Result<std::unique_ptr<Agent>> Make(const Setup& s) {
    TEND_ASSIGN_OR_RETURN(auto m, LoadModel(s.model));
    sources::SourceOptions so;
    so.sample_rate = m->windowing().sample_rate;
    so.channels = m->windowing().channels;
    TEND_ASSIGN_OR_RETURN(auto src, sources::OpenSource(s.source, so));
    StreamReaderOptions ro;
    ro.speed = s.speed;
    TEND_ASSIGN_OR_RETURN(auto reader,
                          StreamEventReader::Create(std::move(src), m->windowing(), ro));
    std::unique_ptr<EventReader> r = std::move(reader);
    if (s.wrap) r = s.wrap(std::move(r));
    AgentOptions o = s.opts;
    o.loader = [](const std::string& path) -> Result<std::unique_ptr<Model>> {
      TEND_ASSIGN_OR_RETURN(auto m, LoadModel(path));
      return std::unique_ptr<Model>(std::move(m));
    };
    TEND_ASSIGN_OR_RETURN(auto a, Agent::Create(o, std::move(m), std::move(r)));
    if (s.delay_ms > 0) {
      const double ms = s.delay_ms;
      const int64_t only = s.delay_only;
      auto n = std::make_shared<int64_t>(0);
      a->SetAfterScoreHookForTest([ms, only, n] {
        if (only < 0 || (*n)++ == only)
          std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(ms));
      });
    }
    return a;
  }
  static std::string* dir_;
};
std::string* AgentTest::dir_ = nullptr;

TEST_F(AgentTest, EveryWindowGetsExactlyOneDecisionInOrder) {
  auto a = Make(Opts("a.onnx", "sim:strokes=25,wear=0,wear_end=1,seed=3"));
  ASSERT_TRUE(a) << a.error().message;
  Collect c;
  (*a)->AddSink(&c);
  ASSERT_TRUE((*a)->Run());
  ASSERT_EQ(c.decisions.size(), 25u);
  for (size_t i = 0; i < c.decisions.size(); ++i)
    EXPECT_EQ(c.decisions[i].window_index, static_cast<int64_t>(i));
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
  o.opts.deadline_s = 0.005;
  o.delay_ms = 30;  // every window takes longer than its deadline
  o.opts.fail_safe_alert = true;
  auto a = Make(o);
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

// A reader that says when each event arrived (as a camera's driver or a watched folder does):
// event `stale` arrived `age` before it was read, the others as they were read.
class ArrivedAt final : public EventReader {
 public:
  ArrivedAt(std::unique_ptr<EventReader> in, int64_t stale, std::chrono::seconds age)
      : in_(std::move(in)), stale_(stale), age_(age) {}
  const EventSpec& spec() const override { return in_->spec(); }
  bool live() const override { return in_->live(); }
  std::string Describe() const override { return in_->Describe(); }
  Status Run(const std::atomic<bool>& stop, const EmitEvent& emit) override {
    return in_->Run(stop, [&](const EventView& v) {
      EventView w = v;
      w.arrival = std::chrono::steady_clock::now() - (v.index == stale_ ? age_ : age_ * 0);
      emit(w);
    });
  }

 private:
  std::unique_ptr<EventReader> in_;
  int64_t stale_;
  std::chrono::seconds age_;
};

TEST_F(AgentTest, TheDeadlineCountsFromArrivalAndAMissGetsExactlyOneFailSafe) {
  // Window 3 arrived 30 s before the source handed it over (a frame held in a driver): its
  // deadline (10 s) passed before it was even queued. Exactly that window, and only once, gets
  // the fail-safe decision, and its latency counts from its arrival; the others are scored.
  auto o = Opts("a.onnx", "sim:strokes=8,wear=0,seed=4");
  o.opts.deadline_s = 10;  // generous for the others on a loaded machine
  o.wrap = [](std::unique_ptr<EventReader> in) -> std::unique_ptr<EventReader> {
    return std::make_unique<ArrivedAt>(std::move(in), 3, std::chrono::seconds(30));
  };
  auto a = Make(o);
  ASSERT_TRUE(a) << a.error().message;
  Collect c;
  (*a)->AddSink(&c);
  ASSERT_TRUE((*a)->Run());
  ASSERT_EQ(c.decisions.size(), 8u);
  int fail_safe = 0;
  for (const auto& d : c.decisions) {
    if (!d.fail_safe) continue;
    ++fail_safe;
    EXPECT_EQ(d.window_index, 3);
    EXPECT_EQ(d.fail_safe_reason, kFailSafeDeadline);
    EXPECT_GE(d.latency_ms, 30000) << "counted from arrival, not from enqueue";
    EXPECT_TRUE(d.is_alert);
  }
  EXPECT_EQ(fail_safe, 1);
  const auto s = (*a)->summary();
  EXPECT_EQ(s.fail_safe, 1);
  EXPECT_EQ(s.scored, 7);
  EXPECT_EQ(s.ToJson()["deadline_misses"], 1);
}

// A reader whose events `bad` the source could not produce (EventView::error set), as an image
// source marks an undecodable frame; the others pass through.
class InvalidAt final : public EventReader {
 public:
  InvalidAt(std::unique_ptr<EventReader> in, std::vector<int64_t> bad)
      : in_(std::move(in)), bad_(std::move(bad)) {}
  const EventSpec& spec() const override { return in_->spec(); }
  bool live() const override { return in_->live(); }
  std::string Describe() const override { return in_->Describe(); }
  Status Run(const std::atomic<bool>& stop, const EmitEvent& emit) override {
    return in_->Run(stop, [&](const EventView& v) {
      EventView w = v;
      if (std::find(bad_.begin(), bad_.end(), v.index) != bad_.end()) {
        error_ = "sensor frame " + std::to_string(v.index) + ": checksum mismatch";
        w.error = error_;
      }
      emit(w);
    });
  }

 private:
  std::unique_ptr<EventReader> in_;
  std::vector<int64_t> bad_;
  std::string error_;
};

TEST_F(AgentTest, AnInvalidEventIsDecidedFailSafeForAnyModelKindNeverScored) {
  // A vibration (features) model: windows 1 and 4 could not be produced by the source. Each gets
  // exactly one fail-safe decision with reason invalid_event; the model never sees them; the two
  // are one kind of error (numbers masked); they are not deadline misses.
  auto o = Opts("a.onnx", "sim:strokes=6,wear=0,seed=4");
  o.opts.deadline_s = 30;
  o.wrap = [](std::unique_ptr<EventReader> in) -> std::unique_ptr<EventReader> {
    return std::make_unique<InvalidAt>(std::move(in), std::vector<int64_t>{1, 4});
  };
  auto a = Make(o);
  ASSERT_TRUE(a) << a.error().message;
  Collect c;
  (*a)->AddSink(&c);
  ASSERT_TRUE((*a)->Run());
  ASSERT_EQ(c.decisions.size(), 6u);
  for (const auto& d : c.decisions) {
    const bool bad = d.window_index == 1 || d.window_index == 4;
    EXPECT_EQ(d.fail_safe, bad) << d.window_index;
    EXPECT_EQ(d.fail_safe_reason, bad ? kFailSafeInvalidEvent : std::string_view{});
    if (bad) {
      EXPECT_TRUE(d.is_alert);
    }
  }
  const auto s = (*a)->summary();
  EXPECT_EQ(s.scored, 4);
  EXPECT_EQ(s.errors, 0);
  EXPECT_EQ(s.invalid_events, 2);
  ASSERT_EQ(s.invalid_kinds.size(), 1u);
  EXPECT_EQ(s.invalid_kinds.begin()->first, "checksum mismatch");
  EXPECT_EQ(s.ToJson()["deadline_misses"], 0);
}

TEST_F(AgentTest, AResultAfterItsFailSafeIsCountedLateNotDecidedTwice) {
  // Window 2 takes 3 s in the pipeline against a 1 s deadline: the watchdog decides it fail-safe
  // while it is scored; the result that comes after is counted late and never emitted.
  auto o = Opts("a.onnx", "sim:strokes=5,wear=0,seed=4");
  o.opts.deadline_s = 1;
  o.delay_ms = 3000;
  o.delay_only = 2;
  auto a = Make(o);
  ASSERT_TRUE(a) << a.error().message;
  Collect c;
  (*a)->AddSink(&c);
  ASSERT_TRUE((*a)->Run());
  ASSERT_EQ(c.decisions.size(), 5u);
  for (size_t i = 0; i < c.decisions.size(); ++i) {
    EXPECT_EQ(c.decisions[i].window_index, static_cast<int64_t>(i));
  }
  const auto s = (*a)->summary();
  EXPECT_EQ(c.decisions[2].fail_safe, true);
  EXPECT_EQ(c.decisions[2].fail_safe_reason, kFailSafeDeadline);
  // Windows 3 and 4 (a replay: all read at once) waited 3 s behind window 2: fail-safe from the
  // queue, never scored; each window still has exactly one decision.
  EXPECT_EQ(s.fail_safe, 3);
  EXPECT_EQ(s.scored, 2);
  EXPECT_EQ(s.late_results, 1);
  EXPECT_EQ(s.windows, 5);
}

TEST_F(AgentTest, PassFailSafeAndNoMissesWithAGenerousDeadline) {
  auto o = Opts("a.onnx", "sim:strokes=5,wear=0,seed=4");
  o.opts.deadline_s = 0.005;
  o.delay_ms = 30;
  o.opts.fail_safe_alert = false;
  auto a = Make(o);
  ASSERT_TRUE(a);
  Collect c;
  (*a)->AddSink(&c);
  ASSERT_TRUE((*a)->Run());
  for (auto& d : c.decisions) EXPECT_FALSE(d.is_alert);
  auto o2 = Opts("a.onnx", "sim:strokes=5,wear=0,seed=4");
  auto b = Make(o2);
  ASSERT_TRUE((*b)->Run());
  EXPECT_EQ((*b)->summary().fail_safe, 0);
}

TEST_F(AgentTest, SwapsModelsBetweenWindowsAndRefusesOtherWindowing) {
  auto a = Make(Opts("a.onnx", "sim:strokes=6,seed=5"));
  ASSERT_TRUE(a);
  ServeOptions so;
  so.warmup_runs = 1;
  auto fixed = ServedModel::Load(*dir_ + "/fixed.onnx", so);
  ASSERT_TRUE(fixed) << fixed.error().message;
  auto st = (*a)->SubmitModel(std::move(*fixed));
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("takes other input"), std::string::npos);
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

// SIGHUP re-reads the file of the model being served: after an OTA hand-over that is the new
// model's file, not the start-up --model (re-reading that would silently undo the update).
TEST_F(AgentTest, ReloadRereadsTheModelBeingServed) {
  auto o = Opts("a.onnx", "sim:strokes=40,seed=6");
  o.speed = 50;  // ~66 ms a stroke: time for the reload to load and swap in
  auto a = Make(o);
  ASSERT_TRUE(a) << a.error().message;
  ServeOptions so;
  so.warmup_runs = 1;
  auto b = ServedModel::Load(*dir_ + "/b.onnx", so);
  ASSERT_TRUE(b);
  ASSERT_TRUE((*a)->SubmitModel(std::move(*b)));
  std::atomic<bool> reload{false};
  class ReloadOnV2 : public Collect {
   public:
    explicit ReloadOnV2(std::atomic<bool>& r) : r_(r) {}
    void OnDecision(const Decision& d) override {
      Collect::OnDecision(d);
      if (d.model_version == "2" && !fired_) fired_ = true, r_.store(true);
    }

   private:
    std::atomic<bool>& r_;
    bool fired_ = false;
  } c(reload);
  (*a)->AddSink(&c);
  ASSERT_TRUE((*a)->Run(nullptr, &reload));
  EXPECT_EQ(c.decisions.size(), 40u);
  EXPECT_EQ((*a)->summary().reloads, 1);
  ASSERT_EQ(c.models.size(), 3u);  // a, b handed over, b re-read
  EXPECT_EQ(c.models[1].version, "2");
  EXPECT_EQ(c.models[2].version, "2");
  EXPECT_EQ(c.decisions.back().model_version, "2");
}

TEST_F(AgentTest, RejectsBadOptions) {
  auto o = Opts("a.onnx", "sim");
  o.opts.deadline_s = 0;
  EXPECT_FALSE(Make(o));
  o = Opts("a.onnx", "sim");
  o.opts.deadline_s = std::numeric_limits<double>::infinity();
  EXPECT_FALSE(Make(o));
  o = Opts("a.onnx", "sim");
  o.opts.debounce = {4, 3};
  EXPECT_FALSE(Make(o));
  o = Opts("a.onnx", "nosuchfile.wav");
  auto r = Make(o);
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
  ASSERT_EQ(
      Tend("train --input 'sim:strokes=20,wear=0,seed=61' --window 2000 --hop 10 --out f1.onnx",
           *dir_)
          .rc,
      0);
  ASSERT_EQ(Tend("train --input 'sim:strokes=20,wear=0,seed=62' --window 2000 --hop 10 --version 2 "
                 "--out f2.onnx",
                 *dir_)
                .rc,
            0);
  auto o = Opts("f1.onnx", "sim:strokes=4,seed=63");  // 13.3 s of signal
  o.speed = 2;                                        // 2,000 windows/s of wall time
  // Room for every window and a generous deadline: what is checked is that swapping loses
  // nothing, not how fast a shared CI machine is (the worst latency is printed).
  o.opts.queue_windows = 16384;
  o.opts.deadline_s = 60;
  auto a = Make(o);
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
              static_cast<long long>(s.windows), c.models.size(), s.latency.max_ms,
              s.latency.p99_ms);
  EXPECT_GE(static_cast<int64_t>(c.models.size()), 90);
  EXPECT_EQ(s.overruns, 0);
  EXPECT_EQ(s.fail_safe, 0);
  EXPECT_EQ(s.errors, 0);
  EXPECT_NEAR(static_cast<double>(s.windows), static_cast<double>(expected), 2);
  for (size_t i = 0; i < c.decisions.size(); ++i)
    ASSERT_EQ(c.decisions[i].window_index, static_cast<int64_t>(i));
}

// Probation watch: per-model counts from the decisions the agent emits, judged against the
// previous model. Fed by hand here; ProbationRollsBackAnAlertStorm runs it in the real agent.
Decision WatchDecision(bool alert, bool fail_safe = false) {
  Decision d;
  d.is_alert = alert;
  d.fail_safe = fail_safe;
  return d;
}

TEST(ModelWatchTest, AlertStormAgainstThePreviousModel) {
  ModelWatchOptions o;
  o.storm_windows = 10;
  o.storm_alerts = 4;
  o.storm_ratio = 3;
  auto w = ModelWatch::Create(o);
  ASSERT_TRUE(w) << w.error().message;
  ModelWatch& watch = **w;
  EXPECT_EQ(watch.generation(), -1);
  watch.OnModelInfo({"press", "1", "cpu", 0, 0});
  // The start-up model: 2 alerts in its last 10 windows (20 %).
  for (int i = 0; i < 30; ++i) watch.OnDecision(WatchDecision(i == 25 || i == 28));
  EXPECT_EQ(watch.Misbehaviour(), "");
  watch.OnModelInfo({"press", "2", "cpu", 0, 0});
  ModelHealth h = watch.Health();
  EXPECT_EQ(h.generation, 1);
  EXPECT_EQ(h.model_version, "2");
  EXPECT_EQ(h.previous_windows, 10);
  EXPECT_EQ(h.previous_alerts, 2);
  EXPECT_EQ(h.windows, 0);
  // 5 alerts in 10 windows: more than 4, but 50 % is not above 3 x 20 %.
  for (int i = 0; i < 10; ++i) watch.OnDecision(WatchDecision(i % 2 == 0));
  EXPECT_EQ(watch.Misbehaviour(), "");
  // 7 of the last 10: 70 % > 60 %.
  for (int i = 0; i < 4; ++i) watch.OnDecision(WatchDecision(true));
  h = watch.Health();
  EXPECT_EQ(h.recent_windows, 10);
  EXPECT_EQ(h.recent_alerts, 7);
  EXPECT_EQ(h.alerts, 9);
  std::string why = watch.Misbehaviour();
  EXPECT_NE(why.find("press v2: alert storm, 7 alerts in its last 10 windows (70 %) against 2 in "
                     "the previous model's last 10 (20 %)"),
            std::string::npos)
      << why;
  // The storm passes: the sliding window forgets it.
  for (int i = 0; i < 10; ++i) watch.OnDecision(WatchDecision(false));
  EXPECT_EQ(watch.Misbehaviour(), "");
}

TEST(ModelWatchTest, WithoutAPreviousModelOnlyTheCountDecides) {
  ModelWatchOptions o;
  o.storm_windows = 10;
  o.storm_alerts = 4;
  auto w = ModelWatch::Create(o);
  ASSERT_TRUE(w);
  (*w)->OnModelInfo({"press", "7", "cpu", 0, 0});
  for (int i = 0; i < 4; ++i) (*w)->OnDecision(WatchDecision(true));
  EXPECT_EQ((*w)->Misbehaviour(), "");
  (*w)->OnDecision(WatchDecision(true));
  EXPECT_NE((*w)->Misbehaviour().find("no previous model to compare"), std::string::npos);
  // 0 disables the storm check.
  o.storm_alerts = 0;
  EXPECT_EQ(ModelWatch::Judge((*w)->Health(), o), "");
}

TEST(ModelWatchTest, FailSafeDecisionsAndOptions) {
  ModelWatchOptions o;
  o.max_fail_safe = 2;
  auto w = ModelWatch::Create(o);
  ASSERT_TRUE(w);
  (*w)->OnModelInfo({"press", "1", "cpu", 0, 0});
  (*w)->OnDecision(WatchDecision(true, true));  // a fail-safe alert is not an alert of the model
  EXPECT_EQ((*w)->Health().alerts, 0);
  EXPECT_EQ((*w)->Misbehaviour(), "");
  (*w)->OnDecision(WatchDecision(false, true));
  EXPECT_NE((*w)->Misbehaviour().find("press v1: 2 fail-safe decisions"), std::string::npos)
      << (*w)->Misbehaviour();
  // A new model starts from zero.
  (*w)->OnModelInfo({"press", "2", "cpu", 0, 0});
  EXPECT_EQ((*w)->Misbehaviour(), "");
  EXPECT_EQ((*w)->Health().fail_safe, 0);

  ModelWatchOptions bad;
  bad.storm_windows = 0;
  EXPECT_FALSE(ModelWatch::Create(bad));
  bad = {};
  bad.storm_alerts = 100;  // not below the 100 windows it counts over
  EXPECT_FALSE(ModelWatch::Create(bad));
  bad = {};
  bad.storm_ratio = 0.5;
  EXPECT_FALSE(ModelWatch::Create(bad));
  bad = {};
  bad.max_fail_safe = -1;
  EXPECT_FALSE(ModelWatch::Create(bad));
}

// In the real agent: decisions are attributed to the model that made them across a swap.
TEST_F(AgentTest, ModelWatchFollowsSwaps) {
  auto a = Make(Opts("a.onnx", "sim:strokes=30,wear=0,seed=5"));
  ASSERT_TRUE(a) << a.error().message;
  auto w = ModelWatch::Create({});
  ASSERT_TRUE(w);
  (*a)->AddSink(w->get());
  Collect c;
  (*a)->AddSink(&c);
  ServeOptions so;
  so.warmup_runs = 1;
  auto b = ServedModel::Load(*dir_ + "/b.onnx", so);
  ASSERT_TRUE(b);
  ASSERT_TRUE((*a)->SubmitModel(std::move(*b)));  // taken over at the first window
  ASSERT_TRUE((*a)->Run());
  ModelHealth h = (*w)->Health();
  EXPECT_EQ(h.generation, 1);
  EXPECT_EQ(h.model_version, c.models.back().version);
  EXPECT_EQ(h.windows, 30);
  EXPECT_EQ(h.previous_windows, 0);
  EXPECT_EQ(h.fail_safe, 0);
}

}  // namespace
}  // namespace tend::agent
