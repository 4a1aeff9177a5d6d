// Test helpers shared by the telemetry and fleet tests: temporary directories, free loopback
// ports, a real Mosquitto broker started on one (stop/restart to simulate outages), child
// processes, and an independent subscriber (mosquitto_sub) whose output is parsed.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace tend::testing {

inline std::string MakeTempDir(const std::string& tag) {
  std::string tmpl = "/tmp/tend-" + tag + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  char* d = ::mkdtemp(buf.data());
  return d ? std::string(d) : std::string();
}

inline int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

inline bool PortOpen(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// Starts argv as a child; stdout (and stderr) to `out_path` if given.
inline pid_t Spawn(const std::vector<std::string>& argv, const std::string& out_path = "",
                   bool merge_stderr = true) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (!out_path.empty()) {
      int fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      if (merge_stderr) ::dup2(fd, 2);
      ::close(fd);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    std::_Exit(127);
  }
  return pid;
}

inline int WaitExit(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

inline void StopChild(pid_t pid, int sig = SIGTERM) {
  if (pid <= 0) return;
  ::kill(pid, sig);
  WaitExit(pid);
}

inline std::string ReadAll(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

template <typename Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

// A real /usr/sbin/mosquitto on a free loopback port, with persistence in its own directory
// so that persistent subscriber sessions survive Stop()/Start() like on a real broker restart.
class Broker {
 public:
  explicit Broker(std::string extra_conf = "", bool tls_only = false)
      : extra_(std::move(extra_conf)), tls_only_(tls_only) {
    dir_ = MakeTempDir("broker");
    port_ = FreePort();
  }
  ~Broker() {
    Stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  static bool Available() { return ::access("/usr/sbin/mosquitto", X_OK) == 0; }

  bool Start() {
    std::ofstream conf(dir_ + "/mosquitto.conf");
    conf << "per_listener_settings false\n";
    if (!tls_only_) conf << "listener " << port_ << " 127.0.0.1\nallow_anonymous true\n";
    conf << "persistence true\npersistence_location " << dir_ << "/\n"
         << "autosave_interval 1\n"
         << "user root\nlog_dest file " << dir_ << "/mosquitto.log\n"
         << "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
         << "max_queued_messages 0\nmax_inflight_messages 0\nmax_queued_bytes 0\n"
         << "queue_qos0_messages true\n"
         << extra_ << "\n";
    conf.close();
    pid_ = Spawn({"/usr/sbin/mosquitto", "-c", dir_ + "/mosquitto.conf"}, dir_ + "/stdout.log");
    return WaitFor([&] { return PortOpen(port_); }, std::chrono::seconds(10));
  }
  void Stop() {
    if (pid_ > 0) StopChild(pid_, SIGTERM);
    pid_ = -1;
  }
  int port() const { return port_; }
  void set_port(int p) { port_ = p; }
  void set_extra(std::string conf) { extra_ = std::move(conf); }
  const std::string& dir() const { return dir_; }
  std::string url() const { return "mqtt://127.0.0.1:" + std::to_string(port_); }
  std::string log() const { return ReadAll(dir_ + "/mosquitto.log"); }

 private:
  std::string extra_;
  bool tls_only_;
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// One received message of the independent subscriber.
struct SubMessage {
  int retained = 0;
  int qos = 0;
  std::string topic;
  std::string payload;
};

// mosquitto_sub -v with a persistent session (-c) so that a broker restart loses nothing; its
// lines are "<retain> <qos> <topic> <payload>".
class Subscriber {
 public:
  Subscriber(int port, std::vector<std::string> topics, std::string client_id,
             std::vector<std::string> extra_args = {})
      : port_(port),
        topics_(std::move(topics)),
        id_(std::move(client_id)),
        extra_(std::move(extra_args)) {
    dir_ = MakeTempDir("sub");
  }
  ~Subscriber() {
    Stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  void Start() {
    std::vector<std::string> argv = {"/usr/bin/mosquitto_sub",
                                     "-h",
                                     "127.0.0.1",
                                     "-p",
                                     std::to_string(port_),
                                     "-q",
                                     "1",
                                     "-c",
                                     "-i",
                                     id_,
                                     "-F",
                                     "%r %q %t %p"};
    for (const auto& t : topics_) {
      argv.push_back("-t");
      argv.push_back(t);
    }
    for (const auto& e : extra_) argv.push_back(e);
    pid_ = Spawn(argv, dir_ + "/out.txt", /*merge_stderr=*/false);
  }
  void Stop() {
    if (pid_ > 0) StopChild(pid_, SIGTERM);
    pid_ = -1;
  }
  std::vector<SubMessage> Messages() const {
    std::vector<SubMessage> out;
    std::istringstream in(ReadAll(dir_ + "/out.txt"));
    std::string line;
    while (std::getline(in, line)) {
      SubMessage m;
      std::istringstream ls(line);
      ls >> m.retained >> m.qos >> m.topic;
      std::getline(ls, m.payload);
      if (!m.payload.empty() && m.payload[0] == ' ') m.payload.erase(0, 1);
      if (!m.topic.empty()) out.push_back(std::move(m));
    }
    return out;
  }

 private:
  int port_;
  std::vector<std::string> topics_;
  std::string id_;
  std::vector<std::string> extra_;
  std::string dir_;
  pid_t pid_ = -1;
};

// Publishes with mosquitto_pub until the subscriber shows it: proves the subscription is live.
inline bool WaitSubscribed(int port, const Subscriber& sub, const std::string& probe_topic) {
  return WaitFor(
      [&] {
        pid_t p = Spawn({"/usr/bin/mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(port),
                         "-t", probe_topic, "-m", "probe", "-q", "1"});
        WaitExit(p);
        for (const auto& m : sub.Messages()) {
          if (m.topic == probe_topic) return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        return false;
      },
      std::chrono::seconds(10));
}

}  // namespace tend::testing
