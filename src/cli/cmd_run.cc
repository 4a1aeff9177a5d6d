// `tend run`: the agent. A TOML config (--config) plus command-line overrides for the common
// settings; SIGINT/SIGTERM finish the window in flight and flush, SIGHUP reloads the model.
#include <unistd.h>

#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <limits>
#include <memory>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "agent/agent.h"
#include "agent/model_watch.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "core/config.h"
#include "core/sd_notify.h"
#include "core/log.h"
#include "agent/dataset.h"
#include "eval/metrics.h"
#include "metrics/exporter.h"
#include "ota/fetch.h"
#include "ota/updater.h"
#include "telemetry/telemetry.h"

namespace tend::cli {
namespace {

std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};

extern "C" void OnSignal(int sig) {
  if (sig == SIGHUP) {
    g_reload.store(true);
  } else {
    g_stop.store(true);
  }
}

struct RunArgs {
  std::string config;
  agent::AgentOptions opts;
  std::string fail_safe = "alert";
  std::string summary_json;
  bool quiet = false;
  int threads = 1;
  std::vector<std::string> providers;
  std::string state_dir = "tend-state";
  telemetry::Identity id{"factory-1", "line-1", "asset-1", ""};
  telemetry::TelemetryOptions mqtt;
  // Over-the-air updates (off unless --ota-registry is given).
  std::string ota_registry, ota_model_dir, ota_profile = "x86-cpu-fp32", ota_root, ota_name;
  double ota_interval_s = 3600, ota_min_quality = 0;
  int64_t ota_probation_s = 86400, ota_max_model_age_s = 8 * 7 * 86400;
  agent::ModelWatchOptions ota_watch;  // what counts as misbehaviour during probation
  double ota_watch_interval_s = 1;
  std::vector<std::string> ota_ref_normal, ota_ref_anomalous;
  int metrics_port = 8000;
  std::string metrics_bind = "0.0.0.0";
  double system_interval_s = 15;
};

std::string Hostname() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return "edge-device";
  std::string h(buf);
  for (char& c : h)
    if (c == '/' || c == '+' || c == '#' || c == ' ') c = '_';
  return h;
}

Status LoadRunConfig(RunArgs& a, CLI::App& cmd) {
  if (a.config.empty()) return Ok();
  TEND_ASSIGN_OR_RETURN(auto c, Config::LoadFile(a.config));
  auto& o = a.opts;
  auto from = [&](const char* flag, const char* key, auto& field) {
    return FlagOrConfig(c, cmd, flag, key, field);
  };
  TEND_RETURN_NOT_OK(from("--model", "agent.model", o.model_path));
  TEND_RETURN_NOT_OK(from("--source", "agent.source", o.source));
  TEND_RETURN_NOT_OK(from("--speed", "agent.speed", o.speed));
  TEND_RETURN_NOT_OK(from("--max-windows", "agent.max_windows", o.max_windows));
  TEND_RETURN_NOT_OK(from("--duration", "agent.duration_s", o.duration_s));
  TEND_RETURN_NOT_OK(from("--deadline", "agent.deadline_s", o.deadline_s));
  TEND_RETURN_NOT_OK(from("--fail-safe", "agent.fail_safe", a.fail_safe));
  TEND_RETURN_NOT_OK(from("--queue", "agent.queue_windows", o.queue_windows));
  TEND_RETURN_NOT_OK(from("--decision-log", "agent.decision_log", o.decision_log));
  TEND_RETURN_NOT_OK(c.Get("agent.decision_log_max_bytes", o.decision_log_max_bytes));
  TEND_RETURN_NOT_OK(c.Get("agent.decision_log_keep", o.decision_log_keep));
  TEND_RETURN_NOT_OK(from("--sample-rate", "agent.sample_rate", o.source_opts.sample_rate));
  TEND_RETURN_NOT_OK(from("--channels", "agent.channels", o.source_opts.channels));
  TEND_RETURN_NOT_OK(from("--channel", "agent.channel", o.source_opts.wav_channel));
  TEND_RETURN_NOT_OK(from("--debounce-k", "decide.debounce_k", o.debounce.k));
  TEND_RETURN_NOT_OK(from("--debounce-n", "decide.debounce_n", o.debounce.n));
  TEND_RETURN_NOT_OK(from("--top", "decide.top_sensors", o.serve.top_k));
  TEND_RETURN_NOT_OK(from("--threads", "model.intra_op_threads", a.threads));
  TEND_RETURN_NOT_OK(from("--provider", "model.providers", a.providers));
  TEND_RETURN_NOT_OK(c.Get("model.warmup_runs", o.serve.warmup_runs));
  TEND_RETURN_NOT_OK(c.Get("model.cuda_device", o.serve.session.cuda_device));
  TEND_RETURN_NOT_OK(c.Get("model.trt_engine_cache_dir", o.serve.session.trt_engine_cache_dir));
  TEND_RETURN_NOT_OK(c.Get("model.trt_fp16", o.serve.session.trt_fp16));
  TEND_RETURN_NOT_OK(c.Get("model.trt_int8", o.serve.session.trt_int8));
  TEND_RETURN_NOT_OK(c.Get("model.trt_int8_calibration_table", o.serve.session.trt_int8_calibration_table));
  TEND_RETURN_NOT_OK(c.Get("model.state_dir", o.serve.session.state_dir));
  TEND_RETURN_NOT_OK(from("--state-dir", "agent.state_dir", a.state_dir));
  TEND_RETURN_NOT_OK(from("--factory", "identity.factory", a.id.factory_id));
  TEND_RETURN_NOT_OK(from("--line", "identity.line", a.id.line_id));
  TEND_RETURN_NOT_OK(from("--asset", "identity.asset", a.id.asset_id));
  TEND_RETURN_NOT_OK(from("--device-id", "identity.device_id", a.id.device_id));
  auto& m = a.mqtt;
  TEND_RETURN_NOT_OK(from("--mqtt", "mqtt.url", m.broker_url));
  TEND_RETURN_NOT_OK(from("--mqtt-version", "mqtt.version", m.mqtt_version));
  TEND_RETURN_NOT_OK(from("--ca", "mqtt.ca_file", m.ca_file));
  TEND_RETURN_NOT_OK(from("--cert", "mqtt.cert_file", m.cert_file));
  TEND_RETURN_NOT_OK(from("--key", "mqtt.key_file", m.key_file));
  TEND_RETURN_NOT_OK(c.Get("mqtt.username", m.username));
  TEND_RETURN_NOT_OK(c.Get("mqtt.password", m.password));
  TEND_RETURN_NOT_OK(from("--spool", "mqtt.spool_path", m.spool_path));
  TEND_RETURN_NOT_OK(c.Get("mqtt.spool_max_bytes", m.spool_max_bytes));
  TEND_RETURN_NOT_OK(c.Get("mqtt.spool_scores", m.spool_scores));
  TEND_RETURN_NOT_OK(c.Get("mqtt.spool_health", m.spool_health));
  TEND_RETURN_NOT_OK(c.Get("mqtt.health_interval_s", m.health_interval_s));
  TEND_RETURN_NOT_OK(from("--ota-registry", "ota.registry", a.ota_registry));
  TEND_RETURN_NOT_OK(from("--ota-model-dir", "ota.model_dir", a.ota_model_dir));
  TEND_RETURN_NOT_OK(from("--ota-profile", "ota.profile", a.ota_profile));
  TEND_RETURN_NOT_OK(from("--ota-root", "ota.root", a.ota_root));
  TEND_RETURN_NOT_OK(from("--ota-name", "ota.model_name", a.ota_name));
  TEND_RETURN_NOT_OK(from("--ota-interval", "ota.interval_s", a.ota_interval_s));
  TEND_RETURN_NOT_OK(from("--ota-min-quality", "ota.min_quality", a.ota_min_quality));
  TEND_RETURN_NOT_OK(from("--ota-reference-normal", "ota.reference_normal", a.ota_ref_normal));
  TEND_RETURN_NOT_OK(from("--ota-reference-anomalous", "ota.reference_anomalous", a.ota_ref_anomalous));
  TEND_RETURN_NOT_OK(from("--ota-probation", "ota.probation_s", a.ota_probation_s));
  TEND_RETURN_NOT_OK(from("--ota-max-model-age", "ota.max_model_age_s", a.ota_max_model_age_s));
  TEND_RETURN_NOT_OK(from("--ota-max-fail-safe", "ota.max_fail_safe", a.ota_watch.max_fail_safe));
  TEND_RETURN_NOT_OK(from("--ota-storm-alerts", "ota.storm_alerts", a.ota_watch.storm_alerts));
  TEND_RETURN_NOT_OK(from("--ota-storm-windows", "ota.storm_windows", a.ota_watch.storm_windows));
  TEND_RETURN_NOT_OK(from("--ota-storm-ratio", "ota.storm_ratio", a.ota_watch.storm_ratio));
  TEND_RETURN_NOT_OK(c.Get("ota.watch_interval_s", a.ota_watch_interval_s));
  TEND_RETURN_NOT_OK(from("--metrics-port", "metrics.port", a.metrics_port));
  TEND_RETURN_NOT_OK(c.Get("metrics.bind", a.metrics_bind));
  TEND_RETURN_NOT_OK(c.Get("metrics.system_interval_s", a.system_interval_s));
  return c.CheckNoUnknownKeys();
}

// The OTA quality gate: ROC AUC of a candidate model on the device's local reference set
// (normal and anomalous recordings with known answers), scored exactly as the agent would.
Result<double> ReferenceAuc(const std::string& model_path, const RunArgs& a) {
  agent::ServeOptions so = a.opts.serve;
  so.warmup_runs = 1;
  TEND_ASSIGN_OR_RETURN(auto m, agent::ServedModel::Load(model_path, so));
  agent::ScoreOut out;
  m->PrepareOut(out);
  auto scores = [&](const std::vector<std::string>& specs) -> Result<std::vector<double>> {
    std::vector<double> v;
    std::vector<agent::InputSpec> inputs;
    for (auto& s : specs) {
      TEND_ASSIGN_OR_RETURN(auto in, agent::InputSpec::Parse(s));
      inputs.push_back(in);
    }
    TEND_RETURN_NOT_OK(agent::ForEachWindow(inputs, a.opts.source_opts, m->windowing(), -1,
                                            [&](std::span<const float> w, const agent::WindowInfo&) -> Status {
                                              TEND_RETURN_NOT_OK(m->Score(w, out));
                                              v.push_back(out.score);
                                              return Ok();
                                            }));
    if (v.empty()) return Fail(Error::Invalid("OTA reference set: no windows"));
    return v;
  };
  TEND_ASSIGN_OR_RETURN(auto normal, scores(a.ota_ref_normal));
  TEND_ASSIGN_OR_RETURN(auto anomalous, scores(a.ota_ref_anomalous));
  return eval::RocAuc(normal, anomalous);
}

// Which state change a status is, against the previous one ("" when none): the MQTT "ota" state
// is published on these only. Several at once: the most important one names the message.
std::string OtaEvent(const nlohmann::json& prev, const nlohmann::json& cur) {
  if (prev.is_null()) return "startup";
  auto grew = [&](const char* k) { return cur["updates"][k] > prev["updates"][k]; };
  if (grew("rolled_back")) return "rolled_back";
  if (grew("installed")) return "installed";
  if (grew("refused")) return "refused";
  if (prev["current_version"] != cur["current_version"]) return "changed";
  if (prev["in_probation"] == true && cur["in_probation"] == false) return "probation_ended";
  if (prev["stale"] == false && cur["stale"] == true) return "stale";
  return "";
}

metrics::OtaFigures OtaFiguresOf(const nlohmann::json& st) {
  metrics::OtaFigures f;
  const auto& u = st["updates"];
  f.installed_total = u["installed"];
  f.refused_total = u["refused"];
  f.rolled_back_total = u["rolled_back"];
  f.failed_total = u["failed"];
  if (st["last_check_unix"].get<int64_t>() > 0) f.last_check_unix = st["last_check_unix"];
  f.in_probation = st["in_probation"];
  if (st["model_installed_unix"].get<int64_t>() > 0) {
    f.model_installed_unix = st["model_installed_unix"];
  }
  f.stale = st["stale"];
  f.max_model_age_s = st["max_model_age_s"];
  return f;
}

// Watches a model on probation from its own thread (never the pipeline's: a rollback does file
// I/O and loads a model): when the ModelWatch sees misbehaviour from the model OTA installed, the
// updater rolls back and hands the backup to the agent. Every tick it also logs staleness (once a
// day) and publishes the OTA state on each change.
class OtaSupervisor {
 public:
  OtaSupervisor(ota::Updater* updater, agent::ModelWatch* watch, double interval_s,
                std::function<void(const nlohmann::json&)> publish)
      : updater_(updater), watch_(watch), interval_s_(interval_s), publish_(std::move(publish)) {}
  ~OtaSupervisor() { Stop(); }

  // The model from this watch generation on is the one on probation (the swap happens at the
  // next window after SubmitModel).
  void Arm(int64_t generation) { armed_.store(generation); }

  void Start() {
    thread_ = std::thread([this] {
      std::unique_lock<std::mutex> lock(mu_);
      while (!stop_) {
        lock.unlock();
        Tick();
        lock.lock();
        cv_.wait_for(lock, std::chrono::duration<double>(interval_s_), [this] { return stop_; });
      }
    });
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  void Tick() {
    if (updater_->InProbation() && watch_->generation() >= armed_.load()) {
      std::string why = watch_->Misbehaviour();
      if (!why.empty()) {
        TEND_LOG_WARN("ota: model on probation misbehaves: {}; rolling back", why);
        Status st = updater_->ReportMisbehaviour(why);
        if (!st) TEND_LOG_ERROR("ota: rollback failed: {}", st.error().message);
      }
    }
    const bool stale_warned = updater_->WarnIfStale();
    nlohmann::json st = updater_->StatusJson();
    std::string event = OtaEvent(prev_, st);
    if (event.empty() && stale_warned) event = "stale";  // the daily reminder
    prev_ = st;
    if (event.empty()) return;
    st["event"] = event;
    st["serving"] = watch_->Health().ToJson();
    publish_(st);
  }

 private:
  ota::Updater* updater_;
  agent::ModelWatch* watch_;
  double interval_s_;
  std::function<void(const nlohmann::json&)> publish_;
  std::atomic<int64_t> armed_{std::numeric_limits<int64_t>::max()};
  nlohmann::json prev_;  // Tick() thread only
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

// Feeds systemd's watchdog (WatchdogSec=) at half its period, but only while the agent's pipeline
// loop is turning: a pipeline thread stuck for good (a hung driver call, a deadlock) stops the
// pings and systemd restarts tend, instead of a process that is alive but no longer deciding.
class SystemdWatchdog {
 public:
  explicit SystemdWatchdog(const agent::Agent* agent) : agent_(agent) {}
  ~SystemdWatchdog() { Stop(); }
  void Start() {
    const auto period = sd::WatchdogInterval();
    if (period.count() == 0) return;
    TEND_LOG_INFO("systemd watchdog: {} ms", period.count() / 1000);
    thread_ = std::thread([this, period] {
      int64_t last = -1;
      bool warned = false;
      std::unique_lock<std::mutex> lock(mu_);
      while (!cv_.wait_for(lock, period / 2, [this] { return stop_; })) {
        const int64_t beat = agent_->heartbeat();
        if (beat != last) {
          (void)sd::Notify("WATCHDOG=1");
          last = beat;
          warned = false;
        } else if (!warned) {
          TEND_LOG_ERROR("the pipeline has not moved for {} ms: no longer feeding the systemd "
                         "watchdog, which will restart tend",
                         period.count() / 2000);
          warned = true;
        }
      }
    });
  }
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  const agent::Agent* agent_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

void DoRun(RunArgs& a, CLI::App& cmd) {
  // Handlers first: a supervisor's SIGTERM or SIGHUP during start-up (model load, warm-up) must
  // not kill the process; a stop or reload requested that early is honoured once running.
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
  OrDie(LoadRunConfig(a, cmd));
  auto& o = a.opts;
  if (a.fail_safe == "alert") {
    o.fail_safe_alert = true;
  } else if (a.fail_safe == "pass") {
    o.fail_safe_alert = false;
  } else {
    Die("fail-safe must be 'alert' (no-go) or 'pass' (go), got '" + a.fail_safe + "'");
  }
  o.serve.session.intra_op_threads = a.threads;
  if (!a.providers.empty()) o.serve.session.providers = a.providers;
  o.print = !a.quiet;
  if (a.id.device_id.empty()) a.id.device_id = Hostname();
  o.asset_id = a.id.asset_id;
  std::unique_ptr<telemetry::Telemetry> tele;  // created below; the OTA supervisor publishes to it
  std::unique_ptr<ota::Updater> updater;
  agent::Agent* agent_ptr = nullptr;
  std::unique_ptr<agent::ModelWatch> watch;
  std::unique_ptr<OtaSupervisor> supervisor;
  if (!a.ota_registry.empty()) {
    watch = OrDie(agent::ModelWatch::Create(a.ota_watch), "OTA probation");
    if (!(a.ota_watch_interval_s > 0)) Die("ota.watch_interval_s must be > 0");
    if (a.ota_model_dir.empty()) Die("--ota-registry needs --ota-model-dir (where verified models are kept)");
    if (a.ota_ref_normal.empty() || a.ota_ref_anomalous.empty()) {
      Die("OTA needs a local reference set to gate new models: --ota-reference-normal and --ota-reference-anomalous");
    }
    ota::UpdaterOptions uo;
    uo.model_dir = a.ota_model_dir;
    uo.model_name = a.ota_name.empty() ? "press-anomaly" : a.ota_name;
    uo.profile = a.ota_profile;
    uo.pinned_root_path = a.ota_root;
    uo.min_quality = a.ota_min_quality;
    uo.interval_s = a.ota_interval_s;
    uo.probation_s = a.ota_probation_s;
    uo.max_model_age_s = a.ota_max_model_age_s;
    if (uo.probation_s < 0 || uo.max_model_age_s <= 0) {
      Die("--ota-probation must be >= 0 s and --ota-max-model-age > 0 s");
    }
    uo.load_check = [&a](const std::string& path) -> Status {
      agent::ServeOptions so = a.opts.serve;
      so.warmup_runs = 1;
      TEND_ASSIGN_OR_RETURN(auto m, agent::ServedModel::Load(path, so));
      return Ok();
    };
    uo.quality_gate = [&a](const std::string& path) { return ReferenceAuc(path, a); };
    uo.on_commit = [&a, &agent_ptr, &watch, &supervisor](const std::string& path) -> Status {
      if (!agent_ptr) return Ok();  // before start-up the agent loads the current model itself
      TEND_ASSIGN_OR_RETURN(auto m, agent::ServedModel::Load(path, a.opts.serve));
      const int64_t generation = watch->generation();
      TEND_RETURN_NOT_OK(agent_ptr->SubmitModel(std::move(m)));
      // Probation judges the new model from the window it takes over: the next generation, or
      // generation 1 when the agent has not started yet (0 is the model it starts with).
      if (supervisor) supervisor->Arm(generation < 0 ? 1 : generation + 1);
      return Ok();
    };
    std::unique_ptr<ota::Fetcher> fetcher;
    if (a.ota_registry.rfind("http://", 0) == 0) {
      fetcher = OrDie(ota::HttpFetcher::Create(a.ota_registry), "OTA registry");
    } else {
      fetcher = OrDie(ota::DirFetcher::Create(a.ota_registry), "OTA registry");
    }
    updater = OrDie(ota::Updater::Create(uo, std::move(fetcher)), "OTA");
    // The start-up model (--model or agent.model) is adopted by OTA as v0 so that the first
    // update has something to roll back to; a model OTA installed since wins until the operator
    // deploys other bytes at that path. Without one, the agent starts on OTA's current model.
    std::string current = updater->CurrentModelPath();
    if (!o.model_path.empty()) {
      current = OrDie(updater->AdoptStartupModel(o.model_path), "OTA start-up model");
    }
    if (!current.empty()) o.model_path = current;
    // Each state change goes to the log and, with telemetry on, to the retained MQTT state
    // factory/{factory_id}/edge/{device_id}/ota (QoS 1, durably spooled; never blocks).
    supervisor = std::make_unique<OtaSupervisor>(
        updater.get(), watch.get(), a.ota_watch_interval_s,
        [&tele](const nlohmann::json& st) {
          TEND_LOG_INFO("ota: {}: {} v{} ({}), backup v{}", st["event"].get<std::string>(),
                        st["model"].get<std::string>(), st["current_version"].get<int64_t>(),
                        st["state"].get<std::string>(), st["backup_version"].get<int64_t>());
          if (tele) tele->PublishDeviceState("ota", st);
        });
    // Restarted during probation on the model OTA installed: it is still on probation.
    if (!current.empty() && o.model_path == current) supervisor->Arm(0);
  }
  auto agent = OrDie(agent::Agent::Create(o));
  agent_ptr = agent.get();
  if (watch) agent->AddSink(watch.get());

  // Metrics: always counted (the health message uses them); served over HTTP unless port 0.
  // A port already in use must not stop a press from being watched: say so and go on.
  metrics::Exporter::Options mo;
  mo.port = a.metrics_port;
  mo.bind = a.metrics_bind;
  mo.latency_budget_ms = o.deadline_s * 1000;
  mo.system_interval_s = a.system_interval_s;
  metrics::Labels labels{a.id.device_id, a.id.asset_id, a.id.factory_id};
  auto exporter = metrics::Exporter::Create(labels, mo);
  if (!exporter && a.metrics_port != 0) {
    TEND_LOG_ERROR("metrics endpoint disabled: {}", exporter.error().message);
    mo.port = 0;
    exporter = metrics::Exporter::Create(labels, mo);
  }
  auto metrics_exporter = OrDie(std::move(exporter), "metrics");
  agent->AddSink(metrics_exporter.get());
  if (a.metrics_port != 0 && metrics_exporter->port() > 0) {
    TEND_LOG_INFO("metrics on http://{}:{}/metrics", a.metrics_bind, metrics_exporter->port());
  }

  if (!a.mqtt.broker_url.empty()) {
    OrDie(a.id.Validate(), "identity");
    if (a.mqtt.spool_path.empty()) a.mqtt.spool_path = a.state_dir + "/spool.db";
    tele = OrDie(telemetry::Telemetry::Create(a.id, a.mqtt), "telemetry");
    auto* exp = metrics_exporter.get();
    tele->SetHealthProvider([exp] { return exp->HealthFigures(); });
    auto* t = tele.get();
    metrics_exporter->SetTelemetryStatsProvider([t] {
      auto st = t->stats();
      metrics::TelemetryFigures f;
      f.spool_depth = st.spool_depth;
      f.spool_bytes = st.spool_bytes;
      f.spool_dropped_total = st.dropped_scores + st.dropped_alerts + st.dropped_health;
      f.mqtt_connected = st.connected;
      f.mqtt_reconnects_total = st.reconnects;
      f.mqtt_refused_total = st.refused;
      f.spool_in_memory = st.spool_in_memory;
      f.spool_disk_full = st.disk_full;
      f.spool_held_alerts = st.held_alerts;
      return f;
    });
    agent->AddSink(tele.get());
    TEND_LOG_INFO("telemetry to {} as {} (spool {})", a.mqtt.broker_url, a.id.ClientId(), a.mqtt.spool_path);
  }

  if (updater) {
    auto* u = updater.get();
    metrics_exporter->SetOtaStatusProvider([u] { return OtaFiguresOf(u->StatusJson()); });
    updater->Start();
    supervisor->Start();
  }
  // Under systemd (Type=notify): ready once the model is loaded and warm and every sink is up;
  // with WatchdogSec=, fed only while the pipeline loop keeps turning.
  SystemdWatchdog sd_watchdog(agent.get());
  if (auto r = sd::Notify("READY=1\nSTATUS=deciding with " + agent->model().card().name + " v" +
                          agent->model().card().version);
      !r) {
    TEND_LOG_WARN("systemd: {}", r.error().message);
  }
  sd_watchdog.Start();
  auto st = agent->Run(&g_stop, &g_reload);
  (void)sd::Notify("STOPPING=1");
  sd_watchdog.Stop();
  if (updater) {
    supervisor->Stop();
    updater->Stop();
    auto us = updater->StatusJson();
    std::fprintf(stderr, "ota: %s\n", us.dump().c_str());
  }
  if (tele) {
    auto fl = tele->Flush(std::chrono::seconds(5));
    auto ts = tele->stats();
    if (!fl) TEND_LOG_WARN("telemetry: {} (kept in the spool for the next run)", fl.error().message);
    std::fprintf(stderr, "telemetry: %lld spooled, %lld delivered, %lld in spool, dropped %lld scores / %lld alerts\n",
                 static_cast<long long>(ts.spooled), static_cast<long long>(ts.delivered),
                 static_cast<long long>(ts.spool_depth), static_cast<long long>(ts.dropped_scores),
                 static_cast<long long>(ts.dropped_alerts));
  }
  auto s = agent->summary();
  auto j = s.ToJson();
  j["model"] = agent->model().card().name + " v" + agent->model().card().version;
  j["provider"] = agent->model().info().provider;
  if (!a.summary_json.empty()) {
    std::FILE* f = std::fopen(a.summary_json.c_str(), "wb");
    if (f) {
      std::fputs(j.dump(2).c_str(), f);
      std::fclose(f);
    }
  }
  std::fprintf(stderr,
               "\nsummary: %lld windows (%lld scored), alerts LOW %lld / MEDIUM %lld / HIGH %lld, "
               "deadline misses %lld, overruns %lld, max backlog %lld\n"
               "latency (window complete -> decision): p50 %.3f ms, p99 %.3f ms, max %.3f ms "
               "[features p50 %.3f ms, inference p50 %.3f ms]; RSS %lld -> %lld kB\n",
               static_cast<long long>(s.windows), static_cast<long long>(s.scored),
               static_cast<long long>(s.alerts[0]), static_cast<long long>(s.alerts[1]),
               static_cast<long long>(s.alerts[2]), static_cast<long long>(s.fail_safe),
               static_cast<long long>(s.overruns), static_cast<long long>(s.max_backlog),
               s.latency.p50_ms, s.latency.p99_ms, s.latency.max_ms, s.features.p50_ms,
               s.inference.p50_ms, static_cast<long long>(s.rss_start_kb),
               static_cast<long long>(s.rss_end_kb));
  if (s.has_truth) {
    std::fprintf(stderr,
                 "simulator truth: first degraded stroke (wear >= %.2f) at window %lld (t=%.1fs); "
                 "first alert at window %lld (t=%.1fs, wear %.3f); false alerts on healthy strokes "
                 "(wear < 0.1): %lld of %lld\n",
                 o.degraded_wear, static_cast<long long>(s.first_degraded_window), s.first_degraded_t,
                 static_cast<long long>(s.first_alert_window), s.first_alert_t, s.first_alert_wear,
                 static_cast<long long>(s.healthy_false_alerts),
                 static_cast<long long>(s.healthy_windows));
  }
  OrDie(st, "source");
}

}  // namespace

void RegisterRun(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  auto& o = a->opts;
  auto* cmd = app.add_subcommand("run", "Run the agent: source -> features -> model -> decisions");
  cmd->add_option("--config,-c", a->config, "TOML config ([agent], [decide], [model], [identity] ...)");
  cmd->add_option("--model,-m", o.model_path, "Model (.onnx)");
  cmd->add_option("--source,-s", o.source,
                  "WAV/CSV path, sim[:wear=0,wear_end=1,strokes=300,seed=1], or - for float32 stdin");
  cmd->add_option("--speed", o.speed, "Replay speed factor (1 = real time, 0 = as fast as possible)");
  cmd->add_option("--max-windows", o.max_windows, "Stop after N decisions");
  cmd->add_option("--duration", o.duration_s, "Stop after this many seconds of signal");
  cmd->add_option("--deadline", o.deadline_s, "Per-window deadline in seconds (default 3.3)");
  cmd->add_option("--fail-safe", a->fail_safe, "Decision when the deadline passes: alert | pass");
  cmd->add_option("--queue", o.queue_windows, "Backlog capacity in windows");
  cmd->add_option("--decision-log", o.decision_log, "JSONL decision log (rotated)");
  cmd->add_option("--debounce-k", o.debounce.k, "Alert when k of the last n windows cross LOW");
  cmd->add_option("--debounce-n", o.debounce.n, "Debounce window n");
  cmd->add_option("--top", o.serve.top_k, "How many top contributing features to report");
  cmd->add_option("--threads", a->threads, "ONNX Runtime intra-op threads");
  cmd->add_option("--provider", a->providers, "Execution providers in preference order");
  cmd->add_option("--sample-rate", o.source_opts.sample_rate, "Sample rate of raw stdin / CSV");
  cmd->add_option("--channels", o.source_opts.channels, "Channel count of raw stdin");
  cmd->add_option("--channel", o.source_opts.wav_channel, "Use one channel of a multi-channel file");
  cmd->add_option("--state-dir", a->state_dir, "Where the spool and caches live (default ./tend-state)");
  cmd->add_option("--factory", a->id.factory_id, "Factory id (MQTT topics, metric labels)");
  cmd->add_option("--line", a->id.line_id, "Line id");
  cmd->add_option("--asset", a->id.asset_id, "Asset id");
  cmd->add_option("--device-id", a->id.device_id, "Device id (default: host name)");
  cmd->add_option("--mqtt", a->mqtt.broker_url, "Broker: mqtt://host:1883 or mqtts://host:8883 (default: no telemetry)");
  cmd->add_option("--mqtt-version", a->mqtt.mqtt_version,
                  "5 (default; refusals such as ACL denials are reported) or 4 (MQTT 3.1.1)");
  cmd->add_option("--ca", a->mqtt.ca_file, "CA certificate to verify the broker (mqtts)");
  cmd->add_option("--cert", a->mqtt.cert_file, "This device's client certificate (mqtts)");
  cmd->add_option("--key", a->mqtt.key_file, "This device's private key (mqtts)");
  cmd->add_option("--spool", a->mqtt.spool_path, "Store-and-forward spool (default <state-dir>/spool.db)");
  cmd->add_option("--metrics-port", a->metrics_port, "Prometheus /metrics port (default 8000; 0 = off)");
  cmd->add_option("--ota-registry", a->ota_registry, "Signed model registry: http://host:port[/prefix] or a directory");
  cmd->add_option("--ota-model-dir", a->ota_model_dir, "Where verified models, their backup and the OTA state live");
  cmd->add_option("--ota-profile", a->ota_profile, "This device's profile (default x86-cpu-fp32)");
  cmd->add_option("--ota-root", a->ota_root, "Pinned root.json: the trust anchor");
  cmd->add_option("--ota-name", a->ota_name, "Model name in the registry (default press-anomaly)");
  cmd->add_option("--ota-interval", a->ota_interval_s, "Seconds between registry checks (default 3600, with jitter)");
  cmd->add_option("--ota-min-quality", a->ota_min_quality, "Minimum reference-set AUC a new model must reach");
  cmd->add_option("--ota-reference-normal", a->ota_ref_normal, "Reference set: normal inputs");
  cmd->add_option("--ota-reference-anomalous", a->ota_ref_anomalous, "Reference set: anomalous inputs");
  cmd->add_option("--ota-probation", a->ota_probation_s, "Seconds a new model is on probation (default 86400)");
  cmd->add_option("--ota-max-model-age", a->ota_max_model_age_s,
                  "Seconds without a new model before the device is stale (default 8 weeks)");
  cmd->add_option("--ota-max-fail-safe", a->ota_watch.max_fail_safe,
                  "Probation: roll back after this many fail-safe decisions of the new model (default 3; 0 = off)");
  cmd->add_option("--ota-storm-alerts", a->ota_watch.storm_alerts,
                  "Probation: roll back on more than this many alerts in the last --ota-storm-windows windows (default 20; 0 = off)");
  cmd->add_option("--ota-storm-windows", a->ota_watch.storm_windows, "Probation: alert storm window count (default 100)");
  cmd->add_option("--ota-storm-ratio", a->ota_watch.storm_ratio,
                  "Probation: ... and an alert rate above this many times the previous model's (default 5)");
  cmd->add_flag("--json", o.print_json, "Print decisions as JSON lines");
  cmd->add_flag("--quiet,-q", a->quiet, "No line per decision (summary only)");
  cmd->add_option("--summary-json", a->summary_json, "Write the run summary as JSON here");
  cmd->callback([a, cmd] { DoRun(*a, *cmd); });
}

}  // namespace tend::cli
