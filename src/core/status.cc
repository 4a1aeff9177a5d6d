#include "core/status.h"

namespace tend {

const char* ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid argument";
    case ErrorCode::kNotFound: return "not found";
    case ErrorCode::kIoError: return "I/O error";
    case ErrorCode::kCorrupt: return "corrupt data";
    case ErrorCode::kUnsupported: return "unsupported";
    case ErrorCode::kModelError: return "model error";
    case ErrorCode::kTimeout: return "timeout";
    case ErrorCode::kSecurity: return "security";
    case ErrorCode::kInternal: return "internal error";
  }
  return "error";
}

}  // namespace tend
