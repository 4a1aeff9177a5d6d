// A model file's metadata (ModelCard::FromMetadata), as OTA or a USB stick delivers it: the
// input gives the values of the tend.* keys in order, separated by 0x1e (a missing trailing value
// leaves its key out). Must never crash; an accepted card must be internally consistent and
// survive a round trip through ToMetadata.
#include <map>
#include <string>
#include <vector>

#include "detect/model_card.h"
#include "fuzz_util.h"

namespace {

using namespace tend::detect;

const char* const kKeys[] = {kKeyFormat,     kKeyName,        kKeyVersion,   kKeyDetector,
                             kKeyCreated,    kKeyFeatureSpec, kKeyInputKind, kKeyFeatureNames,
                             kKeyThresholds, kKeyTrainMean,   kKeyTrainStd,  kKeyTrainingSummary,
                             kKeyCalibration};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = tend::fuzz::AsText(data, size);
  std::map<std::string, std::string> meta;
  size_t start = 0;
  for (const char* key : kKeys) {
    if (start > text.size()) break;
    size_t end = text.find('\x1e', start);
    if (end == std::string_view::npos) end = text.size();
    meta[key] = std::string(text.substr(start, end - start));
    start = end + 1;
  }
  auto card = ModelCard::FromMetadata(meta);
  if (!card) return 0;
  TEND_FUZZ_CHECK(card->Validate().has_value());
  auto again = ModelCard::FromMetadata(card->ToMetadata());
  TEND_FUZZ_CHECK(again.has_value());
  TEND_FUZZ_CHECK(again->feature_names == card->feature_names);
  TEND_FUZZ_CHECK(again->feature_spec == card->feature_spec);
  (void)card->CheckAgainstGraph({1, static_cast<int64_t>(card->feature_names.size())},
                                {{1}, {1, static_cast<int64_t>(card->feature_names.size())}});
  (void)card->CreatedUnix();
  (void)card->VersionMajor();
  return 0;
}
