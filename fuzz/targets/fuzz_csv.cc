// A CSV recording (Excel, a logger, a script): opened with and without a given sample rate and
// read to the end. Must never crash; every sample is finite and fits a float, never more frames
// than counted at open.
#include <cmath>
#include <vector>

#include "fuzz_util.h"
#include "sources/source.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tend::fuzz::MemFile file(data, size);
  for (double rate : {0.0, 1000.0}) {
    tend::sources::SourceOptions opts;
    opts.sample_rate = rate;
    auto src = tend::sources::OpenCsv(file.path(), opts);
    if (!src) continue;
    const auto& info = (*src)->info();
    TEND_FUZZ_CHECK(info.channels >= 1 && info.sample_rate > 0 && std::isfinite(info.sample_rate));
    TEND_FUZZ_CHECK(static_cast<int>(info.channel_names.size()) == info.channels);
    std::vector<float> buf(61 * static_cast<size_t>(info.channels));
    int64_t frames = 0;
    for (;;) {
      auto n = (*src)->Read(buf, 61);
      if (!n || *n == 0) break;
      for (size_t i = 0; i < *n * static_cast<size_t>(info.channels); ++i) {
        TEND_FUZZ_CHECK(std::isfinite(buf[i]));
      }
      frames += static_cast<int64_t>(*n);
    }
    TEND_FUZZ_CHECK(info.total_frames < 0 || frames <= info.total_frames);
  }
  return 0;
}
