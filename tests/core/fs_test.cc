#include "core/fs.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace tend {
namespace {

TEST(Fs, AtomicWriteReplacesAndLeavesNoTemp) {
  auto dir = std::filesystem::temp_directory_path() / ("tend_fs_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string path = (dir / "state.json").string();
  ASSERT_TRUE(fs::WriteFileAtomic(path, std::string("one")));
  ASSERT_TRUE(fs::WriteFileAtomic(path, std::string("two")));
  EXPECT_EQ(*fs::ReadFile(path), "two");
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);
  std::filesystem::remove_all(dir);
}

TEST(Fs, ReadErrorsNameThePath) {
  auto r = fs::ReadFile("/nonexistent/x.bin");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(r.error().message, "/nonexistent/x.bin: No such file or directory");
  auto d = fs::ReadFile("/tmp");
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().message.find("is a directory"), std::string::npos);
  EXPECT_FALSE(fs::WriteFileAtomic("/nonexistent/dir/x", std::string("a")));
}

}  // namespace
}  // namespace tend
