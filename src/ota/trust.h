// Client-side verification of the metadata chain, pure functions with no I/O so that every
// attack can be tested directly: root rotation (new root signed by the old threshold and its own),
// timestamp -> targets pinning (mix-and-match), version floors (rollback), expiry against a time
// floor the caller keeps monotonic (freeze), profile selection and the exact target bytes.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/status.h"
#include "ota/metadata.h"

namespace tend::ota {

// A root shipped with the device (pinned): it must carry its own root threshold of signatures.
// Expiry is not checked here: a device may boot with an old pinned root and rotate forward.
Result<RootMeta> VerifyPinnedRoot(std::string_view bytes);

// The next root in the chain: version == trusted.version + 1, signed by the threshold of the
// trusted root's root role AND of its own root role (so keys can be rotated but not stolen).
Result<RootMeta> VerifyRootUpdate(const RootMeta& trusted, std::string_view next_bytes);

// Fails with kSecurity when `expires` <= now.
Status CheckNotExpired(int64_t expires, int64_t now, const std::string& what);

// timestamp.json: signatures by root's timestamp role, not expired, version >= floor.
Result<TimestampMeta> VerifyTimestamp(const RootMeta& root, std::string_view bytes,
                                      int64_t version_floor, int64_t now);

// targets.json: exactly the bytes the timestamp pins (length and SHA-256, checked before parsing),
// signatures by root's targets role, version == pinned version >= floor, not expired.
Result<TargetsMeta> VerifyTargets(const RootMeta& root, const TimestampMeta& ts,
                                  std::string_view bytes, int64_t version_floor, int64_t now);

// The highest-version release of `name` that lists `profile`; NotFound when none does.
Result<TargetInfo> SelectTarget(const TargetsMeta& targets, const std::string& name,
                                const std::string& profile);

// Length and SHA-256 of the bytes that will be loaded.
Status VerifyTargetBytes(const TargetInfo& target, std::span<const uint8_t> bytes);

}  // namespace tend::ota
