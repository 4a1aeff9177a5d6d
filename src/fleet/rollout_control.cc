#include "fleet/rollout_control.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "core/log.h"

namespace tend::fleet {
namespace {

using nlohmann::json;

int64_t SystemNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool Contains(const std::vector<int64_t>& v, int64_t x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// The registry's releases, verified against its own root the way a device would.
Result<ota::TargetsMeta> RegistryTargets(const std::string& dir) {
  auto path = [&](const char* f) { return (std::filesystem::path(dir) / f).string(); };
  TEND_ASSIGN_OR_RETURN(std::string root_text, fs::ReadFile(path("root.json")));
  TEND_ASSIGN_OR_RETURN(ota::Envelope renv, ota::ParseEnvelope(root_text, path("root.json")));
  TEND_ASSIGN_OR_RETURN(ota::RootMeta root, ota::ParseRoot(renv.signed_part, path("root.json")));
  if (!fs::Exists(path("targets.json"))) return ota::TargetsMeta{};
  TEND_ASSIGN_OR_RETURN(std::string text, fs::ReadFile(path("targets.json")));
  TEND_ASSIGN_OR_RETURN(ota::Envelope env, ota::ParseEnvelope(text, path("targets.json")));
  TEND_RETURN_NOT_OK(ota::VerifyRole(env, root, ota::kRoleTargets, path("targets.json")));
  return ota::ParseTargets(env.signed_part, path("targets.json"));
}

std::string WaveText(int64_t k, size_t n) {
  return "wave " + std::to_string(k) + " of " + std::to_string(n);
}

}  // namespace

std::vector<DeviceOtaFacts> OtaFactsOf(const std::vector<DeviceSummary>& devices) {
  std::vector<DeviceOtaFacts> out;
  for (const auto& d : devices) {
    if (!d.device.has_ota) continue;
    out.push_back({d.device.device_id, d.device.ota.ota.model, d.device.ota.ota.current_version,
                   d.rejected_versions});
  }
  return out;
}

std::vector<WaveProgress> Progress(const ota::RolloutPlan& plan, const std::string& name,
                                   int64_t version, const std::vector<DeviceOtaFacts>& devices) {
  std::vector<WaveProgress> waves(plan.waves.size());
  for (const auto& d : devices) {
    if (d.model != name) continue;
    WaveProgress& w = waves[static_cast<size_t>(ota::WaveOf(plan, d.device_id))];
    w.devices += 1;
    if (Contains(d.rejected_versions, version)) {
      w.failed += 1;
    } else if (d.current_version >= version) {
      w.installed += 1;
    } else {
      w.pending += 1;
    }
  }
  return waves;
}

std::string AbortRuleFired(const ota::RolloutPlan& plan, const std::vector<WaveProgress>& progress,
                           int64_t open_waves, int64_t version) {
  for (int64_t k = 0; k < open_waves && k < static_cast<int64_t>(progress.size()); ++k) {
    const WaveProgress& w = progress[static_cast<size_t>(k)];
    if (w.devices == 0 || w.failed < plan.abort_min_failed) continue;
    if (w.failed * 100 > plan.abort_failed_percent * w.devices) {
      return "abort rule: " + std::to_string(w.failed) + " of " + std::to_string(w.devices) +
             " devices in " + WaveText(k + 1, plan.waves.size()) + " refused or rolled back v" +
             std::to_string(version) + " (" + std::to_string(w.failed * 100 / w.devices) + " % > " +
             std::to_string(plan.abort_failed_percent) + " %)";
    }
  }
  return "";
}

ota::RolloutControl Advance(const std::string& name, int64_t version, const ota::RolloutPlan& plan,
                            const ota::RolloutControl* previous, const RolloutIntent* intent,
                            const std::vector<WaveProgress>& progress, int64_t now) {
  ota::RolloutControl rc;
  if (previous) rc = *previous;
  rc.name = name;
  rc.version = version;
  if (rc.state == "aborted") return rc;  // final: nothing re-opens an aborted rollout
  if (intent && intent->state == "aborted") {
    rc.state = "aborted";
    rc.reason = "aborted by " + intent->actor;
    return rc;
  }
  if (std::string why = AbortRuleFired(plan, progress, rc.open_waves, version); !why.empty()) {
    rc.state = "aborted";
    rc.reason = why;
    return rc;
  }
  if (!intent || intent->state != "running") {
    const bool paused = intent && intent->state == "paused";
    if (rc.state != "complete") rc.state = rc.open_waves > 0 || paused ? "paused" : "pending";
    rc.reason = paused ? "paused by " + intent->actor : "";
    return rc;
  }
  rc.reason.clear();
  const int64_t n = static_cast<int64_t>(plan.waves.size());
  if (rc.open_waves == 0) {
    rc.open_waves = 1;
    rc.opened = {now};
  } else if (rc.open_waves < n &&
             now >= rc.opened.back() + plan.waves[static_cast<size_t>(rc.open_waves - 1)].soak_s) {
    rc.open_waves += 1;
    rc.opened.push_back(now);
  }
  bool done = rc.open_waves == n;
  for (const auto& w : progress) done = done && w.pending == 0;
  rc.state = done ? "complete" : "running";
  return rc;
}

namespace {

struct Inputs {
  ota::TargetsMeta targets;
  std::optional<ota::ControlMeta> previous;
  std::vector<RolloutIntent> intents;
  std::vector<DeviceSummary> devices;
  std::vector<PinRow> pins;
  std::vector<RollbackRequestRow> requests;
};

Result<Inputs> ReadInputs(const ControllerOptions& opts, ConsoleDb& db, int64_t now) {
  Inputs in;
  TEND_ASSIGN_OR_RETURN(in.targets, RegistryTargets(opts.registry_dir));
  auto prev = ota::ReadControl(opts.registry_dir);
  if (prev) {
    in.previous = std::move(*prev);
  } else if (prev.error().code != ErrorCode::kNotFound) {
    return Fail(prev.error().Wrap("the previous control.json (move it away to start over)"));
  }
  TEND_ASSIGN_OR_RETURN(in.intents, db.RolloutIntents());
  TEND_ASSIGN_OR_RETURN(in.devices, db.DeviceSummaries(now * 1000));
  TEND_ASSIGN_OR_RETURN(in.pins, db.Pins());
  TEND_ASSIGN_OR_RETURN(in.requests, db.RollbackRequests(/*open_only=*/true, 100000));
  return in;
}

// Rollback requests go into control.json until the device has left the version (done) or
// the request is too old (expired).
Status ApplyRollbackRequests(const ControllerOptions& opts, ConsoleDb& db, const Inputs& in,
                             int64_t now, ota::ControlMeta& out, std::vector<int64_t>& to_sign) {
  std::map<std::string, const DeviceSummary*> by_id;
  for (const auto& d : in.devices) by_id[d.device.device_id] = &d;
  for (const auto& r : in.requests) {
    auto it = by_id.find(r.device_id);
    const bool moved = it != by_id.end() && it->second->device.has_ota &&
                       it->second->device.ota.ota.current_version != r.from_version;
    if (moved) {
      TEND_RETURN_NOT_OK(db.SetRollbackStatus(r.id, "done", r.signed_ms));
      continue;
    }
    if (now * 1000 - r.ts_ms > opts.rollback_request_ttl_s * 1000) {
      TEND_RETURN_NOT_OK(db.SetRollbackStatus(r.id, "expired", r.signed_ms));
      continue;
    }
    out.rollbacks.push_back({r.device_id, r.name, r.from_version, "r" + std::to_string(r.id),
                             r.reason + " (by " + r.actor + ")"});
    if (r.status == "requested") to_sign.push_back(r.id);
  }
  return Ok();
}

}  // namespace

Result<ControlReport> RunControlOnce(const ControllerOptions& opts, ConsoleDb& db) {
  const int64_t now = opts.clock ? opts.clock() : SystemNow();
  if (opts.expires_s <= 0) return Fail(Error::Invalid("control: expiry must be > 0 s"));
  TEND_ASSIGN_OR_RETURN(Inputs in, ReadInputs(opts, db, now));
  const auto facts = OtaFactsOf(in.devices);
  ControlReport rep;
  ota::ControlMeta& out = rep.control;
  out.version = in.previous ? in.previous->version + 1 : 1;
  out.expires = now + opts.expires_s;
  std::vector<RolloutStatusRow> statuses;
  for (const auto& t : in.targets.targets) {
    if (t.rollout.is_null()) continue;
    const std::string tag = t.name + " v" + std::to_string(t.version);
    TEND_ASSIGN_OR_RETURN(ota::RolloutPlan plan, ota::ParseRolloutPlan(t.rollout, tag));
    const ota::RolloutControl* prev =
        in.previous ? in.previous->FindRollout(t.name, t.version) : nullptr;
    const RolloutIntent* intent = nullptr;
    for (const auto& i : in.intents) {
      if (i.name == t.name && i.version == t.version) intent = &i;
    }
    auto progress = Progress(plan, t.name, t.version, facts);
    ota::RolloutControl rc = Advance(t.name, t.version, plan, prev, intent, progress, now);
    const int64_t before_waves = prev ? prev->open_waves : 0;
    const std::string before_state = prev ? prev->state : "pending";
    if (rc.state != before_state)
      rep.changes.push_back(tag + ": " + before_state + " -> " + rc.state +
                            (rc.reason.empty() ? "" : " (" + rc.reason + ")"));
    if (rc.open_waves > before_waves) {
      rep.changes.push_back(tag + ": " + WaveText(rc.open_waves, plan.waves.size()) + " opened");
    }
    json opened = json::array();
    for (int64_t o : rc.opened) opened.push_back(ota::FormatTime(o));
    statuses.push_back({t.name, t.version, ota::ToJson(plan).dump(), rc.state, rc.open_waves,
                        opened.dump(), rc.reason, out.version, now * 1000});
    out.rollouts.push_back(std::move(rc));
  }
  for (const auto& p : in.pins) out.pins.push_back({p.device_id, p.name, p.max_version});
  std::vector<int64_t> to_sign;
  TEND_RETURN_NOT_OK(ApplyRollbackRequests(opts, db, in, now, out, to_sign));
  // Signed and published first: the database only ever reports what devices can see.
  TEND_RETURN_NOT_OK(ota::WriteControl(opts.registry_dir, out, opts.keys));
  for (const auto& s : statuses) TEND_RETURN_NOT_OK(db.PutRolloutStatus(s));
  for (int64_t id : to_sign) TEND_RETURN_NOT_OK(db.SetRollbackStatus(id, "signed", now * 1000));
  for (const auto& c : rep.changes) TEND_LOG_INFO("control: {}", c);
  return rep;
}

}  // namespace tend::fleet
