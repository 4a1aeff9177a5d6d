// Small helpers shared by subcommands: progress on stderr (a live line on a terminal, a plain
// line every few seconds otherwise, so that logs and CI output stay readable).
#pragma once

#include <chrono>
#include <string>

#include <CLI/CLI.hpp>

#include "core/config.h"

namespace tend::cli {

class Progress {
 public:
  explicit Progress(std::string what);
  // fraction in [0,1], or < 0 when unknown.
  void Update(double fraction, const std::string& detail = {});
  void Done(const std::string& detail = {});

 private:
  std::string what_;
  bool enabled_;
  std::chrono::steady_clock::time_point start_, last_;
};

// Reads `key` from the config file into `field` unless `flag` was given on the command line,
// where the flag wins. The file's value is type-checked either way, so a bad key never hides
// behind a flag.
template <typename T>
Status FlagOrConfig(Config& c, const CLI::App& cmd, const char* flag, const char* key, T& field) {
  if (cmd.count(flag) == 0) return c.Get(key, field);
  T ignored = field;
  return c.Get(key, ignored);
}

}  // namespace tend::cli
