#include "runtime/state_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "core/fs.h"

namespace tend::runtime {

Result<std::unique_ptr<StateDirLock>> StateDirLock::Acquire(const std::string& dir) {
  TEND_RETURN_NOT_OK(
      fs::MakeDirs(dir).map_error([&](Error e) { return e.Wrap("state directory " + dir); }));
  std::unique_ptr<StateDirLock> l(new StateDirLock());
  l->dir_ = dir;
  const std::string path = dir + "/tend.lock";
  l->fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (l->fd_ < 0) return Fail(fs::ErrnoError("state directory lock " + path, errno));
  if (::flock(l->fd_, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    if (e != EWOULDBLOCK) return Fail(fs::ErrnoError("lock " + path, e));
    char buf[32] = {0};
    const ssize_t n = ::pread(l->fd_, buf, sizeof buf - 1, 0);
    std::string pid = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "unknown";
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    return Fail(Error::Invalid("state directory " + dir + " is in use by another tend (pid " + pid +
                               "): give each agent its own --state-dir"));
  }
  const std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(l->fd_, 0) != 0 || ::pwrite(l->fd_, me.data(), me.size(), 0) < 0) {
    return Fail(fs::ErrnoError("write " + path, errno));
  }
  return l;
}

StateDirLock::~StateDirLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock
}

}  // namespace tend::runtime
