#include "core/fs.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <thread>

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

// Issue 17, defect 11: outputs write through special files and symlinks instead of renaming over
// them (as root, `--out /dev/null` replaced the device node with a regular file).
TEST(Fs, OutputsWriteThroughFifosAndSymlinks) {
  auto dir = std::filesystem::temp_directory_path() / ("tend_fs_out_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir / "real");
  const std::string fifo = (dir / "fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::string got;
  std::thread reader([&] { got = *fs::ReadFile(fifo); });
  ASSERT_TRUE(fs::WriteFileAtomic(fifo, std::string("through the pipe")));
  reader.join();
  EXPECT_EQ(got, "through the pipe");
  EXPECT_TRUE(std::filesystem::is_fifo(fifo));
  auto t = fs::ResolveOutput(fifo);
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->special);

  const std::string link = (dir / "link").string();
  std::filesystem::create_symlink("real/target", link);  // dangling until written
  ASSERT_TRUE(fs::WriteFileAtomic(link, std::string("one")));
  ASSERT_TRUE(fs::WriteFileAtomic(link, std::string("two")));
  EXPECT_TRUE(std::filesystem::is_symlink(link));
  EXPECT_EQ(*fs::ReadFile((dir / "real" / "target").string()), "two");

  auto out = fs::OutputFile::Open(link);
  ASSERT_TRUE(out);
  std::fputs("streamed", (*out)->stream());
  ASSERT_TRUE((*out)->Commit());
  EXPECT_TRUE(std::filesystem::is_symlink(link));
  EXPECT_EQ(*fs::ReadFile((dir / "real" / "target").string()), "streamed");
  {
    auto abandoned = fs::OutputFile::Open((dir / "never").string());
    ASSERT_TRUE(abandoned);
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "never"));
  EXPECT_FALSE(std::filesystem::exists(dir / "never.partial"));
  EXPECT_FALSE(fs::ResolveOutput(dir.string()));  // a directory is an error
  std::filesystem::remove_all(dir);
}

// One extension rule for every dispatcher (the runtime's registry and the library's OpenSource).
TEST(Fs, LowerExtensionIsTheLastComponentsOnly) {
  EXPECT_EQ(fs::LowerExtension("run/Stroke.WAV"), "wav");
  EXPECT_EQ(fs::LowerExtension("a.b/c"), "");
  EXPECT_EQ(fs::LowerExtension("data.tar.CSV"), "csv");
  EXPECT_EQ(fs::LowerExtension("noext"), "");
  EXPECT_EQ(fs::LowerExtension("trailing."), "");
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
