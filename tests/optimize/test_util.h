// Shared helpers for the optimize tests: where the generated models live, temp files, and
// running the ONNX checker through Debian's python3-onnx.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace tend::optimize::testing {

// Generated at build time by make_test_models.py (see tests/optimize/CMakeLists.txt).
inline std::string ModelDir() { return OPTIMIZE_TEST_MODELS; }
inline std::string Model(const std::string& name) { return ModelDir() + "/" + name; }

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tend-opt-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string File(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs a shell command; returns its exit status and captures stdout (and stderr unless the
// command redirects it itself).
struct CommandResult {
  int status = -1;
  std::string output;
};
inline CommandResult RunCommand(const std::string& cmd, bool merge_stderr = true) {
  CommandResult r;
  FILE* p = ::popen((merge_stderr ? cmd + " 2>&1" : cmd).c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

// onnx.checker.check_model with full_check (shape inference too); "" when it passes.
inline std::string OnnxCheckerErrors(const std::string& path) {
  auto r = RunCommand(
      "/usr/bin/python3 -c \"import onnx,sys; "
      "onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)\" '" +
      path + "'");
  return r.status == 0 ? std::string() : (r.output.empty() ? "checker failed" : r.output);
}

}  // namespace tend::optimize::testing
