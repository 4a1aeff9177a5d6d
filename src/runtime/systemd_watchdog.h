// Feeds systemd's watchdog (WatchdogSec=) at half its period, but only while every asset's
// pipeline loop is turning (or has finished): a pipeline thread stuck for good (a hung driver
// call, a deadlock) stops the pings and systemd restarts tend, instead of a process that is alive
// but no longer deciding.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "agent/agent.h"

namespace tend::runtime {

// What the watchdog watches of one pipeline (an agent's heartbeat() and finished()).
struct Pulse {
  std::function<int64_t()> heartbeat;
  std::function<bool()> finished;
  static Pulse Of(const agent::Agent* a) {
    return {[a] { return a->heartbeat(); }, [a] { return a->finished(); }};
  }
};

class SystemdWatchdog {
 public:
  // `period` 0: systemd asked for no watchdog (sd::WatchdogInterval()); `ping` sends WATCHDOG=1.
  SystemdWatchdog(std::vector<Pulse> pipelines, std::chrono::microseconds period,
                  std::function<void()> ping);
  ~SystemdWatchdog() { Stop(); }
  void Start();
  void Stop();

  // One check: true (and a ping) when every pipeline moved since the last check or finished.
  bool Check();

 private:
  std::vector<Pulse> pipelines_;
  std::vector<int64_t> last_;
  std::chrono::microseconds period_;
  std::function<void()> ping_;
  bool warned_ = false;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

}  // namespace tend::runtime
