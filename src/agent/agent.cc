#include "agent/agent.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <fstream>
#include <future>
#include <limits>

#include "agent/asset_monitor.h"
#include "core/log.h"

namespace tend::agent {

using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kMaxErrorBytes = 512;  // EventView::error kept per slot (longer ones are cut)
// A slot of a source whose events are due when the pipeline takes them: its clock is not started.
constexpr Clock::time_point kNotDueYet = Clock::time_point::max();

// The kind of a source's error, for counting and logging once: its innermost cause (errors are
// wrapped "where: why", so the text after the last ": ") with every run of digits as '#', so
// that "frame 17 incomplete" and "frame 18 incomplete" are one kind. Written into `buf`.
std::string_view ErrorKind(std::string_view msg, std::array<char, 96>& buf) {
  const size_t cut = msg.rfind(": ");
  if (cut != std::string_view::npos && cut + 2 < msg.size()) msg.remove_prefix(cut + 2);
  size_t n = 0;
  for (size_t i = 0; i < msg.size() && n < buf.size(); ++i) {
    const bool digit = msg[i] >= '0' && msg[i] <= '9';
    if (digit && n > 0 && buf[n - 1] == '#') continue;
    buf[n++] = digit ? '#' : msg[i];
  }
  return {buf.data(), n};
}

}  // namespace

int64_t ResidentKb() {
  std::ifstream f("/proc/self/statm");
  int64_t size = 0, resident = 0;
  if (!(f >> size >> resident)) return 0;
  return resident * (::sysconf(_SC_PAGESIZE) / 1024);
}

nlohmann::json AgentSummary::ToJson() const {
  return nlohmann::json{
      {"windows", windows},
      {"scored", scored},
      {"deadline_misses", fail_safe - invalid_events},
      {"late_results", late_results},
      {"overruns", overruns},
      {"errors", errors},
      {"invalid_events", invalid_events},
      {"invalid_event_kinds", invalid_kinds},
      {"raw_alerts", raw_alerts},
      {"alerts", {{"LOW", alerts[0]}, {"MEDIUM", alerts[1]}, {"HIGH", alerts[2]}}},
      {"max_backlog", max_backlog},
      {"reloads", reloads},
      {"reload_failures", reload_failures},
      {"latency", latency.ToJson()},
      {"features", features.ToJson()},
      {"inference", inference.ToJson()},
      {"wall_s", wall_s},
      {"signal_s", signal_s},
      {"rss_start_kb", rss_start_kb},
      {"rss_end_kb", rss_end_kb}};
}

Result<std::unique_ptr<Agent>> Agent::Create(const AgentOptions& opts, std::unique_ptr<Model> model,
                                             std::unique_ptr<EventReader> reader) {
  if (!model || !reader) return Fail(Error::Internal("agent: a model and a reader are required"));
  if (!(opts.deadline_s > 0) || !std::isfinite(opts.deadline_s)) {
    return Fail(Error::Invalid("deadline must be a finite number of seconds > 0"));
  }
  if (opts.queue_windows < 1) return Fail(Error::Invalid("queue must hold at least 1 window"));
  TEND_RETURN_NOT_OK(opts.debounce.Validate());
  if (!(reader->spec() == model->input().event)) {
    return Fail(Error::Invalid(reader->Describe() + " delivers " + reader->spec().ToString() +
                               " events, but model " + model->path() + " takes " +
                               model->input().event.ToString()));
  }
  auto thresholds = model->thresholds();
  TEND_RETURN_NOT_OK(thresholds.Validate().map_error(
      [&](Error e) { return e.Wrap(model->path() + ": model metadata"); }));

  std::unique_ptr<Agent> a(new Agent());
  a->opts_ = opts;
  a->decider_ = std::make_unique<Decider>(thresholds, opts.debounce);
  a->backpressure_ = !reader->live();
  a->due_when_taken_ = reader->due_when_taken();
  const size_t words = (reader->spec().bytes() + sizeof(uint64_t) - 1) / sizeof(uint64_t);
  a->ring_.reserve(static_cast<size_t>(opts.queue_windows));
  for (int64_t i = 0; i < opts.queue_windows; ++i) {
    auto s = std::make_unique<Slot>();
    s->storage.assign(words, 0);
    s->error.reserve(kMaxErrorBytes);
    a->ring_.push_back(std::move(s));
  }
  a->model_ = std::move(model);
  a->reader_ = std::move(reader);
  a->model_->PrepareOut(a->score_);
  a->decision_.asset_id = opts.asset_id;
  a->decision_.top_sensors.reserve(static_cast<size_t>(std::max(0, opts.top_k)));
  return a;
}

Agent::~Agent() = default;

Status Agent::SubmitModel(std::unique_ptr<Model> next) {
  const ModelInput& a = next->input();
  const ModelInput& b = model_->input();
  if (!a.SameAs(b)) {
    return Fail(Error::Invalid("new model takes other input (" + a.Describe() + " vs " +
                               b.Describe() + "); restart the agent to change it"));
  }
  TEND_RETURN_NOT_OK(next->thresholds().Validate());
  std::lock_guard<std::mutex> lk(pending_mu_);
  pending_model_ = std::move(next);
  return Ok();
}

EventView Agent::ViewOf(const Slot& s) const {
  EventView v;
  v.asset_id = opts_.asset_id;
  v.event_id = s.event_id;
  v.part_id = s.part_id;
  v.index = s.index;
  v.start_frame = s.start_frame;
  v.t_start_s = s.t_start;
  v.source_span_s = s.source_span_s;
  v.arrival = s.arrival;
  v.error = s.error;
  v.spec = reader_->spec();
  v.bytes = std::span<const std::byte>(reinterpret_cast<const std::byte*>(s.storage.data()),
                                       v.spec.bytes());
  return v;
}

// Acquisition thread: copies one event into the next free slot. A live source never waits (a
// full ring is an overrun); a replay waits for room, so nothing is lost.
void Agent::Enqueue(const EventView& v) {
  std::unique_lock<std::mutex> lk(mu_);
  const auto capacity = static_cast<int64_t>(ring_.size());
  if (tail_ - head_ >= capacity) {
    if (!backpressure_) {
      lk.unlock();
      std::lock_guard<std::mutex> sl(sum_mu_);
      sum_.overruns++;
      TEND_LOG_WARN("{}: backlog full ({} windows): window {} at t={:.3f}s dropped (overrun)",
                    opts_.asset_id, ring_.size(), v.index, v.t_start_s);
      return;
    }
    while (tail_ - head_ >= capacity && !stop_.load()) {
      cv_.wait_for(lk, std::chrono::milliseconds(50));
    }
    if (tail_ - head_ >= capacity) return;  // stopping
  }
  Slot& s = *ring_[static_cast<size_t>(tail_ % capacity)];
  lk.unlock();
  const size_t n = std::min(v.bytes.size(), s.storage.size() * sizeof(uint64_t));
  std::memcpy(s.storage.data(), v.bytes.data(), n);
  s.index = v.index;
  s.event_id = v.event_id;
  s.part_id = v.part_id;
  s.start_frame = v.start_frame;
  s.t_start = v.t_start_s;
  s.source_span_s = v.source_span_s;
  // The deadline's clock: when the pipeline takes the event (a replay as fast as possible), when
  // the source says the event arrived (a camera frame, a watched file), else now.
  s.arrival = due_when_taken_                    ? kNotDueYet
              : v.arrival != Clock::time_point{} ? std::min(v.arrival, Clock::now())
                                                 : Clock::now();
  s.error.assign(v.error.substr(0, std::min(v.error.size(), s.error.capacity())));
  s.decided.store(false);
  lk.lock();
  tail_++;
  const int64_t backlog = tail_ - head_;
  lk.unlock();
  cv_.notify_all();
  std::lock_guard<std::mutex> sl(sum_mu_);
  sum_.max_backlog = std::max(sum_.max_backlog, backlog - 1);
}

void Agent::Acquire() {
  const EmitEvent emit = [this](const EventView& v) { Enqueue(v); };
  Status st = reader_->Run(stop_, emit);
  {
    std::lock_guard<std::mutex> lk(mu_);
    eof_ = true;
    acquire_status_ = st;
  }
  {
    std::lock_guard<std::mutex> sl(sum_mu_);
    sum_.signal_s = reader_->signal_s();
  }
  cv_.notify_all();
}

void Agent::Emit(const EventView& event, Decision& d) {
  // Called with emit_mu_ held, in event order.
  d.timestamp = std::chrono::system_clock::now();
  d.model_name.assign(model_->name());
  d.model_version.assign(model_->version());
  if (!d.fail_safe) decider_->Decide(d);
  // Before any sink: every sink sees the same health fields.
  if (monitor_) monitor_->OnDecision(event, d);
  {
    std::lock_guard<std::mutex> sl(sum_mu_);
    sum_.windows++;
    if (d.raw_alert) sum_.raw_alerts++;
    if (d.is_alert && d.severity != Severity::kNone) {
      sum_.alerts[static_cast<int>(d.severity) - static_cast<int>(Severity::kLow)]++;
    }
  }
  lat_.Add(d.latency_ms);
  if (!d.fail_safe) {
    feat_.Add(d.features_ms);
    inf_.Add(d.inference_ms);
  }
  for (auto* s : sinks_) s->OnDecision(d);
}

void Agent::EmitFailSafe(Slot& s, const char* why, std::string_view reason) {
  std::lock_guard<std::mutex> lk(emit_mu_);
  Decision& d = decision_;
  d.window_index = s.index;
  d.event_id = s.event_id;
  d.part_id = s.part_id;
  d.t_start_s = s.t_start;
  d.anomaly_score = std::numeric_limits<float>::quiet_NaN();
  d.top_sensors.clear();
  d.features = {};
  d.evidence_ref.clear();
  d.features_ms = d.inference_ms = 0;
  d.latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - s.arrival).count();
  d.fail_safe = true;
  d.fail_safe_reason = reason;
  decider_->DecideFailSafe(d, opts_.fail_safe_alert, opts_.fail_safe_severity);
  {
    std::lock_guard<std::mutex> sl(sum_mu_);
    sum_.fail_safe++;
  }
  if (why) {
    TEND_LOG_WARN("{}: window {} at t={:.3f}s: {} after {:.1f} ms; fail-safe decision ({})",
                  opts_.asset_id, s.index, s.t_start, why, d.latency_ms,
                  opts_.fail_safe_alert ? "alert" : "pass");
  }
  Emit(ViewOf(s), d);
  d.fail_safe = false;
  d.fail_safe_reason = {};
}

// An event the source could not produce (EventView::error): never scored, decided fail-safe and
// counted by kind; the first of each kind is logged with its message, the others only counted
// (a camera with a bad cable must not flood the log).
void Agent::DecideInvalid(Slot& s) {
  if (!Claim(s)) return;  // the watchdog decided it already (its deadline passed in the queue)
  std::array<char, 96> buf;
  const std::string_view kind = ErrorKind(s.error, buf);
  bool first = false;
  {
    std::lock_guard<std::mutex> sl(sum_mu_);
    sum_.invalid_events++;
    auto it = sum_.invalid_kinds.find(kind);
    if (it == sum_.invalid_kinds.end()) {
      first = sum_.invalid_kinds.size() < AgentSummary::kMaxInvalidKinds;
      it = sum_.invalid_kinds.emplace(first ? std::string(kind) : std::string("other"), 0).first;
    }
    it->second++;
  }
  if (first) {
    TEND_LOG_ERROR(
        "{}: window {}: invalid event: {}; fail-safe decision ({}); further events with this "
        "error are counted, not logged",
        opts_.asset_id, s.index, s.error, opts_.fail_safe_alert ? "alert" : "pass");
  }
  EmitFailSafe(s, nullptr, kFailSafeInvalidEvent);
}

void Agent::Process(Slot& s) {
  if (!s.error.empty()) return DecideInvalid(s);
  if (Clock::now() - s.arrival > std::chrono::duration<double>(opts_.deadline_s)) {
    if (Claim(s)) EmitFailSafe(s, "deadline passed while queued", kFailSafeDeadline);
    return;
  }
  const EventView view = ViewOf(s);
  auto st = model_->Score(view, score_);
  if (after_score_) after_score_();
  if (!st) {
    {
      std::lock_guard<std::mutex> sl(sum_mu_);
      sum_.errors++;
    }
    TEND_LOG_ERROR("{}: window {}: {}", opts_.asset_id, s.index, st.error().message);
    if (Claim(s)) EmitFailSafe(s, "scoring failed", kFailSafeError);
    return;
  }
  if (!Claim(s)) {
    std::lock_guard<std::mutex> sl(sum_mu_);
    sum_.late_results++;
    return;
  }
  std::lock_guard<std::mutex> lk(emit_mu_);
  {
    std::lock_guard<std::mutex> sl(sum_mu_);
    sum_.scored++;
  }
  Decision& d = decision_;
  d.window_index = s.index;
  d.event_id = s.event_id;
  d.part_id = s.part_id;
  d.t_start_s = s.t_start;
  d.anomaly_score = score_.score;
  d.fail_safe = false;
  d.features_ms = score_.features_ms;
  d.inference_ms = score_.inference_ms;
  d.features = model_->last_features();
  d.evidence_ref.assign(score_.evidence_ref);
  d.top_sensors.resize(static_cast<size_t>(score_.n_top));
  const auto& names = model_->contributor_names();
  for (int i = 0; i < score_.n_top; ++i) {
    d.top_sensors[static_cast<size_t>(i)].assign(
        names[static_cast<size_t>(score_.top[static_cast<size_t>(i)])]);
  }
  {
    std::lock_guard<std::mutex> lk2(mu_);
    d.backlog_windows = tail_ - head_ - 1;
  }
  d.latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - s.arrival).count();
  Emit(view, d);
}

void Agent::Watchdog() {
  const auto deadline = std::chrono::duration<double>(opts_.deadline_s);
  const auto tick = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(std::clamp(opts_.deadline_s / 20, 0.001, 0.05)));
  std::unique_lock<std::mutex> lk(mu_);
  while (!(eof_ && head_ == tail_) && !stop_watchdog_) {
    if (head_ < tail_) {
      Slot& s = *ring_[static_cast<size_t>(head_ % static_cast<int64_t>(ring_.size()))];
      if (Clock::now() - s.arrival > deadline && !s.decided.load()) {
        lk.unlock();
        if (Claim(s)) EmitFailSafe(s, "deadline passed while in the pipeline", kFailSafeDeadline);
        lk.lock();
        continue;
      }
    }
    cv_.wait_for(lk, tick);
  }
}

// Between two events: a model handed over (SubmitModel, a finished reload) takes over here.
void Agent::SwapPendingModel() {
  std::lock_guard<std::mutex> lk(pending_mu_);
  if (!pending_model_) return;
  std::lock_guard<std::mutex> elk(emit_mu_);
  model_ = std::move(pending_model_);
  model_->PrepareOut(score_);
  decider_->SetThresholds(model_->thresholds());
  TEND_LOG_INFO("{}: now serving {} v{}", opts_.asset_id, model_->name(), model_->version());
  if (monitor_) monitor_->OnModel(*model_);
  const ModelInfo info = model_->info();
  for (auto* s : sinks_) s->OnModelInfo(info);
}

Status Agent::Run(const std::atomic<bool>* stop, std::atomic<bool>* reload) {
  {
    std::lock_guard<std::mutex> sl(sum_mu_);
    sum_.rss_start_kb = ResidentKb();
  }
  auto wall0 = Clock::now();
  const ModelInfo info = model_->info();
  for (auto* s : sinks_) s->OnModelInfo(info);
  std::thread acq([this] { Acquire(); });
  std::thread dog([this] { Watchdog(); });
  std::future<Result<std::unique_ptr<Model>>> loading;
  int64_t decided = 0;
  for (;;) {
    heartbeat_.fetch_add(1, std::memory_order_relaxed);
    if (stop && stop->load() && !stop_.load()) {
      stop_.store(true);
      cv_.notify_all();  // a replay waiting for room stops waiting
    }
    if (reload && reload->exchange(false) && !loading.valid()) {
      // The file of the model being served: the start-up path, or the one OTA handed over since
      // (reloading the start-up path then would silently undo an update).
      std::string path = model_->path();
      TEND_LOG_INFO("{}: reloading model {}", opts_.asset_id, path);
      auto loader = opts_.loader;
      loading = std::async(std::launch::async, [loader, path]() -> Result<std::unique_ptr<Model>> {
        if (!loader) return Fail(Error::Unsupported("this agent cannot reload its model"));
        return loader(path);
      });
    }
    if (loading.valid() && loading.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
      auto r = loading.get();
      Status st = r ? SubmitModel(std::move(*r)) : Status(Fail(r.error()));
      std::lock_guard<std::mutex> sl(sum_mu_);
      if (st) {
        sum_.reloads++;
      } else {
        sum_.reload_failures++;
        TEND_LOG_ERROR("{}: model reload refused, keeping the current model: {}", opts_.asset_id,
                       st.error().message);
      }
    }
    SwapPendingModel();
    Slot* s = nullptr;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait_for(lk, std::chrono::milliseconds(20), [&] { return head_ < tail_ || eof_; });
      if (head_ < tail_) {
        s = ring_[static_cast<size_t>(head_ % static_cast<int64_t>(ring_.size()))].get();
        if (s->arrival == kNotDueYet) s->arrival = Clock::now();  // due now (under mu_: watchdog)
      } else if (eof_) {
        break;
      }
    }
    if (!s) continue;
    Process(*s);
    {
      std::lock_guard<std::mutex> lk(mu_);
      head_++;
    }
    cv_.notify_all();
    ++decided;
    if (opts_.max_windows > 0 && decided >= opts_.max_windows) {
      // Drop whatever is still queued beyond the requested count.
      std::lock_guard<std::mutex> lk(mu_);
      stop_.store(true);
      if (head_ < tail_) tail_ = head_;
      break;
    }
  }
  stop_.store(true);
  cv_.notify_all();
  acq.join();
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_watchdog_ = true;
  }
  cv_.notify_all();
  dog.join();
  if (loading.valid()) loading.wait();
  {
    std::lock_guard<std::mutex> sl(sum_mu_);
    sum_.wall_s = std::chrono::duration<double>(Clock::now() - wall0).count();
    sum_.rss_end_kb = ResidentKb();
  }
  finished_.store(true);
  std::lock_guard<std::mutex> lk(mu_);
  return acquire_status_;
}

AgentSummary Agent::summary() const {
  std::lock_guard<std::mutex> sl(sum_mu_);
  AgentSummary s = sum_;
  s.latency = lat_.Summarize();
  s.features = feat_.Summarize();
  s.inference = inf_.Summarize();
  return s;
}

}  // namespace tend::agent
