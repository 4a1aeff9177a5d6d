// Shared helper for the image-head tests (patch_gaussian_test, patch_memory_test): an embedding
// graph whose "embedding" is its input, so a scoring head appended to it runs alone.
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>

#include "detect/image_graph.h"

namespace tend::detect::testing {

inline EmbeddingGraph IdentityEmbedding(int64_t d, int64_t h, int64_t w, int64_t opset = 13) {
  EmbeddingGraph eg;
  eg.dims = d;
  eg.height = h;
  eg.width = w;
  eg.model.set_ir_version(8);
  auto* op = eg.model.add_opset_import();
  op->set_domain("");
  op->set_version(opset);
  auto* g = eg.model.mutable_graph();
  g->set_name("t");
  auto* in = g->add_input();
  in->set_name("image");
  auto* t = in->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  for (int64_t v : {int64_t{1}, d, h, w}) t->mutable_shape()->add_dim()->set_dim_value(v);
  auto* n = g->add_node();
  n->set_op_type("Identity");
  n->add_input("image");
  n->add_output(kEmbeddingOutput);
  return eg;
}

}  // namespace tend::detect::testing
