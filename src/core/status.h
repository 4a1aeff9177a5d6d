// Errors as values. Every fallible function at a module boundary returns Status or Result<T>;
// exceptions from third-party libraries are caught at the edge of the module that uses them.
#pragma once

#include <string>
#include <utility>

#include <tl/expected.hpp>

namespace tend {

enum class ErrorCode {
  kInvalidArgument,  // bad user input: flags, config, data values
  kNotFound,         // a file, key or resource that is not there
  kIoError,          // the OS said no: open/read/write/fsync failed
  kCorrupt,          // data that does not parse or fails its checksum
  kUnsupported,      // valid but not handled (an encoding, an op, a provider)
  kModelError,       // ONNX Runtime or model contract problems
  kTimeout,          // a deadline passed
  kSecurity,         // signature, hash or trust failures
  kInternal,         // a bug: should not be reachable from user input
};

const char* ErrorCodeName(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;

  // "what went wrong: context" one-liners, e.g. Error::Io("open a.wav: No such file").
  static Error Invalid(std::string m) { return {ErrorCode::kInvalidArgument, std::move(m)}; }
  static Error NotFound(std::string m) { return {ErrorCode::kNotFound, std::move(m)}; }
  static Error Io(std::string m) { return {ErrorCode::kIoError, std::move(m)}; }
  static Error Corrupt(std::string m) { return {ErrorCode::kCorrupt, std::move(m)}; }
  static Error Unsupported(std::string m) { return {ErrorCode::kUnsupported, std::move(m)}; }
  static Error Model(std::string m) { return {ErrorCode::kModelError, std::move(m)}; }
  static Error Timeout(std::string m) { return {ErrorCode::kTimeout, std::move(m)}; }
  static Error Security(std::string m) { return {ErrorCode::kSecurity, std::move(m)}; }
  static Error Internal(std::string m) { return {ErrorCode::kInternal, std::move(m)}; }

  // Prefix context: err.Wrap("reading model") -> "reading model: <message>".
  Error Wrap(const std::string& context) const { return {code, context + ": " + message}; }
};

template <typename T>
using Result = tl::expected<T, Error>;
using Status = tl::expected<void, Error>;

inline Status Ok() { return {}; }
inline tl::unexpected<Error> Fail(Error e) { return tl::unexpected<Error>(std::move(e)); }

}  // namespace tend

#define TEND_CONCAT_INNER(a, b) a##b
#define TEND_CONCAT(a, b) TEND_CONCAT_INNER(a, b)

// Return the error of a Status/Result expression from the enclosing function.
#define TEND_RETURN_NOT_OK(expr)                                    \
  do {                                                              \
    auto&& _tend_st = (expr);                                       \
    if (!_tend_st) return ::tend::Fail(std::move(_tend_st).error()); \
  } while (0)

// `TEND_ASSIGN_OR_RETURN(auto x, MakeX());` binds the value or returns the error.
#define TEND_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp) return ::tend::Fail(std::move(tmp).error()); \
  lhs = std::move(*tmp)
#define TEND_ASSIGN_OR_RETURN(lhs, expr) \
  TEND_ASSIGN_OR_RETURN_IMPL(TEND_CONCAT(_tend_res_, __LINE__), lhs, expr)
