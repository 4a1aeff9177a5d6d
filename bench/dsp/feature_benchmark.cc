// Feature extraction speed for one 2,000-sample channel (DefaultPress, 10 kHz): the whole
// vector, each feature group alone, and the bare FFT. The target is in percentiles, so every
// call is timed with steady_clock and p50/p99 are reported as counters (microseconds).
//
//   build/bench/dsp_feature_benchmark                       # all
//   build/bench/dsp_feature_benchmark --tend_dump_spec=press  # the spec, for the numpy baseline
//   scripts/bench_dsp.sh build                               # both, side by side, on one core
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <iostream>
#include <numbers>
#include <random>
#include <vector>

#include "dsp/features.h"

namespace tend::dsp {
namespace {

constexpr int kCalls = 20000;

// A stroke-like window: 1 g offset, die modes at 240/310 Hz, a 2.7 kHz ring, noise.
std::vector<float> Signal(int n, double fs) {
  std::mt19937_64 rng(1234);
  std::normal_distribution<double> noise(0.0, 0.03);
  std::vector<float> x(n);
  for (int i = 0; i < n; ++i) {
    const double t = i / fs;
    x[i] = static_cast<float>(
        1.0 + 0.8 * std::sin(2 * std::numbers::pi * 240 * t) * std::exp(-t / 0.05) +
        0.5 * std::sin(2 * std::numbers::pi * 310 * t) +
        0.2 * std::sin(2 * std::numbers::pi * 2700 * t) * (std::fmod(t * 120, 1.0) < 0.1) +
        noise(rng));
  }
  return x;
}

void Percentiles(benchmark::State& state, std::vector<double>& us) {
  if (us.empty()) return;
  std::sort(us.begin(), us.end());
  auto at = [&](double q) { return us[static_cast<size_t>(q * (us.size() - 1))]; };
  state.counters["p50_us"] = at(0.50);
  state.counters["p99_us"] = at(0.99);
  state.counters["max_us"] = us.back();
}

enum Group { kAll, kTime, kSpectral, kBands, kEnvelope };

FeatureSpec GroupSpec(Group g) {
  FeatureSpec s = FeatureSpec::DefaultPress(10000, 1, 2000);
  if (g == kAll) return s;
  s.time_features = g == kTime;
  s.spectral_features = g == kSpectral;
  if (g != kBands) s.bands.clear();
  s.envelope = g == kEnvelope;
  return s;
}

void BM_Features(benchmark::State& state, Group g) {
  const FeatureSpec spec = GroupSpec(g);
  auto fx = FeatureExtractor::Create(spec);
  if (!fx) {
    state.SkipWithError(fx.error().message.c_str());
    return;
  }
  const auto x = Signal(spec.window, spec.sample_rate);
  std::vector<float> out(spec.Size());
  std::vector<double> us;
  us.reserve(kCalls);
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    auto st = (*fx)->Compute(x, out);
    const auto t1 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(st);
    benchmark::DoNotOptimize(out.data());
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  Percentiles(state, us);
  state.counters["features"] = static_cast<double>(spec.Size());
}

void BM_Fft(benchmark::State& state) {
  auto fft = RealFft::Create(2000);
  const auto x = Signal(2000, 10000);
  std::vector<std::complex<float>> out(1001);
  std::vector<double> us;
  us.reserve(kCalls);
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    (*fft)->Forward(x, out);
    const auto t1 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(out.data());
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  Percentiles(state, us);
}

BENCHMARK_CAPTURE(BM_Features, full, kAll)->Iterations(kCalls)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Features, time, kTime)->Iterations(kCalls)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Features, fft_spectral, kSpectral)
    ->Iterations(kCalls)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Features, fft_bands, kBands)
    ->Iterations(kCalls)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Features, fft_envelope, kEnvelope)
    ->Iterations(kCalls)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Fft)->Iterations(kCalls)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace tend::dsp

int main(int argc, char** argv) {
  constexpr const char* kDump = "--tend_dump_spec=";
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], kDump, std::strlen(kDump)) == 0) {
      const std::string which = argv[i] + std::strlen(kDump);
      if (which != "press" && which != "bearing") {
        std::cerr << "dsp_feature_benchmark: --tend_dump_spec must be press or bearing\n";
        return 2;
      }
      const auto spec = which == "press" ? tend::dsp::FeatureSpec::DefaultPress(10000, 1, 2000)
                                         : tend::dsp::FeatureSpec::DefaultBearing(12000, 1, 2000);
      std::cout << spec.ToJson().dump() << "\n";
      return 0;
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
