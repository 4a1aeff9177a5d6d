#include "model/metadata.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "model/session.h"
#include "test_models.h"

namespace tend::model {
namespace {

using testing::ModelPath;
using Props = std::map<std::string, std::string>;

// Runs tiny_static's reference input through `path` and returns the output.
std::vector<float> RunTiny(const std::string& path) {
  auto s = Session::LoadFile(path);
  EXPECT_TRUE(s) << s.error().message;
  if (!s) return {};
  auto ref = testing::Expected()["tiny_static"];
  EXPECT_TRUE((*s)->Prepare());
  std::vector<float> x = ref["inputs"]["x"]["data"];
  std::copy(x.begin(), x.end(), (*s)->input(0).begin());
  EXPECT_TRUE((*s)->Run());
  return {(*s)->output(0).begin(), (*s)->output(0).end()};
}

TEST(ModelMetadataTest, ReadsWhatTheExporterWrote) {
  TEND_REQUIRE_TEST_MODELS();
  auto props = ReadMetadataProps(ModelPath("with_metadata"));
  ASSERT_TRUE(props) << props.error().message;
  EXPECT_EQ(*props, (Props{{"name", "tiny"}, {"version", "1.2.0"}, {"threshold", "0.75"}}));
  auto none = ReadMetadataProps(ModelPath("tiny_static"));
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());

  // The session shows the same keys next to the onnx.* ones.
  auto s = Session::LoadFile(ModelPath("with_metadata"));
  ASSERT_TRUE(s);
  EXPECT_EQ((*s)->metadata().at("name"), "tiny");
  EXPECT_EQ((*s)->metadata().at("version"), "1.2.0");
  EXPECT_EQ((*s)->metadata().at("onnx.producer_name"), "pytorch");
}

TEST(ModelMetadataTest, MergeReplaceAndInPlaceRoundTrip) {
  TEND_REQUIRE_TEST_MODELS();
  auto dir = testing::TempDir("metadata");
  const std::string merged = dir + "/merged.onnx";
  ASSERT_TRUE(WriteMetadataProps(ModelPath("with_metadata"), merged,
                                 {{"version", "2.0.0"}, {"precision", "fp32"}}));
  EXPECT_EQ(
      *ReadMetadataProps(merged),
      (Props{
          {"name", "tiny"}, {"version", "2.0.0"}, {"threshold", "0.75"}, {"precision", "fp32"}}));

  const std::string replaced = dir + "/replaced.onnx";
  ASSERT_TRUE(WriteMetadataProps(merged, replaced, {{"name", "other"}}, /*merge=*/false));
  EXPECT_EQ(*ReadMetadataProps(replaced), (Props{{"name", "other"}}));

  // In place: same path in and out.
  ASSERT_TRUE(WriteMetadataProps(replaced, replaced, {{"version", "3"}}));
  EXPECT_EQ(*ReadMetadataProps(replaced), (Props{{"name", "other"}, {"version", "3"}}));
  // No temp files left behind.
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 2u);

  // The rewritten models still load and compute exactly what the original does.
  auto original = RunTiny(ModelPath("tiny_static"));
  ASSERT_EQ(original.size(), 3u);
  EXPECT_EQ(RunTiny(merged), original);
  EXPECT_EQ(RunTiny(replaced), original);
  std::filesystem::remove_all(dir);
}

TEST(ModelMetadataTest, Errors) {
  auto missing = ReadMetadataProps("/nonexistent/m.onnx");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_NE(missing.error().message.find("/nonexistent/m.onnx"), std::string::npos);

  auto dir = testing::TempDir("metadata_err");
  testing::WriteBytes(dir + "/text.onnx", "not a model at all\n");
  auto text = ReadMetadataProps(dir + "/text.onnx");
  ASSERT_FALSE(text);
  EXPECT_EQ(text.error().message.rfind(dir + "/text.onnx: not an ONNX model", 0), 0u)
      << text.error().message;

  auto w = WriteMetadataProps(dir + "/text.onnx", dir + "/out.onnx", {{"a", "b"}});
  ASSERT_FALSE(w);
  EXPECT_FALSE(std::filesystem::exists(dir + "/out.onnx"));

  if (testing::HaveModels()) {
    auto empty_key = WriteMetadataProps(ModelPath("tiny_static"), dir + "/out.onnx", {{"", "x"}});
    ASSERT_FALSE(empty_key);
    EXPECT_EQ(empty_key.error().code, ErrorCode::kInvalidArgument);
    auto no_dir = WriteMetadataProps(ModelPath("tiny_static"), "/nonexistent/out.onnx", {});
    ASSERT_FALSE(no_dir);
    EXPECT_NE(no_dir.error().message.find("/nonexistent/out.onnx"), std::string::npos);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tend::model
