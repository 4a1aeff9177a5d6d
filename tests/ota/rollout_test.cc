// Staged rollouts on the device side: the signed plan, the control statement (timestamp role,
// short expiry, replay floor), wave membership by a stable hash, pins and operator rollbacks as
// the updater applies them; and the rollback rules of issue #16: a rolled-back model is never a
// rollback target again, and a rollback made by another process reaches a running updater.
#include "ota/rollout.h"

#include <gtest/gtest.h>

#include <map>
#include <thread>

#include "ota/trust.h"
#include "ota/updater.h"
#include "ota_test_util.h"

namespace tend::ota {
namespace {

using namespace testing;
using nlohmann::json;

RolloutPlan Plan(const std::string& waves = "10,50,100", const std::string& soak = "1h",
                 int64_t abort_pct = 20, const std::string& salt = "press-ae") {
  auto p = MakeRolloutPlan(waves, soak, abort_pct, 1, salt);
  EXPECT_TRUE(p) << (p ? "" : p.error().message);
  return p ? *p : RolloutPlan{};
}

TEST(OtaRolloutPlan, ParsesChecksAndRoundTrips) {
  RolloutPlan p = Plan("5,25,100", "30m,2h,0");
  ASSERT_EQ(p.waves.size(), 3u);
  EXPECT_EQ(p.waves[0].percent, 5);
  EXPECT_EQ(p.waves[0].soak_s, 1800);
  EXPECT_EQ(p.waves[1].soak_s, 7200);
  auto back = ParseRolloutPlan(ToJson(p), "plan");
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(ToJson(*back), ToJson(p));
  // Every bad plan is refused with a message naming the problem.
  const std::map<std::string, std::string> bad = {{"50,25,100", "grow"},
                                                  {"5,25", "100 percent"},
                                                  {"0,100", "outside"},
                                                  {"5,x,100", "percents"}};
  for (const auto& [waves, needle] : bad) {
    auto r = MakeRolloutPlan(waves, "1h", 20, 1, "s");
    ASSERT_FALSE(r) << waves;
    EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
  }
  EXPECT_FALSE(MakeRolloutPlan("5,100", "1h,2h,3h", 20, 1, "s"));  // soak count
  EXPECT_FALSE(MakeRolloutPlan("5,100", "1w", 20, 1, "s"));        // unit
  EXPECT_FALSE(MakeRolloutPlan("5,100", "1h", 101, 1, "s"));       // abort percent
  EXPECT_FALSE(MakeRolloutPlan("5,100", "1h", 20, 1, "../x"));     // salt
  json j = ToJson(Plan());
  j["waves"] = json::array();
  EXPECT_FALSE(ParseRolloutPlan(j, "plan"));
  j = ToJson(Plan());
  j["waves"][0]["soak_s"] = "1h";
  EXPECT_FALSE(ParseRolloutPlan(j, "plan"));
}

// The hash is stable (same device, same salt, same wave forever) and spreads devices evenly.
TEST(OtaRolloutPlan, WavesByAStableHashOfTheDeviceId) {
  RolloutPlan p = Plan("10,50,100");
  std::vector<int> count(3, 0);
  for (int i = 0; i < 10000; ++i) count[WaveOf(p, "edge-" + std::to_string(i))] += 1;
  EXPECT_NEAR(count[0], 1000, 150);
  EXPECT_NEAR(count[1], 4000, 250);
  EXPECT_NEAR(count[2], 5000, 250);
  EXPECT_EQ(RolloutBucket("press-ae", "edge-7"), RolloutBucket("press-ae", "edge-7"));
  // A known value pins the hash across builds and machines: the console and the devices agree.
  EXPECT_EQ(RolloutBucket("press-ae", "edge-7"),
            static_cast<int64_t>(
                std::stoull(Sha256Hex(std::string("press-ae/edge-7")).substr(0, 16), nullptr, 16) %
                10000));
  RolloutPlan other = Plan("10,50,100", "1h", 20, "other-salt");
  int moved = 0;
  for (int i = 0; i < 1000; ++i) {
    moved += WaveOf(p, "edge-" + std::to_string(i)) != WaveOf(other, "edge-" + std::to_string(i));
  }
  EXPECT_GT(moved, 300);  // another salt picks other canaries
}

class OtaControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    reg_ = dir_ / "registry";
    key_ = NewKey();
    ASSERT_TRUE(WriteRoot(reg_, MakeRoot({key_}, 1, 1, kT0 + 365 * kDay), {key_}));
    auto env = ParseEnvelope(ReadText(reg_ + "/root.json"), "root");
    root_ = *ParseRoot(env->signed_part, "root");
  }
  ControlMeta Control(int64_t version, int64_t expires = kT0 + 600) {
    ControlMeta m;
    m.version = version;
    m.expires = expires;
    m.rollouts.push_back({kModel, 2, "running", 1, {kT0}, ""});
    m.pins.push_back({"edge-9", kModel, 1});
    m.rollbacks.push_back({"edge-3", kModel, 2, "r1", "bad model"});
    return m;
  }
  ScratchDir dir_;
  std::string reg_;
  KeyPair key_;
  RootMeta root_;
};

TEST_F(OtaControlTest, SignedByTheTimestampRoleWithExpiryAndReplayFloor) {
  ASSERT_TRUE(WriteControl(reg_, Control(3), {key_}));
  const std::string bytes = ReadText(reg_ + "/control.json");
  auto c = VerifyControl(root_, bytes, 0, kT0);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->version, 3);
  ASSERT_NE(c->FindRollout(kModel, 2), nullptr);
  EXPECT_EQ(c->FindRollout(kModel, 2)->open_waves, 1);
  EXPECT_EQ(*c->PinFor("edge-9", kModel), 1);
  EXPECT_FALSE(c->PinFor("edge-1", kModel));
  EXPECT_EQ(c->RollbackFor("edge-3", kModel)->request, "r1");
  // Expired, replayed below the floor, signed by another key, or tampered: refused.
  EXPECT_NE(VerifyControl(root_, bytes, 0, kT0 + 600).error().message.find("expired"),
            std::string::npos);
  EXPECT_NE(VerifyControl(root_, bytes, 4, kT0).error().message.find("replay"), std::string::npos);
  KeyPair mallory = NewKey();
  EXPECT_FALSE(WriteControl(reg_, Control(4), {mallory}));  // not a timestamp key of the root
  std::string forged = *SignEnvelope(ToJson(Control(5)), {mallory});
  EXPECT_EQ(VerifyControl(root_, forged, 0, kT0).error().code, ErrorCode::kSecurity);
  std::string flipped = bytes;
  flipped[flipped.find("running")] = 'R';
  EXPECT_EQ(VerifyControl(root_, flipped, 0, kT0).error().code, ErrorCode::kSecurity);
  // A timestamp.json is never taken for a control statement, nor the reverse.
  json ts = {{"_type", "timestamp"}, {"version", 9}, {"expires", FormatTime(kT0 + 600)}};
  EXPECT_NE(VerifyControl(root_, *SignEnvelope(ts, {key_}), 0, kT0).error().message.find("_type"),
            std::string::npos);
  // Malformed entries are named.
  json bad = ToJson(Control(6));
  bad["rollouts"][0]["state"] = "sideways";
  EXPECT_NE(ParseControl(bad, "c").error().message.find("sideways"), std::string::npos);
  bad = ToJson(Control(6));
  bad["pins"][0]["device"] = "has space";
  EXPECT_FALSE(ParseControl(bad, "c"));
  bad = ToJson(Control(6));
  bad["rollouts"][0]["opened"] = json::array();
  EXPECT_FALSE(ParseControl(bad, "c"));
  // Found by fuzz_rollout_control: times before 1970 parse but do not print back the same.
  bad = ToJson(Control(6));
  bad["expires"] = "0027-01-15T09:00:00Z";
  EXPECT_NE(ParseControl(bad, "c").error().message.find("1970"), std::string::npos);
}

TEST_F(OtaControlTest, GateOpensOnlyTheDevicesWaveWhileRunning) {
  TargetInfo t;
  t.name = kModel;
  t.version = 2;
  RolloutPlan plan = Plan("10,50,100");
  t.rollout = ToJson(plan);
  std::string first, last;  // a device of wave 1 and one of wave 3
  for (int i = 0; first.empty() || last.empty(); ++i) {
    std::string id = "edge-" + std::to_string(i);
    if (WaveOf(plan, id) == 0 && first.empty()) first = id;
    if (WaveOf(plan, id) == 2 && last.empty()) last = id;
  }
  ControlMeta c = Control(1);
  EXPECT_TRUE(GateRollout(t, &c, first)->allowed);
  auto g = GateRollout(t, &c, last);
  EXPECT_FALSE(g->allowed);
  EXPECT_NE(g->why.find("waiting for wave 3 of 3"), std::string::npos) << g->why;
  EXPECT_FALSE(GateRollout(t, nullptr, first)->allowed);  // no control: nothing opens
  c.rollouts[0].state = "paused";
  EXPECT_FALSE(GateRollout(t, &c, first)->allowed);
  c.rollouts[0].state = "aborted";
  c.rollouts[0].reason = "abort rule";
  EXPECT_NE(GateRollout(t, &c, first)->why.find("aborted: abort rule"), std::string::npos);
  c.rollouts.clear();
  EXPECT_NE(GateRollout(t, &c, first)->why.find("not started"), std::string::npos);
  t.rollout = nullptr;  // a release without a plan goes to everyone
  EXPECT_TRUE(GateRollout(t, nullptr, last)->allowed);
}

// The updater end to end over a directory registry: install only when the wave is open; pins,
// operator rollbacks, and the rollback rules of issue #16.
class OtaRolloutUpdaterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    reg_ = dir_ / "registry";
    dev_ = dir_ / "device";
    keys_ = {NewKey()};
    ASSERT_TRUE(WriteRoot(reg_, MakeRoot(keys_, 1, 1, kT0 + 365 * kDay), keys_));
    WriteText(dir_ / "pinned_root.json", ReadText(reg_ + "/root.json"));
    PublishFake(reg_, dir_, 1, 1, {kProfile}, keys_);
  }
  UpdaterOptions Options(const std::string& device = "edge-1") {
    UpdaterOptions o;
    o.model_dir = dev_;
    o.model_name = kModel;
    o.profile = kProfile;
    o.device_id = device;
    o.pinned_root_path = dir_ / "pinned_root.json";
    o.clock = [this] { return now_; };
    o.quality_gate = [](const std::string&) -> Result<double> { return 0.9; };
    o.on_commit = [this](const std::string& path) -> Status {
      commits_.push_back(path);
      return Ok();
    };
    return o;
  }
  std::unique_ptr<Updater> Make(const std::string& device = "edge-1") {
    auto u = Updater::Create(Options(device), std::move(*DirFetcher::Create(reg_)));
    EXPECT_TRUE(u) << (u ? "" : u.error().message);
    return u ? std::move(*u) : nullptr;
  }
  void PublishWithPlan(int seed, int64_t version, const RolloutPlan& plan) {
    std::string model = dir_ / ("m" + std::to_string(seed) + ".onnx");
    WriteText(model, FakeModel(seed));
    PublishOptions o;
    o.model_path = model;
    o.name = kModel;
    o.version = version;
    o.profiles = {kProfile};
    o.min_quality = 0.5;
    o.now = kT0;
    o.rollout = plan;
    ASSERT_TRUE(Publish(reg_, o, keys_));
  }
  void SignControl(int64_t open_waves, const std::string& state = "running",
                   std::vector<DevicePin> pins = {}, std::vector<DeviceRollback> rollbacks = {}) {
    ControlMeta m;
    m.version = ++control_version_;
    m.expires = now_ + 600;
    std::vector<int64_t> opened(static_cast<size_t>(open_waves), now_);
    m.rollouts.push_back({kModel, 2, state, open_waves, opened, ""});
    m.pins = std::move(pins);
    m.rollbacks = std::move(rollbacks);
    ASSERT_TRUE(WriteControl(reg_, m, keys_));
  }
  int64_t Current(const std::string& dir = "") {
    auto s = LoadState(dir.empty() ? dev_ : dir);
    return s && s->current ? s->current->version : -1;
  }

  ScratchDir dir_;
  std::string reg_, dev_;
  std::vector<KeyPair> keys_;
  int64_t now_ = kT0;
  int64_t control_version_ = 0;
  std::vector<std::string> commits_;
};

TEST_F(OtaRolloutUpdaterTest, InstallsOnlyWhenItsWaveIsOpen) {
  RolloutPlan plan = Plan("10,50,100");
  std::string canary, late;
  for (int i = 0; canary.empty() || late.empty(); ++i) {
    std::string id = "edge-" + std::to_string(i);
    if (WaveOf(plan, id) == 0 && canary.empty()) canary = id;
    if (WaveOf(plan, id) == 2 && late.empty()) late = id;
  }
  auto c = Make(canary);
  ASSERT_EQ(c->CheckOnce()->outcome, UpdateOutcome::kInstalled);  // v1 has no plan
  const std::string canary_dir = dev_;
  dev_ = dir_ / "late-device";
  auto l = Make(late);
  ASSERT_EQ(l->CheckOnce()->outcome, UpdateOutcome::kInstalled);
  PublishWithPlan(2, 2, plan);
  auto r = c->CheckOnce();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->outcome, UpdateOutcome::kUpToDate);
  EXPECT_NE(r->message.find("no valid control statement"), std::string::npos) << r->message;
  SignControl(0, "pending");
  EXPECT_NE(c->CheckOnce()->message.find("not started"), std::string::npos);
  SignControl(1);
  EXPECT_EQ(c->CheckOnce()->outcome, UpdateOutcome::kInstalled);
  EXPECT_EQ(Current(canary_dir), 2);

  // The late device waits for its wave, stops at an abort, and an expired statement opens nothing.
  SignControl(2);
  EXPECT_EQ(l->CheckOnce()->outcome, UpdateOutcome::kUpToDate);
  EXPECT_EQ(Current(), 1);
  EXPECT_NE(l->StatusJson()["last_result"].get<std::string>().find("waiting for wave 3"),
            std::string::npos);
  SignControl(3, "aborted");
  EXPECT_NE(l->CheckOnce()->message.find("aborted"), std::string::npos);
  SignControl(3);
  now_ += 601;  // the controller stopped re-signing: the statement expired
  EXPECT_EQ(l->CheckOnce()->outcome, UpdateOutcome::kUpToDate);
  EXPECT_EQ(Current(), 1);
  // A fresh statement opens the last wave; replaying an older one is refused by the floor.
  now_ += 100;
  const std::string older = ReadText(reg_ + "/control.json");
  SignControl(3);
  EXPECT_EQ(l->CheckOnce()->outcome, UpdateOutcome::kInstalled);
  EXPECT_EQ(Current(), 2);
  EXPECT_EQ(LoadState(dev_)->control_version, control_version_);
  WriteText(reg_ + "/control.json", older);
  EXPECT_FALSE(l->CheckControl().value_or(true));
  EXPECT_EQ(LoadState(dev_)->control_version, control_version_);
}

TEST_F(OtaRolloutUpdaterTest, PinCapsInstallsAndSurvivesAnExpiredStatement) {
  auto u = Make("edge-1");
  ASSERT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kInstalled);
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);  // no plan: everyone, unless pinned
  SignControl(0, "pending", {{"edge-1", kModel, 1}});
  auto r = u->CheckOnce();
  EXPECT_EQ(r->outcome, UpdateOutcome::kUpToDate);
  EXPECT_NE(r->message.find("pinned to v1"), std::string::npos) << r->message;
  EXPECT_EQ(u->StatusJson()["pin_max_version"], 1);
  now_ += 601;  // the statement expired: the pin holds
  EXPECT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kUpToDate);
  EXPECT_EQ(Current(), 1);
  SignControl(0, "pending");  // unpinned
  EXPECT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kInstalled);
  EXPECT_EQ(Current(), 2);
}

// An operator's rollback reaches the device through the signed statement, once, and only while
// the device still runs the version it names.
TEST_F(OtaRolloutUpdaterTest, OperatorRollbackFromTheControlStatement) {
  auto u = Make("edge-3");
  ASSERT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kInstalled);
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  ASSERT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kInstalled);
  commits_.clear();
  SignControl(0, "pending", {}, {{"edge-9", kModel, 2, "r1", "someone else"}});
  EXPECT_TRUE(*u->CheckControl());
  EXPECT_EQ(Current(), 2);
  SignControl(0, "pending", {}, {{"edge-3", kModel, 2, "r2", "false alarms"}});
  ASSERT_TRUE(u->CheckControl());
  EXPECT_EQ(Current(), 1);
  ASSERT_EQ(commits_.size(), 1u);
  EXPECT_EQ(commits_[0], dev_ + "/press-ae-v1.onnx");
  auto st = u->StatusJson();
  EXPECT_NE(st["last_rollback_reason"].get<std::string>().find("request r2): false alarms"),
            std::string::npos)
      << st.dump();
  EXPECT_EQ(st["updates"]["rolled_back"], 1);
  // Re-signed with the same request: nothing more happens (the device left v2 for good).
  SignControl(0, "pending", {}, {{"edge-3", kModel, 2, "r2", "false alarms"}});
  ASSERT_TRUE(u->CheckControl());
  EXPECT_EQ(commits_.size(), 1u);
  EXPECT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kUpToDate);  // v2 is rejected now
  EXPECT_EQ(Current(), 1);
}

// Issue #16 item 3: after a rollback (automatic here) the rejected model is not the backup, so a
// later manual rollback cannot reinstall it; its file is gone.
TEST_F(OtaRolloutUpdaterTest, RejectedModelNeverBecomesTheBackup) {
  auto u = Make();
  ASSERT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kInstalled);
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  ASSERT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kInstalled);
  ASSERT_TRUE(u->ReportMisbehaviour("alert storm"));
  auto s = LoadState(dev_);
  ASSERT_TRUE(s && s->current);
  EXPECT_EQ(s->current->version, 1);
  EXPECT_FALSE(s->backup.has_value());
  EXPECT_EQ(u->StatusJson()["backup_version"], 0);
  EXPECT_FALSE(fs::Exists(dev_ + "/press-ae-v2.onnx"));
  auto manual = RollbackState(dev_, "operator", now_);
  ASSERT_FALSE(manual);
  EXPECT_EQ(manual.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(Current(), 1);
  // The next release gets the proven v1 as its backup again.
  PublishFake(reg_, dir_, 3, 3, {kProfile}, keys_);
  ASSERT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kInstalled);
  EXPECT_EQ(LoadState(dev_)->backup->version, 1);
}

// Issue #16 item 2, in-process: `tend ota rollback` (RollbackState) changes the state file of a
// running updater; the updater adopts it and hands the backup to the pipeline, and its own next
// write does not undo the rollback.
TEST_F(OtaRolloutUpdaterTest, RollbackByAnotherProcessReachesTheRunningUpdater) {
  auto u = Make();
  ASSERT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kInstalled);
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  ASSERT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kInstalled);
  commits_.clear();
  EXPECT_FALSE(u->PollStateFile());  // nothing changed yet
  ASSERT_TRUE(RollbackState(dev_, "operator at the press", now_));
  EXPECT_TRUE(u->PollStateFile());
  ASSERT_EQ(commits_.size(), 1u);
  EXPECT_EQ(commits_[0], dev_ + "/press-ae-v1.onnx");
  EXPECT_EQ(u->CurrentModelPath(), dev_ + "/press-ae-v1.onnx");
  EXPECT_EQ(u->StatusJson()["updates"]["rolled_back"], 1);
  EXPECT_EQ(u->StatusJson()["last_rollback_reason"], "operator at the press");
  // The updater's next check writes the state again: the rollback stays.
  EXPECT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kUpToDate);
  EXPECT_EQ(Current(), 1);
  EXPECT_FALSE(fs::Exists(dev_ + "/press-ae-v2.onnx"));
}

// A rollback that lands while the updater is in the middle of a check: its write is refused
// (the state changed under it) and it adopts the rollback instead of overwriting it.
TEST_F(OtaRolloutUpdaterTest, ACheckNeverOverwritesAConcurrentRollback) {
  auto u = Make();
  ASSERT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kInstalled);
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  ASSERT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kInstalled);
  PublishFake(reg_, dir_, 3, 3, {kProfile}, keys_);
  UpdaterOptions o = Options();
  bool rolled = false;
  o.sync_point_for_test = [&](const char* step) {
    if (std::string(step) == "gated" && !rolled) {
      rolled = true;  // between the gate and the commit of v3
      ASSERT_TRUE(RollbackState(dev_, "operator", now_));
    }
  };
  auto w = Updater::Create(o, std::move(*DirFetcher::Create(reg_)));
  ASSERT_TRUE(w);
  auto r = (*w)->CheckOnce();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("changed on disk"), std::string::npos) << r.error().message;
  EXPECT_EQ(Current(), 1);  // the rollback stands
  EXPECT_EQ((*w)->CurrentModelPath(), dev_ + "/press-ae-v1.onnx");
  EXPECT_FALSE(fs::Exists(dev_ + "/press-ae-v3.onnx"));  // the staged v3 is not left behind
  // The next check installs v3 on top of the rolled-back state, with v1 as its backup.
  ASSERT_EQ((*w)->CheckOnce()->outcome, UpdateOutcome::kInstalled);
  auto s = LoadState(dev_);
  EXPECT_EQ(s->current->version, 3);
  EXPECT_EQ(s->backup->version, 1);
  EXPECT_NE(std::find(s->rejected_versions.begin(), s->rejected_versions.end(), 2),
            s->rejected_versions.end());
}

// The polling thread watches the state file: a rollback by another process reaches on_commit
// within the watch interval without any registry check.
TEST_F(OtaRolloutUpdaterTest, PollingThreadNoticesAnOutsideRollback) {
  auto u = Make();
  ASSERT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kInstalled);
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  ASSERT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kInstalled);
  UpdaterOptions o = Options();
  o.interval_s = 3600;  // no registry check during the test
  o.state_watch_s = 0.02;
  std::atomic<int> handed{0};
  std::string last;
  std::mutex mu;
  o.on_commit = [&](const std::string& path) -> Status {
    std::lock_guard<std::mutex> lock(mu);
    last = path;
    handed += 1;
    return Ok();
  };
  auto w = Updater::Create(o, std::move(*DirFetcher::Create(reg_)));
  ASSERT_TRUE(w);
  (*w)->Start();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // its first check ran
  const int before = handed.load();
  ASSERT_TRUE(RollbackState(dev_, "operator", now_));
  for (int i = 0; i < 500 && handed.load() == before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  (*w)->Stop();
  EXPECT_EQ(handed.load(), before + 1);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(last, dev_ + "/press-ae-v1.onnx");
}

}  // namespace
}  // namespace tend::ota
