#include "ota/metadata.h"

#include <ctime>
#include <set>

#include "core/json.h"

namespace tend::ota {
namespace {

using nlohmann::json;

Result<const json*> Field(const json& j, const char* key, const std::string& what) {
  if (!j.is_object()) return Fail(Error::Corrupt(what + ": expected a JSON object"));
  auto it = j.find(key);
  if (it == j.end()) return Fail(Error::Corrupt(what + ": missing field \"" + key + "\""));
  return &*it;
}

Result<int64_t> GetInt(const json& j, const char* key, const std::string& what) {
  TEND_ASSIGN_OR_RETURN(const json* v, Field(j, key, what));
  if (!v->is_number_integer()) {
    return Fail(Error::Corrupt(what + ": field \"" + key + "\" must be an integer"));
  }
  return v->get<int64_t>();
}

Result<std::string> GetString(const json& j, const char* key, const std::string& what) {
  TEND_ASSIGN_OR_RETURN(const json* v, Field(j, key, what));
  if (!v->is_string()) {
    return Fail(Error::Corrupt(what + ": field \"" + key + "\" must be a string"));
  }
  return v->get<std::string>();
}

Status CheckType(const json& j, const char* type, const std::string& what) {
  TEND_ASSIGN_OR_RETURN(std::string t, GetString(j, "_type", what));
  if (t != type) {
    return Fail(Error::Security(what + ": _type is \"" + t + "\", expected \"" + type + "\""));
  }
  return Ok();
}

Status CheckVersion(int64_t v, const std::string& what) {
  if (v < 1) return Fail(Error::Corrupt(what + ": version must be >= 1"));
  return Ok();
}

Status CheckSha256(const std::string& hex, const std::string& what) {
  if (hex.size() != 64 || !FromHex(hex, what)) {
    return Fail(Error::Corrupt(what + ": sha256 must be 64 lower-case hex digits"));
  }
  return Ok();
}

bool SafeChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

}  // namespace

std::string CanonicalJson(const json& j) { return j.dump(); }

Result<int64_t> ParseTime(const std::string& iso, const std::string& what) {
  std::tm tm{};
  char z = 0;
  int n = std::sscanf(iso.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c", &tm.tm_year, &tm.tm_mon,
                      &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &z);
  if (n != 7 || z != 'Z' || iso.size() != 20 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
      tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60) {
    return Fail(
        Error::Corrupt(what + ": bad time \"" + iso + "\" (expected YYYY-MM-DDTHH:MM:SSZ)"));
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<int64_t>(timegm(&tm));
}

std::string FormatTime(int64_t unix_s) {
  std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Result<Envelope> ParseEnvelope(std::string_view bytes, const std::string& what) {
  // Bounded before anything else: this runs on unauthenticated bytes, before any signature check.
  TEND_ASSIGN_OR_RETURN(json j, tend::json::ParseJson(bytes, what, kMetadataJsonLimits));
  if (!j.is_object()) return Fail(Error::Corrupt(what + ": expected a JSON object"));
  Envelope env;
  TEND_ASSIGN_OR_RETURN(const json* s, Field(j, "signed", what));
  if (!s->is_object()) return Fail(Error::Corrupt(what + ": \"signed\" must be an object"));
  env.signed_part = *s;
  auto sigs = j.find("signatures");
  if (sigs == j.end() || !sigs->is_array()) {
    return Fail(Error::Security(what + ": unsigned (no \"signatures\" array)"));
  }
  for (const auto& sj : *sigs) {
    TEND_ASSIGN_OR_RETURN(std::string keyid, GetString(sj, "keyid", what + ": signature"));
    TEND_ASSIGN_OR_RETURN(std::string sig, GetString(sj, "sig", what + ": signature"));
    env.signatures.push_back({std::move(keyid), std::move(sig)});
  }
  return env;
}

Result<std::string> SignEnvelope(const json& signed_part, const std::vector<KeyPair>& keys) {
  std::string msg = CanonicalJson(signed_part);
  json sigs = json::array();
  for (const auto& k : keys) {
    TEND_ASSIGN_OR_RETURN(std::string sig, SignHex(msg, k));
    sigs.push_back({{"keyid", k.keyid}, {"sig", sig}});
  }
  json env = {{"signed", signed_part}, {"signatures", sigs}};
  return env.dump(2) + "\n";
}

Status VerifyRole(const Envelope& env, const RootMeta& root, const std::string& role,
                  const std::string& what) {
  TEND_RETURN_NOT_OK(CheckType(env.signed_part, role.c_str(), what));
  return VerifySignatures(env, root, role, what);
}

Status VerifySignatures(const Envelope& env, const RootMeta& root, const std::string& role,
                        const std::string& what) {
  auto rit = root.roles.find(role);
  if (rit == root.roles.end()) {
    return Fail(Error::Security(what + ": root defines no role \"" + role + "\""));
  }
  const RoleKeys& rk = rit->second;
  std::string msg = CanonicalJson(env.signed_part);
  // A set of key ids, not a counter: the same signature listed twice counts once.
  std::set<std::string> good;
  for (const auto& s : env.signatures) {
    if (good.count(s.keyid)) continue;
    bool authorised = false;
    for (const auto& id : rk.keyids) authorised |= id == s.keyid;
    if (!authorised) continue;
    auto kit = root.keys.find(s.keyid);
    if (kit == root.keys.end()) continue;
    if (VerifyHex(msg, s.sig, kit->second)) good.insert(s.keyid);
  }
  if (static_cast<int64_t>(good.size()) < rk.threshold) {
    return Fail(Error::Security(what + ": " + std::to_string(good.size()) +
                                " valid signature(s) from " + role + " keys, threshold is " +
                                std::to_string(rk.threshold)));
  }
  return Ok();
}

Result<RootMeta> ParseRoot(const json& s, const std::string& what) {
  TEND_RETURN_NOT_OK(CheckType(s, kRoleRoot, what));
  RootMeta m;
  TEND_ASSIGN_OR_RETURN(m.version, GetInt(s, "version", what));
  TEND_RETURN_NOT_OK(CheckVersion(m.version, what));
  TEND_ASSIGN_OR_RETURN(std::string exp, GetString(s, "expires", what));
  TEND_ASSIGN_OR_RETURN(m.expires, ParseTime(exp, what + ": expires"));
  TEND_ASSIGN_OR_RETURN(const json* keys, Field(s, "keys", what));
  if (!keys->is_object()) return Fail(Error::Corrupt(what + ": \"keys\" must be an object"));
  for (const auto& [id, kj] : keys->items()) {
    std::string kwhat = what + ": key " + id;
    TEND_ASSIGN_OR_RETURN(std::string type, GetString(kj, "keytype", kwhat));
    if (type != "ed25519") return Fail(Error::Unsupported(kwhat + ": keytype must be ed25519"));
    TEND_ASSIGN_OR_RETURN(std::string pub, GetString(kj, "public", kwhat));
    auto real_id = KeyIdOf(pub);
    if (!real_id) return Fail(real_id.error().Wrap(kwhat));
    // A key listed under an id that is not its own could be counted twice under two ids.
    if (*real_id != id) {
      return Fail(Error::Security(kwhat + ": key id is not the SHA-256 of its public key"));
    }
    m.keys[id] = pub;
  }
  TEND_ASSIGN_OR_RETURN(const json* roles, Field(s, "roles", what));
  for (const char* role : {kRoleRoot, kRoleTargets, kRoleTimestamp}) {
    std::string rwhat = what + ": role " + role;
    TEND_ASSIGN_OR_RETURN(const json* rj, Field(*roles, role, what + ": roles"));
    RoleKeys rk;
    TEND_ASSIGN_OR_RETURN(rk.threshold, GetInt(*rj, "threshold", rwhat));
    TEND_ASSIGN_OR_RETURN(const json* ids, Field(*rj, "keyids", rwhat));
    if (!ids->is_array()) return Fail(Error::Corrupt(rwhat + ": keyids must be an array"));
    std::set<std::string> seen;
    for (const auto& idj : *ids) {
      if (!idj.is_string()) return Fail(Error::Corrupt(rwhat + ": keyids must be strings"));
      std::string id = idj.get<std::string>();
      if (!m.keys.count(id)) return Fail(Error::Corrupt(rwhat + ": unknown key id " + id));
      if (!seen.insert(id).second) return Fail(Error::Corrupt(rwhat + ": duplicate key id " + id));
      rk.keyids.push_back(id);
    }
    if (rk.threshold < 1 || rk.threshold > static_cast<int64_t>(rk.keyids.size())) {
      return Fail(Error::Corrupt(rwhat + ": threshold " + std::to_string(rk.threshold) +
                                 " must be between 1 and the number of keys (" +
                                 std::to_string(rk.keyids.size()) + ")"));
    }
    m.roles[role] = std::move(rk);
  }
  return m;
}

Result<TargetsMeta> ParseTargets(const json& s, const std::string& what) {
  TEND_RETURN_NOT_OK(CheckType(s, kRoleTargets, what));
  TargetsMeta m;
  TEND_ASSIGN_OR_RETURN(m.version, GetInt(s, "version", what));
  TEND_RETURN_NOT_OK(CheckVersion(m.version, what));
  TEND_ASSIGN_OR_RETURN(std::string exp, GetString(s, "expires", what));
  TEND_ASSIGN_OR_RETURN(m.expires, ParseTime(exp, what + ": expires"));
  TEND_ASSIGN_OR_RETURN(const json* targets, Field(s, "targets", what));
  if (!targets->is_object()) return Fail(Error::Corrupt(what + ": \"targets\" must be an object"));
  for (const auto& [path, tj] : targets->items()) {
    std::string twhat = what + ": target " + path;
    TargetInfo t;
    t.path = path;
    TEND_RETURN_NOT_OK(CheckTargetPath(path).map_error([&](Error e) { return e.Wrap(what); }));
    TEND_ASSIGN_OR_RETURN(t.length, GetInt(tj, "length", twhat));
    if (t.length <= 0) return Fail(Error::Corrupt(twhat + ": length must be > 0"));
    TEND_ASSIGN_OR_RETURN(const json* hashes, Field(tj, "hashes", twhat));
    TEND_ASSIGN_OR_RETURN(t.sha256, GetString(*hashes, "sha256", twhat + ": hashes"));
    TEND_RETURN_NOT_OK(CheckSha256(t.sha256, twhat));
    TEND_ASSIGN_OR_RETURN(const json* custom, Field(tj, "custom", twhat));
    TEND_ASSIGN_OR_RETURN(t.name, GetString(*custom, "name", twhat));
    TEND_RETURN_NOT_OK(CheckName(t.name, twhat + ": name"));
    TEND_ASSIGN_OR_RETURN(t.version, GetInt(*custom, "version", twhat));
    TEND_RETURN_NOT_OK(CheckVersion(t.version, twhat));
    TEND_ASSIGN_OR_RETURN(const json* profiles, Field(*custom, "profiles", twhat));
    if (!profiles->is_array() || profiles->empty()) {
      return Fail(Error::Corrupt(twhat + ": profiles must be a non-empty array"));
    }
    for (const auto& p : *profiles) {
      if (!p.is_string()) return Fail(Error::Corrupt(twhat + ": profiles must be strings"));
      TEND_RETURN_NOT_OK(CheckName(p.get<std::string>(), twhat + ": profile"));
      t.profiles.push_back(p.get<std::string>());
    }
    TEND_ASSIGN_OR_RETURN(const json* q, Field(*custom, "min_quality", twhat));
    if (!q->is_number()) return Fail(Error::Corrupt(twhat + ": min_quality must be a number"));
    t.min_quality = q->get<double>();
    if (auto r = custom->find("rollout"); r != custom->end() && !r->is_null()) t.rollout = *r;
    m.targets.push_back(std::move(t));
  }
  return m;
}

Result<TimestampMeta> ParseTimestamp(const json& s, const std::string& what) {
  TEND_RETURN_NOT_OK(CheckType(s, kRoleTimestamp, what));
  TimestampMeta m;
  TEND_ASSIGN_OR_RETURN(m.version, GetInt(s, "version", what));
  TEND_RETURN_NOT_OK(CheckVersion(m.version, what));
  TEND_ASSIGN_OR_RETURN(std::string exp, GetString(s, "expires", what));
  TEND_ASSIGN_OR_RETURN(m.expires, ParseTime(exp, what + ": expires"));
  TEND_ASSIGN_OR_RETURN(const json* meta, Field(s, "meta", what));
  TEND_ASSIGN_OR_RETURN(const json* tj, Field(*meta, "targets.json", what + ": meta"));
  std::string twhat = what + ": meta targets.json";
  TEND_ASSIGN_OR_RETURN(m.targets_version, GetInt(*tj, "version", twhat));
  TEND_RETURN_NOT_OK(CheckVersion(m.targets_version, twhat));
  TEND_ASSIGN_OR_RETURN(m.targets_length, GetInt(*tj, "length", twhat));
  if (m.targets_length <= 0) return Fail(Error::Corrupt(twhat + ": length must be > 0"));
  TEND_ASSIGN_OR_RETURN(const json* hashes, Field(*tj, "hashes", twhat));
  TEND_ASSIGN_OR_RETURN(m.targets_sha256, GetString(*hashes, "sha256", twhat));
  TEND_RETURN_NOT_OK(CheckSha256(m.targets_sha256, twhat));
  return m;
}

json ToJson(const RootMeta& m) {
  json keys = json::object();
  for (const auto& [id, pub] : m.keys) keys[id] = {{"keytype", "ed25519"}, {"public", pub}};
  json roles = json::object();
  for (const auto& [name, rk] : m.roles) {
    roles[name] = {{"keyids", rk.keyids}, {"threshold", rk.threshold}};
  }
  return {{"_type", kRoleRoot},   {"spec_version", "1"},
          {"version", m.version}, {"expires", FormatTime(m.expires)},
          {"keys", keys},         {"roles", roles}};
}

json ToJson(const TargetsMeta& m) {
  json targets = json::object();
  for (const auto& t : m.targets) {
    targets[t.path] = {{"length", t.length},
                       {"hashes", {{"sha256", t.sha256}}},
                       {"custom",
                        {{"name", t.name},
                         {"version", t.version},
                         {"profiles", t.profiles},
                         {"min_quality", t.min_quality}}}};
    if (!t.rollout.is_null()) targets[t.path]["custom"]["rollout"] = t.rollout;
  }
  return {{"_type", kRoleTargets},
          {"spec_version", "1"},
          {"version", m.version},
          {"expires", FormatTime(m.expires)},
          {"targets", targets}};
}

json ToJson(const TimestampMeta& m) {
  return {{"_type", kRoleTimestamp},
          {"spec_version", "1"},
          {"version", m.version},
          {"expires", FormatTime(m.expires)},
          {"meta",
           {{"targets.json",
             {{"version", m.targets_version},
              {"length", m.targets_length},
              {"hashes", {{"sha256", m.targets_sha256}}}}}}}};
}

Status CheckTargetPath(const std::string& path) {
  auto bad = [&](const std::string& why) {
    return Fail(Error::Security("target path \"" + path + "\": " + why));
  };
  if (path.empty() || path.size() > 255) return bad("empty or longer than 255 characters");
  if (path.front() == '/') return bad("absolute path");
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    std::string part = path.substr(start, end - start);
    if (part.empty()) return bad("empty path component");
    if (part == "." || part == "..") return bad("'.' or '..' component");
    for (char c : part) {
      if (!SafeChar(c)) return bad("character outside [A-Za-z0-9._-]");
    }
    start = end + 1;
  }
  return Ok();
}

Status CheckName(const std::string& name, const std::string& what) {
  if (name.empty() || name.size() > 128 || name.front() == '.') {
    return Fail(Error::Invalid(what + " \"" + name +
                               "\": must be 1-128 characters, not starting with '.'"));
  }
  for (char c : name) {
    if (!SafeChar(c)) {
      return Fail(Error::Invalid(what + " \"" + name + "\": characters outside [A-Za-z0-9._-]"));
    }
  }
  return Ok();
}

}  // namespace tend::ota
