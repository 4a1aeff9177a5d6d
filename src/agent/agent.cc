#include "agent/agent.h"

#include "agent/dataset.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <future>

#include <fmt/format.h>

#include "core/log.h"
#include "sources/source.h"

namespace tend::agent {

using Clock = std::chrono::steady_clock;

int64_t ResidentKb() {
  std::ifstream f("/proc/self/statm");
  int64_t size = 0, resident = 0;
  if (!(f >> size >> resident)) return 0;
  return resident * (::sysconf(_SC_PAGESIZE) / 1024);
}

nlohmann::json AgentSummary::ToJson() const {
  nlohmann::json j{{"windows", windows},
                   {"scored", scored},
                   {"deadline_misses", fail_safe},
                   {"late_results", late_results},
                   {"overruns", overruns},
                   {"errors", errors},
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
  if (has_truth) {
    j["truth"] = {{"first_degraded_window", first_degraded_window},
                  {"first_degraded_t", first_degraded_t},
                  {"first_degraded_wear", first_degraded_wear},
                  {"first_alert_window", first_alert_window},
                  {"first_alert_t", first_alert_t},
                  {"first_alert_wear", first_alert_wear},
                  {"healthy_windows", healthy_windows},
                  {"healthy_false_alerts", healthy_false_alerts}};
  }
  return j;
}

Result<std::unique_ptr<Agent>> Agent::Create(const AgentOptions& opts) {
  std::unique_ptr<Agent> a(new Agent());
  a->opts_ = opts;
  if (opts.deadline_s <= 0) return Fail(Error::Invalid("deadline must be > 0 s"));
  if (opts.speed < 0) return Fail(Error::Invalid("speed must be >= 0 (0 = as fast as possible)"));
  if (opts.queue_windows < 1) return Fail(Error::Invalid("queue must hold at least 1 window"));
  TEND_RETURN_NOT_OK(opts.debounce.Validate());
  if (opts.model_path.empty()) return Fail(Error::Invalid("no model given (--model)"));
  TEND_ASSIGN_OR_RETURN(a->model_, ServedModel::Load(opts.model_path, opts.serve));
  const WindowingSpec& w = a->model_->windowing();

  sources::SourceOptions so = opts.source_opts;
  // The simulator takes the model's rate unless the spec says otherwise; files keep their own.
  if (so.sample_rate <= 0) so.sample_rate = w.sample_rate;
  if (so.channels <= 0) so.channels = w.channels;
  TEND_ASSIGN_OR_RETURN(a->source_, sources::OpenSource(opts.source, so));
  TEND_RETURN_NOT_OK(w.CheckStream(a->source_->info(), a->source_->Describe()));
  TEND_ASSIGN_OR_RETURN(a->windower_, w.MakeWindower());

  auto thresholds = a->model_->thresholds();
  TEND_RETURN_NOT_OK(thresholds.Validate().map_error(
      [&](Error e) { return e.Wrap(opts.model_path + ": model metadata"); }));
  a->decider_ = std::make_unique<Decider>(thresholds, opts.debounce);
  if (!opts.decision_log.empty()) {
    TEND_ASSIGN_OR_RETURN(a->log_, DecisionLog::Open(opts.decision_log, opts.decision_log_max_bytes,
                                                     opts.decision_log_keep));
  }
  size_t n = static_cast<size_t>(w.channels) * static_cast<size_t>(w.window);
  a->ring_.reserve(static_cast<size_t>(opts.queue_windows));
  for (int64_t i = 0; i < opts.queue_windows; ++i) {
    auto s = std::make_unique<Slot>();
    s->samples.assign(n, 0.0f);
    a->ring_.push_back(std::move(s));
  }
  a->model_->PrepareOut(a->score_);
  a->decision_.top_sensors.reserve(static_cast<size_t>(std::max(0, opts.serve.top_k)));
  if (auto* sim = dynamic_cast<sources::PressSimulator*>(a->source_.get())) {
    a->truth_ = sim->labels();
    a->sum_.has_truth = true;
  }
  return a;
}

Agent::~Agent() = default;

Status Agent::SubmitModel(std::unique_ptr<ServedModel> next) {
  const auto& a = next->windowing();
  const auto& b = model_->windowing();
  if (a.ToJson() != b.ToJson()) {
    return Fail(Error::Invalid(
        "new model cuts windows differently (" + a.ToJson().dump() + " vs " + b.ToJson().dump() +
        "); restart the agent to change windowing"));
  }
  TEND_RETURN_NOT_OK(next->thresholds().Validate());
  std::lock_guard<std::mutex> lk(pending_mu_);
  pending_model_ = std::move(next);
  return Ok();
}

double Agent::WearAt(int64_t start_frame) const {
  return truth_.empty() ? -1 : WearInWindow(truth_, start_frame, model_->windowing().window);
}

void Agent::Acquire() {
  const auto& info = source_->info();
  const int ch = info.channels;
  const double sr = info.sample_rate;
  constexpr size_t kChunk = 1024;
  std::vector<float> buf(kChunk * static_cast<size_t>(ch));
  int64_t frames_total = 0;
  int64_t max_frames = opts_.duration_s > 0 ? static_cast<int64_t>(opts_.duration_s * sr) : -1;
  auto t0 = Clock::now();
  auto emit = [&](const sources::WindowView& v) {
    std::unique_lock<std::mutex> lk(mu_);
    if (tail_ - head_ >= static_cast<int64_t>(ring_.size())) {
      lk.unlock();
      std::lock_guard<std::mutex> sl(sum_mu_);
      sum_.overruns++;
      TEND_LOG_WARN("backlog full ({} windows): window {} at t={:.3f}s dropped (overrun)",
                    ring_.size(), v.index, v.t_start_s);
      return;
    }
    Slot& s = *ring_[static_cast<size_t>(tail_ % static_cast<int64_t>(ring_.size()))];
    lk.unlock();
    std::copy(v.samples.begin(), v.samples.end(), s.samples.begin());
    s.index = v.index;
    s.start_frame = v.start_frame;
    s.t_start = v.t_start_s;
    s.arrival = Clock::now();
    s.decided.store(false);
    lk.lock();
    tail_++;
    int64_t backlog = tail_ - head_;
    lk.unlock();
    cv_.notify_all();
    std::lock_guard<std::mutex> sl(sum_mu_);
    sum_.max_backlog = std::max(sum_.max_backlog, backlog - 1);
  };
  Status st = Ok();
  while (!stop_.load()) {
    size_t want = kChunk;
    if (max_frames >= 0) {
      if (frames_total >= max_frames) break;
      want = static_cast<size_t>(std::min<int64_t>(kChunk, max_frames - frames_total));
    }
    auto r = source_->Read(buf, want);
    if (!r) {
      st = Fail(r.error());
      break;
    }
    if (*r == 0) break;
    frames_total += static_cast<int64_t>(*r);
    if (opts_.speed > 0) {
      // Pace the replay: frames are released when their time (scaled) has come.
      auto due = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                          static_cast<double>(frames_total) / sr / opts_.speed));
      while (!stop_.load() && Clock::now() < due) {
        std::this_thread::sleep_until(std::min(due, Clock::now() + std::chrono::milliseconds(50)));
      }
    }
    windower_->Push(std::span<const float>(buf.data(), *r * static_cast<size_t>(ch)), *r, emit);
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    eof_ = true;
    acquire_status_ = st;
  }
  {
    std::lock_guard<std::mutex> sl(sum_mu_);
    sum_.signal_s = static_cast<double>(frames_total) / sr;
  }
  cv_.notify_all();
}

void Agent::Emit(Decision& d) {
  // Called with emit_mu_ held, in window order.
  d.timestamp = std::chrono::system_clock::now();
  d.model_name.assign(model_->card().name);
  d.model_version.assign(model_->card().version);
  if (!d.fail_safe) decider_->Decide(d);
  {
    std::lock_guard<std::mutex> sl(sum_mu_);
    sum_.windows++;
    if (d.raw_alert) sum_.raw_alerts++;
    if (d.is_alert) sum_.alerts[static_cast<int>(d.severity)]++;
    if (sum_.has_truth && !d.fail_safe) {
      double wear = WearAt(static_cast<int64_t>(std::llround(d.t_start_s * stream().sample_rate)));
      if (wear >= 0 && wear < 0.1) {
        sum_.healthy_windows++;
        if (d.is_alert) sum_.healthy_false_alerts++;
      }
      if (wear >= opts_.degraded_wear && sum_.first_degraded_window < 0) {
        sum_.first_degraded_window = d.window_index;
        sum_.first_degraded_t = d.t_start_s;
        sum_.first_degraded_wear = wear;
      }
      if (d.is_alert && sum_.first_alert_window < 0) {
        sum_.first_alert_window = d.window_index;
        sum_.first_alert_t = d.t_start_s;
        sum_.first_alert_wear = wear;
      }
    }
  }
  lat_.Add(d.latency_ms);
  if (!d.fail_safe) {
    feat_.Add(d.features_ms);
    inf_.Add(d.inference_ms);
  }
  if (opts_.print || log_) {
    if (opts_.print_json || log_) {
      line_ = DecisionJson(d, opts_.asset_id).dump();
      if (log_) {
        auto st = log_->Append(line_);
        if (!st) TEND_LOG_ERROR("{}", st.error().message);
      }
    }
    if (opts_.print) {
      if (opts_.print_json) {
        std::fwrite(line_.data(), 1, line_.size(), stdout);
        std::fputc('\n', stdout);
      } else {
        std::string top;
        for (size_t i = 0; i < d.top_sensors.size(); ++i) top += (i ? "," : "") + d.top_sensors[i];
        std::fprintf(stdout, "#%06lld t=%9.3fs score=%10.4f %-6s %-9s %7.3fms  %s\n",
                     static_cast<long long>(d.window_index), d.t_start_s,
                     static_cast<double>(d.anomaly_score), SeverityName(d.severity),
                     d.fail_safe ? "FAILSAFE" : (d.is_alert ? "ALERT" : "ok"), d.latency_ms,
                     top.c_str());
      }
    }
  }
  for (auto* s : sinks_) s->OnDecision(d);
}

void Agent::EmitFailSafe(Slot& s, const char* why) {
  std::lock_guard<std::mutex> lk(emit_mu_);
  Decision& d = decision_;
  d.window_index = s.index;
  d.t_start_s = s.t_start;
  d.anomaly_score = std::numeric_limits<float>::quiet_NaN();
  d.top_sensors.clear();
  d.features_ms = d.inference_ms = 0;
  d.latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - s.arrival).count();
  d.fail_safe = true;
  decider_->DecideFailSafe(d, opts_.fail_safe_alert, opts_.fail_safe_severity);
  {
    std::lock_guard<std::mutex> sl(sum_mu_);
    sum_.fail_safe++;
  }
  TEND_LOG_WARN("window {} at t={:.3f}s: {} after {:.1f} ms; fail-safe decision ({})", s.index,
                s.t_start, why, d.latency_ms, opts_.fail_safe_alert ? "alert" : "pass");
  Emit(d);
  d.fail_safe = false;
}

void Agent::Process(Slot& s) {
  if (Clock::now() - s.arrival > std::chrono::duration<double>(opts_.deadline_s)) {
    if (Claim(s)) EmitFailSafe(s, "deadline passed while queued");
    return;
  }
  auto st = model_->Score(s.samples, score_);
  if (opts_.inject_delay_ms_for_test > 0) {
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(opts_.inject_delay_ms_for_test));
  }
  if (!st) {
    {
      std::lock_guard<std::mutex> sl(sum_mu_);
      sum_.errors++;
    }
    TEND_LOG_ERROR("window {}: {}", s.index, st.error().message);
    if (Claim(s)) EmitFailSafe(s, "scoring failed");
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
  d.t_start_s = s.t_start;
  d.anomaly_score = score_.score;
  d.fail_safe = false;
  d.features_ms = score_.features_ms;
  d.inference_ms = score_.inference_ms;
  d.top_sensors.resize(static_cast<size_t>(score_.n_top));
  const auto& names = model_->feature_names();
  for (int i = 0; i < score_.n_top; ++i) {
    d.top_sensors[static_cast<size_t>(i)].assign(names[static_cast<size_t>(score_.top[static_cast<size_t>(i)])]);
  }
  {
    std::lock_guard<std::mutex> lk2(mu_);
    d.backlog_windows = tail_ - head_ - 1;
  }
  d.latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - s.arrival).count();
  Emit(d);
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
        if (Claim(s)) EmitFailSafe(s, "deadline passed while in the pipeline");
        lk.lock();
        continue;
      }
    }
    cv_.wait_for(lk, tick);
  }
}

Status Agent::Run(const std::atomic<bool>* stop, std::atomic<bool>* reload) {
  sum_.rss_start_kb = ResidentKb();
  auto wall0 = Clock::now();
  for (auto* s : sinks_) s->OnModelInfo(model_->info());
  std::thread acq([this] { Acquire(); });
  std::thread dog([this] { Watchdog(); });
  std::future<Result<std::unique_ptr<ServedModel>>> loading;
  int64_t decided = 0;
  for (;;) {
    heartbeat_.fetch_add(1, std::memory_order_relaxed);
    if (stop && stop->load()) stop_.store(true);
    if (reload && reload->exchange(false) && !loading.valid()) {
      // The file of the model being served: the start-up path, or the one OTA handed over since
      // (reloading the start-up path then would silently undo an update).
      std::string path = model_->path();
      TEND_LOG_INFO("reloading model {}", path);
      loading = std::async(std::launch::async, [this, path] {
        return ServedModel::Load(path, opts_.serve);
      });
    }
    if (loading.valid() &&
        loading.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
      auto r = loading.get();
      Status st = r ? SubmitModel(std::move(*r)) : Status(Fail(r.error()));
      std::lock_guard<std::mutex> sl(sum_mu_);
      if (st) {
        sum_.reloads++;
      } else {
        sum_.reload_failures++;
        TEND_LOG_ERROR("model reload refused, keeping the current model: {}", st.error().message);
      }
    }
    {
      std::lock_guard<std::mutex> lk(pending_mu_);
      if (pending_model_) {
        std::lock_guard<std::mutex> elk(emit_mu_);
        model_ = std::move(pending_model_);
        model_->PrepareOut(score_);
        decider_->SetThresholds(model_->thresholds());
        TEND_LOG_INFO("now serving {} v{}", model_->card().name, model_->card().version);
        for (auto* s : sinks_) s->OnModelInfo(model_->info());
      }
    }
    Slot* s = nullptr;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait_for(lk, std::chrono::milliseconds(20), [&] { return head_ < tail_ || eof_; });
      if (head_ < tail_) {
        s = ring_[static_cast<size_t>(head_ % static_cast<int64_t>(ring_.size()))].get();
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
      stop_.store(true);
      // Drop whatever is still queued beyond the requested count.
      std::lock_guard<std::mutex> lk(mu_);
      if (head_ < tail_) tail_ = head_;
      break;
    }
  }
  stop_.store(true);
  acq.join();
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_watchdog_ = true;
  }
  cv_.notify_all();
  dog.join();
  if (loading.valid()) loading.wait();
  if (log_) {
    auto st = log_->Flush();
    if (!st) TEND_LOG_ERROR("{}", st.error().message);
  }
  std::fflush(stdout);
  {
    std::lock_guard<std::mutex> sl(sum_mu_);
    sum_.wall_s = std::chrono::duration<double>(Clock::now() - wall0).count();
    sum_.rss_end_kb = ResidentKb();
  }
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
