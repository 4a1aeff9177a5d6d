// Bounded JSON parsing: the one way JSON from outside the process (registry metadata, model
// files, fleet payloads, state files) becomes an nlohmann::json. The size cap is checked before
// parsing, the nesting-depth cap while parsing (nlohmann's SAX interface: the parse stops at the
// first array or object too deep). nlohmann's parser is iterative, but copying, dumping or
// comparing a parsed value recurses once per level, so 80,000 nested arrays parsed without a
// limit overflow the stack later, in whatever code touches the value first.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/status.h"

namespace tend::json {

struct JsonLimits {
  size_t max_bytes = 1 << 20;
  int max_depth = 64;  // arrays and objects inside each other; a scalar alone is depth 0
};

// Why a parse failed, for callers that word the error themselves.
enum class JsonProblem { kNone, kTooLarge, kTooDeep, kSyntax };

// Parses `text` under `limits`. Errors are kCorrupt and start with `what`:
//   "<what>: 2097152 bytes of JSON, more than the 1048576 allowed"
//   "<what>: JSON nested deeper than 64 levels"
//   "<what>: not valid JSON (syntax error at byte 17)"
Result<nlohmann::json> ParseJson(std::string_view text, const std::string& what,
                                 const JsonLimits& limits = {}, JsonProblem* problem = nullptr);

}  // namespace tend::json
