// What the decision stage's monitors cost per event (docs/alarms.md): input health over one
// 2,000-sample window, the drift monitor over a press model's 31 features (past its warm-up, so
// the running PSI path), the health CUSUMs with their trend fit, and the decider. Every call is
// timed with steady_clock; p50/p99 are reported as counters (microseconds).
//
//   build/bench/decide_monitor_benchmark --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numbers>
#include <random>
#include <vector>

#include "decide/decider.h"
#include "decide/drift.h"
#include "decide/health.h"

namespace tend {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kFeatures = 31;  // the default press model's feature vector
constexpr int kWindow = 2000;  // samples per press window

std::vector<float> Window(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> noise(0.0, 0.03);
  std::vector<float> x(kWindow);
  for (int i = 0; i < kWindow; ++i) {
    const double t = i / 10000.0;
    x[static_cast<size_t>(i)] =
        static_cast<float>(1.0 + 0.5 * std::sin(2 * std::numbers::pi * 310 * t) + noise(rng));
  }
  return x;
}

void Percentiles(benchmark::State& state, std::vector<double>& us) {
  if (us.empty()) return;
  std::sort(us.begin(), us.end());
  auto at = [&](double q) {
    return us[static_cast<size_t>(q * static_cast<double>(us.size() - 1))];
  };
  state.counters["p50_us"] = at(0.50);
  state.counters["p99_us"] = at(0.99);
  state.counters["max_us"] = us.back();
}

template <typename F>
void Timed(std::vector<double>& us, F&& f) {
  const auto t0 = Clock::now();
  f();
  us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
}

void BM_InputHealthObserve(benchmark::State& state) {
  auto ih = InputHealth::Create(1, 10000, {0.35f}, InputHealthOptions{});
  if (!ih) state.SkipWithError(ih.error().message.c_str());
  std::vector<std::vector<float>> windows;
  for (uint64_t s = 0; s < 16; ++s) windows.push_back(Window(s));
  std::vector<double> us;
  size_t i = 0;
  uint32_t problems = 0;
  for (auto _ : state) {
    Timed(us, [&] { problems |= ih->Observe(windows[i++ % windows.size()]).problems; });
  }
  benchmark::DoNotOptimize(problems);
  Percentiles(state, us);
}
BENCHMARK(BM_InputHealthObserve);

std::vector<float> Rows(size_t rows, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(rows * kFeatures);
  for (float& v : x) v = g(rng);
  return x;
}

void BM_DriftObserve(benchmark::State& state) {
  auto ref = DriftReference::FromRows(Rows(400, 1), kFeatures);
  if (!ref) return state.SkipWithError(ref.error().message.c_str());
  auto m = DriftMonitor::Create(std::move(*ref), DriftOptions{});
  if (!m) return state.SkipWithError(m.error().message.c_str());
  const std::vector<float> events = Rows(4096, 2);
  auto row = [&](size_t i) {
    return std::span<const float>(events).subspan((i % 4096) * kFeatures, kFeatures);
  };
  size_t i = 0;
  for (; i < 400; ++i) m->Observe(row(i));  // past min_events: the running path
  std::vector<double> us;
  for (auto _ : state) {
    Timed(us, [&] { m->Observe(row(i++)); });
  }
  benchmark::DoNotOptimize(m->Level());
  Percentiles(state, us);
}
BENCHMARK(BM_DriftObserve);

void BM_HealthUpdate(benchmark::State& state) {
  auto h = HealthMonitor::Create(ScoreBaseline{0.01, -1.0, 0.3}, HealthOptions{});
  if (!h) return state.SkipWithError(h.error().message.c_str());
  std::mt19937_64 rng(3);
  std::lognormal_distribution<float> score(-1.0f, 0.3f);
  std::vector<float> scores(4096);
  for (float& s : scores) s = score(rng);
  std::vector<double> us;
  size_t i = 0;
  for (auto _ : state) {
    Timed(us, [&] { benchmark::DoNotOptimize(h->Update(scores[i++ % 4096]).cusum); });
  }
  Percentiles(state, us);
}
BENCHMARK(BM_HealthUpdate);

void BM_Decide(benchmark::State& state) {
  Decider decider({0.5f, 0.7f, 0.9f}, DebounceOptions{});
  Decision d;
  std::vector<double> us;
  float s = 0;
  for (auto _ : state) {
    d.anomaly_score = s;
    s = s > 1 ? 0 : s + 0.01f;
    Timed(us, [&] { decider.Decide(d); });
  }
  benchmark::DoNotOptimize(d.severity);
  Percentiles(state, us);
}
BENCHMARK(BM_Decide);

}  // namespace
}  // namespace tend

BENCHMARK_MAIN();
