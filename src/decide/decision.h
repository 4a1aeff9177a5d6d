// What the pipeline decides for every window, and the interface through which outputs
// (stdout, decision log, MQTT telemetry, Prometheus metrics) observe decisions. Sinks are called
// on the pipeline thread and must never block: they copy what they need and return.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "decide/health.h"

namespace tend {

// The tier of a score against the model's thresholds. kNone: below every threshold (no alert
// tier at all); LOW, MEDIUM and HIGH are the alert tiers (SPEC: "NONE" everywhere a score is
// below every threshold: stdout, JSON, MQTT, metric labels).
enum class Severity { kNone = 0, kLow = 1, kMedium = 2, kHigh = 3 };
inline constexpr int kSeverityCount = 4;

inline const char* SeverityName(Severity s) {
  switch (s) {
    case Severity::kNone: return "NONE";
    case Severity::kLow: return "LOW";
    case Severity::kMedium: return "MEDIUM";
    case Severity::kHigh: return "HIGH";
  }
  return "NONE";
}

struct Decision {
  std::string asset_id;          // which asset (machine, station) the event came from
  int64_t event_id = -1;         // stroke or part number (the source's count); -1: none
  int64_t part_id = -1;          // the PLC's part number matched to the event; -1: none
  int64_t window_index = 0;      // 0-based, per asset and run
  double t_start_s = 0;          // window start, seconds since the start of the source
  std::chrono::system_clock::time_point timestamp;  // when the decision was made (UTC)
  float anomaly_score = 0;       // the model's score (higher = more anomalous)
  Severity severity = Severity::kNone;  // tier of the score against the model's thresholds
  bool is_alert = false;         // after debounce (k of n)
  bool raw_alert = false;        // this window alone crossed the alert threshold
  bool fail_safe = false;        // the configured fail-safe decision (why: fail_safe_reason)
  std::vector<std::string> top_sensors;  // features/channels contributing most, best first
  double features_ms = 0;        // per-stage latency
  double inference_ms = 0;
  double latency_ms = 0;         // window complete -> decision out
  int64_t backlog_windows = 0;   // windows waiting behind this one when it was decided
  std::string model_name;
  std::string model_version;
  // The thresholds the severity was judged against (the fleet console draws them under the
  // scores); all 0 when no decider set them.
  float threshold_low = 0, threshold_medium = 0, threshold_high = 0;
  // Where evidence for this decision is kept on the device (e.g. the image of a rejected part);
  // empty when none.
  std::string evidence_ref;
  // The model's feature vector for this event (for monitors such as drift detection); empty when
  // the model kind has none. Points into the model's buffers: valid only during OnDecision, and
  // a sink that copies the decision must not keep it.
  std::span<const float> features;
  // Why this is a fail-safe decision (fail_safe true): kFailSafeDeadline, kFailSafeError (the
  // model could not score the event) or kFailSafeInvalidEvent (the source could not produce a
  // valid event, e.g. an undecodable image); empty otherwise. Points at those constants.
  std::string_view fail_safe_reason;
  // Health over many events and the monitors' view of this event (docs/alarms.md), set by the
  // agent's monitors (agent/asset_monitor.h) after the decider and before any sink sees the
  // decision. has_health is false when the asset runs no health monitor.
  bool has_health = false;
  HealthState health = HealthState::kOk;
  float health_cusum = 0;        // the warning CUSUM S_w
  float health_alarm_cusum = 0;  // the alarm CUSUM S_a
  uint32_t input_problems = 0;   // InputProblem bits of this event's raw window (decide/drift.h)
  int64_t baseline_step = -1;    // adaptive baseline step the features were scored with; -1: off
  bool baseline_adapted = false;  // this decision committed a new adaptive baseline step
};

inline constexpr std::string_view kFailSafeDeadline = "deadline";
inline constexpr std::string_view kFailSafeError = "error";
inline constexpr std::string_view kFailSafeInvalidEvent = "invalid_event";

struct ModelInfo {
  std::string name;
  std::string version;           // e.g. "3" or "3.1"
  std::string provider;          // execution provider in use, e.g. "CPUExecutionProvider"
  int64_t created_unix = 0;      // from the model's metadata; 0 if unknown
  int64_t loaded_unix = 0;
};

class DecisionSink {
 public:
  virtual ~DecisionSink() = default;
  virtual void OnDecision(const Decision& decision) = 0;
  // The model in service changed (start, SIGHUP reload, OTA swap or rollback).
  virtual void OnModelInfo(const ModelInfo& /*info*/) {}
};

}  // namespace tend
