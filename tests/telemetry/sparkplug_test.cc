// The Sparkplug B codec: what tend encodes decodes back, and every bad host payload (NCMD,
// STATE) is a one-line error.
#include "telemetry/sparkplug.h"

#include <gtest/gtest.h>

namespace tend::sparkplug {
namespace {

std::string Command(const char* name, bool as_bool, bool value) {
  pb::Payload p;
  p.set_timestamp(1);
  auto* m = p.add_metrics();
  m->set_name(name);
  if (as_bool) {
    m->set_boolean_value(value);
  } else {
    m->set_string_value(value ? "true" : "false");
  }
  return p.SerializeAsString();
}

TEST(SparkplugCodec, DecodesARebirthCommand) {
  auto cmd = DecodeNodeCommand(Command(kRebirth, true, true));
  ASSERT_TRUE(cmd) << cmd.error().message;
  EXPECT_TRUE(cmd->rebirth);
  EXPECT_TRUE(cmd->ignored.empty());
  auto no = DecodeNodeCommand(Command(kRebirth, true, false));
  ASSERT_TRUE(no);
  EXPECT_FALSE(no->rebirth);
  auto other = DecodeNodeCommand(Command("Node Control/Reboot", true, true));
  ASSERT_TRUE(other);
  EXPECT_FALSE(other->rebirth);
  EXPECT_EQ(other->ignored, std::vector<std::string>{"Node Control/Reboot"});
}

TEST(SparkplugCodec, RejectsMalformedCommands) {
  struct Case {
    std::string bytes;
    const char* expect;
  } cases[] = {
      {"\xff\xff\xff\xff", "not a Sparkplug B payload"},
      {std::string("\x12\x05\x0a\x03", 4), "not a Sparkplug B payload"},  // truncated metric
      {pb::Payload().SerializeAsString(), "no metrics"},
      {Command(kRebirth, false, true), "is not a boolean"},
      {std::string(kMaxCommandBytes + 1, '\0'), "too large"},
  };
  for (const auto& c : cases) {
    auto r = DecodeNodeCommand(c.bytes);
    ASSERT_FALSE(r) << c.expect;
    EXPECT_NE(r.error().message.find(c.expect), std::string::npos) << r.error().message;
    EXPECT_EQ(r.error().message.rfind("NCMD", 0), 0u) << r.error().message;
  }
}

TEST(SparkplugCodec, HostState) {
  auto on = DecodeHostState(R"({"online":true,"timestamp":1700000000000})");
  ASSERT_TRUE(on) << on.error().message;
  EXPECT_TRUE(on->online);
  EXPECT_EQ(on->timestamp, 1700000000000);
  for (const char* bad : {"", "online", "[]", R"({"online":"yes","timestamp":1})",
                          R"({"online":true})", R"({"online":true,"timestamp":1.5})"}) {
    EXPECT_FALSE(DecodeHostState(bad)) << bad;
  }
}

TEST(SparkplugCodec, BirthsCarryEveryMetricWithItsType) {
  DeviceValues v;
  v.score = 0.5f;
  v.severity = "HIGH";
  v.alert_count = 3;
  v.model_name = "press";
  v.model_version = "2";
  pb::Payload b = DBirth(v, 7, 1000);
  EXPECT_EQ(b.seq(), 7u);
  EXPECT_EQ(b.timestamp(), 1000u);
  ASSERT_EQ(b.metrics_size(), 8);
  for (const auto& m : b.metrics()) {
    EXPECT_TRUE(m.has_datatype()) << m.name();
    EXPECT_EQ(m.timestamp(), 1000u) << m.name();  // no decision yet: the birth's time
  }
  pb::Payload n = NBirth(42, 0, 5);
  ASSERT_EQ(n.metrics_size(), 2);
  EXPECT_EQ(n.metrics(0).name(), kBdSeq);
  EXPECT_EQ(n.metrics(0).datatype(), pb::Int64);
  EXPECT_EQ(n.metrics(0).long_value(), 42u);
  EXPECT_EQ(n.metrics(1).name(), kRebirth);
  EXPECT_FALSE(n.metrics(1).boolean_value());
  pb::Payload d = NDeath(42, 5);
  EXPECT_FALSE(d.has_seq());
  ASSERT_EQ(d.metrics_size(), 1);
}

TEST(SparkplugCodec, DataCarriesOnlyWhatChangedAndHistoryIsFlagged) {
  DeviceValues a, b;
  a.model_name = b.model_name = "m";
  b.score = 0.9f;
  b.alert_count = 1;
  b.timestamp_ms = 77;
  pb::Payload p = DData(b, &a, false);
  ASSERT_EQ(p.metrics_size(), 2);
  EXPECT_EQ(p.metrics(0).name(), kAnomalyScore);
  EXPECT_EQ(p.metrics(0).datatype(), pb::Float);
  EXPECT_EQ(p.metrics(1).name(), kAlertCount);
  pb::Payload h = DData(b, nullptr, true);
  for (const auto& m : h.metrics()) {
    EXPECT_TRUE(m.is_historical());
    EXPECT_EQ(m.timestamp(), 77u);
  }
  auto stamped = Restamp(h.SerializeAsString(), 255, 99);
  ASSERT_TRUE(stamped);
  pb::Payload back;
  ASSERT_TRUE(back.ParseFromString(*stamped));
  EXPECT_EQ(back.seq(), 255u);
  EXPECT_EQ(back.timestamp(), 99u);
  EXPECT_FALSE(Restamp("\xff\xff", 0, 0));
}

TEST(SparkplugCodec, TopicsAndIds) {
  Topics t{"plant-a", "edge-7"};
  EXPECT_EQ(t.Node("NBIRTH"), "spBv1.0/plant-a/NBIRTH/edge-7");
  EXPECT_EQ(t.Device("DDATA", "press-1"), "spBv1.0/plant-a/DDATA/edge-7/press-1");
  EXPECT_EQ(StateTopic("scada"), "spBv1.0/STATE/scada");
  EXPECT_TRUE(ValidateId("group id", "plant-a"));
  for (const char* bad : {"", "a/b", "a+b", "a#", "\xc3\x28"}) {
    auto st = ValidateId("group id", bad);
    EXPECT_FALSE(st) << bad;
  }
}

}  // namespace
}  // namespace tend::sparkplug
