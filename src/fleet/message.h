// The cloud side's view of one MQTT message from a device: topic and JSON payload checked
// against SPEC.md and turned into typed fields. Anything else is a classified parse error, so
// that ingest can count and skip it instead of failing.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"
#include "telemetry/identity.h"

namespace tend::fleet {

// The fields of an edge "ota" state message (factory/{f}/edge/{d}/ota) the fleet keeps: what
// `ota::Updater::StatusJson()` reports plus the agent's `event`.
struct OtaFields {
  std::string
      event;  // startup | installed | refused | rolled_back | changed | probation_ended | stale
  std::string model, state;  // state: no-model | probation | serving
  int64_t current_version = 0, backup_version = 0, highest_version = 0;
  bool in_probation = false, stale = false;
  int64_t model_age_s = -1, rollbacks = 0;
  std::string last_rollback_reason;
  // Why this event happened, for the event history: the rollback reason for rolled_back, else the
  // updater's last error or result ("" when it gave none).
  std::string reason;
};

struct FleetMessage {
  telemetry::TopicKind kind = telemetry::TopicKind::kUnknown;
  std::string factory_id, line_id, asset_id, device_id;
  std::string msg_id;     // empty when the sender gave none (SPEC minimum payloads)
  std::string timestamp;  // as sent
  int64_t ts_ms = 0;      // parsed
  bool has_score = false;
  double anomaly_score = 0;
  bool is_alert = false;
  std::string severity;
  std::string top_sensors;  // JSON array text
  std::string event_id, image_ref;  // inspected parts: part number, evidence image on the device
  std::string model_version;
  int64_t seq = -1;
  std::string status;        // status messages: online | offline
  int64_t session_ms = 0;    // status: the connection's stamp (telemetry::StatusSession), 0: none
  std::string instance;      // status: the sending process, "" when not sent
  bool will = false;         // status: this is the device's Last Will
  bool drop_report = false;  // a health-topic spool drop report
  OtaFields ota;             // ota messages
  std::string payload;       // the raw JSON
};

// Why a message was refused; the fleet counts each separately. kBadId: an id (topic level,
// msg_id, instance) outside the id alphabet, or a text field with control or right-to-left
// characters that could fake lines in `tend fleet status`. kBadTimestamp: not a real UTC date and
// time, before 2000, or further ahead of the fleet's clock than the allowed skew.
enum class Malformed {
  kNone,
  kTooLarge,
  kBadJson,
  kWrongType,
  kUnknownTopic,
  kBadId,
  kBadTimestamp
};
const char* MalformedName(Malformed m);

struct ParseOutcome {
  Malformed reason = Malformed::kNone;
  std::string detail;  // one line naming the field or problem
  FleetMessage message;
};

// Payloads are flat objects (the OTA state has one nested object): deeper JSON is refused.
inline constexpr int kMaxPayloadDepth = 8;

ParseOutcome ParseFleetMessage(const std::string& topic, const std::string& payload,
                               size_t max_payload_bytes = 64 * 1024);

// Device clocks are trusted this far ahead of the fleet's (a status stamped 2099 would otherwise
// win over every later one and freeze the device's state).
inline constexpr int64_t kDefaultMaxClockSkewMs = 10 * 60 * 1000;
inline constexpr int64_t kEarliestMs = 946684800000;  // 2000-01-01T00:00:00Z
// Checks a parsed message's device times (timestamp, status session) against the receive time:
// kBadTimestamp (detail set) when one is before 2000 or more than max_skew_ms ahead; else kNone.
Malformed CheckClock(const FleetMessage& m, int64_t received_ms, int64_t max_skew_ms,
                     std::string* detail);
// Text a device sends that `tend fleet` prints: no control characters (C0, DEL, C1) and no
// Unicode direction controls (U+061C, U+200E/F, U+202A-E, U+2066-9). Input is valid UTF-8.
bool IsSafeText(const std::string& s);

}  // namespace tend::fleet
