// Fuzz target: the drift monitor's commissioning reference as a model file carries it
// ("tend.feature_reference", agent/monitors.h) and the feature spec with its frame keys
// (dsp/feature_spec.h), from arbitrary bytes read through the bounded JSON parser as the model
// card reads them. Either parse succeeds into something that validates, or returns an error; it
// never crashes, hangs or throws (see fuzz/README.md).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "agent/monitors.h"
#include "core/json.h"
#include "decide/drift.h"
#include "dsp/feature_spec.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The model card's limits (detect/model_card.cc): 32 levels deep.
  const tend::json::JsonLimits limits{size_t{64} << 20, 32};
  auto j = tend::json::ParseJson(tend::fuzz::AsText(data, size), "fuzz", limits);
  if (!j) return 0;
  for (size_t features : {size_t{1}, size_t{2}, size_t{3}}) {
    auto ref = tend::agent::ParseFeatureReference(*j, features);
    if (!ref) continue;
    TEND_FUZZ_CHECK(ref->Validate());  // a parsed reference is always valid
    auto m = tend::DriftMonitor::Create(*ref, tend::DriftOptions{});
    TEND_FUZZ_CHECK(m);
    const std::vector<float> x(features, 0.5f);
    m->Observe(x);
  }
  auto spec = tend::dsp::FeatureSpec::FromJson(*j);
  if (spec) TEND_FUZZ_CHECK(spec->Validate());
  return 0;
}
