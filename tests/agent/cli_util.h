// Runs the real `tend` binary the way a user would and captures exit code, stdout and stderr.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace tend::testing {

struct CmdResult {
  int rc = -1;
  std::string out, err;
};

inline std::string TendBin() { return std::string(std::getenv("TEND_BINARY_DIR")) + "/tend"; }

inline std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline CmdResult RunCmd(const std::string& cmd, const std::string& dir) {
  std::string out = dir + "/.stdout", err = dir + "/.stderr";
  std::string full = "cd '" + dir + "' && " + cmd + " >'" + out + "' 2>'" + err + "' </dev/null";
  int st = std::system(full.c_str());
  CmdResult r;
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.out = Slurp(out);
  r.err = Slurp(err);
  return r;
}

inline CmdResult Tend(const std::string& args, const std::string& dir) {
  std::string cmd = "'";  // appended piecewise: GCC 12 -O3 warns (-Wrestrict) on "'" + string
  cmd += TendBin();
  cmd += "' ";
  cmd += args;
  return RunCmd(cmd, dir);
}

inline std::string TempDir(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() /
           ("tend_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d.string();
}

// The last non-empty line (errors are one line, after any log lines).
inline std::string LastLine(const std::string& s) {
  std::string line, last;
  std::istringstream in(s);
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  return last;
}

inline std::string SharedDir() {
  const char* s = std::getenv("TEND_SHARED_DIR");
  return s ? s : "";
}

}  // namespace tend::testing
