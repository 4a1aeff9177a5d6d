#include "fleet/message.h"

#include <nlohmann/json.hpp>

#include "telemetry/payload.h"

namespace tend::fleet {

using telemetry::TopicKind;

const char* MalformedName(Malformed m) {
  switch (m) {
    case Malformed::kNone:
      return "ok";
    case Malformed::kTooLarge:
      return "too_large";
    case Malformed::kBadJson:
      return "bad_json";
    case Malformed::kWrongType:
      return "wrong_type";
    case Malformed::kUnknownTopic:
      return "unknown_topic";
  }
  return "?";
}

namespace {

ParseOutcome Bad(Malformed why, std::string detail) {
  ParseOutcome o;
  o.reason = why;
  o.detail = std::move(detail);
  return o;
}

// Fetches an optional string field; a present field of another type is an error.
bool OptString(const nlohmann::json& j, const char* key, std::string& out, std::string& err) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return true;
  if (!it->is_string()) {
    err = std::string("field '") + key + "' must be a string";
    return false;
  }
  out = it->get<std::string>();
  return true;
}

bool ReqString(const nlohmann::json& j, const char* key, std::string& out, std::string& err) {
  if (!j.contains(key) || j[key].is_null()) {
    err = std::string("missing field '") + key + "'";
    return false;
  }
  return OptString(j, key, out, err);
}

bool OptInt(const nlohmann::json& j, const char* key, int64_t& out, std::string& err) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return true;
  if (!it->is_number_integer()) {
    err = std::string("field '") + key + "' must be an integer";
    return false;
  }
  out = it->get<int64_t>();
  return true;
}

bool ReqInt(const nlohmann::json& j, const char* key, int64_t& out, std::string& err) {
  if (!j.contains(key) || j[key].is_null()) {
    err = std::string("missing field '") + key + "'";
    return false;
  }
  return OptInt(j, key, out, err);
}

bool OptBool(const nlohmann::json& j, const char* key, bool& out, std::string& err) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return true;
  if (!it->is_boolean()) {
    err = std::string("field '") + key + "' must be a boolean";
    return false;
  }
  out = it->get<bool>();
  return true;
}

bool ReqBool(const nlohmann::json& j, const char* key, bool& out, std::string& err) {
  if (!j.contains(key) || j[key].is_null()) {
    err = std::string("missing field '") + key + "'";
    return false;
  }
  return OptBool(j, key, out, err);
}

// The OTA state the agent publishes (src/cli/cmd_run.cc OtaSupervisor, ota::Updater::StatusJson):
// required are the fields the fleet shows (event, state, current_version, stale); the rest must
// have the right type when present.
bool ParseOta(const nlohmann::json& j, OtaFields& o, std::string& err) {
  if (!ReqString(j, "event", o.event, err)) return false;
  if (o.event.empty()) {
    err = "field 'event' is empty";
    return false;
  }
  if (!ReqString(j, "state", o.state, err)) return false;
  if (o.state != "no-model" && o.state != "probation" && o.state != "serving") {
    err = "state must be no-model, probation or serving, got '" + o.state + "'";
    return false;
  }
  if (!ReqInt(j, "current_version", o.current_version, err)) return false;
  if (o.current_version < 0) {
    err = "field 'current_version' must be >= 0";
    return false;
  }
  if (!ReqBool(j, "stale", o.stale, err)) return false;
  if (!OptString(j, "model", o.model, err)) return false;
  if (!OptInt(j, "backup_version", o.backup_version, err)) return false;
  if (!OptInt(j, "highest_version", o.highest_version, err)) return false;
  if (!OptBool(j, "in_probation", o.in_probation, err)) return false;
  if (!OptInt(j, "model_age_s", o.model_age_s, err)) return false;
  if (!OptInt(j, "rollbacks", o.rollbacks, err)) return false;
  if (!OptString(j, "last_rollback_reason", o.last_rollback_reason, err)) return false;
  std::string last_error, last_result;
  if (!OptString(j, "last_error", last_error, err)) return false;
  if (!OptString(j, "last_result", last_result, err)) return false;
  if (j.contains("updates") && !j["updates"].is_null()) {
    const auto& u = j["updates"];
    if (!u.is_object()) {
      err = "field 'updates' must be an object";
      return false;
    }
    for (const char* k : {"installed", "refused", "rolled_back", "failed"}) {
      int64_t n = 0;
      if (!OptInt(u, k, n, err)) {
        err = "updates: " + err;
        return false;
      }
    }
  }
  if (o.event == "rolled_back") {
    o.reason = o.last_rollback_reason;
  } else {
    o.reason = !last_error.empty() ? last_error : last_result;
  }
  return true;
}

}  // namespace

ParseOutcome ParseFleetMessage(const std::string& topic, const std::string& payload,
                               size_t max_payload_bytes) {
  if (payload.size() > max_payload_bytes) {
    return Bad(Malformed::kTooLarge, topic + ": payload of " + std::to_string(payload.size()) +
                                         " bytes exceeds " + std::to_string(max_payload_bytes));
  }
  auto t = telemetry::ParseTopic(topic);
  if (t.kind == TopicKind::kUnknown)
    return Bad(Malformed::kUnknownTopic, topic + ": not a SPEC topic");
  auto j = nlohmann::json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad(Malformed::kBadJson, topic + ": payload is not valid JSON");
  if (!j.is_object()) return Bad(Malformed::kWrongType, topic + ": payload is not a JSON object");

  ParseOutcome o;
  FleetMessage& m = o.message;
  m.kind = t.kind;
  m.factory_id = t.factory_id;
  m.line_id = t.line_id;
  m.asset_id = t.asset_id;
  m.device_id = t.device_id;
  m.payload = payload;
  std::string err;
  auto wrong = [&](const std::string& e) { return Bad(Malformed::kWrongType, topic + ": " + e); };

  if (!ReqString(j, "timestamp", m.timestamp, err)) return wrong(err);
  auto ts = telemetry::ParseIso8601Ms(m.timestamp);
  if (!ts) return wrong(ts.error().message);
  m.ts_ms = *ts;
  if (!OptString(j, "msg_id", m.msg_id, err)) return wrong(err);
  if (!OptString(j, "model_version", m.model_version, err)) return wrong(err);
  if (j.contains("seq") && !j["seq"].is_null()) {
    if (!j["seq"].is_number_integer()) return wrong("field 'seq' must be an integer");
    m.seq = j["seq"].get<int64_t>();
  }

  if (t.kind == TopicKind::kStatus) {
    std::string dev;
    if (!ReqString(j, "device_id", dev, err)) return wrong(err);
    if (dev != t.device_id) return wrong("device_id '" + dev + "' does not match the topic");
    if (!ReqString(j, "status", m.status, err)) return wrong(err);
    if (m.status != "online" && m.status != "offline") {
      return wrong("status must be 'online' or 'offline', got '" + m.status + "'");
    }
    return o;
  }
  if (t.kind == TopicKind::kOta) {
    std::string dev;
    if (!ReqString(j, "device_id", dev, err)) return wrong(err);
    if (dev != t.device_id) return wrong("device_id '" + dev + "' does not match the topic");
    if (!ParseOta(j, m.ota, err)) return wrong(err);
    return o;
  }
  if (!OptString(j, "device_id", m.device_id, err)) return wrong(err);
  if (t.kind == TopicKind::kHealth) {
    if (!ReqString(j, "device_id", m.device_id, err)) return wrong(err);
    std::string type;
    if (!OptString(j, "type", type, err)) return wrong(err);
    m.drop_report = type == "spool_drop_report";
    if (!m.drop_report) {
      for (const char* k : {"cpu_pct", "gpu_pct", "temp_c"}) {
        if (!j.contains(k)) return wrong(std::string("missing field '") + k + "'");
        if (!j[k].is_null() && !j[k].is_number()) {
          return wrong(std::string("field '") + k + "' must be a number or null");
        }
      }
    }
    return o;
  }
  // Scores and alerts.
  std::string asset;
  if (!ReqString(j, "asset_id", asset, err)) return wrong(err);
  if (asset != t.asset_id) return wrong("asset_id '" + asset + "' does not match the topic");
  if (!j.contains("anomaly_score")) return wrong("missing field 'anomaly_score'");
  if (j["anomaly_score"].is_number()) {
    m.has_score = true;
    m.anomaly_score = j["anomaly_score"].get<double>();
  } else if (!j["anomaly_score"].is_null()) {
    return wrong("field 'anomaly_score' must be a number");
  }
  if (!j.contains("is_alert") || !j["is_alert"].is_boolean()) {
    return wrong("field 'is_alert' must be a boolean");
  }
  m.is_alert = j["is_alert"].get<bool>();
  if (!ReqString(j, "severity", m.severity, err)) return wrong(err);
  if (m.severity != "NONE" && m.severity != "LOW" && m.severity != "MEDIUM" &&
      m.severity != "HIGH") {
    return wrong("severity must be NONE, LOW, MEDIUM or HIGH, got '" + m.severity + "'");
  }
  if (!j.contains("top_sensors") || !j["top_sensors"].is_array()) {
    return wrong("field 'top_sensors' must be a list");
  }
  for (const auto& s : j["top_sensors"]) {
    if (!s.is_string()) return wrong("field 'top_sensors' must hold strings");
  }
  m.top_sensors = j["top_sensors"].dump();
  if (!OptString(j, "image_ref", m.image_ref, err)) return wrong(err);
  if (j.contains("event_id") && j["event_id"].is_number_integer()) {
    m.event_id = std::to_string(j["event_id"].get<int64_t>());
  } else if (!OptString(j, "event_id", m.event_id, err)) {
    return wrong("field 'event_id' must be a string or an integer");
  }
  if (t.kind == TopicKind::kAlerts && !m.is_alert) {
    return wrong("message on an alerts topic has is_alert=false");
  }
  return o;
}

}  // namespace tend::fleet
