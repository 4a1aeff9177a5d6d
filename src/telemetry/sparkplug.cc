#include "telemetry/sparkplug.h"

#include <nlohmann/json.hpp>

#include "core/json.h"

namespace tend::sparkplug {
namespace {

// Every metric carries its datatype, in data messages too (the specification's SHOULD NOT there
// is a recommendation): stateless consumers such as Eclipse Tahu's JavaScript codec and Node-RED
// cannot decode a value without it.
pb::Metric* Add(pb::Payload& p, const char* name, pb::DataType type, uint64_t ts) {
  pb::Metric* m = p.add_metrics();
  m->set_name(name);
  m->set_timestamp(ts);
  m->set_datatype(type);
  return m;
}

void AddDeviceMetrics(pb::Payload& p, const DeviceValues& v, const DeviceValues* before) {
  const uint64_t ts = v.timestamp_ms;
  if (!before || before->score != v.score) {
    Add(p, kAnomalyScore, pb::Float, ts)->set_float_value(v.score);
  }
  if (!before || before->severity != v.severity) {
    Add(p, kSeverity, pb::String, ts)->set_string_value(v.severity);
  }
  if (!before || before->is_alert != v.is_alert) {
    Add(p, kIsAlert, pb::Boolean, ts)->set_boolean_value(v.is_alert);
  }
  if (!before || before->alert_count != v.alert_count) {
    Add(p, kAlertCount, pb::UInt64, ts)->set_long_value(v.alert_count);
  }
  if (!before || before->model_name != v.model_name) {
    Add(p, kModelName, pb::String, ts)->set_string_value(v.model_name);
  }
  if (!before || before->model_version != v.model_version) {
    Add(p, kModelVersion, pb::String, ts)->set_string_value(v.model_version);
  }
  if (!before || before->latency_ms != v.latency_ms) {
    Add(p, kLatency, pb::Double, ts)->set_double_value(v.latency_ms);
  }
  if (!before || before->deadline_misses != v.deadline_misses) {
    Add(p, kDeadlineMisses, pb::UInt64, ts)->set_long_value(v.deadline_misses);
  }
}

}  // namespace

Status ValidateId(const char* what, const std::string& id) {
  if (id.empty()) return Fail(Error::Invalid(std::string("Sparkplug ") + what + " is empty"));
  if (id.find_first_of("+/#") != std::string::npos) {
    return Fail(Error::Invalid(std::string("Sparkplug ") + what + " '" + id +
                               "' contains '+', '/' or '#'"));
  }
  // UTF-8: reject control characters and malformed sequences cheaply via nlohmann's checker.
  try {
    (void)nlohmann::json(id).dump();
  } catch (const nlohmann::json::exception&) {
    return Fail(Error::Invalid(std::string("Sparkplug ") + what + " is not valid UTF-8"));
  }
  return Ok();
}

std::string Topics::Node(const char* type) const {
  return std::string(kNamespace) + "/" + group + "/" + type + "/" + node;
}
std::string Topics::Device(const char* type, const std::string& device) const {
  return Node(type) + "/" + device;
}
std::string StateTopic(const std::string& host_id) {
  return std::string(kNamespace) + "/STATE/" + host_id;
}

pb::Payload NDeath(int64_t bd_seq, uint64_t now_ms) {
  pb::Payload p;
  p.set_timestamp(now_ms);
  Add(p, kBdSeq, pb::Int64, now_ms)->set_long_value(static_cast<uint64_t>(bd_seq));
  return p;
}

pb::Payload NBirth(int64_t bd_seq, uint64_t seq, uint64_t now_ms) {
  pb::Payload p;
  p.set_timestamp(now_ms);
  p.set_seq(seq);
  Add(p, kBdSeq, pb::Int64, now_ms)->set_long_value(static_cast<uint64_t>(bd_seq));
  Add(p, kRebirth, pb::Boolean, now_ms)->set_boolean_value(false);
  return p;
}

pb::Payload DBirth(const DeviceValues& v, uint64_t seq, uint64_t now_ms) {
  pb::Payload p;
  p.set_timestamp(now_ms);
  p.set_seq(seq);
  DeviceValues stamped = v;
  if (stamped.timestamp_ms == 0) stamped.timestamp_ms = now_ms;
  AddDeviceMetrics(p, stamped, nullptr);
  return p;
}

pb::Payload DData(const DeviceValues& now, const DeviceValues* before, bool historical) {
  pb::Payload p;
  AddDeviceMetrics(p, now, before);
  if (historical) {
    for (auto& m : *p.mutable_metrics()) m.set_is_historical(true);
  }
  return p;
}

pb::Payload DDeath(uint64_t seq, uint64_t now_ms) {
  pb::Payload p;
  p.set_timestamp(now_ms);
  p.set_seq(seq);
  return p;
}

Result<std::string> Restamp(std::string_view stored, uint64_t seq, uint64_t now_ms) {
  pb::Payload p;
  if (!p.ParseFromArray(stored.data(), static_cast<int>(stored.size()))) {
    return Fail(Error::Corrupt("Sparkplug: a spooled payload does not parse"));
  }
  p.set_seq(seq);
  p.set_timestamp(now_ms);
  return p.SerializeAsString();
}

Result<NodeCommand> DecodeNodeCommand(std::string_view bytes) {
  if (bytes.size() > kMaxCommandBytes) {
    return Fail(Error::Invalid("NCMD: " + std::to_string(bytes.size()) + " bytes is too large"));
  }
  pb::Payload p;
  if (!p.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return Fail(Error::Invalid("NCMD: not a Sparkplug B payload (" + std::to_string(bytes.size()) +
                               " bytes that do not parse as protobuf)"));
  }
  if (p.metrics_size() == 0) return Fail(Error::Invalid("NCMD: no metrics"));
  NodeCommand cmd;
  for (const auto& m : p.metrics()) {
    if (!m.has_name()) {
      cmd.ignored.push_back("alias " + std::to_string(m.alias()));
      continue;
    }
    if (m.name() != kRebirth) {
      cmd.ignored.push_back(m.name());
      continue;
    }
    if (m.value_case() != pb::Metric::kBooleanValue) {
      return Fail(Error::Invalid(std::string("NCMD: '") + kRebirth + "' is not a boolean"));
    }
    cmd.rebirth = cmd.rebirth || m.boolean_value();
  }
  return cmd;
}

Result<HostState> DecodeHostState(std::string_view json) {
  // From the broker, i.e. from anyone who may publish there: bounded like all outside JSON.
  auto parsed = tend::json::ParseJson(json, "STATE", {64 << 10, 8});
  if (!parsed || !parsed->is_object()) {
    return Fail(Error::Invalid("STATE: payload is not a JSON object"));
  }
  const nlohmann::json& j = *parsed;
  auto online = j.find("online");
  auto ts = j.find("timestamp");
  if (online == j.end() || !online->is_boolean()) {
    return Fail(Error::Invalid("STATE: 'online' missing or not a boolean"));
  }
  if (ts == j.end() || !ts->is_number_integer()) {
    return Fail(Error::Invalid("STATE: 'timestamp' missing or not an integer"));
  }
  return HostState{online->get<bool>(), ts->get<int64_t>()};
}

}  // namespace tend::sparkplug
