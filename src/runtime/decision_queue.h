// Decisions handed from pipeline threads to one writer thread, so that a sink never blocks a
// pipeline on I/O (a slow pipe on stdout, a stalled disk under the decision log). Push() copies the
// decision into a preallocated slot (its strings keep their capacity) and returns; the writer
// formats and writes it. When the queue is full a lossless producer (a replay) waits for room;
// any other drops the decision and counts it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "decide/decision.h"

namespace tend::runtime {

class DecisionQueue {
 public:
  // Called on the writer thread, one decision at a time in push order; `tag` is Push's.
  using Writer = std::function<void(const Decision& d, int tag)>;
  // Called on the writer thread when the queue has been emptied (e.g. to flush a file).
  using Idle = std::function<void()>;

  DecisionQueue(std::string name, size_t capacity, Writer write, Idle idle = {});
  ~DecisionQueue() { Stop(); }

  void Start();
  void Push(const Decision& d, int tag, bool wait_when_full);
  // Writes everything queued, then ends the writer thread.
  void Stop();
  int64_t dropped() const { return dropped_.load(); }

 private:
  struct Slot {
    Decision d;
    int tag = 0;
  };
  void Loop();

  std::string name_;
  Writer write_;
  Idle idle_;
  std::vector<Slot> ring_;
  size_t head_ = 0, count_ = 0;  // guarded by mu_
  bool stop_ = false;            // guarded by mu_
  std::mutex mu_;
  std::condition_variable cv_, room_cv_;
  std::thread thread_;
  std::atomic<int64_t> dropped_{0};
};

}  // namespace tend::runtime
