// A test suite whose tests share one temp folder holding two simulator models, trained once per
// suite through the real `tend train`: m.onnx (stroke-triggered windows) and fixed.onnx (fixed
// 200-sample hop). Suite derives from SimModelsSuite<Suite> and names its folder in kDirName.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "../agent/cli_util.h"

namespace tend::testing {

template <typename Suite>
class SimModelsSuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(TempDir(Suite::kDirName));
    auto r = Tend("train --input 'sim:strokes=40,wear=0,seed=5' --out m.onnx", *dir_);
    ASSERT_EQ(r.rc, 0) << r.err;
    r = Tend("train --input 'sim:strokes=40,wear=0,seed=6' --hop 200 --out fixed.onnx", *dir_);
    ASSERT_EQ(r.rc, 0) << r.err;
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
    dir_ = nullptr;
  }
  static const std::string& dir() { return *dir_; }

 private:
  static inline std::string* dir_ = nullptr;
};

}  // namespace tend::testing
