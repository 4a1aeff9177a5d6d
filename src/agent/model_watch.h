// Per-model health for the probation of a newly installed model: a DecisionSink that counts, for
// the model in service since it took over, fail-safe decisions (scoring errors and deadline
// misses) and alerts over its last N windows, next to the alert rate of the model before it.
// Whoever owns the rollback (the OTA updater in `tend run`) polls Misbehaviour() from its own
// thread; the pipeline thread only does a few integer updates (no allocation, no I/O). The agent
// does not know about OTA: this class only says what it sees.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"
#include "decide/decision.h"

namespace tend::agent {

struct ModelWatchOptions {
  // Misbehaviour when the model in service made this many fail-safe decisions (its scoring failed
  // or the deadline passed); 0 disables the check.
  int64_t max_fail_safe = 3;
  // Alert storm: more than storm_alerts alerts (after debounce) in the model's last storm_windows
  // windows, at a rate above storm_ratio x the previous model's rate over its own last
  // storm_windows windows. Without a previous model to compare (agent restarted in probation),
  // the absolute count alone decides. storm_alerts 0 disables the check.
  int64_t storm_windows = 100;
  int64_t storm_alerts = 20;
  double storm_ratio = 5;

  Status Validate() const;
};

struct ModelHealth {
  int64_t generation = -1;  // -1: no model yet; 0: the start-up model; +1 at every swap
  std::string model_name, model_version;
  int64_t windows = 0;    // decisions since this model took over
  int64_t fail_safe = 0;  // of which fail-safe (scoring error or deadline passed)
  int64_t alerts = 0;     // alerts (after debounce) by this model, fail-safe ones not counted
  int64_t recent_windows = 0, recent_alerts = 0;      // over its last storm_windows windows
  int64_t previous_windows = 0, previous_alerts = 0;  // the model before, its last windows
  nlohmann::json ToJson() const;
};

class ModelWatch : public DecisionSink {
 public:
  static Result<std::unique_ptr<ModelWatch>> Create(const ModelWatchOptions& options);

  void OnDecision(const Decision& decision) override;
  void OnModelInfo(const ModelInfo& info) override;

  ModelHealth Health() const;
  int64_t generation() const;
  const ModelWatchOptions& options() const { return opts_; }

  // Why the model in service misbehaves, "" when it does not.
  std::string Misbehaviour() const { return Judge(Health(), opts_); }
  static std::string Judge(const ModelHealth& health, const ModelWatchOptions& options);

 private:
  explicit ModelWatch(const ModelWatchOptions& options);

  ModelWatchOptions opts_;
  mutable std::mutex mu_;  // held for a few increments; never across I/O
  ModelHealth h_;
  std::vector<uint8_t> ring_;  // 1 = alert, for the last storm_windows windows
  size_t next_ = 0;
};

}  // namespace tend::agent
