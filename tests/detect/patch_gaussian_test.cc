// The embedding graph's channel choice and PaDiM's ONNX head (detect/image_graph.h) against the C++
// reference (ScorePatches): the full [L, d, d] whitening and the triangular column blocks give the
// same Mahalanobis distances, and the blocks store only the factors' lower triangle (plus the
// diagonal blocks).
#include "detect/patch_gaussian.h"

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "detect/image_graph.h"
#include "image_graph_util.h"

namespace tend::detect {
namespace {

using testing::IdentityEmbedding;
using testing::RunGraph;

// Embeddings [d, h, w] with correlated channels (a shared factor per location), so the
// precision factors have full lower triangles.
std::vector<float> CorrelatedEmbedding(int64_t d, int64_t L, std::mt19937_64& rng) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> e(static_cast<size_t>(d * L));
  for (int64_t l = 0; l < L; ++l) {
    const float common = g(rng);
    for (int64_t k = 0; k < d; ++k)
      e[static_cast<size_t>(k * L + l)] = (1.0f + 0.1f * k) * common + g(rng) + 0.05f * l;
  }
  return e;
}

PatchGaussian FitRandom(int64_t d, int64_t h, int64_t w, std::mt19937_64& rng) {
  PatchGaussianFitter fitter(d, h, w);
  for (int i = 0; i < 60; ++i) EXPECT_TRUE(fitter.Add(CorrelatedEmbedding(d, h * w, rng)));
  auto g = fitter.Fit(0.01);
  EXPECT_TRUE(g) << g.error().message;
  return *g;
}

struct HeadRun {
  std::vector<float> map;
  float score = 0;
  int64_t factor_floats = 0;  // elements of the whitening initializers
};

HeadRun RunHead(const PatchGaussian& pg, const std::vector<float>& x, int blocks,
                int64_t opset = 13) {
  EmbeddingGraph eg = IdentityEmbedding(pg.dims, pg.height, pg.width, opset);
  EXPECT_TRUE(AppendPatchGaussianHead(eg, pg, {}, blocks));
  HeadRun r;
  for (const auto& t : eg.model.graph().initializer()) {
    if (t.name().find("factor") == std::string::npos) continue;
    int64_t n = 1;
    for (int64_t v : t.dims()) n *= v;
    r.factor_floats += n;
  }
  auto res =
      RunGraph(eg.model, x, {1, pg.dims, pg.height, pg.width}, {"anomaly_score", "anomaly_map"});
  r.score = res[0][0];
  r.map = std::move(res[1]);
  return r;
}

TEST(PatchGaussianHead, TriangularBlocksScoreAsTheFullFactorsAndTheReference) {
  const int64_t d = 13, h = 3, w = 5, L = h * w;
  std::mt19937_64 rng(5);
  const PatchGaussian pg = FitRandom(d, h, w, rng);
  // An unseen embedding, partly far from the fitted Gaussians (large distances).
  auto x = CorrelatedEmbedding(d, L, rng);
  for (int64_t k = 0; k < d; ++k) x[static_cast<size_t>(k * L + 4)] += 3.0f;
  std::vector<float> ref(static_cast<size_t>(L));
  ScorePatches(pg, x, ref);
  const HeadRun full = RunHead(pg, x, 1);
  EXPECT_EQ(full.factor_floats, L * d * d);
  for (int blocks : {1, 2, 3, 4}) {
    const HeadRun r = blocks == 1 ? full : RunHead(pg, x, blocks);
    for (int64_t l = 0; l < L; ++l) {
      const float want = ref[static_cast<size_t>(l)];
      // float32 products summed in another order: relative 1e-5 of the distance.
      EXPECT_NEAR(r.map[static_cast<size_t>(l)], want, 1e-5 * want + 1e-6)
          << "blocks " << blocks << " location " << l;
      EXPECT_NEAR(r.map[static_cast<size_t>(l)], full.map[static_cast<size_t>(l)], 1e-5 * want)
          << "blocks " << blocks << " location " << l;
    }
    EXPECT_NEAR(r.score, *std::max_element(ref.begin(), ref.end()), 1e-4) << blocks;
    // Block j holds columns [c_j, c_j+1) and rows c_j..d-1 only.
    int64_t want_floats = 0;
    for (int j = 0; j < blocks; ++j) {
      const int64_t c0 = d * j / blocks, c1 = d * (j + 1) / blocks;
      want_floats += L * (d - c0) * (c1 - c0);
    }
    EXPECT_EQ(r.factor_floats, want_floats) << blocks;
  }
  // The default: 2 blocks, 3/4 of the full factors' bytes (for even d).
  EXPECT_EQ(kDefaultFactorBlocks, 2);
  // Opset 18 takes ReduceSumSquare's axes as an input instead of an attribute.
  const HeadRun r18 = RunHead(pg, x, 2, 18);
  for (int64_t l = 0; l < L; ++l) {
    const float want = ref[static_cast<size_t>(l)];
    EXPECT_NEAR(r18.map[static_cast<size_t>(l)], want, 1e-5 * want + 1e-6) << "opset 18 " << l;
  }
}

TEST(PatchGaussianHead, FactorsThatAreNotLowerTriangularKeepTheFullMatrices) {
  const int64_t d = 6, h = 2, w = 3, L = h * w;
  std::mt19937_64 rng(6);
  PatchGaussian pg = FitRandom(d, h, w, rng);
  pg.factor[static_cast<size_t>(3 * d * d + 0 * d + 5)] = 0.25f;  // above the diagonal at l=3
  const auto x = CorrelatedEmbedding(d, L, rng);
  std::vector<float> ref(static_cast<size_t>(L));
  ScorePatches(pg, x, ref);
  const HeadRun r = RunHead(pg, x, 2);
  EXPECT_EQ(r.factor_floats, L * d * d);
  for (int64_t l = 0; l < L; ++l)
    EXPECT_NEAR(r.map[static_cast<size_t>(l)], ref[static_cast<size_t>(l)],
                1e-5 * ref[static_cast<size_t>(l)] + 1e-6);
}

// A two-layer "backbone": l1 = Relu(image) [1,3,8,8], l2 = MaxPool 2x2 stride 2 [1,3,4,4].
onnx::ModelProto TwoLayerBackbone() {
  onnx::ModelProto m;
  m.set_ir_version(8);
  auto* op = m.add_opset_import();
  op->set_domain("");
  op->set_version(13);
  auto* g = m.mutable_graph();
  g->set_name("two_layers");
  auto* in = g->add_input();
  in->set_name("x");
  auto* t = in->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  for (int64_t v : {1, 3, 8, 8}) t->mutable_shape()->add_dim()->set_dim_value(v);
  auto* relu = g->add_node();
  relu->set_op_type("Relu");
  relu->add_input("x");
  relu->add_output("l1");
  auto* pool = g->add_node();
  pool->set_op_type("MaxPool");
  pool->add_input("x");
  pool->add_output("l2");
  for (const char* name : {"kernel_shape", "strides"}) {
    auto* a = pool->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    a->add_ints(2);
    a->add_ints(2);
  }
  return m;
}

// A TwoLayerBackbone input [1,3,8,8] of standard normal values.
std::vector<float> RandomImage(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> image(3 * 8 * 8);
  for (auto& v : image) v = nd(rng);
  return image;
}

std::vector<float> RunEmbedding(const EmbeddingGraph& eg, std::vector<float> image) {
  return RunGraph(eg.model, std::move(image), {1, 3, 8, 8}, {kEmbeddingOutput})[0];
}

// Channels chosen per layer before pooling and resizing (increasing subsets, the default) give
// the embedding that choosing them from the concatenation gives (the form any other order uses).
TEST(EmbeddingGraph, ChoosingChannelsPerLayerGivesTheConcatenationsChannels) {
  const std::vector<float> image = RandomImage(9);
  EmbeddingSpec inc{.layers = {"l1", "l2"}, .pool = 3, .dims = 4};
  inc.channels = {0, 2, 4, 5};  // two of l1, two of l2
  EmbeddingSpec dec = inc;
  dec.channels = {5, 4, 2, 0};  // the same channels in another order
  auto a = BuildEmbeddingGraph(TwoLayerBackbone(), inc, {3, 8, 8});
  auto b = BuildEmbeddingGraph(TwoLayerBackbone(), dec, {3, 8, 8});
  ASSERT_TRUE(a) << a.error().message;
  ASSERT_TRUE(b) << b.error().message;
  int per_layer_gathers = 0;
  for (const auto& n : a->model.graph().node()) per_layer_gathers += n.op_type() == "Gather";
  EXPECT_EQ(per_layer_gathers, 2);
  const auto ea = RunEmbedding(*a, image), eb = RunEmbedding(*b, image);
  const size_t hw = 8 * 8;
  ASSERT_EQ(ea.size(), 4 * hw);
  for (size_t k = 0; k < 4; ++k) {
    for (size_t i = 0; i < hw; ++i)
      EXPECT_FLOAT_EQ(ea[k * hw + i], eb[(3 - k) * hw + i]) << "channel " << k << " at " << i;
  }
  // A layer with no chosen channel is not pooled at all.
  EmbeddingSpec only_l2 = inc;
  only_l2.dims = 2;
  only_l2.channels = {3, 5};
  auto c = BuildEmbeddingGraph(TwoLayerBackbone(), only_l2, {3, 8, 8});
  ASSERT_TRUE(c) << c.error().message;
  int pools = 0;
  for (const auto& n : c->model.graph().node()) pools += n.op_type() == "AveragePool";
  EXPECT_EQ(pools, 1);
  const auto ec = RunEmbedding(*c, image);
  for (size_t i = 0; i < hw; ++i) EXPECT_FLOAT_EQ(ec[hw + i], ea[3 * hw + i]) << i;
}

// A reflect border gives the un-bordered embedding wherever the backbone has no spatial context to
// change (pool 1, pointwise and stride-aligned layers), the grid still covers exactly the frame,
// and at the frame's edge the pooled patch averages mirrored content instead of zeros.
TEST(EmbeddingGraph, AReflectBorderIsCroppedBackToTheFramesCells) {
  const std::vector<float> image = RandomImage(11);
  EmbeddingSpec plain{.layers = {"l1", "l2"}, .pool = 1, .dims = 6};
  EmbeddingSpec bordered = plain;
  bordered.border = 2;  // 2 cells of l1, 1 of l2 (stride 2)
  auto a = BuildEmbeddingGraph(TwoLayerBackbone(), plain, {3, 8, 8});
  auto b = BuildEmbeddingGraph(TwoLayerBackbone(), bordered, {3, 8, 8});
  ASSERT_TRUE(a) << a.error().message;
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(b->height, 8);
  EXPECT_EQ(b->width, 8);
  EXPECT_EQ(b->layer_crops, (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(b->model.graph().node(0).op_type(), "Pad");
  EXPECT_EQ(b->model.graph().input(0).name(), "image");
  const auto ea = RunEmbedding(*a, image), eb = RunEmbedding(*b, image);
  ASSERT_EQ(eb.size(), ea.size());
  for (size_t i = 0; i < ea.size(); ++i) EXPECT_FLOAT_EQ(eb[i], ea[i]) << i;

  bordered.pool = 3;
  auto c = BuildEmbeddingGraph(TwoLayerBackbone(), bordered, {3, 8, 8});
  ASSERT_TRUE(c) << c.error().message;
  const auto ec = RunEmbedding(*c, image);
  // l1 = Relu(image), channel 0, corner (0,0): rows and columns -1, 0, 1 are 1, 0, 1 mirrored.
  auto x = [&](int r, int col) { return std::max(image[static_cast<size_t>(r * 8 + col)], 0.0f); };
  const float corner = (4 * x(1, 1) + 2 * x(0, 1) + 2 * x(1, 0) + x(0, 0)) / 9;
  EXPECT_NEAR(ec[0], corner, 1e-6);
  // An inner cell sees no border: the zero-padded pool's value.
  EmbeddingSpec plain3 = plain;
  plain3.pool = 3;
  auto d = BuildEmbeddingGraph(TwoLayerBackbone(), plain3, {3, 8, 8});
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_FLOAT_EQ(ec[3 * 8 + 4], RunEmbedding(*d, image)[3 * 8 + 4]);
}

TEST(EmbeddingGraph, ABorderThatSplitsACellOrExceedsTheFrameIsRefused) {
  EmbeddingSpec odd{.layers = {"l1", "l2"}, .pool = 1, .dims = 6};
  odd.border = 1;  // half a cell of l2
  auto a = BuildEmbeddingGraph(TwoLayerBackbone(), odd, {3, 8, 8});
  ASSERT_FALSE(a);
  EXPECT_NE(a.error().message.find("layer 'l2'"), std::string::npos) << a.error().message;
  EXPECT_NE(a.error().message.find("stride"), std::string::npos) << a.error().message;
  EmbeddingSpec wide = odd;
  wide.border = 8;
  auto b = BuildEmbeddingGraph(TwoLayerBackbone(), wide, {3, 8, 8});
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().message.find("smaller than the input"), std::string::npos)
      << b.error().message;
}

TEST(EmbeddingGraph, TheBorderIsRecordedAndOlderSpecsHaveNone) {
  EmbeddingSpec s{.layers = {"l1"}, .pool = 1, .dims = 3};
  s.border = 32;
  s.channels = {0, 1, 2};
  auto back = EmbeddingSpec::FromJson(s.ToJson());
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->border, 32);
  auto j = s.ToJson();
  j.erase("border");
  auto old = EmbeddingSpec::FromJson(j);
  ASSERT_TRUE(old) << old.error().message;
  EXPECT_EQ(old->border, 0);
  j["border"] = -4;
  EXPECT_FALSE(EmbeddingSpec::FromJson(j));
}

}  // namespace
}  // namespace tend::detect
