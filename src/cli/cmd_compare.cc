// `tend compare`: model variants (FP32 / FP16 / INT8) side by side on the same validation windows
// — accuracy, score agreement, latency percentiles, size — and a non-zero exit (3) when a variant
// loses more accuracy than allowed (default 1.5 points, the SPEC's ship rule).
#include <fmt/format.h>

#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/config.h"
#include "optimize/compare.h"

namespace tend::cli {
namespace {

struct CompareArgs {
  std::vector<std::string> models;
  std::string validation, labels, output, config;
  double max_drop_points = 1.5;
  int warmup = 10, iterations = 200, threads = 1;
  std::vector<std::string> providers;
  bool json = false;
};

// Execution-provider settings from the [model] table of a tend.toml (the keys `tend run` reads);
// flags given on the command line win.
Status LoadProviderConfig(const CompareArgs& a, CLI::App& cmd, model::SessionOptions& s) {
  if (a.config.empty()) return Ok();
  TEND_ASSIGN_OR_RETURN(auto c, Config::LoadFile(a.config));
  if (cmd.count("--provider") == 0) TEND_RETURN_NOT_OK(c.Get("model.providers", s.providers));
  if (cmd.count("--threads") == 0)
    TEND_RETURN_NOT_OK(c.Get("model.intra_op_threads", s.intra_op_threads));
  TEND_RETURN_NOT_OK(c.Get("model.cuda_device", s.cuda_device));
  TEND_RETURN_NOT_OK(c.Get("model.trt_engine_cache_dir", s.trt_engine_cache_dir));
  TEND_RETURN_NOT_OK(c.Get("model.trt_fp16", s.trt_fp16));
  TEND_RETURN_NOT_OK(c.Get("model.trt_int8", s.trt_int8));
  TEND_RETURN_NOT_OK(c.Get("model.trt_int8_calibration_table", s.trt_int8_calibration_table));
  TEND_RETURN_NOT_OK(c.Get("model.state_dir", s.state_dir));
  return Ok();
}

void DoCompare(const CompareArgs& a, CLI::App& cmd) {
  if (a.models.size() < 2) Die("give at least two models to compare (the first is the reference)");
  if (a.validation.empty())
    Die("--validation is required: a .npy of windows [N, ...input dims...]");
  if (!(a.max_drop_points >= 0)) Die(fmt::format("--max-drop {} must be >= 0", a.max_drop_points));
  if (a.iterations < 1) Die("--iterations must be >= 1");

  optimize::ValidationSet v;
  v.name = a.validation;
  v.x = OrDie(optimize::ReadNpyFileOrDir(a.validation));
  if (!a.labels.empty()) v.labels = OrDie(optimize::ReadNpyLabels(a.labels));

  optimize::CompareOptions o;
  o.output = a.output;
  o.max_drop = a.max_drop_points / 100.0;
  o.warmup = a.warmup;
  o.iterations = a.iterations;
  o.session.intra_op_threads = a.threads;
  if (!a.providers.empty()) o.session.providers = a.providers;
  OrDie(LoadProviderConfig(a, cmd, o.session), "--config");
  auto progress = std::make_shared<Progress>("comparing");
  o.progress = [progress](const std::string& stage, double f) { progress->Update(f, stage); };

  auto report = OrDie(optimize::CompareModels(a.models, v, o));
  progress->Done(fmt::format("{} windows", report.samples));
  if (a.json) {
    std::printf("%s\n", report.ToJson().dump(2).c_str());
  } else {
    std::printf("%s", report.ToTable().c_str());
    if (report.metric.empty()) {
      std::printf("no --labels: accuracy not measured, nothing gated\n");
    }
  }
  std::fflush(stdout);
  for (const auto& m : report.models) {
    if (m.slower) {
      std::fprintf(stderr,
                   "tend: warning: %s is slower than %s (p50 %.3f ms vs %.3f ms, %.2fx): this "
                   "variant does not pay off with %s here; keep the reference\n",
                   m.path.c_str(), report.models[0].path.c_str(), m.latency.p50_ms,
                   report.models[0].latency.p50_ms, m.speedup_p50, m.provider.c_str());
    }
  }
  if (!report.pass) {
    for (const auto& m : report.models) {
      if (!m.pass) {
        Die(fmt::format("{}: {} drops {:.2f} points against {} (limit {:.2f})", m.path,
                        report.metric == "auc" ? "AUC" : "accuracy", 100.0 * m.drop,
                        report.models[0].path, a.max_drop_points),
            3);
      }
    }
  }
}

}  // namespace

void RegisterCompare(CLI::App& app) {
  auto a = std::make_shared<CompareArgs>();
  auto* cmd = app.add_subcommand(
      "compare",
      "Compare model variants: accuracy, score agreement, latency, size (exit 3 when "
      "accuracy drops too much)");
  cmd->add_option("models", a->models, "Models; the first is the reference (e.g. FP32 INT8 FP16)")
      ->required();
  cmd->add_option("--validation", a->validation,
                  "Validation windows: .npy float32 [N, ...input dims...] (or a directory)");
  cmd->add_option("--labels", a->labels,
                  ".npy [N]: 0 = normal, 1 = anomalous (AUC), or class indices (accuracy)");
  cmd->add_option("--output", a->output, "Output to score (default anomaly_score, else the first)");
  cmd->add_option("--max-drop", a->max_drop_points,
                  "Largest allowed accuracy/AUC drop in points (default 1.5)");
  cmd->add_option("--warmup", a->warmup, "Warm-up runs per model");
  cmd->add_option("--iterations", a->iterations, "Timed runs per model (default 200)");
  cmd->add_option("--threads", a->threads, "Intra-op threads");
  cmd->add_option("--provider", a->providers, "Execution providers in preference order")
      ->delimiter(',');
  cmd->add_option("--config", a->config, "tend.toml: [model] providers, cuda_device, trt_* keys");
  cmd->add_flag("--json", a->json, "One JSON object instead of the table");
  cmd->callback([a, cmd] { DoCompare(*a, *cmd); });
}

}  // namespace tend::cli
