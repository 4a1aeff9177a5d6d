#include "model/session.h"

#include <fmt/format.h>
#include <onnx/onnx_pb.h>
#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <cassert>
#include <cctype>
#include <charconv>
#include <limits>
#include <unordered_map>

#include "core/fs.h"
#include "core/log.h"
#include "model/metadata.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

namespace tend::model {
namespace {

constexpr char kTensorRt[] = "TensorrtExecutionProvider";
constexpr char kCuda[] = "CUDAExecutionProvider";
constexpr char kOpenVino[] = "OpenVINOExecutionProvider";
constexpr char kCpu[] = "CPUExecutionProvider";

// A tensor larger than this is a typo in a shape, not a model input.
constexpr int64_t kMaxElements = int64_t{1} << 31;

// ONNX Runtime messages may span lines; tend's errors are one line.
std::string OneLine(const char* text) {
  std::string out;
  bool space = false;
  for (const char* p = text; *p != '\0'; ++p) {
    unsigned char c = static_cast<unsigned char>(*p);
    if (std::isspace(c)) {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(static_cast<char>(c));
  }
  return out;
}

Error OrtError(const std::string& context, const Ort::Exception& e) {
  return Error::Model(context + ": " + OneLine(e.what()));
}

// ONNX Runtime's own log goes through spdlog so it honours --log-json and --log-level. Its INFO
// is per-node chatter, so one level down.
void OrtLog(void*, OrtLoggingLevel severity, const char* category, const char*, const char*,
            const char* message) {
  switch (severity) {
    case ORT_LOGGING_LEVEL_VERBOSE:
      TEND_LOG_TRACE("onnxruntime [{}]: {}", category, message);
      break;
    case ORT_LOGGING_LEVEL_INFO:
      TEND_LOG_DEBUG("onnxruntime [{}]: {}", category, message);
      break;
    case ORT_LOGGING_LEVEL_WARNING:
      TEND_LOG_WARN("onnxruntime [{}]: {}", category, message);
      break;
    case ORT_LOGGING_LEVEL_ERROR:
    case ORT_LOGGING_LEVEL_FATAL:
      TEND_LOG_ERROR("onnxruntime [{}]: {}", category, message);
      break;
  }
}

// One Ort::Env per process (ONNX Runtime requires it to outlive every session); created on first
// use rather than as a global with a constructor.
Result<Ort::Env*> SharedEnv() {
#if defined(__SANITIZE_ADDRESS__)
  // ONNX Runtime's CreateEnv leaks one 14-byte block per process inside the library (a bare
  // Ort::Env shows it too); without this every sanitizer test that loads a model would fail.
  __lsan::ScopedDisabler ignore_ort_env_leak;
#endif
  try {
    static Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "tend", OrtLog, nullptr);
    return &env;
  } catch (const Ort::Exception& e) {
    return Fail(OrtError("create ONNX Runtime environment", e));
  }
}

ElementType FromOrt(ONNXTensorElementDataType t) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT:
      return ElementType::kFloat;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
      return ElementType::kFloat16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE:
      return ElementType::kDouble;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8:
      return ElementType::kInt8;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8:
      return ElementType::kUInt8;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32:
      return ElementType::kInt32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64:
      return ElementType::kInt64;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL:
      return ElementType::kBool;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING:
      return ElementType::kString;
    default:
      return ElementType::kOther;
  }
}

ONNXTensorElementDataType ToOrt(ElementType t) {
  switch (t) {
    case ElementType::kFloat:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    case ElementType::kFloat16:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
    case ElementType::kDouble:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE;
    case ElementType::kInt8:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
    case ElementType::kUInt8:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
    case ElementType::kInt32:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
    case ElementType::kInt64:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
    case ElementType::kBool:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL;
    case ElementType::kString:
      return ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING;
    case ElementType::kOther:
      break;
  }
  return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Element count of a fully specified shape; error when a dim is not positive or it overflows.
Result<size_t> ElementCount(const std::vector<int64_t>& shape, const std::string& what) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return Fail(Error::Invalid(what + " has an unresolved dim " + ShapeToString(shape)));
    if (d != 0 && n > kMaxElements / d) {
      return Fail(Error::Invalid(what + " shape " + ShapeToString(shape) + " is too large"));
    }
    n *= d;
  }
  return static_cast<size_t>(n);
}

void ConfigureBase(Ort::SessionOptions& so, const SessionOptions& options) {
  so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
  so.SetIntraOpNumThreads(options.intra_op_threads);
  so.SetInterOpNumThreads(options.inter_op_threads);
  so.SetExecutionMode(options.sequential ? ExecutionMode::ORT_SEQUENTIAL
                                         : ExecutionMode::ORT_PARALLEL);
}

std::string TrtCacheDir(const SessionOptions& options) {
  if (!options.trt_engine_cache_dir.empty()) return options.trt_engine_cache_dir;
  if (!options.state_dir.empty()) return options.state_dir + "/trt-cache";
  return {};
}

// Throws Ort::Exception when the provider cannot be registered (e.g. CUDA libraries missing).
void AppendProvider(Ort::SessionOptions& so, const std::string& provider,
                    const SessionOptions& options) {
  std::string device = std::to_string(options.cuda_device);
  if (provider == kTensorRt) {
    std::unordered_map<std::string, std::string> opts = {
        {"device_id", device},
        {"trt_fp16_enable", options.trt_fp16 ? "1" : "0"},
        {"trt_int8_enable", options.trt_int8 ? "1" : "0"},
    };
    std::string cache = TrtCacheDir(options);
    if (!cache.empty()) {
      if (auto st = fs::MakeDirs(cache); !st) {
        TEND_LOG_WARN("TensorRT engine cache disabled: {}", st.error().message);
      } else {
        opts["trt_engine_cache_enable"] = "1";
        opts["trt_engine_cache_path"] = cache;
        opts["trt_timing_cache_enable"] = "1";
        opts["trt_timing_cache_path"] = cache;
      }
    } else {
      TEND_LOG_INFO(
          "TensorRT engine cache off (no state directory): engines rebuild on every load");
    }
    if (!options.trt_int8_calibration_table.empty()) {
      opts["trt_int8_calibration_table_name"] = options.trt_int8_calibration_table;
    }
    Ort::TensorRTProviderOptions trt;
    trt.Update(opts);
    so.AppendExecutionProvider_TensorRT_V2(*trt);
  } else if (provider == kCuda) {
    Ort::CUDAProviderOptions cuda;
    cuda.Update({{"device_id", device}});
    so.AppendExecutionProvider_CUDA_V2(*cuda);
  } else if (provider == kOpenVino) {
    so.AppendExecutionProvider_OpenVINO_V2({});
  }
}

TensorInfo ReadTensorInfo(const std::string& name, const Ort::TypeInfo& type_info) {
  TensorInfo info;
  info.name = name;
  if (type_info.GetONNXType() != ONNX_TYPE_TENSOR) return info;  // sequence/map: kOther, no shape
  auto tensor = type_info.GetTensorTypeAndShapeInfo();
  info.type = FromOrt(tensor.GetElementType());
  info.shape = tensor.GetShape();
  std::vector<const char*> symbolic = tensor.GetSymbolicDimensions();
  info.dim_names.resize(info.shape.size());
  for (size_t d = 0; d < info.shape.size(); ++d) {
    if (info.shape[d] < 0) {
      info.shape[d] = -1;
      if (d < symbolic.size() && symbolic[d] != nullptr) info.dim_names[d] = symbolic[d];
    }
  }
  return info;
}

std::map<std::string, std::string> ProtoMetadata(const onnx::ModelProto& m) {
  std::map<std::string, std::string> md;
  for (const auto& p : m.metadata_props()) md[p.key()] = p.value();
  auto put = [&md](const char* key, const std::string& value) {
    if (!value.empty()) md[key] = value;
  };
  put("onnx.producer_name", m.producer_name());
  put("onnx.producer_version", m.producer_version());
  put("onnx.ir_version", std::to_string(m.ir_version()));
  for (const auto& op : m.opset_import()) {
    if (op.domain().empty() || op.domain() == "ai.onnx") {
      put("onnx.opset", std::to_string(op.version()));
    }
  }
  put("onnx.graph_name", m.graph().name());
  put("onnx.domain", m.domain());
  if (m.model_version() != 0) put("onnx.model_version", std::to_string(m.model_version()));
  put("onnx.doc_string", m.doc_string());
  return md;
}

}  // namespace

const char* ElementTypeName(ElementType type) {
  switch (type) {
    case ElementType::kFloat:
      return "float32";
    case ElementType::kFloat16:
      return "float16";
    case ElementType::kDouble:
      return "float64";
    case ElementType::kInt8:
      return "int8";
    case ElementType::kUInt8:
      return "uint8";
    case ElementType::kInt32:
      return "int32";
    case ElementType::kInt64:
      return "int64";
    case ElementType::kBool:
      return "bool";
    case ElementType::kString:
      return "string";
    case ElementType::kOther:
      break;
  }
  return "non-tensor/other";
}

size_t ElementSize(ElementType type) {
  switch (type) {
    case ElementType::kFloat:
      return 4;
    case ElementType::kFloat16:
      return 2;
    case ElementType::kDouble:
      return 8;
    case ElementType::kInt8:
      return 1;
    case ElementType::kUInt8:
      return 1;
    case ElementType::kInt32:
      return 4;
    case ElementType::kInt64:
      return 8;
    case ElementType::kBool:
      return 1;
    case ElementType::kString:
    case ElementType::kOther:
      break;
  }
  return 0;
}

std::string ShapeToString(std::span<const int64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ",";
    s += shape[i] < 0 ? "?" : std::to_string(shape[i]);
  }
  return s + "]";
}

std::string TensorInfo::ToString() const {
  std::string s = name + ": " + ElementTypeName(type) + " [";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ",";
    if (shape[i] >= 0) {
      s += std::to_string(shape[i]);
    } else {
      s += (i < dim_names.size() && !dim_names[i].empty()) ? dim_names[i] : "?";
    }
  }
  return s + "]";
}

Result<std::vector<int64_t>> ParseShape(const std::string& text) {
  std::vector<int64_t> shape;
  size_t pos = 0;
  if (text.empty()) return Fail(Error::Invalid("empty shape (expected e.g. 1x60x14)"));
  while (pos <= text.size()) {
    size_t end = text.find_first_of("x,", pos);
    if (end == std::string::npos) end = text.size();
    std::string_view part(text.data() + pos, end - pos);
    int64_t d = 0;
    auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), d);
    if (part.empty() || ec != std::errc() || ptr != part.data() + part.size() || d <= 0) {
      return Fail(Error::Invalid("shape '" + text + "': '" + std::string(part) +
                                 "' is not a positive integer (expected e.g. 1x60x14)"));
    }
    shape.push_back(d);
    pos = end + 1;
  }
  return shape;
}

std::vector<std::string> AvailableProviders() {
  try {
    return Ort::GetAvailableProviders();
  } catch (const Ort::Exception& e) {
    TEND_LOG_WARN("listing ONNX Runtime providers failed: {}", OneLine(e.what()));
    return {kCpu};
  }
}

Result<std::string> CanonicalProviderName(const std::string& name) {
  std::string n = Lower(name);
  if (n == "tensorrt" || n == "trt" || n == Lower(kTensorRt)) return std::string(kTensorRt);
  if (n == "cuda" || n == Lower(kCuda)) return std::string(kCuda);
  if (n == "openvino" || n == Lower(kOpenVino)) return std::string(kOpenVino);
  if (n == "cpu" || n == Lower(kCpu)) return std::string(kCpu);
  return Fail(Error::Invalid("unknown execution provider '" + name +
                             "' (expected tensorrt, cuda, openvino or cpu)"));
}

// Everything that touches ONNX Runtime types stays here, out of the header.
struct Session::Impl {
  Ort::Session session{nullptr};
  Ort::MemoryInfo memory{nullptr};
  Ort::RunOptions run_options{nullptr};
  std::vector<std::string> input_names, output_names;
  std::vector<const char*> input_name_ptrs, output_name_ptrs;
  std::vector<std::vector<float>> input_buffers;
  std::vector<std::unique_ptr<std::byte[]>> output_buffers;
  std::vector<size_t> output_bytes;
  std::vector<std::vector<int64_t>> input_shapes, output_shapes;
  std::vector<Ort::Value> input_values, output_values;
};

Session::Session(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Session::~Session() = default;

Result<std::unique_ptr<Session>> Session::LoadFile(const std::string& path,
                                                   const SessionOptions& options) {
  auto bytes = fs::ReadBinaryFile(path);
  if (!bytes) return Fail(bytes.error().Wrap("load model"));
  return Create(*bytes, path, path, options);
}

Result<std::unique_ptr<Session>> Session::LoadBytes(std::span<const uint8_t> bytes,
                                                    const SessionOptions& options,
                                                    std::string name) {
  return Create(bytes, /*path=*/"", std::move(name), options);
}

Result<std::unique_ptr<Session>> Session::Create(std::span<const uint8_t> bytes,
                                                 const std::string& path, std::string name,
                                                 const SessionOptions& options) {
  if (options.intra_op_threads < 0 || options.inter_op_threads < 0) {
    return Fail(
        Error::Invalid(fmt::format("session options: thread counts must be >= 0 (got "
                                   "intra_op_threads={}, inter_op_threads={})",
                                   options.intra_op_threads, options.inter_op_threads)));
  }
  if (options.cuda_device < 0) {
    return Fail(Error::Invalid(
        fmt::format("session options: cuda_device must be >= 0, got {}", options.cuda_device)));
  }
  // Providers in preference order, up to CPU (which ONNX Runtime always keeps as the fallback).
  std::vector<std::string> wanted;
  for (const auto& p : options.providers) {
    TEND_ASSIGN_OR_RETURN(std::string canonical, CanonicalProviderName(p));
    if (std::find(wanted.begin(), wanted.end(), canonical) == wanted.end()) {
      wanted.push_back(canonical);
    }
  }
  std::vector<std::string> available = AvailableProviders();
  std::vector<std::string> candidates;
  for (const auto& p : wanted) {
    if (p == kCpu) break;
    if (std::find(available.begin(), available.end(), p) == available.end()) {
      TEND_LOG_DEBUG("{}: execution provider {} not available in this ONNX Runtime build", name, p);
      continue;
    }
    candidates.push_back(p);
  }

  // Our own parse first: clean errors for files that are not ONNX, and the metadata.
  onnx::ModelProto proto;
  TEND_RETURN_NOT_OK(ParseModelProto(bytes, name, proto));
  auto metadata = ProtoMetadata(proto);
  proto.Clear();

  TEND_ASSIGN_OR_RETURN(Ort::Env * env, SharedEnv());
  auto impl = std::make_unique<Impl>();
  std::string chosen;
  for (;;) {
    try {
      Ort::SessionOptions so;
      ConfigureBase(so, options);
      std::vector<std::string> registered;
      for (const auto& p : candidates) {
        try {
          AppendProvider(so, p, options);
          registered.push_back(p);
        } catch (const Ort::Exception& e) {
          TEND_LOG_WARN("{}: execution provider {} failed to register, skipping: {}", name, p,
                        OneLine(e.what()));
        }
      }
      candidates = registered;
      chosen = candidates.empty() ? kCpu : candidates.front();
      if (!path.empty()) {
        impl->session = Ort::Session(*env, path.c_str(), so);
      } else {
        impl->session = Ort::Session(*env, bytes.data(), bytes.size(), so);
      }
      break;
    } catch (const Ort::Exception& e) {
      if (candidates.empty()) return Fail(OrtError(name + ": cannot load model", e));
      TEND_LOG_WARN("{}: session with {} failed, falling back: {}", name, chosen,
                    OneLine(e.what()));
      candidates.erase(candidates.begin());
    }
  }

  auto session = std::unique_ptr<Session>(new Session(std::move(impl)));
  session->name_ = std::move(name);
  session->provider_ = chosen;
  session->metadata_ = std::move(metadata);
  TEND_RETURN_NOT_OK(session->ReadIo());
  TEND_LOG_INFO("{}: execution provider {} (available: {})", session->name_, chosen,
                fmt::join(available, ", "));
  return session;
}

Status Session::ReadIo() {
  try {
    Ort::AllocatorWithDefaultOptions alloc;
    auto& s = impl_->session;
    for (size_t i = 0; i < s.GetInputCount(); ++i) {
      auto n = s.GetInputNameAllocated(i, alloc);
      inputs_.push_back(ReadTensorInfo(n.get(), s.GetInputTypeInfo(i)));
    }
    for (size_t i = 0; i < s.GetOutputCount(); ++i) {
      auto n = s.GetOutputNameAllocated(i, alloc);
      outputs_.push_back(ReadTensorInfo(n.get(), s.GetOutputTypeInfo(i)));
    }
    impl_->memory = Ort::MemoryInfo::CreateCpu(OrtDeviceAllocator, OrtMemTypeCPU);
    impl_->run_options = Ort::RunOptions();
  } catch (const Ort::Exception& e) {
    return Fail(OrtError(name_ + ": reading inputs/outputs", e));
  }
  for (const auto& t : inputs_) impl_->input_names.push_back(t.name);
  for (const auto& t : outputs_) impl_->output_names.push_back(t.name);
  for (const auto& n : impl_->input_names) impl_->input_name_ptrs.push_back(n.c_str());
  for (const auto& n : impl_->output_names) impl_->output_name_ptrs.push_back(n.c_str());
  return Ok();
}

Status Session::Prepare(const std::vector<std::vector<int64_t>>& input_shapes) {
  prepared_ = false;
  Impl& m = *impl_;
  std::vector<std::vector<int64_t>> shapes = input_shapes;
  if (shapes.empty()) {
    for (const auto& t : inputs_) {
      std::vector<int64_t> s = t.shape;
      for (auto& d : s) d = d < 0 ? 1 : d;
      shapes.push_back(std::move(s));
    }
  }
  if (shapes.size() != inputs_.size()) {
    return Fail(Error::Invalid(fmt::format("{}: model has {} input(s), got {} shape(s)", name_,
                                           inputs_.size(), shapes.size())));
  }
  for (size_t i = 0; i < inputs_.size(); ++i) {
    const TensorInfo& t = inputs_[i];
    const auto& got = shapes[i];
    if (t.type != ElementType::kFloat) {
      return Fail(Error::Unsupported(
          fmt::format("{}: input '{}' has element type {}; only float32 inputs are supported",
                      name_, t.name, ElementTypeName(t.type))));
    }
    if (got.size() != t.shape.size()) {
      return Fail(Error::Invalid(fmt::format("{}: input '{}' expects rank {} {}, got rank {} {}",
                                             name_, t.name, t.shape.size(), ShapeToString(t.shape),
                                             got.size(), ShapeToString(got))));
    }
    for (size_t d = 0; d < got.size(); ++d) {
      if (got[d] <= 0) {
        return Fail(Error::Invalid(fmt::format("{}: input '{}' dim {} must be positive, got {}",
                                               name_, t.name, d, ShapeToString(got))));
      }
      if (t.shape[d] >= 0 && t.shape[d] != got[d]) {
        return Fail(Error::Invalid(
            fmt::format("{}: input '{}' dim {} must be {} (model shape {}), got {}", name_, t.name,
                        d, t.shape[d], ShapeToString(t.shape), ShapeToString(got))));
      }
    }
  }
  for (const auto& t : outputs_) {
    if (ElementSize(t.type) == 0) {
      return Fail(Error::Unsupported(
          fmt::format("{}: output '{}' has element type {}; only numeric tensors are supported",
                      name_, t.name, ElementTypeName(t.type))));
    }
  }

  m.input_values.clear();
  m.output_values.clear();
  m.input_buffers.assign(inputs_.size(), {});
  m.input_shapes = shapes;
  try {
    for (size_t i = 0; i < inputs_.size(); ++i) {
      TEND_ASSIGN_OR_RETURN(size_t count,
                            ElementCount(shapes[i], name_ + ": input '" + inputs_[i].name + "'"));
      m.input_buffers[i].assign(count, 0.0f);
      m.input_values.push_back(Ort::Value::CreateTensor<float>(m.memory, m.input_buffers[i].data(),
                                                               count, m.input_shapes[i].data(),
                                                               m.input_shapes[i].size()));
    }

    // Output shapes: static ones from the model; when any is dynamic, one run tells.
    m.output_shapes.clear();
    bool dynamic = false;
    for (const auto& t : outputs_) {
      m.output_shapes.push_back(t.shape);
      dynamic |= std::any_of(t.shape.begin(), t.shape.end(), [](int64_t d) { return d < 0; });
    }
    if (dynamic) {
      auto probe = m.session.Run(m.run_options, m.input_name_ptrs.data(), m.input_values.data(),
                                 m.input_values.size(), m.output_name_ptrs.data(),
                                 m.output_name_ptrs.size());
      for (size_t o = 0; o < probe.size(); ++o) {
        if (!probe[o].IsTensor()) {
          return Fail(Error::Unsupported(
              fmt::format("{}: output '{}' is not a tensor", name_, outputs_[o].name)));
        }
        m.output_shapes[o] = probe[o].GetTensorTypeAndShapeInfo().GetShape();
      }
    }

    m.output_buffers.clear();
    m.output_bytes.clear();
    for (size_t o = 0; o < outputs_.size(); ++o) {
      TEND_ASSIGN_OR_RETURN(
          size_t count,
          ElementCount(m.output_shapes[o], name_ + ": output '" + outputs_[o].name + "'"));
      size_t bytes = count * ElementSize(outputs_[o].type);
      m.output_buffers.push_back(std::make_unique<std::byte[]>(bytes));
      m.output_bytes.push_back(bytes);
      m.output_values.push_back(Ort::Value::CreateTensor(
          m.memory, m.output_buffers.back().get(), bytes, m.output_shapes[o].data(),
          m.output_shapes[o].size(), ToOrt(outputs_[o].type)));
    }
  } catch (const Ort::Exception& e) {
    return Fail(OrtError(name_ + ": prepare", e));
  }
  prepared_ = true;
  return Ok();
}

std::span<float> Session::input(size_t i) {
  assert(prepared_ && i < impl_->input_buffers.size());
  return impl_->input_buffers[i];
}

std::span<const float> Session::output(size_t i) const {
  assert(prepared_ && i < impl_->output_buffers.size());
  assert(outputs_[i].type == ElementType::kFloat);
  return {reinterpret_cast<const float*>(impl_->output_buffers[i].get()),
          impl_->output_bytes[i] / sizeof(float)};
}

std::span<const std::byte> Session::output_bytes(size_t i) const {
  assert(prepared_ && i < impl_->output_buffers.size());
  return {impl_->output_buffers[i].get(), impl_->output_bytes[i]};
}

const std::vector<int64_t>& Session::input_shape(size_t i) const {
  assert(prepared_ && i < impl_->input_shapes.size());
  return impl_->input_shapes[i];
}

const std::vector<int64_t>& Session::output_shape(size_t i) const {
  assert(prepared_ && i < impl_->output_shapes.size());
  return impl_->output_shapes[i];
}

Status Session::Run() {
  if (!prepared_) return Fail(Error::Invalid(name_ + ": Run() before Prepare()"));
  Impl& m = *impl_;
  try {
    m.session.Run(m.run_options, m.input_name_ptrs.data(), m.input_values.data(),
                  m.input_values.size(), m.output_name_ptrs.data(), m.output_values.data(),
                  m.output_values.size());
  } catch (const Ort::Exception& e) {
    return Fail(OrtError(name_ + ": run", e));
  }
  return Ok();
}

Status Session::Warmup(int runs) {
  if (runs < 0) return Fail(Error::Invalid(fmt::format("warm-up runs must be >= 0, got {}", runs)));
  for (int i = 0; i < runs; ++i) TEND_RETURN_NOT_OK(Run());
  return Ok();
}

}  // namespace tend::model
