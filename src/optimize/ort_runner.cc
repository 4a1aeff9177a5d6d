#include "optimize/ort_runner.h"

#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <map>

#include "optimize/onnx_util.h"

namespace tend::optimize {

namespace {

Ort::Env& Env() {
  static Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "tend-optimize");
  return env;
}

}  // namespace

struct OrtRunner::Impl {
  Ort::Session session{nullptr};
  Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
};

OrtRunner::OrtRunner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OrtRunner::~OrtRunner() = default;

Result<std::unique_ptr<OrtRunner>> OrtRunner::Create(const std::string& model_bytes,
                                                     const std::string& name,
                                                     const OrtRunnerOptions& options) {
  try {
    Ort::SessionOptions so;
    so.SetIntraOpNumThreads(std::max(1, options.threads));
    so.SetInterOpNumThreads(1);
    so.SetExecutionMode(ORT_SEQUENTIAL);
    so.SetGraphOptimizationLevel(options.full_optimization
                                     ? GraphOptimizationLevel::ORT_ENABLE_ALL
                                     : GraphOptimizationLevel::ORT_ENABLE_BASIC);
    if (!options.optimized_model_path.empty()) {
      so.SetOptimizedModelFilePath(options.optimized_model_path.c_str());
    }
    auto impl = std::make_unique<Impl>();
    impl->session = Ort::Session(Env(), model_bytes.data(), model_bytes.size(), so);
    std::unique_ptr<OrtRunner> r(new OrtRunner(std::move(impl)));
    r->name_ = name;
    Ort::AllocatorWithDefaultOptions alloc;
    auto& s = r->impl_->session;
    for (size_t i = 0; i < s.GetInputCount(); ++i) {
      r->input_names_.push_back(s.GetInputNameAllocated(i, alloc).get());
      auto info = s.GetInputTypeInfo(i);
      if (info.GetONNXType() != ONNX_TYPE_TENSOR) {
        r->input_shapes_.push_back({});
        r->input_float_.push_back(false);
        continue;
      }
      auto t = info.GetTensorTypeAndShapeInfo();
      r->input_shapes_.push_back(t.GetShape());
      r->input_float_.push_back(t.GetElementType() == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
    }
    for (size_t i = 0; i < s.GetOutputCount(); ++i) {
      r->output_names_.push_back(s.GetOutputNameAllocated(i, alloc).get());
    }
    return r;
  } catch (const Ort::Exception& e) {
    return Fail(
        Error::Model(name + ": ONNX Runtime cannot load the model: " + OneLine(e.what(), 400)));
  }
}

Result<std::vector<OrtTensor>> OrtRunner::Run(std::span<const float> input,
                                              const std::vector<int64_t>& shape,
                                              const std::vector<std::string>& outputs) {
  if (input_names_.size() != 1) {
    return Fail(Error::Unsupported(name_ + ": model has " + std::to_string(input_names_.size()) +
                                   " inputs; only single-input models are supported here"));
  }
  const std::vector<std::string>& want = outputs.empty() ? output_names_ : outputs;
  try {
    // ORT takes a non-const pointer but does not write inputs.
    Ort::Value in = Ort::Value::CreateTensor<float>(impl_->memory, const_cast<float*>(input.data()),
                                                    input.size(), shape.data(), shape.size());
    const char* in_name = input_names_[0].c_str();
    std::vector<const char*> out_names;
    out_names.reserve(want.size());
    for (const auto& n : want) out_names.push_back(n.c_str());
    auto values = impl_->session.Run(Ort::RunOptions{nullptr}, &in_name, &in, 1, out_names.data(),
                                     out_names.size());
    std::vector<OrtTensor> result;
    result.reserve(values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      if (!values[i].IsTensor()) continue;
      auto info = values[i].GetTensorTypeAndShapeInfo();
      if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) continue;
      OrtTensor t;
      t.name = want[i];
      t.shape = info.GetShape();
      const float* p = values[i].GetTensorData<float>();
      t.data.assign(p, p + info.GetElementCount());
      result.push_back(std::move(t));
    }
    return result;
  } catch (const Ort::Exception& e) {
    return Fail(Error::Model(name_ + ": run failed: " + OneLine(e.what(), 400)));
  }
}

}  // namespace tend::optimize
