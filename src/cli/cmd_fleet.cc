// `tend fleet ingest|status|alerts|ota`: the cloud side of telemetry (see src/fleet/).
#include <csignal>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/commands.h"
#include "core/json.h"
#include "core/log.h"
#include "fleet/ingest.h"
#include "fleet/store.h"
#include "telemetry/payload.h"

namespace tend::cli {
namespace {

volatile std::sig_atomic_t g_fleet_stop = 0;
void OnFleetSignal(int) { g_fleet_stop = 1; }

std::string FormatMs(int64_t ms) {
  if (ms <= 0) return "-";
  return telemetry::FormatIso8601(
      std::chrono::system_clock::time_point{std::chrono::milliseconds(ms)});
}

// --since accepts ISO-8601 UTC, or a relative "30m" / "2h" / "7d" before now.
Result<int64_t> ParseSince(const std::string& s) {
  if (s.empty()) return int64_t{0};
  char unit = s.back();
  if ((unit == 's' || unit == 'm' || unit == 'h' || unit == 'd') && s.size() > 1 &&
      s.find_first_not_of("0123456789") == s.size() - 1) {
    int64_t n = std::stoll(s.substr(0, s.size() - 1));
    int64_t mult = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600 : 86400;
    auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
    return now - n * mult * 1000;
  }
  auto r = telemetry::ParseIso8601Ms(s);
  if (!r) return Fail(Error::Invalid("--since '" + s + "': expected ISO-8601 UTC or 30m/2h/7d"));
  return *r;
}

// `tend fleet ingest`: subscribe (shared) and store every device message.
void RegisterFleetIngest(CLI::App* fleet) {
  auto* ingest =
      fleet->add_subcommand("ingest", "Subscribe (shared) and store every device message");
  auto io = std::make_shared<fleet::IngestOptions>();
  auto db = std::make_shared<std::string>("sqlite:fleet.db");
  auto stats_every = std::make_shared<double>(0);
  ingest->add_option("--mqtt", io->broker_url, "Broker URL (mqtt://host:port or mqtts://...)")
      ->required();
  ingest->add_option("--group", io->group,
                     "Shared-subscription group; instances in one group split the traffic "
                     "(\"\" = plain subscription)");
  ingest->add_option("--db", *db, "sqlite:PATH (default sqlite:fleet.db) or postgresql://...");
  ingest->add_option("--client-id", io->client_id, "MQTT client id (default fleet_<group>_<pid>)");
  ingest->add_option("--mqtt-version", io->mqtt_version, "4 (3.1.1) or 5")
      ->check(CLI::IsMember({4, 5}));
  ingest->add_option("--ca", io->ca_file, "CA certificate to verify the broker (mqtts)");
  ingest->add_option("--cert", io->cert_file, "Client certificate (mqtts)");
  ingest->add_option("--key", io->key_file, "Client private key (mqtts)");
  ingest->add_option("--max-payload", io->max_payload_bytes, "Largest accepted payload in bytes");
  ingest->add_option("--stats-every", *stats_every, "Log counters every N seconds (0 = at exit)");
  ingest->add_option("--batch-ms", io->batch_ms,
                     "Store messages in one transaction per this many ms (0: one per message)");
  ingest->add_option("--batch-max", io->batch_max, "... or per this many messages");
  ingest->add_option("--max-clock-skew", io->max_clock_skew_ms,
                     "Refuse device timestamps more than this many ms ahead (default 600000)");
  ingest->callback([io, db, stats_every] {
    auto store = OrDie(fleet::OpenFleetStore(*db), "fleet ingest");
    auto ing = OrDie(fleet::Ingest::Start(*io, std::move(store)), "fleet ingest");
    std::signal(SIGINT, OnFleetSignal);
    std::signal(SIGTERM, OnFleetSignal);
    auto last = std::chrono::steady_clock::now();
    auto print = [&] {
      auto s = ing->stats();
      TEND_LOG_INFO(
          "fleet: received {} stored {} duplicates {} malformed: too_large {} bad_json {} "
          "wrong_type {} unknown_topic {} bad_id {} bad_timestamp {}; store errors {}; "
          "duplicate device ids {}; batches {} queued {} dropped (writer behind) {}",
          s.received, s.stored, s.duplicates, s.too_large, s.bad_json, s.wrong_type,
          s.unknown_topic, s.bad_id, s.bad_timestamp, s.store_errors, s.duplicate_device_ids,
          s.batches, s.queued, s.batch_dropped);
    };
    while (!g_fleet_stop) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (*stats_every > 0 &&
          std::chrono::steady_clock::now() - last > std::chrono::duration<double>(*stats_every)) {
        print();
        last = std::chrono::steady_clock::now();
      }
    }
    ing->Stop();
    print();
  });
}

// `tend fleet status`: one line (or JSON object) per device.
void RegisterFleetStatus(CLI::App* fleet) {
  auto* status = fleet->add_subcommand(
      "status", "Devices: online/offline, last seen, model version, OTA state");
  auto sdb = std::make_shared<std::string>("sqlite:fleet.db");
  auto sjson = std::make_shared<bool>(false);
  status->add_option("--db", *sdb, "sqlite:PATH or postgresql://...");
  status->add_flag("--json", *sjson, "One JSON object per device per line");
  status->callback([sdb, sjson] {
    auto store = OrDie(fleet::OpenFleetStore(*sdb), "fleet status");
    auto devices = OrDie(store->Devices(), "fleet status");
    if (!*sjson) {
      std::printf("%-20s %-12s %-8s %-25s %-25s %-8s %-5s %-10s %-5s %s\n", "DEVICE", "FACTORY",
                  "STATUS", "LAST SEEN", "STATUS SINCE", "MODEL", "OTA", "OTA STATE", "STALE",
                  "LAST ROLLBACK");
    }
    for (const auto& d : devices) {
      const fleet::OtaFields& o = d.ota.ota;
      if (*sjson) {
        nlohmann::json j = {{"device_id", d.device_id},
                            {"factory_id", d.factory_id},
                            {"status", d.status},
                            {"last_seen", FormatMs(d.last_seen_ms)},
                            {"status_since", FormatMs(d.status_ms)},
                            {"model_version", d.model_version}};
        // The latest OTA state the device reported; null when it never sent one.
        j["ota"] = nullptr;
        if (d.has_ota) {
          j["ota"] = {{"timestamp", d.ota.timestamp},
                      {"event", o.event},
                      {"model", o.model},
                      {"state", o.state},
                      {"current_version", o.current_version},
                      {"backup_version", o.backup_version},
                      {"highest_version", o.highest_version},
                      {"in_probation", o.in_probation},
                      {"stale", o.stale},
                      {"model_age_s", o.model_age_s},
                      {"rollbacks", o.rollbacks},
                      {"last_rollback_reason", o.last_rollback_reason}};
        }
        std::printf("%s\n", j.dump().c_str());
      } else {
        std::string ota_version = d.has_ota ? "v" + std::to_string(o.current_version) : "-";
        std::printf("%-20s %-12s %-8s %-25s %-25s %-8s %-5s %-10s %-5s %s\n", d.device_id.c_str(),
                    d.factory_id.c_str(), d.status.empty() ? "unknown" : d.status.c_str(),
                    FormatMs(d.last_seen_ms).c_str(), FormatMs(d.status_ms).c_str(),
                    d.model_version.empty() ? "-" : d.model_version.c_str(), ota_version.c_str(),
                    d.has_ota ? o.state.c_str() : "-",
                    !d.has_ota ? "-"
                    : o.stale  ? "yes"
                               : "no",
                    o.last_rollback_reason.empty() ? "-" : o.last_rollback_reason.c_str());
      }
    }
  });
}

// `tend fleet alerts`: the alerts ingest stored, oldest first.
void RegisterFleetAlerts(CLI::App* fleet) {
  auto* alerts = fleet->add_subcommand("alerts", "Alerts stored by ingest, oldest first");
  auto adb = std::make_shared<std::string>("sqlite:fleet.db");
  auto since = std::make_shared<std::string>();
  auto limit = std::make_shared<int64_t>(1000);
  auto ajson = std::make_shared<bool>(false);
  alerts->add_option("--db", *adb, "sqlite:PATH or postgresql://...");
  alerts->add_option("--since", *since, "ISO-8601 UTC time, or 30m / 2h / 7d ago");
  alerts->add_option("--limit", *limit, "At most this many rows");
  alerts->add_flag("--json", *ajson, "One JSON object per alert per line");
  alerts->callback([adb, since, limit, ajson] {
    int64_t since_ms = OrDie(ParseSince(*since));
    auto store = OrDie(fleet::OpenFleetStore(*adb), "fleet alerts");
    auto rows = OrDie(store->Alerts(since_ms, *limit), "fleet alerts");
    if (!*ajson) {
      std::printf("%-25s %-16s %-24s %-7s %-8s %s\n", "TIMESTAMP", "DEVICE", "ASSET", "SCORE",
                  "SEVERITY", "TOP SENSORS");
    }
    for (const auto& a : rows) {
      if (*ajson) {
        nlohmann::json j = {{"timestamp", a.timestamp},
                            {"msg_id", a.msg_id},
                            {"device_id", a.device_id},
                            {"factory_id", a.factory_id},
                            {"line_id", a.line_id},
                            {"asset_id", a.asset_id},
                            {"severity", a.severity},
                            {"model_version", a.model_version},
                            {"seq", a.seq}};
        j["anomaly_score"] = a.has_score ? nlohmann::json(a.anomaly_score) : nlohmann::json();
        auto top = tend::json::ParseJson(a.top_sensors, "top_sensors");
        j["top_sensors"] = top ? std::move(*top) : nlohmann::json();
        std::printf("%s\n", j.dump().c_str());
      } else {
        std::printf("%-25s %-16s %-24s %-7.4f %-8s %s\n", a.timestamp.c_str(), a.device_id.c_str(),
                    (a.line_id + "/" + a.asset_id).c_str(), a.anomaly_score, a.severity.c_str(),
                    a.top_sensors.c_str());
      }
    }
  });
}

// `tend fleet ota`: the OTA events devices reported, oldest first.
void RegisterFleetOta(CLI::App* fleet) {
  auto* ota = fleet->add_subcommand(
      "ota", "OTA events devices reported (installs, refusals, rollbacks...), oldest first");
  auto odb = std::make_shared<std::string>("sqlite:fleet.db");
  auto osince = std::make_shared<std::string>();
  auto oevent = std::make_shared<std::string>();
  auto olimit = std::make_shared<int64_t>(1000);
  auto ojson = std::make_shared<bool>(false);
  ota->add_option("--db", *odb, "sqlite:PATH or postgresql://...");
  ota->add_option("--since", *osince, "ISO-8601 UTC time, or 30m / 2h / 7d ago");
  ota->add_option("--event", *oevent,
                  "Only this event (startup, installed, refused, rolled_back, changed, "
                  "probation_ended, stale)");
  ota->add_option("--limit", *olimit, "At most this many rows");
  ota->add_flag("--json", *ojson, "One JSON object per event per line");
  ota->callback([odb, osince, oevent, olimit, ojson] {
    int64_t since_ms = OrDie(ParseSince(*osince));
    auto store = OrDie(fleet::OpenFleetStore(*odb), "fleet ota");
    auto rows = OrDie(store->OtaEvents(since_ms, *oevent, *olimit), "fleet ota");
    if (!*ojson) {
      std::printf("%-25s %-16s %-16s %-20s %-7s %-7s %s\n", "TIMESTAMP", "DEVICE", "EVENT", "MODEL",
                  "VERSION", "BACKUP", "REASON");
    }
    for (const auto& e : rows) {
      if (*ojson) {
        nlohmann::json j = {{"timestamp", e.timestamp},
                            {"msg_id", e.msg_id},
                            {"device_id", e.device_id},
                            {"factory_id", e.factory_id},
                            {"event", e.event},
                            {"model", e.model},
                            {"current_version", e.current_version},
                            {"backup_version", e.backup_version},
                            {"reason", e.reason}};
        std::printf("%s\n", j.dump().c_str());
      } else {
        std::printf("%-25s %-16s %-16s %-20s v%-6lld v%-6lld %s\n", e.timestamp.c_str(),
                    e.device_id.c_str(), e.event.c_str(), e.model.empty() ? "-" : e.model.c_str(),
                    static_cast<long long>(e.current_version),
                    static_cast<long long>(e.backup_version),
                    e.reason.empty() ? "-" : e.reason.c_str());
      }
    }
  });
}

}  // namespace

void RegisterFleet(CLI::App& app) {
  auto* fleet = app.add_subcommand("fleet", "Cloud side: ingest device telemetry, query the fleet");
  fleet->require_subcommand(1);
  RegisterFleetConsole(*fleet);
  RegisterFleetIngest(fleet);
  RegisterFleetStatus(fleet);
  RegisterFleetAlerts(fleet);
  RegisterFleetOta(fleet);
}

}  // namespace tend::cli
