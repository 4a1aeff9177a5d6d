// Small helpers shared by subcommands: progress on stderr (a live line on a terminal, a plain
// line every few seconds otherwise, so that logs and CI output stay readable).
#pragma once

#include <chrono>
#include <string>

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

}  // namespace tend::cli
