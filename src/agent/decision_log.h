// Append-only JSONL decision log with size-based rotation (decisions.jsonl -> .1 -> .2 ...),
// so that a device keeps a bounded local record of every decision for audits and retraining.
#pragma once

#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "decide/decision.h"

namespace tend::agent {

// The JSON form of a decision, shared by the decision log, `tend score` and stdout --json:
// SPEC's score payload fields (timestamp, anomaly_score rounded to 4 decimals, is_alert,
// severity, top_sensors) plus window, t, latency and the model.
nlohmann::json DecisionJson(const Decision& d, const std::string& asset_id = {});
// The monitors' fields of a decision (docs/alarms.md), each only when set: health,
// health_cusum, health_alarm_cusum (an asset with a health monitor), input_problems
// ("flat_line,non_finite", when the raw window had one), baseline_step (adaptive baseline on)
// and baseline_adapted (true on the decision that committed a step).
void AddMonitorJson(const Decision& d, nlohmann::json& j);
std::string IsoTimestamp(std::chrono::system_clock::time_point t);
double Round4(double x);

class DecisionLog {
 public:
  static Result<std::unique_ptr<DecisionLog>> Open(const std::string& path, int64_t max_bytes,
                                                   int keep);
  ~DecisionLog();
  Status Append(const std::string& line);
  Status Flush();

 private:
  DecisionLog() = default;
  Status Rotate();
  std::string path_;
  std::FILE* f_ = nullptr;
  int64_t size_ = 0, max_bytes_ = 0;
  int keep_ = 5;
};

}  // namespace tend::agent
