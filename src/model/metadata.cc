#include "model/metadata.h"

#include <onnx/onnx_pb.h>

#include <limits>
#include <vector>

#include "core/fs.h"

namespace tend::model {

Status ParseModelProto(std::span<const uint8_t> bytes, const std::string& name,
                       onnx::ModelProto& model) {
  if (bytes.empty()) return Fail(Error::Corrupt(name + ": not an ONNX model (empty file)"));
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return Fail(Error::Unsupported(
        name + ": model larger than 2 GiB (external data is not supported here)"));
  }
  // protobuf reports problems through its own logger and return values, never exceptions with
  // the default build, but be defensive at the module edge anyway.
  bool ok = false;
  try {
    ok = model.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
  } catch (const std::exception& e) {
    return Fail(Error::Corrupt(name + ": not an ONNX model (" + e.what() + ")"));
  }
  if (!ok) {
    return Fail(Error::Corrupt(
        name + ": not an ONNX model (protobuf parse failed: truncated or not protobuf)"));
  }
  if (model.ir_version() <= 0 || !model.has_graph()) {
    return Fail(Error::Corrupt(name + ": not an ONNX model (no ir_version or graph)"));
  }
  return Ok();
}

namespace {

Result<onnx::ModelProto> LoadProto(const std::string& path) {
  TEND_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, fs::ReadBinaryFile(path));
  onnx::ModelProto model;
  TEND_RETURN_NOT_OK(ParseModelProto(bytes, path, model));
  return model;
}

}  // namespace

Result<std::map<std::string, std::string>> ReadMetadataProps(const std::string& path) {
  TEND_ASSIGN_OR_RETURN(onnx::ModelProto model, LoadProto(path));
  std::map<std::string, std::string> props;
  for (const auto& p : model.metadata_props()) props[p.key()] = p.value();
  return props;
}

Result<std::string> WithMetadataProps(std::span<const uint8_t> bytes, const std::string& name,
                                      const std::map<std::string, std::string>& props, bool merge) {
  for (const auto& [k, v] : props) {
    if (k.empty()) return Fail(Error::Invalid("metadata for " + name + ": empty key"));
  }
  onnx::ModelProto model;
  TEND_RETURN_NOT_OK(ParseModelProto(bytes, name, model));
  std::map<std::string, std::string> merged;
  if (merge) {
    for (const auto& p : model.metadata_props()) merged[p.key()] = p.value();
  }
  for (const auto& [k, v] : props) merged[k] = v;
  model.clear_metadata_props();
  for (const auto& [k, v] : merged) {
    auto* entry = model.add_metadata_props();
    entry->set_key(k);
    entry->set_value(v);
  }
  std::string out;
  bool ok = false;
  try {
    ok = model.SerializeToString(&out);
  } catch (const std::exception& e) {
    return Fail(Error::Internal("serialize " + name + ": " + e.what()));
  }
  if (!ok) return Fail(Error::Internal("serialize " + name + ": protobuf serialization failed"));
  return out;
}

Status WriteMetadataProps(const std::string& in_path, const std::string& out_path,
                          const std::map<std::string, std::string>& props, bool merge) {
  TEND_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, fs::ReadBinaryFile(in_path));
  TEND_ASSIGN_OR_RETURN(std::string out, WithMetadataProps(bytes, out_path, props, merge));
  return fs::WriteFileAtomic(out_path, out);
}

}  // namespace tend::model
