#include "core/config.h"

#include <gtest/gtest.h>

namespace tend {
namespace {

TEST(Config, ReadsTypedValuesAndKeepsDefaults) {
  auto c = Config::Parse(R"(
[agent]
model = "m.onnx"
deadline_s = 3
speed = 1.5
debug = true
bands = [200, 250.5]
providers = ["cuda", "cpu"]
)",
                         "t.toml");
  ASSERT_TRUE(c) << c.error().message;
  std::string model;
  double deadline = 0, speed = 0, missing = 42;
  bool debug = false;
  std::vector<double> bands;
  std::vector<std::string> providers;
  int64_t windows = 7;
  ASSERT_TRUE(c->Get("agent.model", model));
  ASSERT_TRUE(c->Get("agent.deadline_s", deadline));  // integer accepted as float
  ASSERT_TRUE(c->Get("agent.speed", speed));
  ASSERT_TRUE(c->Get("agent.debug", debug));
  ASSERT_TRUE(c->Get("agent.bands", bands));
  ASSERT_TRUE(c->Get("agent.providers", providers));
  ASSERT_TRUE(c->Get("agent.max_windows", windows));
  ASSERT_TRUE(c->Get("agent.nothing", missing));
  EXPECT_EQ(model, "m.onnx");
  EXPECT_EQ(deadline, 3.0);
  EXPECT_EQ(speed, 1.5);
  EXPECT_TRUE(debug);
  EXPECT_EQ(bands, (std::vector<double>{200, 250.5}));
  EXPECT_EQ(providers, (std::vector<std::string>{"cuda", "cpu"}));
  EXPECT_EQ(windows, 7);
  EXPECT_EQ(missing, 42);
  EXPECT_TRUE(c->CheckNoUnknownKeys());
}

TEST(Config, WrongTypeNamesFileLineAndKey) {
  auto c = Config::Parse("[agent]\nspeed = \"fast\"\n", "t.toml");
  ASSERT_TRUE(c);
  double speed = 1;
  auto s = c->Get("agent.speed", speed);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().message, "t.toml:2: 'agent.speed' must be a number, got a string");
  EXPECT_EQ(speed, 1);
  std::vector<double> v;
  auto c2 = Config::Parse("x = [1, \"a\"]\n", "u.toml");
  ASSERT_FALSE(c2->Get("x", v));
}

TEST(Config, UnknownKeyIsReportedWithLine) {
  auto c = Config::Parse("[agent]\nmodel = \"a\"\nmodle = \"b\"\n", "t.toml");
  ASSERT_TRUE(c);
  std::string m;
  ASSERT_TRUE(c->Get("agent.model", m));
  auto s = c->CheckNoUnknownKeys();
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().message, "t.toml:3: unknown key 'agent.modle'");
}

TEST(Config, SyntaxErrorAndMissingFile) {
  auto c = Config::Parse("[agent\nx=1\n", "bad.toml");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("bad.toml:1: TOML syntax error"), std::string::npos);
  auto m = Config::LoadFile("/nonexistent/tend.toml");
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, ErrorCode::kNotFound);
}

}  // namespace
}  // namespace tend
