#include "runtime/ota_service.h"

#include <charconv>

#include "core/log.h"
#include "detect/model_card.h"
#include "model/metadata.h"
#include "ota/fetch.h"

namespace tend::runtime {

int64_t CardVersionNumber(const std::string& model_path) {
  auto meta = model::ReadMetadataProps(model_path);
  if (!meta) return 0;
  auto it = meta->find(detect::kKeyVersion);
  if (it == meta->end()) return 0;
  auto j = nlohmann::json::parse(it->second, nullptr, false);
  if (!j.is_string()) return 0;
  const std::string v = j.get<std::string>();
  int64_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  return ec == std::errc() && p == v.data() + v.size() && n > 0 ? n : 0;
}

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

void OtaSupervisor::Start() {
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

void OtaSupervisor::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void OtaSupervisor::Tick() {
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

Result<std::unique_ptr<OtaService>> OtaService::Create(const Settings& s, LoadModelFn load,
                                                       ReferenceSet reference) {
  std::unique_ptr<OtaService> o(new OtaService());
  o->load_ = std::move(load);
  o->reference_ = std::move(reference);
  const std::string registry = s.GetString("ota.registry");
  agent::ModelWatchOptions wo;
  wo.max_fail_safe = s.GetInt("ota.max_fail_safe");
  wo.storm_alerts = s.GetInt("ota.storm_alerts");
  wo.storm_windows = s.GetInt("ota.storm_windows");
  wo.storm_ratio = s.GetFloat("ota.storm_ratio");
  TEND_ASSIGN_OR_RETURN(o->watch_, agent::ModelWatch::Create(wo).map_error(
                                       [](Error e) { return e.Wrap("OTA probation"); }));
  if (s.GetString("ota.model_dir").empty()) {
    return Fail(
        Error::Invalid("--ota-registry needs --ota-model-dir (where verified models are kept)"));
  }
  if (o->reference_.normal.empty() || o->reference_.anomalous.empty()) {
    return Fail(
        Error::Invalid("OTA needs a local reference set to gate new models: "
                       "--ota-reference-normal and --ota-reference-anomalous"));
  }
  ota::UpdaterOptions uo;
  uo.model_dir = s.GetString("ota.model_dir");
  uo.model_name = s.GetString("ota.model_name");
  uo.profile = s.GetString("ota.profile");
  uo.pinned_root_path = s.GetString("ota.root");
  uo.min_quality = s.GetFloat("ota.min_quality");
  uo.interval_s = s.GetFloat("ota.interval_s");
  uo.probation_s = s.GetInt("ota.probation_s");
  uo.max_model_age_s = s.GetInt("ota.max_model_age_s");
  // Staged rollouts and operator pins/rollbacks in control.json address the device by this id
  // (its MQTT identity); empty: the updater uses the host name, as the identity does.
  uo.device_id = s.GetString("identity.device_id");
  OtaService* self = o.get();
  uo.load_check = [self](const std::string& path) -> Status {
    TEND_ASSIGN_OR_RETURN(auto m, self->load_(path, 1));
    return Ok();
  };
  uo.quality_gate = [self](const std::string& path) -> Result<double> {
    TEND_ASSIGN_OR_RETURN(auto m, self->load_(path, 1));
    return ReferenceAuc(*m, self->reference_);
  };
  uo.on_commit = [self](const std::string& path) { return self->OnCommit(path); };
  std::unique_ptr<ota::Fetcher> fetcher;
  if (registry.rfind("http://", 0) == 0) {
    TEND_ASSIGN_OR_RETURN(fetcher, ota::HttpFetcher::Create(registry).map_error(
                                       [](Error e) { return e.Wrap("OTA registry"); }));
  } else {
    TEND_ASSIGN_OR_RETURN(fetcher, ota::DirFetcher::Create(registry).map_error(
                                       [](Error e) { return e.Wrap("OTA registry"); }));
  }
  TEND_ASSIGN_OR_RETURN(o->updater_,
                        ota::Updater::Create(uo, std::move(fetcher)).map_error([](Error e) {
                          return e.Wrap("OTA");
                        }));
  // Each state change goes to the log and, with telemetry on, to the retained MQTT state
  // factory/{factory_id}/edge/{device_id}/ota (QoS 1, durably spooled; never blocks).
  o->supervisor_ = std::make_unique<OtaSupervisor>(
      o->updater_.get(), o->watch_.get(), s.GetFloat("ota.watch_interval_s"),
      [self](const nlohmann::json& st) {
        TEND_LOG_INFO("ota: {}: {} v{} ({}), backup v{}", st["event"].get<std::string>(),
                      st["model"].get<std::string>(), st["current_version"].get<int64_t>(),
                      st["state"].get<std::string>(), st["backup_version"].get<int64_t>());
        std::lock_guard<std::mutex> lk(self->publish_mu_);
        if (self->publish_) self->publish_(st);
      });
  return o;
}

OtaService::~OtaService() { Stop(); }

// The committed model goes to the pipeline; probation judges it from the window it takes over:
// the next watch generation, or generation 1 when the agent has not started yet (0 is the model
// it starts with).
Status OtaService::OnCommit(const std::string& path) {
  agent::Agent* agent = agent_.load();
  if (!agent) return Ok();  // before start-up the agent loads the current model itself
  TEND_ASSIGN_OR_RETURN(auto m, load_(path, -1));
  const int64_t generation = watch_->generation();
  TEND_RETURN_NOT_OK(agent->SubmitModel(std::move(m)));
  supervisor_->Arm(generation < 0 ? 1 : generation + 1);
  return Ok();
}

Result<std::string> OtaService::StartupModel(const std::string& configured) {
  // The start-up model is adopted by OTA as its first version so that the first update has
  // something to roll back to; a model OTA installed since wins until the operator deploys other
  // bytes at that path. Without one, the agent starts on OTA's current model.
  std::string current = updater_->CurrentModelPath();
  if (!configured.empty()) {
    TEND_ASSIGN_OR_RETURN(current,
                          updater_->AdoptStartupModel(configured, CardVersionNumber(configured))
                              .map_error([](Error e) { return e.Wrap("OTA start-up model"); }));
  }
  // Restarted during probation on the model OTA installed: it is still on probation.
  arm_at_start_ = !current.empty();
  return current;
}

void OtaService::Attach(agent::Agent* agent) {
  agent->AddSink(watch_.get());
  agent_.store(agent);
}

void OtaService::SetPublisher(std::function<void(const nlohmann::json&)> publish) {
  std::lock_guard<std::mutex> lk(publish_mu_);
  publish_ = std::move(publish);
}

void OtaService::Start() {
  if (arm_at_start_) supervisor_->Arm(0);
  updater_->Start();
  supervisor_->Start();
}

void OtaService::Stop() {
  if (supervisor_) supervisor_->Stop();
  if (updater_) updater_->Stop();
}

}  // namespace tend::runtime
