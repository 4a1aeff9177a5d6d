#include "runtime/systemd_watchdog.h"

#include "core/log.h"

namespace tend::runtime {

SystemdWatchdog::SystemdWatchdog(std::vector<Pulse> pipelines, std::chrono::microseconds period,
                                 std::function<void()> ping)
    : pipelines_(std::move(pipelines)),
      last_(pipelines_.size(), -1),
      period_(period),
      ping_(std::move(ping)) {}

bool SystemdWatchdog::Check() {
  bool moved = true;
  for (size_t i = 0; i < pipelines_.size(); ++i) {
    const int64_t beat = pipelines_[i].heartbeat();
    if (beat == last_[i] && !pipelines_[i].finished()) moved = false;
    last_[i] = beat;
  }
  if (moved) {
    ping_();
    warned_ = false;
  } else if (!warned_) {
    TEND_LOG_ERROR(
        "a pipeline has not moved for {} ms: no longer feeding the systemd watchdog, "
        "which will restart tend",
        period_.count() / 2000);
    warned_ = true;
  }
  return moved;
}

void SystemdWatchdog::Start() {
  if (period_.count() == 0 || thread_.joinable()) return;
  TEND_LOG_INFO("systemd watchdog: {} ms", period_.count() / 1000);
  thread_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, period_ / 2, [this] { return stop_; })) Check();
  });
}

void SystemdWatchdog::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace tend::runtime
