// The bounded JSON parser: size and depth caps, exact error wording, and that what it accepts is
// exactly what nlohmann accepts (within the limits).
#include "core/json.h"

#include <gtest/gtest.h>

#include <string>

namespace tend::json {
namespace {

std::string Nested(int depth, const char* open = "[", const char* close = "]") {
  std::string s;
  for (int i = 0; i < depth; ++i) s += open;
  s += "1";
  for (int i = 0; i < depth; ++i) s += close;
  return s;
}

TEST(BoundedJson, ParsesOrdinaryDocuments) {
  auto j = ParseJson(R"({"a": [1, 2, {"b": "x\"]]]]"}], "c": null, "d": 1.5e3})", "doc");
  ASSERT_TRUE(j) << j.error().message;
  EXPECT_EQ((*j)["a"][2]["b"], "x\"]]]]");
  EXPECT_EQ((*j)["d"], 1500.0);
  EXPECT_TRUE(ParseJson("42", "doc"));
  EXPECT_TRUE(ParseJson("  \"s\"  ", "doc"));
}

TEST(BoundedJson, RefusesDeepNestingWithoutBuildingIt) {
  JsonLimits lim{1 << 20, 64};
  EXPECT_TRUE(ParseJson(Nested(64), "doc", lim));
  JsonProblem why = JsonProblem::kNone;
  auto deep = ParseJson(Nested(65), "timestamp.json", lim, &why);
  ASSERT_FALSE(deep);
  EXPECT_EQ(why, JsonProblem::kTooDeep);
  EXPECT_EQ(deep.error().code, ErrorCode::kCorrupt);
  EXPECT_EQ(deep.error().message, "timestamp.json: JSON nested deeper than 64 levels");
  // The attack of issue 17: 80,000 nested arrays (160 KB) must be an error, not a stack overflow;
  // objects nest the same way, and so does a mix; an unterminated one too.
  EXPECT_FALSE(ParseJson(Nested(80000), "doc", lim));
  EXPECT_FALSE(ParseJson(Nested(80000, "{\"k\":", "}"), "doc", lim));
  EXPECT_FALSE(ParseJson(Nested(40000, "[{\"k\":", "}]"), "doc", lim));
  EXPECT_FALSE(ParseJson(std::string(200000, '['), "doc", lim));
  // Brackets inside strings do not count.
  EXPECT_TRUE(ParseJson("[\"" + std::string(1000, '[') + "\"]", "doc", lim));
}

TEST(BoundedJson, RefusesOversizedInputBeforeParsing) {
  JsonProblem why = JsonProblem::kNone;
  auto big = ParseJson("[" + std::string(2000, ' ') + "]", "payload", {1000, 8}, &why);
  ASSERT_FALSE(big);
  EXPECT_EQ(why, JsonProblem::kTooLarge);
  EXPECT_EQ(big.error().message, "payload: 2002 bytes of JSON, more than the 1000 allowed");
}

TEST(BoundedJson, SyntaxErrorsNameTheByte) {
  JsonProblem why = JsonProblem::kNone;
  auto bad = ParseJson("{\"a\": tru}", "cfg", {}, &why);
  ASSERT_FALSE(bad);
  EXPECT_EQ(why, JsonProblem::kSyntax);
  EXPECT_EQ(bad.error().message.rfind("cfg: not valid JSON (syntax error at byte ", 0), 0u)
      << bad.error().message;
  // Found by fuzz_json: nlohmann takes a NUL byte for the end of the text, so "8\0<garbage>" was
  // the number 8. A raw NUL is never valid JSON.
  JsonProblem nul = JsonProblem::kNone;
  auto hidden = ParseJson(std::string_view("8\0{\"x\": [[[", 9), "doc", {}, &nul);
  ASSERT_FALSE(hidden);
  EXPECT_EQ(nul, JsonProblem::kSyntax);
  EXPECT_EQ(hidden.error().message, "doc: not valid JSON (NUL byte at byte 1)");
  EXPECT_FALSE(ParseJson(std::string_view("{\"a\":1}\0", 8), "doc"));
  // 1e400 overflows a double: nlohmann refuses it, and so do we.
  for (const char* s :
       {"", "{", "[1,]", "{\"a\" 1}", "1 2", "\"\\x\"", "nul", "[1]]", "\xff", "1e400"}) {
    EXPECT_FALSE(ParseJson(s, "doc")) << s;
  }
}

TEST(BoundedJson, AgreesWithNlohmannWithinTheLimits) {
  for (const char* s : {"[]", "{}", "[[],[[]]]", "{\"a\":{\"b\":[true,false,null]}}", "-0.0",
                        "1e-400", "\"\\u00e9\"", "[1,2,3]"}) {
    auto ours = ParseJson(s, "doc");
    auto theirs = nlohmann::json::parse(s, nullptr, false);
    ASSERT_TRUE(ours) << s;
    EXPECT_EQ(ours->dump(), theirs.dump()) << s;
  }
}

}  // namespace
}  // namespace tend::json
