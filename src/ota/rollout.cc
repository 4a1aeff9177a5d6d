#include "ota/rollout.h"

#include <algorithm>
#include <filesystem>

#include "core/fs.h"

namespace tend::ota {
namespace {

using nlohmann::json;

constexpr int64_t kMaxWaves = 20;
constexpr int64_t kMaxSoakS = 366 * 86400;
constexpr size_t kMaxDeviceId = 256;
constexpr size_t kMaxText = 1024;

tl::unexpected<Error> Bad(const std::string& what, const std::string& why) {
  return Fail(Error::Corrupt(what + ": " + why));
}

Result<const json*> Member(const json& j, const char* key, const std::string& what) {
  if (!j.is_object()) return Fail(Error::Corrupt(what + ": expected a JSON object"));
  auto it = j.find(key);
  if (it == j.end()) return Fail(Error::Corrupt(what + ": missing field \"" + key + "\""));
  return &*it;
}

Result<int64_t> Int(const json& j, const char* key, const std::string& what, int64_t lo,
                    int64_t hi) {
  TEND_ASSIGN_OR_RETURN(const json* v, Member(j, key, what));
  if (!v->is_number_integer()) {
    return Fail(Error::Corrupt(what + ": field \"" + key + "\" must be an integer"));
  }
  int64_t n = v->get<int64_t>();
  if (n < lo || n > hi) {
    return Fail(Error::Corrupt(what + ": field \"" + key + "\" = " + std::to_string(n) +
                               " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) +
                               "]"));
  }
  return n;
}

Result<std::string> Text(const json& j, const char* key, const std::string& what,
                         size_t max_len = kMaxText) {
  TEND_ASSIGN_OR_RETURN(const json* v, Member(j, key, what));
  if (!v->is_string()) {
    return Fail(Error::Corrupt(what + ": field \"" + key + "\" must be a string"));
  }
  std::string s = v->get<std::string>();
  if (s.size() > max_len) {
    return Fail(Error::Corrupt(what + ": field \"" + key + "\" is longer than " +
                               std::to_string(max_len) + " characters"));
  }
  return s;
}

// Device ids come from the fleet; they must be printable and bounded, nothing more.
Status CheckDeviceId(const std::string& id, const std::string& what) {
  if (id.empty() || id.size() > kMaxDeviceId) return Bad(what, "device id empty or too long");
  for (unsigned char c : id) {
    if (c < 0x21 || c == 0x7f) return Bad(what, "device id holds spaces or control characters");
  }
  return Ok();
}

Result<const json*> Array(const json& j, const char* key, const std::string& what) {
  TEND_ASSIGN_OR_RETURN(const json* v, Member(j, key, what));
  if (!v->is_array()) return Fail(Error::Corrupt(what + ": field \"" + key + "\" must be a list"));
  return v;
}

Result<RolloutControl> ParseRolloutEntry(const json& e, const std::string& what) {
  RolloutControl r;
  TEND_ASSIGN_OR_RETURN(r.name, Text(e, "name", what));
  TEND_RETURN_NOT_OK(CheckName(r.name, what + ": name"));
  TEND_ASSIGN_OR_RETURN(r.version, Int(e, "version", what, 1, INT64_MAX));
  TEND_ASSIGN_OR_RETURN(r.state, Text(e, "state", what));
  if (!ValidRolloutState(r.state)) return Bad(what, "unknown state \"" + r.state + "\"");
  TEND_ASSIGN_OR_RETURN(r.open_waves, Int(e, "open_waves", what, 0, kMaxWaves));
  TEND_ASSIGN_OR_RETURN(const json* opened_j, Array(e, "opened", what));
  const json& opened = *opened_j;
  if (static_cast<int64_t>(opened.size()) != r.open_waves) {
    return Bad(what, "\"opened\" must list one time per open wave");
  }
  for (const auto& t : opened) {
    if (!t.is_string()) return Bad(what, "\"opened\" must hold times");
    TEND_ASSIGN_OR_RETURN(int64_t when, ParseTime(t.get<std::string>(), what + ": opened"));
    if (when < 0) return Bad(what, "\"opened\" before 1970");
    r.opened.push_back(when);
  }
  TEND_ASSIGN_OR_RETURN(r.reason, Text(e, "reason", what));
  return r;
}

}  // namespace

Result<RolloutPlan> ParseRolloutPlan(const json& j, const std::string& what) {
  RolloutPlan p;
  TEND_ASSIGN_OR_RETURN(const json* waves_j, Array(j, "waves", what));
  const json& waves = *waves_j;
  if (waves.empty() || static_cast<int64_t>(waves.size()) > kMaxWaves) {
    return Bad(what, "a plan needs 1 to " + std::to_string(kMaxWaves) + " waves");
  }
  int64_t prev = 0;
  for (size_t i = 0; i < waves.size(); ++i) {
    std::string ww = what + ": wave " + std::to_string(i + 1);
    Wave w;
    TEND_ASSIGN_OR_RETURN(w.percent, Int(waves[i], "percent", ww, 1, 100));
    TEND_ASSIGN_OR_RETURN(w.soak_s, Int(waves[i], "soak_s", ww, 0, kMaxSoakS));
    if (w.percent <= prev) return Bad(ww, "percents must grow from wave to wave");
    prev = w.percent;
    p.waves.push_back(w);
  }
  if (prev != 100) return Bad(what, "the last wave must reach 100 percent");
  TEND_ASSIGN_OR_RETURN(p.abort_failed_percent, Int(j, "abort_failed_percent", what, 0, 100));
  TEND_ASSIGN_OR_RETURN(p.abort_min_failed, Int(j, "abort_min_failed", what, 1, 1000000));
  TEND_ASSIGN_OR_RETURN(p.salt, Text(j, "salt", what, 128));
  TEND_RETURN_NOT_OK(CheckName(p.salt, what + ": salt"));
  return p;
}

json ToJson(const RolloutPlan& p) {
  json waves = json::array();
  for (const auto& w : p.waves) waves.push_back({{"percent", w.percent}, {"soak_s", w.soak_s}});
  return {{"waves", waves},
          {"abort_failed_percent", p.abort_failed_percent},
          {"abort_min_failed", p.abort_min_failed},
          {"salt", p.salt}};
}

Result<int64_t> ParseDuration(const std::string& s, const std::string& what) {
  if (s.empty() || s.size() > 12) return Fail(Error::Invalid(what + " \"" + s + "\": empty"));
  int64_t mult = 1;
  std::string digits = s;
  switch (s.back()) {
    case 's':
      mult = 1;
      digits.pop_back();
      break;
    case 'm':
      mult = 60;
      digits.pop_back();
      break;
    case 'h':
      mult = 3600;
      digits.pop_back();
      break;
    case 'd':
      mult = 86400;
      digits.pop_back();
      break;
    default:
      break;
  }
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) {
    return Fail(
        Error::Invalid(what + " \"" + s + "\": expected a number of seconds or 30s/15m/2h/7d"));
  }
  return std::stoll(digits) * mult;
}

Result<RolloutPlan> MakeRolloutPlan(const std::string& percents, const std::string& soaks,
                                    int64_t abort_failed_percent, int64_t abort_min_failed,
                                    const std::string& salt) {
  auto split = [](const std::string& s) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= s.size()) {
      size_t comma = s.find(',', start);
      if (comma == std::string::npos) comma = s.size();
      out.push_back(s.substr(start, comma - start));
      start = comma + 1;
    }
    return out;
  };
  auto ps = split(percents), ss = split(soaks);
  if (ss.size() != 1 && ss.size() != ps.size()) {
    return Fail(Error::Invalid("--soak: give one duration, or one per wave (" +
                               std::to_string(ps.size()) + ")"));
  }
  json waves = json::array();
  for (size_t i = 0; i < ps.size(); ++i) {
    if (ps[i].empty() || ps[i].size() > 3 ||
        ps[i].find_first_not_of("0123456789") != std::string::npos) {
      return Fail(Error::Invalid("--waves \"" + percents + "\": expected percents like 5,25,100"));
    }
    TEND_ASSIGN_OR_RETURN(int64_t soak, ParseDuration(ss.size() == 1 ? ss[0] : ss[i], "--soak"));
    waves.push_back({{"percent", std::stoll(ps[i])}, {"soak_s", soak}});
  }
  json j = {{"waves", waves},
            {"abort_failed_percent", abort_failed_percent},
            {"abort_min_failed", abort_min_failed},
            {"salt", salt}};
  auto plan = ParseRolloutPlan(j, "rollout plan");
  if (!plan) return Fail(Error::Invalid(plan.error().message));
  return plan;
}

int64_t RolloutBucket(const std::string& salt, const std::string& device_id) {
  std::string digest = Sha256Hex(salt + "/" + device_id);
  uint64_t v = std::stoull(digest.substr(0, 16), nullptr, 16);
  return static_cast<int64_t>(v % static_cast<uint64_t>(kRolloutBuckets));
}

int WaveOf(const RolloutPlan& plan, const std::string& device_id) {
  const int64_t bucket = RolloutBucket(plan.salt, device_id);
  for (size_t i = 0; i < plan.waves.size(); ++i) {
    if (bucket < plan.waves[i].percent * (kRolloutBuckets / 100)) return static_cast<int>(i);
  }
  return static_cast<int>(plan.waves.size()) - 1;
}

bool ValidRolloutState(const std::string& s) {
  return s == "pending" || s == "running" || s == "paused" || s == "aborted" || s == "complete";
}

const RolloutControl* ControlMeta::FindRollout(const std::string& name, int64_t v) const {
  for (const auto& r : rollouts) {
    if (r.name == name && r.version == v) return &r;
  }
  return nullptr;
}

std::optional<int64_t> ControlMeta::PinFor(const std::string& device_id,
                                           const std::string& name) const {
  for (const auto& p : pins) {
    if (p.device_id == device_id && p.name == name) return p.max_version;
  }
  return std::nullopt;
}

const DeviceRollback* ControlMeta::RollbackFor(const std::string& device_id,
                                               const std::string& name) const {
  for (const auto& r : rollbacks) {
    if (r.device_id == device_id && r.name == name) return &r;
  }
  return nullptr;
}

Result<ControlMeta> ParseControl(const json& s, const std::string& what) {
  TEND_ASSIGN_OR_RETURN(std::string type, Text(s, "_type", what));
  if (type != kControlType) {
    return Fail(Error::Security(what + ": _type is \"" + type + "\", expected \"control\""));
  }
  ControlMeta m;
  TEND_ASSIGN_OR_RETURN(m.version, Int(s, "version", what, 1, INT64_MAX));
  TEND_ASSIGN_OR_RETURN(std::string exp, Text(s, "expires", what));
  TEND_ASSIGN_OR_RETURN(m.expires, ParseTime(exp, what + ": expires"));
  if (m.expires < 0) return Bad(what, "expires before 1970");
  TEND_ASSIGN_OR_RETURN(const json* rollouts_j, Array(s, "rollouts", what));
  const json& rollouts = *rollouts_j;
  for (const auto& e : rollouts) {
    TEND_ASSIGN_OR_RETURN(auto r, ParseRolloutEntry(e, what + ": rollout"));
    m.rollouts.push_back(std::move(r));
  }
  TEND_ASSIGN_OR_RETURN(const json* pins_j, Array(s, "pins", what));
  const json& pins = *pins_j;
  for (const auto& e : pins) {
    DevicePin p;
    const std::string pw = what + ": pin";
    TEND_ASSIGN_OR_RETURN(p.device_id, Text(e, "device", pw, kMaxDeviceId));
    TEND_RETURN_NOT_OK(CheckDeviceId(p.device_id, pw));
    TEND_ASSIGN_OR_RETURN(p.name, Text(e, "name", pw));
    TEND_RETURN_NOT_OK(CheckName(p.name, pw + ": name"));
    TEND_ASSIGN_OR_RETURN(p.max_version, Int(e, "max_version", pw, 0, INT64_MAX));
    m.pins.push_back(std::move(p));
  }
  TEND_ASSIGN_OR_RETURN(const json* rollbacks_j, Array(s, "rollbacks", what));
  const json& rollbacks = *rollbacks_j;
  for (const auto& e : rollbacks) {
    DeviceRollback r;
    const std::string rw = what + ": rollback";
    TEND_ASSIGN_OR_RETURN(r.device_id, Text(e, "device", rw, kMaxDeviceId));
    TEND_RETURN_NOT_OK(CheckDeviceId(r.device_id, rw));
    TEND_ASSIGN_OR_RETURN(r.name, Text(e, "name", rw));
    TEND_RETURN_NOT_OK(CheckName(r.name, rw + ": name"));
    TEND_ASSIGN_OR_RETURN(r.from_version, Int(e, "from_version", rw, 0, INT64_MAX));
    TEND_ASSIGN_OR_RETURN(r.request, Text(e, "request", rw, 128));
    TEND_ASSIGN_OR_RETURN(r.reason, Text(e, "reason", rw));
    m.rollbacks.push_back(std::move(r));
  }
  return m;
}

json ToJson(const ControlMeta& m) {
  json rollouts = json::array(), pins = json::array(), rollbacks = json::array();
  for (const auto& r : m.rollouts) {
    json opened = json::array();
    for (int64_t t : r.opened) opened.push_back(FormatTime(t));
    rollouts.push_back({{"name", r.name},
                        {"version", r.version},
                        {"state", r.state},
                        {"open_waves", r.open_waves},
                        {"opened", opened},
                        {"reason", r.reason}});
  }
  for (const auto& p : m.pins) {
    pins.push_back({{"device", p.device_id}, {"name", p.name}, {"max_version", p.max_version}});
  }
  for (const auto& r : m.rollbacks) {
    rollbacks.push_back({{"device", r.device_id},
                         {"name", r.name},
                         {"from_version", r.from_version},
                         {"request", r.request},
                         {"reason", r.reason}});
  }
  return {{"_type", kControlType}, {"spec_version", "1"},
          {"version", m.version},  {"expires", FormatTime(m.expires)},
          {"rollouts", rollouts},  {"pins", pins},
          {"rollbacks", rollbacks}};
}

Result<ControlMeta> VerifyControl(const RootMeta& root, std::string_view bytes,
                                  int64_t version_floor, int64_t now) {
  const std::string what = kControlFile;
  TEND_ASSIGN_OR_RETURN(Envelope env, ParseEnvelope(bytes, what));
  TEND_ASSIGN_OR_RETURN(std::string type, Text(env.signed_part, "_type", what));
  if (type != kControlType) {
    return Fail(Error::Security(what + ": _type is \"" + type + "\", expected \"control\""));
  }
  TEND_RETURN_NOT_OK(VerifySignatures(env, root, kRoleTimestamp, what));
  TEND_ASSIGN_OR_RETURN(ControlMeta m, ParseControl(env.signed_part, what));
  if (m.version < version_floor) {
    return Fail(Error::Security(what + ": version " + std::to_string(m.version) +
                                " is older than the trusted version " +
                                std::to_string(version_floor) + " (replay)"));
  }
  if (m.expires <= now) {
    return Fail(Error::Security(what + ": expired at " + FormatTime(m.expires)));
  }
  return m;
}

namespace {

Result<RootMeta> RegistryRoot(const std::string& dir) {
  std::string path = (std::filesystem::path(dir) / "root.json").string();
  TEND_ASSIGN_OR_RETURN(std::string text, fs::ReadFile(path));
  TEND_ASSIGN_OR_RETURN(Envelope env, ParseEnvelope(text, path));
  return ParseRoot(env.signed_part, path);
}

}  // namespace

Status WriteControl(const std::string& registry_dir, const ControlMeta& meta,
                    const std::vector<KeyPair>& keys) {
  TEND_ASSIGN_OR_RETURN(RootMeta root, RegistryRoot(registry_dir));
  const RoleKeys& rk = root.roles.at(kRoleTimestamp);
  std::vector<KeyPair> signers;
  for (const auto& k : keys) {
    if (std::find(rk.keyids.begin(), rk.keyids.end(), k.keyid) != rk.keyids.end()) {
      signers.push_back(k);
    }
  }
  if (static_cast<int64_t>(signers.size()) < rk.threshold) {
    return Fail(Error::Security("control.json: the given keys hold " +
                                std::to_string(signers.size()) + " of the " +
                                std::to_string(rk.threshold) + " timestamp keys needed"));
  }
  TEND_ASSIGN_OR_RETURN(std::string bytes, SignEnvelope(ToJson(meta), signers));
  // Checked the way a device will before it replaces the previous statement.
  TEND_RETURN_NOT_OK(VerifyControl(root, bytes, 0, meta.expires - 1));
  return fs::WriteFileAtomic((std::filesystem::path(registry_dir) / kControlFile).string(), bytes);
}

Result<ControlMeta> ReadControl(const std::string& registry_dir) {
  std::string path = (std::filesystem::path(registry_dir) / kControlFile).string();
  if (!fs::Exists(path)) return Fail(Error::NotFound(path + ": no control statement yet"));
  TEND_ASSIGN_OR_RETURN(RootMeta root, RegistryRoot(registry_dir));
  TEND_ASSIGN_OR_RETURN(std::string text, fs::ReadFile(path));
  TEND_ASSIGN_OR_RETURN(Envelope env, ParseEnvelope(text, path));
  TEND_RETURN_NOT_OK(VerifySignatures(env, root, kRoleTimestamp, path));
  return ParseControl(env.signed_part, path);
}

Result<RolloutGate> GateRollout(const TargetInfo& target, const ControlMeta* control,
                                const std::string& device_id) {
  RolloutGate g;
  if (target.rollout.is_null()) return g;
  const std::string tag = target.name + " v" + std::to_string(target.version);
  TEND_ASSIGN_OR_RETURN(RolloutPlan plan, ParseRolloutPlan(target.rollout, tag + ": rollout"));
  g.wave = WaveOf(plan, device_id);
  const std::string wave =
      "wave " + std::to_string(g.wave + 1) + " of " + std::to_string(plan.waves.size());
  g.allowed = false;
  if (!control) {
    g.why = tag + ": staged rollout, and no valid control statement (" + wave + ")";
    return g;
  }
  const RolloutControl* rc = control->FindRollout(target.name, target.version);
  if (!rc || rc->state == "pending") {
    g.why = tag + ": staged rollout not started (" + wave + ")";
  } else if (rc->state == "aborted") {
    g.why = tag + ": rollout aborted" + (rc->reason.empty() ? "" : ": " + rc->reason);
  } else if (rc->state == "paused") {
    g.why = tag + ": rollout paused (" + wave + ")";
  } else if (g.wave >= rc->open_waves) {
    g.why = tag + ": waiting for " + wave + " (" + std::to_string(rc->open_waves) + " open)";
  } else {
    g.allowed = true;  // running or complete, and the device's wave is open
  }
  return g;
}

}  // namespace tend::ota
