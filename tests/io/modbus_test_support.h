// An independent Modbus TCP server for the PLC tests: tests/io/modbus_server.py (Debian's
// pymodbus, not libmodbus) on a free loopback port. Every value a client writes is logged as a JSON
// line, which Writes() parses; Set() changes inputs and registers the way a PLC program would.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "telemetry/test_support.h"

namespace tend::testing {

struct ModbusWrite {
  double t = 0;
  std::string table;  // "co" or "hr"
  int addr = 0;
  std::vector<int> values;
};

class ModbusServer {
 public:
  ModbusServer() : dir_(MakeTempDir("modbus")), port_(FreePort()) { ::signal(SIGPIPE, SIG_IGN); }
  ~ModbusServer() {
    Kill(SIGTERM);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  static bool Available() {
    return ::system("/usr/bin/python3 -c 'import pymodbus.server' >/dev/null 2>&1") == 0;
  }
  // Starts (or restarts, with all values zero again: a PLC that rebooted) the server.
  bool Start() {
    int fds[2];
    if (::pipe(fds) != 0) return false;
    std::string script = std::string(TEND_SOURCE_DIR) + "/tests/io/modbus_server.py";
    std::string log = LogPath(), out = dir_ + "/stdout.log";
    std::string port = std::to_string(port_);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fds[0], 0);
      ::close(fds[0]);
      ::close(fds[1]);
      int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::execl("/usr/bin/python3", "python3", script.c_str(), "--port", port.c_str(), "--log",
              log.c_str(), static_cast<char*>(nullptr));
      std::_Exit(127);
    }
    ::close(fds[0]);
    stdin_ = fds[1];
    return WaitFor([&] { return PortOpen(port_); }, std::chrono::seconds(15));
  }
  void Kill(int sig = SIGKILL) {
    if (stdin_ >= 0) ::close(stdin_);
    stdin_ = -1;
    if (pid_ > 0) StopChild(pid_, sig);
    pid_ = -1;
  }
  // table: "co", "di", "hr" or "ir".
  void Set(const std::string& table, int addr, int value) {
    std::string line =
        "set " + table + " " + std::to_string(addr) + " " + std::to_string(value) + "\n";
    (void)!::write(stdin_, line.data(), line.size());
  }
  std::vector<ModbusWrite> Writes() const {
    std::vector<ModbusWrite> out;
    std::istringstream in(ReadAll(LogPath()));
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded()) continue;  // a line cut by a kill
      out.push_back({j["t"].get<double>(), j["table"].get<std::string>(), j["addr"].get<int>(),
                     j["values"].get<std::vector<int>>()});
    }
    return out;
  }
  // The values written to one address, in order.
  std::vector<int> ValuesAt(const std::string& table, int addr) const {
    std::vector<int> v;
    for (const auto& w : Writes()) {
      for (size_t i = 0; i < w.values.size(); ++i) {
        if (w.table == table && w.addr + static_cast<int>(i) == addr) v.push_back(w.values[i]);
      }
    }
    return v;
  }
  std::string url() const { return "modbus://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  std::string LogPath() const { return dir_ + "/writes.jsonl"; }
  std::string Output() const { return ReadAll(dir_ + "/stdout.log"); }

 private:
  std::string dir_;
  int port_;
  pid_t pid_ = -1;
  int stdin_ = -1;
};

}  // namespace tend::testing
