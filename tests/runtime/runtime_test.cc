// The runtime assembling agents from registered components: a fake camera (u8 frames) with a fake
// image model kind gets exactly one decision per frame, the fail-safe one when the model overruns
// its 200 ms deadline; two assets in one agent, one of them stalled, each decide every window with
// their own asset id.
#include "runtime/runtime.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "../agent/cli_util.h"
#include "sources/source.h"

namespace tend::runtime {
namespace {

using Clock = std::chrono::steady_clock;

// Keeps a copy of every decision, by asset.
class Collect final : public DecisionSink, public Sink {
 public:
  void OnDecision(const Decision& d) override {
    std::lock_guard<std::mutex> lk(mu_);
    Decision c = d;
    c.features = {};
    by_asset_[d.asset_id].push_back(c);
  }
  Result<DecisionSink*> ForAsset(const AssetContext&) override {
    return static_cast<DecisionSink*>(this);
  }
  std::vector<Decision> Of(const std::string& asset) const {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = by_asset_.find(asset);
    return it == by_asset_.end() ? std::vector<Decision>{} : it->second;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::vector<Decision>> by_asset_;
};

// A sink descriptor handing out `collect` (owned by the test).
SinkDescriptor CollectSink(Collect* collect) {
  SinkDescriptor d;
  d.name = "collect";
  d.description = "test: keeps every decision";
  d.create = [collect](DeviceContext&) -> Result<std::unique_ptr<Sink>> {
    struct Forward final : Sink {
      explicit Forward(Collect* c) : c(c) {}
      Result<DecisionSink*> ForAsset(const AssetContext& a) override { return c->ForAsset(a); }
      Collect* c;
    };
    return std::unique_ptr<Sink>(std::make_unique<Forward>(collect));
  };
  return d;
}

// ---- a camera station: u8 [48, 64, 3] frames, one per part -------------------------------------

constexpr int kH = 48, kW = 64, kC = 3;

class FakeCamera final : public agent::EventReader {
 public:
  // Frame k (part number 1000 + k) is filled with k; after frame `slow` the camera waits
  // `pause_ms` (the next part has not arrived yet), between the others 20 ms.
  FakeCamera(int frames, int slow, int pause_ms)
      : frames_(frames),
        slow_(slow),
        pause_ms_(pause_ms),
        spec_(EventSpec::Make(ElementType::kU8, {kH, kW, kC})) {}
  const EventSpec& spec() const override { return spec_; }
  bool live() const override { return true; }
  std::string Describe() const override { return "fakecam"; }
  Status Run(const std::atomic<bool>& stop, const agent::EmitEvent& emit) override {
    std::vector<uint8_t> frame(spec_.bytes());
    for (int k = 0; k < frames_ && !stop.load(); ++k) {
      std::fill(frame.begin(), frame.end(), static_cast<uint8_t>(k * 10));
      EventView ev;
      ev.event_id = 1000 + k;
      ev.index = k;
      ev.t_start_s = 0.02 * k;
      ev.spec = spec_;
      ev.bytes = std::as_bytes(std::span<const uint8_t>(frame));
      emit(ev);
      const auto until = Clock::now() + std::chrono::milliseconds(k == slow_ ? pause_ms_ : 20);
      while (!stop.load() && Clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
    return Ok();
  }

 private:
  int frames_, slow_, pause_ms_;
  EventSpec spec_;
};

// Scores a frame by its mean pixel value; takes `slow_ms` on frame `slow`. Keeps evidence.
class FakeImageModel final : public agent::Model {
 public:
  FakeImageModel(std::string path, int slow, int slow_ms)
      : path_(std::move(path)), slow_(slow), slow_ms_(slow_ms) {
    input_.event = EventSpec::Make(ElementType::kU8, {kH, kW, kC});
  }
  const std::string& kind() const override { return kind_; }
  const std::string& name() const override { return name_; }
  const std::string& version() const override { return version_; }
  const std::string& path() const override { return path_; }
  const agent::ModelInput& input() const override { return input_; }
  SeverityThresholds thresholds() const override { return {40, 50, 60}; }
  ModelInfo info() const override { return {name_, version_, "test", 0, 0}; }
  const std::vector<std::string>& contributor_names() const override { return names_; }
  void PrepareOut(agent::ScoreOut& out) const override {
    out.top.assign(1, 0);
    out.n_top = 0;
  }
  Status Score(const EventView& ev, agent::ScoreOut& out) override {
    auto px = ev.as<uint8_t>();
    if (px.size() != input_.event.bytes()) return Fail(Error::Invalid("not a u8 frame"));
    double sum = 0;
    for (uint8_t v : px) sum += v;
    out.score = static_cast<float>(sum / static_cast<double>(px.size()));
    out.top[0] = 0;
    out.n_top = 1;
    out.evidence_ref = "evidence/part-" + std::to_string(ev.event_id) + ".png";
    if (ev.index == slow_) std::this_thread::sleep_for(std::chrono::milliseconds(slow_ms_));
    return Ok();
  }

 private:
  std::string kind_ = "fake_image", name_ = "inspect", version_ = "3", path_;
  std::vector<std::string> names_ = {"whole frame"};
  agent::ModelInput input_;
  int slow_, slow_ms_;
};

constexpr int kFrames = 8, kSlow = 5;

TEST(RuntimeTest, FakeCameraAndImageModelOneDecisionPerFrameAndFailSafeOnOverrun) {
  auto registry = MakeRegistry(nullptr);
  ASSERT_TRUE(registry) << registry.error().message;
  Registry& r = **registry;
  SourceDescriptor cam;
  cam.name = "fakecam";
  cam.description = "test: a camera station";
  cam.open = [](const SourceRequest& req) -> Result<std::unique_ptr<agent::EventReader>> {
    if (req.input->windowing) return Fail(Error::Invalid("fakecam delivers frames"));
    return std::unique_ptr<agent::EventReader>(std::make_unique<FakeCamera>(kFrames, kSlow, 1500));
  };
  ASSERT_TRUE(r.AddSource(std::move(cam)));
  ModelKindDescriptor kind;
  kind.name = "fake_image";
  kind.description = "test: mean pixel value";
  kind.load = [](const ModelRequest& req) -> Result<std::unique_ptr<agent::Model>> {
    return std::unique_ptr<agent::Model>(std::make_unique<FakeImageModel>(req.path, kSlow, 1000));
  };
  ASSERT_TRUE(r.AddModelKind(std::move(kind)));
  Collect collect;
  ASSERT_TRUE(r.AddSink(CollectSink(&collect)));

  FlagValues flags{{"agent.source", {"fakecam"}},
                   {"agent.model", {"inspect.model"}},
                   {"agent.model_kind", {"fake_image"}},
                   {"identity.asset", {"station-1"}},
                   {"agent.deadline_s", {"0.2"}}};
  auto spec = LoadRunSpec(r, "", flags);
  ASSERT_TRUE(spec) << spec.error().message;
  auto rt = Runtime::Create(std::move(*spec), r);
  ASSERT_TRUE(rt) << rt.error().message;
  ASSERT_TRUE((*rt)->Run(nullptr, nullptr));

  auto d = collect.Of("station-1");
  ASSERT_EQ(d.size(), static_cast<size_t>(kFrames));
  for (int k = 0; k < kFrames; ++k) {
    const Decision& x = d[static_cast<size_t>(k)];
    EXPECT_EQ(x.window_index, k);
    EXPECT_EQ(x.event_id, 1000 + k);
    EXPECT_EQ(x.asset_id, "station-1");
    EXPECT_EQ(x.model_version, "3");
    if (k == kSlow) {
      // The model took 1 s of a 200 ms budget: the fail-safe decision (reject) was taken.
      EXPECT_TRUE(x.fail_safe);
      EXPECT_TRUE(x.is_alert);
    } else {
      EXPECT_FALSE(x.fail_safe) << k << " latency " << x.latency_ms << " ms";
      EXPECT_FLOAT_EQ(x.anomaly_score, static_cast<float>(k * 10));
      EXPECT_EQ(x.evidence_ref, "evidence/part-" + std::to_string(1000 + k) + ".png");
    }
  }
  auto s = (*rt)->agent(0).summary();
  EXPECT_EQ(s.windows, kFrames);
  EXPECT_EQ(s.fail_safe, 1);
  EXPECT_EQ(s.late_results, 1);  // the slow result, after its fail-safe decision
  EXPECT_EQ(s.overruns, 0);
}

TEST(RuntimeTest, RegistryRefusesDuplicatesAndPicksSources) {
  auto registry = MakeRegistry(&RegisterComponents_builtin);
  ASSERT_TRUE(registry) << registry.error().message;
  Registry& r = **registry;
  SourceDescriptor again;
  again.name = "wav";
  again.open = [](const SourceRequest&) -> Result<std::unique_ptr<agent::EventReader>> {
    return Fail(Error::Internal("unused"));
  };
  EXPECT_FALSE(r.AddSource(again));
  auto pick = [&](const std::string& spec) {
    auto d = r.SourceFor(spec);
    return d ? (*d)->name : "error: " + d.error().message;
  };
  EXPECT_EQ(pick("sim"), "sim");
  EXPECT_EQ(pick("sim:strokes=3"), "sim");
  EXPECT_EQ(pick("-"), "raw");
  EXPECT_EQ(pick("fd:3"), "raw");
  EXPECT_EQ(pick("a.WAV"), "wav");
  EXPECT_EQ(pick("x/b.csv"), "csv");
  EXPECT_NE(pick("nosuch.bin").find("no such file"), std::string::npos);
  EXPECT_FALSE(r.ModelKind("image_patch"));
  auto j = r.Describe();
  for (const char* k : {"sources", "model_kinds", "sinks"}) {
    ASSERT_TRUE(j[k].is_array()) << k;
    for (const auto& c : j[k]) {
      EXPECT_FALSE(c["name"].get<std::string>().empty());
      EXPECT_FALSE(c["description"].get<std::string>().empty()) << c["name"];
    }
  }
}

// ---- two assets in one agent -------------------------------------------------------------------

class RuntimeAssets : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(testing::TempDir("runtime"));
    auto r = testing::Tend("train --input 'sim:strokes=40,wear=0,seed=21' --out m.onnx", *dir_);
    ASSERT_EQ(r.rc, 0) << r.err;
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }
  static std::string* dir_;
};
std::string* RuntimeAssets::dir_ = nullptr;

// press-07 replays a simulated run while press-08 reads a pipe nobody writes to yet: press-07
// decides all its strokes regardless; then press-08's data arrives and it decides its own.
TEST_F(RuntimeAssets, TwoAssetsEachDecideEveryWindowAndAStallDelaysNoOther) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  const std::string cfg = *dir_ + "/two.toml";
  std::ofstream(cfg) << "[agent]\nspeed = 0\n[model]\nwarmup_runs = 1\n[metrics]\nport = 0\n"
                        "[output]\nquiet = true\n\n"
                        "[[asset]]\nid = \"press-07\"\nsource = \"sim:strokes=30,seed=2\"\n"
                        "model = \"m.onnx\"\n\n"
                     << "[[asset]]\nid = \"press-08\"\nsource = \"fd:" << fds[0] << "\"\n"
                     << "model = \"m.onnx\"\ndeadline_s = 1.0\n";
  auto registry = MakeRegistry(&RegisterComponents_builtin);
  ASSERT_TRUE(registry) << registry.error().message;
  Collect collect;
  ASSERT_TRUE((*registry)->AddSink(CollectSink(&collect)));
  auto spec = LoadRunSpec(**registry, cfg, {});
  ASSERT_TRUE(spec) << spec.error().message;
  ASSERT_EQ(spec->assets.size(), 2u);
  EXPECT_DOUBLE_EQ(spec->assets[1].settings.GetFloat("agent.deadline_s"), 1.0);
  EXPECT_DOUBLE_EQ(spec->assets[0].settings.GetFloat("agent.deadline_s"), 3.3);
  auto rt = Runtime::Create(std::move(*spec), **registry);
  ASSERT_TRUE(rt) << rt.error().message;
  Status result;
  std::thread run([&] { result = (*rt)->Run(nullptr, nullptr); });

  // press-07 finishes while press-08 is stalled (a bound on a hang, not a speed check).
  const auto give_up = Clock::now() + std::chrono::seconds(120);
  while (!(*rt)->agent(0).finished() && Clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE((*rt)->agent(0).finished());
  EXPECT_FALSE((*rt)->agent(1).finished());
  EXPECT_EQ(collect.Of("press-08").size(), 0u);
  const auto a = collect.Of("press-07");

  // Now press-08's sensor delivers 6 strokes, then its stream ends.
  auto sim = sources::OpenSource("sim:strokes=6,seed=9", {});
  ASSERT_TRUE(sim);
  std::thread writer([&] {
    std::vector<float> buf(4096);
    for (;;) {
      auto n = (*sim)->Read(buf, buf.size());
      if (!n || *n == 0) break;
      const char* p = reinterpret_cast<const char*>(buf.data());
      size_t left = *n * sizeof(float);
      while (left > 0) {
        ssize_t w = ::write(fds[1], p, left);
        if (w <= 0) break;
        p += w;
        left -= static_cast<size_t>(w);
      }
    }
    ::close(fds[1]);
  });
  writer.join();
  run.join();
  ::close(fds[0]);
  ASSERT_TRUE(result) << result.error().message;

  const auto b = collect.Of("press-08");
  ASSERT_EQ(a.size(), 30u);
  ASSERT_EQ(b.size(), 6u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].window_index, static_cast<int64_t>(i));
    EXPECT_EQ(a[i].asset_id, "press-07");
    EXPECT_FALSE(a[i].fail_safe);
  }
  for (size_t i = 0; i < b.size(); ++i) {
    EXPECT_EQ(b[i].window_index, static_cast<int64_t>(i));
    EXPECT_EQ(b[i].asset_id, "press-08");
  }
  auto summary = (*rt)->Summary();
  ASSERT_EQ(summary["assets"].size(), 2u);
  EXPECT_EQ(summary["assets"][0]["asset_id"], "press-07");
  EXPECT_EQ(summary["assets"][0]["windows"], 30);
  EXPECT_EQ(summary["windows"].get<size_t>(), 30 + b.size());
  EXPECT_EQ(summary["overruns"], 0);
}

// #17.6: the telemetry worker reads the exporter's health figures until it stops, so the runtime
// stops and destroys telemetry before the exporter (before, `tend run` destroyed the exporter
// first: with health messages every millisecond a use-after-free every time; AddressSanitizer
// reports it in `make test-asan`). The health interval is below what a config may set (1 s), to
// make the window wide; the broker port is closed.
TEST_F(RuntimeAssets, TelemetryStopsBeforeTheExporterItReads) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);
  ::close(fd);  // nobody listens there
  auto registry = MakeRegistry(&RegisterComponents_builtin);
  ASSERT_TRUE(registry) << registry.error().message;
  for (int run = 0; run < 2; ++run) {  // each waits 5 s for the absent broker at the end
    FlagValues flags{{"agent.model", {*dir_ + "/m.onnx"}},
                     {"agent.source", {"sim:strokes=3,seed=4"}},
                     {"agent.speed", {"0"}},
                     {"output.quiet", {}},
                     {"metrics.port", {"0"}},
                     {"model.warmup_runs", {"1"}},
                     {"mqtt.url", {"mqtt://127.0.0.1:" + std::to_string(port)}},
                     {"agent.state_dir", {*dir_ + "/uaf-" + std::to_string(run)}},
                     {"identity.device_id", {"uaf"}}};
    auto spec = LoadRunSpec(**registry, "", flags);
    ASSERT_TRUE(spec) << spec.error().message;
    spec->device.Set("mqtt.health_interval_s", 0.001, "test");
    auto rt = Runtime::Create(std::move(*spec), **registry);
    ASSERT_TRUE(rt) << rt.error().message;
    ASSERT_TRUE((*rt)->Run(nullptr, nullptr));
    EXPECT_EQ((*rt)->agent(0).summary().windows, 3);
    rt->reset();  // every thread joined, in order: telemetry, then the exporter
  }
}

}  // namespace
}  // namespace tend::runtime
