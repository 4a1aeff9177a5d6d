#include "runtime/runtime.h"

#include <unistd.h>

#include <chrono>

#include "core/log.h"
#include "core/sd_notify.h"
#include "detect/model_card.h"
#include "metrics/exporter.h"
#include "model/metadata.h"
#include "runtime/component_util.h"
#include "runtime/state_lock.h"
#include "telemetry/telemetry.h"

namespace tend::runtime {

std::string Hostname() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return "edge-device";
  std::string h(buf);
  for (char& c : h) {
    if (c == '/' || c == '+' || c == '#' || c == ' ') c = '_';
  }
  return h;
}

namespace {

agent::AgentOptions AgentOptionsFrom(const AssetSpec& a) {
  const Settings& s = a.settings;
  agent::AgentOptions o;
  o.asset_id = a.id;
  o.max_windows = s.GetInt("agent.max_windows");
  o.deadline_s = s.GetFloat("agent.deadline_s");
  o.fail_safe_alert = s.GetString("agent.fail_safe") == "alert";
  o.debounce.k = static_cast<int>(s.GetInt("decide.debounce_k"));
  o.debounce.n = static_cast<int>(s.GetInt("decide.debounce_n"));
  o.queue_windows = s.GetInt("agent.queue_windows");
  o.top_k = static_cast<int>(s.GetInt("decide.top_sensors"));
  return o;
}

agent::MonitorOptions MonitorOptionsFrom(const Settings& s, bool live) {
  agent::MonitorOptions m;
  m.health = s.GetBool("monitors.health");
  m.drift = s.GetBool("monitors.drift");
  m.input = s.GetBool("monitors.input_health");
  m.adaptive = s.GetBool("monitors.adaptive_baseline");
  m.health_options.h_warning = s.GetFloat("monitors.health_warning_h");
  m.health_options.h_alarm = s.GetFloat("monitors.health_alarm_h");
  m.drift_options.window = static_cast<int>(s.GetInt("monitors.drift_window"));
  m.drift_options.min_events = m.drift_options.window;
  m.drift_options.warn = s.GetFloat("monitors.drift_warn");
  m.drift_options.alert = s.GetFloat("monitors.drift_alert");
  m.adaptive_options.max_shift_sd = s.GetFloat("monitors.adaptive_max_shift_sd");
  m.adaptive_options.commit_every = s.GetInt("monitors.adaptive_commit_every");
  m.adaptive_options.rate = s.GetFloat("monitors.adaptive_rate");
  m.live = live;
  return m;
}

// The model kind a file asks for: its tend.input_kind (a JSON string), "features" when absent
// or unreadable (the kind's loader then says what is wrong with the file).
std::string KindOf(const Result<std::map<std::string, std::string>>& meta) {
  if (!meta) return "features";
  auto it = meta->find(detect::kKeyInputKind);
  if (it == meta->end()) return "features";
  auto j = nlohmann::json::parse(it->second, nullptr, false);
  return j.is_string() ? j.get<std::string>() : "features";
}

// A source's reader with the asset's event stages in front of the agent: each event passes every
// stage (in registration order) on the acquisition thread before the agent copies it.
class StagedReader final : public agent::EventReader {
 public:
  StagedReader(std::unique_ptr<agent::EventReader> inner, std::vector<EventStage*> stages)
      : inner_(std::move(inner)), stages_(std::move(stages)) {}
  const EventSpec& spec() const override { return inner_->spec(); }
  bool live() const override { return inner_->live(); }
  std::string Describe() const override { return inner_->Describe(); }
  double signal_s() const override { return inner_->signal_s(); }
  double event_span_s() const override { return inner_->event_span_s(); }

  Status Run(const std::atomic<bool>& stop, const agent::EmitEvent& emit) override {
    const auto span = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(inner_->event_span_s()));
    const agent::EmitEvent staged = [&](const EventView& v) {
      EventView t = v;
      if (t.arrival == std::chrono::steady_clock::time_point{}) {
        t.arrival = std::chrono::steady_clock::now();  // a sample window is complete now
      }
      for (EventStage* s : stages_) s->OnEvent(t, span);
      emit(t);
    };
    Status st = inner_->Run(stop, staged);
    for (EventStage* s : stages_) s->OnEnd();
    return st;
  }

 private:
  std::unique_ptr<agent::EventReader> inner_;
  std::vector<EventStage*> stages_;
};

}  // namespace

Result<std::unique_ptr<Runtime>> Runtime::Create(RunSpec spec, const Registry& registry) {
  if (spec.assets.empty()) return Fail(Error::Invalid("no asset to run"));
  std::unique_ptr<Runtime> rt(new Runtime());
  rt->spec_ = std::move(spec);
  rt->registry_ = &registry;
  TEND_RETURN_NOT_OK(rt->SetUp());
  return rt;
}

Runtime::~Runtime() {
  for (auto& a : assets_) {
    if (a->thread.joinable()) a->thread.join();
  }
  if (services_started_) StopServices();
  // Stages before sinks (they report to the Prometheus sink's exporter); the readers that call
  // them have stopped.
  stages_.clear();
  // Reverse creation order: the MQTT sink's worker reads the exporter's figures until it stops.
  while (!sinks_.empty()) sinks_.pop_back();
  ota_.reset();
  assets_.clear();
}

Status Runtime::SetUp() {
  const Settings& d = spec_.device;
  identity_ = {d.GetString("identity.factory"), d.GetString("identity.line"), spec_.assets[0].id,
               d.GetString("identity.device_id")};
  if (identity_.device_id.empty()) identity_.device_id = Hostname();
  state_dir_ = d.GetString("agent.state_dir");
  // An explicit state directory is this agent's: locked before anything else happens. (The
  // default one is locked by the components that use it, e.g. the MQTT spool.)
  if (d.IsSet("agent.state_dir")) TEND_RETURN_NOT_OK(LockStateDir());
  TEND_RETURN_NOT_OK(SetUpOta());
  device_ = std::make_unique<DeviceContext>(DeviceContext{&spec_.device, &spec_.assets, &identity_,
                                                          state_dir_, &services_,
                                                          [this] { return LockStateDir(); }});
  TEND_RETURN_NOT_OK(CreateStages());
  for (auto& a : spec_.assets) {
    auto st = BuildAsset(a);
    if (!st) return Fail(spec_.assets.size() > 1 ? st.error().Wrap("asset " + a.id) : st.error());
  }
  return CreateSinks();
}

Status Runtime::LockStateDir() {
  if (state_lock_) return Ok();
  TEND_ASSIGN_OR_RETURN(state_lock_, StateDirLock::Acquire(state_dir_));
  return Ok();
}

Status Runtime::SetUpOta() {
  const Settings& d = spec_.device;
  if (d.GetString("ota.registry").empty()) return Ok();
  if (spec_.assets.size() != 1) {
    return Fail(Error::Unsupported("OTA updates one asset's model; this agent runs " +
                                   std::to_string(spec_.assets.size()) + " assets"));
  }
  ReferenceSet ref;
  ref.normal = d.GetList("ota.reference_normal");
  ref.anomalous = d.GetList("ota.reference_anomalous");
  ref.source = SourceOptionsFrom(spec_.assets[0].settings);
  ref.source.keep_non_finite = false;
  LoadModelFn load = [this](const std::string& path, int warmup) {
    return LoadModel(spec_.assets[0], path, warmup);
  };
  TEND_ASSIGN_OR_RETURN(ota_, OtaService::Create(d, std::move(load), std::move(ref)));
  return Ok();
}

Result<std::unique_ptr<agent::Model>> Runtime::LoadModel(const AssetSpec& a,
                                                         const std::string& path,
                                                         int warmup_runs) const {
  Result<std::map<std::string, std::string>> meta = std::map<std::string, std::string>{};
  std::string kind = a.model_kind;
  if (kind.empty()) {
    meta = model::ReadMetadataProps(path);
    kind = KindOf(meta);
  }
  TEND_ASSIGN_OR_RETURN(const ModelKindDescriptor* desc, registry_->ModelKind(kind));
  const std::map<std::string, std::string> none;
  ModelRequest req{path, &a.settings, meta ? &*meta : &none, ServeOptionsFrom(a.settings)};
  if (warmup_runs >= 0) req.serve.warmup_runs = warmup_runs;
  return desc->load(req);
}

// The defaults the asset's model kind gives run settings the user left alone (debounce and
// deadline for parts), recorded with their origin.
Status Runtime::ApplyKindDefaults(const std::string& kind, Settings& settings) const {
  TEND_ASSIGN_OR_RETURN(const ModelKindDescriptor* desc, registry_->ModelKind(kind));
  for (const auto& [key, value] : desc->defaults) {
    const SettingDef* def = settings.Find(key);
    if (!def) return Fail(Error::Internal("model kind " + kind + ": default for unknown " + key));
    TEND_RETURN_NOT_OK(CheckSetting(*def, value).map_error([&](Error e) {
      return e.Wrap("model kind " + kind + ": default " + key);
    }));
    if (!settings.IsSet(key)) settings.Set(key, value, "default for model kind " + kind);
  }
  return Ok();
}

Status Runtime::BuildAsset(AssetSpec& a) {
  std::string model_path = a.model;
  if (ota_) {
    TEND_ASSIGN_OR_RETURN(model_path, ota_->StartupModel(a.model));
  }
  if (model_path.empty()) return Fail(Error::Invalid("no model given (--model)"));
  TEND_ASSIGN_OR_RETURN(auto model, LoadModel(a, model_path, -1));
  TEND_RETURN_NOT_OK(ApplyKindDefaults(model->kind(), a.settings));
  TEND_ASSIGN_OR_RETURN(const SourceDescriptor* source, registry_->SourceFor(a.source));
  SourceRequest req{a.source, &model->input(), &a.settings, a.id};
  TEND_ASSIGN_OR_RETURN(auto reader, source->open(req));
  TEND_ASSIGN_OR_RETURN(reader, AddStages(a, std::move(reader), *model));
  agent::AgentOptions o = AgentOptionsFrom(a);
  const AssetSpec* spec = &a;
  o.loader = [this, spec](const std::string& path) { return LoadModel(*spec, path, -1); };
  auto asset = std::make_unique<Asset>();
  asset->spec = &a;
  const agent::MonitorOptions mo = MonitorOptionsFrom(a.settings, reader->live());
  if (mo.any() || mo.adaptive) {
    TEND_ASSIGN_OR_RETURN(asset->monitor, agent::AssetMonitor::Create(a.id, mo, *model));
  }
  TEND_ASSIGN_OR_RETURN(asset->agent, agent::Agent::Create(o, std::move(model), std::move(reader)));
  asset->agent->SetMonitor(asset->monitor.get());
  if (ota_) ota_->Attach(asset->agent.get());
  assets_.push_back(std::move(asset));
  return Ok();
}

// Every registered event stage some asset asks for, in registration order.
Status Runtime::CreateStages() {
  for (const auto& desc : registry_->stages()) {
    TEND_ASSIGN_OR_RETURN(auto stage, desc.create(*device_));
    if (stage) stages_.push_back(std::move(stage));
  }
  return Ok();
}

// The asset's reader behind the stages that work for it (the reader itself when none does).
Result<std::unique_ptr<agent::EventReader>> Runtime::AddStages(
    const AssetSpec& a, std::unique_ptr<agent::EventReader> reader, const agent::Model& model) {
  std::vector<EventStage*> mine;
  for (auto& stage : stages_) {
    AssetContext ac{&a, &a.settings, reader.get(), &model, !reader->live()};
    TEND_ASSIGN_OR_RETURN(EventStage * es, stage->ForAsset(ac));
    if (es) mine.push_back(es);
  }
  if (mine.empty()) return reader;
  return std::unique_ptr<agent::EventReader>(
      std::make_unique<StagedReader>(std::move(reader), std::move(mine)));
}

// Every registered sink, in registration order, attached to each asset it watches; then what
// the device-wide services read from each other.
Status Runtime::CreateSinks() {
  DeviceContext& ctx = *device_;
  for (const auto& desc : registry_->sinks()) {
    TEND_ASSIGN_OR_RETURN(auto sink, desc.create(ctx));
    if (!sink) continue;
    for (auto& a : assets_) {
      const agent::EventReader& reader = a->agent->reader();
      AssetContext ac{a->spec,           &a->spec->settings, &reader,
                      &a->agent->model(), !reader.live(),     a->monitor.get()};
      TEND_ASSIGN_OR_RETURN(DecisionSink * ds, sink->ForAsset(ac));
      if (ds) a->agent->AddSink(ds);
    }
    sinks_.push_back(std::move(sink));
  }
  if (ota_ && services_.exporter) {
    OtaService* o = ota_.get();
    services_.exporter->SetOtaStatusProvider([o] { return o->Figures(); });
  }
  if (ota_ && services_.telemetry) {
    telemetry::Telemetry* t = services_.telemetry;
    ota_->SetPublisher([t](const nlohmann::json& st) { t->PublishDeviceState("ota", st); });
  }
  return Ok();
}

void Runtime::StartServices() {
  services_started_ = true;
  if (ota_) ota_->Start();
  // Under systemd (Type=notify): ready once every model is loaded and warm and every sink is up;
  // with WatchdogSec=, fed only while every pipeline loop keeps turning.
  std::vector<Pulse> pipelines;
  for (const auto& a : assets_) pipelines.push_back(Pulse::Of(a->agent.get()));
  sd_watchdog_ = std::make_unique<SystemdWatchdog>(pipelines, sd::WatchdogInterval(),
                                                   [] { (void)sd::Notify("WATCHDOG=1"); });
  const auto& m = assets_[0]->agent->model();
  if (auto r = sd::Notify("READY=1\nSTATUS=deciding with " + m.name() + " v" + m.version()); !r) {
    TEND_LOG_WARN("systemd: {}", r.error().message);
  }
  sd_watchdog_->Start();
}

void Runtime::StopServices() {
  if (services_stopped_) return;
  services_stopped_ = true;
  (void)sd::Notify("STOPPING=1");
  if (sd_watchdog_) sd_watchdog_->Stop();
  for (auto& s : stages_) s->Stop();
  if (ota_) {
    ota_->Stop();
    ota_status_ = ota_->StatusJson();
  }
  for (auto it = sinks_.rbegin(); it != sinks_.rend(); ++it) (*it)->Stop();
}

void Runtime::WaitForAssets(const std::atomic<bool>* stop, std::atomic<bool>* reload) {
  bool said = false;
  for (;;) {
    // Said first: a stop that came during start-up ends the agents at once, and is said too.
    if (stop && stop->load() && !said) {
      said = true;
      TEND_LOG_INFO(
          "stopping: finishing the window in flight, then flushing the outputs "
          "(stop again to quit at once)");
    }
    bool done = true;
    for (const auto& a : assets_) done = done && a->agent->finished();
    if (done) return;
    if (reload && reload->exchange(false)) {
      for (auto& a : assets_) a->reload.store(true);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Status Runtime::Run(const std::atomic<bool>* stop, std::atomic<bool>* reload) {
  for (auto& s : sinks_) TEND_RETURN_NOT_OK(s->Start());
  for (auto& s : stages_) TEND_RETURN_NOT_OK(s->Start());
  StartServices();
  for (auto& a : assets_) {
    a->thread = std::thread([a = a.get(), stop] { a->status = a->agent->Run(stop, &a->reload); });
  }
  WaitForAssets(stop, reload);
  for (auto& a : assets_) a->thread.join();
  StopServices();
  for (const auto& a : assets_) {
    if (!a->status) {
      return Fail(assets_.size() > 1 ? a->status.error().Wrap("asset " + a->spec->id)
                                     : a->status.error());
    }
  }
  return Ok();
}

nlohmann::json Runtime::Summary() const {
  nlohmann::json j;
  j["assets"] = nlohmann::json::array();
  for (const auto& a : assets_) {
    nlohmann::json s = a->agent->summary().ToJson();
    const auto& m = a->agent->model();
    s["asset_id"] = a->spec->id;
    s["model"] = m.name() + " v" + m.version();
    s["provider"] = m.info().provider;
    s["source"] = a->agent->reader().Describe();
    j["assets"].push_back(std::move(s));
  }
  if (assets_.size() == 1) {
    for (auto& [k, v] : j["assets"][0].items()) j[k] = v;
  } else {
    for (const char* k : {"windows", "scored", "deadline_misses", "late_results", "overruns",
                          "errors", "raw_alerts"}) {
      int64_t total = 0;
      for (const auto& a : j["assets"]) total += a[k].get<int64_t>();
      j[k] = total;
    }
  }
  for (const auto& s : stages_) s->Report(j);
  for (const auto& s : sinks_) s->Report(j);
  if (!ota_status_.is_null()) j["ota"] = ota_status_;
  return j;
}

}  // namespace tend::runtime
