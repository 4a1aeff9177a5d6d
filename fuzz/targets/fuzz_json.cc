// The bounded JSON parser (core/json.h) against nlohmann's own: within the limits both accept the
// same documents and build the same value; beyond them ours refuses, and what it returns is
// never deeper than allowed.
#include <nlohmann/json.hpp>
#include <vector>

#include "core/json.h"
#include "fuzz_util.h"

namespace {

constexpr int kDepth = 12;
constexpr size_t kBytes = 1 << 16;

// Array/object nesting outside strings, counted independently of both parsers.
int ScanDepth(std::string_view s) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : s) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

// Depth of a parsed value without recursion.
int ValueDepth(const nlohmann::json& j) {
  int deepest = 0;
  std::vector<std::pair<const nlohmann::json*, int>> stack{{&j, 0}};
  while (!stack.empty()) {
    auto [v, d] = stack.back();
    stack.pop_back();
    if (!v->is_structured()) continue;
    deepest = std::max(deepest, d + 1);
    for (const auto& child : *v) stack.push_back({&child, d + 1});
  }
  return deepest;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = tend::fuzz::AsText(data, size);
  tend::json::JsonProblem why;
  auto ours = tend::json::ParseJson(text, "fuzz", {kBytes, kDepth}, &why);
  if (ours) TEND_FUZZ_CHECK(ValueDepth(*ours) <= kDepth);
  if (size > kBytes) {
    TEND_FUZZ_CHECK(!ours && why == tend::json::JsonProblem::kTooLarge);
    return 0;
  }
  // nlohmann takes a NUL byte for the end of the text; ours refuses any (found by this target).
  if (text.find('\0') != std::string_view::npos) {
    TEND_FUZZ_CHECK(!ours && why == tend::json::JsonProblem::kSyntax);
    return 0;
  }
  // nlohmann's parser alone is iterative: safe at any depth as long as nothing copies the result.
  auto theirs =
      nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (theirs.is_discarded()) {
    TEND_FUZZ_CHECK(!ours);
    return 0;
  }
  if (ScanDepth(text) <= kDepth) {
    TEND_FUZZ_CHECK(ours.has_value());
    TEND_FUZZ_CHECK(*ours == theirs);
    TEND_FUZZ_CHECK(tend::json::ParseJson(ours->dump(), "fuzz", {kBytes * 8, kDepth}).has_value());
  } else {
    TEND_FUZZ_CHECK(!ours && why == tend::json::JsonProblem::kTooDeep);
  }
  return 0;
}
