// Over-the-air model updates inside the agent: the signed updater (src/ota) polling the registry,
// the start-up model adopted as OTA's first version, new models load-checked and gated on the
// local reference set before they reach the asset's pipeline, and probation: a supervisor thread
// watches the new model's live decisions (agent::ModelWatch) and rolls back on misbehaviour. It
// publishes each OTA state change (log, and the MQTT "ota" device state when telemetry is on).
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "agent/agent.h"
#include "agent/model_watch.h"
#include "core/settings.h"
#include "metrics/exporter.h"
#include "ota/updater.h"
#include "runtime/reference_gate.h"

namespace tend::runtime {

// The version a tend model file carries in its card (tend.version) when it is a whole number
// ("3"), else 0: OTA adopts a start-up model under it, so the log, metrics and OTA agree.
int64_t CardVersionNumber(const std::string& model_path);

// Which state change a status is, against the previous one ("" when none): the MQTT "ota" state
// is published on these only. Several at once: the most important one names the message.
std::string OtaEvent(const nlohmann::json& prev, const nlohmann::json& cur);
// The updater's StatusJson() as the Prometheus exporter's OTA figures.
metrics::OtaFigures OtaFiguresOf(const nlohmann::json& status);

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
  void Start();
  void Stop();
  void Tick();

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

// Loads a model file the way the asset's pipeline will serve it.
using LoadModelFn =
    std::function<Result<std::unique_ptr<agent::Model>>(const std::string& path, int warmup_runs)>;

class OtaService {
 public:
  // From the ota.* settings (ota.registry must be set). `load` loads candidates; `reference` is
  // the local reference set the gate scores them on.
  static Result<std::unique_ptr<OtaService>> Create(const Settings& settings, LoadModelFn load,
                                                    ReferenceSet reference);
  ~OtaService();

  // The model to start with: `configured` (the asset's model setting) adopted as OTA's first
  // version, or the model OTA installed since. Empty `configured`: OTA's current model.
  Result<std::string> StartupModel(const std::string& configured);
  // The asset whose model OTA manages; its decisions feed the probation watch.
  void Attach(agent::Agent* agent);
  // Where OTA state changes go besides the log (the MQTT "ota" device state).
  void SetPublisher(std::function<void(const nlohmann::json&)> publish);

  void Start();
  void Stop();
  nlohmann::json StatusJson() const { return updater_->StatusJson(); }
  metrics::OtaFigures Figures() const { return OtaFiguresOf(updater_->StatusJson()); }

 private:
  OtaService() = default;
  Status OnCommit(const std::string& path);

  LoadModelFn load_;
  ReferenceSet reference_;
  std::unique_ptr<agent::ModelWatch> watch_;
  std::unique_ptr<ota::Updater> updater_;
  std::unique_ptr<OtaSupervisor> supervisor_;
  std::atomic<agent::Agent*> agent_{nullptr};
  bool arm_at_start_ = false;
  std::mutex publish_mu_;
  std::function<void(const nlohmann::json&)> publish_;
};

}  // namespace tend::runtime
