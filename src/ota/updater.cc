#include "ota/updater.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>

#include "core/fs.h"
#include "core/log.h"
#include "ota/crypto.h"
#include "ota/trust.h"

namespace tend::ota {
namespace {

using nlohmann::json;

std::string ModelFileName(const std::string& name, int64_t version) {
  return name + "-v" + std::to_string(version) + ".onnx";
}

int64_t SystemNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The file a slot names must hold exactly the bytes recorded for it.
Status VerifySlot(const std::string& dir, const ModelSlot& slot) {
  TEND_ASSIGN_OR_RETURN(auto bytes, fs::ReadBinaryFile(fs::JoinPath(dir, slot.file)));
  if (static_cast<int64_t>(bytes.size()) != slot.length || Sha256Hex(bytes) != slot.sha256) {
    return Fail(Error::Corrupt(fs::JoinPath(dir, slot.file) +
                               ": contents differ from the installed v" +
                               std::to_string(slot.version)));
  }
  return Ok();
}

json SlotJson(const std::optional<ModelSlot>& s) {
  if (!s) return nullptr;
  return {{"file", s->file},
          {"version", s->version},
          {"sha256", s->sha256},
          {"length", s->length},
          {"installed_unix", s->installed_unix},
          {"quality", s->quality}};
}

Result<std::optional<ModelSlot>> SlotFromJson(const json& j, const std::string& what) {
  if (j.is_null()) return std::optional<ModelSlot>();
  try {
    ModelSlot s;
    s.file = j.at("file").get<std::string>();
    s.version = j.at("version").get<int64_t>();
    s.sha256 = j.at("sha256").get<std::string>();
    s.length = j.at("length").get<int64_t>();
    s.installed_unix = j.at("installed_unix").get<int64_t>();
    s.quality = j.at("quality").get<double>();
    // The file name comes from disk, but a tampered state must not point outside the directory.
    TEND_RETURN_NOT_OK(CheckName(s.file, what + ": file"));
    return std::optional<ModelSlot>(s);
  } catch (const json::exception& e) {
    return Fail(Error::Corrupt(what + ": " + e.what()));
  }
}

Status WriteAndSync(const std::string& path, std::span<const uint8_t> data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Fail(fs::ErrnoError("create " + path, errno));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      return Fail(fs::ErrnoError("write " + path, e));
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    return Fail(fs::ErrnoError("fsync " + path, e));
  }
  ::close(fd);
  return Ok();
}

void RemoveQuietly(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove(path, ec);
}

std::string StateText(const OtaState& s) { return s.ToJson().dump(2) + "\n"; }

// Serialises the writers of ota_state.json across processes (the agent's updater and `tend ota
// rollback`): an exclusive flock on .ota_state.lock in the model directory, released on close.
class StateLock {
 public:
  static Result<StateLock> Acquire(const std::string& dir) {
    const std::string path = fs::JoinPath(dir, ".ota_state.lock");
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return Fail(fs::ErrnoError("open " + path, errno));
    while (::flock(fd, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      return Fail(fs::ErrnoError("lock " + path, e));
    }
    return StateLock(fd);
  }
  StateLock(StateLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  StateLock(const StateLock&) = delete;
  StateLock& operator=(const StateLock&) = delete;
  StateLock& operator=(StateLock&&) = delete;
  ~StateLock() {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  explicit StateLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// The rollback on a state in memory: the backup (checked on disk) becomes current, the model
// rolled back from is rejected for good and leaves the backup slot empty, so it can never be
// rolled back to (a manual rollback after an automatic one must not reinstall the bad model).
// Returns the slot rolled back from; its file is the caller's to delete once the state is saved.
Result<std::optional<ModelSlot>> RollBackInState(const std::string& dir, OtaState& s,
                                                 const std::string& reason) {
  if (!s.backup) return Fail(Error::NotFound(dir + ": no backup model to roll back to"));
  TEND_RETURN_NOT_OK(VerifySlot(dir, *s.backup));
  std::optional<ModelSlot> bad = s.current;
  s.current = s.backup;
  s.backup.reset();
  if (bad && std::find(s.rejected_versions.begin(), s.rejected_versions.end(), bad->version) ==
                 s.rejected_versions.end()) {
    s.rejected_versions.push_back(bad->version);
  }
  s.rollbacks += 1;
  s.last_rollback_reason = reason;
  s.probation_until = 0;
  return bad;
}

// Deletes the file of a slot the state no longer references.
Status RemoveSlotFile(const std::string& dir, const OtaState& s,
                      const std::optional<ModelSlot>& gone) {
  if (!gone) return Ok();
  for (const auto* slot : {&s.current, &s.backup}) {
    if (*slot && (*slot)->file == gone->file) return Ok();
  }
  RemoveQuietly(fs::JoinPath(dir, gone->file));
  return fs::FsyncDir(dir);
}

}  // namespace

json OtaState::ToJson() const {
  return {{"format", 1},
          {"model_name", model_name},
          {"trusted_root", trusted_root},
          {"root_version", root_version},
          {"timestamp_version", timestamp_version},
          {"targets_version", targets_version},
          {"latest_time_seen", latest_time_seen},
          {"highest_version", highest_version},
          {"rejected_versions", rejected_versions},
          {"current", SlotJson(current)},
          {"backup", SlotJson(backup)},
          {"probation_until", probation_until},
          {"rollbacks", rollbacks},
          {"last_rollback_reason", last_rollback_reason},
          {"adopted_sha256", adopted_sha256},
          {"control_version", control_version},
          {"pin_max_version", pin_max_version}};
}

Result<OtaState> OtaState::FromJson(const json& j, const std::string& what) {
  OtaState s;
  try {
    if (j.at("format").get<int>() != 1) {
      return Fail(Error::Unsupported(what + ": unknown state format"));
    }
    s.model_name = j.at("model_name").get<std::string>();
    s.trusted_root = j.at("trusted_root").get<std::string>();
    s.root_version = j.at("root_version").get<int64_t>();
    s.timestamp_version = j.at("timestamp_version").get<int64_t>();
    s.targets_version = j.at("targets_version").get<int64_t>();
    s.latest_time_seen = j.at("latest_time_seen").get<int64_t>();
    s.highest_version = j.at("highest_version").get<int64_t>();
    s.rejected_versions = j.at("rejected_versions").get<std::vector<int64_t>>();
    s.probation_until = j.at("probation_until").get<int64_t>();
    s.rollbacks = j.at("rollbacks").get<int64_t>();
    s.last_rollback_reason = j.at("last_rollback_reason").get<std::string>();
    s.adopted_sha256 = j.value("adopted_sha256", std::string());  // absent in older state files
    s.control_version = j.value("control_version", int64_t{0});
    s.pin_max_version = j.value("pin_max_version", int64_t{-1});
  } catch (const json::exception& e) {
    return Fail(Error::Corrupt(what + ": " + e.what()));
  }
  // Found by fuzz_ota_metadata: j.at() here, outside the try, threw on a state file without
  // "current" or "backup" and ended the agent.
  for (const char* slot : {"current", "backup"}) {
    if (!j.contains(slot)) return Fail(Error::Corrupt(what + ": missing \"" + slot + "\""));
  }
  TEND_ASSIGN_OR_RETURN(s.current, SlotFromJson(j["current"], what + ": current"));
  TEND_ASSIGN_OR_RETURN(s.backup, SlotFromJson(j["backup"], what + ": backup"));
  return s;
}

Result<OtaState> LoadState(const std::string& model_dir) {
  std::string path = fs::JoinPath(model_dir, kStateFile);
  TEND_ASSIGN_OR_RETURN(std::string text, fs::ReadFile(path));
  TEND_ASSIGN_OR_RETURN(json j, tend::json::ParseJson(text, path, kMetadataJsonLimits));
  if (!j.is_object()) return Fail(Error::Corrupt(path + ": not a JSON object"));
  return OtaState::FromJson(j, path);
}

Status SaveState(const std::string& model_dir, const OtaState& state) {
  return fs::WriteFileAtomic(fs::JoinPath(model_dir, kStateFile), StateText(state));
}

Result<OtaState> RollbackState(const std::string& model_dir, const std::string& reason,
                               int64_t now) {
  (void)now;
  // No state, no lock file: a wrong --model-dir is told it has no ota_state.json and is left as
  // it was. The state is read again under the lock, where it counts.
  if (auto probe = LoadState(model_dir); !probe) return Fail(probe.error());
  TEND_ASSIGN_OR_RETURN(StateLock lock, StateLock::Acquire(model_dir));
  TEND_ASSIGN_OR_RETURN(OtaState s, LoadState(model_dir));
  TEND_ASSIGN_OR_RETURN(std::optional<ModelSlot> bad, RollBackInState(model_dir, s, reason));
  TEND_RETURN_NOT_OK(SaveState(model_dir, s));
  TEND_RETURN_NOT_OK(RemoveSlotFile(model_dir, s, bad));
  TEND_LOG_WARN("ota: rolled back {} from v{} to v{}: {}", s.model_name, bad ? bad->version : 0,
                s.current->version, reason);
  return s;
}

Result<OtaState> RecoverState(const std::string& model_dir) {
  TEND_ASSIGN_OR_RETURN(OtaState s, LoadState(model_dir));
  bool changed = false, removed = false;
  std::error_code ec;
  const std::string prefix = s.model_name + "-v";
  std::vector<std::filesystem::path> entries;  // listed first: no removal while iterating
  for (const auto& entry : std::filesystem::directory_iterator(model_dir, ec)) {
    entries.push_back(entry.path());
  }
  if (ec) return Fail(Error::Io(model_dir + ": " + ec.message()));
  for (const auto& entry : entries) {
    std::string name = entry.filename().string();
    bool staging = name.size() > 8 && name.front() == '.' && name.ends_with(".staging");
    bool temp = name.rfind(std::string(kStateFile) + ".tmp.", 0) == 0;
    bool orphan = name.rfind(prefix, 0) == 0 && name.ends_with(".onnx") &&
                  !(s.current && s.current->file == name) && !(s.backup && s.backup->file == name);
    if (staging || temp || orphan) {
      TEND_LOG_INFO("ota: removing leftover {}", entry.string());
      RemoveQuietly(entry.string());
      removed = true;
    }
  }
  if (s.current && !VerifySlot(model_dir, *s.current)) {
    if (s.backup && VerifySlot(model_dir, *s.backup)) {
      TEND_LOG_WARN("ota: current model v{} is missing or corrupt, back to v{}", s.current->version,
                    s.backup->version);
      s.current = s.backup;
      s.backup.reset();
      s.rollbacks += 1;
      s.last_rollback_reason = "current model file missing or corrupt at startup";
      changed = true;
    } else {
      return Fail(Error::Corrupt(model_dir + ": neither the current model nor a backup is valid"));
    }
  }
  if (s.backup && !VerifySlot(model_dir, *s.backup)) {
    TEND_LOG_WARN("ota: backup model v{} is missing or corrupt; dropped", s.backup->version);
    s.backup.reset();
    changed = true;
  }
  if (changed) TEND_RETURN_NOT_OK(SaveState(model_dir, s));
  if (removed) TEND_RETURN_NOT_OK(fs::FsyncDir(model_dir));
  return s;
}

json StateStatusJson(const OtaState& s, int64_t now, int64_t max_model_age_s) {
  const bool probation = s.current && now < s.probation_until;
  const int64_t age = s.current ? now - s.current->installed_unix : -1;
  return {{"model", s.model_name},
          {"state", !s.current ? "no-model" : (probation ? "probation" : "serving")},
          {"current_version", s.current ? s.current->version : 0},
          {"current_sha256", s.current ? s.current->sha256 : ""},
          {"current_quality", s.current ? json(s.current->quality) : json(nullptr)},
          {"backup_version", s.backup ? s.backup->version : 0},
          {"highest_version", s.highest_version},
          {"rejected_versions", s.rejected_versions},
          {"root_version", s.root_version},
          {"in_probation", probation},
          {"probation_until", probation ? FormatTime(s.probation_until) : ""},
          {"probation_remaining_s", probation ? s.probation_until - now : 0},
          {"model_installed", s.current ? FormatTime(s.current->installed_unix) : ""},
          {"model_installed_unix", s.current ? s.current->installed_unix : 0},
          {"model_age_s", age},
          {"max_model_age_s", max_model_age_s},
          {"stale", s.current.has_value() && age > max_model_age_s},
          {"rollbacks", s.rollbacks},
          {"last_rollback_reason", s.last_rollback_reason},
          {"pin_max_version", s.pin_max_version}};
}

Result<std::unique_ptr<Updater>> Updater::Create(UpdaterOptions opts,
                                                 std::unique_ptr<Fetcher> fetcher) {
  TEND_RETURN_NOT_OK(CheckName(opts.model_name, "ota model name"));
  TEND_RETURN_NOT_OK(CheckName(opts.profile, "ota profile"));
  if (!fetcher) return Fail(Error::Invalid("ota: no registry fetcher"));
  if (opts.model_dir.empty()) return Fail(Error::Invalid("ota: model directory not set"));
  if (opts.interval_s <= 0 || opts.jitter < 0 || opts.jitter >= 1) {
    return Fail(Error::Invalid("ota: interval must be > 0 and jitter in [0, 1)"));
  }
  if (opts.control_interval_s < 0 || opts.state_watch_s < 0) {
    return Fail(Error::Invalid("ota: control and state-watch intervals must be >= 0"));
  }
  if (opts.device_id.empty()) {
    // The same default as `tend run`'s device id: the host name, MQTT level characters replaced.
    char host[256] = {0};
    if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') {
      std::snprintf(host, sizeof host, "edge-device");
    }
    opts.device_id = host;
    for (char& c : opts.device_id) {
      if (c == '/' || c == '+' || c == '#' || c == ' ') c = '_';
    }
  }
  TEND_RETURN_NOT_OK(fs::MakeDirs(opts.model_dir));
  std::unique_ptr<Updater> u(new Updater());
  u->opts_ = std::move(opts);
  u->fetcher_ = std::move(fetcher);
  const UpdaterOptions& o = u->opts_;
  auto st = RecoverState(o.model_dir);
  if (st) {
    u->state_ = std::move(*st);
    if (u->state_.model_name != o.model_name) {
      return Fail(Error::Invalid(fs::JoinPath(o.model_dir, kStateFile) + ": holds model \"" +
                                 u->state_.model_name + "\", not \"" + o.model_name + "\""));
    }
    // Re-check the stored anchor: a state file edited on disk must not widen trust.
    auto root = VerifyPinnedRoot(u->state_.trusted_root);
    if (!root)
      return Fail(root.error().Wrap(fs::JoinPath(o.model_dir, kStateFile) + ": trusted root"));
  } else if (st.error().code == ErrorCode::kNotFound) {
    if (o.pinned_root_path.empty()) {
      return Fail(Error::Invalid("ota: no state in " + o.model_dir + " and no pinned root given"));
    }
    TEND_ASSIGN_OR_RETURN(std::string root_bytes, fs::ReadFile(o.pinned_root_path));
    auto root = VerifyPinnedRoot(root_bytes);
    if (!root) return Fail(root.error().Wrap(o.pinned_root_path));
    u->state_.model_name = o.model_name;
    u->state_.trusted_root = root_bytes;
    u->state_.root_version = root->version;
    TEND_RETURN_NOT_OK(SaveState(o.model_dir, u->state_));
  } else {
    return Fail(st.error());
  }
  {
    std::lock_guard<std::mutex> lock(u->mu_);
    auto text = fs::ReadFile(fs::JoinPath(o.model_dir, kStateFile));
    u->known_text_ = text ? *text : std::string();
    u->PublishLocked();
  }
  return u;
}

Updater::~Updater() { Stop(); }

int64_t Updater::Now() const { return NowAtLeast(state_.latest_time_seen); }

int64_t Updater::NowAtLeast(int64_t latest_time_seen) const {
  int64_t clock = opts_.clock ? opts_.clock() : SystemNow();
  return std::max(clock, latest_time_seen);
}

void Updater::PublishLocked() {
  std::lock_guard<std::mutex> lock(snap_mu_);
  snap_.state = state_;
  snap_.counters = counters_;
  snap_.last_check_unix = last_check_unix_;
  snap_.last_result = last_result_;
  snap_.last_error = last_error_;
}

Updater::Snapshot Updater::Snap() const {
  std::lock_guard<std::mutex> lock(snap_mu_);
  return snap_;
}

void Updater::Sync(const char* step) const {
  if (opts_.sync_point_for_test) opts_.sync_point_for_test(step);
}

Result<UpdateReport> Updater::CheckOnce() {
  std::lock_guard<std::mutex> lock(mu_);
  AdoptDiskStateLocked();  // a check never starts from a state another process replaced
  counters_.checks += 1;
  last_check_unix_ = Now();
  auto r = CheckLocked();
  if (r) {
    // Waiting for a wave, pinned, refused before...: said once, when it changes.
    if (r->outcome == UpdateOutcome::kUpToDate && r->message != last_result_) {
      TEND_LOG_INFO("ota: {}", r->message);
    }
    last_result_ = r->message;
    last_error_.clear();
  } else {
    counters_.failed += 1;
    last_error_ = r.error().message;
    TEND_LOG_WARN("ota: update refused: {}", r.error().message);
    AdoptDiskStateLocked();  // the refusal may be a write that lost to another process
  }
  PublishLocked();
  return r;
}

// Steps 1-3: walks the root chain from the trusted root, then the timestamp and the targets it
// pins; `next` gets the new floors and roots, `root` the newest verified root.
Result<TargetsMeta> Updater::RefreshTrustLocked(OtaState& next, RootMeta& root, int64_t now) {
  const UpdaterOptions& o = opts_;
  TEND_ASSIGN_OR_RETURN(root, VerifyPinnedRoot(next.trusted_root));

  for (int i = 0; i < o.max_root_rotations; ++i) {
    std::string name = std::to_string(root.version + 1) + ".root.json";
    auto bytes = fetcher_->Fetch(name, o.max_metadata_bytes);
    if (!bytes && bytes.error().code == ErrorCode::kNotFound) break;
    if (!bytes) return Fail(bytes.error());
    std::string text(bytes->begin(), bytes->end());
    TEND_ASSIGN_OR_RETURN(RootMeta rotated, VerifyRootUpdate(root, text));
    // New timestamp/targets keys: the old version floors may have been pushed up by a
    // compromised key (fast-forward attack); TUF resets them on rotation, so do we.
    if (rotated.roles[kRoleTimestamp].keyids != root.roles[kRoleTimestamp].keyids) {
      next.timestamp_version = 0;
    }
    if (rotated.roles[kRoleTargets].keyids != root.roles[kRoleTargets].keyids) {
      next.targets_version = 0;
    }
    root = std::move(rotated);
    next.trusted_root = std::move(text);
    next.root_version = root.version;
  }
  TEND_RETURN_NOT_OK(CheckNotExpired(root.expires, now, "root.json"));

  TEND_ASSIGN_OR_RETURN(auto ts_bytes, fetcher_->Fetch("timestamp.json", o.max_metadata_bytes));
  TEND_ASSIGN_OR_RETURN(TimestampMeta ts,
                        VerifyTimestamp(root, std::string(ts_bytes.begin(), ts_bytes.end()),
                                        next.timestamp_version, now));
  TEND_ASSIGN_OR_RETURN(auto t_bytes, fetcher_->Fetch("targets.json", ts.targets_length));
  TEND_ASSIGN_OR_RETURN(TargetsMeta tm,
                        VerifyTargets(root, ts, std::string(t_bytes.begin(), t_bytes.end()),
                                      next.targets_version, now));
  next.timestamp_version = ts.version;
  next.targets_version = tm.version;
  next.latest_time_seen = now;
  return tm;
}

// Why the device must not install `target` now ("" when it may): its pin, or the release's
// staged rollout as the newest valid control.json states it. Updates next's control floor and pin.
Result<std::string> Updater::WaitReasonLocked(const TargetInfo& target, const RootMeta& root,
                                              OtaState& next, int64_t now) {
  const std::optional<ControlMeta> control = FetchControlLocked(root, next, now);
  if (next.pin_max_version >= 0 && target.version > next.pin_max_version) {
    return "v" + std::to_string(target.version) + " not installed: this device is pinned to v" +
           std::to_string(next.pin_max_version) + " or older";
  }
  TEND_ASSIGN_OR_RETURN(RolloutGate gate,
                        GateRollout(target, control ? &*control : nullptr, opts_.device_id));
  return gate.allowed ? std::string() : gate.why;
}

// Steps 5-6: downloads the release (capped at its signed length), checks length and SHA-256,
// and stages it next to the running model: temp file, fsync, re-read and re-check, rename, fsync
// the directory. Returns the model's path.
Result<std::string> Updater::StageLocked(const TargetInfo& target) {
  const UpdaterOptions& o = opts_;
  TEND_ASSIGN_OR_RETURN(auto model_bytes, fetcher_->Fetch(target.path, target.length));
  TEND_RETURN_NOT_OK(VerifyTargetBytes(target, model_bytes));

  // Stage next to the running model (same filesystem, so the rename is atomic).
  const std::string final_name = ModelFileName(o.model_name, target.version);
  const std::string final_path = fs::JoinPath(o.model_dir, final_name);
  const std::string staging = fs::JoinPath(o.model_dir, "." + final_name + ".staging");
  TEND_RETURN_NOT_OK(WriteAndSync(staging, model_bytes));
  Sync("staged-temp");
  {
    // Verify what is on disk, the bytes that will actually be loaded.
    auto on_disk = fs::ReadBinaryFile(staging);
    Status ok = on_disk ? VerifyTargetBytes(target, *on_disk) : Status(Fail(on_disk.error()));
    if (!ok) {
      RemoveQuietly(staging);
      return Fail(ok.error().Wrap("staged copy"));
    }
  }
  if (::rename(staging.c_str(), final_path.c_str()) != 0) {
    int e = errno;
    RemoveQuietly(staging);
    return Fail(fs::ErrnoError("rename " + staging + " -> " + final_path, e));
  }
  TEND_RETURN_NOT_OK(fs::FsyncDir(o.model_dir));
  Sync("staged");
  return final_path;
}

// Step 7: the candidate's load check, then the quality gate on the device's reference set.
// Returns why it is refused ("" when it passes); `quality` gets the gate's score.
std::string Updater::JudgeLocked(const std::string& path, double threshold, double* quality) {
  const UpdaterOptions& o = opts_;
  std::string refusal;
  if (o.load_check) {
    Status loaded = o.load_check(path);
    if (!loaded) return "candidate does not load: " + loaded.error().message;
  }
  if (!o.quality_gate) return refusal;
  auto q = o.quality_gate(path);
  if (!q) return "quality gate failed: " + q.error().message;
  *quality = *q;
  if (!(*q >= threshold)) {
    refusal = "quality " + std::to_string(*q) + " below the threshold " + std::to_string(threshold);
  }
  return refusal;
}

// A committed model the pipeline could not take: back to the backup, and the model goes.
Status Updater::UndoHandOverLocked(int64_t version, const std::string& why) {
  OtaState back = state_;
  TEND_ASSIGN_OR_RETURN(std::optional<ModelSlot> bad, RollBackInState(opts_.model_dir, back, why));
  TEND_RETURN_NOT_OK(PersistLocked(back));
  state_ = back;
  TEND_LOG_WARN("ota: rolled back {} from v{} to v{}: {}", opts_.model_name, version,
                state_.current->version, why);
  TEND_RETURN_NOT_OK(RemoveSlotFile(opts_.model_dir, state_, bad));
  counters_.rolled_back += 1;
  return Ok();
}

Result<UpdateReport> Updater::CheckLocked() {
  const UpdaterOptions& o = opts_;
  // A clock set back (freeze attack) cannot go below the latest time already seen.
  const int64_t now = Now();
  OtaState next = state_;
  RootMeta root;
  TEND_ASSIGN_OR_RETURN(TargetsMeta tm, RefreshTrustLocked(next, root, now));

  UpdateReport report;
  auto target = SelectTarget(tm, o.model_name, o.profile);
  if (!target) {
    if (target.error().code != ErrorCode::kNotFound) return Fail(target.error());
    TEND_RETURN_NOT_OK(PersistLocked(next));
    state_ = next;
    report.message = target.error().message;
    return report;
  }
  report.version = target->version;
  const bool rejected = std::find(next.rejected_versions.begin(), next.rejected_versions.end(),
                                  target->version) != next.rejected_versions.end();
  if ((next.current && next.current->version == target->version) || rejected) {
    TEND_RETURN_NOT_OK(PersistLocked(next));
    state_ = next;
    report.message = "v" + std::to_string(target->version) +
                     (rejected ? " was refused before; keeping the current model" : " is current");
    return report;
  }
  if (target->version < next.highest_version) {
    TEND_RETURN_NOT_OK(PersistLocked(next));
    state_ = next;
    return Fail(Error::Security(target->path + ": release v" + std::to_string(target->version) +
                                " is older than v" + std::to_string(next.highest_version) +
                                " already installed (rollback)"));
  }

  // Operator control (control.json): this device's pin, and the staged rollout of the release.
  TEND_ASSIGN_OR_RETURN(std::string wait, WaitReasonLocked(*target, root, next, now));
  if (!wait.empty()) {
    TEND_RETURN_NOT_OK(PersistLocked(next));
    state_ = next;
    report.message = wait;
    return report;
  }

  const double threshold = std::max(o.min_quality, target->min_quality);
  if (!o.quality_gate && threshold > 0 && !o.allow_unmeasured_quality) {
    // The device's configuration, not the release, is at fault: nothing is fetched or recorded.
    TEND_RETURN_NOT_OK(PersistLocked(next));
    state_ = next;
    return Fail(Error::Invalid(fmt::format(
        "v{} requires a reference-set quality >= {:g} but no quality gate is configured to "
        "measure it; {}",
        target->version, threshold, o.allow_unmeasured_hint)));
  }

  TEND_ASSIGN_OR_RETURN(const std::string final_path, StageLocked(*target));
  const std::string final_name = ModelFileName(o.model_name, target->version);

  double quality = -1;
  const std::string refusal = JudgeLocked(final_path, threshold, &quality);
  report.quality = quality;
  if (!refusal.empty()) {
    RemoveQuietly(final_path);
    TEND_RETURN_NOT_OK(fs::FsyncDir(o.model_dir));
    next.rejected_versions.push_back(target->version);
    next.highest_version = std::max(next.highest_version, target->version);
    next.rollbacks += 1;
    next.last_rollback_reason = "v" + std::to_string(target->version) + ": " + refusal;
    TEND_RETURN_NOT_OK(PersistLocked(next));
    state_ = next;
    counters_.refused += 1;
    Sync("gated");
    TEND_LOG_WARN("ota: {} v{} rolled back before commit: {}", o.model_name, target->version,
                  refusal);
    report.outcome = UpdateOutcome::kRejectedByGate;
    report.message = next.last_rollback_reason;
    return report;
  }
  Sync("gated");

  const std::optional<ModelSlot> old_current = next.current, old_backup = next.backup;
  // The backup is the model to go back to, so it must be one that has run well. A current model
  // still in probation has not: it is superseded and the last proven one stays the backup
  // (never deleted before its successor finished probation). Out of probation, the current model
  // becomes the backup and the old backup goes.
  const bool current_unproven = old_current && old_backup && now < next.probation_until;
  const std::optional<ModelSlot> superseded = current_unproven ? old_current : old_backup;
  ModelSlot slot;
  slot.file = final_name;
  slot.version = target->version;
  slot.sha256 = target->sha256;
  slot.length = target->length;
  slot.installed_unix = now;
  slot.quality = quality;
  next.backup = current_unproven ? old_backup : old_current;
  next.current = slot;
  next.highest_version = target->version;
  next.probation_until = now + o.probation_s;
  if (Status saved = PersistLocked(next); !saved) {
    RemoveQuietly(final_path);  // nothing refers to it: the state on disk is not ours to change
    return Fail(saved.error());
  }
  state_ = next;
  Sync("committed");
  TEND_LOG_INFO("ota: installed {} v{} (quality {:.4f}, threshold {:.4f}); backup {}{}",
                o.model_name, target->version, quality, threshold,
                next.backup ? "v" + std::to_string(next.backup->version) : std::string("none"),
                current_unproven ? " (the superseded v" + std::to_string(old_current->version) +
                                       " had not finished probation)"
                                 : std::string());

  // The superseded model file goes once nothing references it (after a failed hand-over the
  // state may hold other slots than `next`).
  auto remove_superseded = [&]() -> Status {
    if (!superseded || superseded->file == slot.file) return Ok();
    for (const auto* s : {&state_.current, &state_.backup}) {
      if (*s && (*s)->file == superseded->file) return Ok();
    }
    RemoveQuietly(fs::JoinPath(o.model_dir, superseded->file));
    return fs::FsyncDir(o.model_dir);
  };
  if (o.on_commit) {
    Status handed = o.on_commit(final_path);
    if (!handed) {
      std::string why = "hand-over to the pipeline failed: " + handed.error().message;
      if (!old_current) {
        return Fail(handed.error().Wrap("ota: installed v" + std::to_string(target->version) +
                                        " but could not hand it over and there is no backup"));
      }
      TEND_RETURN_NOT_OK(UndoHandOverLocked(target->version, why));
      TEND_RETURN_NOT_OK(remove_superseded());
      report.outcome = UpdateOutcome::kRejectedByGate;
      report.message = why;
      return report;
    }
  }
  counters_.installed += 1;
  Sync("handed-over");

  TEND_RETURN_NOT_OK(remove_superseded());
  Sync("cleaned");
  report.outcome = UpdateOutcome::kInstalled;
  report.message = "installed v" + std::to_string(target->version);
  return report;
}

Result<std::string> Updater::AdoptStartupModel(const std::string& path, int64_t version) {
  std::lock_guard<std::mutex> lock(mu_);
  const UpdaterOptions& o = opts_;
  TEND_ASSIGN_OR_RETURN(auto bytes, fs::ReadBinaryFile(path));
  const std::string sha = Sha256Hex(bytes);
  if (state_.current && (sha == state_.adopted_sha256 || sha == state_.current->sha256)) {
    if (state_.adopted_sha256 != sha) {
      state_.adopted_sha256 = sha;
      TEND_RETURN_NOT_OK(PersistLocked(state_));
      PublishLocked();
    }
    const std::string current = fs::JoinPath(o.model_dir, state_.current->file);
    if (state_.current->sha256 != sha) {
      TEND_LOG_INFO(
          "ota: serving {} v{} installed by OTA; the start-up model {} is unchanged "
          "since it was adopted (deploy other bytes there to override OTA)",
          o.model_name, state_.current->version, path);
    }
    return current;
  }
  ModelSlot slot;
  slot.file = o.model_name + "-v" + std::to_string(version) + "-" + sha.substr(0, 12) + ".onnx";
  slot.version = version;
  slot.sha256 = sha;
  slot.length = static_cast<int64_t>(bytes.size());
  slot.installed_unix = Now();
  const std::string final_path = fs::JoinPath(o.model_dir, slot.file);
  const std::string staging = fs::JoinPath(o.model_dir, "." + slot.file + ".staging");
  TEND_RETURN_NOT_OK(WriteAndSync(staging, bytes));
  if (::rename(staging.c_str(), final_path.c_str()) != 0) {
    int e = errno;
    RemoveQuietly(staging);
    return Fail(fs::ErrnoError("rename " + staging, e));
  }
  TEND_RETURN_NOT_OK(fs::FsyncDir(o.model_dir));
  OtaState next = state_;
  const std::optional<ModelSlot> old_backup = next.backup;
  if (next.current && next.current->file != slot.file) next.backup = next.current;
  next.current = slot;
  next.probation_until = 0;  // the operator's own model: nothing to roll back to automatically
  next.adopted_sha256 = sha;
  TEND_RETURN_NOT_OK(PersistLocked(next));
  state_ = next;
  PublishLocked();
  if (old_backup && old_backup->file != slot.file &&
      !(next.backup && next.backup->file == old_backup->file)) {
    RemoveQuietly(fs::JoinPath(o.model_dir, old_backup->file));
    TEND_RETURN_NOT_OK(fs::FsyncDir(o.model_dir));
  }
  TEND_LOG_INFO("ota: adopted start-up model {} as {} v{} (sha256 {}){}", path, o.model_name,
                version, sha.substr(0, 12),
                next.backup ? "; backup v" + std::to_string(next.backup->version) : std::string());
  return final_path;
}

Status Updater::Rollback(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  return RollbackLocked(reason);
}

Status Updater::RollbackLocked(const std::string& reason) {
  OtaState next = state_;
  auto bad = RollBackInState(opts_.model_dir, next, reason);
  Status saved = bad ? PersistLocked(next) : Status(Fail(bad.error()));
  if (!saved) {
    PublishLocked();
    return saved;
  }
  state_ = std::move(next);
  TEND_LOG_WARN("ota: rolled back {} from v{} to v{}: {}", state_.model_name,
                *bad ? (*bad)->version : 0, state_.current->version, reason);
  Status removed = RemoveSlotFile(opts_.model_dir, state_, *bad);
  if (!removed) TEND_LOG_WARN("ota: {}", removed.error().message);
  counters_.rolled_back += 1;
  last_result_ = "rolled back: " + reason;
  PublishLocked();
  if (opts_.on_commit) return opts_.on_commit(fs::JoinPath(opts_.model_dir, state_.current->file));
  return Ok();
}

Status Updater::PersistLocked(const OtaState& next) {
  const std::string path = fs::JoinPath(opts_.model_dir, kStateFile);
  TEND_ASSIGN_OR_RETURN(StateLock lock, StateLock::Acquire(opts_.model_dir));
  auto disk = fs::ReadFile(path);
  if ((disk ? *disk : std::string()) != known_text_) {
    return Fail(Error::Io(path + " changed on disk since the updater read it (`tend ota " +
                          "rollback`?): not overwritten"));
  }
  std::string text = StateText(next);
  TEND_RETURN_NOT_OK(fs::WriteFileAtomic(path, text));
  known_text_ = std::move(text);
  return Ok();
}

bool Updater::PollStateFile() {
  std::lock_guard<std::mutex> lock(mu_);
  return AdoptDiskStateLocked();
}

bool Updater::AdoptDiskStateLocked() {
  const std::string path = fs::JoinPath(opts_.model_dir, kStateFile);
  auto text = fs::ReadFile(path);
  if (!text || *text == known_text_) return false;
  known_text_ = *text;  // adopted or, when invalid, overwritten by the next write
  auto j = tend::json::ParseJson(*text, path, kMetadataJsonLimits);  // bounded, as LoadState
  auto disk = !j ? Result<OtaState>(Fail(j.error()))
              : j->is_object()
                  ? OtaState::FromJson(*j, path)
                  : Result<OtaState>(Fail(Error::Corrupt(path + ": not a JSON object")));
  Status valid = disk ? Ok() : Status(Fail(disk.error()));
  if (valid && disk->model_name != opts_.model_name) {
    valid = Fail(Error::Invalid(path + ": holds another model"));
  }
  if (valid) valid = VerifyPinnedRoot(disk->trusted_root).map([](RootMeta) {});
  if (valid && disk->current) valid = VerifySlot(opts_.model_dir, *disk->current);
  if (!valid) {
    TEND_LOG_ERROR("ota: ignoring a change of {} made outside the updater: {}", path,
                   valid.error().message);
    return true;
  }
  const OtaState prev = std::move(state_);
  state_ = std::move(*disk);
  const std::string before = prev.current ? prev.current->file : "";
  const bool model_changed = state_.current && state_.current->file != before;
  if (state_.rollbacks > prev.rollbacks) {
    counters_.rolled_back += 1;
    last_result_ = "rolled back outside the agent: " + state_.last_rollback_reason;
  } else {
    last_result_ = "state changed on disk";
  }
  TEND_LOG_WARN("ota: {} changed outside the updater ({}); now serving {} v{}", path, last_result_,
                state_.model_name, state_.current ? state_.current->version : 0);
  if (model_changed && opts_.on_commit) {
    Status handed = opts_.on_commit(fs::JoinPath(opts_.model_dir, state_.current->file));
    if (!handed) {
      last_error_ = "hand-over after an outside change failed: " + handed.error().message;
      TEND_LOG_ERROR("ota: {}", last_error_);
    }
  }
  PublishLocked();
  return true;
}

std::optional<ControlMeta> Updater::FetchControlLocked(const RootMeta& root, OtaState& next,
                                                       int64_t now) {
  auto bytes = fetcher_->Fetch(kControlFile, opts_.max_metadata_bytes);
  Result<ControlMeta> control = bytes
                                    ? VerifyControl(root, std::string(bytes->begin(), bytes->end()),
                                                    next.control_version, now)
                                    : Result<ControlMeta>(Fail(bytes.error()));
  if (!control) {
    // None published is normal (no staged rollout ever); anything else is said once per change.
    if (control.error().code != ErrorCode::kNotFound &&
        control.error().message != last_control_error_) {
      TEND_LOG_WARN("ota: control statement not used: {}", control.error().message);
    }
    last_control_error_ = control.error().message;
    return std::nullopt;
  }
  last_control_error_.clear();
  next.control_version = control->version;
  auto pin = control->PinFor(opts_.device_id, opts_.model_name);
  next.pin_max_version = pin ? *pin : -1;
  return std::move(*control);
}

Result<bool> Updater::CheckControl() {
  std::lock_guard<std::mutex> lock(mu_);
  AdoptDiskStateLocked();
  TEND_ASSIGN_OR_RETURN(RootMeta root, VerifyPinnedRoot(state_.trusted_root));
  OtaState next = state_;
  const std::optional<ControlMeta> control = FetchControlLocked(root, next, Now());
  const bool changed = next.control_version != state_.control_version;
  if (changed || next.pin_max_version != state_.pin_max_version) {
    TEND_RETURN_NOT_OK(PersistLocked(next));
    state_ = next;
  }
  if (control) {
    const DeviceRollback* rb = control->RollbackFor(opts_.device_id, opts_.model_name);
    if (rb && state_.current && state_.current->version == rb->from_version &&
        std::find(handled_requests_.begin(), handled_requests_.end(), rb->request) ==
            handled_requests_.end()) {
      handled_requests_.push_back(rb->request);
      std::string why = "operator rollback from v" + std::to_string(rb->from_version) +
                        " (request " + rb->request + ")" +
                        (rb->reason.empty() ? std::string() : ": " + rb->reason);
      Status st = RollbackLocked(why);
      if (!st) {
        last_error_ = "operator rollback failed: " + st.error().message;
        TEND_LOG_ERROR("ota: {}", last_error_);
      }
    }
  }
  PublishLocked();
  return changed;
}

Status Updater::ReportMisbehaviour(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!state_.current || !state_.backup || Now() >= state_.probation_until) {
    TEND_LOG_WARN("ota: model misbehaves outside probation (no automatic rollback): {}", reason);
    return Ok();
  }
  return RollbackLocked("misbehaviour during probation: " + reason);
}

bool Updater::InProbation() const {
  Snapshot s = Snap();
  return s.state.current && s.state.backup &&
         NowAtLeast(s.state.latest_time_seen) < s.state.probation_until;
}

bool Updater::WarnIfStale() {
  Snapshot s = Snap();
  const int64_t now = NowAtLeast(s.state.latest_time_seen);
  const bool stale =
      s.state.current && now - s.state.current->installed_unix > opts_.max_model_age_s;
  std::lock_guard<std::mutex> lock(snap_mu_);
  if (!stale) {
    last_stale_warning_ = 0;
    return false;
  }
  if (last_stale_warning_ != 0 && now - last_stale_warning_ < 86400) return false;
  last_stale_warning_ = now;
  TEND_LOG_WARN(
      "ota: model {} v{} is stale: installed {} ({:.1f} days ago, limit {:.1f} days); "
      "no newer model received",
      s.state.model_name, s.state.current->version, FormatTime(s.state.current->installed_unix),
      double(now - s.state.current->installed_unix) / 86400, double(opts_.max_model_age_s) / 86400);
  return true;
}

void Updater::Start() {
  if (thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(wait_mu_);
    stop_ = false;
  }
  fetcher_->Resume();
  thread_ = std::thread([this] { RunLoop(); });
}

// Three clocks on one thread: the full check every interval_s (with jitter), control.json every
// control_interval_s (a changed statement brings the full check forward), and the state file
// every state_watch_s.
void Updater::RunLoop() {
  using Clock = std::chrono::steady_clock;
  auto after = [](double s) {
    return Clock::now() +
           std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  };
  std::mt19937_64 rng(std::random_device{}());
  std::uniform_real_distribution<double> u(-opts_.jitter, opts_.jitter);
  const double control_s =
      opts_.control_interval_s > 0 ? opts_.control_interval_s : std::min(opts_.interval_s, 60.0);
  auto next_check = Clock::now(), next_control = after(control_s);
  for (;;) {
    if (Clock::now() >= next_check) {
      (void)CheckOnce();
      next_check = after(opts_.interval_s * (1 + u(rng)));
      next_control = after(control_s);
    } else if (Clock::now() >= next_control) {
      auto changed = CheckControl();
      if (!changed) TEND_LOG_WARN("ota: control check: {}", changed.error().message);
      if (changed && *changed) next_check = Clock::now();
      next_control = after(control_s);
    }
    if (opts_.state_watch_s > 0) PollStateFile();
    auto wake = std::min(next_check, next_control);
    if (opts_.state_watch_s > 0) wake = std::min(wake, after(opts_.state_watch_s));
    std::unique_lock<std::mutex> lock(wait_mu_);
    if (wait_cv_.wait_until(lock, wake, [this] { return stop_; })) return;
  }
}

void Updater::Stop() {
  {
    std::lock_guard<std::mutex> lock(wait_mu_);
    stop_ = true;
  }
  wait_cv_.notify_all();
  // A fetch in flight ends now instead of at its deadline: shutdown never waits on a registry.
  if (!thread_.joinable()) return;
  fetcher_->Interrupt();
  thread_.join();
  fetcher_->Resume();
}

std::string Updater::CurrentModelPath() const {
  Snapshot s = Snap();
  return s.state.current ? fs::JoinPath(opts_.model_dir, s.state.current->file) : std::string();
}

OtaState Updater::state() const { return Snap().state; }

bool Updater::Stale() const {
  Snapshot s = Snap();
  return s.state.current && NowAtLeast(s.state.latest_time_seen) - s.state.current->installed_unix >
                                opts_.max_model_age_s;
}

json Updater::StatusJson() const {
  Snapshot s = Snap();
  json j = StateStatusJson(s.state, NowAtLeast(s.state.latest_time_seen), opts_.max_model_age_s);
  j["profile"] = opts_.profile;
  j["device_id"] = opts_.device_id;
  j["checks"] = s.counters.checks;
  j["updates"] = {{"installed", s.counters.installed},
                  {"refused", s.counters.refused},
                  {"rolled_back", s.counters.rolled_back},
                  {"failed", s.counters.failed}};
  // Kept for readers of the first status format.
  j["failures"] = s.counters.failed;
  j["installs"] = s.counters.installed;
  j["last_check"] = s.last_check_unix ? FormatTime(s.last_check_unix) : "";
  j["last_check_unix"] = s.last_check_unix;
  j["last_result"] = s.last_result;
  j["last_error"] = s.last_error;
  return j;
}

}  // namespace tend::ota
