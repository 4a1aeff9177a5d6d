// The runtime: builds a running agent from a RunSpec and the registry. Per asset it loads the
// model (its model kind picked from the file), opens the source that feeds it and starts an
// agent::Agent pipeline (own threads, deadline, fail-safe, debounce); per device it creates the
// sinks (stdout, decision log, MQTT, Prometheus, ...), OTA supervision and the systemd
// notifications, and tears them down in the right order (telemetry stops before the exporter it
// reads from, sinks before the agents that feed them are gone).
#pragma once

#include <atomic>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "agent/agent.h"
#include "core/status.h"
#include "runtime/ota_service.h"
#include "runtime/registry.h"
#include "runtime/spec.h"
#include "runtime/state_lock.h"
#include "runtime/systemd_watchdog.h"
#include "telemetry/identity.h"

namespace tend::runtime {

class Runtime {
 public:
  static Result<std::unique_ptr<Runtime>> Create(RunSpec spec, const Registry& registry);
  ~Runtime();

  // Runs every asset until its source ends (or max windows), or *stop becomes true; *reload
  // (SIGHUP) re-reads every asset's model. Returns the first asset's source error, if any.
  Status Run(const std::atomic<bool>* stop, std::atomic<bool>* reload);

  // After Run(): per asset (asset_id, model, provider, the agent's counts and latencies) under
  // "assets"; the first asset's fields also at the top level (one-asset runs read like before);
  // plus what the sinks and OTA report ("telemetry", "truth", "ota").
  nlohmann::json Summary() const;

  size_t asset_count() const { return assets_.size(); }
  agent::Agent& agent(size_t i) { return *assets_[i]->agent; }
  const telemetry::Identity& identity() const { return identity_; }

 private:
  struct Asset {
    AssetSpec* spec = nullptr;
    // Declared before the agent: the agent's model reads the monitor's adaptive baseline, so the
    // agent goes first.
    std::unique_ptr<agent::AssetMonitor> monitor;
    std::unique_ptr<agent::Agent> agent;
    std::atomic<bool> reload{false};
    Status status;
    std::thread thread;
  };

  Runtime() = default;
  Status SetUp();
  Status SetUpOta();
  Status LockStateDir();
  Result<std::unique_ptr<agent::Model>> LoadModel(const AssetSpec& a, const std::string& path,
                                                  int warmup_runs) const;
  Status ApplyKindDefaults(const std::string& kind, Settings& settings) const;
  Status BuildAsset(AssetSpec& a);
  Status CreateStages();
  Result<std::unique_ptr<agent::EventReader>> AddStages(const AssetSpec& a,
                                                        std::unique_ptr<agent::EventReader> reader,
                                                        const agent::Model& model);
  Status CreateSinks();
  void StartServices();
  void StopServices();
  void WaitForAssets(const std::atomic<bool>* stop, std::atomic<bool>* reload);

  RunSpec spec_;
  const Registry* registry_ = nullptr;
  telemetry::Identity identity_;
  std::string state_dir_;
  std::unique_ptr<StateDirLock> state_lock_;
  DeviceServices services_;
  std::unique_ptr<DeviceContext> device_;  // what stages and sinks are created with
  std::unique_ptr<OtaService> ota_;
  std::vector<std::unique_ptr<Asset>> assets_;
  std::vector<std::unique_ptr<Stage>> stages_;  // event stages, registration order
  std::vector<std::unique_ptr<Sink>> sinks_;    // creation order; destroyed in reverse
  std::unique_ptr<SystemdWatchdog> sd_watchdog_;
  bool services_started_ = false, services_stopped_ = false;
  nlohmann::json ota_status_;
};

// This machine's host name, made safe for a topic level ("edge-device" when there is none).
std::string Hostname();

}  // namespace tend::runtime
