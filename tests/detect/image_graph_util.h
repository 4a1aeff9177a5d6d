// Shared helpers for the image-graph tests (patch_gaussian_test, patch_memory_test): an embedding
// graph whose "embedding" is its input, so a scoring head appended to it runs alone; and one ONNX
// Runtime run of such a graph.
#pragma once

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>
#include <onnxruntime_cxx_api.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

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

// Runs `model` on one thread with `input` as its "image" [shape] and returns each named float
// output, flattened.
inline std::vector<std::vector<float>> RunGraph(const onnx::ModelProto& model,
                                                std::vector<float> input,
                                                std::array<int64_t, 4> shape,
                                                const std::vector<const char*>& outputs) {
  std::string bytes;
  EXPECT_TRUE(model.SerializeToString(&bytes));
  static Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "detect_test");
  Ort::SessionOptions so;
  so.SetIntraOpNumThreads(1);
  Ort::Session session(env, bytes.data(), bytes.size(), so);
  auto mem = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  Ort::Value in =
      Ort::Value::CreateTensor<float>(mem, input.data(), input.size(), shape.data(), shape.size());
  const char* in_names[] = {"image"};
  auto res =
      session.Run(Ort::RunOptions{nullptr}, in_names, &in, 1, outputs.data(), outputs.size());
  std::vector<std::vector<float>> out;
  for (auto& v : res) {
    const float* d = v.GetTensorData<float>();
    out.emplace_back(d, d + v.GetTensorTypeAndShapeInfo().GetElementCount());
  }
  return out;
}

}  // namespace tend::detect::testing
