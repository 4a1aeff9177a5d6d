// Shared helpers for the model tests: where the exported test models are, and PyTorch's
// reference outputs for them (expected.json, written by scripts/models/export_models.py).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace tend::model::testing {

inline std::string ModelDir() { return TEND_MODEL_TEST_DIR; }
inline std::string ModelPath(const std::string& name) { return ModelDir() + "/" + name + ".onnx"; }
inline bool HaveModels() { return std::filesystem::exists(ModelDir() + "/expected.json"); }

#define TEND_REQUIRE_TEST_MODELS()                                                          \
  if (!::tend::model::testing::HaveModels())                                                \
  GTEST_SKIP() << "test models not exported (needs /usr/bin/python3 with torch and onnx): " \
               << ::tend::model::testing::ModelDir()

inline nlohmann::json Expected() {
  std::ifstream in(ModelDir() + "/expected.json");
  return nlohmann::json::parse(in);
}

// A fresh, empty directory under the system temp dir for one test.
inline std::string TempDir(const std::string& tag) {
  auto dir = std::filesystem::temp_directory_path() /
             ("tend_model_" + tag + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

inline void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

inline std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace tend::model::testing
