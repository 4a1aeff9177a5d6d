#include "core/status.h"

#include <gtest/gtest.h>

namespace tend {
namespace {

Result<int> Half(int x) {
  if (x % 2) return Fail(Error::Invalid("odd: " + std::to_string(x)));
  return x / 2;
}

Result<int> Quarter(int x) {
  TEND_ASSIGN_OR_RETURN(int h, Half(x));
  TEND_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

Status CheckEven(int x) {
  TEND_RETURN_NOT_OK(Half(x));
  return Ok();
}

TEST(Status, AssignOrReturnPropagatesFirstError) {
  EXPECT_EQ(*Quarter(8), 2);
  auto r = Quarter(6);  // 6 -> 3 -> odd
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(r.error().message, "odd: 3");
}

TEST(Status, ReturnNotOkAndWrap) {
  EXPECT_TRUE(CheckEven(4));
  auto s = CheckEven(5);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().Wrap("loading").message, "loading: odd: 5");
  EXPECT_STREQ(ErrorCodeName(ErrorCode::kCorrupt), "corrupt data");
}

}  // namespace
}  // namespace tend
