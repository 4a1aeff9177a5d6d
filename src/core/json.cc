#include "core/json.h"

namespace tend::json {
namespace {

using nlohmann::json;

// nlohmann's DOM builder behind a depth gate: returning false from start_object/start_array
// stops the parser there, before anything deeper is built.
class BoundedSax {
 public:
  BoundedSax(json& root, int max_depth) : dom_(root, /*allow_exceptions=*/false), max_(max_depth) {}

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(json::number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(json::number_float_t v, const json::string_t& s) {
    return dom_.number_float(v, s);
  }
  bool string(json::string_t& v) { return dom_.string(v); }
  bool binary(json::binary_t& v) { return dom_.binary(v); }
  bool key(json::string_t& v) { return dom_.key(v); }
  bool start_object(std::size_t n) { return Deeper() && dom_.start_object(n); }
  bool start_array(std::size_t n) { return Deeper() && dom_.start_array(n); }
  bool end_object() {
    --depth_;
    return dom_.end_object();
  }
  bool end_array() {
    --depth_;
    return dom_.end_array();
  }
  template <class Exception>
  bool parse_error(std::size_t position, const std::string& token, const Exception& e) {
    error_at_ = position;
    return dom_.parse_error(position, token, e);
  }

  bool too_deep() const { return too_deep_; }
  size_t error_at() const { return error_at_; }

 private:
  bool Deeper() {
    if (++depth_ <= max_) return true;
    too_deep_ = true;
    return false;
  }

  nlohmann::detail::json_sax_dom_parser<json> dom_;
  int max_;
  int depth_ = 0;
  bool too_deep_ = false;
  size_t error_at_ = 0;
};

}  // namespace

Result<json> ParseJson(std::string_view text, const std::string& what, const JsonLimits& limits,
                       JsonProblem* problem) {
  JsonProblem unused;
  JsonProblem& why = problem ? *problem : unused;
  why = JsonProblem::kNone;
  if (text.size() > limits.max_bytes) {
    why = JsonProblem::kTooLarge;
    return Fail(Error::Corrupt(what + ": " + std::to_string(text.size()) +
                               " bytes of JSON, more than the " + std::to_string(limits.max_bytes) +
                               " allowed"));
  }
  // nlohmann stops at a NUL byte as if the text ended there ("8\0<anything>" parses as 8). JSON
  // text never holds a raw NUL (control characters in strings must be escaped): refuse it, so
  // nothing can hide behind one.
  if (const size_t nul = text.find('\0'); nul != std::string_view::npos) {
    why = JsonProblem::kSyntax;
    return Fail(
        Error::Corrupt(what + ": not valid JSON (NUL byte at byte " + std::to_string(nul) + ")"));
  }
  json out;
  BoundedSax sax(out, limits.max_depth);
  const bool ok = json::sax_parse(text.begin(), text.end(), &sax, json::input_format_t::json,
                                  /*strict=*/true, /*ignore_comments=*/false);
  if (sax.too_deep()) {
    why = JsonProblem::kTooDeep;
    return Fail(Error::Corrupt(what + ": JSON nested deeper than " +
                               std::to_string(limits.max_depth) + " levels"));
  }
  if (!ok) {
    why = JsonProblem::kSyntax;
    return Fail(Error::Corrupt(what + ": not valid JSON (syntax error at byte " +
                               std::to_string(sax.error_at()) + ")"));
  }
  return out;
}

}  // namespace tend::json
