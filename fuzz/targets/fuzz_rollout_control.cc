// Fuzz target: staged-rollout documents from the registry (outside input for every device): the
// rollout plan of a release (custom.rollout) and control.json, parsed raw, and signed with a test
// key so the parser behind the signature check is reached too. Properties: an accepted plan
// round-trips and puts every device in one of its waves; an accepted control statement is not
// expired, not below the floor, and its rollouts name valid states.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>

#include "fuzz_util.h"
#include "ota/registry.h"
#include "ota/rollout.h"

namespace {

using namespace tend;
using Json = nlohmann::json;

constexpr int64_t kNow = 1800000000;

struct Keys {
  ota::KeyPair key = *ota::GenerateKeyPair();
  ota::RootMeta root = ota::MakeRoot({key}, 1, 1, kNow + 86400);
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Keys keys;
  const ota::KeyPair& g_key = keys.key;
  const ota::RootMeta& g_root = keys.root;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // Bounded, as the updater reads registry metadata (core/json.h).
  auto parsed = tend::json::ParseJson(text, "rollout document", ota::kMetadataJsonLimits);
  if (parsed) {
    const Json& j = *parsed;
    if (auto plan = ota::ParseRolloutPlan(j, "plan")) {
      auto again = ota::ParseRolloutPlan(ota::ToJson(*plan), "plan");
      TEND_FUZZ_CHECK(again && ota::ToJson(*again) == ota::ToJson(*plan));
      const int w = ota::WaveOf(*plan, std::string(text.substr(0, 40)));
      TEND_FUZZ_CHECK(w >= 0 && w < static_cast<int>(plan->waves.size()));
    }
    if (auto c = ota::ParseControl(j, "control")) {
      for (const auto& r : c->rollouts) {
        TEND_FUZZ_CHECK(ota::ValidRolloutState(r.state));
        TEND_FUZZ_CHECK(static_cast<int64_t>(r.opened.size()) == r.open_waves);
      }
      TEND_FUZZ_CHECK(ota::ParseControl(ota::ToJson(*c), "again").has_value());
    }
    if (j.is_object()) {
      auto signed_bytes = ota::SignEnvelope(j, {g_key});
      if (signed_bytes) {
        auto v = ota::VerifyControl(g_root, *signed_bytes, 5, kNow);
        if (v) TEND_FUZZ_CHECK(v->version >= 5 && v->expires > kNow);
      }
    }
  }
  // As it arrives from the registry: an envelope, most likely unsigned or badly signed.
  auto v = ota::VerifyControl(g_root, text, 0, kNow);
  if (v) TEND_FUZZ_CHECK(v->expires > kNow);
  return 0;
}
