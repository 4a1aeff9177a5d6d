// What tend::model::Session costs over ONNX Runtime itself: on the same model in the same
// process, a bare Ort::Session::Run loop on pre-created Ort::Values against Session::Run. The
// Interleaved benchmark alternates the two run by run (so drift and noise from other processes
// hit both alike) and reports each p50 and their ratio.
//
//   build/bench/ort_overhead_benchmark [--models_dir=DIR] [google-benchmark flags]
#include <benchmark/benchmark.h>
#include <onnxruntime_cxx_api.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "model/latency.h"
#include "model/session.h"

namespace {

using Clock = std::chrono::steady_clock;

// A bare ONNX Runtime session configured exactly as tend configures one on CPU.
struct BareOrt {
  Ort::Env env{ORT_LOGGING_LEVEL_ERROR, "bare"};
  Ort::Session session{nullptr};
  std::vector<std::string> in_names, out_names;
  std::vector<const char*> in_ptrs, out_ptrs;
  std::vector<std::vector<float>> in_buf, out_buf;
  std::vector<std::vector<int64_t>> in_shapes, out_shapes;
  std::vector<Ort::Value> in_vals, out_vals;
  Ort::RunOptions run_options;

  // Uses the shapes tend's session settled on, so both do identical work.
  BareOrt(const std::string& path, tend::model::Session& ref) {
    Ort::SessionOptions so;
    so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
    so.SetIntraOpNumThreads(1);
    so.SetInterOpNumThreads(1);
    so.SetExecutionMode(ExecutionMode::ORT_SEQUENTIAL);
    session = Ort::Session(env, path.c_str(), so);
    auto mem = Ort::MemoryInfo::CreateCpu(OrtDeviceAllocator, OrtMemTypeCPU);
    for (size_t i = 0; i < ref.inputs().size(); ++i) {
      in_names.push_back(ref.inputs()[i].name);
      in_shapes.push_back(ref.input_shape(i));
      in_buf.emplace_back(ref.input(i).begin(), ref.input(i).end());
    }
    for (size_t i = 0; i < ref.outputs().size(); ++i) {
      out_names.push_back(ref.outputs()[i].name);
      out_shapes.push_back(ref.output_shape(i));
      out_buf.emplace_back(ref.output(i).size());
    }
    for (size_t i = 0; i < in_names.size(); ++i) {
      in_ptrs.push_back(in_names[i].c_str());
      in_vals.push_back(Ort::Value::CreateTensor<float>(mem, in_buf[i].data(), in_buf[i].size(),
                                                        in_shapes[i].data(), in_shapes[i].size()));
    }
    for (size_t i = 0; i < out_names.size(); ++i) {
      out_ptrs.push_back(out_names[i].c_str());
      out_vals.push_back(Ort::Value::CreateTensor<float>(
          mem, out_buf[i].data(), out_buf[i].size(), out_shapes[i].data(), out_shapes[i].size()));
    }
  }

  void Run() {
    session.Run(run_options, in_ptrs.data(), in_vals.data(), in_vals.size(), out_ptrs.data(),
                out_vals.data(), out_vals.size());
  }
};

std::string g_models_dir = TEND_BENCH_MODEL_DIR;

std::unique_ptr<tend::model::Session> LoadTend(const std::string& path) {
  tend::model::SessionOptions opts;
  opts.providers = {"cpu"};
  auto s = tend::model::Session::LoadFile(path, opts);
  if (!s) return nullptr;
  if (!(*s)->Prepare()) return nullptr;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  for (size_t i = 0; i < (*s)->inputs().size(); ++i) {
    for (float& v : (*s)->input(i)) v = normal(rng);
  }
  return std::move(*s);
}

void BM_BareOrt(benchmark::State& state, const std::string& path) {
  auto tend_session = LoadTend(path);
  if (!tend_session) return state.SkipWithError(("cannot load " + path).c_str());
  BareOrt bare(path, *tend_session);
  tend_session.reset();
  for (int i = 0; i < 10; ++i) bare.Run();
  for (auto _ : state) bare.Run();
}

void BM_TendSession(benchmark::State& state, const std::string& path) {
  auto s = LoadTend(path);
  if (!s) return state.SkipWithError(("cannot load " + path).c_str());
  if (!s->Warmup(10)) return state.SkipWithError("warm-up failed");
  for (auto _ : state) {
    if (!s->Run()) return state.SkipWithError("run failed");
  }
}

void BM_Interleaved(benchmark::State& state, const std::string& path) {
  auto s = LoadTend(path);
  if (!s) return state.SkipWithError(("cannot load " + path).c_str());
  BareOrt bare(path, *s);
  if (!s->Warmup(10)) return state.SkipWithError("warm-up failed");
  for (int i = 0; i < 10; ++i) bare.Run();
  std::vector<double> bare_ms, tend_ms;
  bare_ms.reserve(static_cast<size_t>(state.max_iterations));
  tend_ms.reserve(static_cast<size_t>(state.max_iterations));
  bool tend_first = false;
  for (auto _ : state) {
    for (int k = 0; k < 2; ++k) {
      const bool run_tend = (k == 0) == tend_first;
      const auto t0 = Clock::now();
      if (run_tend) {
        if (!s->Run()) return state.SkipWithError("run failed");
      } else {
        bare.Run();
      }
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      (run_tend ? tend_ms : bare_ms).push_back(ms);
    }
    tend_first = !tend_first;
  }
  // Both computed the same thing on the same input.
  double max_diff = 0;
  for (size_t o = 0; o < bare.out_buf.size(); ++o) {
    for (size_t k = 0; k < bare.out_buf[o].size(); ++k) {
      max_diff = std::max(max_diff, std::fabs(double(bare.out_buf[o][k]) - s->output(o)[k]));
    }
  }
  auto b = tend::model::ComputeLatencyStats(bare_ms, 0);
  auto t = tend::model::ComputeLatencyStats(tend_ms, 0);
  state.counters["bare_p50_ms"] = b.p50_ms;
  state.counters["tend_p50_ms"] = t.p50_ms;
  state.counters["p50_ratio"] = t.p50_ms / b.p50_ms;
  state.counters["bare_p99_ms"] = b.p99_ms;
  state.counters["tend_p99_ms"] = t.p99_ms;
  state.counters["max_abs_diff"] = max_diff;
}

}  // namespace

int main(int argc, char** argv) {
  // Our own flag first; Google Benchmark rejects flags it does not know.
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--models_dir=", 13) == 0) {
      g_models_dir = argv[i] + 13;
    } else {
      rest.push_back(argv[i]);
    }
  }
  spdlog::set_level(spdlog::level::warn);  // one "provider chosen" line per load is noise here
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 1;

  struct Model {
    const char* name;
    int interleaved_iterations;
  };
  int registered = 0;
  for (Model m : {Model{"lstm", 2000}, Model{"cnn1d", 2000}, Model{"mobilenet_v2", 300}}) {
    std::string path = g_models_dir + "/" + m.name + ".onnx";
    if (!std::filesystem::exists(path)) {
      std::fprintf(stderr, "skipping %s: %s not found (run scripts/models/export_models.py)\n",
                   m.name, path.c_str());
      continue;
    }
    benchmark::RegisterBenchmark((std::string("BareOrt/") + m.name).c_str(), BM_BareOrt, path)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark((std::string("TendSession/") + m.name).c_str(), BM_TendSession,
                                 path)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark((std::string("Interleaved/") + m.name).c_str(), BM_Interleaved,
                                 path)
        ->Iterations(m.interleaved_iterations)
        ->Unit(benchmark::kMillisecond);
    ++registered;
  }
  if (registered == 0) {
    std::fprintf(stderr, "no models in %s\n", g_models_dir.c_str());
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
