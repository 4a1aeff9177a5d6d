// Fuzz target: the preprocessing spec in a model file's metadata (tend.feature_spec's
// "preprocess" object) and image-set specs from flags ("DIR@every=5,offset=2"): parse errors are
// values, never a throw or a crash.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "sources/image_files.h"
#include "vision/preprocess.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string s(reinterpret_cast<const char*>(data), size);
  (void)tend::sources::ImageSetSpec::Parse(s);
  auto j = nlohmann::json::parse(s, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  auto spec = tend::vision::PreprocessSpec::FromJson(j);
  if (spec) (void)spec->ToJson();
  return 0;
}
