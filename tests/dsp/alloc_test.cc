// Compute must not allocate: the global operator new of this test binary counts allocations
// while a window is processed. (KissFFT calls malloc only when a transform runs in place,
// which the extractor never asks for; its plans are made in Create.)
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <random>

#include "dsp/features.h"

// GCC cannot see that these replacements pair malloc with free on purpose.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};
}  // namespace

void* operator new(std::size_t size) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace tend::dsp {
namespace {

TEST(Allocation, ComputeAllocatesNothing) {
  for (const FeatureSpec& spec :
       {FeatureSpec::DefaultPress(10000, 2, 2000), FeatureSpec::DefaultBearing(12000, 2, 2000),
        FeatureSpec::DefaultVibration(25600, 2, 2560),
        FeatureSpec::DefaultSound(16000, 1, 32000)}) {
    auto fx = FeatureExtractor::Create(spec);
    ASSERT_TRUE(fx) << fx.error().message;
    std::mt19937_64 rng(1);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(spec.channels) * spec.window);
    std::vector<float> out(spec.Size());
    for (int round = 0; round < 3; ++round) {
      for (float& v : x) v = normal(rng);
      g_allocations = 0;
      g_counting = true;
      auto st = (*fx)->Compute(x, out);
      g_counting = false;
      ASSERT_TRUE(st) << st.error().message;
      EXPECT_EQ(g_allocations.load(), 0) << "allocations in one Compute";
    }
  }
}

// Sanity check that the counter works at all, so the test above cannot pass vacuously.
TEST(Allocation, CounterSeesAllocations) {
  g_allocations = 0;
  g_counting = true;
  auto* v = new std::vector<int>(100);
  g_counting = false;
  delete v;
  EXPECT_GE(g_allocations.load(), 1);
}

}  // namespace
}  // namespace tend::dsp
