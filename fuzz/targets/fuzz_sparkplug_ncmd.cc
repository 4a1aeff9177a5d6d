// Fuzz target: the Sparkplug NCMD decoder (any bytes a host or an attacker publishes on
// spBv1.0/{group}/NCMD/{node}). It must return a value or an error, never crash or hang.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "telemetry/sparkplug.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto cmd = tend::sparkplug::DecodeNodeCommand(
      std::string_view(reinterpret_cast<const char*>(data), size));
  if (cmd) {
    for (const auto& name : cmd->ignored) (void)name.size();
  }
  return 0;
}
