// The updater end to end over a directory registry: each attack is refused and leaves the model
// directory (models and state file) byte-identical; the quality gate, probation and hand-over
// failures roll back; SIGKILL at any point of an update leaves a valid model.
#include "ota/updater.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "ota/trust.h"
#include "ota_test_util.h"

namespace tend::ota {
namespace {

using namespace testing;
using nlohmann::json;

class OtaUpdaterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    reg_ = dir_ / "registry";
    dev_ = dir_ / "device";
    keys_ = {NewKey()};
    MakeRegistry(1);
  }

  void MakeRegistry(int64_t threshold) {
    std::filesystem::remove_all(reg_);
    ASSERT_TRUE(WriteRoot(reg_, MakeRoot(keys_, threshold, 1, kT0 + 365 * kDay), keys_));
    WriteText(dir_ / "pinned_root.json", ReadText(reg_ + "/root.json"));
    v1_ = PublishFake(reg_, dir_, 1, 1, {kProfile}, keys_);
  }

  UpdaterOptions Options() {
    UpdaterOptions o;
    o.model_dir = dev_;
    o.model_name = kModel;
    o.profile = kProfile;
    o.pinned_root_path = dir_ / "pinned_root.json";
    o.clock = [this] { return now_; };
    o.quality_gate = [this](const std::string& path) -> Result<double> {
      gate_calls_ += 1;
      if (!gate_error_.empty()) return Fail(Error::Model(path + ": " + gate_error_));
      TEND_ASSIGN_OR_RETURN(auto bytes, fs::ReadBinaryFile(path));
      auto it = quality_.find(Sha256Hex(bytes));
      return it == quality_.end() ? 0.9 : it->second;
    };
    o.on_commit = [this](const std::string& path) -> Status {
      commits_.push_back(path);
      return commit_status_;
    };
    return o;
  }

  std::unique_ptr<Updater> MakeUpdater() {
    auto f = DirFetcher::Create(reg_);
    EXPECT_TRUE(f);
    auto u = Updater::Create(Options(), std::move(*f));
    EXPECT_TRUE(u) << (u ? "" : u.error().message);
    return u ? std::move(*u) : nullptr;
  }

  Result<UpdateReport> Check() {
    auto u = MakeUpdater();
    if (!u) return Fail(Error::Internal("no updater"));
    return u->CheckOnce();
  }

  void Install(int64_t version) {
    auto r = Check();
    ASSERT_TRUE(r) << r.error().message;
    ASSERT_EQ(r->outcome, UpdateOutcome::kInstalled) << r->message;
    ASSERT_EQ(r->version, version);
  }

  int64_t CurrentVersion() {
    auto s = LoadState(dev_);
    return s && s->current ? s->current->version : -1;
  }

  // Re-signs targets.json (after `edit`) and a timestamp pinning it, with `keys`.
  void Resign(const std::vector<KeyPair>& keys, const std::function<void(json&)>& edit = {}) {
    json t = json::parse(ReadText(reg_ + "/targets.json"))["signed"];
    if (edit) edit(t);
    t["version"] = t["version"].get<int64_t>() + 1;
    std::string tbytes = *SignEnvelope(t, keys);
    WriteText(reg_ + "/targets.json", tbytes);
    json s = json::parse(ReadText(reg_ + "/timestamp.json"))["signed"];
    s["version"] = s["version"].get<int64_t>() + 1;
    s["meta"]["targets.json"] = {{"version", t["version"]},
                                 {"length", tbytes.size()},
                                 {"hashes", {{"sha256", Sha256Hex(tbytes)}}}};
    WriteText(reg_ + "/timestamp.json", *SignEnvelope(s, keys));
  }

  // The update must fail with kSecurity naming `needle` and change nothing on the device.
  void ExpectRefusedUnchanged(const std::string& needle) {
    auto before = Snapshot(dev_);
    int64_t version = CurrentVersion();
    int gate_before = gate_calls_;
    auto r = Check();
    ASSERT_FALSE(r) << "expected a refusal containing \"" << needle << "\", got: " << r->message;
    EXPECT_EQ(r.error().code, ErrorCode::kSecurity) << r.error().message;
    EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
    EXPECT_EQ(Snapshot(dev_), before);
    EXPECT_EQ(CurrentVersion(), version);
    EXPECT_EQ(gate_calls_, gate_before);
  }

  void FlipByte(const std::string& path, size_t offset, uint8_t mask = 1) {
    std::string s = ReadText(path);
    ASSERT_LT(offset, s.size());
    s[offset] = static_cast<char>(s[offset] ^ mask);
    WriteText(path, s);
  }

  ScratchDir dir_;
  std::string reg_, dev_;
  std::vector<KeyPair> keys_;
  TargetInfo v1_;
  int64_t now_ = kT0 + 3600;
  int gate_calls_ = 0;
  std::string gate_error_;
  std::map<std::string, double> quality_;
  std::vector<std::string> commits_;
  Status commit_status_ = Ok();
};

TEST_F(OtaUpdaterTest, InstallsKeepsBackupAndCleansUp) {
  Install(1);
  EXPECT_EQ(ReadText(dev_ + "/press-ae-v1.onnx"), FakeModel(1));
  ASSERT_EQ(commits_.size(), 1u);
  EXPECT_EQ(commits_[0], dev_ + "/press-ae-v1.onnx");
  auto up_to_date = Check();
  ASSERT_TRUE(up_to_date);
  EXPECT_EQ(up_to_date->outcome, UpdateOutcome::kUpToDate);

  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  Install(2);
  auto s = LoadState(dev_);
  ASSERT_TRUE(s && s->current && s->backup);
  EXPECT_EQ(s->current->version, 2);
  EXPECT_EQ(s->backup->version, 1);
  EXPECT_DOUBLE_EQ(s->current->quality, 0.9);
  EXPECT_EQ(s->highest_version, 2);
  EXPECT_TRUE(fs::Exists(dev_ + "/press-ae-v1.onnx"));

  PublishFake(reg_, dir_, 3, 3, {kProfile}, keys_);
  now_ += 2 * kDay;  // v2 has finished its probation
  Install(3);
  EXPECT_FALSE(fs::Exists(dev_ + "/press-ae-v1.onnx"));  // the old backup goes
  EXPECT_TRUE(fs::Exists(dev_ + "/press-ae-v2.onnx"));   // the previous model stays
  EXPECT_EQ(ReadText(dev_ + "/press-ae-v3.onnx"), FakeModel(3));
  EXPECT_EQ(LoadState(dev_)->backup->version, 2);
}

// SPEC: the previous model is never deleted before the new one has run well for the probation
// period. A second release during probation supersedes the unproven model; the last proven one
// stays the backup, and a rollback from the newest lands on it.
TEST_F(OtaUpdaterTest, UpdateDuringProbationKeepsTheLastProvenModelAsBackup) {
  Install(1);
  now_ += 2 * kDay;
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  Install(2);  // backup v1 (proven), v2 in probation
  now_ += 3600;
  PublishFake(reg_, dir_, 3, 3, {kProfile}, keys_);
  auto u = MakeUpdater();
  ASSERT_TRUE(u->InProbation());
  auto r = u->CheckOnce();
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->outcome, UpdateOutcome::kInstalled);
  auto s = LoadState(dev_);
  ASSERT_TRUE(s && s->current && s->backup);
  EXPECT_EQ(s->current->version, 3);
  EXPECT_EQ(s->backup->version, 1);            // not the unproven v2
  EXPECT_EQ(s->probation_until, now_ + kDay);  // probation starts again for v3
  EXPECT_TRUE(fs::Exists(dev_ + "/press-ae-v1.onnx"));
  EXPECT_FALSE(fs::Exists(dev_ + "/press-ae-v2.onnx"));  // superseded, nothing refers to it
  EXPECT_TRUE(fs::Exists(dev_ + "/press-ae-v3.onnx"));
  EXPECT_EQ(u->StatusJson()["backup_version"], 1);

  ASSERT_TRUE(u->ReportMisbehaviour("alert storm"));
  EXPECT_EQ(CurrentVersion(), 1);
  EXPECT_EQ(commits_.back(), dev_ + "/press-ae-v1.onnx");
  EXPECT_FALSE(u->InProbation());

  // Once out of probation the usual rotation resumes: the current (proven) model is the backup.
  PublishFake(reg_, dir_, 4, 4, {kProfile}, keys_);
  ASSERT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kInstalled);
  s = LoadState(dev_);
  EXPECT_EQ(s->current->version, 4);
  EXPECT_EQ(s->backup->version, 1);
  EXPECT_FALSE(fs::Exists(dev_ + "/press-ae-v3.onnx"));  // the rolled-back one goes now
  // Probation of v4 ends; v5 then rotates v4 into the backup slot and v1 goes.
  now_ += kDay + 1;
  EXPECT_FALSE(u->InProbation());
  PublishFake(reg_, dir_, 5, 5, {kProfile}, keys_);
  ASSERT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kInstalled);
  s = LoadState(dev_);
  EXPECT_EQ(s->backup->version, 4);
  EXPECT_FALSE(fs::Exists(dev_ + "/press-ae-v1.onnx"));
}

// A failed hand-over during the probation of the model before it leaves no orphan file and the
// last proven model in service.
TEST_F(OtaUpdaterTest, FailedHandOverDuringProbationGoesBackToTheProvenModel) {
  Install(1);
  now_ += 2 * kDay;
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  Install(2);
  PublishFake(reg_, dir_, 3, 3, {kProfile}, keys_);
  commit_status_ = Fail(Error::Model("windowing differs"));
  auto u = MakeUpdater();
  auto r = u->CheckOnce();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->outcome, UpdateOutcome::kRejectedByGate);
  EXPECT_EQ(CurrentVersion(), 1);
  EXPECT_FALSE(fs::Exists(dev_ + "/press-ae-v2.onnx"));
  EXPECT_EQ(u->StatusJson()["updates"]["rolled_back"], 1);
  EXPECT_EQ(u->StatusJson()["updates"]["installed"], 0);
}

// The counters behind edge_ota_updates_total and the status fields behind the other OTA metrics.
TEST_F(OtaUpdaterTest, StatusCountsEveryOutcome) {
  auto u = MakeUpdater();
  json st = u->StatusJson();
  EXPECT_EQ(st["state"], "no-model");
  EXPECT_EQ(st["last_check_unix"], 0);
  ASSERT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kInstalled);  // v1
  st = u->StatusJson();
  EXPECT_EQ(st["state"], "probation");
  EXPECT_EQ(st["in_probation"], true);
  EXPECT_EQ(st["probation_remaining_s"], kDay);
  EXPECT_EQ(st["model_installed_unix"], now_);
  EXPECT_EQ(st["last_check_unix"], now_);
  EXPECT_FALSE(u->InProbation());  // no backup: nothing to roll back to
  TargetInfo v2 = PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  quality_[v2.sha256] = 0.1;
  ASSERT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kRejectedByGate);
  FlipByte(reg_ + "/timestamp.json", 40);
  ASSERT_FALSE(u->CheckOnce());
  now_ += 2 * kDay;
  st = u->StatusJson();
  EXPECT_EQ(st["state"], "serving");
  EXPECT_EQ(st["model_age_s"], 2 * kDay);
  EXPECT_EQ(st["updates"],
            json({{"installed", 1}, {"refused", 1}, {"rolled_back", 0}, {"failed", 1}}))
      << st.dump();
  EXPECT_EQ(st["checks"], 3);
  EXPECT_NE(st["last_error"].get<std::string>(), "");
}

// Staleness is logged at warn level once per day, not at every tick; a fresh model resets it.
TEST_F(OtaUpdaterTest, StaleWarningOncePerDay) {
  Install(1);
  auto u = MakeUpdater();
  EXPECT_FALSE(u->WarnIfStale());
  now_ += 8 * 7 * kDay + 1;
  EXPECT_TRUE(u->WarnIfStale());
  EXPECT_FALSE(u->WarnIfStale());
  now_ += kDay - 1;
  EXPECT_FALSE(u->WarnIfStale());
  now_ += 1;
  EXPECT_TRUE(u->WarnIfStale());
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_, now_);
  ASSERT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kInstalled);
  EXPECT_FALSE(u->WarnIfStale());
  EXPECT_FALSE(u->Stale());
}

TEST_F(OtaUpdaterTest, AttackUnsignedMetadata) {
  Install(1);
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  json ts = json::parse(ReadText(reg_ + "/timestamp.json"));
  ts.erase("signatures");
  WriteText(reg_ + "/timestamp.json", ts.dump());
  ExpectRefusedUnchanged("unsigned");
}

// Issue 17, defect 1: 80,000 nested arrays in unsigned metadata overflowed the stack (the copy of
// the signed part) before any signature was checked; `tend ota check` and the agent died.
TEST_F(OtaUpdaterTest, AttackDeeplyNestedMetadataIsRefusedNotACrash) {
  Install(1);
  std::string nested(80000, '[');
  nested += std::string(80000, ']');
  const std::string doc =
      R"({"signed": {"_type": "timestamp", "x": )" + nested + R"(}, "signatures": []})";
  for (const char* file : {"timestamp.json", "2.root.json"}) {
    const std::string path = reg_ + "/" + file;
    const std::string saved = fs::Exists(path) ? ReadText(path) : "";
    WriteText(path, doc);
    auto before = Snapshot(dev_);
    auto r = Check();
    ASSERT_FALSE(r) << file;
    EXPECT_EQ(r.error().code, ErrorCode::kCorrupt) << r.error().message;
    EXPECT_NE(r.error().message.find("JSON nested deeper than"), std::string::npos)
        << r.error().message;
    EXPECT_EQ(Snapshot(dev_), before) << file;
    if (saved.empty()) {
      std::filesystem::remove(path);
    } else {
      WriteText(path, saved);
    }
  }
  // The registry repaired, the device updates as usual: nothing was poisoned.
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  Install(2);
}

TEST_F(OtaUpdaterTest, AttackWrongKey) {
  Install(1);
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  Resign({NewKey()});
  ExpectRefusedUnchanged("0 valid signature(s)");
}

TEST_F(OtaUpdaterTest, AttackFlippedBitInModel) {
  Install(1);
  TargetInfo v2 = PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  FlipByte(reg_ + "/" + v2.path, 1234, 0x08);
  ExpectRefusedUnchanged("SHA-256 differs from the signed one");
}

TEST_F(OtaUpdaterTest, AttackFlippedBitInTargets) {
  Install(1);
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  std::string t = ReadText(reg_ + "/targets.json");
  FlipByte(reg_ + "/targets.json", t.find("\"min_quality\": 0.5") + 17, 0x02);  // 0.5 -> 0.7
  ExpectRefusedUnchanged("SHA-256 differs from the one the timestamp pins");
}

TEST_F(OtaUpdaterTest, AttackFlippedBitInTimestamp) {
  Install(1);
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  std::string ts = ReadText(reg_ + "/timestamp.json");
  size_t pos = ts.find("\"sha256\": \"") + 11;
  FlipByte(reg_ + "/timestamp.json", pos, 0x01);
  ExpectRefusedUnchanged("valid signature(s)");
}

TEST_F(OtaUpdaterTest, AttackRollbackByReplayingOldMetadata) {
  std::string old_ts = ReadText(reg_ + "/timestamp.json");
  std::string old_targets = ReadText(reg_ + "/targets.json");
  Install(1);
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  Install(2);
  WriteText(reg_ + "/timestamp.json", old_ts);
  WriteText(reg_ + "/targets.json", old_targets);
  ExpectRefusedUnchanged("rollback");
  EXPECT_EQ(CurrentVersion(), 2);
}

TEST_F(OtaUpdaterTest, AttackRollbackToAnOlderModelInFreshlySignedMetadata) {
  Install(1);
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  Install(2);
  // A newer targets.json that lists only v1 (a publisher mistake, or a stolen targets key).
  Resign(keys_, [&](json& t) {
    for (auto it = t["targets"].begin(); it != t["targets"].end();) {
      it = it.value()["custom"]["version"] == 2 ? t["targets"].erase(it) : std::next(it);
    }
  });
  auto models_before = Snapshot(dev_);
  models_before.erase(kStateFile);
  auto r = Check();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kSecurity);
  EXPECT_NE(r.error().message.find("older than v2 already installed"), std::string::npos)
      << r.error().message;
  auto models_after = Snapshot(dev_);
  models_after.erase(kStateFile);  // the trust floors advance: the metadata itself is genuine
  EXPECT_EQ(models_after, models_before);
  EXPECT_EQ(CurrentVersion(), 2);
}

TEST_F(OtaUpdaterTest, AttackExpiredMetadataAndFreeze) {
  std::string first_ts = ReadText(reg_ + "/timestamp.json");  // expires kT0 + 30 days
  Install(1);
  now_ = kT0 + 31 * kDay;
  ExpectRefusedUnchanged("timestamp.json: expired");
  // The publisher refreshes the timestamp; the device sees it at day 40.
  ASSERT_TRUE(RefreshTimestamp(reg_, keys_, kT0 + 20 * kDay, 30 * kDay));
  now_ = kT0 + 40 * kDay;
  auto ok = Check();
  ASSERT_TRUE(ok) << ok.error().message;
  // Freeze: the server replays the first timestamp and the device clock is set back to day 1,
  // when it was still valid. The device's time floor (day 40) sees through it.
  WriteText(reg_ + "/timestamp.json", first_ts);
  now_ = kT0 + 1 * kDay;
  ExpectRefusedUnchanged("expired at 2027-02-14T08:00:00Z (trusted time is 2027-02-24T08:00:00Z)");
}

TEST_F(OtaUpdaterTest, AttackOneSignatureCountedTwice) {
  keys_ = {NewKey(), NewKey()};
  MakeRegistry(2);
  Install(1);
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  json ts = json::parse(ReadText(reg_ + "/timestamp.json"));
  ts["signatures"] = {ts["signatures"][0], ts["signatures"][0]};
  WriteText(reg_ + "/timestamp.json", ts.dump(2));
  ExpectRefusedUnchanged("1 valid signature(s) from timestamp keys, threshold is 2");
}

TEST_F(OtaUpdaterTest, AttackMixAndMatch) {
  Install(1);
  std::string v1_targets = ReadText(reg_ + "/targets.json");
  TargetInfo v2 = PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  // v1's (signed, genuine) file served under v2's path.
  std::string v2_file = ReadText(reg_ + "/" + v2.path);
  WriteText(reg_ + "/" + v2.path, FakeModel(1));
  ExpectRefusedUnchanged("SHA-256 differs from the signed one");
  WriteText(reg_ + "/" + v2.path, v2_file);
  // v1's targets.json under v2's timestamp.
  WriteText(reg_ + "/targets.json", v1_targets);
  ExpectRefusedUnchanged("targets.json");
}

TEST_F(OtaUpdaterTest, AttackDotDotPath) {
  Install(1);
  TargetInfo v2 = PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  Resign(keys_, [&](json& t) {
    json entry = t["targets"][v2.path];
    t["targets"].erase(v2.path);
    t["targets"]["../../device/press-ae-v1.onnx"] = entry;
  });
  ExpectRefusedUnchanged("'.' or '..' component");
}

TEST_F(OtaUpdaterTest, EndlessDataFromADirectoryIsCappedToo) {
  Install(1);
  TargetInfo v2 = PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  WriteText(reg_ + "/" + v2.path, FakeModel(2) + std::string(1 << 20, 'x'));
  ExpectRefusedUnchanged("more than the 3000 allowed");
}

TEST_F(OtaUpdaterTest, ModelForAnotherProfileIsNeverFetched) {
  Install(1);
  TargetInfo v2 = PublishFake(reg_, dir_, 2, 2, {"jetson-agx-orin-int8"}, keys_);
  auto models_before = Snapshot(dev_);
  models_before.erase(kStateFile);
  auto r = Check();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->outcome, UpdateOutcome::kUpToDate);
  EXPECT_EQ(r->version, 1);
  auto models_after = Snapshot(dev_);
  models_after.erase(kStateFile);
  EXPECT_EQ(models_after, models_before);
  EXPECT_EQ(CurrentVersion(), 1);
  EXPECT_EQ(gate_calls_, 1);  // only v1's
}

TEST_F(OtaUpdaterTest, ModelWhoseInputsDoNotMatchIsRolledBack) {
  Install(1);
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  gate_error_ = "input 'features' has 12 values, the feature spec gives 40";
  auto r = Check();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->outcome, UpdateOutcome::kRejectedByGate);
  EXPECT_NE(r->message.find("input 'features' has 12 values"), std::string::npos);
  EXPECT_EQ(CurrentVersion(), 1);
  EXPECT_FALSE(fs::Exists(dev_ + "/press-ae-v2.onnx"));
  EXPECT_EQ(commits_.size(), 1u);
}

TEST_F(OtaUpdaterTest, LoadCheckRefusesBeforeTheGateRuns) {
  Install(1);
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  UpdaterOptions o = Options();
  o.load_check = [](const std::string& path) -> Status {
    return Fail(Error::Model(path + ": input 'x' is [1,12], the feature spec gives 40 features"));
  };
  auto u = Updater::Create(o, std::move(*DirFetcher::Create(reg_)));
  ASSERT_TRUE(u);
  int calls = gate_calls_;
  auto r = (*u)->CheckOnce();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->outcome, UpdateOutcome::kRejectedByGate);
  EXPECT_NE(r->message.find("candidate does not load"), std::string::npos) << r->message;
  EXPECT_EQ(gate_calls_, calls);
  EXPECT_EQ(CurrentVersion(), 1);
}

TEST_F(OtaUpdaterTest, NoGateMeansNoInstallUnlessTheOperatorAllowsIt) {
  UpdaterOptions o = Options();
  o.quality_gate = nullptr;
  auto u = Updater::Create(o, std::move(*DirFetcher::Create(reg_)));
  ASSERT_TRUE(u);
  auto r = (*u)->CheckOnce();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("no quality gate is configured"), std::string::npos);
  EXPECT_NE(r.error().message.find("set allow_unmeasured_quality"), std::string::npos)
      << "the refusal names the way out: " << r.error().message;
  // A configuration problem, not the release's: nothing fetched, the version not blacklisted.
  EXPECT_FALSE(fs::Exists(dev_ + "/press-ae-v1.onnx"));
  EXPECT_TRUE(LoadState(dev_)->rejected_versions.empty());
  o.allow_unmeasured_quality = true;  // the operator's explicit choice
  u = Updater::Create(o, std::move(*DirFetcher::Create(reg_)));
  ASSERT_TRUE(u);
  r = (*u)->CheckOnce();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->outcome, UpdateOutcome::kInstalled);
  EXPECT_EQ(LoadState(dev_)->current->quality, -1);
}

TEST_F(OtaUpdaterTest, WorseModelIsRolledBackAutomaticallyAndReported) {
  Install(1);
  TargetInfo v2 = PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  quality_[v2.sha256] = 0.3;  // the release asks for >= 0.5
  auto u = MakeUpdater();
  auto r = u->CheckOnce();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->outcome, UpdateOutcome::kRejectedByGate);
  EXPECT_DOUBLE_EQ(r->quality, 0.3);
  EXPECT_EQ(CurrentVersion(), 1);
  EXPECT_EQ(u->CurrentModelPath(), dev_ + "/press-ae-v1.onnx");
  json status = u->StatusJson();
  EXPECT_EQ(status["rollbacks"], 1);
  EXPECT_NE(status["last_rollback_reason"].get<std::string>().find("below the threshold 0.5"),
            std::string::npos)
      << status.dump();
  EXPECT_EQ(status["current_version"], 1);
  // A device-side threshold above the signed one wins too; and v2 is not retried.
  int calls = gate_calls_;
  auto again = u->CheckOnce();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->outcome, UpdateOutcome::kUpToDate);
  EXPECT_EQ(gate_calls_, calls);
}

TEST_F(OtaUpdaterTest, DeploymentThresholdAboveTheSignedOne) {
  Install(1);
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);  // signed min_quality 0.5, scores 0.9
  auto f = DirFetcher::Create(reg_);
  UpdaterOptions o = Options();
  o.min_quality = 0.95;
  auto u = Updater::Create(o, std::move(*f));
  ASSERT_TRUE(u);
  auto r = (*u)->CheckOnce();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->outcome, UpdateOutcome::kRejectedByGate);
  EXPECT_EQ(CurrentVersion(), 1);
}

TEST_F(OtaUpdaterTest, MisbehaviourDuringProbationRollsBack) {
  Install(1);
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  auto u = MakeUpdater();
  ASSERT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kInstalled);
  ASSERT_TRUE(u->ReportMisbehaviour("12 scoring errors in 100 windows"));
  EXPECT_EQ(CurrentVersion(), 1);
  EXPECT_EQ(commits_.back(), dev_ + "/press-ae-v1.onnx");
  EXPECT_EQ(u->StatusJson()["rollbacks"], 1);
  // v2 is not installed again.
  ASSERT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kUpToDate);
  EXPECT_EQ(CurrentVersion(), 1);

  // Outside probation a report only logs.
  PublishFake(reg_, dir_, 3, 3, {kProfile}, keys_);
  ASSERT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kInstalled);
  now_ += 2 * kDay;
  ASSERT_TRUE(u->ReportMisbehaviour("late"));
  EXPECT_EQ(CurrentVersion(), 3);
}

// The model the device starts with (--model) is adopted as v0: the first OTA update then has a
// backup to roll back to. An unchanged start-up file does not undo later updates on restart;
// other bytes at that path (the operator deployed a new model) take over, with OTA's as backup.
TEST_F(OtaUpdaterTest, StartupModelIsAdoptedAsTheFirstBackup) {
  const std::string local = dir_ / "local.onnx";
  WriteText(local, FakeModel(100));
  auto u = MakeUpdater();
  auto adopted = u->AdoptStartupModel(local);
  ASSERT_TRUE(adopted) << adopted.error().message;
  const std::string v0 = dev_ + "/press-ae-v0-" + Sha256Hex(FakeModel(100)).substr(0, 12) + ".onnx";
  EXPECT_EQ(*adopted, v0);
  EXPECT_EQ(ReadText(v0), FakeModel(100));
  EXPECT_EQ(CurrentVersion(), 0);
  EXPECT_EQ(LoadState(dev_)->highest_version, 0);  // v0 raises no anti-rollback floor
  EXPECT_TRUE(commits_.empty());                   // the agent is not running yet
  auto before = Snapshot(dev_);
  ASSERT_EQ(*u->AdoptStartupModel(local), v0);
  EXPECT_EQ(Snapshot(dev_), before);

  // First OTA update: v0 is the backup, so misbehaviour in probation has somewhere to go.
  ASSERT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kInstalled);
  EXPECT_EQ(LoadState(dev_)->backup->version, 0);
  ASSERT_TRUE(u->ReportMisbehaviour("alert storm"));
  EXPECT_EQ(CurrentVersion(), 0);
  EXPECT_EQ(commits_.back(), v0);

  // v2 installs and proves itself; a restart with the same start-up file keeps v2.
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  ASSERT_EQ(u->CheckOnce()->outcome, UpdateOutcome::kInstalled);
  now_ += 2 * kDay;
  u.reset();
  u = MakeUpdater();
  EXPECT_EQ(*u->AdoptStartupModel(local), dev_ + "/press-ae-v2.onnx");
  EXPECT_EQ(CurrentVersion(), 2);

  // The operator deploys a new start-up model: it serves, v2 is its backup, the old v0 goes.
  WriteText(local, FakeModel(101));
  auto redeployed = u->AdoptStartupModel(local);
  ASSERT_TRUE(redeployed) << redeployed.error().message;
  EXPECT_NE(*redeployed, v0);
  EXPECT_EQ(ReadText(*redeployed), FakeModel(101));
  auto s = LoadState(dev_);
  ASSERT_TRUE(s && s->current && s->backup);
  EXPECT_EQ(s->current->version, 0);
  EXPECT_EQ(s->backup->version, 2);
  EXPECT_EQ(s->highest_version, 2);
  EXPECT_FALSE(fs::Exists(v0));
  EXPECT_FALSE(u->InProbation());
  // A missing start-up file is an error naming it, and changes nothing.
  before = Snapshot(dev_);
  auto missing = u->AdoptStartupModel(dir_ / "nope.onnx");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("nope.onnx"), std::string::npos)
      << missing.error().message;
  EXPECT_EQ(Snapshot(dev_), before);
}

// A start-up model that carries its own version (its card says 7) is adopted under that version,
// so that the log, the metrics and OTA name it the same; it still raises no anti-rollback floor.
TEST_F(OtaUpdaterTest, StartupModelKeepsItsOwnVersion) {
  const std::string local = dir_ / "local.onnx";
  WriteText(local, FakeModel(100));
  auto u = MakeUpdater();
  auto adopted = u->AdoptStartupModel(local, 7);
  ASSERT_TRUE(adopted) << adopted.error().message;
  EXPECT_EQ(*adopted,
            dev_ + "/press-ae-v7-" + Sha256Hex(FakeModel(100)).substr(0, 12) + ".onnx");
  EXPECT_EQ(CurrentVersion(), 7);
  EXPECT_EQ(LoadState(dev_)->highest_version, 0);
  EXPECT_EQ(u->StatusJson()["current_version"], 7);
}

TEST_F(OtaUpdaterTest, FailedHandOverRollsBack) {
  Install(1);
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  commit_status_ = Fail(Error::Model("windowing differs from the running model"));
  auto r = Check();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->outcome, UpdateOutcome::kRejectedByGate);
  EXPECT_EQ(CurrentVersion(), 1);
  auto s = LoadState(dev_);
  EXPECT_NE(s->last_rollback_reason.find("windowing differs"), std::string::npos);
}

TEST_F(OtaUpdaterTest, ManualRollback) {
  Install(1);
  auto none = RollbackState(dev_, "operator", now_);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::kNotFound);
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  Install(2);
  // A corrupt backup is never rolled back to.
  const std::string good = ReadText(dev_ + "/press-ae-v1.onnx");
  FlipByte(dev_ + "/press-ae-v1.onnx", 10);
  EXPECT_EQ(RollbackState(dev_, "again", now_).error().code, ErrorCode::kCorrupt);
  EXPECT_EQ(CurrentVersion(), 2);
  WriteText(dev_ + "/press-ae-v1.onnx", good);
  auto s = RollbackState(dev_, "operator", now_);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->current->version, 1);
  EXPECT_EQ(CurrentVersion(), 1);
  // The model rolled back from is no rollback target any more (issue #16 item 3).
  EXPECT_FALSE(s->backup.has_value());
  EXPECT_FALSE(fs::Exists(dev_ + "/press-ae-v2.onnx"));
  EXPECT_EQ(RollbackState(dev_, "again", now_).error().code, ErrorCode::kNotFound);
}

TEST_F(OtaUpdaterTest, RootRotationIsFollowedAndTheOldKeyRetired) {
  Install(1);
  KeyPair old_key = keys_[0], new_key = NewKey();
  ASSERT_TRUE(WriteRoot(reg_, MakeRoot({new_key}, 1, 2, kT0 + 365 * kDay), {old_key, new_key}));
  keys_ = {new_key};
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  Install(2);
  EXPECT_EQ(LoadState(dev_)->root_version, 2);
  PublishFake(reg_, dir_, 3, 3, {kProfile}, keys_);
  Resign({old_key});  // a stolen, retired key
  ExpectRefusedUnchanged("0 valid signature(s)");
  // An attacker's root 3 signed by the retired key only.
  json r3 = ToJson(MakeRoot({old_key}, 1, 3, kT0 + 365 * kDay));
  WriteText(reg_ + "/3.root.json", *SignEnvelope(r3, {old_key}));
  ExpectRefusedUnchanged("3.root.json");
}

// `tend registry rotate-root` then `tend registry refresh` (#16 item 8): refresh used to re-sign
// only timestamp.json, so targets.json kept the retired key's signature and every device that
// followed the new root refused the registry. Refresh now re-signs targets.json too.
TEST_F(OtaUpdaterTest, RefreshAfterRootRotationLeavesARegistryDevicesAccept) {
  Install(1);
  KeyPair old_key = keys_[0], new_key = NewKey();
  ASSERT_TRUE(WriteRoot(reg_, MakeRoot({new_key}, 1, 2, kT0 + 365 * kDay), {old_key, new_key}));
  auto refreshed = RefreshTimestamp(reg_, {new_key}, now_, 30 * kDay);
  ASSERT_TRUE(refreshed) << refreshed.error().message;
  EXPECT_TRUE(*refreshed) << "targets.json re-signed with the new root's key";
  auto r = Check();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(LoadState(dev_)->root_version, 2);
  EXPECT_EQ(CurrentVersion(), 1);
  refreshed = RefreshTimestamp(reg_, {new_key}, now_, 30 * kDay);
  ASSERT_TRUE(refreshed);
  EXPECT_FALSE(*refreshed) << "nothing left to re-sign";
  EXPECT_FALSE(RefreshTimestamp(reg_, {old_key}, now_, 30 * kDay)) << "a retired key";
  keys_ = {new_key};
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  Install(2);
}

TEST_F(OtaUpdaterTest, ExpiredRootIsRefused) {
  Install(1);
  now_ = kT0 + 366 * kDay;
  ExpectRefusedUnchanged("root.json: expired");
}

TEST_F(OtaUpdaterTest, BadConfigurationAndTamperedState) {
  auto f = DirFetcher::Create(reg_);
  UpdaterOptions o = Options();
  o.pinned_root_path = dir_ / "missing.json";
  EXPECT_EQ(Updater::Create(o, std::move(*f)).error().code, ErrorCode::kNotFound);
  o = Options();
  o.profile = "../x";
  EXPECT_EQ(Updater::Create(o, std::move(*DirFetcher::Create(reg_))).error().code,
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(DirFetcher::Create(dir_ / "nope").error().code, ErrorCode::kNotFound);
  Install(1);
  // A trusted root swapped on disk for one signed by someone else.
  auto s = LoadState(dev_);
  KeyPair mallory = NewKey();
  json evil = ToJson(MakeRoot({mallory}, 1, 1, kT0 + 365 * kDay));
  json st = s->ToJson();
  st["trusted_root"] = *SignEnvelope(evil, {keys_[0]});
  WriteText(dev_ + "/" + kStateFile, st.dump());
  auto u = Updater::Create(Options(), std::move(*DirFetcher::Create(reg_)));
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code, ErrorCode::kSecurity);
  // Found by fuzz_ota_metadata: a state file without "backup" (or "current") threw out of
  // OtaState::FromJson and ended the process; it is a corrupt state file.
  for (const char* slot : {"backup", "current"}) {
    json partial = s->ToJson();
    partial.erase(slot);
    WriteText(dev_ + "/" + kStateFile, partial.dump());
    auto r = LoadState(dev_);
    ASSERT_FALSE(r) << slot;
    EXPECT_EQ(r.error().code, ErrorCode::kCorrupt);
    EXPECT_NE(r.error().message.find(std::string("missing \"") + slot), std::string::npos)
        << r.error().message;
  }
}

TEST_F(OtaUpdaterTest, StartupRecoveryFallsBackAndCleansLeftovers) {
  Install(1);
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  Install(2);
  WriteText(dev_ + "/.press-ae-v3.onnx.staging", "partial");
  WriteText(dev_ + "/press-ae-v3.onnx", "orphan");
  WriteText(dev_ + "/factory.onnx", "not ours");
  FlipByte(dev_ + "/press-ae-v2.onnx", 7);
  auto u = MakeUpdater();
  ASSERT_TRUE(u);
  EXPECT_EQ(u->CurrentModelPath(), dev_ + "/press-ae-v1.onnx");
  EXPECT_FALSE(fs::Exists(dev_ + "/.press-ae-v3.onnx.staging"));
  EXPECT_FALSE(fs::Exists(dev_ + "/press-ae-v3.onnx"));
  EXPECT_TRUE(fs::Exists(dev_ + "/factory.onnx"));
  // Both corrupt: a clear error rather than serving garbage.
  FlipByte(dev_ + "/press-ae-v1.onnx", 7);
  auto none = RecoverState(dev_);
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("neither the current model nor a backup"), std::string::npos);
}

TEST_F(OtaUpdaterTest, StalenessAlert) {
  Install(1);
  auto u = MakeUpdater();
  EXPECT_FALSE(u->Stale());
  now_ += 8 * 7 * kDay + 1;
  EXPECT_TRUE(u->Stale());
  EXPECT_EQ(u->StatusJson()["stale"], true);
}

TEST_F(OtaUpdaterTest, PollingThreadInstallsAndStops) {
  auto f = DirFetcher::Create(reg_);
  UpdaterOptions o = Options();
  o.interval_s = 0.01;
  o.jitter = 0.5;
  std::atomic<int> commits{0};
  o.on_commit = [&](const std::string&) -> Status {
    commits += 1;
    return Ok();
  };
  auto u = Updater::Create(o, std::move(*f));
  ASSERT_TRUE(u);
  (*u)->Start();
  for (int i = 0; i < 2000 && (*u)->CurrentModelPath().empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  (*u)->Stop();
  EXPECT_EQ((*u)->CurrentModelPath(), dev_ + "/press-ae-v1.onnx");
  EXPECT_EQ(commits.load(), 1);
  EXPECT_GE((*u)->StatusJson()["checks"].get<int64_t>(), 1);
}

// SQLite-style crash testing: kill the updating process at every durable step, then at 100 random
// moments, and check that a restart always finds a valid model and can finish the update.
TEST_F(OtaUpdaterTest, SigkillAtAnyStepLeavesAValidModel) {
  Install(1);
  PublishFake(reg_, dir_, 2, 2, {kProfile}, keys_);
  const std::string golden = dir_ / "golden";
  CopyDir(dev_, golden);

  // Runs one update in a child; kill_step names a sync point, or delay_us >= 0 kills from outside.
  auto run_child = [&](const char* kill_step, int64_t delay_us) {
    pid_t pid = ::fork();
    if (pid == 0) {
      UpdaterOptions o = Options();
      o.sync_point_for_test = [kill_step](const char* step) {
        if (kill_step && std::strcmp(step, kill_step) == 0) ::raise(SIGKILL);
      };
      auto f = DirFetcher::Create(reg_);
      auto u = Updater::Create(o, std::move(*f));
      if (!u) ::_exit(3);
      auto r = (*u)->CheckOnce();
      ::_exit(r && r->outcome == UpdateOutcome::kInstalled ? 0 : 4);
    }
    if (delay_us >= 0) {
      std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
      ::kill(pid, SIGKILL);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return status;
  };
  int ended_v1 = 0, ended_v2 = 0;
  auto check_restart = [&](const std::string& what) {
    auto s = RecoverState(dev_);
    ASSERT_TRUE(s) << what << ": " << s.error().message;
    ASSERT_TRUE(s->current) << what;
    EXPECT_EQ(s->rollbacks, 0) << what << ": recovery had to fall back to the backup";
    EXPECT_EQ(ReadText(dev_ + "/" + s->current->file),
              FakeModel(static_cast<int>(s->current->version)))
        << what;
    (s->current->version == 1 ? ended_v1 : ended_v2) += 1;
    for (const auto& [name, bytes] : Snapshot(dev_)) {
      EXPECT_EQ(name.find("staging"), std::string::npos) << what << ": leftover " << name;
    }
    // And the restarted device finishes the update.
    auto r = Check();
    ASSERT_TRUE(r) << what << ": " << r.error().message;
    EXPECT_EQ(CurrentVersion(), 2) << what;
  };

  for (const char* step :
       {"staged-temp", "staged", "gated", "committed", "handed-over", "cleaned"}) {
    CopyDir(golden, dev_);
    int status = run_child(step, -1);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << step;
    check_restart(step);
  }

  // How long an uninterrupted update takes here, to spread the random kills over it.
  CopyDir(golden, dev_);
  auto t0 = std::chrono::steady_clock::now();
  int status = run_child(nullptr, -1);
  auto full_us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  std::mt19937 rng(20261129);
  std::uniform_int_distribution<int64_t> delay(0, full_us + full_us / 4);
  for (int i = 0; i < 100; ++i) {
    CopyDir(golden, dev_);
    run_child(nullptr, delay(rng));
    check_restart("random kill " + std::to_string(i));
    if (HasFatalFailure()) return;
  }
  std::cout << "[ crash    ] 106 kills: restart found v1 " << ended_v1 << " times, v2 " << ended_v2
            << " times (full update " << full_us << " us)\n";
  EXPECT_EQ(ended_v1 + ended_v2, 106);
}

}  // namespace
}  // namespace tend::ota
