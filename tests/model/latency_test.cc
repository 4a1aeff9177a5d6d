#include "model/latency.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

namespace tend::model {
namespace {

TEST(LatencyStatsTest, OneToHundredClosedForm) {
  std::vector<double> s;
  for (int i = 1; i <= 100; ++i) s.push_back(i);
  std::shuffle(s.begin(), s.end(), std::mt19937(5));  // order must not matter
  auto st = ComputeLatencyStats(s, 2.0);
  EXPECT_EQ(st.n, 100u);
  EXPECT_DOUBLE_EQ(st.mean_ms, 50.5);
  // Linear interpolation at q*(n-1): p50 at rank 49.5, p95 at 94.05, p99 at 98.01, p99.9 at 98.901.
  EXPECT_DOUBLE_EQ(st.p50_ms, 50.5);
  EXPECT_NEAR(st.p95_ms, 95.05, 1e-9);
  EXPECT_NEAR(st.p99_ms, 99.01, 1e-9);
  EXPECT_NEAR(st.p999_ms, 99.901, 1e-9);
  EXPECT_DOUBLE_EQ(st.max_ms, 100);
  EXPECT_DOUBLE_EQ(st.throughput_fps, 50);  // 100 runs in 2 s
}

TEST(LatencyStatsTest, ThroughputFallsBackToSumOfSamples) {
  auto st = ComputeLatencyStats({2, 2, 2, 2}, 0);  // 8 ms in all
  EXPECT_DOUBLE_EQ(st.throughput_fps, 500);
  EXPECT_DOUBLE_EQ(st.p999_ms, 2);
}

TEST(LatencyStatsTest, SingleAndEmpty) {
  auto one = ComputeLatencyStats({3.5}, 0.01);
  EXPECT_EQ(one.n, 1u);
  EXPECT_DOUBLE_EQ(one.p50_ms, 3.5);
  EXPECT_DOUBLE_EQ(one.p999_ms, 3.5);
  EXPECT_DOUBLE_EQ(one.max_ms, 3.5);
  EXPECT_DOUBLE_EQ(one.throughput_fps, 100);
  auto none = ComputeLatencyStats({}, 1.0);
  EXPECT_EQ(none.n, 0u);
  EXPECT_EQ(none.max_ms, 0);
  EXPECT_EQ(none.throughput_fps, 0);
}

TEST(LatencyStatsTest, OneSlowOutlierShowsOnlyInTheTail) {
  std::vector<double> s(1000, 1.0);
  s[17] = 50.0;
  auto st = ComputeLatencyStats(s, 0);
  EXPECT_DOUBLE_EQ(st.p50_ms, 1.0);
  EXPECT_DOUBLE_EQ(st.p99_ms, 1.0);
  // p99.9 sits at rank 998.001 of 0..999: 1 + 0.001 * 49.
  EXPECT_NEAR(st.p999_ms, 1.049, 1e-9);
  EXPECT_DOUBLE_EQ(st.max_ms, 50.0);
  EXPECT_NEAR(st.mean_ms, 1.049, 1e-12);
}

TEST(LatencyStatsTest, QuantileClampsQ) {
  std::vector<double> s = {1, 2, 3};
  EXPECT_DOUBLE_EQ(Quantile(s, -1), 1);
  EXPECT_DOUBLE_EQ(Quantile(s, 2), 3);
  EXPECT_DOUBLE_EQ(Quantile(s, 0.25), 1.5);
  EXPECT_DOUBLE_EQ(Quantile({}, 0.5), 0);
}

}  // namespace
}  // namespace tend::model
