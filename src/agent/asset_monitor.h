// One asset's monitors in the pipeline (docs/alarms.md): health over many events (warning /
// alarm), per-feature drift against commissioning, input health of the raw window, and the
// optional adaptive baseline. The agent runs them between the decider and the sinks, so every
// sink (stdout, decision log, MQTT, metrics) sees the same decision with its health fields set;
// a sink cannot change what the others see. Built from the model's card (tend's own model files:
// the calibration's score distribution, "tend.feature_reference", train_mean/train_std), and
// rebuilt from the new model's card when the agent swaps models (SIGHUP, OTA).
//
// Lifetime: with an adaptive baseline, the model reads the baseline this object owns: destroy
// the agent (and its model) first.
//
// Threads: OnModel/OnDecision are called by the agent one at a time, in event order (pipeline or
// watchdog thread, under the agent's emit lock); they allocate nothing per event. Figures() and
// Summary() may be called from any thread (a scrape, the run summary): a mutex guards the state
// and they hold it only to copy.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agent/model.h"
#include "core/event.h"
#include "core/status.h"
#include "decide/adaptive_baseline.h"
#include "decide/decision.h"
#include "decide/drift.h"
#include "decide/health.h"
#include "metrics/monitor_metrics.h"

namespace tend::agent {

struct MonitorOptions {
  bool health = true, drift = true, input = true;
  bool adaptive = false;         // adaptive baseline (off by default)
  HealthOptions health_options;  // alarm_z comes from each model
  DriftOptions drift_options;
  InputHealthOptions input_options;
  AdaptiveOptions adaptive_options;
  // A window teaches the adaptive baseline only while the warning CUSUM is below this share of
  // its level (far from a warning, not only "no warning yet").
  double adaptive_max_cusum_share = 0.5;
  bool live = false;         // a live source: the sample rate is checked against the caller's clock
  double rate_check_s = 10;  // seconds of the caller's clock per sample-rate check
  Status Validate() const;
  bool any() const { return health || drift || input; }
};

class AssetMonitor {
 public:
  // Monitors for `model` (the ones its card allows; what is missing is logged once). An error
  // names a bad setting.
  static Result<std::unique_ptr<AssetMonitor>> Create(std::string asset_id,
                                                      const MonitorOptions& options, Model& model);
  ~AssetMonitor();

  // The agent now serves `model`: rebuild every monitor from its card (the baselines belong to
  // the model they came from; an adaptive baseline restarts at the new model's anchor). Also a
  // reset: the same model reloaded (SIGHUP) restarts the monitors from commissioning.
  void OnModel(Model& model);
  // One decided event (scored or fail-safe), before any sink sees it: updates the monitors and
  // sets the decision's health, input_problems and baseline fields.
  void OnDecision(const EventView& event, Decision& d);

  metrics::MonitorFigures Figures() const;
  // Final state, first warning / alarm windows, input problem counts, adaptation journal.
  nlohmann::json Summary() const;
  bool monitoring() const;  // false when the current model allows no monitor at all
  const std::string& asset_id() const { return asset_id_; }

 private:
  AssetMonitor(std::string asset_id, const MonitorOptions& o);
  struct State;
  static std::unique_ptr<State> Build(const std::string& id, const MonitorOptions& o, Model& model);
  void UpdateHealth(Decision& d);
  void UpdateInput(const EventView& event, Decision& d);
  void UpdateBaseline(Decision& d);
  void OnHealthChange(HealthState state, const Decision& d);

  const std::string asset_id_;
  const MonitorOptions opt_;
  mutable std::mutex mu_;
  std::unique_ptr<State> st_;  // guarded by mu_
  std::optional<int64_t> first_warning_, first_alarm_;
  int64_t models_ = 0;  // models monitored so far (1 = the start-up model)
};

}  // namespace tend::agent
