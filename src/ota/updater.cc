#include "ota/updater.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>

#include "core/fs.h"
#include "core/log.h"
#include "ota/trust.h"

namespace tend::ota {
namespace {

using nlohmann::json;

std::string Join(const std::string& dir, const std::string& name) {
  return (std::filesystem::path(dir) / name).string();
}

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
  TEND_ASSIGN_OR_RETURN(auto bytes, fs::ReadBinaryFile(Join(dir, slot.file)));
  if (static_cast<int64_t>(bytes.size()) != slot.length || Sha256Hex(bytes) != slot.sha256) {
    return Fail(Error::Corrupt(Join(dir, slot.file) + ": contents differ from the installed v" +
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
          {"last_rollback_reason", last_rollback_reason}};
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
  } catch (const json::exception& e) {
    return Fail(Error::Corrupt(what + ": " + e.what()));
  }
  TEND_ASSIGN_OR_RETURN(s.current, SlotFromJson(j.at("current"), what + ": current"));
  TEND_ASSIGN_OR_RETURN(s.backup, SlotFromJson(j.at("backup"), what + ": backup"));
  return s;
}

Result<OtaState> LoadState(const std::string& model_dir) {
  std::string path = Join(model_dir, kStateFile);
  TEND_ASSIGN_OR_RETURN(std::string text, fs::ReadFile(path));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Fail(Error::Corrupt(path + ": not valid JSON"));
  return OtaState::FromJson(j, path);
}

Status SaveState(const std::string& model_dir, const OtaState& state) {
  return fs::WriteFileAtomic(Join(model_dir, kStateFile), state.ToJson().dump(2) + "\n");
}

Result<OtaState> RollbackState(const std::string& model_dir, const std::string& reason,
                               int64_t now) {
  TEND_ASSIGN_OR_RETURN(OtaState s, LoadState(model_dir));
  if (!s.backup) return Fail(Error::NotFound(model_dir + ": no backup model to roll back to"));
  TEND_RETURN_NOT_OK(VerifySlot(model_dir, *s.backup));
  std::optional<ModelSlot> bad = s.current;
  s.current = s.backup;
  // The rolled-back model stays on disk as the backup (rolling forward is a rename away too),
  // but the updater will not install that version again.
  s.backup = bad;
  if (bad && std::find(s.rejected_versions.begin(), s.rejected_versions.end(), bad->version) ==
                 s.rejected_versions.end()) {
    s.rejected_versions.push_back(bad->version);
  }
  s.rollbacks += 1;
  s.last_rollback_reason = reason;
  s.probation_until = 0;
  (void)now;
  TEND_RETURN_NOT_OK(SaveState(model_dir, s));
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

Result<std::unique_ptr<Updater>> Updater::Create(UpdaterOptions opts,
                                                 std::unique_ptr<Fetcher> fetcher) {
  TEND_RETURN_NOT_OK(CheckName(opts.model_name, "ota model name"));
  TEND_RETURN_NOT_OK(CheckName(opts.profile, "ota profile"));
  if (!fetcher) return Fail(Error::Invalid("ota: no registry fetcher"));
  if (opts.model_dir.empty()) return Fail(Error::Invalid("ota: model directory not set"));
  if (opts.interval_s <= 0 || opts.jitter < 0 || opts.jitter >= 1) {
    return Fail(Error::Invalid("ota: interval must be > 0 and jitter in [0, 1)"));
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
      return Fail(Error::Invalid(Join(o.model_dir, kStateFile) + ": holds model \"" +
                                 u->state_.model_name + "\", not \"" + o.model_name + "\""));
    }
    // Re-check the stored anchor: a state file edited on disk must not widen trust.
    auto root = VerifyPinnedRoot(u->state_.trusted_root);
    if (!root) return Fail(root.error().Wrap(Join(o.model_dir, kStateFile) + ": trusted root"));
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
  return u;
}

Updater::~Updater() { Stop(); }

int64_t Updater::Now() const {
  int64_t clock = opts_.clock ? opts_.clock() : SystemNow();
  return std::max(clock, state_.latest_time_seen);
}

void Updater::Sync(const char* step) const {
  if (opts_.sync_point_for_test) opts_.sync_point_for_test(step);
}

Result<UpdateReport> Updater::CheckOnce() {
  std::lock_guard<std::mutex> lock(mu_);
  checks_ += 1;
  last_check_unix_ = Now();
  auto r = CheckLocked();
  if (r) {
    last_result_ = r->message;
    last_error_.clear();
  } else {
    failures_ += 1;
    last_error_ = r.error().message;
    TEND_LOG_WARN("ota: update refused: {}", r.error().message);
  }
  return r;
}

Result<UpdateReport> Updater::CheckLocked() {
  const UpdaterOptions& o = opts_;
  // A clock set back (freeze attack) cannot go below the latest time already seen.
  const int64_t now = Now();
  OtaState next = state_;
  TEND_ASSIGN_OR_RETURN(RootMeta root, VerifyPinnedRoot(next.trusted_root));

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

  UpdateReport report;
  auto target = SelectTarget(tm, o.model_name, o.profile);
  if (!target) {
    if (target.error().code != ErrorCode::kNotFound) return Fail(target.error());
    TEND_RETURN_NOT_OK(SaveState(o.model_dir, next));
    state_ = next;
    report.message = target.error().message;
    return report;
  }
  report.version = target->version;
  const bool rejected = std::find(next.rejected_versions.begin(), next.rejected_versions.end(),
                                  target->version) != next.rejected_versions.end();
  if ((next.current && next.current->version == target->version) || rejected) {
    TEND_RETURN_NOT_OK(SaveState(o.model_dir, next));
    state_ = next;
    report.message = "v" + std::to_string(target->version) +
                     (rejected ? " was refused before; keeping the current model" : " is current");
    return report;
  }
  if (target->version < next.highest_version) {
    TEND_RETURN_NOT_OK(SaveState(o.model_dir, next));
    state_ = next;
    return Fail(Error::Security(target->path + ": release v" + std::to_string(target->version) +
                                " is older than v" + std::to_string(next.highest_version) +
                                " already installed (rollback)"));
  }

  const double threshold = std::max(o.min_quality, target->min_quality);
  if (!o.quality_gate && threshold > 0 && !o.allow_unmeasured_quality) {
    // The device's configuration, not the release, is at fault: nothing is fetched or recorded.
    TEND_RETURN_NOT_OK(SaveState(o.model_dir, next));
    state_ = next;
    return Fail(Error::Invalid("v" + std::to_string(target->version) +
                               " requires a reference-set quality >= " + std::to_string(threshold) +
                               " but no quality gate is configured"));
  }

  TEND_ASSIGN_OR_RETURN(auto model_bytes, fetcher_->Fetch(target->path, target->length));
  TEND_RETURN_NOT_OK(VerifyTargetBytes(*target, model_bytes));

  // Stage next to the running model (same filesystem, so the rename is atomic).
  const std::string final_name = ModelFileName(o.model_name, target->version);
  const std::string final_path = Join(o.model_dir, final_name);
  const std::string staging = Join(o.model_dir, "." + final_name + ".staging");
  TEND_RETURN_NOT_OK(WriteAndSync(staging, model_bytes));
  Sync("staged-temp");
  {
    // Verify what is on disk, the bytes that will actually be loaded.
    auto on_disk = fs::ReadBinaryFile(staging);
    Status ok = on_disk ? VerifyTargetBytes(*target, *on_disk) : Status(Fail(on_disk.error()));
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

  std::string refusal;
  double quality = -1;
  if (o.load_check) {
    Status loaded = o.load_check(final_path);
    if (!loaded) refusal = "candidate does not load: " + loaded.error().message;
  }
  if (!refusal.empty()) {
    // Refused already: no point scoring a model that does not load.
  } else if (o.quality_gate) {
    auto q = o.quality_gate(final_path);
    if (!q) {
      refusal = "quality gate failed: " + q.error().message;
    } else {
      quality = *q;
      if (!(quality >= threshold)) {
        refusal = "quality " + std::to_string(quality) + " below the threshold " +
                  std::to_string(threshold);
      }
    }
  }
  report.quality = quality;
  if (!refusal.empty()) {
    RemoveQuietly(final_path);
    TEND_RETURN_NOT_OK(fs::FsyncDir(o.model_dir));
    next.rejected_versions.push_back(target->version);
    next.highest_version = std::max(next.highest_version, target->version);
    next.rollbacks += 1;
    next.last_rollback_reason = "v" + std::to_string(target->version) + ": " + refusal;
    TEND_RETURN_NOT_OK(SaveState(o.model_dir, next));
    state_ = next;
    Sync("gated");
    TEND_LOG_WARN("ota: {} v{} rolled back before commit: {}", o.model_name, target->version,
                  refusal);
    report.outcome = UpdateOutcome::kRejectedByGate;
    report.message = next.last_rollback_reason;
    return report;
  }
  Sync("gated");

  const std::optional<ModelSlot> old_current = next.current, old_backup = next.backup;
  ModelSlot slot;
  slot.file = final_name;
  slot.version = target->version;
  slot.sha256 = target->sha256;
  slot.length = target->length;
  slot.installed_unix = now;
  slot.quality = quality;
  next.backup = old_current;
  next.current = slot;
  next.highest_version = target->version;
  next.probation_until = now + o.probation_s;
  TEND_RETURN_NOT_OK(SaveState(o.model_dir, next));
  state_ = next;
  Sync("committed");
  installs_ += 1;
  TEND_LOG_INFO("ota: installed {} v{} (quality {:.4f}, threshold {:.4f})", o.model_name,
                target->version, quality, threshold);

  if (o.on_commit) {
    Status handed = o.on_commit(final_path);
    if (!handed) {
      std::string why = "hand-over to the pipeline failed: " + handed.error().message;
      if (!old_current) {
        return Fail(handed.error().Wrap("ota: installed v" + std::to_string(target->version) +
                                        " but could not hand it over and there is no backup"));
      }
      TEND_ASSIGN_OR_RETURN(state_, RollbackState(o.model_dir, why, now));
      report.outcome = UpdateOutcome::kRejectedByGate;
      report.message = why;
      return report;
    }
  }
  Sync("handed-over");

  // The previous backup is no longer referenced; the previous current stays as the backup.
  if (old_backup && old_backup->file != slot.file &&
      !(next.backup && next.backup->file == old_backup->file)) {
    RemoveQuietly(Join(o.model_dir, old_backup->file));
    TEND_RETURN_NOT_OK(fs::FsyncDir(o.model_dir));
  }
  Sync("cleaned");
  report.outcome = UpdateOutcome::kInstalled;
  report.message = "installed v" + std::to_string(target->version);
  return report;
}

Status Updater::Rollback(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  TEND_ASSIGN_OR_RETURN(state_, RollbackState(opts_.model_dir, reason, Now()));
  last_result_ = "rolled back: " + reason;
  if (opts_.on_commit) return opts_.on_commit(Join(opts_.model_dir, state_.current->file));
  return Ok();
}

Status Updater::ReportMisbehaviour(const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!state_.current || !state_.backup || Now() >= state_.probation_until) {
      TEND_LOG_WARN("ota: model misbehaves outside probation (no automatic rollback): {}", reason);
      return Ok();
    }
  }
  return Rollback("misbehaviour during probation: " + reason);
}

void Updater::Start() {
  if (thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(wait_mu_);
    stop_ = false;
  }
  thread_ = std::thread([this] {
    std::mt19937_64 rng(std::random_device{}());
    std::uniform_real_distribution<double> u(-opts_.jitter, opts_.jitter);
    for (;;) {
      (void)CheckOnce();
      double wait_s = opts_.interval_s * (1 + u(rng));
      std::unique_lock<std::mutex> lock(wait_mu_);
      if (wait_cv_.wait_for(lock, std::chrono::duration<double>(wait_s),
                            [this] { return stop_; })) {
        return;
      }
    }
  });
}

void Updater::Stop() {
  {
    std::lock_guard<std::mutex> lock(wait_mu_);
    stop_ = true;
  }
  wait_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string Updater::CurrentModelPath() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_.current ? Join(opts_.model_dir, state_.current->file) : std::string();
}

OtaState Updater::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

bool Updater::Stale() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_.current && Now() - state_.current->installed_unix > opts_.max_model_age_s;
}

json Updater::StatusJson() const {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = Now();
  int64_t age = state_.current ? now - state_.current->installed_unix : -1;
  return {{"model", state_.model_name},
          {"profile", opts_.profile},
          {"current_version", state_.current ? state_.current->version : 0},
          {"current_sha256", state_.current ? state_.current->sha256 : ""},
          {"backup_version", state_.backup ? state_.backup->version : 0},
          {"highest_version", state_.highest_version},
          {"root_version", state_.root_version},
          {"in_probation", now < state_.probation_until},
          {"model_age_s", age},
          {"stale", age > opts_.max_model_age_s},
          {"checks", checks_},
          {"failures", failures_},
          {"installs", installs_},
          {"rollbacks", state_.rollbacks},
          {"last_rollback_reason", state_.last_rollback_reason},
          {"last_check", last_check_unix_ ? FormatTime(last_check_unix_) : ""},
          {"last_result", last_result_},
          {"last_error", last_error_}};
}

}  // namespace tend::ota
