// The agent: source -> windows -> features -> model -> decision -> outputs, for every window,
// inside a deadline. Acquisition runs on its own thread and never blocks on the pipeline (a
// backlog is queued, measured and reported; a full queue is an overrun, counted loudly); a
// watchdog emits the configured fail-safe decision for a window whose deadline passes; models are
// swapped between windows (SIGHUP reload, OTA) so no window is missed or scored half-loaded.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/decision_log.h"
#include "agent/latency_histogram.h"
#include "agent/served_model.h"
#include "core/status.h"
#include "decide/decider.h"
#include "sources/source.h"

namespace tend::agent {

struct AgentOptions {
  std::string model_path;
  std::string source = "sim";          // sources::OpenSource spec
  sources::SourceOptions source_opts;
  double speed = 1.0;                  // replay speed factor; 0 = as fast as possible
  int64_t max_windows = -1;            // stop after this many decisions (-1: until the source ends)
  double duration_s = -1;              // stop after this much signal time (-1: no limit)
  double deadline_s = 3.3;             // per window: window complete -> decision out
  bool fail_safe_alert = true;         // on a missed deadline: alert (no-go) or pass (go)
  Severity fail_safe_severity = Severity::kHigh;
  DebounceOptions debounce;
  int64_t queue_windows = 256;         // backlog capacity between acquisition and the pipeline
  std::string decision_log;            // JSONL path ("" = none)
  int64_t decision_log_max_bytes = 64ll << 20;
  int decision_log_keep = 5;
  bool print = true;                   // a line per decision on stdout
  bool print_json = false;             // ... as JSON instead of text
  std::string asset_id;
  ServeOptions serve;
  double degraded_wear = 0.3;          // simulator only: wear from which a stroke counts as degraded
  double inject_delay_ms_for_test = 0; // test hook: extra time spent per window in the pipeline
};

struct AgentSummary {
  int64_t windows = 0;          // decisions emitted (scored + fail-safe)
  int64_t scored = 0;
  int64_t fail_safe = 0;        // deadline misses
  int64_t late_results = 0;     // results that came after their fail-safe decision
  int64_t overruns = 0;         // windows lost because the backlog queue was full
  int64_t errors = 0;           // windows whose scoring failed (decided fail-safe)
  int64_t raw_alerts = 0;
  int64_t alerts[3] = {0, 0, 0};  // by severity, after debounce
  int64_t max_backlog = 0;
  int64_t reloads = 0, reload_failures = 0;
  LatencyHistogram::Summary latency, features, inference;
  double wall_s = 0, signal_s = 0;
  int64_t rss_start_kb = 0, rss_end_kb = 0;
  // Simulator ground truth, when the source is the press simulator.
  bool has_truth = false;
  double first_degraded_t = -1, first_degraded_wear = -1;
  int64_t first_degraded_window = -1;
  double first_alert_t = -1, first_alert_wear = -1;
  int64_t first_alert_window = -1;
  int64_t healthy_windows = 0, healthy_false_alerts = 0;  // wear < 0.1
  nlohmann::json ToJson() const;
};

class Agent {
 public:
  static Result<std::unique_ptr<Agent>> Create(const AgentOptions& opts);
  ~Agent();

  void AddSink(DecisionSink* sink) { sinks_.push_back(sink); }

  // Runs until the source ends, max_windows/duration is reached, or *stop becomes true. When
  // *reload becomes true the model file is re-read in the background and swapped in between
  // windows (the flag is cleared). Either pointer may be null.
  Status Run(const std::atomic<bool>* stop = nullptr, std::atomic<bool>* reload = nullptr);

  // Hands a ready model to the pipeline; it takes over at the next window. The windowing must
  // equal the current model's (else an error and nothing changes).
  Status SubmitModel(std::unique_ptr<ServedModel> next);

  AgentSummary summary() const;
  // Bumped by every turn of the pipeline loop (at least every 20 ms while it is healthy, idle or
  // not): a value that stops moving means the pipeline thread is stuck (systemd watchdog).
  int64_t heartbeat() const { return heartbeat_.load(std::memory_order_relaxed); }
  const ServedModel& model() const { return *model_; }
  const sources::StreamInfo& stream() const { return source_->info(); }

 private:
  struct Slot {
    std::vector<float> samples;
    int64_t index = 0, start_frame = 0;
    double t_start = 0;
    std::chrono::steady_clock::time_point arrival;
    std::atomic<bool> decided{false};
  };
  Agent() = default;
  void Acquire();
  void Watchdog();
  void Process(Slot& s);
  void EmitFailSafe(Slot& s, const char* why);
  void Emit(Decision& d);
  double WearAt(int64_t start_frame) const;
  bool Claim(Slot& s) {
    bool expected = false;
    return s.decided.compare_exchange_strong(expected, true);
  }

  AgentOptions opts_;
  std::unique_ptr<sources::Source> source_;
  std::unique_ptr<sources::Windower> windower_;
  std::unique_ptr<ServedModel> model_;
  std::unique_ptr<ServedModel> pending_model_;
  std::mutex pending_mu_;
  std::unique_ptr<Decider> decider_;
  std::unique_ptr<DecisionLog> log_;
  std::vector<DecisionSink*> sinks_;

  // Backlog ring between acquisition and pipeline.
  std::vector<std::unique_ptr<Slot>> ring_;
  int64_t head_ = 0, tail_ = 0;   // guarded by mu_
  bool eof_ = false;              // guarded by mu_
  Status acquire_status_;         // guarded by mu_
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> heartbeat_{0};
  bool stop_watchdog_ = false;    // guarded by mu_

  std::mutex emit_mu_;            // decisions are emitted by the pipeline or the watchdog
  Decision decision_;             // reused: its strings keep their capacity
  ScoreOut score_;
  std::string line_;
  AgentSummary sum_;
  LatencyHistogram lat_, feat_, inf_;
  std::vector<sources::PressSimulator::StrokeLabel> truth_;
  mutable std::mutex sum_mu_;
};

int64_t ResidentKb();

}  // namespace tend::agent
