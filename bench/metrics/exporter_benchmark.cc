// What metrics cost the pipeline: Exporter::OnDecision per call, a scrape's assembly, and the
// per-window latency of a simulated window (features over 2,000 samples + decision) with metrics
// off vs on in the same run, then with a scraper hitting /metrics 100 times per second.
//
//   build/bench/metrics_benchmark --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>
#include <httplib.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "metrics/exporter.h"

namespace tend::metrics {
namespace {

using Clock = std::chrono::steady_clock;
constexpr double kBudgetMs = 3300;  // one press stroke

std::unique_ptr<Exporter> MakeExporter(bool serve) {
  Exporter::Options o;
  o.bind = "127.0.0.1";
  o.port = serve ? Exporter::kAnyPortForTest : 0;
  o.latency_budget_ms = kBudgetMs;
  auto e = Exporter::Create({"bench-device", "press-01", "plant-a"}, o);
  if (!e) {
    std::fprintf(stderr, "exporter: %s\n", e.error().message.c_str());
    std::abort();
  }
  (*e)->OnModelInfo({"press-ae", "3.1", "CPUExecutionProvider", 1700000000, 1700000100});
  return std::move(*e);
}

Decision MakeDecision(double ms) {
  Decision d;
  d.latency_ms = ms;
  d.features_ms = ms * 0.6;
  d.inference_ms = ms * 0.3;
  d.anomaly_score = 0.2f;
  d.timestamp = std::chrono::system_clock::now();
  return d;
}

void BM_OnDecision(benchmark::State& state) {
  auto e = MakeExporter(false);
  Decision d = MakeDecision(0.05);
  int64_t i = 0;
  for (auto _ : state) {
    d.latency_ms = 0.01 * static_cast<double>(i++ & 1023);  // spread over buckets
    e->OnDecision(d);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_OnDecision);

void BM_ScrapeText(benchmark::State& state) {
  auto e = MakeExporter(false);
  for (int i = 0; i < 1000; ++i) e->OnDecision(MakeDecision(0.01 * i));
  size_t bytes = 0;
  for (auto _ : state) {
    std::string text = e->ScrapeText();
    bytes = text.size();
    benchmark::DoNotOptimize(text);
  }
  state.counters["bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_ScrapeText)->Unit(benchmark::kMicrosecond);

// A stand-in for one window's work: statistics and Goertzel band powers in 200-400 Hz over
// 2,000 samples at 10 kHz (what the press features do), about tens of microseconds.
class Window {
 public:
  Window() : x_(2000) {
    std::mt19937 rng(42);
    std::normal_distribution<float> noise(0.f, 0.1f);
    for (size_t i = 0; i < x_.size(); ++i) {
      const float t = static_cast<float>(i) / 10000.f;
      x_[i] = std::sin(2 * 3.14159265f * 300 * t) + 0.3f * std::sin(2 * 3.14159265f * 250 * t) +
              noise(rng);
    }
  }
  double Features() {
    double sum = 0, sq = 0, peak = 0;
    for (float v : x_) {
      sum += v;
      sq += double(v) * v;
      peak = std::max(peak, double(std::fabs(v)));
    }
    const double n = double(x_.size());
    const double mean = sum / n;
    double m4 = 0;
    for (float v : x_) m4 += std::pow(v - mean, 4);
    double band = 0;
    for (int k = 0; k < 16; ++k) {  // Goertzel at 200..387.5 Hz
      const double w = 2 * M_PI * (200.0 + 12.5 * k) / 10000.0;
      const double c = 2 * std::cos(w);
      double s1 = 0, s2 = 0;
      for (float v : x_) {
        const double s0 = v + c * s1 - s2;
        s2 = s1;
        s1 = s0;
      }
      band += s1 * s1 + s2 * s2 - c * s1 * s2;
    }
    return std::sqrt(sq / n) + peak + m4 / n + band * 1e-9;
  }

 private:
  std::vector<float> x_;
};

struct Percentiles {
  double p50 = 0, p99 = 0, max = 0;
};
Percentiles Summarize(std::vector<double>& v) {
  Percentiles p;
  if (v.empty()) return p;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, size_t(q * double(v.size())))]; };
  p.p50 = at(0.50);
  p.p99 = at(0.99);
  p.max = v.back();
  return p;
}

// Runs windows back to back for `seconds`, alternating 250 ms phases of A and B so that both see
// the same machine load; `phase_b(true)` is called when a B phase starts, `phase_b(false)` at its
// end. Per-window times (features + decision + sink) go to a/b in microseconds.
// This thread's CPU time: unlike wall time it leaves out preemption by other processes, so it
// shows what metrics add to a window even on a busy shared machine.
double ThreadCpuUs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) * 1e6 + double(ts.tv_nsec) * 1e-3;
}

struct Samples {
  std::vector<double> wall_us, cpu_us;
  Samples() {
    wall_us.reserve(1 << 20);
    cpu_us.reserve(1 << 20);
  }
  size_t size() const { return wall_us.size(); }
};

template <typename OnPhase>
void Alternate(double seconds, Exporter* sink_b, OnPhase phase_b, Samples* a, Samples* b) {
  Window w;
  Decision d = MakeDecision(0);
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  bool in_b = false;
  auto phase_end = Clock::now();
  while (Clock::now() < end) {
    if (Clock::now() >= phase_end) {
      in_b = !in_b;
      phase_b(in_b);
      phase_end = Clock::now() + std::chrono::milliseconds(250);
    }
    const auto t0 = Clock::now();
    const double c0 = ThreadCpuUs();
    const double f = w.Features();
    d.anomaly_score = static_cast<float>(f * 1e-3);
    d.latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (in_b) sink_b->OnDecision(d);
    benchmark::DoNotOptimize(d);
    const double cpu = ThreadCpuUs() - c0;
    const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
    Samples* out = in_b ? b : a;
    out->wall_us.push_back(us);
    out->cpu_us.push_back(cpu);
  }
  phase_b(false);
}

// Metrics off vs on, same run: p99 per window.
void BM_WindowMetricsOffVsOn(benchmark::State& state) {
  auto e = MakeExporter(false);
  Samples off, on;
  for (auto _ : state)
    Alternate(
        6.0, e.get(), [](bool) {}, &off, &on);
  const auto w_off = Summarize(off.wall_us), w_on = Summarize(on.wall_us);
  const auto c_off = Summarize(off.cpu_us), c_on = Summarize(on.cpu_us);
  state.counters["windows"] = double(off.size() + on.size());
  state.counters["off_p50_us"] = w_off.p50;
  state.counters["on_p50_us"] = w_on.p50;
  state.counters["off_p99_us"] = w_off.p99;
  state.counters["on_p99_us"] = w_on.p99;
  state.counters["p99_on/off"] = w_on.p99 / w_off.p99;
  state.counters["cpu_off_p99_us"] = c_off.p99;
  state.counters["cpu_on_p99_us"] = c_on.p99;
  state.counters["cpu_p99_on/off"] = c_on.p99 / c_off.p99;
}
BENCHMARK(BM_WindowMetricsOffVsOn)->Iterations(1)->Unit(benchmark::kSecond);

// Metrics on and 100 scrapes/s over HTTP during the B phases vs no metrics at all in the A
// phases. Four scraper threads at 25/s each, so that one slow scrape on a loaded machine does not
// lower the rate. Reports deadline misses (3.3 s) and the worst window.
void BM_WindowUnder100ScrapesPerSecond(benchmark::State& state) {
  auto e = MakeExporter(true);
  constexpr int kScrapers = 4;
  std::atomic<bool> scraping{false}, quit{false};
  std::atomic<int64_t> scrapes{0}, failures{0};
  std::vector<std::vector<double>> scrape_ms(kScrapers);
  std::vector<std::thread> scrapers;
  for (int k = 0; k < kScrapers; ++k) {
    scrape_ms[k].reserve(4096);
    scrapers.emplace_back([&, k] {
      httplib::Client cli("127.0.0.1", e->port());
      auto next = Clock::now() + std::chrono::milliseconds(10 * k);
      while (!quit.load()) {
        next += std::chrono::milliseconds(10 * kScrapers);
        std::this_thread::sleep_until(next);
        if (!scraping.load()) continue;
        const auto t0 = Clock::now();
        auto res = cli.Get("/metrics");
        if (res && res->status == 200 && res->body.size() > 1000) {
          scrapes.fetch_add(1);
          scrape_ms[k].push_back(
              std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        } else {
          failures.fetch_add(1);
        }
      }
    });
  }
  Samples off, on;
  double scraping_s = 0;
  auto started = Clock::now();
  auto phase = [&](bool b) {
    if (b) {
      started = Clock::now();
    } else if (scraping.load()) {
      scraping_s += std::chrono::duration<double>(Clock::now() - started).count();
    }
    scraping = b;
  };
  for (auto _ : state) Alternate(10.0, e.get(), phase, &off, &on);
  quit = true;
  for (auto& t : scrapers) t.join();
  int64_t over_budget = 0;
  for (double us : on.wall_us) over_budget += us > kBudgetMs * 1000;
  for (double us : off.wall_us) over_budget += us > kBudgetMs * 1000;
  std::vector<double> all_scrapes;
  for (const auto& v : scrape_ms) all_scrapes.insert(all_scrapes.end(), v.begin(), v.end());
  const auto w_off = Summarize(off.wall_us), w_on = Summarize(on.wall_us);
  const auto c_off = Summarize(off.cpu_us), c_on = Summarize(on.cpu_us);
  const auto p_scrape = Summarize(all_scrapes);
  state.counters["windows"] = double(off.size() + on.size());
  state.counters["scrapes/s"] = double(scrapes.load()) / std::max(scraping_s, 1e-9);
  state.counters["scrape_fail"] = double(failures.load());
  state.counters["scrape_p99_ms"] = p_scrape.p99;
  state.counters["quiet_p99_us"] = w_off.p99;
  state.counters["scraped_p99_us"] = w_on.p99;
  state.counters["p99_scraped/quiet"] = w_on.p99 / w_off.p99;
  state.counters["scraped_max_us"] = w_on.max;
  state.counters["cpu_quiet_p99_us"] = c_off.p99;
  state.counters["cpu_scraped_p99_us"] = c_on.p99;
  state.counters["deadline_misses"] = double(over_budget);
}
BENCHMARK(BM_WindowUnder100ScrapesPerSecond)->Iterations(1)->Unit(benchmark::kSecond);

}  // namespace
}  // namespace tend::metrics

BENCHMARK_MAIN();
