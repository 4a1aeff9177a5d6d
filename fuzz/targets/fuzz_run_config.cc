// Fuzz target: the run configuration, as `tend run --config` reads it (TOML, [[asset]] tables,
// typed and range-checked settings, path resolution) into a RunSpec. Any input must give a
// RunSpec or a one-line error, never a crash, a hang or an abort (see fuzz/README.md).
#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/spec.h"

namespace {

const tend::runtime::Registry& TheRegistry() {
  // The runtime's own settings plus the built-in components' keys, made once.
  static const tend::runtime::Registry* r = [] {
    auto made = tend::runtime::MakeRegistry(&tend::runtime::RegisterComponents_builtin);
    return made ? made->release() : nullptr;
  }();
  return *r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto config = tend::Config::Parse(text, "/fuzz/run.toml");
  if (!config) return 0;
  auto spec = tend::runtime::LoadRunSpec(TheRegistry(), std::move(*config), {});
  if (spec && spec->assets.empty()) __builtin_trap();  // a spec always has an asset
  return 0;
}
