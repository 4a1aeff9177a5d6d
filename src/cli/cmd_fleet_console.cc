// `tend fleet serve` (the web console), `tend fleet token create|list|revoke` (its access
// tokens) and `tend fleet simulate` (a fleet's traffic for tests and scale measurements).
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "cli/commands.h"
#include "core/log.h"
#include "fleet/console_auth.h"
#include "fleet/console_db.h"
#include "fleet/console_server.h"
#include "fleet/simulate.h"
#include "ota/rollout.h"

namespace tend::cli {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Blocks SIGINT/SIGTERM in every thread started after this, and returns the set to wait on.
sigset_t BlockStopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

void RegisterFleetServe(CLI::App& fleet) {
  auto o = std::make_shared<fleet::ConsoleOptions>();
  o->db = "sqlite:fleet.db";
  auto ttl = std::make_shared<std::string>("8h");
  auto* serve = fleet.add_subcommand(
      "serve", "Web console and JSON API over the fleet database (tokens: tend fleet token)");
  serve->add_option("--db", o->db, "sqlite:PATH (default sqlite:fleet.db) or postgresql://...");
  serve->add_option("--port", o->port, "TCP port (0: any free one)")->check(CLI::Range(0, 65535));
  serve->add_option("--host", o->host, "Address to bind (default 127.0.0.1)");
  serve->add_option("--cert", o->cert_file, "TLS certificate (PEM): serve HTTPS only");
  serve->add_option("--key", o->key_file, "TLS private key (PEM)");
  serve->add_option("--session-ttl", *ttl, "Browser sessions end after this (30m, 8h, 1d)");
  serve->add_option("--snapshot-max-age", o->snapshot_max_age_s,
                    "The device list is refreshed in the background this often (0: on every request)");
  serve->add_option("--evidence-dir", o->evidence_dir,
                    "Evidence images mirrored from devices, as DIR/<device_id>/<file>");
  serve->callback([o, ttl] {
    o->session_ttl_s = OrDie(ota::ParseDuration(*ttl, "--session-ttl"));
    sigset_t set = BlockStopSignals();
    auto server = OrDie(fleet::ConsoleServer::Start(*o), "fleet serve");
    std::printf("console on %s://%s:%d/\n", server->tls() ? "https" : "http", o->host.c_str(),
                server->port());
    std::fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    server->Stop();
  });
}

void RegisterFleetToken(CLI::App& fleet) {
  auto* token = fleet.add_subcommand("token", "Access tokens of the fleet console");
  token->require_subcommand(1);
  struct CreateArgs {
    std::string db = "sqlite:fleet.db", role, name, expires;
  };
  auto a = std::make_shared<CreateArgs>();
  auto* create =
      token->add_subcommand("create", "Print a new bearer token (stored hashed; shown this once)");
  create->add_option("--db", a->db, "sqlite:PATH or postgresql://...");
  create->add_option("--role", a->role, "viewer (read) or operator (read and act)")->required();
  create->add_option("--name", a->name, "Who or what holds it (audit log); default: the role");
  create->add_option("--expires", a->expires, "Lifetime (30d, 12h); default: until revoked");
  create->callback([a] {
    auto role = OrDie(fleet::ParseRole(a->role));
    const int64_t ttl = a->expires.empty() ? 0 : OrDie(ota::ParseDuration(a->expires, "--expires"));
    auto db = OrDie(fleet::ConsoleDb::Open(a->db), "fleet token");
    auto t =
        OrDie(fleet::CreateToken(*db, a->name.empty() ? a->role : a->name, role, ttl, NowMs()));
    std::printf("%s\n", t.token.c_str());
    std::fprintf(stderr, "tend: token for \"%s\" (%s) created; it is not shown again\n",
                 t.row.name.c_str(), t.row.role.c_str());
  });
  auto ldb = std::make_shared<std::string>("sqlite:fleet.db");
  auto* list = token->add_subcommand("list", "Tokens (names, roles, state; never the secrets)");
  list->add_option("--db", *ldb, "sqlite:PATH or postgresql://...");
  list->callback([ldb] {
    auto db = OrDie(fleet::ConsoleDb::Open(*ldb), "fleet token");
    for (const auto& t : OrDie(db->Tokens())) {
      std::printf(
          "%-24s %-9s %s%s\n", t.name.c_str(), t.role.c_str(), t.revoked ? "revoked" : "active",
          t.expires_ms > 0 ? (" until " + std::to_string(t.expires_ms / 1000)).c_str() : "");
    }
  });
  auto rdb = std::make_shared<std::string>("sqlite:fleet.db");
  auto rname = std::make_shared<std::string>();
  auto* revoke = token->add_subcommand("revoke", "Revoke every token of a name and its sessions");
  revoke->add_option("--db", *rdb, "sqlite:PATH or postgresql://...");
  revoke->add_option("--name", *rname, "Token name")->required();
  revoke->callback([rdb, rname] {
    auto db = OrDie(fleet::ConsoleDb::Open(*rdb), "fleet token");
    const int64_t n = OrDie(db->RevokeToken(*rname));
    if (n == 0) Die("no active token named \"" + *rname + "\"");
    std::printf("revoked %lld token(s) named %s\n", static_cast<long long>(n), rname->c_str());
  });
}

std::vector<int64_t> Versions(const std::string& csv) {
  std::vector<int64_t> out;
  std::stringstream ss(csv);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty() || item.find_first_not_of("0123456789") != std::string::npos) {
      Die("versions must be a comma-separated list of numbers, got \"" + csv + "\"");
    }
    out.push_back(std::stoll(item));
  }
  return out;
}

void RegisterFleetSimulate(CLI::App& fleet) {
  auto o = std::make_shared<fleet::SimulateOptions>();
  auto misbehave = std::make_shared<std::string>(), refuse = std::make_shared<std::string>();
  auto stats_every = std::make_shared<double>(10);
  auto* sim = fleet.add_subcommand(
      "simulate", "Publish a fleet's traffic to a broker: scores, alerts, health, status, OTA");
  sim->add_option("--mqtt", o->broker_url, "Broker URL (mqtt://host:port or mqtts://...)")
      ->required();
  sim->add_option("--devices", o->devices, "Number of devices")->check(CLI::Range(1, 100000));
  sim->add_option("--rate", o->rate, "Traffic multiplier (1: 18 scores/min, health every 15 s)");
  sim->add_option("--duration", o->duration_s, "Seconds to run (0: until Ctrl-C)");
  sim->add_option("--prefix", o->prefix, "Device id prefix (<prefix>-0001...)");
  sim->add_option("--factories", o->factories, "Factories the devices are spread over");
  sim->add_option("--lines", o->lines, "Lines per factory");
  sim->add_option("--alert-fraction", o->alert_fraction,
                  "Share of a healthy device's strokes that alert");
  sim->add_option("--wearing", o->wearing_devices, "Devices with a worn die (default 2 %)");
  sim->add_option("--connections", o->connections, "MQTT connections the devices share");
  sim->add_option("--mqtt-version", o->mqtt_version, "4 (3.1.1) or 5")
      ->check(CLI::IsMember({4, 5}));
  sim->add_option("--ca", o->ca_file, "CA certificate (mqtts)");
  sim->add_option("--cert", o->cert_file, "Client certificate (mqtts)");
  sim->add_option("--key", o->key_file, "Client private key (mqtts)");
  sim->add_option("--model-name", o->model_name, "Model name the devices run");
  sim->add_option("--model-version", o->model_version, "Version reported without --registry");
  sim->add_option("--registry", o->registry,
                  "OTA registry (directory or http://): every device runs a real updater");
  sim->add_option("--root", o->root_path, "Pinned root.json for the simulated devices");
  sim->add_option("--state-dir", o->state_dir, "Where the simulated devices keep their models");
  sim->add_option("--profile", o->profile, "Device profile");
  sim->add_option("--ota-interval", o->ota_interval_s, "Seconds between OTA checks");
  sim->add_option("--misbehave-versions", *misbehave,
                  "Releases that alert-storm once installed (rolled back by the device)");
  sim->add_option("--misbehave-after", o->misbehave_after_s, "Seconds before the device notices");
  sim->add_option("--refuse-versions", *refuse, "Releases the devices' quality gate refuses");
  sim->add_option("--seed", o->seed, "Random seed");
  sim->add_option("--stats-every", *stats_every, "Log counters every N seconds");
  sim->callback([o, misbehave, refuse, stats_every] {
    if (!misbehave->empty()) o->misbehave_versions = Versions(*misbehave);
    if (!refuse->empty()) o->refuse_versions = Versions(*refuse);
    sigset_t set = BlockStopSignals();
    auto sim = OrDie(fleet::Simulator::Start(*o), "fleet simulate");
    auto print = [&] {
      auto s = sim->stats();
      std::printf(
          "{\"elapsed_s\":%.1f,\"scores\":%lld,\"alerts\":%lld,\"health\":%lld,"
          "\"states\":%lld,\"installs\":%lld,\"rollbacks\":%lld,\"errors\":%lld,"
          "\"msgs_per_s\":%.1f}\n",
          s.elapsed_s, static_cast<long long>(s.scores), static_cast<long long>(s.alerts),
          static_cast<long long>(s.health), static_cast<long long>(s.states),
          static_cast<long long>(s.installs), static_cast<long long>(s.rollbacks),
          static_cast<long long>(s.publish_errors),
          s.elapsed_s > 0 ? (s.scores + s.alerts + s.health) / s.elapsed_s : 0.0);
      std::fflush(stdout);
    };
    auto last = std::chrono::steady_clock::now();
    for (;;) {
      timespec wait{0, 200 * 1000 * 1000};
      if (sigtimedwait(&set, nullptr, &wait) > 0 || sim->Done()) break;
      if (*stats_every > 0 &&
          std::chrono::steady_clock::now() - last > std::chrono::duration<double>(*stats_every)) {
        print();
        last = std::chrono::steady_clock::now();
      }
    }
    sim->Stop();
    print();
  });
}

}  // namespace

void RegisterFleetConsole(CLI::App& fleet) {
  RegisterFleetServe(fleet);
  RegisterFleetToken(fleet);
  RegisterFleetSimulate(fleet);
}

}  // namespace tend::cli
