// `tend fleet simulate`: many devices' traffic, published to a real broker in SPEC's topics and
// payloads (built by the same functions the agent uses): a score per stroke (18 a minute per
// device), alerts on the alerts topic too, health every 15 s (with spool figures and the
// thresholds), the retained online status and OTA state. With a registry, every simulated device
// runs a real ota::Updater (its own model directory, signature checks, staged-rollout waves,
// control.json directives) and behaves on the releases it installs: a version listed in
// misbehave_versions alert-storms and is rolled back by the device after misbehave_after_s.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace tend::fleet {

struct SimulateOptions {
  std::string broker_url;  // mqtt://host:port or mqtts://
  int mqtt_version = 5;
  std::string ca_file, cert_file, key_file;
  int devices = 100;
  std::string prefix = "sim";  // device ids: <prefix>-0001 ...
  int factories = 2, lines = 5;
  double rate = 1;               // multiplies every rate: 10 = ten times the real traffic
  double duration_s = 0;         // 0: until Stop()
  double alert_fraction = 0.01;  // share of a healthy device's strokes that alert
  int wearing_devices = -1;      // devices with a worn die (alert on ~25 %); -1: 2 % of them
  int connections = 20;          // MQTT connections the devices share
  std::string model_name = "press-ae";
  int64_t model_version = 1;  // without a registry: the version every device reports
  // OTA against a registry (a directory or http://): real updaters, one per device.
  std::string registry, root_path, state_dir, profile = "x86-cpu-fp32";
  double ota_interval_s = 60;
  std::vector<int64_t> misbehave_versions, refuse_versions;
  double misbehave_after_s = 5;
  uint64_t seed = 1;
};

struct SimulateStats {
  int64_t scores = 0, alerts = 0, health = 0, states = 0, publish_errors = 0;
  int64_t installs = 0, rollbacks = 0;
  double elapsed_s = 0;
};

class Simulator {
 public:
  static Result<std::unique_ptr<Simulator>> Start(const SimulateOptions& opts);
  ~Simulator();
  SimulateStats stats() const;
  bool Done() const;  // duration_s elapsed
  void Stop();        // publishes every device's offline status, disconnects

  class Impl;

 private:
  explicit Simulator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The device id of simulated device i (0-based): "<prefix>-0001"...
std::string SimulatedDeviceId(const std::string& prefix, int i);

}  // namespace tend::fleet
