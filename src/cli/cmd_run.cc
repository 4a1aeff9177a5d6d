// `tend run`: the agent. The flags and the TOML config (--config) become a runtime::RunSpec
// through the setting definitions of the registry (each setting declared once, with its type,
// default, range, flag and help); src/runtime builds and runs the agent; this file parses and
// prints. SIGINT/SIGTERM finish the window in flight and flush; SIGHUP reloads the models.
#include <fmt/format.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/common.h"
#include "runtime/runtime.h"

namespace tend::cli {
namespace {

std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};

// The first SIGINT/SIGTERM asks for a clean stop (the runtime says what it waits for); a second
// one means "now": the process ends at once (async-signal-safe: write and _exit only).
extern "C" void OnSignal(int sig) {
  if (sig == SIGHUP) {
    g_reload.store(true);
    return;
  }
  if (g_stop.exchange(true)) {
    static const char kMsg[] = "\ntend: second stop signal: exiting now, without flushing\n";
    ssize_t ignored = ::write(STDERR_FILENO, kMsg, sizeof kMsg - 1);
    (void)ignored;
    ::_exit(130);
  }
}

void InstallSignalHandlers() {
  // Before anything is loaded: a supervisor's SIGTERM or SIGHUP during start-up (model load,
  // warm-up) must not kill the process; a stop or reload requested that early is honoured once
  // running.
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
}

struct RunCli {
  std::unique_ptr<runtime::Registry> registry;
  std::string config, summary_json;
  struct Flag {
    const SettingDef* def = nullptr;
    CLI::Option* option = nullptr;
    std::string text;
    std::vector<std::string> texts;
    bool on = false;
  };
  std::vector<std::unique_ptr<Flag>> flags;  // stable addresses for CLI11
};

// One command-line option per setting that has a flag; its help says the default and range.
void AddSettingFlags(CLI::App& cmd, RunCli& c) {
  for (const auto& def : c.registry->RunSettings()) {
    if (def.flag.empty()) continue;
    auto f = std::make_unique<RunCli::Flag>();
    f->def = &def;
    std::string help = def.help;
    const std::string dflt = SettingValueText(def.def);
    if (def.type != SettingType::kBool && !dflt.empty() && dflt != "[]") {
      help += " (default " + dflt + ")";
    }
    if (def.type == SettingType::kBool) {
      f->option = cmd.add_flag(def.flag, f->on, help);
    } else if (def.IsList()) {
      f->option = cmd.add_option(def.flag, f->texts, help);
    } else {
      f->option = cmd.add_option(def.flag, f->text, help);
      f->option->type_name(def.type == SettingType::kInt     ? "INT"
                           : def.type == SettingType::kFloat ? "FLOAT"
                                                             : "TEXT");
    }
    c.flags.push_back(std::move(f));
  }
}

runtime::FlagValues CollectFlags(const RunCli& c) {
  runtime::FlagValues v;
  for (const auto& f : c.flags) {
    if (f->option->count() == 0) continue;
    if (f->def->type == SettingType::kBool) {
      v[f->def->key] = {};
    } else if (f->def->IsList()) {
      v[f->def->key] = f->texts;
    } else {
      v[f->def->key] = {f->text};
    }
  }
  return v;
}

void PrintAssetSummary(const nlohmann::json& s, const std::string& prefix) {
  const auto& a = s["alerts"];
  const auto& lat = s["latency"];
  std::fprintf(stderr,
               "\n%ssummary: %lld windows (%lld scored), alerts LOW %lld / MEDIUM %lld / HIGH "
               "%lld, deadline misses %lld, invalid events %lld, overruns %lld, max backlog %lld\n"
               "latency (arrival -> decision): p50 %.3f ms, p99 %.3f ms, max %.3f ms "
               "[features p50 %.3f ms, inference p50 %.3f ms]; RSS %lld -> %lld kB\n",
               prefix.c_str(), s["windows"].get<long long>(), s["scored"].get<long long>(),
               a["LOW"].get<long long>(), a["MEDIUM"].get<long long>(), a["HIGH"].get<long long>(),
               s["deadline_misses"].get<long long>(), s["invalid_events"].get<long long>(),
               s["overruns"].get<long long>(), s["max_backlog"].get<long long>(),
               lat["p50_ms"].get<double>(), lat["p99_ms"].get<double>(),
               lat["max_ms"].get<double>(), s["features"]["p50_ms"].get<double>(),
               s["inference"]["p50_ms"].get<double>(), s["rss_start_kb"].get<long long>(),
               s["rss_end_kb"].get<long long>());
}

long long Num(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<long long>() : 0;
}

// j[key] when it is an object, else an empty object.
const nlohmann::json& ObjectAt(const nlohmann::json& j, const char* key) {
  static const nlohmann::json kEmpty = nlohmann::json::object();
  return j.contains(key) && j[key].is_object() ? j[key] : kEmpty;
}

// The line's components: the PLC reject link, the part trigger and the Sparkplug node.
void PrintLineSummary(const nlohmann::json& j) {
  for (const auto& [asset, p] : ObjectAt(j, "plc").items()) {
    std::fprintf(stderr,
                 "plc %s: %lld rejects, %lld written, %lld missed; link %s (%lld connects, %lld "
                 "failed), %lld exception responses\n",
                 asset.c_str(), Num(p, "rejects"), Num(p, "rejects_written"),
                 Num(p, "rejects_missed") + Num(p, "queue_dropped"),
                 p.value("connected", false) ? "up" : "down", Num(p, "connects"),
                 Num(p, "connect_failures"), Num(p, "exceptions"));
  }
  for (const auto& [asset, t] : ObjectAt(j, "plc_trigger").items()) {
    std::fprintf(stderr,
                 "plc trigger %s: %lld parts, %lld events matched, %lld unmatched, %lld parts "
                 "missed; link %s (%lld connects, %lld failed)\n",
                 asset.c_str(), Num(t, "parts"), Num(t, "matched"), Num(t, "unmatched"),
                 Num(t, "parts_missed"), t.value("connected", false) ? "up" : "down",
                 Num(t, "connects"), Num(t, "connect_failures"));
  }
  if (j.contains("sparkplug") && j["sparkplug"].is_object()) {
    const auto& s = j["sparkplug"];
    std::fprintf(stderr,
                 "sparkplug: link %s, %lld births (%lld rebirths), %lld data messages, %lld "
                 "historical sent, %lld in spool, %lld dropped\n",
                 s.value("connected", false) ? "up" : "down", Num(s, "births"), Num(s, "rebirths"),
                 Num(s, "data_sent"), Num(s, "historical_sent"), Num(s, "spool_depth"),
                 Num(s, "historical_dropped") + Num(s, "queue_dropped"));
  }
}

void PrintSummary(const nlohmann::json& j) {
  if (j.contains("ota")) std::fprintf(stderr, "ota: %s\n", j["ota"].dump().c_str());
  if (j.contains("telemetry")) {
    const auto& t = j["telemetry"];
    std::fprintf(stderr,
                 "telemetry: %lld spooled, %lld delivered, %lld in spool, dropped %lld scores / "
                 "%lld alerts\n",
                 t["spooled"].get<long long>(), t["delivered"].get<long long>(),
                 t["spool_depth"].get<long long>(), t["dropped_scores"].get<long long>(),
                 t["dropped_alerts"].get<long long>());
  }
  const bool several = j["assets"].size() > 1;
  for (const auto& s : j["assets"]) {
    PrintAssetSummary(s, several ? s["asset_id"].get<std::string>() + " " : "");
  }
  PrintLineSummary(j);
  for (const auto& t : j.value("truth", nlohmann::json::array())) {
    std::fprintf(stderr,
                 "%ssimulator truth: first degraded stroke (wear >= %.2f) at window %lld "
                 "(t=%.1fs); first alert at window %lld (t=%.1fs, wear %.3f); false alerts on "
                 "healthy strokes (wear < 0.1): %lld of %lld\n",
                 several ? (t["asset_id"].get<std::string>() + " ").c_str() : "",
                 t["degraded_wear"].get<double>(), t["first_degraded_window"].get<long long>(),
                 t["first_degraded_t"].get<double>(), t["first_alert_window"].get<long long>(),
                 t["first_alert_t"].get<double>(), t["first_alert_wear"].get<double>(),
                 t["healthy_false_alerts"].get<long long>(), t["healthy_windows"].get<long long>());
  }
}

void DoRun(RunCli& c) {
  InstallSignalHandlers();
  auto spec = OrDie(runtime::LoadRunSpec(*c.registry, c.config, CollectFlags(c)));
  auto rt = OrDie(runtime::Runtime::Create(std::move(spec), *c.registry));
  Status st = rt->Run(&g_stop, &g_reload);
  const nlohmann::json summary = rt->Summary();
  rt.reset();
  PrintSummary(summary);
  if (!c.summary_json.empty()) {
    std::FILE* f = std::fopen(c.summary_json.c_str(), "wb");
    if (f) {
      std::fputs(summary.dump(2).c_str(), f);
      std::fclose(f);
    }
  }
  OrDie(st, "source");
}

}  // namespace

void RegisterRun(CLI::App& app) {
  auto c = std::make_shared<RunCli>();
  c->registry = OrDie(runtime::MakeRegistry(&runtime::RegisterLinkedComponents), "components");
  auto* cmd = app.add_subcommand("run", "Run the agent: source -> features -> model -> decisions");
  cmd->add_option("--config,-c", c->config,
                  "TOML config ([agent], [decide], [model], [identity], [[asset]] ...)");
  AddSettingFlags(*cmd, *c);
  cmd->add_option("--summary-json", c->summary_json, "Write the run summary as JSON here");
  cmd->callback([c] { DoRun(*c); });
}

}  // namespace tend::cli
