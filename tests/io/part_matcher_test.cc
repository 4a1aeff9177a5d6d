// PartMatcher: the PLC's parts matched to events by time, on synthetic clocks (no network, no
// sleeping): a camera frame takes the part detected within the tolerance before it, a sample
// window the part inside it (or within the tolerance before it); unmatched events and missed
// parts are counted.
#include "io/part_matcher.h"

#include <gtest/gtest.h>

namespace tend::io {
namespace {

using Clock = PartMatcher::Clock;
using std::chrono::milliseconds;

Clock::time_point At(int ms) {
  return Clock::time_point{} + std::chrono::hours(1) + milliseconds(ms);
}

TEST(PartMatcher, FrameTakesThePartDetectedJustBeforeIt) {
  PartMatcher m({0.05, 16});
  // Parts at 0, 100, 200 ms; a frame 10 ms after each.
  for (int i = 0; i < 3; ++i) {
    m.AddPart(41 + i, At(100 * i));
    EXPECT_EQ(m.Match(At(100 * i + 10), Clock::duration::zero()), 41 + i);
  }
  EXPECT_EQ(m.stats().matched, 3);
  EXPECT_EQ(m.stats().unmatched, 0);
  EXPECT_EQ(m.stats().parts_missed, 0);
}

TEST(PartMatcher, PartDetectedAfterTheFrameGoesToTheNextFrame) {
  PartMatcher m({0.05, 16});
  m.AddPart(7, At(30));
  EXPECT_EQ(m.Match(At(20), Clock::duration::zero()), -1);  // the part is newer than the frame
  EXPECT_EQ(m.Match(At(60), Clock::duration::zero()), 7);
  EXPECT_EQ(m.stats().unmatched, 1);
  EXPECT_EQ(m.stats().matched, 1);
}

TEST(PartMatcher, PartOlderThanTheToleranceIsMissedAndTheFrameUnmatched) {
  PartMatcher m({0.05, 16});
  m.AddPart(1, At(0));
  EXPECT_EQ(m.Match(At(51), Clock::duration::zero()), -1);
  EXPECT_EQ(m.stats().parts_missed, 1);
  EXPECT_EQ(m.stats().unmatched, 1);
  // A part is settled once: a later frame does not take it either.
  EXPECT_EQ(m.Match(At(52), Clock::duration::zero()), -1);
  EXPECT_EQ(m.stats().parts_missed, 1);
}

TEST(PartMatcher, TwoPartsBeforeOneFrameTheLaterWinsTheEarlierIsMissed) {
  PartMatcher m({0.5, 16});
  m.AddPart(1, At(0));
  m.AddPart(2, At(20));
  EXPECT_EQ(m.Match(At(30), Clock::duration::zero()), 2);
  EXPECT_EQ(m.stats().parts_missed, 1);
  EXPECT_EQ(m.stats().matched, 1);
}

TEST(PartMatcher, WindowTakesThePartInsideIt) {
  // 200 ms windows back to back, complete at 200, 400, 600; strokes at 150 and 450 (none in the
  // second window); tolerance 10 ms.
  PartMatcher m({0.01, 16});
  const auto span = milliseconds(200);
  m.AddPart(100, At(150));
  EXPECT_EQ(m.Match(At(200), span), 100);
  EXPECT_EQ(m.Match(At(400), span), -1);
  m.AddPart(101, At(450));
  EXPECT_EQ(m.Match(At(600), span), 101);
  // A stroke 5 ms before the window began still counts (tolerance), 20 ms before does not.
  m.AddPart(102, At(595));
  EXPECT_EQ(m.Match(At(800), span), 102);
  m.AddPart(103, At(780));
  EXPECT_EQ(m.Match(At(1000), span), -1);
  EXPECT_EQ(m.stats().matched, 3);
  EXPECT_EQ(m.stats().unmatched, 2);
  EXPECT_EQ(m.stats().parts_missed, 1);
}

TEST(PartMatcher, FinishCountsPartsWithoutAnEventAndAFullQueueLosesTheOldest) {
  PartMatcher m({0.05, 2});
  m.AddPart(1, At(0));
  m.AddPart(2, At(10));
  m.AddPart(3, At(20));  // the queue holds 2: part 1 is lost
  EXPECT_EQ(m.stats().parts_missed, 1);
  EXPECT_EQ(m.Match(At(25), Clock::duration::zero()), 3);
  EXPECT_EQ(m.stats().parts_missed, 2);  // part 2: a later part took the frame
  m.AddPart(4, At(100));
  m.Finish();
  EXPECT_EQ(m.stats().parts_missed, 3);
  EXPECT_EQ(m.stats().parts, 4);
}

}  // namespace
}  // namespace tend::io
