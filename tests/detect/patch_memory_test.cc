// PatchCore memory bank (detect/patch_memory.h) and its ONNX head (detect/image_graph.h): the
// greedy coreset covers every cluster, the head computes exactly the nearest-neighbour distance
// the C++ reference does.
#include "detect/patch_memory.h"

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "detect/image_graph.h"
#include "image_graph_util.h"

namespace tend::detect {
namespace {

// n points around each of the given centres (d dims), shuffled.
std::vector<float> Clusters(const std::vector<std::vector<float>>& centres, int n, float spread,
                            uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> noise(0.0f, spread);
  std::vector<std::vector<float>> pts;
  for (const auto& c : centres) {
    for (int i = 0; i < n; ++i) {
      auto p = c;
      for (auto& v : p) v += noise(rng);
      pts.push_back(p);
    }
  }
  std::shuffle(pts.begin(), pts.end(), rng);
  std::vector<float> out;
  for (const auto& p : pts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST(GreedyCoreset, PicksOnePointOfEveryCluster) {
  const std::vector<std::vector<float>> centres = {
      {0, 0, 0, 0}, {10, 0, 0, 0}, {0, 10, 0, 0}, {0, 0, 10, 0}, {0, 0, 0, 10}};
  const auto pts = Clusters(centres, 200, 0.3f, 7);
  for (int64_t projection : {0, 3}) {
    const auto idx = GreedyCoreset(pts, 4, 5, projection, 3);
    ASSERT_EQ(idx.size(), 5u);
    std::set<int> hit;
    for (int64_t i : idx) {
      const float* p = &pts[static_cast<size_t>(i * 4)];
      int nearest = 0;
      float best = 1e30f;
      for (size_t c = 0; c < centres.size(); ++c) {
        float sq = 0;
        for (int k = 0; k < 4; ++k) sq += (p[k] - centres[c][k]) * (p[k] - centres[c][k]);
        if (sq < best) best = sq, nearest = static_cast<int>(c);
      }
      hit.insert(nearest);
    }
    EXPECT_EQ(hit.size(), 5u) << "projection " << projection;
  }
}

// Embeddings [d, h, w] of random images: one value per location and channel.
std::vector<float> RandomEmbedding(int64_t d, int64_t L, std::mt19937_64& rng) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> e(static_cast<size_t>(d * L));
  for (auto& v : e) v = g(rng);
  return e;
}

TEST(PatchMemory, FullBankScoresFittedPatchesZeroAndCoresetBoundsTheBank) {
  const int64_t d = 6, h = 3, w = 4, L = h * w;
  PatchMemoryCollector c(d, h, w);
  std::mt19937_64 rng(1);
  std::vector<std::vector<float>> seen;
  for (int i = 0; i < 5; ++i) {
    seen.push_back(RandomEmbedding(d, L, rng));
    ASSERT_TRUE(c.Add(seen.back()));
  }
  auto full = c.Fit({.fraction = 1.0});
  ASSERT_TRUE(full) << full.error().message;
  EXPECT_EQ(full->size(), 5 * L);
  std::vector<float> out(static_cast<size_t>(L));
  ScoreNearest(*full, seen[2], out);
  for (float v : out) EXPECT_FLOAT_EQ(v, 0.0f);
  const auto fresh = RandomEmbedding(d, L, rng);
  ScoreNearest(*full, fresh, out);
  for (float v : out) EXPECT_GT(v, 0.1f);

  auto small = c.Fit({.fraction = 0.1, .max_size = 4});
  ASSERT_TRUE(small);
  EXPECT_EQ(small->size(), 4);
  EXPECT_EQ(small->patches, 5 * L);
  EXPECT_FALSE(c.Fit({.fraction = 0.0}));
  std::vector<float> bad(static_cast<size_t>(d * L), 0.0f);
  bad[7] = std::nanf("");
  auto st = c.Add(bad);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("not finite"), std::string::npos);
  EXPECT_FALSE(c.Add(std::vector<float>(3, 0.0f)));
}

using testing::IdentityEmbedding;
using testing::RunGraph;

TEST(PatchMemory, OnnxHeadMatchesTheReference) {
  const int64_t d = 8, h = 5, w = 7, L = h * w;
  PatchMemoryCollector c(d, h, w);
  std::mt19937_64 rng(2);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(c.Add(RandomEmbedding(d, L, rng)));
  auto m = c.Fit({.fraction = 0.25, .projection = 4});
  ASSERT_TRUE(m);
  EmbeddingGraph eg = IdentityEmbedding(d, h, w);
  ASSERT_TRUE(AppendPatchMemoryHead(eg, *m));
  auto x = RandomEmbedding(d, L, rng);
  std::vector<float> ref(static_cast<size_t>(L));
  ScoreNearest(*m, x, ref);
  auto res = RunGraph(eg.model, x, {1, d, h, w}, {"anomaly_score", "anomaly_map"});
  const std::vector<float>& score = res[0];
  const std::vector<float>& map = res[1];
  for (int64_t l = 0; l < L; ++l) EXPECT_NEAR(map[l], ref[static_cast<size_t>(l)], 1e-3) << l;
  EXPECT_NEAR(score[0], *std::max_element(ref.begin(), ref.end()), 1e-3);
  EXPECT_FALSE(AppendPatchMemoryHead(eg, PatchMemory{}));
}

TEST(PatchMemory, SmoothedMapIsTheZeroPaddedGaussianOfTheRawMap) {
  // The head with smooth_sigma gives sum_{i,j} g(y-i) g(x-j) raw[i,j] (g normalised over its
  // full 4-sigma support, zero beyond the border), computed here directly in 2-D.
  const int64_t d = 6, h = 9, w = 11, L = h * w;
  const double sigma = 1.5;
  PatchMemoryCollector c(d, h, w);
  std::mt19937_64 rng(3);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(c.Add(RandomEmbedding(d, L, rng)));
  auto m = c.Fit({.fraction = 0.2, .projection = 4});
  ASSERT_TRUE(m);
  EmbeddingGraph eg = IdentityEmbedding(d, h, w);
  MapOptions mo;
  mo.smooth_sigma = sigma;
  ASSERT_TRUE(AppendPatchMemoryHead(eg, *m, mo));
  auto x = RandomEmbedding(d, L, rng);
  std::vector<float> raw(static_cast<size_t>(L));
  ScoreNearest(*m, x, raw);
  const int r = static_cast<int>(std::ceil(4 * sigma));
  double norm = 0;
  for (int t = -r; t <= r; ++t) norm += std::exp(-0.5 * t * t / (sigma * sigma));
  auto g = [&](int t) {
    return std::abs(t) > r ? 0.0 : std::exp(-0.5 * t * t / (sigma * sigma)) / norm;
  };
  std::vector<double> want(static_cast<size_t>(L), 0.0);
  for (int y = 0; y < h; ++y)
    for (int xx = 0; xx < w; ++xx)
      for (int i = 0; i < h; ++i)
        for (int j = 0; j < w; ++j)
          want[static_cast<size_t>(y * w + xx)] +=
              g(y - i) * g(xx - j) * raw[static_cast<size_t>(i * w + j)];
  auto res = RunGraph(eg.model, x, {1, d, h, w}, {"anomaly_score", "anomaly_map"});
  const std::vector<float>& map = res[1];
  for (int64_t l = 0; l < L; ++l) EXPECT_NEAR(map[l], want[static_cast<size_t>(l)], 1e-3) << l;
  EXPECT_NEAR(res[0][0], *std::max_element(want.begin(), want.end()), 1e-3);
  // Smoothing lowers a single peak: the smoothed maximum is below the raw one.
  EXPECT_LT(*std::max_element(want.begin(), want.end()), *std::max_element(raw.begin(), raw.end()));
}

}  // namespace
}  // namespace tend::detect
