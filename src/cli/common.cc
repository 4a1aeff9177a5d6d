#include "cli/common.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace tend::cli {

Progress::Progress(std::string what)
    : what_(std::move(what)),
      enabled_(::isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()),
      last_(start_) {}

void Progress::Update(double fraction, const std::string& detail) {
  auto now = std::chrono::steady_clock::now();
  // A terminal gets a live line; logs and CI get a plain line every few seconds.
  if (now - last_ < std::chrono::milliseconds(enabled_ ? 200 : 3000)) return;
  last_ = now;
  double el = std::chrono::duration<double>(now - start_).count();
  if (!enabled_) {
    if (fraction >= 0) {
      std::fprintf(stderr, "%s: %3.0f%% %s (%.1fs)\n", what_.c_str(), fraction * 100, detail.c_str(), el);
    } else {
      std::fprintf(stderr, "%s: %s (%.1fs)\n", what_.c_str(), detail.c_str(), el);
    }
    return;
  }
  if (fraction >= 0) {
    int w = 30, f = static_cast<int>(fraction * w + 0.5);
    std::fprintf(stderr, "\r%s [%.*s%*s] %3.0f%% %s (%.1fs)   ", what_.c_str(), f,
                 "##############################", w - f, "", fraction * 100, detail.c_str(), el);
  } else {
    std::fprintf(stderr, "\r%s: %s (%.1fs)   ", what_.c_str(), detail.c_str(), el);
  }
  std::fflush(stderr);
}

void Progress::Done(const std::string& detail) {
  if (!enabled_) return;
  double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::fprintf(stderr, "\r%s: done, %s (%.1fs)%20s\n", what_.c_str(), detail.c_str(), el, "");
}

}  // namespace tend::cli
