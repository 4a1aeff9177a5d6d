// The verdict of `tend compare` from given measurements: the accuracy gate and the speed verdict
// (#16 item 10: an INT8 model at 0.89x the speed of FP32 was called "ok").
#include "optimize/compare.h"

#include <gtest/gtest.h>

namespace tend::optimize {
namespace {

ModelResult Measured(const std::string& path, double p50_ms, double auc) {
  ModelResult m;
  m.path = path;
  m.precision = path.substr(0, path.find('.'));
  m.latency.p50_ms = p50_ms;
  m.latency.n = 200;
  m.metric = auc;
  return m;
}

TEST(CompareVerdict, AVariantSlowerThanTheReferenceIsSaidToBeSlower) {
  CompareReport r;
  r.metric = "auc";
  r.models = {Measured("fp32.onnx", 0.100, 0.990), Measured("int8.onnx", 0.1124, 0.989),
              Measured("fp16.onnx", 0.103, 0.990), Measured("int8b.onnx", 0.050, 0.990)};
  Judge(r, 0.015, 0.95);
  EXPECT_TRUE(r.pass);
  EXPECT_FALSE(r.models[0].slower);
  EXPECT_NEAR(r.models[1].speedup_p50, 0.89, 0.001);
  EXPECT_TRUE(r.models[1].slower);
  EXPECT_FALSE(r.models[2].slower) << "0.97x is within the noise margin";
  EXPECT_FALSE(r.models[3].slower);
  const std::string table = r.ToTable();
  EXPECT_NE(table.find("ok, SLOWER (0.89x)"), std::string::npos) << table;
  EXPECT_EQ(table.find("SLOWER (0.97x)"), std::string::npos) << table;
  auto j = r.ToJson();
  EXPECT_EQ(j["models"][1]["slower"], true);
  EXPECT_EQ(j["models"][3]["slower"], false);
}

TEST(CompareVerdict, AccuracyGateAndSpeedAreIndependent) {
  CompareReport r;
  r.metric = "auc";
  r.models = {Measured("fp32.onnx", 0.1, 0.99), Measured("int8.onnx", 0.2, 0.95)};
  Judge(r, 0.015, 0.95);
  EXPECT_FALSE(r.pass);
  EXPECT_FALSE(r.models[1].pass);
  EXPECT_NEAR(r.models[1].drop, 0.04, 1e-9);
  EXPECT_NE(r.ToTable().find("FAIL (> 1.50), SLOWER (0.50x)"), std::string::npos) << r.ToTable();
}

}  // namespace
}  // namespace tend::optimize
