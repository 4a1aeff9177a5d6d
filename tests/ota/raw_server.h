// A misbehaving HTTP server for the OTA tests: a raw TCP listener on a free loopback port that
// reads each request and then runs a script on the connection (drip, stall, flood...).
#pragma once

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>

namespace tend::ota::testing {

// A raw TCP server on a free loopback port: reads the request, then runs `script` on the
// connection (one connection at a time) until the script returns or Stop() is called.
class RawServer {
 public:
  using Script = std::function<void(int fd, const std::atomic<bool>& stop)>;
  explicit RawServer(Script script) : script_(std::move(script)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    EXPECT_EQ(::listen(listen_fd_, 8), 0);
    thread_ = std::thread([this] { Serve(); });
  }
  ~RawServer() { Stop(); }
  void Stop() {
    stop_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
    if (listen_fd_ >= 0) ::close(listen_fd_);
    listen_fd_ = -1;
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int accepted() const { return accepted_; }
  // True while a script runs on an open connection.
  bool in_script() const { return in_script_; }

  // Writes all of `s`; false once the client is gone or the server stops.
  static bool Send(int fd, const std::string& s) {
    return ::send(fd, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size());
  }
  // Sleeps `ms` in short steps; false when the server stops meanwhile.
  static bool Nap(int ms, const std::atomic<bool>& stop) {
    for (int i = 0; i < ms / 10 && !stop; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return !stop;
  }

 private:
  void Serve() {
    while (!stop_) {
      int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      ++accepted_;
      std::string req;
      char buf[4096];
      while (req.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        req.append(buf, static_cast<size_t>(n));
      }
      in_script_ = true;
      script_(fd, stop_);
      in_script_ = false;
      ::close(fd);
    }
  }
  Script script_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false}, in_script_{false};
  std::atomic<int> accepted_{0};
};

}  // namespace tend::ota::testing
