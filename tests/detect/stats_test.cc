#include "detect/stats.h"

#include <gtest/gtest.h>

namespace tend::detect {
namespace {

// Reference values from scipy (stats.t.isf, special.betainc, stats.norm.isf).
TEST(StatsTest, StudentTQuantileMatchesScipy) {
  struct Case {
    double p, dof, t;
  } cases[] = {{1e-3, 9, 4.296805662730113},  {1e-5, 9, 8.102057879394856},
               {1e-7, 9, 14.040718745307645}, {1e-3, 1, 318.3088389855422},
               {0.05, 3, 2.3533634348018273}, {1e-7, 100, 5.586900474571718},
               {1e-3, 29, 3.3962402883415166}};
  for (const auto& c : cases)
    EXPECT_NEAR(StudentTUpperQuantile(c.p, c.dof), c.t, 1e-8 * c.t) << c.p << " " << c.dof;
}

TEST(StatsTest, StudentTTailMatchesScipy) {
  EXPECT_NEAR(StudentTUpperTail(2.5, 4), 0.03338327240599406, 1e-12);
  EXPECT_DOUBLE_EQ(StudentTUpperTail(0, 4), 0.5);
  EXPECT_NEAR(StudentTUpperTail(-2.5, 4), 1 - 0.03338327240599406, 1e-12);
}

TEST(StatsTest, IncompleteBetaMatchesScipy) {
  EXPECT_NEAR(RegularizedIncompleteBeta(0.5, 0.5, 0.3), 0.3690101195655454, 1e-12);
  EXPECT_NEAR(RegularizedIncompleteBeta(2, 3, 0.4), 0.5248, 1e-12);
  EXPECT_NEAR(RegularizedIncompleteBeta(10, 0.5, 0.9), 0.15164090963470997, 1e-12);
  EXPECT_NEAR(RegularizedIncompleteBeta(50, 0.5, 0.99), 0.31730439787419623, 1e-12);
  EXPECT_EQ(RegularizedIncompleteBeta(2, 3, 0), 0);
  EXPECT_EQ(RegularizedIncompleteBeta(2, 3, 1), 1);
}

TEST(StatsTest, NormalQuantileMatchesScipy) {
  EXPECT_NEAR(NormalUpperQuantile(1e-3), 3.090232306167813, 1e-9);
  EXPECT_NEAR(NormalUpperQuantile(1e-5), 4.264890793922825, 1e-9);
  EXPECT_NEAR(NormalUpperQuantile(1e-7), 5.1993375821928165, 1e-9);
}

TEST(StatsTest, SampleQuantileInterpolatesLikeNumpy) {
  std::vector<double> v = {4, 1, 3, 2};
  EXPECT_DOUBLE_EQ(SampleQuantile(v, 0), 1);
  EXPECT_DOUBLE_EQ(SampleQuantile(v, 1), 4);
  EXPECT_DOUBLE_EQ(SampleQuantile(v, 0.5), 2.5);
  EXPECT_DOUBLE_EQ(SampleQuantile(v, 0.9), 3.7);
}

}  // namespace
}  // namespace tend::detect
