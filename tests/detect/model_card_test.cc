#include "detect/model_card.h"

#include <gtest/gtest.h>

namespace tend::detect {
namespace {

using nlohmann::json;

ModelCard FullCard() {
  ModelCard c;
  c.name = "press-anomaly";
  c.version = "3.1";
  c.detector = "mahalanobis";
  c.created = "2024-05-01T12:00:00Z";
  c.feature_spec = {{"sample_rate", 10000},
                    {"channels", 1},
                    {"bands", {{200, 400}, {400, 800}}},
                    {"windowing", {{"mode", "fixed"}, {"window", 2000}, {"hop", 2000}}}};
  c.feature_names = {"rms", "kurtosis", "band_200_400"};
  c.thresholds = {1.5f, 3.25f, 7.0f};
  c.train_mean = {0.1f, 3.0f, -2.5f};
  c.train_std = {0.01f, 0.5f, 1.25f};
  c.training_summary = {{"sources", {"normal.wav"}}, {"windows", 120}};
  c.calibration = {{"rule", "lognormal-prediction"}};
  return c;
}

bool Contains(const Error& e, const std::string& s) {
  return e.message.find(s) != std::string::npos;
}

TEST(ModelCardTest, RoundTripsThroughMetadata) {
  const ModelCard c = FullCard();
  auto meta = c.ToMetadata();
  for (const auto& [k, v] : meta) {
    EXPECT_EQ(k.rfind("tend.", 0), 0u) << k;
    EXPECT_FALSE(json::parse(v, nullptr, false).is_discarded()) << k << " is not JSON: " << v;
  }
  meta["producer.other"] = "not json, not ours";  // foreign keys are ignored
  auto back = ModelCard::FromMetadata(meta);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->name, c.name);
  EXPECT_EQ(back->version, c.version);
  EXPECT_EQ(back->detector, c.detector);
  EXPECT_EQ(back->created, c.created);
  EXPECT_EQ(back->feature_spec, c.feature_spec);
  EXPECT_EQ(back->input_kind, "features");
  EXPECT_EQ(back->feature_names, c.feature_names);
  EXPECT_EQ(back->thresholds.low, c.thresholds.low);
  EXPECT_EQ(back->thresholds.medium, c.thresholds.medium);
  EXPECT_EQ(back->thresholds.high, c.thresholds.high);
  EXPECT_EQ(back->train_mean, c.train_mean);  // exact: floats survive the JSON text
  EXPECT_EQ(back->train_std, c.train_std);
  EXPECT_EQ(back->training_summary, c.training_summary);
  EXPECT_EQ(back->calibration, c.calibration);
  EXPECT_EQ(back->VersionMajor(), 3);
  EXPECT_EQ(*back->CreatedUnix(), 1714564800);
}

TEST(ModelCardTest, OptionalKeysMayBeAbsent) {
  auto meta = FullCard().ToMetadata();
  meta.erase(kKeyTrainMean);
  meta.erase(kKeyTrainStd);
  meta.erase(kKeyTrainingSummary);
  meta.erase(kKeyCalibration);
  auto back = ModelCard::FromMetadata(meta);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_TRUE(back->train_mean.empty());
  EXPECT_TRUE(back->training_summary.is_object());
}

TEST(ModelCardTest, MissingKeyIsNamed) {
  for (const char* key : {kKeyFormat, kKeyName, kKeyVersion, kKeyDetector, kKeyCreated,
                          kKeyFeatureSpec, kKeyInputKind, kKeyFeatureNames, kKeyThresholds}) {
    auto meta = FullCard().ToMetadata();
    meta.erase(key);
    auto r = ModelCard::FromMetadata(meta);
    ASSERT_FALSE(r) << key;
    EXPECT_TRUE(Contains(r.error(), std::string("missing key '") + key + "'")) << r.error().message;
  }
}

TEST(ModelCardTest, BadJsonIsNamed) {
  auto meta = FullCard().ToMetadata();
  meta[kKeyFeatureNames] = "[\"rms\", ";
  auto r = ModelCard::FromMetadata(meta);
  ASSERT_FALSE(r);
  EXPECT_TRUE(Contains(r.error(), "'tend.feature_names' is not valid JSON")) << r.error().message;
  meta = FullCard().ToMetadata();
  meta[kKeyName] = "press-anomaly";  // a bare string is not JSON text
  r = ModelCard::FromMetadata(meta);
  ASSERT_FALSE(r);
  EXPECT_TRUE(Contains(r.error(), "'tend.name' is not valid JSON")) << r.error().message;
}

// Issue 17, defect 8: a deeply nested optional value crashed FromMetadata (SIGSEGV in the copy)
// at load time, inside the agent's OTA load check; it must be refused with the key named.
TEST(ModelCardTest, DeeplyNestedMetadataIsRefusedNotACrash) {
  const std::string nested = "{\"x\": " + std::string(80000, '[') + std::string(80000, ']') + "}";
  for (const char* key : {kKeyTrainingSummary, kKeyCalibration, kKeyFeatureSpec}) {
    auto meta = FullCard().ToMetadata();
    meta[key] = nested;
    auto r = ModelCard::FromMetadata(meta);
    ASSERT_FALSE(r) << key;
    EXPECT_EQ(r.error().code, ErrorCode::kModelError);
    EXPECT_TRUE(Contains(r.error(), std::string("'") + key + "': JSON nested deeper than"))
        << r.error().message;
  }
}

TEST(ModelCardTest, WrongTypesAreNamed) {
  struct Case {
    const char* key;
    std::string value, expect;
  } cases[] = {
      {kKeyName, "42", "'tend.name' must be a JSON string"},
      {kKeyThresholds, "[1,2,3]", "'tend.thresholds' must be a JSON object"},
      {kKeyThresholds, R"({"low":"1","medium":2,"high":3})", "field 'low' must be a number"},
      {kKeyThresholds, R"({"low":1,"high":3})", "has no field 'medium'"},
      {kKeyFeatureNames, R"(["a", 2])", "element 1 must be a string"},
      {kKeyTrainMean, R"({"a":1})", "'tend.train_mean' must be a JSON array"},
      {kKeyFeatureSpec, "[1]", "'tend.feature_spec' must be a JSON object"},
      {kKeyFormat, "\"1\"", "'tend.format' must be an integer"},
  };
  for (const auto& c : cases) {
    auto meta = FullCard().ToMetadata();
    meta[c.key] = c.value;
    auto r = ModelCard::FromMetadata(meta);
    ASSERT_FALSE(r) << c.key << " = " << c.value;
    EXPECT_TRUE(Contains(r.error(), c.expect)) << r.error().message;
  }
}

TEST(ModelCardTest, InconsistentValuesAreErrors) {
  struct Case {
    const char* key;
    std::string value, expect;
  } cases[] = {
      {kKeyThresholds, R"({"low":3,"medium":2,"high":4})", "0 < low <= medium <= high"},
      {kKeyThresholds, R"({"low":0,"medium":2,"high":4})", "0 < low"},
      {kKeyTrainMean, "[1, 2]", "has 2 values but 'tend.feature_names' lists 3"},
      {kKeyTrainStd, "[1, 0, 2]", "'tend.train_std'[1] = 0"},
      {kKeyFeatureNames, R"(["a", "a", "b"])", "lists 'a' twice"},
      {kKeyCreated, "\"yesterday\"", "not an ISO-8601 UTC time"},
      {kKeyInputKind, "\"image\"", "expected 'features' or 'raw'"},
      {kKeyFeatureSpec, "{}", "non-empty object"},
  };
  for (const auto& c : cases) {
    auto meta = FullCard().ToMetadata();
    meta[c.key] = c.value;
    auto r = ModelCard::FromMetadata(meta);
    ASSERT_FALSE(r) << c.key << " = " << c.value;
    EXPECT_TRUE(Contains(r.error(), c.expect)) << r.error().message;
  }
  auto meta = FullCard().ToMetadata();
  meta[kKeyFormat] = "99";
  auto r = ModelCard::FromMetadata(meta);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnsupported);
}

TEST(ModelCardTest, CheckAgainstGraphAcceptsTheContract) {
  const ModelCard c = FullCard();
  EXPECT_TRUE(c.CheckAgainstGraph({-1, 3}, {{-1}, {-1, 3}}));
  EXPECT_TRUE(c.CheckAgainstGraph({-1, 3}, {{-1}}));  // contributions are optional
  EXPECT_TRUE(c.CheckAgainstGraph({1, 3}, {{1}, {1, 3}}));
  EXPECT_TRUE(c.CheckAgainstGraph({-1, 3}, {"contributions", "anomaly_score"}, {{-1, 3}, {-1}}));
}

TEST(ModelCardTest, CheckAgainstGraphNamesTheContradiction) {
  const ModelCard c = FullCard();
  auto r = c.CheckAgainstGraph({-1, 4}, {{-1}, {-1, 4}});
  ASSERT_FALSE(r);
  EXPECT_TRUE(Contains(r.error(), "lists 3 features")) << r.error().message;
  EXPECT_TRUE(Contains(r.error(), "4 columns")) << r.error().message;
  r = c.CheckAgainstGraph({-1, 3, 1}, {{-1}});
  ASSERT_FALSE(r);
  EXPECT_TRUE(Contains(r.error(), "takes [N,3]")) << r.error().message;
  r = c.CheckAgainstGraph({-1, 3}, {{-1, 1}});
  ASSERT_FALSE(r);
  EXPECT_TRUE(Contains(r.error(), "'anomaly_score' has shape [?,1], expected [N]"))
      << r.error().message;
  r = c.CheckAgainstGraph({-1, 3}, {{-1}, {-1, 5}});
  ASSERT_FALSE(r);
  EXPECT_TRUE(Contains(r.error(), "'contributions' has 5 columns")) << r.error().message;
  r = c.CheckAgainstGraph({2, 3}, {{3}});
  ASSERT_FALSE(r);
  EXPECT_TRUE(Contains(r.error(), "batch is 2")) << r.error().message;
  r = c.CheckAgainstGraph({-1, 3}, {});
  ASSERT_FALSE(r);
  r = c.CheckAgainstGraph({-1, 3}, {"score"}, {{-1}});
  ASSERT_FALSE(r);
  EXPECT_TRUE(Contains(r.error(), "no output named 'anomaly_score'")) << r.error().message;
}

TEST(ModelCardTest, RawInputChecksTheWindowLength) {
  ModelCard c = FullCard();
  c.input_kind = "raw";
  c.feature_names = {"accel"};
  c.train_mean.clear();
  c.train_std.clear();
  ASSERT_TRUE(c.Validate());
  EXPECT_TRUE(c.CheckAgainstGraph({-1, 1, 2000}, {{-1}}));
  auto r = c.CheckAgainstGraph({-1, 1, 1024}, {{-1}});
  ASSERT_FALSE(r);
  EXPECT_TRUE(Contains(r.error(), "windowing.window is 2000")) << r.error().message;
}

TEST(ModelCardTest, Iso8601) {
  EXPECT_EQ(*ParseIso8601Utc("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(*ParseIso8601Utc("2000-02-29T23:59:59Z"), 951868799);
  EXPECT_EQ(*ParseIso8601Utc("2024-05-01T12:00:00.250+00:00"), 1714564800);
  EXPECT_FALSE(ParseIso8601Utc("2024-05-01 12:00"));
  EXPECT_FALSE(ParseIso8601Utc("2024-13-01T12:00:00Z"));
  EXPECT_FALSE(ParseIso8601Utc("2024-05-01T12:00:00+02:00"));
  auto now = ParseIso8601Utc(NowIso8601Utc());
  ASSERT_TRUE(now);
  EXPECT_GT(*now, 1700000000);
}

}  // namespace
}  // namespace tend::detect
