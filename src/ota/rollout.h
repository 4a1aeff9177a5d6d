// Staged rollouts. A release may carry a rollout plan, signed with it by the targets role (the
// offline publisher keys): waves of devices chosen by a stable hash of the device id, a minimum
// soak per wave, abort rules. Which waves are open is stated by control.json, signed by the
// timestamp role with a short expiry and re-signed by the publisher side's controller
// (`tend registry control`); when it stops re-signing (an abort, a controller that died) no new
// wave opens anywhere once the last statement expires. control.json also carries operator
// directives for single devices (roll back from a version, install nothing above a version), so
// a console can act on devices without holding any key: it asks the controller, which signs.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "ota/crypto.h"
#include "ota/metadata.h"

namespace tend::ota {

inline constexpr char kControlType[] = "control";  // _type of control.json (timestamp role keys)
inline constexpr char kControlFile[] = "control.json";
inline constexpr int64_t kRolloutBuckets = 10000;  // devices are spread over 0.01 % buckets

struct Wave {
  int64_t percent = 100;  // cumulative share of the fleet once this wave is open, 1..100
  int64_t soak_s = 0;     // the next wave opens no earlier than this after this one opened
};

struct RolloutPlan {
  std::vector<Wave> waves;            // strictly increasing percents, the last one 100
  int64_t abort_failed_percent = 20;  // abort when refusals+rollbacks exceed this % of a wave...
  int64_t abort_min_failed = 1;       // ...and at least this many of its devices failed
  std::string salt;                   // hash salt: the same salt picks the same canaries
};

// Checks every field (see the limits in rollout.cc); an error names the field.
Result<RolloutPlan> ParseRolloutPlan(const nlohmann::json& j, const std::string& what);
nlohmann::json ToJson(const RolloutPlan& p);
// "5,25,100" with soaks "1h,30m" (one value for every wave, or one per wave; s/m/h/d suffixes).
Result<RolloutPlan> MakeRolloutPlan(const std::string& percents, const std::string& soaks,
                                    int64_t abort_failed_percent, int64_t abort_min_failed,
                                    const std::string& salt);
// "90", "30s", "15m", "2h", "7d" -> seconds.
Result<int64_t> ParseDuration(const std::string& s, const std::string& what);

// The device's bucket in [0, kRolloutBuckets): SHA-256("salt/device_id"), first 8 bytes, mod.
int64_t RolloutBucket(const std::string& salt, const std::string& device_id);
// 0-based index of the device's wave.
int WaveOf(const RolloutPlan& plan, const std::string& device_id);

// One rollout as the controller last signed it.
struct RolloutControl {
  std::string name;
  int64_t version = 0;
  std::string state = "pending";  // pending | running | paused | aborted | complete
  int64_t open_waves = 0;         // waves 0..open_waves-1 may install (when running)
  std::vector<int64_t> opened;    // unix time each open wave opened
  std::string reason;             // why it was aborted or paused
};

struct DevicePin {
  std::string device_id, name;
  int64_t max_version = 0;  // install nothing above this version
};

struct DeviceRollback {
  std::string device_id, name;
  int64_t from_version = 0;  // only a device running this version rolls back
  std::string request, reason;
};

struct ControlMeta {
  int64_t version = 1;
  int64_t expires = 0;
  std::vector<RolloutControl> rollouts;
  std::vector<DevicePin> pins;
  std::vector<DeviceRollback> rollbacks;

  const RolloutControl* FindRollout(const std::string& name, int64_t version) const;
  std::optional<int64_t> PinFor(const std::string& device_id, const std::string& name) const;
  const DeviceRollback* RollbackFor(const std::string& device_id, const std::string& name) const;
};

bool ValidRolloutState(const std::string& s);
Result<ControlMeta> ParseControl(const nlohmann::json& signed_part, const std::string& what);
nlohmann::json ToJson(const ControlMeta& m);

// control.json: signatures by the root's timestamp role, _type "control", version >= floor, not
// expired at `now`.
Result<ControlMeta> VerifyControl(const RootMeta& root, std::string_view bytes,
                                  int64_t version_floor, int64_t now);

// Publisher side: signs `meta` (the keys must reach the timestamp threshold of the registry's
// current root) and replaces control.json atomically.
Status WriteControl(const std::string& registry_dir, const ControlMeta& meta,
                    const std::vector<KeyPair>& keys);
// The registry's control.json verified against its own root.json, ignoring expiry (the
// controller reads what it signed last); NotFound when there is none.
Result<ControlMeta> ReadControl(const std::string& registry_dir);

// Whether `device_id` may install `target` now. `control` is the newest valid control.json (null:
// none could be fetched or verified). A release without a plan is always allowed.
struct RolloutGate {
  bool allowed = true;
  int wave = -1;    // the device's wave when the release has a plan
  std::string why;  // when not allowed: one line for logs and status
};
Result<RolloutGate> GateRollout(const TargetInfo& target, const ControlMeta* control,
                                const std::string& device_id);

}  // namespace tend::ota
