// Who a device is on the wire: the factory/line/asset/device identity and the MQTT topic scheme
// of SPEC.md built from it. Kept apart from the client so the fleet side, tests and an
// independent subscriber can build and check the same topics.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace tend::telemetry {

// The id alphabet, the same on the device and in the fleet: 1-64 characters of [A-Za-z0-9._-]
// (a host name fits). Ids are spliced into topics and the client id and shown by `tend fleet`:
// no MQTT wildcards or level separators, no NUL, whitespace, control or right-to-left characters.
inline constexpr size_t kMaxIdLength = 64;
bool IsIdChar(char c);
// "identity: device_id 'a b' has a character outside [A-Za-z0-9._-]" (shown escaped).
Status ValidateId(const char* what, const std::string& v);

struct Identity {
  std::string factory_id, line_id, asset_id, device_id;

  // Every part must pass ValidateId.
  Status Validate() const;

  std::string ScoresTopic() const;  // factory/{f}/line/{l}/asset/{a}/scores  (QoS 0)
  std::string AlertsTopic() const;  // factory/{f}/line/{l}/asset/{a}/alerts  (QoS 1)
  std::string HealthTopic() const;  // factory/{f}/line/{l}/asset/{a}/health  (QoS 0)
  std::string StatusTopic() const;  // factory/{f}/edge/{d}/status  (QoS 1, retained)
  // factory/{f}/edge/{d}/{name}: a device state such as "ota" (QoS 1, retained); `name` must pass
  // ValidateEdgeStateName.
  std::string EdgeTopic(const std::string& name) const;
  std::string ClientId() const;  // edge_{d}
  // The same device and line, another asset (several assets per agent).
  Identity ForAsset(const std::string& asset) const {
    Identity i = *this;
    i.asset_id = asset;
    return i;
  }
};

// A device state name for Identity::EdgeTopic: one topic level (same rules as the identity
// parts), and not "status", which is the SPEC online/offline topic.
Status ValidateEdgeStateName(const std::string& name);

// Quality of service and retain flag per topic kind, as SPEC.md fixes them.
inline constexpr int kScoresQos = 0;
inline constexpr int kAlertsQos = 1;
inline constexpr int kHealthQos = 0;
inline constexpr int kStatusQos = 1;
inline constexpr bool kStatusRetained = true;
inline constexpr int kKeepAliveS = 60;

// Kind of an asset/edge topic parsed back from its name (for the fleet side).
// kOta: the device's over-the-air update state, factory/{f}/edge/{d}/ota (EdgeTopic("ota")).
enum class TopicKind { kScores, kAlerts, kHealth, kStatus, kOta, kUnknown };

// The device states the agent publishes (Telemetry::PublishDeviceState, EdgeTopic(name)).
// Telemetry refuses any other name, so a new state cannot reach the wire without also reaching
// PublishedTopics and therefore the broker ACL that `tend pki` writes.
inline constexpr std::array<std::string_view, 1> kDeviceStateNames = {"ota"};

// One topic the agent publishes, with SPEC.md's QoS and retain flag.
struct TopicSpec {
  TopicKind kind = TopicKind::kUnknown;
  std::string topic;
  int qos = 0;
  bool retained = false;
};
// Every topic the agent of `id` publishes for its asset, in this order: scores, alerts, health
// (asset topics), status, then one per kDeviceStateNames (edge topics). The one list the
// publisher takes its topics from and the ACL generator grants, so the two cannot drift.
std::vector<TopicSpec> PublishedTopics(const Identity& id);
struct ParsedTopic {
  TopicKind kind = TopicKind::kUnknown;
  std::string factory_id, line_id, asset_id, device_id;  // device_id only for edge topics
};
// Accepts exactly the four SPEC topic shapes and the edge "ota" state; anything else is kUnknown.
ParsedTopic ParseTopic(const std::string& topic);

}  // namespace tend::telemetry
