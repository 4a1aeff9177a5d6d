// GoogleTest main for tend's tests: exports where the sources, the build and the shared data
// live (TEND_SOURCE_DIR, TEND_BINARY_DIR, TEND_SHARED_DIR) unless the caller already set them,
// so tests find the tend binary and test data however they are started (ctest, by hand, gdb).
#include <cstdlib>

#include <gtest/gtest.h>

int main(int argc, char** argv) {
  setenv("TEND_SOURCE_DIR", TEND_TEST_SOURCE_DIR, 0);
  setenv("TEND_BINARY_DIR", TEND_TEST_BINARY_DIR, 0);
  setenv("TEND_SHARED_DIR", TEND_TEST_SHARED_DIR, 0);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
