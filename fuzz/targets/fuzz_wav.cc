// A WAV file as a user or a sensor gateway provides it: opened and read to the end in chunks.
// Must never crash; every sample read is finite, never more frames than the header announced.
#include <cmath>
#include <vector>

#include "fuzz_util.h"
#include "sources/source.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tend::fuzz::MemFile file(data, size);
  for (int channel : {-1, 0}) {
    tend::sources::SourceOptions opts;
    opts.wav_channel = channel;
    auto src = tend::sources::OpenWav(file.path(), opts);
    if (!src) continue;
    const auto& info = (*src)->info();
    TEND_FUZZ_CHECK(info.channels >= 1 && info.sample_rate > 0);
    std::vector<float> buf(257 * static_cast<size_t>(info.channels));
    int64_t frames = 0;
    for (;;) {
      auto n = (*src)->Read(buf, 257);
      if (!n || *n == 0) break;
      for (size_t i = 0; i < *n * static_cast<size_t>(info.channels); ++i) {
        TEND_FUZZ_CHECK(std::isfinite(buf[i]));
      }
      frames += static_cast<int64_t>(*n);
    }
    if (info.total_frames >= 0) TEND_FUZZ_CHECK(frames <= info.total_frames);
  }
  return 0;
}
