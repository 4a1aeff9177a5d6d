// Signed OTA model updates from the command line. Publisher side: `tend keygen`, `tend publish`
// (with an optional staged-rollout plan), `tend registry init|rotate-root|refresh|serve|control`.
// Device side: `tend ota check|status|rollback`.
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "agent/served_model.h"
#include "cli/commands.h"
#include "core/fs.h"
#include "core/log.h"
#include "fleet/console_db.h"
#include "fleet/rollout_control.h"
#include "optimize/onnx_util.h"
#include "ota/crypto.h"
#include "ota/fetch.h"
#include "ota/registry.h"
#include "ota/updater.h"

namespace tend::cli {
namespace {

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::vector<ota::KeyPair> ReadKeys(const std::vector<std::string>& paths) {
  if (paths.empty()) Die("no signing key given (--key)");
  std::vector<ota::KeyPair> keys;
  for (const auto& p : paths) keys.push_back(OrDie(ota::ReadPrivateKey(p)));
  return keys;
}

void Print(const nlohmann::json& j) { std::printf("%s\n", j.dump(2).c_str()); }

nlohmann::json SlotSummary(const std::optional<ota::ModelSlot>& s) {
  if (!s) return nullptr;
  return {{"version", s->version},
          {"file", s->file},
          {"sha256", s->sha256},
          {"length", s->length},
          {"installed", ota::FormatTime(s->installed_unix)},
          {"quality", s->quality < 0 ? nlohmann::json(nullptr) : nlohmann::json(s->quality)}};
}

// --- tend keygen -------------------------------------------------------------------------------

void RegisterKeygenCmd(CLI::App& app) {
  auto out = std::make_shared<std::string>();
  auto* cmd =
      app.add_subcommand("keygen", "Create an Ed25519 signing key: OUT.key (secret) and OUT.pub");
  cmd->add_option("--out,-o", *out, "Path prefix of the key files (OUT or OUT.key)")->required();
  cmd->callback([out] {
    // `--out publisher.key` names the secret key file itself: write publisher.key and
    // publisher.pub, not publisher.key.key (the next command says --key publisher.key).
    for (const char* ext : {".key", ".pub"}) {
      const std::string e = ext;
      if (out->size() > e.size() && out->compare(out->size() - e.size(), e.size(), e) == 0) {
        out->resize(out->size() - e.size());
      }
    }
    auto key = OrDie(ota::GenerateKeyPair());
    OrDie(ota::WriteKeyPair(key, *out + ".key", *out + ".pub"));
    std::printf("keyid %s\nsecret %s.key (mode 0600)\npublic %s.pub\n", key.keyid.c_str(),
                out->c_str(), out->c_str());
  });
}

// --- tend publish ------------------------------------------------------------------------------

// The model card's name (tend.name), or "" when the file has none (not ONNX, not a tend model).
std::string CardName(const std::string& path) {
  auto m = optimize::LoadModel(path);
  if (!m) return "";
  for (const auto& p : m->metadata_props()) {
    if (p.key() != "tend.name") continue;
    auto j = nlohmann::json::parse(p.value(), nullptr, false);
    return j.is_string() ? j.get<std::string>() : "";
  }
  return "";
}

struct PublishArgs {
  std::string model, name, registry;
  int64_t version = 0;
  std::vector<std::string> profiles, keys;
  double min_quality = 0;
  double expires_days = 365, timestamp_expires_days = 30;
  // Staged rollout: cumulative percents, soak per wave, abort rule.
  std::string waves, soak = "1h", wave_salt;
  int64_t abort_failed_percent = 20, abort_min_failed = 1;
};

void RegisterPublishCmd(CLI::App& app) {
  auto a = std::make_shared<PublishArgs>();
  auto* cmd = app.add_subcommand(
      "publish",
      "Add a model release to a registry directory: content-addressed file, signed metadata");
  cmd->add_option("model", a->model, "Model file (.onnx)")->required();
  cmd->add_option("--name", a->name,
                  "Model name devices ask for (default: tend.name from the model card)");
  cmd->add_option("--version", a->version, "Release version (integer, above every published one)")
      ->required();
  cmd->add_option("--profile", a->profiles, "Device profile(s) the release targets")->required();
  cmd->add_option("--key", a->keys, "Secret key file(s) of the targets/timestamp roles")
      ->required();
  cmd->add_option("--registry", a->registry, "Registry directory")->required();
  cmd->add_option("--min-quality", a->min_quality,
                  "Reference-set score a device must measure before it commits");
  cmd->add_option("--expires-days", a->expires_days, "Targets metadata lifetime");
  cmd->add_option("--timestamp-expires-days", a->timestamp_expires_days,
                  "Timestamp lifetime: re-sign with `tend registry refresh` before it runs out");
  cmd->add_option("--waves", a->waves,
                  "Staged rollout: cumulative percent of the fleet per wave, e.g. 5,25,100 "
                  "(devices install only when `tend registry control` opens their wave)");
  cmd->add_option("--soak", a->soak,
                  "Minimum time a wave runs before the next opens: one value or one per wave "
                  "(90, 30m, 2h, 1d)");
  cmd->add_option("--abort-failed-percent", a->abort_failed_percent,
                  "Abort the rollout when more than this % of an open wave refused or rolled back")
      ->check(CLI::Range(0, 100));
  cmd->add_option("--abort-min-failed", a->abort_min_failed,
                  "... and at least this many of its devices did")
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--wave-salt", a->wave_salt,
                  "Hash salt that picks the waves (default: the model name, so the same devices "
                  "are the canaries of every release)");
  cmd->callback([a] {
    const std::string card_name = CardName(a->model);
    if (a->name.empty()) {
      if (card_name.empty()) Die(a->model + ": no tend.name in the model card: give --name");
      a->name = card_name;
    } else if (!card_name.empty() && card_name != a->name) {
      std::fprintf(stderr,
                   "tend: warning: publishing %s as \"%s\" but its model card says \"%s\"; "
                   "devices fetch the name they are configured with (tend run --ota-name)\n",
                   a->model.c_str(), a->name.c_str(), card_name.c_str());
    }
    auto keys = ReadKeys(a->keys);
    int64_t now = UnixNow();
    if (!fs::Exists(a->registry + "/root.json")) {
      // First release: the given keys become the root of trust (threshold 1).
      OrDie(ota::WriteRoot(a->registry,
                           ota::MakeRoot(keys, 1, 1, now + static_cast<int64_t>(365 * ota::kDay)),
                           keys));
      std::fprintf(stderr, "tend: created %s/root.json; pin it on the devices\n",
                   a->registry.c_str());
    }
    ota::PublishOptions o;
    o.model_path = a->model;
    o.name = a->name;
    o.version = a->version;
    o.profiles = a->profiles;
    o.min_quality = a->min_quality;
    o.now = now;
    o.targets_expires_s = static_cast<int64_t>(a->expires_days * ota::kDay);
    o.timestamp_expires_s = static_cast<int64_t>(a->timestamp_expires_days * ota::kDay);
    if (o.targets_expires_s <= 0 || o.timestamp_expires_s <= 0) Die("expiry must be > 0 days");
    if (!a->waves.empty()) {
      o.rollout = OrDie(ota::MakeRolloutPlan(a->waves, a->soak, a->abort_failed_percent,
                                             a->abort_min_failed,
                                             a->wave_salt.empty() ? a->name : a->wave_salt));
    }
    auto t = OrDie(ota::Publish(a->registry, o, keys));
    Print({{"name", t.name},
           {"version", t.version},
           {"path", t.path},
           {"length", t.length},
           {"sha256", t.sha256},
           {"profiles", t.profiles},
           {"min_quality", t.min_quality},
           {"rollout", t.rollout}});
  });
}

// --- tend registry -----------------------------------------------------------------------------

// `tend registry control`: the rollout controller (src/fleet/rollout_control.h).
void RegisterRegistryControl(CLI::App& reg) {
  struct ControlArgs {
    std::string dir, db, expires = "10m", every = "30s";
    std::vector<std::string> keys;
    bool once = false;
  };
  auto ca = std::make_shared<ControlArgs>();
  auto* control = reg.add_subcommand(
      "control",
      "Rollout controller (publisher side): open waves of staged rollouts, relay operators' "
      "pins and rollbacks, and sign a short-lived control.json with the timestamp key");
  control->add_option("dir", ca->dir, "Registry directory")->required();
  control->add_option("--key", ca->keys, "Secret key file(s) of the timestamp role")->required();
  control->add_option("--db", ca->db, "Fleet database the console writes intents to")->required();
  control->add_option("--expires", ca->expires,
                      "Lifetime of each control.json: when the controller stops, waves stop "
                      "opening and pins hold once it runs out");
  control->add_option("--every", ca->every, "Re-sign this often (well inside --expires)");
  control->add_flag("--once", ca->once, "One tick, then exit (cron)");
  control->callback([ca] {
    fleet::ControllerOptions o;
    o.registry_dir = ca->dir;
    o.keys = ReadKeys(ca->keys);
    o.expires_s = OrDie(ota::ParseDuration(ca->expires, "--expires"));
    const int64_t every = OrDie(ota::ParseDuration(ca->every, "--every"));
    if (o.expires_s <= every) Die("--expires must be longer than --every");
    auto db = OrDie(fleet::ConsoleDb::Open(ca->db), "registry control");
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    for (;;) {
      auto r = fleet::RunControlOnce(o, *db);
      if (!r) {
        if (ca->once) Die(r.error(), 3);
        TEND_LOG_ERROR("control: {}", r.error().message);
      } else if (ca->once) {
        Print(ota::ToJson(r->control));
        return;
      }
      timespec wait{static_cast<time_t>(std::max<int64_t>(every, 1)), 0};
      if (sigtimedwait(&set, nullptr, &wait) > 0) return;
    }
  });
}

void RegisterRegistryCmd(CLI::App& app) {
  auto* reg = app.add_subcommand("registry", "Model registry: create, rotate keys, serve");
  reg->require_subcommand(1);

  struct InitArgs {
    std::string dir;
    std::vector<std::string> keys;
    int64_t threshold = 1;
    double expires_days = 365;
  };
  auto ia = std::make_shared<InitArgs>();
  auto* init = reg->add_subcommand("init", "Create root.json: the keys hold every role");
  init->add_option("dir", ia->dir, "Registry directory")->required();
  init->add_option("--key", ia->keys, "Secret key file(s)")->required();
  init->add_option("--threshold", ia->threshold, "Signatures needed per role");
  init->add_option("--expires-days", ia->expires_days, "Root lifetime");
  init->callback([ia] {
    if (fs::Exists(ia->dir + "/root.json")) Die(ia->dir + "/root.json exists: use rotate-root");
    auto keys = ReadKeys(ia->keys);
    auto root = ota::MakeRoot(keys, ia->threshold, 1,
                              UnixNow() + static_cast<int64_t>(ia->expires_days * ota::kDay));
    OrDie(ota::WriteRoot(ia->dir, root, keys));
    std::printf("%s/root.json: version 1, %zu key(s), threshold %lld\n", ia->dir.c_str(),
                keys.size(), static_cast<long long>(ia->threshold));
  });

  struct RotateArgs {
    std::string dir;
    std::vector<std::string> old_keys, new_keys;
    int64_t threshold = 1;
    double expires_days = 365;
  };
  auto ra = std::make_shared<RotateArgs>();
  auto* rot = reg->add_subcommand(
      "rotate-root", "Write the next root, signed by the current root keys and the new ones");
  rot->add_option("dir", ra->dir, "Registry directory")->required();
  rot->add_option("--old-key", ra->old_keys, "Secret key file(s) of the current root")->required();
  rot->add_option("--new-key", ra->new_keys, "Secret key file(s) of the new root")->required();
  rot->add_option("--threshold", ra->threshold, "Signatures needed per role in the new root");
  rot->add_option("--expires-days", ra->expires_days, "New root lifetime");
  rot->callback([ra] {
    auto old_keys = ReadKeys(ra->old_keys);
    auto new_keys = ReadKeys(ra->new_keys);
    std::string text = OrDie(fs::ReadFile(ra->dir + "/root.json"));
    auto env = OrDie(ota::ParseEnvelope(text, ra->dir + "/root.json"));
    auto cur = OrDie(ota::ParseRoot(env.signed_part, ra->dir + "/root.json"));
    auto next = ota::MakeRoot(new_keys, ra->threshold, cur.version + 1,
                              UnixNow() + static_cast<int64_t>(ra->expires_days * ota::kDay));
    std::vector<ota::KeyPair> signers = old_keys;
    signers.insert(signers.end(), new_keys.begin(), new_keys.end());
    OrDie(ota::WriteRoot(ra->dir, next, signers));
    std::printf(
        "%s/%lld.root.json written; now run `tend registry refresh %s --key NEW.key` (re-signs "
        "targets.json and timestamp.json with the new keys) or publish a release with them\n",
        ra->dir.c_str(), static_cast<long long>(next.version), ra->dir.c_str());
  });

  struct RefreshArgs {
    std::string dir;
    std::vector<std::string> keys;
    double expires_days = 30;
  };
  auto fa = std::make_shared<RefreshArgs>();
  auto* ref = reg->add_subcommand(
      "refresh", "Re-sign timestamp.json with a fresh expiry (and targets.json after rotate-root)");
  ref->add_option("dir", fa->dir, "Registry directory")->required();
  ref->add_option("--key", fa->keys,
                  "Secret key file(s) of the timestamp role (and of targets after rotate-root)")
      ->required();
  ref->add_option("--expires-days", fa->expires_days, "Timestamp lifetime");
  ref->callback([fa] {
    bool targets = OrDie(ota::RefreshTimestamp(fa->dir, ReadKeys(fa->keys), UnixNow(),
                                               static_cast<int64_t>(fa->expires_days * ota::kDay)));
    std::printf("%s%s/timestamp.json re-signed\n",
                targets ? (fa->dir + "/targets.json re-signed for the current root; ").c_str() : "",
                fa->dir.c_str());
  });

  RegisterRegistryControl(*reg);

  struct ServeArgs {
    std::string dir, host = "0.0.0.0";
    int port = 8080;
  };
  auto sa = std::make_shared<ServeArgs>();
  auto* serve = reg->add_subcommand(
      "serve", "Serve a registry directory over HTTP, with GET /models/{name}/latest?profile=P");
  serve->add_option("dir", sa->dir, "Registry directory")->required();
  serve->add_option("--port", sa->port, "TCP port (0: any free one)")->check(CLI::Range(0, 65535));
  serve->add_option("--host", sa->host, "Address to bind");
  serve->callback([sa] {
    // Block the stop signals before the server thread starts so that only sigwait sees them.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    auto server = OrDie(ota::RegistryServer::Start(sa->dir, sa->host, sa->port));
    std::printf("serving %s on http://%s:%d\n", sa->dir.c_str(), sa->host.c_str(), server->port());
    std::fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    server->Stop();
  });
}

// --- tend ota ----------------------------------------------------------------------------------

struct CheckArgs {
  std::string registry, model_dir, name, profile, root, device_id;
  double min_quality = 0;
  bool allow_unmeasured = false;
};

void RegisterOtaCmd(CLI::App& app) {
  auto* ota_cmd =
      app.add_subcommand("ota", "Device side of model updates: check, status, rollback");
  ota_cmd->require_subcommand(1);

  auto ca = std::make_shared<CheckArgs>();
  auto* check = ota_cmd->add_subcommand(
      "check", "Poll the registry once and install the newest verified release for this profile");
  check->add_option("--registry", ca->registry, "http://host:port[/prefix] or a directory")
      ->required();
  check->add_option("--model-dir", ca->model_dir, "Where models and ota_state.json live")
      ->required();
  check->add_option("--name", ca->name, "Model name")->required();
  check->add_option("--profile", ca->profile, "This device's profile")->required();
  check->add_option("--root", ca->root, "Pinned root.json (first run only)");
  check->add_option("--device-id", ca->device_id,
                    "This device's id (staged-rollout wave, pins, rollbacks; default: host name)");
  check->add_option("--min-quality", ca->min_quality, "Deployment threshold");
  check->add_flag("--allow-unmeasured", ca->allow_unmeasured,
                  "Install without a reference-set score (this command has no reference set; "
                  "the agent's updater measures one)");
  check->callback([ca] {
    std::unique_ptr<ota::Fetcher> fetcher;
    if (ca->registry.find("://") != std::string::npos) {
      fetcher = OrDie(ota::HttpFetcher::Create(ca->registry));
    } else {
      fetcher = OrDie(ota::DirFetcher::Create(ca->registry));
    }
    ota::UpdaterOptions o;
    o.model_dir = ca->model_dir;
    o.model_name = ca->name;
    o.profile = ca->profile;
    o.pinned_root_path = ca->root;
    o.device_id = ca->device_id;
    o.min_quality = ca->min_quality;
    o.allow_unmeasured_quality = ca->allow_unmeasured;
    o.allow_unmeasured_hint =
        "this command has no reference set: pass --allow-unmeasured to install it unmeasured "
        "(quality recorded as not measured), or let `tend run` with --ota-reference-normal/"
        "--ota-reference-anomalous install it";
    o.load_check = [](const std::string& path) -> Status {
      agent::ServeOptions so;
      so.warmup_runs = 1;
      TEND_ASSIGN_OR_RETURN(auto m, agent::ServedModel::Load(path, so));
      (void)m;
      return Ok();
    };
    auto updater = OrDie(ota::Updater::Create(o, std::move(fetcher)));
    auto r = updater->CheckOnce();
    if (!r) Die(r.error(), 3);
    Print(updater->StatusJson());
    if (r->outcome == ota::UpdateOutcome::kRejectedByGate)
      Die("update rolled back: " + r->message, 4);
  });

  auto status_dir = std::make_shared<std::string>();
  auto max_age_weeks = std::make_shared<double>(8);
  auto* status = ota_cmd->add_subcommand("status", "Installed, backup and trusted versions");
  status->add_option("--model-dir", *status_dir, "Model directory")->required();
  status->add_option("--max-age-weeks", *max_age_weeks, "Staleness alert threshold");
  status->callback([status_dir, max_age_weeks] {
    auto s = OrDie(ota::LoadState(*status_dir));
    int64_t now = std::max(UnixNow(), s.latest_time_seen);
    // The same fields as the agent's status (MQTT "ota" state, metrics), plus the slots and the
    // trust floors in full.
    nlohmann::json j =
        ota::StateStatusJson(s, now, static_cast<int64_t>(*max_age_weeks * 7 * ota::kDay));
    const int64_t age = j["model_age_s"];
    j["current"] = SlotSummary(s.current);
    j["backup"] = SlotSummary(s.backup);
    j["timestamp_version"] = s.timestamp_version;
    j["targets_version"] = s.targets_version;
    j["latest_time_seen"] = s.latest_time_seen ? ota::FormatTime(s.latest_time_seen) : "";
    j["model_age_days"] = age < 0 ? nlohmann::json(nullptr) : nlohmann::json(age / 86400.0);
    Print(j);
    if (j["stale"] == true) {
      std::fprintf(stderr, "tend: warning: no model received for more than %g weeks\n",
                   *max_age_weeks);
    }
  });

  auto rb_dir = std::make_shared<std::string>();
  auto rb_reason = std::make_shared<std::string>("operator request");
  auto* rollback = ota_cmd->add_subcommand("rollback", "Make the backup model current again");
  rollback->add_option("--model-dir", *rb_dir, "Model directory")->required();
  rollback->add_option("--reason", *rb_reason, "Recorded in the state");
  rollback->callback([rb_dir, rb_reason] {
    auto s = OrDie(ota::RollbackState(*rb_dir, *rb_reason, UnixNow()));
    std::printf(
        "rolled back to %s v%lld (%s); a running agent's updater picks it up within a "
        "second and swaps it in between two windows\n",
        s.model_name.c_str(), static_cast<long long>(s.current->version),
        (std::filesystem::path(*rb_dir) / s.current->file).c_str());
  });
}

}  // namespace

void RegisterKeygen(CLI::App& app) { RegisterKeygenCmd(app); }
void RegisterPublish(CLI::App& app) { RegisterPublishCmd(app); }
void RegisterRegistry(CLI::App& app) { RegisterRegistryCmd(app); }
void RegisterOta(CLI::App& app) { RegisterOtaCmd(app); }

}  // namespace tend::cli
