// Signed release metadata, in the spirit of The Update Framework: a root role pins the keys and
// thresholds of every role, targets lists the releases (name, monotonic version, device profiles,
// length, SHA-256, minimum quality), timestamp pins the current targets file so a server cannot
// freeze or mix them. Every role has a version and an expiry; signatures cover canonical JSON.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/json.h"
#include "core/status.h"
#include "ota/crypto.h"

namespace tend::ota {

inline constexpr char kRoleRoot[] = "root";
inline constexpr char kRoleTargets[] = "targets";
inline constexpr char kRoleTimestamp[] = "timestamp";

struct RoleKeys {
  std::vector<std::string> keyids;
  int64_t threshold = 1;
};

struct RootMeta {
  int64_t version = 1;
  int64_t expires = 0;                      // unix seconds
  std::map<std::string, std::string> keys;  // keyid -> hex public key
  std::map<std::string, RoleKeys> roles;    // root, targets, timestamp
};

struct TargetInfo {
  std::string path;  // relative to the registry base, e.g. files/<sha256>.onnx
  int64_t length = 0;
  std::string sha256;
  std::string name;
  int64_t version = 0;
  std::vector<std::string> profiles;
  double min_quality = 0;  // the device's reference-set score must reach this before commit
  // The release's staged rollout plan (custom.rollout), signed with it; null when the release goes
  // to every device at once. Parsed and checked by ota::ParseRolloutPlan (ota/rollout.h).
  nlohmann::json rollout;
};

struct TargetsMeta {
  int64_t version = 1;
  int64_t expires = 0;
  std::vector<TargetInfo> targets;
};

struct TimestampMeta {
  int64_t version = 1;
  int64_t expires = 0;
  int64_t targets_version = 0;
  int64_t targets_length = 0;
  std::string targets_sha256;
};

struct Signature {
  std::string keyid;
  std::string sig;
};

// Release metadata is a few kilobytes and five levels deep; these bounds are generous for it and
// keep a hostile registry's document from exhausting the stack or memory before verification.
inline constexpr tend::json::JsonLimits kMetadataJsonLimits{16u << 20, 32};

// {"signed": {...}, "signatures": [{"keyid": .., "sig": ..}]}.
struct Envelope {
  nlohmann::json signed_part;
  std::vector<Signature> signatures;
};

// Sorted keys, no whitespace; what signatures are computed over. Floats are refused by the
// parsers below except for min_quality, which round-trips exactly through nlohmann's printer.
std::string CanonicalJson(const nlohmann::json& j);

// "2027-01-31T00:00:00Z" <-> unix seconds (UTC only).
Result<int64_t> ParseTime(const std::string& iso, const std::string& what);
std::string FormatTime(int64_t unix_s);

Result<Envelope> ParseEnvelope(std::string_view bytes, const std::string& what);
// Signs `signed_part` with every key and returns the envelope's bytes (pretty-printed JSON).
Result<std::string> SignEnvelope(const nlohmann::json& signed_part,
                                 const std::vector<KeyPair>& keys);

// Counts distinct key ids of `role` in `root` whose signature over the canonical signed part
// verifies; fails unless the count reaches the role's threshold. Also checks "_type".
Status VerifyRole(const Envelope& env, const RootMeta& root, const std::string& role,
                  const std::string& what);
// The signature count of VerifyRole without the "_type" check, for documents of another type
// signed by a role's keys (control.json: _type "control", signed by the timestamp role).
Status VerifySignatures(const Envelope& env, const RootMeta& root, const std::string& role,
                        const std::string& what);

Result<RootMeta> ParseRoot(const nlohmann::json& signed_part, const std::string& what);
Result<TargetsMeta> ParseTargets(const nlohmann::json& signed_part, const std::string& what);
Result<TimestampMeta> ParseTimestamp(const nlohmann::json& signed_part, const std::string& what);
nlohmann::json ToJson(const RootMeta& m);
nlohmann::json ToJson(const TargetsMeta& m);
nlohmann::json ToJson(const TimestampMeta& m);

// A target path is relative, '/'-separated, each part of [A-Za-z0-9._-] and not "." or "..".
Status CheckTargetPath(const std::string& path);
// Model names and profiles end up in file names and URLs: [A-Za-z0-9._-], not starting with '.'.
Status CheckName(const std::string& name, const std::string& what);

}  // namespace tend::ota
