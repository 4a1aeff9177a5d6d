// `tend score`: windows inputs the way the model says and prints one JSON line per window.
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>

#include "agent/asset_monitor.h"
#include "agent/dataset.h"
#include "agent/decision_log.h"
#include "agent/monitors.h"
#include "agent/served_model.h"
#include "cli/commands.h"
#include "cli/vision_commands.h"
#include "core/fs.h"
#include "detect/select.h"

namespace tend::cli {
namespace {

struct ScoreArgs {
  std::vector<std::string> inputs;
  std::string model, out;
  int channel = -1;
  double sample_rate = 0;
  int channels = 0;
  int top_k = 3;
  std::string overlays;
  bool clips = false;   // one line per input (clip) instead of per window
  bool health = false;  // the agent's monitors (health over time, drift, input health)
  DebounceOptions debounce{1, 1};
};

// Per-input scores for --clips.
struct ClipScores {
  std::vector<std::vector<double>> scores;  // per input
};

void WriteClipLines(std::FILE* out, const std::vector<agent::InputSpec>& inputs,
                    const ClipScores& c, const SeverityThresholds& t) {
  Decider tier(t, DebounceOptions{1, 1});
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto& s = c.scores[i];
    nlohmann::json j{{"input", inputs[i].ToString()}, {"windows", s.size()}};
    if (!s.empty()) {
      const double clip = detect::ClipScore(s);
      Decision d;
      d.anomaly_score = static_cast<float>(clip);
      tier.Decide(d);
      j["clip_score"] = agent::Round4(clip);
      j["max_window_score"] = agent::Round4(*std::max_element(s.begin(), s.end()));
      j["is_alert"] = d.raw_alert;
      j["severity"] = SeverityName(d.severity);
    }
    std::fputs((j.dump() + "\n").c_str(), out);
  }
}

// The JSON line of one scored window (the decision with its health fields when the monitors
// ran, plus input and wear when known).
nlohmann::json WindowLine(const Decision& d, const agent::WindowInfo& info, bool several_inputs) {
  auto j = agent::DecisionJson(d);
  j.erase("timestamp");
  if (several_inputs) j["input"] = info.input->ToString();
  if (info.wear >= 0) j["wear"] = agent::Round4(info.wear);
  return j;
}

void FillDecision(Decision& d, const agent::ServedModel& model, const agent::ScoreOut& so_out,
                  const agent::WindowInfo& info) {
  d.window_index = info.index;
  d.t_start_s = info.t_start_s;
  d.anomaly_score = so_out.score;
  d.timestamp = std::chrono::system_clock::now();
  d.top_sensors.clear();
  for (int i = 0; i < so_out.n_top; ++i) {
    d.top_sensors.push_back(
        model.feature_names()[static_cast<size_t>(so_out.top[static_cast<size_t>(i)])]);
  }
  d.features_ms = so_out.features_ms;
  d.inference_ms = so_out.inference_ms;
  d.latency_ms = so_out.features_ms + so_out.inference_ms;
}

// --health: the asset monitors `tend run` puts between the decider and its sinks, with the
// agent's default settings, so a window's health fields are what the agent would decide
// (agent/asset_monitor.h: one place for that work). A model that cannot carry a health monitor
// is refused.
std::unique_ptr<agent::AssetMonitor> MakeMonitor(const ScoreArgs& a, agent::ServedModel& model) {
  if (!a.health) return nullptr;
  OrDie(agent::ScoreBaselineOf(model.card()), a.model);
  OrDie(agent::HealthOptionsFor(model.card()), a.model);
  return OrDie(agent::AssetMonitor::Create("score", agent::MonitorOptions{}, model), a.model);
}

void DoScore(const ScoreArgs& a) {
  if (a.model.empty()) Die("no model given (--model)");
  if (a.inputs.empty()) Die("no input given (--input)");
  if (IsImageModelFile(a.model)) return RunImageScore(a.model, a.inputs, a.out, a.overlays);
  agent::ServeOptions sopt;
  sopt.top_k = a.top_k;
  auto model = OrDie(agent::ServedModel::Load(a.model, sopt));
  OrDie(a.debounce.Validate(), "--debounce-k/--debounce-n");
  Decider decider(model->thresholds(), a.debounce);
  std::vector<agent::InputSpec> inputs;
  for (auto& s : a.inputs) inputs.push_back(OrDie(agent::InputSpec::Parse(s)));
  sources::SourceOptions so;
  so.sample_rate = a.sample_rate;
  so.channels = a.channels;
  so.wav_channel = a.channel;
  std::unique_ptr<agent::AssetMonitor> monitor = MakeMonitor(a, *model);
  EventView ev;
  ev.spec = model->input().event;

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
  ClipScores clips;
  clips.scores.resize(inputs.size());
  auto st = agent::ForEachWindow(
      inputs, so, model->windowing(), -1,
      [&](std::span<const float> win, const agent::WindowInfo& info) -> Status {
        auto s = model->Score(win, so_out);
        if (!s)
          return Fail(
              s.error().Wrap(info.input->ToString() + " window " + std::to_string(info.index)));
        FillDecision(d, *model, so_out, info);
        decider.Decide(d);
        if (monitor) {
          ev.index = info.index;
          ev.start_frame = info.start_frame;
          ev.t_start_s = info.t_start_s;
          ev.bytes = std::as_bytes(win);
          d.features = model->last_features();
          monitor->OnDecision(ev, d);
        }
        ++n;
        if (a.clips) {
          clips.scores[static_cast<size_t>(info.input - inputs.data())].push_back(d.anomaly_score);
        } else {
          std::fputs((WindowLine(d, info, inputs.size() > 1).dump() + "\n").c_str(), out);
        }
        return Ok();
      });
  if (st && a.clips) WriteClipLines(out, inputs, clips, model->thresholds());
  if (out_file) {
    if (st) OrDie(out_file->Commit());
    out_file.reset();  // uncommitted: the partial file goes
  }
  OrDie(st);
  if (n == 0)
    Die("no windows found in the input (too short for the model's window, or no strokes "
        "triggered)");
  std::fprintf(stderr, "scored %lld windows\n", static_cast<long long>(n));
}

}  // namespace

void RegisterScore(CLI::App& app) {
  auto a = std::make_shared<ScoreArgs>();
  auto* cmd =
      app.add_subcommand("score", "Score every window of the inputs; one JSON line per window");
  cmd->add_option("--model,-m", a->model, "Model (.onnx)")->required();
  cmd->add_option("--input,-i", a->inputs, "WAV/CSV files (FILE@START:END to cut), sim:..., or -")
      ->required();
  cmd->add_option("--out,-o", a->out, "Write JSONL here instead of stdout");
  cmd->add_option("--channel", a->channel, "Use only this channel of multi-channel inputs");
  cmd->add_option("--sample-rate", a->sample_rate,
                  "Sample rate for raw stdin / CSV without time column");
  cmd->add_option("--channels", a->channels, "Channel count for raw stdin");
  cmd->add_option("--top", a->top_k, "How many top contributing features to list");
  cmd->add_option("--overlays", a->overlays,
                  "Image models: write an anomaly-map overlay PNG of every reject here");
  cmd->add_option("--debounce-k", a->debounce.k,
                  "is_alert when k of the last n windows cross LOW (default 1: every window alone; "
                  "the agent's default is 2 of 3)");
  cmd->add_option("--debounce-n", a->debounce.n, "Debounce window n (default 1)");
  cmd->add_flag("--clips", a->clips,
                "One line per input (clip): the geometric mean of its window scores");
  cmd->add_flag("--health", a->health,
                "Add the agent's monitors to every window: health over time (CUSUM warning/alarm "
                "against the commissioning scores), input problems; as `tend run` decides them");
  cmd->callback([a] { DoScore(*a); });
}

}  // namespace tend::cli
