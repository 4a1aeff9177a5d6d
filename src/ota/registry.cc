#include "ota/registry.h"

#include <filesystem>

#include "core/fs.h"
#include "core/log.h"
#include "ota/trust.h"

namespace tend::ota {
namespace {

using nlohmann::json;

Result<RootMeta> CurrentRoot(const std::string& dir) {
  std::string path = fs::JoinPath(dir, "root.json");
  TEND_ASSIGN_OR_RETURN(std::string text, fs::ReadFile(path));
  TEND_ASSIGN_OR_RETURN(Envelope env, ParseEnvelope(text, path));
  return ParseRoot(env.signed_part, path);
}

// The subset of `keys` that the role accepts; fails when they cannot reach its threshold.
Result<std::vector<KeyPair>> SignersFor(const RootMeta& root, const std::string& role,
                                        const std::vector<KeyPair>& keys) {
  const RoleKeys& rk = root.roles.at(role);
  std::vector<KeyPair> out;
  for (const auto& k : keys) {
    for (const auto& id : rk.keyids) {
      if (id == k.keyid) out.push_back(k);
    }
  }
  if (static_cast<int64_t>(out.size()) < rk.threshold) {
    return Fail(Error::Security("registry root: the given keys hold " + std::to_string(out.size()) +
                                " of the " + std::to_string(rk.threshold) + " " + role +
                                " keys needed"));
  }
  return out;
}

Result<TargetsMeta> ReadTargets(const std::string& dir) {
  std::string path = fs::JoinPath(dir, "targets.json");
  if (!fs::Exists(path)) return TargetsMeta{0, 0, {}};
  TEND_ASSIGN_OR_RETURN(std::string text, fs::ReadFile(path));
  TEND_ASSIGN_OR_RETURN(Envelope env, ParseEnvelope(text, path));
  return ParseTargets(env.signed_part, path);
}

Status WriteTimestamp(const std::string& dir, const RootMeta& root,
                      const std::vector<KeyPair>& keys, int64_t version, int64_t now,
                      int64_t expires_s) {
  std::string tpath = fs::JoinPath(dir, "targets.json");
  TEND_ASSIGN_OR_RETURN(std::string targets_text, fs::ReadFile(tpath));
  TEND_ASSIGN_OR_RETURN(Envelope tenv, ParseEnvelope(targets_text, tpath));
  TEND_ASSIGN_OR_RETURN(TargetsMeta tm, ParseTargets(tenv.signed_part, tpath));
  TEND_ASSIGN_OR_RETURN(auto signers, SignersFor(root, kRoleTimestamp, keys));
  TimestampMeta ts;
  ts.version = version;
  ts.expires = now + expires_s;
  ts.targets_version = tm.version;
  ts.targets_length = static_cast<int64_t>(targets_text.size());
  ts.targets_sha256 = Sha256Hex(targets_text);
  TEND_ASSIGN_OR_RETURN(std::string bytes, SignEnvelope(ToJson(ts), signers));
  return fs::WriteFileAtomic(fs::JoinPath(dir, "timestamp.json"), bytes);
}

Result<int64_t> TimestampVersion(const std::string& dir) {
  std::string path = fs::JoinPath(dir, "timestamp.json");
  if (!fs::Exists(path)) return 0;
  TEND_ASSIGN_OR_RETURN(std::string text, fs::ReadFile(path));
  TEND_ASSIGN_OR_RETURN(Envelope env, ParseEnvelope(text, path));
  TEND_ASSIGN_OR_RETURN(TimestampMeta ts, ParseTimestamp(env.signed_part, path));
  return ts.version;
}

}  // namespace

RootMeta MakeRoot(const std::vector<KeyPair>& keys, int64_t threshold, int64_t version,
                  int64_t expires) {
  RootMeta r;
  r.version = version;
  r.expires = expires;
  RoleKeys rk;
  rk.threshold = threshold;
  for (const auto& k : keys) {
    r.keys[k.keyid] = k.public_hex;
    rk.keyids.push_back(k.keyid);
  }
  for (const char* role : {kRoleRoot, kRoleTargets, kRoleTimestamp}) r.roles[role] = rk;
  return r;
}

Status WriteRoot(const std::string& dir, const RootMeta& root,
                 const std::vector<KeyPair>& signers) {
  TEND_RETURN_NOT_OK(fs::MakeDirs(dir));
  TEND_ASSIGN_OR_RETURN(std::string bytes, SignEnvelope(ToJson(root), signers));
  // Check it the way a device will, so a publisher cannot ship a chain devices would refuse.
  if (root.version == 1) {
    TEND_RETURN_NOT_OK(VerifyPinnedRoot(bytes));
  } else {
    TEND_ASSIGN_OR_RETURN(RootMeta prev, CurrentRoot(dir));
    TEND_ASSIGN_OR_RETURN(RootMeta next, VerifyRootUpdate(prev, bytes));
    (void)next;
  }
  TEND_RETURN_NOT_OK(
      fs::WriteFileAtomic(fs::JoinPath(dir, std::to_string(root.version) + ".root.json"), bytes));
  return fs::WriteFileAtomic(fs::JoinPath(dir, "root.json"), bytes);
}

Result<TargetInfo> Publish(const std::string& dir, const PublishOptions& opts,
                           const std::vector<KeyPair>& keys) {
  TEND_RETURN_NOT_OK(CheckName(opts.name, "model name"));
  if (opts.version < 1) return Fail(Error::Invalid("--version must be >= 1"));
  if (opts.profiles.empty()) return Fail(Error::Invalid("at least one --profile is needed"));
  for (const auto& p : opts.profiles) TEND_RETURN_NOT_OK(CheckName(p, "profile"));
  TEND_ASSIGN_OR_RETURN(RootMeta root, CurrentRoot(dir));
  TEND_ASSIGN_OR_RETURN(auto targets_signers, SignersFor(root, kRoleTargets, keys));
  TEND_RETURN_NOT_OK(SignersFor(root, kRoleTimestamp, keys));
  TEND_ASSIGN_OR_RETURN(TargetsMeta tm, ReadTargets(dir));
  for (const auto& t : tm.targets) {
    if (t.name == opts.name && t.version >= opts.version) {
      return Fail(Error::Invalid("model \"" + opts.name + "\" version " +
                                 std::to_string(opts.version) + " is not above published version " +
                                 std::to_string(t.version)));
    }
  }
  TEND_ASSIGN_OR_RETURN(auto bytes, fs::ReadBinaryFile(opts.model_path));
  if (bytes.empty()) return Fail(Error::Invalid(opts.model_path + ": empty file"));
  TargetInfo t;
  t.sha256 = Sha256Hex(bytes);
  t.path = "files/" + t.sha256 + ".onnx";
  t.length = static_cast<int64_t>(bytes.size());
  t.name = opts.name;
  t.version = opts.version;
  t.profiles = opts.profiles;
  t.min_quality = opts.min_quality;
  if (opts.rollout) t.rollout = ToJson(*opts.rollout);
  TEND_RETURN_NOT_OK(fs::MakeDirs(fs::JoinPath(dir, "files")));
  TEND_RETURN_NOT_OK(fs::WriteFileAtomic(fs::JoinPath(dir, t.path), bytes));
  // Content-addressed: the same bytes published twice share a path; keep one entry per path.
  std::erase_if(tm.targets, [&](const TargetInfo& o) { return o.path == t.path; });
  tm.targets.push_back(t);
  tm.version += 1;
  tm.expires = opts.now + opts.targets_expires_s;
  TEND_ASSIGN_OR_RETURN(std::string tbytes, SignEnvelope(ToJson(tm), targets_signers));
  TEND_RETURN_NOT_OK(fs::WriteFileAtomic(fs::JoinPath(dir, "targets.json"), tbytes));
  TEND_ASSIGN_OR_RETURN(int64_t ts_version, TimestampVersion(dir));
  TEND_RETURN_NOT_OK(
      WriteTimestamp(dir, root, keys, ts_version + 1, opts.now, opts.timestamp_expires_s));
  TEND_LOG_INFO("published {} v{} ({} bytes, sha256 {}) as {}", t.name, t.version, t.length,
                t.sha256, t.path);
  return t;
}

Result<bool> RefreshTimestamp(const std::string& dir, const std::vector<KeyPair>& keys, int64_t now,
                              int64_t expires_s) {
  TEND_ASSIGN_OR_RETURN(RootMeta root, CurrentRoot(dir));
  TEND_RETURN_NOT_OK(SignersFor(root, kRoleTimestamp, keys));
  // After `rotate-root`, targets.json still carries the retired keys' signatures, which devices
  // that follow the new root refuse: re-sign it (same releases, next version) with the new keys.
  bool resigned = false;
  const std::string tpath = fs::JoinPath(dir, "targets.json");
  if (fs::Exists(tpath)) {
    TEND_ASSIGN_OR_RETURN(std::string text, fs::ReadFile(tpath));
    TEND_ASSIGN_OR_RETURN(Envelope env, ParseEnvelope(text, tpath));
    if (!VerifyRole(env, root, kRoleTargets, tpath)) {
      TEND_ASSIGN_OR_RETURN(auto signers, SignersFor(root, kRoleTargets, keys));
      TEND_ASSIGN_OR_RETURN(TargetsMeta tm, ParseTargets(env.signed_part, tpath));
      tm.version += 1;
      TEND_ASSIGN_OR_RETURN(std::string bytes, SignEnvelope(ToJson(tm), signers));
      TEND_RETURN_NOT_OK(fs::WriteFileAtomic(tpath, bytes));
      resigned = true;
    }
  }
  TEND_ASSIGN_OR_RETURN(int64_t ts_version, TimestampVersion(dir));
  TEND_RETURN_NOT_OK(WriteTimestamp(dir, root, keys, ts_version + 1, now, expires_s));
  return resigned;
}

Result<json> LatestRelease(const std::string& dir, const std::string& name,
                           const std::string& profile) {
  TEND_RETURN_NOT_OK(CheckName(name, "model name"));
  TEND_RETURN_NOT_OK(CheckName(profile, "profile"));
  TEND_ASSIGN_OR_RETURN(std::string ttext, fs::ReadFile(fs::JoinPath(dir, "targets.json")));
  TEND_ASSIGN_OR_RETURN(std::string stext, fs::ReadFile(fs::JoinPath(dir, "timestamp.json")));
  TEND_ASSIGN_OR_RETURN(Envelope tenv, ParseEnvelope(ttext, "targets.json"));
  TEND_ASSIGN_OR_RETURN(TargetsMeta tm, ParseTargets(tenv.signed_part, "targets.json"));
  TEND_ASSIGN_OR_RETURN(TargetInfo t, SelectTarget(tm, name, profile));
  json meta = {{"name", t.name},     {"profiles", t.profiles},
               {"length", t.length}, {"min_quality", t.min_quality},
               {"path", t.path},     {"rollout", t.rollout},
               {"targets", nullptr}, {"timestamp", nullptr}};
  TEND_ASSIGN_OR_RETURN(meta["targets"],
                        tend::json::ParseJson(ttext, "targets.json", kMetadataJsonLimits));
  // The timestamp is informational here; a damaged one is shown as null, not an error.
  if (auto s = tend::json::ParseJson(stext, "timestamp.json", kMetadataJsonLimits)) {
    meta["timestamp"] = std::move(*s);
  }
  return json{
      {"version", t.version}, {"url", "/" + t.path}, {"checksum", t.sha256}, {"metadata", meta}};
}

}  // namespace tend::ota
