// Fuzz target: what a console client sends: "query string\nbody". The query goes through the device
// list's parameter parser and then filters, sorts and pages a small fleet; the body through the
// action body parsers. Properties: a page never holds more than its limit nor more than the total,
// and the total never exceeds the fleet.
#include <cctype>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "fleet/console_api.h"
#include "fuzz_util.h"

namespace {

using Json = nlohmann::json;
using namespace tend;

std::string Decode(const std::string& s) {  // %XX and '+' as a web server would
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size() &&
               std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
               std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// A small fleet to filter, sort and page.
std::shared_ptr<const fleet::FleetSnapshot> MakeFleet() {
  std::vector<fleet::DeviceSummary> devices;
  for (int i = 0; i < 40; ++i) {
    fleet::DeviceSummary s;
    s.device.device_id = "edge-" + std::to_string(i);
    s.device.factory_id = i % 2 ? "plant-a" : "plant-b";
    s.device.status = i % 3 ? "online" : "offline";
    s.device.has_ota = i % 4 != 0;
    s.device.ota.ota.state = i % 5 ? "serving" : "probation";
    s.device.ota.ota.current_version = i % 3;
    s.alerts_1h = i % 7;
    s.alerts_24h = i % 11;
    s.lines = {"line-" + std::to_string(i % 3)};
    s.assets = {"press-" + std::to_string(i)};
    if (i % 6 == 0) s.tags = {"canary"};
    s.health = i % 9 ? R"({"spool_depth": 12, "dropped": {"scores": 3}, "cpu_pct": 7.5})" : "{bad";
    devices.push_back(std::move(s));
  }
  return fleet::MakeSnapshot(std::move(devices), 1800000000000);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::shared_ptr<const fleet::FleetSnapshot> g_snap = MakeFleet();
  const std::string in(reinterpret_cast<const char*>(data), size);
  const size_t nl = in.find('\n');
  const std::string query = in.substr(0, nl),
                    body = nl == std::string::npos ? "" : in.substr(nl + 1);
  std::multimap<std::string, std::string> params;
  size_t pos = 0;
  while (pos <= query.size() && !query.empty()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string::npos) amp = query.size();
    const std::string kv = query.substr(pos, amp - pos);
    const size_t eq = kv.find('=');
    params.emplace(Decode(kv.substr(0, eq)),
                   eq == std::string::npos ? "" : Decode(kv.substr(eq + 1)));
    pos = amp + 1;
  }
  if (auto q = fleet::ParseDeviceQuery(params)) {
    Json page = fleet::ListDevices(*g_snap, *q);
    TEND_FUZZ_CHECK(page["total"].get<int64_t>() <= static_cast<int64_t>(g_snap->devices.size()));
    TEND_FUZZ_CHECK(static_cast<int64_t>(page["devices"].size()) <= q->limit);
    TEND_FUZZ_CHECK(static_cast<int64_t>(page["devices"].size()) <= page["total"].get<int64_t>());
  }
  if (auto b = fleet::ParseBody(body)) {
    TEND_FUZZ_CHECK(b->is_object());
    (void)fleet::OptionalText(*b, "reason", 256);
    (void)fleet::OptionalText(*b, "name", 128);
    (void)fleet::RequiredInt(*b, "max_version", 0, INT64_MAX);
    if (auto tags = fleet::OptionalTags(*b, "add")) {
      for (const auto& t : *tags) TEND_FUZZ_CHECK(fleet::CheckIdentifier(t, "tag").has_value());
    }
  }
  return 0;
}
