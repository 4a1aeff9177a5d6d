#include "ota/registry.h"

#include <gtest/gtest.h>

#include "ota/trust.h"
#include "ota_test_util.h"

namespace tend::ota {
namespace {

using namespace testing;

TEST(OtaRegistry, PublishWritesAChainADeviceAccepts) {
  ScratchDir d;
  std::string reg = d / "registry";
  KeyPair k = NewKey();
  ASSERT_TRUE(WriteRoot(reg, MakeRoot({k}, 1, 1, kT0 + 365 * kDay), {k}));
  TargetInfo t1 = PublishFake(reg, d, 1, 1, {kProfile}, {k});
  TargetInfo t2 = PublishFake(reg, d, 2, 2, {kProfile, "jetson-agx-orin-int8"}, {k});
  EXPECT_EQ(t2.path, "files/" + t2.sha256 + ".onnx");
  EXPECT_EQ(ReadText(reg + "/" + t2.path), FakeModel(2));
  EXPECT_EQ(t2.sha256, Sha256Hex(FakeModel(2)));
  EXPECT_TRUE(fs::Exists(reg + "/1.root.json"));

  auto root = VerifyPinnedRoot(ReadText(reg + "/root.json"));
  ASSERT_TRUE(root);
  auto ts = VerifyTimestamp(*root, ReadText(reg + "/timestamp.json"), 0, kT0);
  ASSERT_TRUE(ts) << ts.error().message;
  EXPECT_EQ(ts->version, 2);
  auto tm = VerifyTargets(*root, *ts, ReadText(reg + "/targets.json"), 0, kT0);
  ASSERT_TRUE(tm) << tm.error().message;
  EXPECT_EQ(tm->version, 2);
  EXPECT_EQ(tm->targets.size(), 2u);
  EXPECT_EQ(SelectTarget(*tm, kModel, kProfile)->version, 2);

  auto latest = LatestRelease(reg, kModel, "jetson-agx-orin-int8");
  ASSERT_TRUE(latest) << latest.error().message;
  EXPECT_EQ((*latest)["version"], 2);
  EXPECT_EQ((*latest)["checksum"], t2.sha256);
  EXPECT_EQ((*latest)["url"], "/" + t2.path);
  EXPECT_EQ((*latest)["metadata"]["length"], t2.length);
  EXPECT_EQ(LatestRelease(reg, kModel, "intel-nuc-openvino").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(LatestRelease(reg, "../x", kProfile).error().code, ErrorCode::kInvalidArgument);
  (void)t1;
}

TEST(OtaRegistry, PublishRefusals) {
  ScratchDir d;
  std::string reg = d / "registry";
  KeyPair k = NewKey(), other = NewKey();
  WriteText(d / "m.onnx", FakeModel(1));
  PublishOptions o;
  o.model_path = d / "m.onnx";
  o.name = kModel;
  o.version = 1;
  o.profiles = {kProfile};
  o.now = kT0;
  // No root yet.
  EXPECT_EQ(Publish(reg, o, {k}).error().code, ErrorCode::kNotFound);
  ASSERT_TRUE(WriteRoot(reg, MakeRoot({k}, 1, 1, kT0 + 365 * kDay), {k}));
  // A key the root does not know.
  auto wrong = Publish(reg, o, {other});
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, ErrorCode::kSecurity);
  ASSERT_TRUE(Publish(reg, o, {k}));
  // Same version again, and an older one.
  EXPECT_NE(Publish(reg, o, {k}).error().message.find("not above published version 1"),
            std::string::npos);
  PublishOptions bad = o;
  bad.version = 2;
  bad.name = "../evil";
  EXPECT_EQ(Publish(reg, bad, {k}).error().code, ErrorCode::kInvalidArgument);
  bad = o;
  bad.version = 2;
  bad.profiles = {};
  EXPECT_EQ(Publish(reg, bad, {k}).error().code, ErrorCode::kInvalidArgument);
  bad = o;
  bad.version = 2;
  bad.model_path = d / "missing.onnx";
  EXPECT_EQ(Publish(reg, bad, {k}).error().code, ErrorCode::kNotFound);
}

TEST(OtaRegistry, RotationMustBeSignedByTheOldRoot) {
  ScratchDir d;
  std::string reg = d / "registry";
  KeyPair k1 = NewKey(), k2 = NewKey();
  ASSERT_TRUE(WriteRoot(reg, MakeRoot({k1}, 1, 1, kT0 + 365 * kDay), {k1}));
  EXPECT_FALSE(WriteRoot(reg, MakeRoot({k2}, 1, 2, kT0 + 365 * kDay), {k2}));
  EXPECT_FALSE(fs::Exists(reg + "/2.root.json"));
  ASSERT_TRUE(WriteRoot(reg, MakeRoot({k2}, 1, 2, kT0 + 365 * kDay), {k1, k2}));
  EXPECT_TRUE(fs::Exists(reg + "/2.root.json"));
  EXPECT_EQ(ReadText(reg + "/2.root.json"), ReadText(reg + "/root.json"));
}

}  // namespace
}  // namespace tend::ota
