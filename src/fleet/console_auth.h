// Who may use the fleet console. Bearer tokens (`tend fleet token create`) are 32 random bytes
// from libsodium, shown once as "tend_<64 hex>"; the database keeps only their BLAKE2b-256 hash
// (crypto_generichash). Tokens carry 256 bits of entropy, so a slow password hash (Argon2) would
// add latency to every API call without making a stolen database any more useful. A browser logs
// in with a token once and gets a session: a random id in an HttpOnly, SameSite=Strict cookie
// (hash stored), an absolute expiry, and a CSRF token that the page must send back in
// X-CSRF-Token with every action. Requests with an Authorization header carry no ambient
// credential, so they need no CSRF token.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/status.h"
#include "fleet/console_db.h"

namespace tend::fleet {

enum class Role { kNone = 0, kViewer = 1, kOperator = 2 };
Result<Role> ParseRole(const std::string& s);
const char* RoleName(Role r);

// "tend_" + 64 lower-case hex digits of fresh random bytes.
std::string NewSecret();
// Hex BLAKE2b-256 of a token or session id: what the database stores.
std::string HashSecret(const std::string& secret);
// Compares in time independent of where the strings differ.
bool SecretsEqual(const std::string& a, const std::string& b);

struct NewToken {
  std::string token;  // shown once
  TokenRow row;
};
// ttl_s <= 0: never expires.
Result<NewToken> CreateToken(ConsoleDb& db, const std::string& name, Role role, int64_t ttl_s,
                             int64_t now_ms);

// The caller of one request.
struct Principal {
  std::string name;
  Role role = Role::kNone;
  bool via_session = false;  // cookie session: actions need the CSRF token
  std::string session_hash, csrf;
};

// Resolves a bearer token: unknown, revoked or expired tokens give nullopt.
Result<std::optional<Principal>> PrincipalFromToken(ConsoleDb& db, const std::string& token,
                                                    int64_t now_ms);
// Resolves a session id from the cookie: unknown or expired sessions give nullopt.
Result<std::optional<Principal>> PrincipalFromSession(ConsoleDb& db, const std::string& session_id,
                                                      int64_t now_ms);

struct NewSession {
  std::string id, csrf;
  int64_t expires_ms = 0;
  Principal who;
};
// A session for the holder of a valid token; it never outlives the token.
Result<std::optional<NewSession>> OpenSession(ConsoleDb& db, const std::string& token,
                                              int64_t ttl_s, int64_t now_ms);

}  // namespace tend::fleet
