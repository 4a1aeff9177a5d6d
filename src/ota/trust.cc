#include "ota/trust.h"

#include <set>

namespace tend::ota {
namespace {

Result<Envelope> Envelope_(std::string_view bytes, const std::string& what) {
  return ParseEnvelope(bytes, what);
}

}  // namespace

Result<RootMeta> VerifyPinnedRoot(std::string_view bytes) {
  TEND_ASSIGN_OR_RETURN(Envelope env, Envelope_(bytes, "root.json"));
  TEND_ASSIGN_OR_RETURN(RootMeta root, ParseRoot(env.signed_part, "root.json"));
  TEND_RETURN_NOT_OK(VerifyRole(env, root, kRoleRoot, "root.json"));
  return root;
}

Result<RootMeta> VerifyRootUpdate(const RootMeta& trusted, std::string_view next_bytes) {
  std::string what = std::to_string(trusted.version + 1) + ".root.json";
  TEND_ASSIGN_OR_RETURN(Envelope env, Envelope_(next_bytes, what));
  // Signatures by the old root first: nothing of an unauthenticated document is trusted.
  TEND_RETURN_NOT_OK(VerifyRole(env, trusted, kRoleRoot, what + " (by the trusted root)"));
  TEND_ASSIGN_OR_RETURN(RootMeta next, ParseRoot(env.signed_part, what));
  TEND_RETURN_NOT_OK(VerifyRole(env, next, kRoleRoot, what + " (by its own keys)"));
  if (next.version != trusted.version + 1) {
    return Fail(Error::Security(what + ": version " + std::to_string(next.version) + ", expected " +
                                std::to_string(trusted.version + 1)));
  }
  return next;
}

Status CheckNotExpired(int64_t expires, int64_t now, const std::string& what) {
  if (expires <= now) {
    return Fail(Error::Security(what + ": expired at " + FormatTime(expires) +
                                " (trusted time is " + FormatTime(now) + ")"));
  }
  return Ok();
}

Result<TimestampMeta> VerifyTimestamp(const RootMeta& root, std::string_view bytes,
                                      int64_t version_floor, int64_t now) {
  const std::string what = "timestamp.json";
  TEND_ASSIGN_OR_RETURN(Envelope env, Envelope_(bytes, what));
  TEND_RETURN_NOT_OK(VerifyRole(env, root, kRoleTimestamp, what));
  TEND_ASSIGN_OR_RETURN(TimestampMeta ts, ParseTimestamp(env.signed_part, what));
  TEND_RETURN_NOT_OK(CheckNotExpired(ts.expires, now, what));
  if (ts.version < version_floor) {
    return Fail(Error::Security(what + ": version " + std::to_string(ts.version) +
                                " is older than the trusted version " +
                                std::to_string(version_floor) + " (rollback)"));
  }
  return ts;
}

Result<TargetsMeta> VerifyTargets(const RootMeta& root, const TimestampMeta& ts,
                                  std::string_view bytes, int64_t version_floor, int64_t now) {
  const std::string what = "targets.json";
  if (static_cast<int64_t>(bytes.size()) != ts.targets_length) {
    return Fail(Error::Security(what + ": " + std::to_string(bytes.size()) +
                                " bytes, timestamp pins " + std::to_string(ts.targets_length)));
  }
  if (Sha256Hex(std::string(bytes)) != ts.targets_sha256) {
    return Fail(Error::Security(what + ": SHA-256 differs from the one the timestamp pins"));
  }
  TEND_ASSIGN_OR_RETURN(Envelope env, Envelope_(bytes, what));
  TEND_RETURN_NOT_OK(VerifyRole(env, root, kRoleTargets, what));
  TEND_ASSIGN_OR_RETURN(TargetsMeta t, ParseTargets(env.signed_part, what));
  if (t.version != ts.targets_version) {
    return Fail(Error::Security(what + ": version " + std::to_string(t.version) +
                                ", timestamp pins " + std::to_string(ts.targets_version)));
  }
  if (t.version < version_floor) {
    return Fail(Error::Security(what + ": version " + std::to_string(t.version) +
                                " is older than the trusted version " +
                                std::to_string(version_floor) + " (rollback)"));
  }
  TEND_RETURN_NOT_OK(CheckNotExpired(t.expires, now, what));
  return t;
}

Result<TargetInfo> SelectTarget(const TargetsMeta& targets, const std::string& name,
                                const std::string& profile) {
  const TargetInfo* best = nullptr;
  bool name_seen = false;
  for (const auto& t : targets.targets) {
    if (t.name != name) continue;
    name_seen = true;
    bool match = false;
    for (const auto& p : t.profiles) match |= p == profile;
    if (match && (!best || t.version > best->version)) best = &t;
  }
  if (!best) {
    // Say what is there: a device configured with another model name or profile than the
    // publisher used otherwise never updates, and nothing tells why.
    std::set<std::string> there;
    for (const auto& t : targets.targets) {
      if (!name_seen) there.insert(t.name);
      if (name_seen && t.name == name) there.insert(t.profiles.begin(), t.profiles.end());
    }
    std::string list;
    for (const auto& x : there) list += (list.empty() ? "\"" : ", \"") + x + "\"";
    if (list.empty()) list = "none";
    return Fail(Error::NotFound(
        "targets.json: no release of model \"" + name + "\"" +
        (name_seen ? " for profile \"" + profile + "\" (its profiles: " : " (models published: ") +
        list + ")"));
  }
  return *best;
}

Status VerifyTargetBytes(const TargetInfo& target, std::span<const uint8_t> bytes) {
  if (static_cast<int64_t>(bytes.size()) != target.length) {
    return Fail(Error::Security(target.path + ": " + std::to_string(bytes.size()) +
                                " bytes, signed length is " + std::to_string(target.length)));
  }
  if (Sha256Hex(bytes) != target.sha256) {
    return Fail(Error::Security(target.path + ": SHA-256 differs from the signed one"));
  }
  return Ok();
}

}  // namespace tend::ota
