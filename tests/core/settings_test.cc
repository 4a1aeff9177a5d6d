// Settings declared once (type, default, range, flag): the same checks for a config file (errors
// name file, line and key) and for flags (errors name the flag and key); paths from a config file
// resolve against its folder; [[asset]] tables override the globals.
#include "core/settings.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

namespace tend {
namespace {

std::vector<SettingDef> Defs() {
  using D = SettingDef;
  return {
      D::Float("agent.deadline_s", 3.3, 0.001, 3600, "deadline")
          .Flag("--deadline")
          .PerAsset("deadline_s"),
      D::Int("agent.max_windows", -1, 1, 1e15, "max").Special({-1}).Flag("--max-windows"),
      D::Int("decide.top_sensors", 3, 0, 64, "top").Flag("--top"),
      D::String("agent.fail_safe", "alert", "fs").Choices({"alert", "pass"}).PerAsset("fail_safe"),
      D::Path("agent.model", "", "model").PerAsset("model"),
      D::String("agent.source", "", "source").Type(SettingType::kSource).PerAsset("source"),
      D::PathList("ota.reference_normal", "refs"),
      D::Bool("output.json", false, "json").Flag("--json"),
  };
}

Result<Config> Parse(const std::string& text) { return Config::Parse(text, "/plant/etc/t.toml"); }

TEST(Settings, DefaultsAndTypedReads) {
  auto defs = Defs();
  Settings s(&defs);
  EXPECT_DOUBLE_EQ(s.GetFloat("agent.deadline_s"), 3.3);
  EXPECT_EQ(s.GetInt("agent.max_windows"), -1);
  EXPECT_EQ(s.GetString("agent.fail_safe"), "alert");
  EXPECT_FALSE(s.GetBool("output.json"));
  EXPECT_EQ(s.Origin("agent.deadline_s"), "default");
}

// Every number has a sane range, checked where it is read, with the key named: NaN, inf,
// absurd sizes and negative counts never reach the code that would misbehave on them.
TEST(Settings, ConfigValuesOutOfRangeNameFileLineAndKey) {
  auto defs = Defs();
  struct Case {
    const char* text;
    const char* error;
  } cases[] = {
      {"[agent]\ndeadline_s = inf\n",
       "t.toml:2: 'agent.deadline_s' must be a finite number in [0.001, 3600], got inf"},
      {"[agent]\ndeadline_s = nan\n", "t.toml:2: 'agent.deadline_s' must be a finite number"},
      {"[agent]\n\ndeadline_s = 1e-300\n", "t.toml:3: 'agent.deadline_s'"},
      {"[agent]\nmax_windows = 0\n",
       "'agent.max_windows' must be an integer in [1, 1000000000000000] or -1, got 0"},
      {"[decide]\ntop_sensors = 2147483647\n",
       "'decide.top_sensors' must be an integer in [0, 64]"},
      {"[agent]\nfail_safe = \"maybe\"\n",
       "'agent.fail_safe' must be one of alert, pass, got 'maybe'"},
      {"[agent]\nmax_windows = 1e8\n", "'agent.max_windows' must be an integer, got a float"},
  };
  for (const auto& c : cases) {
    auto cfg = Parse(c.text);
    ASSERT_TRUE(cfg) << cfg.error().message;
    Settings s(&defs);
    auto st = ReadSettings(*cfg, defs, s);
    ASSERT_FALSE(st) << c.text;
    EXPECT_NE(st.error().message.find(c.error), std::string::npos)
        << c.text << " -> " << st.error().message;
  }
}

TEST(Settings, FlagsAreCheckedTheSameWay) {
  auto defs = Defs();
  auto bad = ParseSettingFlag(defs[0], {"inf"});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message,
            "--deadline (agent.deadline_s): must be a finite number in [0.001, 3600], got inf");
  EXPECT_FALSE(ParseSettingFlag(defs[0], {"fast"}));
  EXPECT_FALSE(ParseSettingFlag(defs[1], {"0"}));
  auto ok = ParseSettingFlag(defs[1], {"-1"});
  ASSERT_TRUE(ok);
  EXPECT_EQ(std::get<int64_t>(*ok), -1);
  auto top = ParseSettingFlag(defs[2], {"300"});
  ASSERT_FALSE(top);
  EXPECT_NE(top.error().message.find("--top (decide.top_sensors)"), std::string::npos);
  auto on = ParseSettingFlag(defs[7], {});
  ASSERT_TRUE(on);
  EXPECT_TRUE(std::get<bool>(*on));
}

// Paths in a config file mean "from the file's folder", as a plant engineer reads them; specs
// that are not files (sim:..., -, fd:3, URLs) stay as they are.
TEST(Settings, PathsResolveAgainstTheConfigFolder) {
  auto defs = Defs();
  auto cfg = Parse(
      "[agent]\nmodel = \"models/press.onnx\"\nsource = \"rec/a.wav\"\n"
      "[ota]\nreference_normal = [\"ref/n.wav@0:60\", \"/abs/x.wav\"]\n");
  ASSERT_TRUE(cfg);
  Settings s(&defs);
  ASSERT_TRUE(ReadSettings(*cfg, defs, s));
  EXPECT_EQ(s.GetString("agent.model"), "/plant/etc/models/press.onnx");
  EXPECT_EQ(s.GetString("agent.source"), "/plant/etc/rec/a.wav");
  EXPECT_EQ(s.GetList("ota.reference_normal"),
            (std::vector<std::string>{"/plant/etc/ref/n.wav@0:60", "/abs/x.wav"}));
  for (const char* spec : {"sim", "sim:strokes=3,seed=2", "-", "fd:3"}) {
    EXPECT_FALSE(SourceSpecIsPath(spec)) << spec;
  }
  EXPECT_TRUE(SourceSpecIsPath("run.wav"));
  EXPECT_TRUE(SourceSpecIsPath("recordings/press07.wav"));
  EXPECT_EQ(ResolvePath("/etc", "http://registry:8080"), "http://registry:8080");
}

TEST(Settings, AssetTablesOverrideTheGlobals) {
  auto defs = Defs();
  auto cfg = Parse(
      "[agent]\ndeadline_s = 2.0\n\n"
      "[[asset]]\nmodel = \"a.onnx\"\n\n"
      "[[asset]]\nmodel = \"b.onnx\"\ndeadline_s = 0.2\n");
  ASSERT_TRUE(cfg) << cfg.error().message;
  Settings device(&defs);
  ASSERT_TRUE(ReadSettings(*cfg, defs, device));
  auto tables = cfg->TableArray("asset");
  ASSERT_TRUE(tables) << tables.error().message;
  ASSERT_EQ(tables->size(), 2u);
  ASSERT_TRUE(cfg->CheckNoUnknownKeys());
  std::vector<Settings> assets;
  for (auto& t : *tables) {
    Settings s = device;
    ASSERT_TRUE(ReadSettings(t, defs, s, true, "[[asset]]"));
    ASSERT_TRUE(t.CheckNoUnknownKeys());
    assets.push_back(s);
  }
  EXPECT_DOUBLE_EQ(assets[0].GetFloat("agent.deadline_s"), 2.0);
  EXPECT_DOUBLE_EQ(assets[1].GetFloat("agent.deadline_s"), 0.2);
  EXPECT_EQ(assets[1].GetString("agent.model"), "/plant/etc/b.onnx");
  EXPECT_EQ(assets[1].Origin("agent.deadline_s"), "[[asset]] (/plant/etc/t.toml:9)");

  // A key of an asset table that no setting has is an error with its line.
  auto typo = Parse("[[asset]]\nmodel = \"a.onnx\"\ndeadine_s = 1\n");
  ASSERT_TRUE(typo);
  auto t2 = typo->TableArray("asset");
  ASSERT_TRUE(t2);
  Settings s(&defs);
  ASSERT_TRUE(ReadSettings((*t2)[0], defs, s, true));
  auto st = (*t2)[0].CheckNoUnknownKeys();
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("t.toml:3: unknown key 'deadine_s'"), std::string::npos)
      << st.error().message;
  // [asset] as a plain table is not an array of tables.
  auto plain = Parse("[asset]\nmodel = \"a.onnx\"\n");
  ASSERT_TRUE(plain);
  EXPECT_FALSE(plain->TableArray("asset"));
}

TEST(Settings, DescribedForDoctor) {
  auto defs = Defs();
  auto j = defs[0].ToJson();
  EXPECT_EQ(j["key"], "agent.deadline_s");
  EXPECT_EQ(j["type"], "float");
  EXPECT_EQ(j["default"], "3.3");
  EXPECT_EQ(j["range"], "a finite number in [0.001, 3600]");
  EXPECT_EQ(j["flag"], "--deadline");
  EXPECT_EQ(j["asset_key"], "deadline_s");
}

}  // namespace
}  // namespace tend
