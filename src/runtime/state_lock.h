// One agent per state directory: an exclusive lock (flock) on <state_dir>/tend.lock, held for the
// life of the process and released by the kernel when it ends, however it ends. A second agent on
// the same directory refuses at once, naming the first one's pid, instead of waiting on the spool's
// database lock and taking over the first one's MQTT client id.
#pragma once

#include <memory>
#include <string>

#include "core/status.h"

namespace tend::runtime {

class StateDirLock {
 public:
  // Creates the directory when missing. Error: "state directory X is in use by another tend
  // (pid N): give each agent its own --state-dir".
  static Result<std::unique_ptr<StateDirLock>> Acquire(const std::string& dir);
  ~StateDirLock();
  StateDirLock(const StateDirLock&) = delete;
  StateDirLock& operator=(const StateDirLock&) = delete;
  const std::string& dir() const { return dir_; }

 private:
  StateDirLock() = default;
  std::string dir_;
  int fd_ = -1;
};

}  // namespace tend::runtime
