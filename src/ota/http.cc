// The HTTP half of fetch.h: our own small client (HttpFetcher) and the registry server, which
// uses cpp-httplib (it stays inside this one file).
#include <httplib.h>
#include <netdb.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <system_error>
#include <thread>

#include "core/fs.h"
#include "core/log.h"
#include "core/net.h"
#include "ota/fetch.h"
#include "ota/http_response.h"
#include "ota/metadata.h"
#include "ota/registry.h"

namespace tend::ota {

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
Clock::duration Dur(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

// Host name to addresses by the deadline. A numeric address resolves at once; a name is looked up
// on a helper thread so that a hanging resolver cannot hold the fetch (or shutdown) past its
// deadline: the thread is left to finish on its own and frees what it got.
Result<std::vector<sockaddr_storage>> Resolve(const std::string& host, int port,
                                              Clock::time_point deadline,
                                              const std::atomic<bool>& interrupted,
                                              const std::string& url) {
  struct Lookup {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    int rc = 0;
    addrinfo* res = nullptr;
    ~Lookup() {
      if (res) ::freeaddrinfo(res);
    }
  };
  auto lookup = std::make_shared<Lookup>();
  const std::string service = std::to_string(port);
  auto run = [lookup, host, service](int flags) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = flags;
    addrinfo* res = nullptr;
    const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
    std::lock_guard<std::mutex> lock(lookup->mu);
    lookup->rc = rc;
    lookup->res = res;
    lookup->done = true;
    lookup->cv.notify_all();
  };
  run(AI_NUMERICHOST);
  if (lookup->rc == EAI_NONAME) {
    lookup->done = false;
    try {
      std::thread(run, AI_ADDRCONFIG).detach();
    } catch (const std::system_error& e) {
      return Fail(Error::Io(url + ": cannot start the resolver: " + e.what()));
    }
    std::unique_lock<std::mutex> lock(lookup->mu);
    while (!lookup->done) {
      if (interrupted) return Fail(Error::Timeout(url + ": interrupted (fetcher stopping)"));
      if (Clock::now() >= deadline) {
        return Fail(Error::Timeout(url + ": resolving " + host + " timed out"));
      }
      lookup->cv.wait_for(lock, std::chrono::milliseconds(50));
    }
  }
  std::lock_guard<std::mutex> lock(lookup->mu);
  if (lookup->rc != 0) {
    return Fail(Error::Io(url + ": cannot resolve " + host + ": " + ::gai_strerror(lookup->rc)));
  }
  std::vector<sockaddr_storage> out;
  for (addrinfo* a = lookup->res; a; a = a->ai_next) {
    if (a->ai_addrlen > sizeof(sockaddr_storage)) continue;
    sockaddr_storage ss{};
    std::memcpy(&ss, a->ai_addr, a->ai_addrlen);
    out.push_back(ss);
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<DirFetcher>> DirFetcher::Create(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return Fail(Error::NotFound(dir + ": registry directory does not exist"));
  }
  return std::unique_ptr<DirFetcher>(new DirFetcher(dir));
}

Result<std::vector<uint8_t>> DirFetcher::Fetch(const std::string& path, int64_t max_bytes) {
  TEND_RETURN_NOT_OK(CheckTargetPath(path));
  std::string full = (std::filesystem::path(dir_) / path).string();
  std::error_code ec;
  auto size = std::filesystem::file_size(full, ec);
  if (ec) {
    if (!fs::Exists(full)) return Fail(Error::NotFound(full + ": not in the registry"));
    return Fail(Error::Io(full + ": " + ec.message()));
  }
  if (static_cast<int64_t>(size) > max_bytes) {
    return Fail(Error::Security(full + ": " + std::to_string(size) + " bytes, more than the " +
                                std::to_string(max_bytes) + " allowed"));
  }
  TEND_ASSIGN_OR_RETURN(auto bytes, fs::ReadBinaryFile(full));
  if (static_cast<int64_t>(bytes.size()) > max_bytes) {
    return Fail(Error::Security(full + ": grew past the " + std::to_string(max_bytes) +
                                " bytes allowed while being read"));
  }
  return bytes;
}

Result<std::unique_ptr<HttpFetcher>> HttpFetcher::Create(const std::string& base_url,
                                                         const HttpOptions& opts) {
  const std::string scheme = "http://";
  if (base_url.rfind(scheme, 0) != 0) {
    return Fail(Error::Invalid("registry url \"" + base_url + "\": only http:// is supported"));
  }
  std::unique_ptr<HttpFetcher> f(new HttpFetcher());
  f->base_url_ = base_url;
  f->opts_ = opts;
  std::string rest = base_url.substr(scheme.size());
  size_t slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  f->prefix_ = slash == std::string::npos ? "" : rest.substr(slash);
  while (!f->prefix_.empty() && f->prefix_.back() == '/') f->prefix_.pop_back();
  size_t colon = hostport.rfind(':');
  f->host_ = hostport.substr(0, colon);
  if (colon != std::string::npos) {
    std::string p = hostport.substr(colon + 1);
    char* end = nullptr;
    long port = std::strtol(p.c_str(), &end, 10);
    if (p.empty() || *end != '\0' || port < 1 || port > 65535) {
      return Fail(Error::Invalid("registry url \"" + base_url + "\": bad port \"" + p + "\""));
    }
    f->port_ = static_cast<int>(port);
  }
  if (f->host_.empty()) return Fail(Error::Invalid("registry url \"" + base_url + "\": no host"));
  for (char c : f->host_ + f->prefix_) {
    // Both go into the request line and Host header verbatim.
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || c == '?' || c == '#') {
      return Fail(Error::Invalid("registry url \"" + base_url +
                                 "\": spaces, control characters, '?' and '#' are not allowed"));
    }
  }
  f->cancel_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (f->cancel_fd_ < 0) return Fail(fs::ErrnoError("eventfd", errno));
  return f;
}

struct HttpFetcher::Exchange {
  std::string url;
  Clock::time_point start, deadline, last_progress;
  double deadline_s = 0;
  int64_t received = 0;  // every byte of the response, headers included
  HttpResponseParser parser;
  Exchange(size_t max_header, int64_t max_body) : parser(max_header, max_body) {}
  double Elapsed(Clock::time_point now) const { return Seconds(now - start); }
};

HttpFetcher::~HttpFetcher() {
  if (cancel_fd_ >= 0) ::close(cancel_fd_);
}

void HttpFetcher::Interrupt() {
  interrupted_ = true;
  const uint64_t one = 1;
  (void)!::write(cancel_fd_, &one, sizeof one);
}

void HttpFetcher::Resume() {
  interrupted_ = false;
  uint64_t v = 0;
  (void)!::read(cancel_fd_, &v, sizeof v);  // non-blocking: clears the event if set
}

// After each arrival (status line and headers included): the average since the start must stay
// above the floor once the grace period is over. Silence is the read timeout's business.
Status HttpFetcher::CheckThroughput(const Exchange& ex) const {
  const double el = ex.Elapsed(Clock::now());
  if (el > opts_.grace_s && static_cast<double>(ex.received) < opts_.min_bytes_per_s * el) {
    return Fail(Error::Security(ex.url + ": too slow (" + std::to_string(ex.received) +
                                " bytes in " + std::to_string(static_cast<int>(el)) + " s, floor " +
                                std::to_string(static_cast<int64_t>(opts_.min_bytes_per_s)) +
                                " B/s)"));
  }
  return Ok();
}

// Waits until `fd` is ready for `events`, enforcing interruption, the overall deadline and the
// connect or read timeout.
Status HttpFetcher::Wait(Exchange& ex, int fd, short events, bool connecting) {
  for (;;) {
    if (interrupted_) return Fail(Error::Timeout(ex.url + ": interrupted (fetcher stopping)"));
    const auto now = Clock::now();
    if (now >= ex.deadline) {
      return Fail(Error::Security(ex.url + ": took longer than " +
                                  std::to_string(static_cast<int64_t>(ex.deadline_s)) + " s"));
    }
    const auto idle_limit = connecting ? ex.start + Dur(opts_.connect_timeout_s)
                                       : ex.last_progress + Dur(opts_.read_timeout_s);
    if (now >= idle_limit) {
      if (connecting) {
        return Fail(Error::Timeout(ex.url + ": connect timed out after " +
                                   std::to_string(static_cast<int>(opts_.connect_timeout_s)) +
                                   " s"));
      }
      return Fail(Error::Timeout(ex.url + ": read failed or no data for " +
                                 std::to_string(static_cast<int>(opts_.read_timeout_s)) + " s"));
    }
    const auto next = std::min(ex.deadline, idle_limit);
    const auto wait_ms = std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count();
    pollfd fds[2] = {{fd, events, 0}, {cancel_fd_, POLLIN, 0}};
    const int n = ::poll(fds, 2, static_cast<int>(std::clamp<int64_t>(wait_ms + 1, 1, 1000)));
    if (n < 0 && errno != EINTR) return Fail(fs::ErrnoError(ex.url + ": poll", errno));
    if (n > 0 && fds[1].revents == 0 && fds[0].revents != 0) return Ok();
  }
}

Result<int> HttpFetcher::Connect(Exchange& ex) {
  TEND_ASSIGN_OR_RETURN(auto addrs, Resolve(host_, port_, ex.start + Dur(opts_.connect_timeout_s),
                                            interrupted_, ex.url));
  Error last = Error::Io(ex.url + ": no address for " + host_);
  for (const auto& a : addrs) {
    int fd = ::socket(a.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return Fail(fs::ErrnoError(ex.url + ": socket", errno));
    const socklen_t len = a.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), len) != 0 && errno != EINPROGRESS) {
      last = fs::ErrnoError(ex.url + ": cannot connect", errno);
      ::close(fd);
      continue;
    }
    auto st = Wait(ex, fd, POLLOUT, /*connecting=*/true);
    int err = 0;
    socklen_t elen = sizeof err;
    if (st && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == 0) return fd;
    ::close(fd);
    if (!st) return Fail(st.error());
    last = fs::ErrnoError(ex.url + ": cannot connect", err);
  }
  return Fail(last);
}

Status HttpFetcher::Send(Exchange& ex, int fd, const std::string& request) {
  size_t off = 0;
  while (off < request.size()) {
    TEND_RETURN_NOT_OK(Wait(ex, fd, POLLOUT, /*connecting=*/false));
    const ssize_t n = ::send(fd, request.data() + off, request.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      return Fail(fs::ErrnoError(ex.url + ": send", errno));
    }
    off += static_cast<size_t>(n);
  }
  return Ok();
}

Status HttpFetcher::Receive(Exchange& ex, int fd) {
  char buf[16384];
  auto wrap = [&](const Error& e) { return Fail(Error{e.code, ex.url + ": " + e.message}); };
  while (!ex.parser.done()) {
    TEND_RETURN_NOT_OK(Wait(ex, fd, POLLIN, /*connecting=*/false));
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      return Fail(fs::ErrnoError(ex.url + ": read", errno));
    }
    if (n == 0) {
      if (auto st = ex.parser.Finish(); !st) return wrap(st.error());
      break;
    }
    ex.received += n;
    ex.last_progress = Clock::now();
    if (auto st = ex.parser.Feed(std::string_view(buf, static_cast<size_t>(n))); !st) {
      return wrap(st.error());
    }
    if (!ex.parser.done()) TEND_RETURN_NOT_OK(CheckThroughput(ex));
  }
  return Ok();
}

Result<std::vector<uint8_t>> HttpFetcher::Fetch(const std::string& path, int64_t max_bytes) {
  TEND_RETURN_NOT_OK(CheckTargetPath(path));
  Exchange ex(opts_.max_header_bytes, max_bytes);
  ex.url = base_url_ + "/" + path;
  ex.start = ex.last_progress = Clock::now();
  // Even a server that keeps the average just above the floor must finish by then.
  ex.deadline_s = opts_.grace_s + static_cast<double>(max_bytes + opts_.max_header_bytes) /
                                      std::max(opts_.min_bytes_per_s, 1e-9);
  ex.deadline = ex.start + Dur(std::min(ex.deadline_s, 1e7));
  ex.parser.set_body_status(200);  // other answers end at their headers
  TEND_ASSIGN_OR_RETURN(int fd, Connect(ex));
  const std::string request = "GET " + prefix_ + "/" + path + " HTTP/1.1\r\nHost: " + host_ +
                              (port_ == 80 ? "" : ":" + std::to_string(port_)) +
                              "\r\nUser-Agent: tend/" TEND_VERSION
                              "\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n";
  Status st = Send(ex, fd, request);
  if (st) st = Receive(ex, fd);
  ::close(fd);
  TEND_RETURN_NOT_OK(st);
  const int status = ex.parser.status();
  if (status == 404) return Fail(Error::NotFound(ex.url + ": 404 Not Found"));
  if (status != 200) return Fail(Error::Io(ex.url + ": HTTP status " + std::to_string(status)));
  return std::move(ex.parser.mutable_body());
}

struct RegistryServer::Impl {
  httplib::Server server;
  std::thread thread;
  std::string dir;
  std::atomic<bool> done{false};
};

Result<std::unique_ptr<RegistryServer>> RegistryServer::Start(const std::string& dir,
                                                              const std::string& host, int port) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return Fail(Error::NotFound(dir + ": registry directory does not exist"));
  }
  std::unique_ptr<RegistryServer> rs(new RegistryServer());
  rs->impl_ = std::make_unique<Impl>();
  Impl& impl = *rs->impl_;
  impl.dir = dir;
  impl.server.set_socket_options([](int fd) { net::ExclusiveListenOptions(fd); });
  if (!impl.server.set_mount_point("/", dir)) {
    return Fail(Error::Io(dir + ": cannot serve this directory"));
  }
  impl.server.Get(R"(/models/([^/]+)/latest)", [&impl](const httplib::Request& req,
                                                       httplib::Response& res) {
    std::string name = req.matches[1];
    std::string profile = req.get_param_value("profile");
    if (profile.empty()) {
      res.status = 400;
      res.set_content(R"({"error":"missing query parameter profile"})", "application/json");
      return;
    }
    auto latest = LatestRelease(impl.dir, name, profile);
    if (!latest) {
      res.status = latest.error().code == ErrorCode::kNotFound ? 404 : 400;
      res.set_content(nlohmann::json{{"error", latest.error().message}}.dump(), "application/json");
      return;
    }
    res.set_content(latest->dump(), "application/json");
  });
  // httplib only says "no"; net::ProbeBind asks the OS why (e.g. "Address already in use").
  if (port == 0) {
    port = impl.server.bind_to_any_port(host);
    if (port <= 0) {
      return Fail(
          Error::Io("registry server: cannot bind " + host + ": " + net::ProbeBind(host, 0)));
    }
  } else if (!impl.server.bind_to_port(host, port)) {
    return Fail(Error::Io("registry server: cannot bind " + host + ":" + std::to_string(port) +
                          ": " + net::ProbeBind(host, port)));
  }
  rs->port_ = port;
  impl.thread = std::thread([&impl] {
    impl.server.listen_after_bind();
    impl.done = true;
  });
  TEND_LOG_INFO("registry {} served on http://{}:{}", dir, host, port);
  return rs;
}

void RegistryServer::Stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  // stop() is a no-op until the listener runs: wait for it (or for its failure) first.
  while (!impl_->server.is_running() && !impl_->done) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

void RegistryServer::Wait() {
  if (impl_ && impl_->thread.joinable()) impl_->thread.join();
}

RegistryServer::~RegistryServer() { Stop(); }

}  // namespace tend::ota
