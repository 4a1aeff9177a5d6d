#include "runtime/decision_queue.h"

#include "core/log.h"

namespace tend::runtime {

DecisionQueue::DecisionQueue(std::string name, size_t capacity, Writer write, Idle idle)
    : name_(std::move(name)), write_(std::move(write)), idle_(std::move(idle)), ring_(capacity) {
  for (auto& s : ring_) s.d.top_sensors.reserve(8);
}

void DecisionQueue::Start() {
  if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
}

void DecisionQueue::Push(const Decision& d, int tag, bool wait_when_full) {
  std::unique_lock<std::mutex> lk(mu_);
  while (count_ == ring_.size()) {
    if (!wait_when_full || stop_) {
      const int64_t n = dropped_.fetch_add(1) + 1;
      if ((n & (n - 1)) == 0) {  // 1, 2, 4, 8, ...: said, without flooding the log
        TEND_LOG_WARN("{}: writer behind, {} decision(s) not written", name_, n);
      }
      return;
    }
    room_cv_.wait(lk);
  }
  Slot& s = ring_[(head_ + count_) % ring_.size()];
  s.d = d;            // copy-assignment reuses the slot's string/vector capacity
  s.d.features = {};  // points into the model's buffers: never kept
  s.tag = tag;
  ++count_;
  lk.unlock();
  cv_.notify_one();
}

void DecisionQueue::Loop() {
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    cv_.wait(lk, [&] { return count_ > 0 || stop_; });
    if (count_ == 0 && stop_) break;
    while (count_ > 0) {
      Slot& s = ring_[head_];
      lk.unlock();
      write_(s.d, s.tag);
      lk.lock();
      head_ = (head_ + 1) % ring_.size();
      --count_;
      room_cv_.notify_all();
    }
    if (idle_) {
      lk.unlock();
      idle_();
      lk.lock();
    }
  }
}

void DecisionQueue::Stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  room_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace tend::runtime
