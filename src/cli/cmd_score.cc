// `tend score`: windows inputs the way the model says and prints one JSON line per window.
#include <cstdio>
#include <fstream>
#include <memory>
#include <unistd.h>

#include "agent/dataset.h"
#include "agent/decision_log.h"
#include "agent/served_model.h"
#include "cli/commands.h"
#include "core/fs.h"

namespace tend::cli {
namespace {

struct ScoreArgs {
  std::vector<std::string> inputs;
  std::string model, out;
  int channel = -1;
  double sample_rate = 0;
  int channels = 0;
  int top_k = 3;
};

void DoScore(const ScoreArgs& a) {
  if (a.model.empty()) Die("no model given (--model)");
  if (a.inputs.empty()) Die("no input given (--input)");
  agent::ServeOptions sopt;
  sopt.top_k = a.top_k;
  auto model = OrDie(agent::ServedModel::Load(a.model, sopt));
  Decider decider(model->thresholds(), DebounceOptions{1, 1});
  std::vector<agent::InputSpec> inputs;
  for (auto& s : a.inputs) inputs.push_back(OrDie(agent::InputSpec::Parse(s)));
  sources::SourceOptions so;
  so.sample_rate = a.sample_rate;
  so.channels = a.channels;
  so.wav_channel = a.channel;

  // A regular file is replaced atomically; /dev/null, a pipe or a symlink's target is written
  // through (never renamed over).
  std::unique_ptr<fs::OutputFile> out_file;
  if (!a.out.empty()) out_file = OrDie(fs::OutputFile::Open(a.out));
  std::FILE* out = out_file ? out_file->stream() : stdout;
  agent::ScoreOut so_out;
  model->PrepareOut(so_out);
  Decision d;
  d.model_version = model->card().version;
  int64_t n = 0;
  auto st = agent::ForEachWindow(
      inputs, so, model->windowing(), -1,
      [&](std::span<const float> win, const agent::WindowInfo& info) -> Status {
        auto s = model->Score(win, so_out);
        if (!s) return Fail(s.error().Wrap(info.input->ToString() + " window " + std::to_string(info.index)));
        d.window_index = info.index;
        d.t_start_s = info.t_start_s;
        d.anomaly_score = so_out.score;
        d.timestamp = std::chrono::system_clock::now();
        d.top_sensors.clear();
        for (int i = 0; i < so_out.n_top; ++i) {
          d.top_sensors.push_back(model->feature_names()[static_cast<size_t>(so_out.top[static_cast<size_t>(i)])]);
        }
        d.features_ms = so_out.features_ms;
        d.inference_ms = so_out.inference_ms;
        d.latency_ms = so_out.features_ms + so_out.inference_ms;
        decider.Decide(d);
        auto j = agent::DecisionJson(d);
        j.erase("timestamp");
        if (inputs.size() > 1) j["input"] = info.input->ToString();
        if (info.wear >= 0) j["wear"] = agent::Round4(info.wear);
        std::string line = j.dump();
        std::fputs(line.c_str(), out);
        std::fputc('\n', out);
        ++n;
        return Ok();
      });
  if (out_file) {
    if (st) OrDie(out_file->Commit());
    out_file.reset();  // uncommitted: the partial file goes
  }
  OrDie(st);
  if (n == 0) Die("no windows found in the input (too short for the model's window, or no strokes triggered)");
  std::fprintf(stderr, "scored %lld windows\n", static_cast<long long>(n));
}

}  // namespace

void RegisterScore(CLI::App& app) {
  auto a = std::make_shared<ScoreArgs>();
  auto* cmd = app.add_subcommand("score", "Score every window of the inputs; one JSON line per window");
  cmd->add_option("--model,-m", a->model, "Model (.onnx)")->required();
  cmd->add_option("--input,-i", a->inputs, "WAV/CSV files (FILE@START:END to cut), sim:..., or -")->required();
  cmd->add_option("--out,-o", a->out, "Write JSONL here instead of stdout");
  cmd->add_option("--channel", a->channel, "Use only this channel of multi-channel inputs");
  cmd->add_option("--sample-rate", a->sample_rate, "Sample rate for raw stdin / CSV without time column");
  cmd->add_option("--channels", a->channels, "Channel count for raw stdin");
  cmd->add_option("--top", a->top_k, "How many top contributing features to list");
  cmd->callback([a] { DoScore(*a); });
}

}  // namespace tend::cli
