// The publisher side's rollout controller (`tend registry control`): on every tick it reads the
// signed releases and their plans from the registry, the operators' intents (start, pause, abort,
// pins, rollback requests) and the devices' OTA states from the fleet database, decides which
// waves are open, and signs a fresh short-lived control.json with the timestamp key. The console
// never signs: it only records intents, and an abort (or an abort rule) takes effect because the
// controller stops opening waves, or, if the controller is gone, because control.json expires.
// Decisions are pure functions (Advance, Progress, AbortRuleFired) so each rule is tested alone.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/status.h"
#include "fleet/console_db.h"
#include "ota/crypto.h"
#include "ota/metadata.h"
#include "ota/rollout.h"

namespace tend::fleet {

// What the fleet knows of one device's model updates (from its latest OTA state).
struct DeviceOtaFacts {
  std::string device_id, model;
  int64_t current_version = 0;
  std::vector<int64_t> rejected_versions;
};
std::vector<DeviceOtaFacts> OtaFactsOf(const std::vector<DeviceSummary>& devices);

struct WaveProgress {
  int64_t devices = 0;    // devices running this model whose hash falls in the wave
  int64_t installed = 0;  // running the release (or a newer one)
  int64_t failed = 0;     // refused it or rolled it back
  int64_t pending = 0;
};
std::vector<WaveProgress> Progress(const ota::RolloutPlan& plan, const std::string& name,
                                   int64_t version, const std::vector<DeviceOtaFacts>& devices);

// The abort rule over the open waves: "" when it holds, else the reason (one line).
std::string AbortRuleFired(const ota::RolloutPlan& plan, const std::vector<WaveProgress>& progress,
                           int64_t open_waves, int64_t version);

// The next state of one rollout. `previous`: what the controller signed last (null: never);
// `intent`: the operators' latest wish (null: none, the rollout waits). Aborted is final.
ota::RolloutControl Advance(const std::string& name, int64_t version, const ota::RolloutPlan& plan,
                            const ota::RolloutControl* previous, const RolloutIntent* intent,
                            const std::vector<WaveProgress>& progress, int64_t now);

struct ControllerOptions {
  std::string registry_dir;
  std::vector<ota::KeyPair> keys;  // the timestamp role's (never the targets keys)
  int64_t expires_s = 600;         // lifetime of each control.json
  int64_t rollback_request_ttl_s = 7 * 86400;
  std::function<int64_t()> clock;  // unix seconds; default: system clock
};

struct ControlReport {
  ota::ControlMeta control;
  std::vector<std::string> changes;  // e.g. "press-ae v7: wave 2 of 3 opened"
};

// One tick: decide, write control.json (signed), then record the rollouts' states and the
// rollback requests' progress in the database for the console.
Result<ControlReport> RunControlOnce(const ControllerOptions& opts, ConsoleDb& db);

}  // namespace tend::fleet
