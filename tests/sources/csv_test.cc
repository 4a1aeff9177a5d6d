#include <fmt/format.h>
#include <gtest/gtest.h>

#include <vector>

#include "sources/source.h"
#include "test_util.h"

namespace tend::sources {
namespace {

using testing::ScratchDir;
using testing::WriteText;

std::vector<float> ReadAll(Source& s, size_t chunk) {
  std::vector<float> all, buf(chunk * s.info().channels);
  for (;;) {
    auto n = s.Read(buf, chunk);
    EXPECT_TRUE(n.has_value()) << (n ? "" : n.error().message);
    if (!n || *n == 0) break;
    all.insert(all.end(), buf.begin(), buf.begin() + *n * s.info().channels);
  }
  return all;
}

// The first error met while opening and reading the whole file.
Error FirstError(const std::string& path, const SourceOptions& opts) {
  auto src = OpenCsv(path, opts);
  if (!src) return src.error();
  std::vector<float> buf(64 * (*src)->info().channels);
  for (;;) {
    auto n = (*src)->Read(buf, 64);
    if (!n) return n.error();
    if (*n == 0) break;
  }
  ADD_FAILURE() << path << ": expected an error";
  return Error{};
}

TEST(CsvTest, HeaderNamesChannels) {
  ScratchDir dir;
  const std::string path = dir.File("a.csv");
  WriteText(path, "DE,FE\n0.5,-1\n# a comment\n\n0.25, 2e-3\r\n+3,-0\n");
  EXPECT_FALSE(OpenCsv(path).has_value());  // no time column and no rate given
  auto src = OpenCsv(path, {.sample_rate = 12000});
  ASSERT_TRUE(src.has_value()) << src.error().message;
  const StreamInfo& info = (*src)->info();
  EXPECT_EQ(info.sample_rate, 12000);
  EXPECT_EQ(info.channels, 2);
  EXPECT_EQ(info.channel_names, (std::vector<std::string>{"DE", "FE"}));
  EXPECT_EQ(info.total_frames, 3);
  EXPECT_EQ((*src)->Describe(), "csv:" + path + " (12000 Hz, 2 ch)");
  EXPECT_EQ(ReadAll(**src, 2), (std::vector<float>{0.5f, -1.f, 0.25f, 2e-3f, 3.f, -0.f}));
}

TEST(CsvTest, NoHeaderFirstRowIsData) {
  ScratchDir dir;
  const std::string path = dir.File("b.csv");
  WriteText(path, "1;2;3\n4;5;6");  // semicolons, no final newline
  auto src = OpenCsv(path, {.sample_rate = 100});
  ASSERT_TRUE(src.has_value()) << src.error().message;
  EXPECT_EQ((*src)->info().channel_names, (std::vector<std::string>{"ch0", "ch1", "ch2"}));
  EXPECT_EQ((*src)->info().total_frames, 2);
  EXPECT_EQ(ReadAll(**src, 1), (std::vector<float>{1, 2, 3, 4, 5, 6}));
}

TEST(CsvTest, TimeColumnGivesSampleRate) {
  ScratchDir dir;
  const std::string path = dir.File("c.csv");
  std::string text = "time\tx\n";
  // 3,000 rows at 2 kHz, times printed with 6 decimals; more rows than the read-ahead.
  for (int i = 0; i < 3000; ++i) text += fmt::format("{:.6f}\t{}\n", i / 2000.0, i);
  WriteText(path, text);
  auto src = OpenCsv(path, {.sample_rate = 999});  // the file's time column wins
  ASSERT_TRUE(src.has_value()) << src.error().message;
  EXPECT_NEAR((*src)->info().sample_rate, 2000, 1e-6);
  EXPECT_EQ((*src)->info().channels, 1);
  EXPECT_EQ((*src)->info().channel_names, std::vector<std::string>{"x"});
  EXPECT_EQ((*src)->info().total_frames, 3000);
  const auto all = ReadAll(**src, 333);
  ASSERT_EQ(all.size(), 3000u);
  for (int i = 0; i < 3000; ++i) ASSERT_EQ(all[i], float(i));
}

TEST(CsvTest, PicksOneColumn) {
  ScratchDir dir;
  const std::string path = dir.File("d.csv");
  WriteText(path, "t,a,b\n0,1,10\n0.1,2,20\n0.2,3,30\n");
  auto src = OpenCsv(path, {.wav_channel = 1});
  ASSERT_TRUE(src.has_value()) << src.error().message;
  EXPECT_NEAR((*src)->info().sample_rate, 10, 1e-9);
  EXPECT_EQ((*src)->info().channel_names, std::vector<std::string>{"b"});
  EXPECT_EQ(ReadAll(**src, 2), (std::vector<float>{10, 20, 30}));
  auto bad = OpenCsv(path, {.wav_channel = 2});
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message.find("channel 2 requested, the file has 2"), std::string::npos);
}

TEST(CsvBadInputTest, RaggedRowNamesLine) {
  ScratchDir dir;
  const std::string path = dir.File("r.csv");
  WriteText(path, "a,b,c\n1,2,3\n# comment\n4,5\n");
  const Error e = FirstError(path, {.sample_rate = 10});
  EXPECT_EQ(e.code, ErrorCode::kCorrupt);
  EXPECT_EQ(e.message, path + ":4: expected 3 values, got 2");
}

TEST(CsvBadInputTest, NonNumericAndNonFiniteCells) {
  ScratchDir dir;
  const std::string path = dir.File("n.csv");
  WriteText(path, "DE,FE\n1,2\n3,abc\n");
  EXPECT_EQ(FirstError(path, {.sample_rate = 10}).message,
            path + ":3: column 'FE' is not a number: 'abc'");
  WriteText(path, "1,2\n3,\n");
  EXPECT_EQ(FirstError(path, {.sample_rate = 10}).message,
            path + ":2: column 'ch1' is not a number: ''");
  WriteText(path, "DE,FE\n1,2\n3,4\nnan,1\n");
  EXPECT_EQ(FirstError(path, {.sample_rate = 10}).message,
            path + ":4: column 'DE' is not finite: 'nan'");
  WriteText(path, "DE,FE\n1,inf\n");
  EXPECT_EQ(FirstError(path, {.sample_rate = 10}).message,
            path + ":2: column 'FE' is not finite: 'inf'");
  WriteText(path, "DE,FE\n1,1e39\n");
  EXPECT_NE(FirstError(path, {.sample_rate = 10}).message.find(":2: column 'FE' is out of float"),
            std::string::npos);
}

TEST(CsvBadInputTest, BrokenTimeColumn) {
  ScratchDir dir;
  const std::string path = dir.File("t.csv");
  WriteText(path, "t,x\n0,1\n0.1,1\n0.1,1\n");
  EXPECT_EQ(FirstError(path, {}).message, path + ":4: time 0.1 does not increase");
  // A gap after the read-ahead: the line is named.
  std::string text = "t,x\n";
  for (int i = 0; i < 1500; ++i)
    text += fmt::format("{:.3f},{}\n", (i < 1200 ? i : i + 5) * 0.001, i);
  WriteText(path, text);
  const Error gap = FirstError(path, {});
  EXPECT_NE(gap.message.find(path + ":1202: time 1.205 breaks uniform sampling"), std::string::npos)
      << gap.message;
  WriteText(path, "t,x\n0,1\n");
  EXPECT_NE(FirstError(path, {}).message.find("at least two rows"), std::string::npos);
}

// Issue 17, defect 10: Excel's "CSV UTF-8" starts with a byte-order mark. It hid the time column
// (scored as vibration, score ~1.7e11) and made the first row of a numeric file a header.
TEST(CsvTest, ByteOrderMarkIsStripped) {
  ScratchDir dir;
  const std::string path = dir.File("bom.csv");
  WriteText(path, "\xEF\xBB\xBFtime,x\n0,1\n0.1,2\n0.2,3\n");
  auto src = OpenCsv(path, {});
  ASSERT_TRUE(src.has_value()) << src.error().message;
  EXPECT_NEAR((*src)->info().sample_rate, 10, 1e-9);
  EXPECT_EQ((*src)->info().channel_names, std::vector<std::string>{"x"});
  EXPECT_EQ(ReadAll(**src, 2), (std::vector<float>{1, 2, 3}));
  WriteText(path,
            "\xEF\xBB\xBF"
            "0.5,1\n0.25,2\n");
  src = OpenCsv(path, {.sample_rate = 100});
  ASSERT_TRUE(src.has_value()) << src.error().message;
  EXPECT_EQ((*src)->info().channel_names, (std::vector<std::string>{"ch0", "ch1"}));
  EXPECT_EQ((*src)->info().total_frames, 2);
  EXPECT_EQ(ReadAll(**src, 2), (std::vector<float>{0.5f, 1, 0.25f, 2}));
}

// A first line with names and numbers is neither a header nor data: an error, not a lost row.
TEST(CsvBadInputTest, FirstLineMixingNamesAndNumbers) {
  ScratchDir dir;
  const std::string path = dir.File("mixed.csv");
  WriteText(path, "0.5,x\n1,2\n");
  const Error e = FirstError(path, {.sample_rate = 10});
  EXPECT_EQ(e.code, ErrorCode::kCorrupt);
  EXPECT_EQ(e.message, path +
                           ":1: first line mixes names and numbers ('x', '0.5'): a header "
                           "needs a name in every column, a data row a number");
}

// Issue 17, defect 11: 1e-400 underflows a double; it is read as 0 (what it is as a float sample
// anyway), not refused as "not finite". 1e400 overflows: out of range.
TEST(CsvTest, UnderflowReadsAsZeroOverflowIsOutOfRange) {
  ScratchDir dir;
  const std::string path = dir.File("u.csv");
  WriteText(path, "a,b\n1e-400,-1e-400\n2.5e-310,1\n");
  auto src = OpenCsv(path, {.sample_rate = 10});
  ASSERT_TRUE(src.has_value()) << src.error().message;
  EXPECT_EQ(ReadAll(**src, 4), (std::vector<float>{0, -0.f, 0, 1}));
  WriteText(path, "a,b\n1,1e400\n");
  EXPECT_EQ(FirstError(path, {.sample_rate = 10}).message,
            path + ":2: column 'b' is out of range: '1e400'");
}

TEST(CsvBadInputTest, MissingAndEmpty) {
  ScratchDir dir;
  const Error missing = FirstError(dir.File("none.csv"), {.sample_rate = 10});
  EXPECT_EQ(missing.code, ErrorCode::kNotFound);
  WriteText(dir.File("empty.csv"), "\n# nothing\n");
  EXPECT_NE(FirstError(dir.File("empty.csv"), {.sample_rate = 10}).message.find("no data"),
            std::string::npos);
}

}  // namespace
}  // namespace tend::sources
