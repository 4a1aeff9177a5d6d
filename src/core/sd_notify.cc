#include "core/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "core/fs.h"

namespace tend::sd {

bool NotifyEnabled() {
  const char* s = std::getenv("NOTIFY_SOCKET");
  return s && *s;
}

Status Notify(const std::string& state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (!path || !*path) return Ok();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const size_t len = std::strlen(path);
  if ((path[0] != '/' && path[0] != '@') || len >= sizeof(addr.sun_path)) {
    return Fail(Error::Invalid(std::string("NOTIFY_SOCKET '") + path +
                               "' is not an absolute path or @abstract name"));
  }
  std::memcpy(addr.sun_path, path, len);
  if (path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  const socklen_t alen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Fail(fs::ErrnoError("socket for NOTIFY_SOCKET", errno));
  // Never blocks: a receiver that does not read (its queue holds only net.unix.max_dgram_qlen
  // datagrams) must not stall the agent; the message is dropped and reported instead.
  ssize_t n = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL | MSG_DONTWAIT,
                       reinterpret_cast<const sockaddr*>(&addr), alen);
  int e = errno;
  ::close(fd);
  if (n < 0) return Fail(fs::ErrnoError(std::string("notify systemd at ") + path, e));
  return Ok();
}

std::chrono::microseconds WatchdogInterval() {
  const char* usec = std::getenv("WATCHDOG_USEC");
  if (!usec || !*usec) return std::chrono::microseconds(0);
  if (const char* pid = std::getenv("WATCHDOG_PID"); pid && *pid) {
    char* end = nullptr;
    long p = std::strtol(pid, &end, 10);
    if (*end != '\0' || p != static_cast<long>(::getpid())) return std::chrono::microseconds(0);
  }
  char* end = nullptr;
  long long v = std::strtoll(usec, &end, 10);
  if (*end != '\0' || v <= 0) return std::chrono::microseconds(0);
  return std::chrono::microseconds(v);
}

}  // namespace tend::sd
