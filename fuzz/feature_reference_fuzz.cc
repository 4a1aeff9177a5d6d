// Fuzz target: the drift monitor's commissioning reference as a model file carries it
// ("tend.feature_reference", agent/monitors.h) and the feature spec with its frame keys
// (dsp/feature_spec.h), from arbitrary bytes. Either parse succeeds into something that
// validates, or returns an error; it never crashes, hangs or throws.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "agent/monitors.h"
#include "decide/drift.h"
#include "dsp/feature_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  for (size_t features : {size_t{1}, size_t{2}, size_t{3}}) {
    auto ref = tend::agent::ParseFeatureReference(j, features);
    if (ref) {
      if (!ref->Validate()) std::abort();  // a parsed reference is always valid
      auto m = tend::DriftMonitor::Create(*ref, tend::DriftOptions{});
      if (!m) std::abort();
      const std::vector<float> x(features, 0.5f);
      m->Observe(x);
    }
  }
  auto spec = tend::dsp::FeatureSpec::FromJson(j);
  if (spec && !spec->Validate()) std::abort();
  return 0;
}
