#include "fleet/console_api.h"

#include <algorithm>
#include <functional>

#include "core/json.h"
#include "ota/rollout.h"
#include "telemetry/payload.h"

namespace tend::fleet {
namespace {

using nlohmann::json;

std::string Iso(int64_t ms) {
  if (ms <= 0) return "";
  return telemetry::FormatIso8601(
      std::chrono::system_clock::time_point{std::chrono::milliseconds(ms)});
}

json OtaJson(const DeviceRow& d) {
  if (!d.has_ota) return nullptr;
  const OtaFields& o = d.ota.ota;
  return {{"timestamp", d.ota.timestamp},
          {"event", o.event},
          {"model", o.model},
          {"state", o.state},
          {"current_version", o.current_version},
          {"backup_version", o.backup_version},
          {"highest_version", o.highest_version},
          {"in_probation", o.in_probation},
          {"stale", o.stale},
          {"model_age_s", o.model_age_s},
          {"rollbacks", o.rollbacks},
          {"last_rollback_reason", o.last_rollback_reason}};
}

int64_t Dropped(const json& h) {
  if (!h.contains("dropped") || !h["dropped"].is_object()) return -1;
  int64_t n = 0;
  for (const auto& [k, v] : h["dropped"].items()) {
    if (v.is_number_integer()) n += v.get<int64_t>();
  }
  return n;
}

double Number(const json& h, const char* key) {
  return h.contains(key) && h[key].is_number() ? h[key].get<double>() : -1;
}

void Prepare(DeviceView& v) {
  const DeviceSummary& s = v.summary;
  const DeviceRow& d = s.device;
  if (!s.health.empty()) {
    json h = json::parse(s.health, nullptr, false);
    if (h.is_object()) {
      v.health = h;
      if (h.contains("spool_depth") && h["spool_depth"].is_number_integer()) {
        v.spool_backlog = h["spool_depth"].get<int64_t>();
      }
      v.spool_dropped = Dropped(h);
      v.cpu_pct = Number(h, "cpu_pct");
      v.temp_c = Number(h, "temp_c");
      if (h.contains("thresholds") && h["thresholds"].is_object()) v.thresholds = h["thresholds"];
    }
  }
  json pins = json::object();
  for (const auto& [name, max] : s.pins) pins[name] = max;
  auto opt = [](double x) { return x < 0 ? json(nullptr) : json(x); };
  auto opt_i = [](int64_t x) { return x < 0 ? json(nullptr) : json(x); };
  v.json = {{"device_id", d.device_id},
            {"factory_id", d.factory_id},
            {"lines", s.lines},
            {"assets", s.assets},
            {"tags", s.tags},
            {"status", d.status.empty() ? "unknown" : d.status},
            {"online", d.status == "online"},
            {"status_since", Iso(d.status_ms)},
            {"last_seen", Iso(d.last_seen_ms)},
            {"last_seen_ms", d.last_seen_ms},
            {"model_version", d.model_version},
            {"ota", OtaJson(d)},
            {"alerts_1h", s.alerts_1h},
            {"alerts_24h", s.alerts_24h},
            {"spool_backlog", opt_i(v.spool_backlog)},
            {"spool_dropped", opt_i(v.spool_dropped)},
            {"cpu_pct", opt(v.cpu_pct)},
            {"temp_c", opt(v.temp_c)},
            {"pins", pins}};
}

bool Has(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// Sort keys: a comparison of two devices per key (ties fall back to the device id).
using Less = std::function<bool(const DeviceView&, const DeviceView&)>;
const std::map<std::string, Less>& SortKeys() {
  static const std::map<std::string, Less> keys = {
      {"device_id", [](auto&, auto&) { return false; }},  // the tie-break below sorts by id
      {"factory",
       [](auto& a, auto& b) { return a.summary.device.factory_id < b.summary.device.factory_id; }},
      {"status",
       [](auto& a, auto& b) { return a.summary.device.status < b.summary.device.status; }},
      {"last_seen",
       [](auto& a, auto& b) {
         return a.summary.device.last_seen_ms < b.summary.device.last_seen_ms;
       }},
      {"model",
       [](auto& a, auto& b) {
         return a.summary.device.model_version < b.summary.device.model_version;
       }},
      {"ota_version",
       [](auto& a, auto& b) {
         return a.summary.device.ota.ota.current_version < b.summary.device.ota.ota.current_version;
       }},
      {"ota_state",
       [](auto& a, auto& b) {
         return a.summary.device.ota.ota.state < b.summary.device.ota.ota.state;
       }},
      {"alerts_1h", [](auto& a, auto& b) { return a.summary.alerts_1h < b.summary.alerts_1h; }},
      {"alerts_24h", [](auto& a, auto& b) { return a.summary.alerts_24h < b.summary.alerts_24h; }},
      {"backlog", [](auto& a, auto& b) { return a.spool_backlog < b.spool_backlog; }},
      {"dropped", [](auto& a, auto& b) { return a.spool_dropped < b.spool_dropped; }},
      {"cpu", [](auto& a, auto& b) { return a.cpu_pct < b.cpu_pct; }},
      {"temp", [](auto& a, auto& b) { return a.temp_c < b.temp_c; }},
  };
  return keys;
}

Result<int64_t> IntParam(const std::string& v, const std::string& name, int64_t lo, int64_t hi) {
  if (v.empty() || v.size() > 9 || v.find_first_not_of("0123456789") != std::string::npos) {
    return Fail(Error::Invalid("parameter " + name + " must be a number"));
  }
  int64_t n = std::stoll(v);
  if (n < lo || n > hi) {
    return Fail(Error::Invalid("parameter " + name + " must be between " + std::to_string(lo) +
                               " and " + std::to_string(hi)));
  }
  return n;
}

}  // namespace

const DeviceView* FleetSnapshot::Find(const std::string& id) const {
  auto it = index.find(id);
  return it == index.end() ? nullptr : &devices[it->second];
}

std::shared_ptr<const FleetSnapshot> MakeSnapshot(std::vector<DeviceSummary> devices,
                                                  int64_t now_ms) {
  auto snap = std::make_shared<FleetSnapshot>();
  snap->taken_ms = now_ms;
  snap->devices.reserve(devices.size());
  for (auto& d : devices) {
    DeviceView v;
    v.summary = std::move(d);
    Prepare(v);
    snap->index[v.summary.device.device_id] = snap->devices.size();
    snap->devices.push_back(std::move(v));
  }
  return snap;
}

Status CheckIdentifier(const std::string& s, const std::string& what) {
  if (s.empty() || s.size() > 128) return Fail(Error::Invalid(what + " must be 1-128 characters"));
  for (unsigned char c : s) {
    if (c < 0x21 || c == 0x7f) {
      return Fail(Error::Invalid(what + " must not hold spaces or control characters"));
    }
  }
  return Ok();
}

Result<DeviceQuery> ParseDeviceQuery(const std::multimap<std::string, std::string>& params) {
  DeviceQuery q;
  for (const auto& [k, v] : params) {
    if (v.size() > 128) return Fail(Error::Invalid("parameter " + k + " is too long"));
    if (k == "q") {
      q.q = v;
    } else if (k == "factory") {
      q.factory = v;
    } else if (k == "line") {
      q.line = v;
    } else if (k == "asset") {
      q.asset = v;
    } else if (k == "tag") {
      q.tag = v;
    } else if (k == "status") {
      q.status = v;
    } else if (k == "ota") {
      q.ota = v;
    } else if (k == "sort") {
      if (!SortKeys().count(v))
        return Fail(Error::Invalid("parameter sort: unknown key \"" + v + "\""));
      q.sort = v;
    } else if (k == "order") {
      if (v != "asc" && v != "desc") return Fail(Error::Invalid("parameter order: asc or desc"));
      q.desc = v == "desc";
    } else if (k == "offset") {
      TEND_ASSIGN_OR_RETURN(q.offset, IntParam(v, k, 0, 100000000));
    } else if (k == "limit") {
      TEND_ASSIGN_OR_RETURN(q.limit, IntParam(v, k, 1, 1000));
    } else {
      return Fail(Error::Invalid("unknown parameter \"" + k + "\""));
    }
  }
  return q;
}

bool Matches(const DeviceView& v, const DeviceQuery& q) {
  const DeviceSummary& s = v.summary;
  const DeviceRow& d = s.device;
  if (!q.q.empty() && d.device_id.find(q.q) == std::string::npos) return false;
  if (!q.factory.empty() && d.factory_id != q.factory) return false;
  if (!q.line.empty() && !Has(s.lines, q.line)) return false;
  if (!q.asset.empty() && !Has(s.assets, q.asset)) return false;
  if (!q.tag.empty() && !Has(s.tags, q.tag)) return false;
  if (!q.status.empty() && (d.status.empty() ? "unknown" : d.status) != q.status) return false;
  if (!q.ota.empty()) {
    if (!d.has_ota) return q.ota == "none";
    const OtaFields& o = d.ota.ota;
    const bool hit = q.ota == o.state || (q.ota == "stale" && o.stale) ||
                     (q.ota == "rolled_back" && o.rollbacks > 0);
    if (!hit) return false;
  }
  return true;
}

json ListDevices(const FleetSnapshot& snap, const DeviceQuery& q) {
  std::vector<const DeviceView*> hits;
  hits.reserve(snap.devices.size());
  for (const auto& d : snap.devices) {
    if (Matches(d, q)) hits.push_back(&d);
  }
  const Less& less = SortKeys().at(q.sort);
  std::stable_sort(hits.begin(), hits.end(), [&](const DeviceView* a, const DeviceView* b) {
    const bool lt = less(*a, *b), gt = less(*b, *a);
    if (lt != gt) return q.desc ? gt : lt;
    const std::string& ia = a->summary.device.device_id;
    const std::string& ib = b->summary.device.device_id;
    return q.desc && q.sort == "device_id" ? ib < ia : ia < ib;
  });
  json out = json::array();
  const auto total = static_cast<int64_t>(hits.size());
  for (int64_t i = q.offset; i < total && i < q.offset + q.limit; ++i) {
    out.push_back(hits[static_cast<size_t>(i)]->json);
  }
  return {{"total", total},
          {"offset", q.offset},
          {"limit", q.limit},
          {"taken", Iso(snap.taken_ms)},
          {"devices", std::move(out)}};
}

json RolloutsJson(const std::vector<RolloutStatusRow>& statuses,
                  const std::vector<RolloutIntent>& intents, const FleetSnapshot& snap) {
  std::vector<DeviceOtaFacts> facts;
  for (const auto& d : snap.devices) {
    if (!d.summary.device.has_ota) continue;
    facts.push_back({d.summary.device.device_id, d.summary.device.ota.ota.model,
                     d.summary.device.ota.ota.current_version, d.summary.rejected_versions});
  }
  json out = json::array();
  for (const auto& r : statuses) {
    auto plan = ota::ParseRolloutPlan(json::parse(r.plan, nullptr, false), "rollout plan");
    if (!plan) continue;
    json opened = json::parse(r.opened, nullptr, false);
    if (!opened.is_array()) opened = json::array();
    auto progress = Progress(*plan, r.name, r.version, facts);
    json waves = json::array();
    for (size_t k = 0; k < plan->waves.size(); ++k) {
      const WaveProgress& w = progress[k];
      waves.push_back({{"wave", k + 1},
                       {"percent", plan->waves[k].percent},
                       {"soak_s", plan->waves[k].soak_s},
                       {"open", static_cast<int64_t>(k) < r.open_waves},
                       {"opened", k < opened.size() ? opened[k] : json(nullptr)},
                       {"devices", w.devices},
                       {"installed", w.installed},
                       {"failed", w.failed},
                       {"pending", w.pending}});
    }
    json intent = nullptr;
    for (const auto& i : intents) {
      if (i.name == r.name && i.version == r.version) {
        intent = {{"state", i.state}, {"actor", i.actor}, {"at", Iso(i.ts_ms)}};
      }
    }
    out.push_back({{"name", r.name},
                   {"version", r.version},
                   {"state", r.state},
                   {"reason", r.reason},
                   {"open_waves", r.open_waves},
                   {"plan", ota::ToJson(*plan)},
                   {"waves", waves},
                   {"intent", intent},
                   {"control_version", r.control_version},
                   {"updated", Iso(r.updated_ms)}});
  }
  return {{"rollouts", out}};
}

json DeviceRolloutsJson(const DeviceView& d, const std::vector<RolloutStatusRow>& rs) {
  json out = json::array();
  const std::string model = d.summary.device.has_ota ? d.summary.device.ota.ota.model : "";
  for (const auto& r : rs) {
    if (r.name != model) continue;
    auto plan = ota::ParseRolloutPlan(json::parse(r.plan, nullptr, false), "rollout plan");
    if (!plan) continue;
    const int wave = ota::WaveOf(*plan, d.summary.device.device_id);
    out.push_back({{"name", r.name},
                   {"version", r.version},
                   {"state", r.state},
                   {"wave", wave + 1},
                   {"waves", plan->waves.size()},
                   {"open", wave < r.open_waves}});
  }
  return out;
}

Result<json> ParseBody(const std::string& body) {
  if (body.size() > 64 * 1024) return Fail(Error::Invalid("request body larger than 64 KiB"));
  if (body.empty()) return json::object();
  // Bounded (depth 16): a client's body is outside input like any device payload.
  auto j = tend::json::ParseJson(body, "request body", {64 * 1024, 16});
  if (!j) return Fail(Error::Invalid(j.error().message));
  if (!j->is_object()) return Fail(Error::Invalid("request body must be a JSON object"));
  return std::move(*j);
}

Result<std::string> OptionalText(const json& body, const char* key, size_t max_len) {
  if (!body.contains(key) || body[key].is_null()) return std::string();
  if (!body[key].is_string()) {
    return Fail(Error::Invalid(std::string("field ") + key + " must be a string"));
  }
  std::string s = body[key].get<std::string>();
  if (s.size() > max_len) {
    return Fail(Error::Invalid(std::string("field ") + key + " is longer than " +
                               std::to_string(max_len) + " characters"));
  }
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      return Fail(Error::Invalid(std::string("field ") + key + " holds control characters"));
    }
  }
  return s;
}

Result<int64_t> RequiredInt(const json& body, const char* key, int64_t lo, int64_t hi) {
  if (!body.contains(key) || !body[key].is_number_integer()) {
    return Fail(Error::Invalid(std::string("field ") + key + " must be an integer"));
  }
  int64_t v = body[key].get<int64_t>();
  if (v < lo || v > hi) {
    return Fail(Error::Invalid(std::string("field ") + key + " must be between " +
                               std::to_string(lo) + " and " + std::to_string(hi)));
  }
  return v;
}

Result<std::vector<std::string>> OptionalTags(const json& body, const char* key) {
  std::vector<std::string> out;
  if (!body.contains(key) || body[key].is_null()) return out;
  if (!body[key].is_array() || body[key].size() > 64) {
    return Fail(Error::Invalid(std::string("field ") + key + " must be a list of at most 64 tags"));
  }
  for (const auto& t : body[key]) {
    if (!t.is_string())
      return Fail(Error::Invalid(std::string("field ") + key + " must hold strings"));
    TEND_RETURN_NOT_OK(CheckIdentifier(t.get<std::string>(), std::string("tag in ") + key));
    out.push_back(t.get<std::string>());
  }
  return out;
}

}  // namespace tend::fleet
