// Sparkplug B (Eclipse Sparkplug 3.0) for tend, the pure part: topic names, the payloads an edge
// node publishes (NBIRTH, NDEATH, DBIRTH, DDATA, DDEATH) and decoding what hosts send (NCMD, the
// primary host's STATE). No I/O: sparkplug_node.h does the MQTT side. Every payload a host sends is
// untrusted: decoding returns an error naming the problem, never throws or crashes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "telemetry/sparkplug_b.pb.h"

namespace tend::sparkplug {

inline constexpr const char* kNamespace = "spBv1.0";

// Node metrics.
inline constexpr const char* kBdSeq = "bdSeq";
inline constexpr const char* kRebirth = "Node Control/Rebirth";
// Device (asset) metrics, see docs/sparkplug.md.
inline constexpr const char* kAnomalyScore = "Anomaly Score";
inline constexpr const char* kSeverity = "Severity";
inline constexpr const char* kIsAlert = "Is Alert";
inline constexpr const char* kAlertCount = "Alert Count";
inline constexpr const char* kModelName = "Model/Name";
inline constexpr const char* kModelVersion = "Model/Version";
inline constexpr const char* kLatency = "Decision Latency ms";
inline constexpr const char* kDeadlineMisses = "Deadline Misses";

// Group, edge node, device and host ids: non-empty UTF-8 without '+', '/', '#'.
Status ValidateId(const char* what, const std::string& id);

struct Topics {
  std::string group, node;
  std::string Node(const char* type) const;  // spBv1.0/{group}/{type}/{node}
  std::string Device(const char* type, const std::string& device) const;
};
std::string StateTopic(const std::string& host_id);  // spBv1.0/STATE/{host}

// What one device (asset) currently shows; the values of its DBIRTH and DDATA metrics.
struct DeviceValues {
  float score = 0;
  std::string severity = "NONE";
  bool is_alert = false;
  uint64_t alert_count = 0;
  std::string model_name, model_version;
  double latency_ms = 0;
  uint64_t deadline_misses = 0;
  uint64_t timestamp_ms = 0;  // when these values were decided
};

// NDEATH: bdSeq only, no seq (registered as the MQTT Will).
pb::Payload NDeath(int64_t bd_seq, uint64_t now_ms);
// NBIRTH: bdSeq and Node Control/Rebirth = false, with seq (0 in a birth sequence).
pb::Payload NBirth(int64_t bd_seq, uint64_t seq, uint64_t now_ms);
// DBIRTH: every device metric with name, datatype and current value.
pb::Payload DBirth(const DeviceValues& v, uint64_t seq, uint64_t now_ms);
// DDATA: the metrics of `now` that differ from `before` (all when before == nullptr).
// Historical data (an alert held during an outage) is flagged is_historical and carries the
// decision's own time; seq and the send time are set when it is sent (Restamp).
pb::Payload DData(const DeviceValues& now, const DeviceValues* before, bool historical);
pb::Payload DDeath(uint64_t seq, uint64_t now_ms);
// Parses a stored payload and sets its seq and send time.
Result<std::string> Restamp(std::string_view stored, uint64_t seq, uint64_t now_ms);

// An NCMD addressed to this node. Unknown metrics are listed, not errors (a host may write
// metrics tend does not have); a payload that is not Sparkplug B, or a Rebirth that is not a
// boolean, is an error.
struct NodeCommand {
  bool rebirth = false;
  std::vector<std::string> ignored;  // metric names (or "alias N") tend does not act on
};
inline constexpr size_t kMaxCommandBytes = 1 << 20;
Result<NodeCommand> DecodeNodeCommand(std::string_view bytes);

// The primary host's STATE payload (Sparkplug 3.0): {"online": bool, "timestamp": ms}.
struct HostState {
  bool online = false;
  int64_t timestamp = 0;
};
Result<HostState> DecodeHostState(std::string_view json);

}  // namespace tend::sparkplug
