// The pipeline of one asset: events -> model -> decision -> sinks, for every event, inside a
// deadline. Acquisition runs on its own thread and copies each event into a preallocated slot
// (byte buffers sized from the reader's event spec); a live source never waits for the pipeline
// (a full backlog is an overrun, counted loudly), a replay is waited for (back-pressure: nothing
// is dropped). A watchdog emits the configured fail-safe decision for an event whose deadline
// passes; models are swapped between events (SIGHUP reload, OTA) so that no event is missed or
// scored half-loaded. The agent knows its sources, models and sinks only through their
// interfaces: the runtime (src/runtime) assembles it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/event_reader.h"
#include "agent/latency_histogram.h"
#include "agent/model.h"
#include "core/status.h"
#include "decide/decider.h"

namespace tend::agent {

class AssetMonitor;

// Loads a model file the way the agent's model was loaded (SIGHUP reload).
using ModelLoader = std::function<Result<std::unique_ptr<Model>>(const std::string& path)>;

struct AgentOptions {
  std::string asset_id = "asset-1";
  int64_t max_windows = -1;     // stop after this many decisions (-1: until the source ends)
  double deadline_s = 3.3;      // per event: event complete -> decision out
  bool fail_safe_alert = true;  // on a missed deadline: alert (no-go) or pass (go)
  Severity fail_safe_severity = Severity::kHigh;
  DebounceOptions debounce;
  int64_t queue_windows = 256;  // backlog capacity between acquisition and the pipeline
  int top_k = 3;                // top contributors reported per decision
  ModelLoader loader;           // for reloads; without one a reload request is refused
};

struct AgentSummary {
  int64_t windows = 0;  // decisions emitted (scored + fail-safe)
  int64_t scored = 0;
  int64_t fail_safe = 0;     // fail-safe decisions (deadline passed or scoring failed)
  int64_t late_results = 0;  // results that came after their fail-safe decision
  int64_t overruns = 0;      // events lost because the backlog queue was full (live sources)
  int64_t errors = 0;        // events the model could not score (decided fail-safe)
  // Events the source could not produce validly (EventView::error; decided fail-safe), and how
  // many of each kind (the error's innermost cause, numbers masked; at most kMaxInvalidKinds
  // kinds, the rest under "other").
  int64_t invalid_events = 0;
  static constexpr size_t kMaxInvalidKinds = 16;
  std::map<std::string, int64_t, std::less<>> invalid_kinds;
  int64_t raw_alerts = 0;
  int64_t alerts[3] = {0, 0, 0};  // by severity, after debounce
  int64_t max_backlog = 0;
  int64_t reloads = 0, reload_failures = 0;
  LatencyHistogram::Summary latency, features, inference;
  double wall_s = 0, signal_s = 0;
  int64_t rss_start_kb = 0, rss_end_kb = 0;
  nlohmann::json ToJson() const;
};

class Agent {
 public:
  // The reader's events must be what the model takes (ModelInput::event).
  static Result<std::unique_ptr<Agent>> Create(const AgentOptions& opts,
                                               std::unique_ptr<Model> model,
                                               std::unique_ptr<EventReader> reader);
  ~Agent();

  // Before Run(): sinks are called on the pipeline thread (or the watchdog's, for a fail-safe
  // decision), one decision at a time, in event order.
  void AddSink(DecisionSink* sink) { sinks_.push_back(sink); }
  // Before Run(): the asset's monitors (health, drift, input health, adaptive baseline), run
  // after the decider and before the sinks on every decision, and told of every model swap.
  // Not owned; nullptr: none.
  void SetMonitor(AssetMonitor* monitor) { monitor_ = monitor; }

  // Runs until the source ends, max_windows is reached, or *stop becomes true. When *reload
  // becomes true the model file is re-read in the background and swapped in between events (the
  // flag is cleared). Either pointer may be null. Returns the source's error, if any.
  Status Run(const std::atomic<bool>* stop = nullptr, std::atomic<bool>* reload = nullptr);

  // Hands a ready model to the pipeline; it takes over at the next event. It must take the same
  // input as the current model (else an error and nothing changes).
  Status SubmitModel(std::unique_ptr<Model> next);

  AgentSummary summary() const;
  // Bumped by every turn of the pipeline loop (at least every 20 ms while it is healthy, idle or
  // not): a value that stops moving means the pipeline thread is stuck (systemd watchdog).
  int64_t heartbeat() const { return heartbeat_.load(std::memory_order_relaxed); }
  // True once Run() has returned.
  bool finished() const { return finished_.load(); }
  const Model& model() const { return *model_; }
  const EventReader& reader() const { return *reader_; }
  const AgentOptions& options() const { return opts_; }

  // Test hook: called on the pipeline thread after each event is scored, before its decision
  // (e.g. to make the pipeline slower than its deadline).
  void SetAfterScoreHookForTest(std::function<void()> hook) { after_score_ = std::move(hook); }

 private:
  struct Slot {
    std::vector<uint64_t> storage;  // the event's bytes (8-byte aligned for any element type)
    int64_t index = 0, event_id = -1, part_id = -1, start_frame = 0;
    double t_start = 0;
    double source_span_s = -1;                      // EventView::source_span_s
    std::chrono::steady_clock::time_point arrival;  // the deadline counts from here
    std::string error;  // EventView::error (capacity reserved: copying it allocates nothing)
    std::atomic<bool> decided{false};
  };
  Agent() = default;
  void Acquire();
  void Enqueue(const EventView& v);
  void Watchdog();
  void Process(Slot& s);
  void SwapPendingModel();
  void EmitFailSafe(Slot& s, const char* why, std::string_view reason);
  void DecideInvalid(Slot& s);
  void Emit(const EventView& event, Decision& d);
  EventView ViewOf(const Slot& s) const;
  bool Claim(Slot& s) {
    bool expected = false;
    return s.decided.compare_exchange_strong(expected, true);
  }

  AgentOptions opts_;
  std::unique_ptr<EventReader> reader_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Model> pending_model_;
  std::mutex pending_mu_;
  std::unique_ptr<Decider> decider_;
  std::vector<DecisionSink*> sinks_;
  AssetMonitor* monitor_ = nullptr;
  bool backpressure_ = false;    // the reader is a replay: wait for room instead of dropping
  bool due_when_taken_ = false;  // EventReader::due_when_taken()
  std::function<void()> after_score_;

  // Backlog ring between acquisition and pipeline.
  std::vector<std::unique_ptr<Slot>> ring_;
  int64_t head_ = 0, tail_ = 0;  // guarded by mu_
  bool eof_ = false;             // guarded by mu_
  Status acquire_status_;        // guarded by mu_
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> finished_{false};
  std::atomic<int64_t> heartbeat_{0};
  bool stop_watchdog_ = false;  // guarded by mu_

  std::mutex emit_mu_;  // decisions are emitted by the pipeline or the watchdog
  Decision decision_;   // reused: its strings keep their capacity
  ScoreOut score_;
  AgentSummary sum_;
  LatencyHistogram lat_, feat_, inf_;
  mutable std::mutex sum_mu_;
};

int64_t ResidentKb();

}  // namespace tend::agent
