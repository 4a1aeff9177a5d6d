// Fuzz target: camera/file bytes into pixels (JPEG through TurboJPEG, PNG through libpng), with
// each channel and 16-bit option, then the preprocessing a model records — a decoder or a
// resampler that crashes, aborts or reads out of bounds on any input fails here.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "fuzz_util.h"
#include "vision/decode.h"
#include "vision/preprocess.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tend::vision;
  static Decoder decoder;
  static Image image;
  const std::span<const uint8_t> bytes(data, size);
  DecodeOptions o;
  o.max_pixels = 1 << 22;  // keep the fuzzer's memory bounded; the limit itself is tested too
  o.channels = size > 0 ? (data[size - 1] % 3 == 0 ? 0 : (data[size - 1] % 3 == 1 ? 1 : 3)) : 0;
  o.allow_16bit = size > 1 && (data[size - 2] & 1);
  if (!decoder.Decode(bytes, o, image)) return 0;
  TEND_FUZZ_CHECK(image.width() > 0 && image.height() > 0 && image.channels() > 0);
  PreprocessSpec spec;
  spec.width = 17;
  spec.height = 9;
  spec.color = image.channels() == 1 ? "grey" : "rgb";
  Preprocessor pre(spec);
  std::vector<float> out(spec.InputSize());
  (void)pre.Run(image.view(), out);
  return 0;
}
