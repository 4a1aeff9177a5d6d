#include "vision/overlay.h"

#include <gtest/gtest.h>

#include "tests/vision/test_images.h"

namespace tend::vision {
namespace {

TEST(Overlay, ColoursOnlyWhereTheMapIsHigh) {
  Image frame = testing::Gradient(40, 20, 1);
  std::vector<float> map(4 * 2, 0.0f);
  map[3] = 10.0f;  // top-right cell of a 4x2 map
  Image out;
  OverlayOptions o;
  o.lo = 1;
  o.hi = 5;
  ASSERT_TRUE(RenderOverlay(frame.view(), Roi{}, map, 4, 2, o, out));
  ASSERT_EQ(out.channels(), 3);
  ASSERT_EQ(out.width(), 40);
  auto px = [&](int x, int y) { return out.data() + (y * 40 + x) * 3; };
  const uint8_t g = frame.data()[0];
  EXPECT_EQ(px(0, 0)[0], g);  // low map: the grey frame unchanged
  EXPECT_EQ(px(0, 0)[2], g);
  const uint8_t* hot = px(37, 2);
  EXPECT_GT(hot[0], hot[2] + 60);  // red over the hot cell
}

TEST(Overlay, RoiPlacesTheMapAndOutsideStaysGrey) {
  Image frame = testing::Gradient(30, 30, 3);
  std::vector<float> map(1, 100.0f);
  Image out;
  ASSERT_TRUE(RenderOverlay(frame.view(), Roi{10, 10, 10, 10}, map, 1, 1, {}, out));
  const uint8_t* in = out.data() + (15 * 30 + 15) * 3;
  const uint8_t* outside = out.data() + (2 * 30 + 2) * 3;
  const uint8_t* f = frame.data() + (2 * 30 + 2) * 3;
  EXPECT_EQ(outside[0], Luma(f[0], f[1], f[2]));
  EXPECT_GT(in[0], in[2]);
}

TEST(Overlay, BadArgumentsAreErrors) {
  Image frame = testing::Gradient(8, 8, 1), out;
  std::vector<float> map(3);
  EXPECT_FALSE(RenderOverlay(frame.view(), Roi{}, map, 2, 2, {}, out));
  std::vector<float> ok(4);
  OverlayOptions o;
  o.lo = o.hi = 1;
  EXPECT_FALSE(RenderOverlay(frame.view(), Roi{}, ok, 2, 2, o, out));
  EXPECT_FALSE(RenderOverlay(frame.view(), Roi{4, 4, 8, 8}, ok, 2, 2, {}, out));
}

}  // namespace
}  // namespace tend::vision
