#include "telemetry/identity.h"

#include <cstdio>
#include <vector>

namespace tend::telemetry {
namespace {

std::string Escaped(const std::string& v) {
  std::string out;
  for (unsigned char c : v.substr(0, 80)) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

Status ValidatePart(const char* name, const std::string& v) { return ValidateId(name, v); }

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t p = s.find('/', start);
    if (p == std::string::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, p - start));
    start = p + 1;
  }
}

}  // namespace

bool IsIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

Status ValidateId(const char* what, const std::string& v) {
  if (v.empty()) return Fail(Error::Invalid(std::string("identity: ") + what + " is empty"));
  if (v.size() > kMaxIdLength) {
    return Fail(Error::Invalid(std::string("identity: ") + what + " '" + Escaped(v) +
                               "' is longer than " + std::to_string(kMaxIdLength) + " bytes"));
  }
  for (char c : v) {
    if (!IsIdChar(c)) {
      return Fail(Error::Invalid(std::string("identity: ") + what + " '" + Escaped(v) +
                                 "' has a character outside [A-Za-z0-9._-]"));
    }
  }
  return Ok();
}

Status Identity::Validate() const {
  TEND_RETURN_NOT_OK(ValidatePart("factory_id", factory_id));
  TEND_RETURN_NOT_OK(ValidatePart("line_id", line_id));
  TEND_RETURN_NOT_OK(ValidatePart("asset_id", asset_id));
  TEND_RETURN_NOT_OK(ValidatePart("device_id", device_id));
  return Ok();
}

static std::string AssetPrefix(const Identity& id) {
  return "factory/" + id.factory_id + "/line/" + id.line_id + "/asset/" + id.asset_id;
}

std::string Identity::ScoresTopic() const { return AssetPrefix(*this) + "/scores"; }
std::string Identity::AlertsTopic() const { return AssetPrefix(*this) + "/alerts"; }
std::string Identity::HealthTopic() const { return AssetPrefix(*this) + "/health"; }
std::string Identity::StatusTopic() const {
  return "factory/" + factory_id + "/edge/" + device_id + "/status";
}
std::string Identity::EdgeTopic(const std::string& name) const {
  return "factory/" + factory_id + "/edge/" + device_id + "/" + name;
}
std::string Identity::ClientId() const { return "edge_" + device_id; }

Status ValidateEdgeStateName(const std::string& name) {
  TEND_RETURN_NOT_OK(ValidatePart("edge state name", name));
  if (name == "status") {
    return Fail(Error::Invalid("edge state name 'status' is reserved for online/offline"));
  }
  return Ok();
}

std::vector<TopicSpec> PublishedTopics(const Identity& id) {
  std::vector<TopicSpec> out = {
      {TopicKind::kScores, id.ScoresTopic(), kScoresQos, false},
      {TopicKind::kAlerts, id.AlertsTopic(), kAlertsQos, false},
      {TopicKind::kHealth, id.HealthTopic(), kHealthQos, false},
      {TopicKind::kStatus, id.StatusTopic(), kStatusQos, kStatusRetained},
  };
  for (std::string_view name : kDeviceStateNames) {
    // Device states are retained at QoS 1 like the status (one current value per device).
    TopicKind kind = name == "ota" ? TopicKind::kOta : TopicKind::kUnknown;
    out.push_back({kind, id.EdgeTopic(std::string(name)), kStatusQos, true});
  }
  return out;
}

ParsedTopic ParseTopic(const std::string& topic) {
  ParsedTopic out;
  auto parts = Split(topic);
  for (const auto& p : parts) {
    if (p.empty()) return out;
  }
  if (parts.size() == 7 && parts[0] == "factory" && parts[2] == "line" && parts[4] == "asset") {
    TopicKind k = TopicKind::kUnknown;
    if (parts[6] == "scores") k = TopicKind::kScores;
    if (parts[6] == "alerts") k = TopicKind::kAlerts;
    if (parts[6] == "health") k = TopicKind::kHealth;
    if (k == TopicKind::kUnknown) return out;
    out.kind = k;
    out.factory_id = parts[1];
    out.line_id = parts[3];
    out.asset_id = parts[5];
    return out;
  }
  if (parts.size() == 5 && parts[0] == "factory" && parts[2] == "edge" &&
      (parts[4] == "status" || parts[4] == "ota")) {
    out.kind = parts[4] == "status" ? TopicKind::kStatus : TopicKind::kOta;
    out.factory_id = parts[1];
    out.device_id = parts[3];
  }
  return out;
}

}  // namespace tend::telemetry
