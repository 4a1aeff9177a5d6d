// Shared fixtures for the OTA tests: a scratch directory, keys, a registry with releases, a fake
// model (the OTA layer never parses ONNX: the quality gate does), and directory snapshots to prove
// that a refused update changed nothing on disk.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/fs.h"
#include "ota/crypto.h"
#include "ota/registry.h"

namespace tend::ota::testing {

inline constexpr int64_t kT0 = 1800000000;  // 2027-01-15T08:00:00Z
inline constexpr char kProfile[] = "x86-cpu-fp32";
inline constexpr char kModel[] = "press-ae";

class ScratchDir {
 public:
  ScratchDir() {
    static int counter = 0;
    path_ = (std::filesystem::temp_directory_path() /
             ("tend_ota_" + std::to_string(::getpid()) + "_" + std::to_string(counter++)))
                .string();
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const {
    return (std::filesystem::path(path_) / name).string();
  }

 private:
  std::string path_;
};

inline KeyPair NewKey() {
  auto k = GenerateKeyPair();
  EXPECT_TRUE(k.has_value());
  return *k;
}

// Deterministic pseudo-model bytes; different seeds give different files.
inline std::string FakeModel(int seed, size_t size = 3000) {
  std::mt19937 rng(seed);
  std::string s(size, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

inline void WriteText(const std::string& path, const std::string& text) {
  ASSERT_TRUE(fs::WriteFileAtomic(path, text).has_value()) << path;
}

inline std::string ReadText(const std::string& path) {
  auto t = fs::ReadFile(path);
  EXPECT_TRUE(t.has_value()) << path;
  return t ? *t : std::string();
}

// Every regular file under dir (relative name -> bytes).
inline std::map<std::string, std::string> Snapshot(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) {
      out[std::filesystem::relative(e.path(), dir).string()] = ReadText(e.path().string());
    }
  }
  return out;
}

inline void CopyDir(const std::string& from, const std::string& to) {
  std::filesystem::remove_all(to);
  std::filesystem::copy(from, to, std::filesystem::copy_options::recursive);
}

// Publishes FakeModel(seed) as `version` for `profiles`.
inline TargetInfo PublishFake(const std::string& registry, const ScratchDir& scratch, int seed,
                              int64_t version, std::vector<std::string> profiles,
                              const std::vector<KeyPair>& keys, int64_t now = kT0,
                              double min_quality = 0.5) {
  std::string model = scratch / ("model_" + std::to_string(seed) + ".onnx");
  WriteText(model, FakeModel(seed));
  PublishOptions o;
  o.model_path = model;
  o.name = kModel;
  o.version = version;
  o.profiles = std::move(profiles);
  o.min_quality = min_quality;
  o.now = now;
  auto t = Publish(registry, o, keys);
  EXPECT_TRUE(t.has_value()) << (t ? "" : t.error().message);
  return t ? *t : TargetInfo{};
}

}  // namespace tend::ota::testing
