// The publisher's side: a registry is a plain directory (root.json, N.root.json for every root
// version, targets.json, timestamp.json, files/<sha256>.onnx) that any static HTTP server or
// object store can serve. Publishing copies the model content-addressed, re-signs targets and then
// timestamp, each file replaced atomically so a client never sees a half-written release.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"
#include "ota/crypto.h"
#include "ota/metadata.h"
#include "ota/rollout.h"

namespace tend::ota {

inline constexpr int64_t kDay = 86400;

// A root in which `keys` hold every role with the given threshold.
RootMeta MakeRoot(const std::vector<KeyPair>& keys, int64_t threshold, int64_t version,
                  int64_t expires);

// Writes <version>.root.json and root.json, signed by `signers`. For version 1 the signers are the
// root's own keys; for a rotation they must include the previous root's threshold too.
Status WriteRoot(const std::string& dir, const RootMeta& root, const std::vector<KeyPair>& signers);

struct PublishOptions {
  std::string model_path;
  std::string name;
  int64_t version = 0;
  std::vector<std::string> profiles;
  double min_quality = 0;
  int64_t now = 0;                         // unix seconds
  int64_t targets_expires_s = 365 * kDay;  // from now
  int64_t timestamp_expires_s = 30 * kDay;
  // A staged rollout, signed into the release (custom.rollout); none: every device at once.
  std::optional<RolloutPlan> rollout;
};

// Adds a release: refuses a version not above the newest published one of the same name, a
// name/profile that is not a safe identifier, or keys that do not reach the targets/timestamp
// thresholds of the registry's current root (root.json must exist: see WriteRoot).
Result<TargetInfo> Publish(const std::string& dir, const PublishOptions& opts,
                           const std::vector<KeyPair>& keys);

// Re-signs timestamp.json over the current targets.json with a fresh expiry (publishers run this
// more often than timestamp_expires_s so devices can tell a frozen server from a quiet one).
// When targets.json no longer satisfies the current root's targets role (after rotate-root), it
// is re-signed first with `keys` (same releases, next version); returns whether that happened.
// Fails when `keys` do not reach a needed role's threshold.
Result<bool> RefreshTimestamp(const std::string& dir, const std::vector<KeyPair>& keys, int64_t now,
                              int64_t expires_s);

// SPEC's GET /models/{name}/latest?profile=...: {"version","url","checksum","metadata"}, with
// the signed targets/timestamp envelopes in metadata so a client can verify this answer too.
Result<nlohmann::json> LatestRelease(const std::string& dir, const std::string& name,
                                     const std::string& profile);

}  // namespace tend::ota
