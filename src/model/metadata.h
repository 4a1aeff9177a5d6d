// ONNX metadata_props (string key/value pairs stored inside the model file): read and rewritten
// through the ONNX protobuf schema, independent of ONNX Runtime. What tend stores there (name,
// version, feature spec, thresholds: the "tend.*" keys) is defined by detect/model_card.h; this
// layer moves strings and leaves every key it is not told to change untouched.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>

#include "core/status.h"

namespace onnx {
class ModelProto;
}

namespace tend::model {

Result<std::map<std::string, std::string>> ReadMetadataProps(const std::string& path);

// Copies in_path to out_path with metadata_props set to `props` (merge = true: added to/replacing
// keys of the existing ones; false: replacing all of them). Atomic: temp file + rename, so
// in_path == out_path is safe.
Status WriteMetadataProps(const std::string& in_path, const std::string& out_path,
                          const std::map<std::string, std::string>& props, bool merge = true);

// The model in `bytes` (named `name` in errors) with metadata_props set as WriteMetadataProps
// does, serialised.
Result<std::string> WithMetadataProps(std::span<const uint8_t> bytes, const std::string& name,
                                      const std::map<std::string, std::string>& props,
                                      bool merge = true);

// Parses bytes as an ONNX ModelProto and checks that it looks like a model (ir_version and a
// graph), with one-line errors naming `name`: "x.onnx: not an ONNX model (protobuf parse
// failed: truncated or not protobuf)".
Status ParseModelProto(std::span<const uint8_t> bytes, const std::string& name,
                       onnx::ModelProto& model);

}  // namespace tend::model
