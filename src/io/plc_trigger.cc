#include "io/plc_trigger.h"

#include <charconv>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "core/log.h"

namespace tend::io {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

Result<TriggerSpec> ParseTriggerSpec(const std::string& spec) {
  size_t colon = spec.find(':');
  std::string table = spec.substr(0, colon);
  TriggerSpec t;
  if (table == "coil") {
    t.table = TriggerSpec::Table::kCoil;
  } else if (table == "di" || table == "discrete") {
    t.table = TriggerSpec::Table::kDiscreteInput;
  } else if (table == "hr" || table == "counter") {
    t.table = TriggerSpec::Table::kHoldingRegister;
  } else if (table == "ir") {
    t.table = TriggerSpec::Table::kInputRegister;
  } else {
    return Fail(Error::Invalid("PLC trigger '" + spec +
                               "': expected coil:ADDR, discrete:ADDR (di:), "
                               "counter:ADDR (hr:) or ir:ADDR"));
  }
  std::string addr = colon == std::string::npos ? "" : spec.substr(colon + 1);
  auto [p, ec] = std::from_chars(addr.data(), addr.data() + addr.size(), t.address);
  if (addr.empty() || ec != std::errc() || p != addr.data() + addr.size() || t.address < 0 ||
      t.address > 65535) {
    return Fail(
        Error::Invalid("PLC trigger '" + spec + "': address '" + addr + "' is not 0..65535"));
  }
  return t;
}

Status TriggerOptions::Validate() const {
  TEND_RETURN_NOT_OK(link.Validate());
  if (!(poll_interval_s > 0 && poll_interval_s <= 10)) {
    return Fail(Error::Invalid("PLC trigger: poll interval must be > 0 and <= 10 s"));
  }
  if (part_register < -1 || part_register > 65535) {
    return Fail(Error::Invalid("PLC trigger: part register must be 0..65535"));
  }
  if (max_jump < 1 || max_jump > 32767) {
    return Fail(Error::Invalid("PLC trigger: max_jump must be 1..32767"));
  }
  if (queue_capacity < 1 || queue_capacity > (1 << 20)) {
    return Fail(Error::Invalid("PLC trigger: queue capacity must be 1..1048576"));
  }
  return Ok();
}

class PlcTrigger::Impl {
 public:
  Impl(TriggerOptions o, std::unique_ptr<ModbusLink> link, std::function<void(const PartEvent&)> cb)
      : o_(std::move(o)),
        link_(std::move(link)),
        on_part_(std::move(cb)),
        backoff_(o_.link.reconnect_min_s, o_.link.reconnect_max_s) {
    ring_.resize(static_cast<size_t>(o_.queue_capacity));
    worker_ = std::thread([this] { Run(); });
  }
  ~Impl() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    stop_cv_.notify_all();
    worker_.join();
  }

  bool TryPop(PartEvent& out) {
    std::lock_guard lk(mu_);
    return PopLocked(out);
  }
  bool WaitPop(PartEvent& out, std::chrono::milliseconds timeout) {
    std::unique_lock lk(mu_);
    pop_cv_.wait_for(lk, timeout, [&] { return count_ > 0; });
    return PopLocked(out);
  }
  TriggerStats stats() const {
    std::lock_guard lk(mu_);
    return st_;
  }

 private:
  bool PopLocked(PartEvent& out) {
    if (count_ == 0) return false;
    out = ring_[head_];
    head_ = (head_ + 1) % ring_.size();
    --count_;
    return true;
  }
  void Run();
  void Poll();
  bool Done(const Status& st);
  void Emit(int64_t part_number);
  void OnCounter(uint16_t value);
  void OnLevel(bool level);
  void MaybeLog(Clock::time_point now);

  TriggerOptions o_;
  std::unique_ptr<ModbusLink> link_;
  std::function<void(const PartEvent&)> on_part_;
  Backoff backoff_;

  mutable std::mutex mu_;
  std::condition_variable stop_cv_, pop_cv_;
  bool stop_ = false;
  std::vector<PartEvent> ring_;
  size_t head_ = 0, count_ = 0;
  TriggerStats st_;
  int64_t unlogged_errors_ = 0;

  // Poller only.
  std::thread worker_;
  Clock::time_point next_attempt_{};
  bool have_baseline_ = false;  // first read after a connect only sets the baseline
  uint16_t last_counter_ = 0;
  bool last_level_ = false;
  bool counter_seen_ = false;  // a counter value from an earlier connection exists
  int64_t own_parts_ = 0;
  Clock::time_point last_log_{};
};

void PlcTrigger::Impl::Run() {
  auto next_poll = Clock::now();
  for (;;) {
    {
      std::unique_lock lk(mu_);
      auto until = link_->connected() ? next_poll : std::max(next_poll, next_attempt_);
      if (stop_cv_.wait_until(lk, until, [&] { return stop_; })) break;
    }
    auto now = Clock::now();
    next_poll = std::max(next_poll + SteadySeconds(o_.poll_interval_s), now);
    if (!link_->connected()) {
      auto st = link_->Connect();
      std::lock_guard lk(mu_);
      if (!st) {
        next_attempt_ = now + backoff_.Next();
        ++st_.connect_failures;
        ++unlogged_errors_;
        st_.last_error = st.error().message;
      } else {
        backoff_.Reset();
        have_baseline_ = false;
        ++st_.connects;
        st_.connected = true;
      }
    }
    if (link_->connected()) Poll();
    MaybeLog(now);
  }
  link_->Close();
}

bool PlcTrigger::Impl::Done(const Status& st) {
  if (st) return true;
  bool exception = link_->last_exception() > 0;
  std::lock_guard lk(mu_);
  if (exception) {
    ++st_.exceptions;
  } else {
    ++st_.link_errors;
    st_.connected = false;
    next_attempt_ = Clock::now() + backoff_.Next();
  }
  ++unlogged_errors_;
  st_.last_error = st.error().message;
  return false;
}

void PlcTrigger::Impl::Poll() {
  using T = TriggerSpec::Table;
  const int a = o_.trigger.address;
  uint16_t reg = 0;
  uint8_t bit = 0;
  Status st;
  switch (o_.trigger.table) {
    case T::kCoil:
      st = link_->ReadCoils(a, 1, &bit);
      break;
    case T::kDiscreteInput:
      st = link_->ReadDiscreteInputs(a, 1, &bit);
      break;
    case T::kHoldingRegister:
      st = link_->ReadHoldingRegisters(a, 1, &reg);
      break;
    case T::kInputRegister:
      st = link_->ReadInputRegisters(a, 1, &reg);
      break;
  }
  {
    std::lock_guard lk(mu_);
    ++st_.polls;
  }
  if (!Done(st)) return;
  if (o_.trigger.is_counter()) {
    OnCounter(reg);
  } else {
    OnLevel(bit != 0);
  }
}

void PlcTrigger::Impl::OnCounter(uint16_t value) {
  if (!have_baseline_) {
    // After a reconnect: steps the counter made while we could not see it are missed parts.
    int step = static_cast<uint16_t>(value - last_counter_);
    if (counter_seen_ && step > 0 && step <= o_.max_jump) {
      std::lock_guard lk(mu_);
      st_.parts_missed += step;
      TEND_LOG_WARN("plc trigger: {} part(s) passed while the link to {} was down", step,
                    o_.link.url);
    }
    have_baseline_ = counter_seen_ = true;
    last_counter_ = value;
    return;
  }
  int step = static_cast<uint16_t>(value - last_counter_);  // modulo 65,536
  if (step == 0) return;
  if (step > o_.max_jump) {
    TEND_LOG_WARN("plc trigger: counter at {} went from {} to {}: treated as a reset", o_.link.url,
                  last_counter_, value);
    std::lock_guard lk(mu_);
    ++st_.resyncs;
    last_counter_ = value;
    return;
  }
  for (int i = 1; i <= step; ++i) Emit(static_cast<uint16_t>(last_counter_ + i));
  last_counter_ = value;
}

void PlcTrigger::Impl::OnLevel(bool level) {
  bool rising = have_baseline_ && level && !last_level_;
  have_baseline_ = true;
  last_level_ = level;
  if (!rising) return;
  int64_t part = ++own_parts_;
  if (o_.part_register >= 0) {
    uint16_t v = 0;
    if (Done(link_->ReadHoldingRegisters(o_.part_register, 1, &v))) part = v;
  }
  Emit(part);
}

void PlcTrigger::Impl::Emit(int64_t part_number) {
  PartEvent ev{part_number, Clock::now(), std::chrono::system_clock::now()};
  if (on_part_) on_part_(ev);
  {
    std::lock_guard lk(mu_);
    ++st_.parts;
    if (count_ == ring_.size()) {  // nobody takes them: keep the newest
      head_ = (head_ + 1) % ring_.size();
      --count_;
      ++st_.queue_dropped;
    }
    ring_[(head_ + count_) % ring_.size()] = ev;
    ++count_;
  }
  pop_cv_.notify_one();
}

void PlcTrigger::Impl::MaybeLog(Clock::time_point now) {
  std::string last;
  int64_t errors;
  {
    std::lock_guard lk(mu_);
    if (unlogged_errors_ == 0 || now - last_log_ < SteadySeconds(o_.log_interval_s)) return;
    errors = unlogged_errors_;
    unlogged_errors_ = 0;
    last = st_.last_error;
  }
  last_log_ = now;
  TEND_LOG_WARN("plc trigger: {} failed request(s) since the last report; last: {}", errors, last);
}

Result<std::unique_ptr<PlcTrigger>> PlcTrigger::Start(const TriggerOptions& options,
                                                      std::function<void(const PartEvent&)> cb) {
  TEND_RETURN_NOT_OK(options.Validate());
  TEND_ASSIGN_OR_RETURN(auto link, ModbusLink::Create(options.link));
  auto impl = std::make_unique<Impl>(options, std::move(link), std::move(cb));
  return std::unique_ptr<PlcTrigger>(new PlcTrigger(std::move(impl)));
}

PlcTrigger::PlcTrigger(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PlcTrigger::~PlcTrigger() = default;
bool PlcTrigger::TryPop(PartEvent& out) { return impl_->TryPop(out); }
bool PlcTrigger::WaitPop(PartEvent& out, std::chrono::milliseconds timeout) {
  return impl_->WaitPop(out, timeout);
}
TriggerStats PlcTrigger::stats() const { return impl_->stats(); }

}  // namespace tend::io
