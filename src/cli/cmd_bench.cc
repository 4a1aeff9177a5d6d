// `tend bench`: latency of one ONNX model on this machine (mean, p50, p95, p99, p99.9, max,
// throughput) after warm-up, as a table or one JSON object; `--pipeline` times the per-window
// stages instead.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "agent/asset_monitor.h"
#include "agent/served_model.h"
#include "agent/windowing.h"
#include "cli/commands.h"
#include "cli/vision_commands.h"
#include "core/log.h"
#include "detect/model_card.h"
#include "dsp/features.h"
#include "model/latency.h"
#include "model/metadata.h"
#include "model/session.h"
#include "sources/source.h"

namespace tend::cli {
namespace {

struct BenchArgs {
  std::string model;
  std::string provider = "auto";
  int warmup = 10;
  int iterations = 1000;
  int batch = 0;  // 0 = not given
  int threads = 1;
  std::vector<std::string> shapes;
  bool input_random = true;  // the default; the flag exists to say so explicitly
  bool input_zeros = false;
  uint64_t seed = 42;
  bool json = false;
  bool pipeline = false;
  std::string state_dir;
  bool trt_fp16 = false;
  bool trt_int8 = false;
  int strokes = 200;         // --pipeline: simulated strokes
  bool no_monitors = false;  // --pipeline: time without the decision stage (decider + monitors)
  std::string sim;           // --pipeline: simulator options, "key=value,..."
  ImageBenchFlags image;     // --pipeline with an image model
};

using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// Final input shapes: --shape overrides, then --batch for a dynamic leading dim, then 1 for any
// dim still dynamic.
std::vector<std::vector<int64_t>> ResolveShapes(const model::Session& session,
                                                const BenchArgs& args) {
  const auto& inputs = session.inputs();
  std::vector<std::vector<int64_t>> shapes;
  std::vector<bool> explicit_shape(inputs.size(), false);
  for (const auto& t : inputs) shapes.push_back(t.shape);
  for (const auto& spec : args.shapes) {
    std::string name, dims = spec;
    if (auto eq = spec.find('='); eq != std::string::npos) {
      name = spec.substr(0, eq);
      dims = spec.substr(eq + 1);
    } else if (inputs.size() != 1) {
      Die(fmt::format("--shape '{}': the model has {} inputs, write NAME=DIMS", spec,
                      inputs.size()));
    } else {
      name = inputs[0].name;
    }
    size_t i = 0;
    while (i < inputs.size() && inputs[i].name != name) ++i;
    if (i == inputs.size()) {
      std::vector<std::string> names;
      for (const auto& t : inputs) names.push_back(t.name);
      Die(fmt::format("--shape '{}': {} has no input '{}' (inputs: {})", spec, session.name(), name,
                      fmt::join(names, ", ")));
    }
    shapes[i] = OrDie(model::ParseShape(dims), "--shape");
    explicit_shape[i] = true;
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (explicit_shape[i]) continue;
    auto& s = shapes[i];
    if (args.batch > 0 && !s.empty()) {
      if (s[0] < 0) {
        s[0] = args.batch;
      } else if (s[0] != args.batch) {
        Die(fmt::format("--batch {}: input '{}' of {} has a static batch dim {} {}", args.batch,
                        inputs[i].name, session.name(), s[0], model::ShapeToString(s)));
      }
    }
    for (auto& d : s) {
      if (d < 0) d = 1;
    }
  }
  return shapes;
}

model::SessionOptions MakeOptions(const BenchArgs& args) {
  model::SessionOptions opts;
  opts.intra_op_threads = args.threads;
  opts.state_dir = args.state_dir;
  opts.trt_fp16 = args.trt_fp16;
  opts.trt_int8 = args.trt_int8;
  if (args.provider != "auto") {
    std::string p = OrDie(model::CanonicalProviderName(args.provider), "--provider");
    auto available = model::AvailableProviders();
    if (std::find(available.begin(), available.end(), p) == available.end()) {
      Die(
          Error::Unsupported(fmt::format("--provider {}: {} is not available in this ONNX Runtime "
                                         "build (available: {})",
                                         args.provider, p, fmt::join(available, ", "))));
    }
    opts.providers = {args.provider};
  }
  return opts;
}

void PrintHuman(const model::Session& s, const BenchArgs& args, const model::LatencyStats& st,
                double items_per_run) {
  std::vector<std::string> ins, outs;
  for (size_t i = 0; i < s.inputs().size(); ++i) {
    ins.push_back(s.inputs()[i].name + " " + model::ShapeToString(s.input_shape(i)));
  }
  for (size_t i = 0; i < s.outputs().size(); ++i) {
    outs.push_back(s.outputs()[i].name + " " + model::ShapeToString(s.output_shape(i)));
  }
  std::printf("model       %s\n", s.name().c_str());
  std::printf("provider    %s\n", s.provider().c_str());
  std::printf("inputs      %s\n", fmt::format("{}", fmt::join(ins, ", ")).c_str());
  std::printf("outputs     %s\n", fmt::format("{}", fmt::join(outs, ", ")).c_str());
  std::printf("threads     %d intra-op, sequential\n", args.threads);
  std::printf("runs        %zu after %d warm-up\n\n", st.n, args.warmup);
  std::printf("%-12s %9s %9s %9s %9s %9s %9s\n", "", "mean", "p50", "p95", "p99", "p99.9", "max");
  std::printf("%-12s %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f\n", "latency ms", st.mean_ms, st.p50_ms,
              st.p95_ms, st.p99_ms, st.p999_ms, st.max_ms);
  std::printf("\nthroughput  %.1f runs/s, %.1f fps at batch %g\n", st.throughput_fps,
              st.throughput_fps * items_per_run, items_per_run);
}

void RunModelBench(const BenchArgs& args) {
  if (args.model.empty()) Die("bench: --model is required (or --pipeline)");
  auto session = OrDie(model::Session::LoadFile(args.model, MakeOptions(args)));
  OrDie(session->Prepare(ResolveShapes(*session, args)));

  std::mt19937_64 rng(args.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (size_t i = 0; i < session->inputs().size(); ++i) {
    for (float& v : session->input(i)) v = args.input_zeros ? 0.0f : normal(rng);
  }
  if (args.iterations < 100) {
    TEND_LOG_WARN("{} runs: percentiles above p99 need at least 100 (p99.9: 1,000)",
                  args.iterations);
  }

  OrDie(session->Warmup(args.warmup), "warm-up");
  const bool progress = !args.json && ::isatty(STDERR_FILENO) != 0;
  std::vector<double> samples(static_cast<size_t>(args.iterations));
  const auto start = Clock::now();
  auto last_progress = start;
  for (size_t i = 0; i < samples.size(); ++i) {
    const auto t0 = Clock::now();
    auto st = session->Run();
    const auto t1 = Clock::now();
    if (!st) Die(st.error());
    samples[i] = Ms(t1 - t0);
    if (progress && t1 - last_progress > std::chrono::milliseconds(500)) {
      std::fprintf(stderr, "\rbench: %zu/%zu runs", i + 1, samples.size());
      last_progress = t1;
    }
  }
  const double wall_s = Ms(Clock::now() - start) / 1000.0;
  if (progress && last_progress != start) std::fprintf(stderr, "\r\033[K");

  // Throughput counts items: runs/s times the batch, when one was asked for.
  const double items_per_run = args.batch > 0 ? args.batch : 1;
  auto stats = model::ComputeLatencyStats(std::move(samples), wall_s);
  if (!args.json) {
    PrintHuman(*session, args, stats, items_per_run);
    return;
  }
  nlohmann::json j;
  j["model"] = args.model;
  j["provider"] = session->provider();
  j["threads"] = args.threads;
  j["warmup"] = args.warmup;
  j["iterations"] = stats.n;
  j["batch"] = items_per_run;
  for (size_t i = 0; i < session->inputs().size(); ++i) {
    j["inputs"][session->inputs()[i].name] = session->input_shape(i);
  }
  j["mean_ms"] = stats.mean_ms;
  j["p50_ms"] = stats.p50_ms;
  j["p95_ms"] = stats.p95_ms;
  j["p99_ms"] = stats.p99_ms;
  j["p999_ms"] = stats.p999_ms;
  j["max_ms"] = stats.max_ms;
  j["runs_per_s"] = stats.throughput_fps;
  j["throughput_fps"] = stats.throughput_fps * items_per_run;
  j["wall_s"] = wall_s;
  std::printf("%s\n", j.dump().c_str());
}

nlohmann::json StatsJson(const model::LatencyStats& st) {
  return {{"mean_ms", st.mean_ms},
          {"p50_ms", st.p50_ms},
          {"p95_ms", st.p95_ms},
          {"p99_ms", st.p99_ms},
          {"p999_ms", st.p999_ms},
          {"max_ms", st.max_ms},
          {"n", st.n}};
}

// The per-window path on simulated press strokes: stroke trigger -> features -> inference, each
// stage timed per window. With a tend model (model card in its metadata) this is exactly what
// the agent serves (agent::ServedModel::Score); with any other model the input is fed the
// default press feature vector or the raw window, whichever its input shape takes; without a
// model only the features are timed.
// What --pipeline times: a tend model (served as the agent serves it), or any ONNX model fed the
// default press features or the raw window, or the features alone.
struct BenchPipeline {
  agent::WindowingSpec windowing;  // 10 kHz, 1 channel, 2,000-sample stroke-triggered windows
  std::unique_ptr<agent::ServedModel> served;
  std::unique_ptr<model::Session> session;
  std::unique_ptr<dsp::FeatureExtractor> extractor;
  std::vector<float> features;
  bool raw = false;
  std::string provider = "none";
};

BenchPipeline PreparePipeline(const BenchArgs& args) {
  BenchPipeline p;
  auto& windowing = p.windowing;
  auto& served = p.served;
  auto& session = p.session;
  auto& extractor = p.extractor;
  auto& features = p.features;
  auto& raw = p.raw;
  auto& provider = p.provider;
  windowing.mode = "trigger";

  if (!args.model.empty()) {
    auto props = OrDie(model::ReadMetadataProps(args.model));
    if (props.count(detect::kKeyFormat) != 0) {
      agent::ServeOptions so;
      so.session = MakeOptions(args);
      so.warmup_runs = args.warmup;
      served = OrDie(agent::ServedModel::Load(args.model, so));
      windowing = served->windowing();
      provider = served->info().provider;
    } else {
      session = OrDie(model::Session::LoadFile(args.model, MakeOptions(args)));
      provider = session->provider();
    }
  }
  if (!served) {
    auto spec =
        dsp::FeatureSpec::DefaultPress(windowing.sample_rate, windowing.channels, windowing.window);
    extractor = OrDie(dsp::FeatureExtractor::Create(spec));
    const int64_t n_features = static_cast<int64_t>(spec.Size());
    if (session) {
      if (session->inputs().size() != 1 || session->inputs()[0].shape.empty()) {
        Die(fmt::format("bench --pipeline: {} must have one input of rank >= 2", args.model));
      }
      const auto& in = session->inputs()[0];
      const int64_t last = in.shape.back();
      std::vector<int64_t> shape(in.shape.size(), 1);
      if (in.shape.size() == 2 && (last == n_features || last < 0)) {
        shape[1] = n_features;
      } else if (last == windowing.window) {
        raw = true;
        shape.back() = windowing.window;
      } else {
        Die(
            fmt::format("bench --pipeline: input '{}' {} of {} takes neither the {} default press "
                        "features ([N,{}]) nor a raw {}-sample window",
                        in.name, model::ShapeToString(in.shape), args.model, n_features, n_features,
                        windowing.window));
      }
      OrDie(session->Prepare({shape}));
      OrDie(session->Warmup(args.warmup), "warm-up");
    } else {
      features.resize(spec.Size());
    }
  }

  return p;
}

void RunPipelineBench(const BenchArgs& args) {
  BenchPipeline p = PreparePipeline(args);
  const auto& windowing = p.windowing;
  auto& served = p.served;
  auto& session = p.session;
  auto& extractor = p.extractor;
  auto& features = p.features;
  const bool raw = p.raw;
  const std::string& provider = p.provider;
  auto sim_opts = OrDie(sources::SimulatorOptions::Parse(args.sim), "--sim");
  sim_opts.sample_rate = windowing.sample_rate;
  sim_opts.channels = windowing.channels;
  sim_opts.strokes = args.warmup + args.strokes;
  auto sim = OrDie(sources::PressSimulator::Create(sim_opts), "--sim");
  auto windower = OrDie(windowing.MakeWindower(), "windowing");

  const size_t n = static_cast<size_t>(args.warmup + args.strokes);
  std::vector<double> feat_ms, infer_ms, decide_ms, total_ms;
  feat_ms.reserve(n);
  infer_ms.reserve(n);
  decide_ms.reserve(n);
  total_ms.reserve(n);
  agent::ScoreOut out;
  if (served) served->PrepareOut(out);
  Status status = Ok();  // the first error inside the window callback
  int64_t windows = 0;
  // A tend model is scored the way the agent scores it: an event view through the Model
  // interface of its model kind.
  agent::Model* model = served.get();
  EventView ev;
  if (model) ev.spec = model->input().event;
  // The decision stage as `tend run` has it: the decider, then the asset's monitors (health,
  // drift, input health; agent/asset_monitor.h) with their default settings.
  std::unique_ptr<Decider> decider;
  std::unique_ptr<agent::AssetMonitor> monitor;
  Decision d;
  if (model && !args.no_monitors) {
    decider = std::make_unique<Decider>(model->thresholds(), DebounceOptions{});
    monitor =
        OrDie(agent::AssetMonitor::Create("bench", agent::MonitorOptions{}, *model), "monitors");
  }
  auto on_window = [&](const sources::WindowView& w) {
    if (!status) return;
    const auto t0 = Clock::now();
    double f = 0, i = 0, dm = 0;
    if (model) {
      ev.index = w.index;
      ev.start_frame = w.start_frame;
      ev.t_start_s = w.t_start_s;
      ev.bytes = std::as_bytes(w.samples);
      status = model->Score(ev, out);
      f = out.features_ms;
      i = out.inference_ms;
      if (status && monitor) {
        const auto t2 = Clock::now();
        d.window_index = w.index;
        d.anomaly_score = out.score;
        d.features = model->last_features();
        decider->Decide(d);
        monitor->OnDecision(ev, d);
        dm = Ms(Clock::now() - t2);
      }
    } else {
      if (raw) {
        std::copy(w.samples.begin(), w.samples.end(), session->input(0).begin());
      } else {
        status =
            extractor->Compute(w.samples, session ? session->input(0) : std::span<float>(features));
      }
      const auto t1 = Clock::now();
      f = Ms(t1 - t0);
      if (status && session) {
        status = session->Run();
        i = Ms(Clock::now() - t1);
      }
    }
    const double total = Ms(Clock::now() - t0);
    if (windows++ < args.warmup) return;  // first windows warm caches; not measured
    feat_ms.push_back(f);
    infer_ms.push_back(i);
    decide_ms.push_back(dm);
    total_ms.push_back(total);
  };

  const size_t chunk = 4096;
  std::vector<float> buf(chunk * static_cast<size_t>(windowing.channels));
  for (;;) {
    size_t got = OrDie(sim->Read(buf, chunk), "simulator");
    if (got == 0) break;
    windower->Push(buf, got, on_window);
    if (!status) Die(status.error());
  }
  if (total_ms.empty())
    Die(Error::Internal("bench --pipeline: the stroke trigger found no windows"));

  const double budget_ms = 60000.0 / sim_opts.strokes_per_min;
  auto f = model::ComputeLatencyStats(feat_ms, 0);
  auto i = model::ComputeLatencyStats(infer_ms, 0);
  auto dec = model::ComputeLatencyStats(decide_ms, 0);
  auto t = model::ComputeLatencyStats(total_ms, 0);
  const char* mode = served
                         ? (served->raw_input() ? "tend model, raw window" : "tend model, features")
                     : session ? (raw ? "raw window" : "default press features")
                               : "features only";
  if (!args.json) {
    std::printf("pipeline    simulated press, %lld windows measured after %d warm-up (%s)\n",
                static_cast<long long>(t.n), args.warmup, mode);
    std::printf("model       %s\n", args.model.empty() ? "(none)" : args.model.c_str());
    std::printf("provider    %s\n", provider.c_str());
    std::printf("monitors    %s\n\n",
                monitor ? "decider + health, drift, input health (total)" : "none");
    std::printf("%-14s %9s %9s %9s %9s %9s %9s\n", "stage ms", "mean", "p50", "p95", "p99", "p99.9",
                "max");
    auto row = [](const char* name, const model::LatencyStats& st) {
      std::printf("%-14s %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f\n", name, st.mean_ms, st.p50_ms,
                  st.p95_ms, st.p99_ms, st.p999_ms, st.max_ms);
    };
    row((served ? served->raw_input() : raw) ? "copy window" : "features", f);
    if (session || served) row("inference", i);
    if (monitor) row("decision", dec);
    row("total", t);
    std::printf("\nbudget      %.0f ms per stroke (%.0f strokes/min): p99.9 uses %.3f%%\n",
                budget_ms, sim_opts.strokes_per_min, 100.0 * t.p999_ms / budget_ms);
    return;
  }
  nlohmann::json j = StatsJson(t);
  j["mode"] = "pipeline";
  j["input"] = mode;
  j["model"] = args.model;
  j["provider"] = provider;
  j["monitors"] = monitor != nullptr;
  j["throughput_fps"] = t.throughput_fps;
  j["windows"] = t.n;
  j["budget_ms"] = budget_ms;
  j["stages"]["features"] = StatsJson(f);
  if (session || served) j["stages"]["inference"] = StatsJson(i);
  if (monitor) j["stages"]["decision"] = StatsJson(dec);
  j["stages"]["total"] = StatsJson(t);
  std::printf("%s\n", j.dump().c_str());
}

}  // namespace

void RegisterBench(CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  auto* cmd = app.add_subcommand(
      "bench", "Measure inference latency of an ONNX model (mean, p50..p99.9, max, throughput)");
  cmd->add_option("--model,-m", args->model, "ONNX model file");
  cmd->add_option("--provider", args->provider,
                  "Execution provider: auto (fastest available), tensorrt, cuda, openvino, cpu")
      ->capture_default_str();
  cmd->add_option("--warmup", args->warmup, "Warm-up runs before measuring")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  cmd->add_option("--iterations,-n", args->iterations, "Measured runs")
      ->check(CLI::Range(1, 100000000))
      ->capture_default_str();
  cmd->add_option("--batch", args->batch, "Batch size for a dynamic leading dim (default 1)")
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--threads", args->threads, "Intra-op threads (0 = one per core)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  cmd->add_option("--shape", args->shapes,
                  "Input shape NAME=1x60x14 (repeatable; NAME= optional for one input); other "
                  "dynamic dims default to 1");
  auto* random = cmd->add_flag("--input-random", args->input_random,
                               "Fill inputs with N(0,1) noise (the default)");
  cmd->add_flag("--input-zeros", args->input_zeros, "Fill inputs with zeros")->excludes(random);
  cmd->add_option("--seed", args->seed, "Seed for --input-random")->capture_default_str();
  cmd->add_flag("--json", args->json, "Print one JSON object instead of a table");
  cmd->add_flag("--pipeline", args->pipeline,
                "Time each stage of the per-window path (features, inference) on simulated "
                "strokes");
  cmd->add_option("--strokes", args->strokes, "--pipeline: simulated strokes to measure")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  cmd->add_flag("--no-monitors", args->no_monitors,
                "--pipeline: leave out the decision stage (decider and the asset's monitors), "
                "which the total includes by default");
  cmd->add_option("--sim", args->sim,
                  "--pipeline: simulator options sim:key=value,... (e.g. sim:wear=0.5,noise=0.1)");
  cmd->add_option("--state-dir", args->state_dir, "State directory (TensorRT engine cache)");
  cmd->add_flag("--trt-fp16", args->trt_fp16, "TensorRT: allow FP16 kernels");
  cmd->add_flag("--trt-int8", args->trt_int8, "TensorRT: allow INT8 kernels");
  AddImageBenchFlags(*cmd, args->image);
  cmd->callback([args] {
    if (args->pipeline && !args->model.empty() && IsImageModelFile(args->model)) {
      RunImageBench(args->model, args->image, args->iterations, args->warmup, args->threads,
                    args->json);
    } else if (args->pipeline) {
      RunPipelineBench(*args);
    } else {
      RunModelBench(*args);
    }
  });
}

}  // namespace tend::cli
