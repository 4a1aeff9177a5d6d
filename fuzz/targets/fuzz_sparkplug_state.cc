// Fuzz target: the primary host's STATE payload (JSON on spBv1.0/STATE/{host}).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "telemetry/sparkplug.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)tend::sparkplug::DecodeHostState(
      std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
