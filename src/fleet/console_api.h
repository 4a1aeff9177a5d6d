// The fleet console's JSON API without the HTTP around it: the device list (filter, sort, page
// over a snapshot of the fleet), a device's page, the rollouts with each wave's progress, and
// the parsing of every request parameter and body (outside input: bounded, checked, an error
// names the field). console_server.cc maps these onto routes.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"
#include "fleet/console_db.h"
#include "fleet/rollout_control.h"

namespace tend::fleet {

// One device, prepared once per snapshot: the figures the list filters and sorts on, and the
// JSON object it returns.
struct DeviceView {
  DeviceSummary summary;
  int64_t spool_backlog = -1, spool_dropped = -1;  // -1: unknown (no health message yet)
  double cpu_pct = -1, temp_c = -1;
  nlohmann::json health = nullptr;      // the latest health payload
  nlohmann::json thresholds = nullptr;  // {"LOW","MEDIUM","HIGH"} when the device sent them
  nlohmann::json json;                  // what GET /api/devices returns for it
};

// The whole fleet at one moment (the console refreshes it at most every few seconds).
struct FleetSnapshot {
  int64_t taken_ms = 0;
  std::vector<DeviceView> devices;
  std::map<std::string, size_t> index;  // device id -> position
  const DeviceView* Find(const std::string& id) const;
};
std::shared_ptr<const FleetSnapshot> MakeSnapshot(std::vector<DeviceSummary> devices,
                                                  int64_t now_ms);

struct DeviceQuery {
  std::string q, factory, line, asset, tag, status, ota;
  std::string sort = "device_id";
  bool desc = false;
  int64_t offset = 0, limit = 50;
};
// From URL parameters: unknown sort keys, negative offsets and limits above 1,000 are errors.
Result<DeviceQuery> ParseDeviceQuery(const std::multimap<std::string, std::string>& params);
bool Matches(const DeviceView& d, const DeviceQuery& q);
// {"total","offset","limit","taken","devices":[...]}
nlohmann::json ListDevices(const FleetSnapshot& snap, const DeviceQuery& q);

// {"rollouts":[{name, version, state, reason, plan, waves:[{percent, soak_s, opened, open,
// devices, installed, failed, pending}], intent, control_version, updated}]}
nlohmann::json RolloutsJson(const std::vector<RolloutStatusRow>& statuses,
                            const std::vector<RolloutIntent>& intents, const FleetSnapshot& snap);
// The waves a device belongs to in each rollout of its model.
nlohmann::json DeviceRolloutsJson(const DeviceView& d, const std::vector<RolloutStatusRow>& rs);

// Request bodies of actions (JSON objects, at most 64 KiB).
Result<nlohmann::json> ParseBody(const std::string& body);
Result<std::string> OptionalText(const nlohmann::json& body, const char* key, size_t max_len);
Result<int64_t> RequiredInt(const nlohmann::json& body, const char* key, int64_t lo, int64_t hi);
Result<std::vector<std::string>> OptionalTags(const nlohmann::json& body, const char* key);
// Device ids, model names and tags in URLs and bodies: 1-128 printable characters.
Status CheckIdentifier(const std::string& s, const std::string& what);

}  // namespace tend::fleet
