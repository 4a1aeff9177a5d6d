#include "fleet/message.h"

#include <nlohmann/json.hpp>

#include "core/json.h"
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
    case Malformed::kBadId:
      return "bad_id";
    case Malformed::kBadTimestamp:
      return "bad_timestamp";
  }
  return "?";
}

bool IsSafeText(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = p[i];
    if (c < 0x20 || c == 0x7f) return false;
    if (i + 1 < s.size() && c == 0xc2 && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f) return false;
    if (i + 1 < s.size() && c == 0xd8 && p[i + 1] == 0x9c) return false;  // U+061C
    if (i + 2 < s.size() && c == 0xe2) {
      const unsigned char b = p[i + 1], d = p[i + 2];
      if (b == 0x80 && (d == 0x8e || d == 0x8f || (d >= 0xaa && d <= 0xae))) return false;
      if (b == 0x81 && d >= 0xa6 && d <= 0xa9) return false;
    }
  }
  return true;
}

Malformed CheckClock(const FleetMessage& m, int64_t received_ms, int64_t max_skew_ms,
                     std::string* detail) {
  auto check = [&](int64_t ms, const char* what) {
    if (ms >= kEarliestMs && ms <= received_ms + max_skew_ms) return true;
    if (detail) {
      *detail = std::string(what) + " " + std::to_string(ms) + " ms is " +
                (ms < kEarliestMs ? "before 2000-01-01"
                                  : std::to_string((ms - received_ms) / 1000) +
                                        " s ahead of the fleet's clock (allowed: " +
                                        std::to_string(max_skew_ms / 1000) + " s)");
    }
    return false;
  };
  if (!check(m.ts_ms, "timestamp")) return Malformed::kBadTimestamp;
  if (m.session_ms != 0 && !check(m.session_ms, "status session")) return Malformed::kBadTimestamp;
  return Malformed::kNone;
}

namespace {

// msg_ids are {device}-{boot}-{seq}; a sender's own ids may be longer, within reason.
bool IsMessageId(const std::string& s) {
  if (s.empty() || s.size() > 200) return false;
  for (char c : s) {
    if (!telemetry::IsIdChar(c)) return false;
  }
  return true;
}

// Topics are shown in log lines before their levels are checked: escaped.
std::string ShownTopic(const std::string& topic) {
  std::string out;
  for (char c : topic.substr(0, 200)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

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

namespace {

// A field problem: the reason it is counted under and one line naming the field.
struct Problem {
  Malformed why = Malformed::kNone;
  std::string detail;
  explicit operator bool() const { return why != Malformed::kNone; }
};
Problem Wrong(std::string e) { return {Malformed::kWrongType, std::move(e)}; }
Problem BadId(std::string e) { return {Malformed::kBadId, std::move(e)}; }
bool TextOk(const std::string& s, size_t max) { return s.size() <= max && IsSafeText(s); }

// timestamp, msg_id, model_version, seq: every topic has them.
Problem ParseCommon(const nlohmann::json& j, FleetMessage& m) {
  std::string err;
  if (!ReqString(j, "timestamp", m.timestamp, err)) return Wrong(err);
  auto ts = telemetry::ParseIso8601Ms(m.timestamp);
  if (!ts) return {Malformed::kBadTimestamp, ts.error().message};
  m.ts_ms = *ts;
  if (!OptString(j, "msg_id", m.msg_id, err)) return Wrong(err);
  if (!m.msg_id.empty() && !IsMessageId(m.msg_id)) {
    return BadId("msg_id is not 1-200 characters of [A-Za-z0-9._-]");
  }
  if (!OptString(j, "model_version", m.model_version, err)) return Wrong(err);
  if (!TextOk(m.model_version, 128)) {
    return BadId("model_version has control or direction characters, or is too long");
  }
  if (j.contains("seq") && !j["seq"].is_null()) {
    if (!j["seq"].is_number_integer()) return Wrong("field 'seq' must be an integer");
    m.seq = j["seq"].get<int64_t>();
  }
  return {};
}

// Edge topics (status, ota) carry the device id of their topic.
Problem CheckEdgeDevice(const nlohmann::json& j, const FleetMessage& m) {
  std::string dev, err;
  if (!ReqString(j, "device_id", dev, err)) return Wrong(err);
  if (dev != m.device_id) return Wrong("device_id does not match the topic");
  return {};
}

Problem ParseStatus(const nlohmann::json& j, FleetMessage& m) {
  std::string err;
  if (auto p = CheckEdgeDevice(j, m)) return p;
  if (!ReqString(j, "status", m.status, err)) return Wrong(err);
  if (m.status != "online" && m.status != "offline") {
    return Wrong("status must be 'online' or 'offline'");
  }
  if (!OptInt(j, "session", m.session_ms, err)) return Wrong(err);
  if (m.session_ms < 0) return Wrong("field 'session' must be >= 0");
  if (!OptString(j, "instance", m.instance, err)) return Wrong(err);
  if (m.instance.size() > 32 ||
      m.instance.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return BadId("instance is not up to 32 lower-case hex digits");
  }
  if (!OptBool(j, "will", m.will, err)) return Wrong(err);
  if (m.will && m.status != "offline") return Wrong("a Last Will must say 'offline'");
  return {};
}

Problem ParseOtaMessage(const nlohmann::json& j, FleetMessage& m) {
  std::string err;
  if (auto p = CheckEdgeDevice(j, m)) return p;
  if (!ParseOta(j, m.ota, err)) return Wrong(err);
  const OtaFields& o = m.ota;
  if (!TextOk(o.event, 64) || !TextOk(o.model, 128) || !TextOk(o.reason, 2048) ||
      !TextOk(o.last_rollback_reason, 2048)) {
    return BadId("an OTA text field has control or direction characters, or is too long");
  }
  return {};
}

Problem ParseHealth(const nlohmann::json& j, FleetMessage& m) {
  std::string err, type;
  if (!ReqString(j, "device_id", m.device_id, err)) return Wrong(err);
  if (!OptString(j, "type", type, err)) return Wrong(err);
  m.drop_report = type == "spool_drop_report";
  if (m.drop_report) return {};
  for (const char* k : {"cpu_pct", "gpu_pct", "temp_c"}) {
    if (!j.contains(k)) return Wrong(std::string("missing field '") + k + "'");
    if (!j[k].is_null() && !j[k].is_number()) {
      return Wrong(std::string("field '") + k + "' must be a number or null");
    }
  }
  return {};
}

// Scores and alerts.
Problem ParseScore(const nlohmann::json& j, FleetMessage& m) {
  std::string err, asset;
  if (!ReqString(j, "asset_id", asset, err)) return Wrong(err);
  if (asset != m.asset_id) return Wrong("asset_id does not match the topic");
  if (!j.contains("anomaly_score")) return Wrong("missing field 'anomaly_score'");
  if (j["anomaly_score"].is_number()) {
    m.has_score = true;
    m.anomaly_score = j["anomaly_score"].get<double>();
  } else if (!j["anomaly_score"].is_null()) {
    return Wrong("field 'anomaly_score' must be a number");
  }
  if (!j.contains("is_alert") || !j["is_alert"].is_boolean()) {
    return Wrong("field 'is_alert' must be a boolean");
  }
  m.is_alert = j["is_alert"].get<bool>();
  if (!ReqString(j, "severity", m.severity, err)) return Wrong(err);
  if (m.severity != "NONE" && m.severity != "LOW" && m.severity != "MEDIUM" &&
      m.severity != "HIGH") {
    return Wrong("severity must be NONE, LOW, MEDIUM or HIGH");
  }
  if (!j.contains("top_sensors") || !j["top_sensors"].is_array()) {
    return Wrong("field 'top_sensors' must be a list");
  }
  for (const auto& s : j["top_sensors"]) {
    if (!s.is_string()) return Wrong("field 'top_sensors' must hold strings");
    if (!TextOk(s.get<std::string>(), 128)) {
      return BadId("a top_sensors entry has control or direction characters, or is too long");
    }
  }
  m.top_sensors = j["top_sensors"].dump();
  if (!OptString(j, "image_ref", m.image_ref, err)) return Wrong(err);
  if (j.contains("event_id") && j["event_id"].is_number_integer()) {
    m.event_id = std::to_string(j["event_id"].get<int64_t>());
  } else if (!OptString(j, "event_id", m.event_id, err)) {
    return Wrong("field 'event_id' must be a string or an integer");
  }
  if (!TextOk(m.image_ref, 512) || !TextOk(m.event_id, 128)) {
    return BadId("image_ref or event_id has control or direction characters, or is too long");
  }
  if (m.kind == TopicKind::kAlerts && !m.is_alert) {
    return Wrong("message on an alerts topic has is_alert=false");
  }
  return {};
}

Problem ParseByKind(const nlohmann::json& j, FleetMessage& m) {
  if (auto p = ParseCommon(j, m)) return p;
  if (m.kind == TopicKind::kStatus) return ParseStatus(j, m);
  if (m.kind == TopicKind::kOta) return ParseOtaMessage(j, m);
  std::string err;
  if (!OptString(j, "device_id", m.device_id, err)) return Wrong(err);
  if (!m.device_id.empty()) {
    if (auto st = telemetry::ValidateId("device_id", m.device_id); !st) {
      return BadId(st.error().message);
    }
  }
  if (m.kind == TopicKind::kHealth) return ParseHealth(j, m);
  return ParseScore(j, m);
}

}  // namespace

ParseOutcome ParseFleetMessage(const std::string& topic, const std::string& payload,
                               size_t max_payload_bytes) {
  if (payload.size() > max_payload_bytes) {
    return Bad(Malformed::kTooLarge, ShownTopic(topic) + ": payload of " +
                                         std::to_string(payload.size()) + " bytes exceeds " +
                                         std::to_string(max_payload_bytes));
  }
  auto t = telemetry::ParseTopic(topic);
  if (t.kind == TopicKind::kUnknown) {
    return Bad(Malformed::kUnknownTopic, ShownTopic(topic) + ": not a SPEC topic");
  }
  for (const std::string* part : {&t.factory_id, &t.line_id, &t.asset_id, &t.device_id}) {
    if (part->empty()) continue;  // not a level of this kind of topic
    if (auto st = telemetry::ValidateId("topic level", *part); !st) {
      return Bad(Malformed::kBadId, ShownTopic(topic) + ": " + st.error().message);
    }
  }
  // Past this point the topic is made of checked ids: safe to show as it is.
  // Devices send flat objects; anything nested deeper than this is refused before it is built.
  auto parsed = tend::json::ParseJson(payload, topic, {max_payload_bytes, kMaxPayloadDepth});
  if (!parsed) return Bad(Malformed::kBadJson, parsed.error().message);
  if (!parsed->is_object()) {
    return Bad(Malformed::kWrongType, topic + ": payload is not a JSON object");
  }
  ParseOutcome o;
  FleetMessage& m = o.message;
  m.kind = t.kind;
  m.factory_id = t.factory_id;
  m.line_id = t.line_id;
  m.asset_id = t.asset_id;
  m.device_id = t.device_id;
  m.payload = payload;
  if (Problem p = ParseByKind(*parsed, m)) return Bad(p.why, topic + ": " + p.detail);
  return o;
}

}  // namespace tend::fleet
