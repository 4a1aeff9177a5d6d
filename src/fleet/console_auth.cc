#include "fleet/console_auth.h"

#include <sodium.h>

#include <algorithm>

#include "ota/crypto.h"

namespace tend::fleet {

Result<Role> ParseRole(const std::string& s) {
  if (s == "viewer") return Role::kViewer;
  if (s == "operator") return Role::kOperator;
  return Fail(Error::Invalid("role \"" + s + "\": expected viewer or operator"));
}

const char* RoleName(Role r) {
  switch (r) {
    case Role::kViewer:
      return "viewer";
    case Role::kOperator:
      return "operator";
    case Role::kNone:
      break;
  }
  return "none";
}

std::string NewSecret() {
  uint8_t bytes[32];
  randombytes_buf(bytes, sizeof bytes);
  return "tend_" + ota::ToHex(bytes);
}

std::string HashSecret(const std::string& secret) {
  uint8_t out[crypto_generichash_BYTES];
  crypto_generichash(out, sizeof out, reinterpret_cast<const uint8_t*>(secret.data()),
                     secret.size(), nullptr, 0);
  return ota::ToHex(out);
}

bool SecretsEqual(const std::string& a, const std::string& b) {
  if (a.size() != b.size() || a.empty()) return false;
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

Result<NewToken> CreateToken(ConsoleDb& db, const std::string& name, Role role, int64_t ttl_s,
                             int64_t now_ms) {
  if (role == Role::kNone) return Fail(Error::Invalid("a token needs a role"));
  if (name.empty() || name.size() > 128) {
    return Fail(Error::Invalid("token name must be 1-128 characters"));
  }
  if (sodium_init() < 0) return Fail(Error::Internal("libsodium failed to initialise"));
  NewToken t;
  t.token = NewSecret();
  t.row.hash = HashSecret(t.token);
  t.row.name = name;
  t.row.role = RoleName(role);
  t.row.created_ms = now_ms;
  t.row.expires_ms = ttl_s > 0 ? now_ms + ttl_s * 1000 : 0;
  TEND_RETURN_NOT_OK(db.AddToken(t.row));
  return t;
}

Result<std::optional<Principal>> PrincipalFromToken(ConsoleDb& db, const std::string& token,
                                                    int64_t now_ms) {
  if (token.size() < 8 || token.size() > 256) return std::optional<Principal>();
  TEND_ASSIGN_OR_RETURN(auto row, db.FindToken(HashSecret(token)));
  if (!row || row->revoked || (row->expires_ms > 0 && row->expires_ms <= now_ms)) {
    return std::optional<Principal>();
  }
  auto role = ParseRole(row->role);
  if (!role) return std::optional<Principal>();
  Principal p;
  p.name = row->name;
  p.role = *role;
  return std::optional<Principal>(p);
}

Result<std::optional<Principal>> PrincipalFromSession(ConsoleDb& db, const std::string& session_id,
                                                      int64_t now_ms) {
  if (session_id.size() < 8 || session_id.size() > 256) return std::optional<Principal>();
  const std::string hash = HashSecret(session_id);
  TEND_ASSIGN_OR_RETURN(auto s, db.FindSession(hash));
  if (!s || s->expires_ms <= now_ms) return std::optional<Principal>();
  // The token behind the session must still be valid (a revoked token ends its sessions).
  TEND_ASSIGN_OR_RETURN(auto tok, db.FindToken(s->token_hash));
  if (!tok || tok->revoked || (tok->expires_ms > 0 && tok->expires_ms <= now_ms)) {
    return std::optional<Principal>();
  }
  auto role = ParseRole(s->role);
  if (!role) return std::optional<Principal>();
  Principal p;
  p.name = s->name;
  p.role = *role;
  p.via_session = true;
  p.session_hash = hash;
  p.csrf = s->csrf;
  return std::optional<Principal>(p);
}

Result<std::optional<NewSession>> OpenSession(ConsoleDb& db, const std::string& token,
                                              int64_t ttl_s, int64_t now_ms) {
  TEND_ASSIGN_OR_RETURN(auto who, PrincipalFromToken(db, token, now_ms));
  if (!who) return std::optional<NewSession>();
  TEND_ASSIGN_OR_RETURN(auto row, db.FindToken(HashSecret(token)));
  NewSession s;
  s.id = NewSecret();
  s.csrf = NewSecret();
  s.expires_ms = now_ms + ttl_s * 1000;
  if (row && row->expires_ms > 0) s.expires_ms = std::min(s.expires_ms, row->expires_ms);
  s.who = *who;
  s.who.via_session = true;
  s.who.session_hash = HashSecret(s.id);
  s.who.csrf = s.csrf;
  SessionRow r{
      s.who.session_hash, row ? row->hash : "", who->name, RoleName(who->role), s.csrf, now_ms,
      s.expires_ms};
  TEND_RETURN_NOT_OK(db.DeleteExpiredSessions(now_ms));
  TEND_RETURN_NOT_OK(db.AddSession(r));
  return std::optional<NewSession>(std::move(s));
}

}  // namespace tend::fleet
