// JSON payloads of SPEC.md's MQTT messages (scores/alerts, health, status) built from pipeline
// values, plus the message id that lets receivers deduplicate at-least-once delivery.
// Pure functions: the agent, the fleet side, tests and an independent subscriber share them.
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "core/status.h"
#include "decide/decision.h"
#include "telemetry/identity.h"

namespace tend::telemetry {

// (device, boot epoch, sequence): unique per device for its whole life because the boot epoch
// is a counter persisted in the spool and bumped on every start, starting from a random number
// whenever the spool has none (new, reset or wiped; see Spool::boot_epoch).
struct MessageId {
  int64_t boot = 0;
  int64_t seq = 0;
};
std::string FormatMessageId(const std::string& device_id, const MessageId& id);

// "2024-05-01T12:00:00.123Z" (UTC, milliseconds).
std::string FormatIso8601(std::chrono::system_clock::time_point t);
// Parses "YYYY-MM-DDTHH:MM:SS[.fff...](Z|+00:00)" into milliseconds since the Unix epoch.
Result<int64_t> ParseIso8601Ms(const std::string& s);

// SPEC fields: timestamp, asset_id, anomaly_score (4 decimals), is_alert, severity, top_sensors,
// and for events with one, event_id and image_ref (the evidence reference); extras: device_id,
// model_name, model_version, msg_id, seq, boot, latency_ms, window_index, and fail_safe (only when
// true). `id` is the identity of the decision's asset (Identity::ForAsset).
// factory_id/line_id/asset path are in the topic. The same payload goes to .../scores and, for an
// alert, to .../alerts.
nlohmann::json ScoreJson(const Decision& d, const Identity& id, const MessageId& mid);
std::string ScorePayload(const Decision& d, const Identity& id, const MessageId& mid);

// SPEC fields: timestamp, device_id, cpu_pct, gpu_pct, temp_c (1 decimal). `extra` (from the
// metrics module's health provider, and the spool's own depth/drops) is merged in; cpu_pct,
// gpu_pct and temp_c are null when nobody measured them.
std::string HealthPayload(std::chrono::system_clock::time_point t, const Identity& id,
                          const MessageId& mid, const nlohmann::json& extra);

// Which MQTT connection a status belongs to. The Last Will is fixed at CONNECT, so it carries the
// connect time; the `online` sent once connected and the `offline` of a graceful stop carry the
// same `session`. A receiver orders a device's statuses by (session, offline after online): a
// crashed device's Will then wins over its own `online` (sent after it, but stamped earlier), and
// the next connection's `online` wins over that Will, whatever the arrival order.
// `instance` names the process (random per start): two live processes claiming one device id
// show as two instances taking turns.
struct StatusSession {
  int64_t session_ms = 0;  // connect attempt, ms since the epoch (device clock); 0: not sent
  std::string instance;    // 16 hex digits; "": not sent
  bool will = false;       // this is the Last Will
};
// A new random instance id (16 lower-case hex digits).
std::string NewInstanceId();

// {"device_id", "status": "online"|"offline", "timestamp"} and, when given, "session",
// "instance" and "will": true.
std::string StatusPayload(std::chrono::system_clock::time_point t, const Identity& id, bool online,
                          const StatusSession& session = {});

// Rounds to `decimals` places, the way the SPEC asks for scores (4) and temperatures (1).
double RoundTo(double v, int decimals);

}  // namespace tend::telemetry
