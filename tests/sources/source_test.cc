#include "sources/source.h"

#include <gtest/gtest.h>

#include <vector>

#include "test_util.h"

namespace tend::sources {
namespace {

using testing::ScratchDir;

TEST(OpenSourceTest, DispatchesBySpec) {
  ScratchDir dir;
  const std::vector<float> v = {0.5f, -0.5f};
  ASSERT_TRUE(WriteWavFloat32(dir.File("up.WAV"), 8000, 1, v).has_value());
  auto wav = OpenSource(dir.File("up.WAV"));
  ASSERT_TRUE(wav.has_value()) << wav.error().message;
  EXPECT_EQ((*wav)->Describe().rfind("wav:", 0), 0u);
  // Another extension, but RIFF content: opened as WAV.
  ASSERT_TRUE(WriteWavFloat32(dir.File("rec.dat"), 8000, 1, v).has_value());
  auto dat = OpenSource(dir.File("rec.dat"));
  ASSERT_TRUE(dat.has_value()) << dat.error().message;
  EXPECT_EQ((*dat)->info().total_frames, 2);

  testing::WriteText(dir.File("x.csv"), "1\n2\n");
  auto csv = OpenSource(dir.File("x.csv"), {.sample_rate = 50});
  ASSERT_TRUE(csv.has_value()) << csv.error().message;
  EXPECT_EQ((*csv)->info().sample_rate, 50);

  auto sim = OpenSource("sim");
  ASSERT_TRUE(sim.has_value()) << sim.error().message;
  EXPECT_EQ((*sim)->info().sample_rate, 10000);
  EXPECT_EQ((*sim)->info().channels, 1);
  auto sim2 = OpenSource("sim:sr=20000,ch=2,strokes=3,spm=30");
  ASSERT_TRUE(sim2.has_value()) << sim2.error().message;
  EXPECT_EQ((*sim2)->info().sample_rate, 20000);
  EXPECT_EQ((*sim2)->info().channels, 2);
  EXPECT_EQ((*sim2)->info().total_frames, 3 * 2 * 20000);
  // For the simulator, SourceOptions give the defaults of sr and ch; the spec's keys win.
  auto sim3 = OpenSource("sim", {.sample_rate = 12000, .channels = 2});
  ASSERT_TRUE(sim3.has_value()) << sim3.error().message;
  EXPECT_EQ((*sim3)->info().sample_rate, 12000);
  EXPECT_EQ((*sim3)->info().channels, 2);
  auto sim4 = OpenSource("sim:sr=10000,ch=1", {.sample_rate = 12000, .channels = 2});
  ASSERT_TRUE(sim4.has_value()) << sim4.error().message;
  EXPECT_EQ((*sim4)->info().sample_rate, 10000);
  EXPECT_EQ((*sim4)->info().channels, 1);
  auto sim5 = OpenSource("sim", {.channels = 4});
  ASSERT_FALSE(sim5.has_value());
  EXPECT_NE(sim5.error().message.find("ch=4 must be 1 or 2"), std::string::npos);
}

TEST(OpenSourceTest, ClearErrors) {
  ScratchDir dir;
  struct Case {
    std::string spec;
    ErrorCode code;
    std::string want;
  };
  testing::WriteText(dir.File("notes.txt"), "just text");
  for (const Case& c : std::vector<Case>{
           {"", ErrorCode::kInvalidArgument, "empty source"},
           {dir.File("nope.flac"), ErrorCode::kNotFound, "no such file (expected a .wav or .csv"},
           {dir.File("notes.txt"), ErrorCode::kUnsupported, "unknown kind"},
           {dir.File("missing.wav"), ErrorCode::kNotFound, "No such file"},
           {"sim:wear=2", ErrorCode::kInvalidArgument, "sim: wear=2 not in 0..1"},
           {"sim:wear_end=-0.1", ErrorCode::kInvalidArgument, "wear_end=-0.1 not in 0..1"},
           {"sim:bogus=1", ErrorCode::kInvalidArgument, "unknown option 'bogus' (known: sr, spm"},
           {"sim:wear", ErrorCode::kInvalidArgument, "expected key=value, got 'wear'"},
           {"sim:spm=fast", ErrorCode::kInvalidArgument, "sim: spm=fast: expected a number"},
           {"sim:spm=0", ErrorCode::kInvalidArgument, "spm=0 out of range"},
           {"sim:sr=100", ErrorCode::kInvalidArgument, "sr=100 out of range"},
           {"sim:ch=3", ErrorCode::kInvalidArgument, "ch=3 must be 1 or 2"},
           {"sim:seed=-1", ErrorCode::kInvalidArgument, "seed=-1: expected a non-negative"},
           {"sim:wear=nan", ErrorCode::kInvalidArgument, "wear=nan: expected a number"},
           {"sim:seed=1,seed=2", ErrorCode::kInvalidArgument, "'seed' given twice"},
           {"sim:hum_hz=3000", ErrorCode::kInvalidArgument, "3rd harmonic below Nyquist"},
           {"sim:strokes=2.5", ErrorCode::kInvalidArgument, "strokes=2.5: expected an integer"},
       }) {
    auto r = OpenSource(c.spec);
    ASSERT_FALSE(r.has_value()) << c.spec;
    EXPECT_EQ(r.error().code, c.code) << c.spec << ": " << r.error().message;
    EXPECT_NE(r.error().message.find(c.want), std::string::npos) << r.error().message;
    EXPECT_EQ(r.error().message.find('\n'), std::string::npos);
  }
}

TEST(SimulatorOptionsTest, ParseAndSpecRoundTrip) {
  auto o = SimulatorOptions::Parse("wear=0.2,wear_end=1,strokes=300,seed=7,spm=18,sr=10000");
  ASSERT_TRUE(o.has_value()) << o.error().message;
  EXPECT_EQ(o->wear_start, 0.2);
  EXPECT_EQ(o->wear_end, 1.0);
  EXPECT_EQ(o->strokes, 300);
  EXPECT_EQ(o->seed, 7u);
  // wear alone means constant wear.
  auto c = SimulatorOptions::Parse("wear=0.4");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->wear_end, 0.4);
  auto d = SimulatorOptions::Parse("");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->strokes, 100);
  EXPECT_EQ(d->strokes_per_min, 18);

  SimulatorOptions x;
  x.sample_rate = 12345.5;
  x.strokes_per_min = 17.25;
  x.strokes = 0;
  x.wear_start = 0.1;
  x.wear_end = 0.9;
  x.seed = 18446744073709551615ull;
  x.noise_g = 0.0123;
  x.hum_hz = 60;
  x.impact_g = 2.5;
  x.jitter_ms = 0;
  x.channels = 2;
  const std::string spec = x.ToSpec();
  ASSERT_EQ(spec.rfind("sim:", 0), 0u);
  auto y = SimulatorOptions::Parse(spec.substr(4));
  ASSERT_TRUE(y.has_value()) << y.error().message;
  EXPECT_EQ(y->ToSpec(), spec);
  EXPECT_EQ(y->seed, x.seed);
  EXPECT_EQ(y->sample_rate, x.sample_rate);
  EXPECT_EQ(y->noise_g, x.noise_g);
}

// #16 item 8: `simulate --sim sim:...` worked but `bench --sim sim:...` did not. The spec as
// users write it (and as ToSpec prints it) parses everywhere.
TEST(SimulatorOptionsTest, ParseTakesTheSimPrefixUsersWrite) {
  auto a = SimulatorOptions::Parse("sim:wear=0.5,strokes=7");
  ASSERT_TRUE(a.has_value()) << a.error().message;
  EXPECT_EQ(a->wear_start, 0.5);
  EXPECT_EQ(a->strokes, 7);
  auto b = SimulatorOptions::Parse("sim");
  ASSERT_TRUE(b.has_value()) << b.error().message;
  EXPECT_EQ(b->strokes, 100);
  SimulatorOptions x;
  x.seed = 42;
  auto c = SimulatorOptions::Parse(x.ToSpec());
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->ToSpec(), x.ToSpec());
  EXPECT_FALSE(SimulatorOptions::Parse("simulator:wear=0.5").has_value());
}

}  // namespace
}  // namespace tend::sources
