// A test component added the way a user adds one: this file plus one tend_add_component() line
// (tests/runtime/CMakeLists.txt), no edit in src/cli or src/agent. Source "noise": seconds of
// white noise at the model's rate, "noise:seconds=S,seed=N", replayed as a sample stream.
#include <random>

#include "runtime/component_util.h"

namespace {

class NoiseSource final : public tend::sources::Source {
 public:
  NoiseSource(double rate, int channels, int64_t frames, uint64_t seed)
      : left_(frames), rng_(seed) {
    info_.sample_rate = rate;
    info_.channels = channels;
    info_.total_frames = frames;
    for (int c = 0; c < channels; ++c) info_.channel_names.push_back("ch" + std::to_string(c));
  }
  const tend::sources::StreamInfo& info() const override { return info_; }
  tend::Result<size_t> Read(std::span<float> out, size_t max_frames) override {
    const size_t n =
        static_cast<size_t>(std::min<int64_t>(left_, static_cast<int64_t>(max_frames)));
    std::normal_distribution<float> g(0.0f, 0.05f);
    for (size_t i = 0; i < n * static_cast<size_t>(info_.channels); ++i) out[i] = g(rng_);
    left_ -= static_cast<int64_t>(n);
    return n;
  }
  std::string Describe() const override { return "noise"; }

 private:
  tend::sources::StreamInfo info_;
  int64_t left_;
  std::mt19937 rng_;
};

}  // namespace

TEND_COMPONENT(source_noise) {
  using namespace tend;
  runtime::SourceDescriptor d;
  d.name = "noise";
  d.description = "test: white noise, noise:seconds=S,seed=N";
  d.open = [](const runtime::SourceRequest& req) -> Result<std::unique_ptr<agent::EventReader>> {
    double seconds = 10;
    uint64_t seed = 1;
    if (std::sscanf(req.spec.c_str(), "noise:seconds=%lf,seed=%lu", &seconds, &seed) < 0) {
      return Fail(Error::Invalid("noise: bad spec"));
    }
    const auto so = runtime::SourceOptionsFor(req);
    auto src = std::make_unique<NoiseSource>(so.sample_rate, so.channels,
                                             static_cast<int64_t>(seconds * so.sample_rate), seed);
    return runtime::OpenStreamReader(req, std::unique_ptr<sources::Source>(std::move(src)), false);
  };
  return registry.AddSource(std::move(d));
}
