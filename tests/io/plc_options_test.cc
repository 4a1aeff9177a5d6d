// Option parsing and validation of the PLC components: every bad value is a one-line error.
#include <gtest/gtest.h>

#include "io/plc_sink.h"
#include "io/plc_trigger.h"

namespace tend::io {
namespace {

TEST(ModbusUrl, ParsesHostPortAndUnit) {
  auto a = ParseModbusUrl("modbus://10.0.0.5:1502?unit=7");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->host, "10.0.0.5");
  EXPECT_EQ(a->port, 1502);
  EXPECT_EQ(a->unit, 7);
  auto d = ParseModbusUrl("modbus://plc-3/");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->host, "plc-3");
  EXPECT_EQ(d->port, 502);
  EXPECT_EQ(d->unit, 1);
  auto v6 = ParseModbusUrl("modbus://[::1]:1502");
  ASSERT_TRUE(v6) << v6.error().message;
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 1502);
}

TEST(ModbusUrl, RejectsWhatIsNotAModbusUrl) {
  for (const char* bad :
       {"tcp://plc:502", "modbus://", "modbus://plc:0", "modbus://plc:70000", "modbus://plc:x",
        "modbus://plc?unit=256", "modbus://plc?unit=", "modbus://plc?slave=1", "modbus://u@plc",
        "modbus://plc/path", "modbus://[::1"}) {
    auto r = ParseModbusUrl(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_NE(r.error().message.find("PLC URL"), std::string::npos) << r.error().message;
      EXPECT_EQ(r.error().message.find('\n'), std::string::npos);
    }
  }
}

TEST(TriggerSpec, ParsesTablesAndAddresses) {
  auto t = ParseTriggerSpec("di:3");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->table, TriggerSpec::Table::kDiscreteInput);
  EXPECT_EQ(t->address, 3);
  EXPECT_FALSE(t->is_counter());
  auto c = ParseTriggerSpec("hr:65535");
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->is_counter());
  ASSERT_TRUE(ParseTriggerSpec("coil:0"));
  ASSERT_TRUE(ParseTriggerSpec("ir:9"));
  for (const char* bad : {"", "di", "di:", "di:-1", "di:65536", "x:1", "hr:1x"}) {
    EXPECT_FALSE(ParseTriggerSpec(bad)) << bad;
  }
}

TEST(PlcSinkOptions, ValidatesEveryField) {
  PlcSinkOptions o;
  o.link.url = "modbus://127.0.0.1:1502";
  o.reject_coil = 5;
  EXPECT_TRUE(o.Validate());
  auto bad = [&](auto edit, const char* what) {
    PlcSinkOptions b = o;
    edit(b);
    auto st = b.Validate();
    EXPECT_FALSE(st) << what;
    if (!st) {
      EXPECT_NE(st.error().message.find("PLC"), std::string::npos);
    }
  };
  bad([](auto& b) { b.reject_coil = 70000; }, "coil range");
  bad([](auto& b) { b.reject_coil = -1; }, "nothing to write");
  bad([](auto& b) { b.pulse_s = 0; }, "pulse");
  bad([](auto& b) { b.score_register = 65535; }, "score needs two registers");
  bad([](auto& b) { b.queue_capacity = 0; }, "queue");
  bad([](auto& b) { b.link.timeout_s = 0; }, "timeout");
  bad([](auto& b) { b.link.reconnect_min_s = 2, b.link.reconnect_max_s = 1; }, "backoff");
  bad([](auto& b) { b.link.url = "modbus://"; }, "url");
}

TEST(PlcSink, SeverityRegisterValues) {
  Decision d;
  EXPECT_EQ(SeverityRegisterValue(d), 0);
  d.is_alert = true;
  d.severity = Severity::kLow;
  EXPECT_EQ(SeverityRegisterValue(d), 1);
  d.severity = Severity::kHigh;
  EXPECT_EQ(SeverityRegisterValue(d), 3);
}

TEST(PlcSink, StatsAsJson) {
  PlcSinkStats s;
  s.rejects_missed = 3;
  s.counter = 65535;
  auto j = ToJson(s);
  EXPECT_EQ(j["rejects_missed"], 3);
  EXPECT_EQ(j["counter"], 65535);
  EXPECT_FALSE(j.contains("last_error"));
}

TEST(Backoff, DoublesUpToTheMaximumWithJitter) {
  Backoff b(0.1, 0.4);
  double prev = 0;
  for (int i = 0; i < 6; ++i) {
    double s = std::chrono::duration<double>(b.Next()).count();
    EXPECT_GE(s, 0.08 * (i == 0 ? 1 : 0));
    EXPECT_LE(s, 0.4 * 1.2 + 1e-9);
    prev = s;
  }
  EXPECT_GE(prev, 0.4 * 0.8 - 1e-9);
  b.Reset();
  EXPECT_LE(std::chrono::duration<double>(b.Next()).count(), 0.1 * 1.2 + 1e-9);
}

}  // namespace
}  // namespace tend::io
