#include "io/plc_sink.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "core/log.h"

namespace tend::io {
namespace {

using Clock = std::chrono::steady_clock;

Status CheckAddress(const char* what, int address) {
  if (address < -1 || address > 65535) {
    return Fail(Error::Invalid(std::string("PLC: ") + what + " address " + std::to_string(address) +
                               " is not 0..65535"));
  }
  return Ok();
}

// What the worker needs of a decision: no strings, so the hand-off never allocates.
struct Item {
  bool alert = false;
  uint16_t severity = 0;
  float score = 0;
  int64_t part_id = -1;
  Clock::time_point at;
};

constexpr size_t kLatencySamples = 4096;

}  // namespace

uint16_t SeverityRegisterValue(const Decision& d) {
  // Severity's values are the register's: kNone 0, then LOW 1, MEDIUM 2, HIGH 3.
  return d.is_alert ? static_cast<uint16_t>(d.severity) : 0;
}

Status PlcSinkOptions::Validate() const {
  TEND_RETURN_NOT_OK(link.Validate());
  TEND_RETURN_NOT_OK(CheckAddress("reject coil", reject_coil));
  TEND_RETURN_NOT_OK(CheckAddress("reject counter", reject_counter));
  TEND_RETURN_NOT_OK(CheckAddress("score register", score_register));
  TEND_RETURN_NOT_OK(CheckAddress("severity register", severity_register));
  TEND_RETURN_NOT_OK(CheckAddress("line-unsafe coil", line_unsafe_coil));
  TEND_RETURN_NOT_OK(CheckAddress("reject part register", reject_part_register));
  if (score_register == 65535) {
    return Fail(Error::Invalid("PLC: the score needs two registers; 65535 is the last address"));
  }
  if (reject_part_register == 65535) {
    return Fail(
        Error::Invalid("PLC: the part number needs two registers; 65535 is the last address"));
  }
  if (reject_coil < 0 && reject_counter < 0 && score_register < 0 && severity_register < 0) {
    return Fail(
        Error::Invalid("PLC: nothing to write: give a reject coil, a reject counter or a "
                       "score/severity register"));
  }
  if (reject_coil >= 0 && !(pulse_s > 0 && pulse_s <= 60)) {
    return Fail(Error::Invalid("PLC: the reject pulse must be > 0 and <= 60 s"));
  }
  if (queue_capacity < 1 || queue_capacity > (1 << 20)) {
    return Fail(Error::Invalid("PLC: queue capacity must be 1..1048576"));
  }
  if (!(log_interval_s >= 0)) return Fail(Error::Invalid("PLC: log interval must be >= 0"));
  return Ok();
}

nlohmann::json ToJson(const PlcSinkStats& s) {
  nlohmann::json j = {{"connected", s.connected},
                      {"decisions", s.decisions},
                      {"rejects", s.rejects},
                      {"rejects_written", s.rejects_written},
                      {"rejects_missed", s.rejects_missed},
                      {"updates_written", s.updates_written},
                      {"updates_missed", s.updates_missed},
                      {"queue_dropped", s.queue_dropped},
                      {"exceptions", s.exceptions},
                      {"link_errors", s.link_errors},
                      {"connects", s.connects},
                      {"connect_failures", s.connect_failures},
                      {"line_unsafe_set", s.line_unsafe_set},
                      {"counter", s.counter}};
  if (!s.last_error.empty()) j["last_error"] = s.last_error;
  return j;
}

class PlcRejectSink::Impl {
 public:
  Impl(PlcSinkOptions o, std::unique_ptr<ModbusLink> link)
      : o_(std::move(o)),
        link_(std::move(link)),
        backoff_(o_.link.reconnect_min_s, o_.link.reconnect_max_s) {
    ring_.resize(static_cast<size_t>(o_.queue_capacity));
    batch_.reserve(ring_.size());
    latencies_.resize(kLatencySamples);
    worker_ = std::thread([this] { Run(); });
  }
  ~Impl() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }

  void OnDecision(const Decision& d) {
    Item it{d.is_alert, SeverityRegisterValue(d), d.anomaly_score, d.part_id, Clock::now()};
    {
      std::lock_guard lk(mu_);
      ++st_.decisions;
      ++received_;
      if (count_ == ring_.size()) {
        ++st_.queue_dropped;
        ++processed_;
        if (it.alert) ++st_.rejects, ++st_.rejects_missed, ++unlogged_missed_;
        return;
      }
      ring_[(head_ + count_) % ring_.size()] = it;
      ++count_;
    }
    cv_.notify_one();
  }

  PlcSinkStats stats() const {
    std::lock_guard lk(mu_);
    return st_;
  }

  std::vector<double> Latencies() const {
    std::lock_guard lk(mu_);
    std::vector<double> out;
    size_t n = std::min(latency_n_, kLatencySamples);
    for (size_t i = 0; i < n; ++i) {
      out.push_back(latencies_[(latency_n_ - n + i) % kLatencySamples]);
    }
    return out;
  }

  Status Drain(std::chrono::milliseconds timeout) {
    std::unique_lock lk(mu_);
    uint64_t want = received_;
    if (!drained_cv_.wait_for(lk, timeout, [&] { return processed_ >= want; })) {
      return Fail(Error::Timeout("PLC sink: " + std::to_string(want - processed_) +
                                 " decisions not processed in time"));
    }
    return Ok();
  }

 private:
  void Run();
  void TakeBatch(std::unique_lock<std::mutex>& lk);
  void TryConnect(Clock::time_point now);
  void Process();
  void WriteRejects(int alerts, const Item* one);
  void WriteLast(const Item& it);
  bool Done(const Status& st);
  void EndPulse();
  void MaybeLog(Clock::time_point now, bool force);

  PlcSinkOptions o_;
  std::unique_ptr<ModbusLink> link_;
  Backoff backoff_;

  mutable std::mutex mu_;
  std::condition_variable cv_, drained_cv_;
  std::vector<Item> ring_;
  size_t head_ = 0, count_ = 0;
  uint64_t received_ = 0, processed_ = 0;
  bool stop_ = false;
  PlcSinkStats st_;
  std::vector<double> latencies_;
  size_t latency_n_ = 0;
  int64_t unlogged_missed_ = 0, unlogged_errors_ = 0;

  // Worker only.
  std::thread worker_;
  std::vector<Item> batch_;
  Clock::time_point next_attempt_{};
  Clock::time_point pulse_off_at_{};
  bool pulse_on_ = false;
  int64_t missed_since_connect_ = 0;
  Clock::time_point last_log_{};
};

void PlcRejectSink::Impl::TakeBatch(std::unique_lock<std::mutex>& lk) {
  (void)lk;
  batch_.clear();
  for (; count_ > 0; --count_) {
    batch_.push_back(ring_[head_]);
    head_ = (head_ + 1) % ring_.size();
  }
}

void PlcRejectSink::Impl::Run() {
  for (;;) {
    bool stopping;
    {
      std::unique_lock lk(mu_);
      auto deadline = Clock::now() + std::chrono::seconds(1);
      if (pulse_on_) deadline = std::min(deadline, pulse_off_at_);
      if (!link_->connected()) deadline = std::min(deadline, next_attempt_);
      cv_.wait_until(lk, deadline, [&] { return stop_ || count_ > 0; });
      TakeBatch(lk);
      stopping = stop_;
    }
    auto now = Clock::now();
    if (!link_->connected() && now >= next_attempt_ && !stopping) TryConnect(now);
    Process();
    if (pulse_on_ && (stopping || Clock::now() >= pulse_off_at_)) EndPulse();
    {
      std::lock_guard lk(mu_);
      processed_ += batch_.size();
    }
    drained_cv_.notify_all();
    MaybeLog(Clock::now(), stopping);
    if (stopping) break;
  }
  link_->Close();
}

void PlcRejectSink::Impl::TryConnect(Clock::time_point now) {
  auto st = link_->Connect();
  if (!st) {
    next_attempt_ = now + backoff_.Next();
    std::lock_guard lk(mu_);
    ++st_.connect_failures;
    ++unlogged_errors_;
    st_.last_error = st.error().message;
    return;
  }
  backoff_.Reset();
  {
    std::lock_guard lk(mu_);
    ++st_.connects;
    st_.connected = true;
  }
  TEND_LOG_INFO("plc: connected to {}", o_.link.url);
  // A link lost mid-pulse may have left the reject coil on.
  if (o_.reject_coil >= 0 && Done(link_->WriteCoil(o_.reject_coil, false))) pulse_on_ = false;
  if (missed_since_connect_ > 0 && link_->connected()) {
    TEND_LOG_WARN("plc: {} reject(s) for {} were missed while the link was down{}",
                  missed_since_connect_, o_.link.url,
                  o_.line_unsafe_coil >= 0 ? "; setting the line-unsafe coil" : "");
    if (o_.line_unsafe_coil < 0) {
      missed_since_connect_ = 0;
    } else if (Done(link_->WriteCoil(o_.line_unsafe_coil, true))) {
      missed_since_connect_ = 0;
      std::lock_guard lk(mu_);
      ++st_.line_unsafe_set;
    }
  }
}

// Records a failed request: an exception response leaves the link up, anything else closed it.
bool PlcRejectSink::Impl::Done(const Status& st) {
  if (st) return true;
  bool exception = link_->last_exception() > 0;
  if (!exception) next_attempt_ = Clock::now() + backoff_.Next();
  std::lock_guard lk(mu_);
  if (exception) {
    ++st_.exceptions;
  } else {
    ++st_.link_errors;
    st_.connected = false;
  }
  ++unlogged_errors_;
  st_.last_error = st.error().message;
  return false;
}

void PlcRejectSink::Impl::Process() {
  if (batch_.empty()) return;
  int alerts = 0;
  for (const auto& it : batch_) alerts += it.alert ? 1 : 0;
  if (alerts > 0 && o_.reject_part_register < 0) WriteRejects(alerts, nullptr);
  if (alerts > 0 && o_.reject_part_register >= 0) {
    // Each reject with its own part number: part register, then coil and counter.
    for (const auto& it : batch_) {
      if (it.alert) WriteRejects(1, &it);
    }
  }
  if (o_.score_register >= 0 || o_.severity_register >= 0) WriteLast(batch_.back());
}

// All alerts of a batch (or `one` alert, with its part number written first): one coil pulse
// (pulses that close together merge anyway) and one read-modify-write of the counter, so the PLC
// may reset the counter and tend never overwrites increments it did not make.
void PlcRejectSink::Impl::WriteRejects(int alerts, const Item* one) {
  bool ok = link_->connected();
  if (ok && one) {  // int32, high word first; -1: the event had no part number
    const auto bits = static_cast<uint32_t>(static_cast<int32_t>(one->part_id));
    uint16_t regs[2] = {static_cast<uint16_t>(bits >> 16), static_cast<uint16_t>(bits & 0xffff)};
    ok = Done(link_->WriteRegisters(o_.reject_part_register, 2, regs));
  }
  if (ok && o_.reject_coil >= 0) {
    ok = Done(link_->WriteCoil(o_.reject_coil, true));
    if (ok) {
      auto now = Clock::now();
      pulse_on_ = true;
      pulse_off_at_ = now + SteadySeconds(o_.pulse_s);
      std::lock_guard lk(mu_);
      for (const auto& it : batch_) {
        if (!it.alert || (one && &it != one)) continue;
        latencies_[latency_n_++ % kLatencySamples] =
            std::chrono::duration<double, std::milli>(now - it.at).count();
      }
    }
  }
  uint16_t counter = 0;
  if (ok && o_.reject_counter >= 0) {
    ok = Done(link_->ReadHoldingRegisters(o_.reject_counter, 1, &counter));
    counter = static_cast<uint16_t>(counter + alerts);  // wraps at 65,536
    ok = ok && Done(link_->WriteRegisters(o_.reject_counter, 1, &counter));
  }
  std::lock_guard lk(mu_);
  st_.rejects += alerts;
  if (ok) {
    st_.rejects_written += alerts;
    if (o_.reject_counter >= 0) st_.counter = counter;
  } else {
    st_.rejects_missed += alerts;
    unlogged_missed_ += alerts;
    if (!link_->connected()) missed_since_connect_ += alerts;
  }
}

void PlcRejectSink::Impl::WriteLast(const Item& it) {
  bool ok = link_->connected();
  if (ok && o_.score_register >= 0) {
    uint32_t bits;
    std::memcpy(&bits, &it.score, sizeof bits);
    uint16_t regs[2] = {static_cast<uint16_t>(bits >> 16), static_cast<uint16_t>(bits & 0xffff)};
    ok = Done(link_->WriteRegisters(o_.score_register, 2, regs));
  }
  if (ok && o_.severity_register >= 0) {
    ok = Done(link_->WriteRegisters(o_.severity_register, 1, &it.severity));
  }
  std::lock_guard lk(mu_);
  ++(ok ? st_.updates_written : st_.updates_missed);
}

void PlcRejectSink::Impl::EndPulse() {
  if (!link_->connected()) return;  // switched off at the next connect
  if (Done(link_->WriteCoil(o_.reject_coil, false))) pulse_on_ = false;
}

void PlcRejectSink::Impl::MaybeLog(Clock::time_point now, bool force) {
  int64_t missed, errors;
  std::string last;
  bool connected;
  {
    std::lock_guard lk(mu_);
    if (unlogged_missed_ == 0 && unlogged_errors_ == 0) return;
    if (!force && now - last_log_ < SteadySeconds(o_.log_interval_s)) return;
    missed = unlogged_missed_;
    errors = unlogged_errors_;
    unlogged_missed_ = unlogged_errors_ = 0;
    last = st_.last_error;
    connected = st_.connected;
  }
  last_log_ = now;
  TEND_LOG_WARN(
      "plc: {} reject(s) missed, {} failed request(s) since the last report; last: {}; "
      "link {}",
      missed, errors, last, connected ? "up" : "down, retrying with backoff");
}

Result<std::unique_ptr<PlcRejectSink>> PlcRejectSink::Create(const PlcSinkOptions& options) {
  TEND_RETURN_NOT_OK(options.Validate());
  TEND_ASSIGN_OR_RETURN(auto link, ModbusLink::Create(options.link));
  auto impl = std::make_unique<Impl>(options, std::move(link));
  return std::unique_ptr<PlcRejectSink>(new PlcRejectSink(std::move(impl)));
}

PlcRejectSink::PlcRejectSink(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PlcRejectSink::~PlcRejectSink() = default;
void PlcRejectSink::OnDecision(const Decision& d) { impl_->OnDecision(d); }
PlcSinkStats PlcRejectSink::stats() const { return impl_->stats(); }
std::vector<double> PlcRejectSink::RecentRejectLatenciesMs() const { return impl_->Latencies(); }
Status PlcRejectSink::Drain(std::chrono::milliseconds timeout) { return impl_->Drain(timeout); }

}  // namespace tend::io
