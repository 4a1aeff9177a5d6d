// `tend train`: fit a detector on normal data only and write one self-describing ONNX model.
// Also commissioning from a live source (--duration) and recalibration of an existing model on
// new normal data (--recalibrate).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <unistd.h>

#include <Eigen/Core>
#include <fmt/format.h>

#include "agent/dataset.h"
#include "agent/served_model.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/vision_commands.h"
#include "core/config.h"
#include "core/fs.h"
#include "core/log.h"
#include "detect/detector.h"
#include "detect/onnx_export.h"
#include "dsp/features.h"

namespace tend::cli {
namespace {

struct TrainArgs {
  std::vector<std::string> inputs;
  std::string out;
  std::string config;
  std::string detector = "mahalanobis";
  std::string features = "auto";  // press | bearing | auto
  std::string name = "press-anomaly", version = "1";
  std::string recalibrate;
  int window = 2000, hop = 0;
  bool trigger = false;
  int pretrigger = 200;
  double trigger_threshold = 6.0;
  double duration_s = -1;
  double holdout = 0.25;
  int channel = -1;
  double sample_rate = 0;
  int channels = 0;
  uint64_t seed = 1;
  ImageTrainFlags image;
};

Status LoadTrainConfig(TrainArgs& a, CLI::App& cmd) {
  if (a.config.empty()) return Ok();
  TEND_ASSIGN_OR_RETURN(auto c, Config::LoadFile(a.config));
  auto from = [&](const char* flag, const char* key, auto& field) {
    return FlagOrConfig(c, cmd, flag, key, field);
  };
  TEND_RETURN_NOT_OK(from("--detector", "train.detector", a.detector));
  TEND_RETURN_NOT_OK(from("--features", "train.features", a.features));
  TEND_RETURN_NOT_OK(from("--name", "train.name", a.name));
  TEND_RETURN_NOT_OK(from("--version", "train.version", a.version));
  TEND_RETURN_NOT_OK(from("--window", "train.window", a.window));
  TEND_RETURN_NOT_OK(from("--hop", "train.hop", a.hop));
  TEND_RETURN_NOT_OK(from("--trigger", "train.trigger", a.trigger));
  TEND_RETURN_NOT_OK(from("--pretrigger", "train.pretrigger", a.pretrigger));
  TEND_RETURN_NOT_OK(from("--trigger-threshold", "train.trigger_threshold", a.trigger_threshold));
  TEND_RETURN_NOT_OK(from("--holdout", "train.holdout", a.holdout));
  if (cmd.count("--input") == 0) TEND_RETURN_NOT_OK(c.Get("train.inputs", a.inputs));
  if (cmd.count("--out") == 0) TEND_RETURN_NOT_OK(c.Get("train.out", a.out));
  return c.CheckNoUnknownKeys();
}

void DoTrain(TrainArgs& a, CLI::App& cmd) {
  OrDie(LoadTrainConfig(a, cmd));
  if (a.inputs.empty()) Die("no training input given (--input FILE... or sim:...)");
  if (IsImageInputs(a.inputs)) {
    return RunImageTrain(cmd, a.image, a.inputs, a.out, a.name, a.version, a.holdout, a.seed);
  }
  if (a.out.empty()) Die("no output model path given (--out MODEL.onnx)");
  if (!(a.holdout > 0 && a.holdout < 0.9)) Die("--holdout must be in (0, 0.9)");
  std::vector<agent::InputSpec> inputs;
  for (auto& s : a.inputs) inputs.push_back(OrDie(agent::InputSpec::Parse(s)));
  sources::SourceOptions so;
  so.sample_rate = a.sample_rate;
  so.channels = a.channels;
  so.wav_channel = a.channel;

  std::unique_ptr<agent::ServedModel> base;
  agent::WindowingSpec w;
  dsp::FeatureSpec spec;
  if (!a.recalibrate.empty()) {
    // Same architecture, same windowing and features: only standardisation and thresholds move.
    agent::ServeOptions sopt;
    sopt.warmup_runs = 0;
    base = OrDie(agent::ServedModel::Load(a.recalibrate, sopt), "recalibrate");
    w = base->windowing();
    spec = OrDie(agent::FeaturesFromCard(base->card()), a.recalibrate);
  } else {
    auto info = OrDie(agent::ProbeStream(inputs[0], so), inputs[0].source);
    w.sample_rate = info.sample_rate;
    w.channels = info.channels;
    w.window = a.window;
    bool sim = inputs[0].source.rfind("sim", 0) == 0;
    if (a.trigger || (sim && cmd.count("--hop") == 0 && cmd.count("--trigger") == 0)) {
      w.mode = "trigger";
      w.trigger.length = a.window;
      w.trigger.pretrigger = a.pretrigger;
      w.trigger.threshold = a.trigger_threshold;
    } else {
      w.mode = "fixed";
      w.hop = a.hop > 0 ? a.hop : a.window;
    }
    OrDie(w.Validate());
    std::string kind = a.features;
    if (kind == "auto") kind = "press";
    if (kind == "press") {
      spec = dsp::FeatureSpec::DefaultPress(w.sample_rate, w.channels, w.window);
    } else if (kind == "bearing") {
      spec = dsp::FeatureSpec::DefaultBearing(w.sample_rate, w.channels, w.window);
    } else {
      Die("--features must be press, bearing or auto, got '" + kind + "'");
    }
    if (!info.channel_names.empty() && info.channel_names.size() == static_cast<size_t>(w.channels)) {
      spec.channel_names = info.channel_names;
    }
    OrDie(spec.Validate(), "feature spec");
  }

  auto extractor = OrDie(dsp::FeatureExtractor::Create(spec));
  const size_t nf = spec.Size();
  std::vector<float> rows;
  std::vector<float> feat(nf);
  int64_t n = 0;
  auto t0 = std::chrono::steady_clock::now();
  Progress progress("reading windows");
  OrDie(agent::ForEachWindow(inputs, so, w, a.duration_s,
                             [&](std::span<const float> win, const agent::WindowInfo& info) -> Status {
                               auto st = extractor->Compute(win, feat);
                               if (!st) {
                                 return Fail(st.error().Wrap(fmt::format(
                                     "{} window {} (t={:.3f}s)", info.input->ToString(),
                                     info.index, info.t_start_s)));
                               }
                               rows.insert(rows.end(), feat.begin(), feat.end());
                               ++n;
                               if (n % 50 == 0) progress.Update(-1, fmt::format("{} windows", n));
                               return Ok();
                             }));
  progress.Done(fmt::format("{} windows", n));
  if (n == 0) Die("no windows found in the training input (too short, or no strokes triggered)");
  Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> m(
      rows.data(), n, static_cast<Eigen::Index>(nf));
  detect::Matrix x = m;

  detect::TrainOptions topt;
  topt.detector = a.detector;
  topt.holdout_fraction = a.holdout;
  topt.seed = a.seed;
  Progress tp("training");
  topt.progress = [&](const std::string& stage, double frac) { tp.Update(frac, stage); };
  detect::TrainedDetector det;
  detect::ModelCard card;
  if (base) {
    auto old = OrDie(detect::DetectorFromModel(a.recalibrate), a.recalibrate);
    det = OrDie(detect::Recalibrate(old, x, topt), "recalibration");
    card = base->card();
    card.version = cmd.count("--version") ? a.version : card.version + ".r";
  } else {
    det = OrDie(detect::Train(x, spec.FeatureNames(), topt), "training");
    card.name = a.name;
    card.version = a.version;
    card.feature_spec = {{"windowing", w.ToJson()}, {"features", spec.ToJson()}};
    card.input_kind = "features";
    card.feature_names = spec.FeatureNames();
  }
  tp.Done(det.detector);
  card.detector = det.detector;
  card.created = detect::NowIso8601Utc();
  card.thresholds = det.thresholds;
  card.train_mean = det.mean;
  card.train_std = det.std;
  card.calibration = det.calibration;
  nlohmann::json srcs = nlohmann::json::array();
  for (auto& in : inputs) srcs.push_back(in.ToString());
  card.training_summary = {{"inputs", srcs},
                           {"windows", n},
                           {"signal_s", static_cast<double>(n) * w.window / w.sample_rate},
                           {"recalibrated_from", a.recalibrate},
                           {"train_seconds",
                            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()}};
  auto bytes = OrDie(detect::ExportOnnx(det, card), "export");
  OrDie(fs::WriteFileAtomic(a.out, bytes), "writing model");
  std::printf("trained %s on %lld windows (%zu features, %s windowing): thresholds LOW %.4g, MEDIUM %.4g, HIGH %.4g -> %s\n",
              det.detector.c_str(), static_cast<long long>(n), nf, w.mode.c_str(),
              static_cast<double>(det.thresholds.low), static_cast<double>(det.thresholds.medium),
              static_cast<double>(det.thresholds.high), a.out.c_str());
}

}  // namespace

void RegisterTrain(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  auto* cmd = app.add_subcommand("train", "Fit an anomaly detector on normal data and write a model");
  cmd->add_option("--input,-i", a->inputs,
                  "Normal data: WAV/CSV files (optionally FILE@START:END seconds), sim:..., or - (stdin)");
  cmd->add_option("--out,-o", a->out, "Output model (.onnx)");
  cmd->add_option("--config", a->config, "TOML file with a [train] table");
  cmd->add_option("--detector", a->detector, "mahalanobis | pca | autoencoder");
  cmd->add_option("--features", a->features, "Feature set: press | bearing | auto");
  cmd->add_option("--name", a->name, "Model name");
  cmd->add_option("--version", a->version, "Model version");
  cmd->add_option("--window", a->window, "Window length in samples");
  cmd->add_option("--hop", a->hop, "Hop in samples (fixed windowing; default = window)");
  cmd->add_flag("--trigger", a->trigger, "Stroke-triggered windows (default for sim sources)");
  cmd->add_option("--pretrigger", a->pretrigger, "Samples kept before a stroke onset");
  cmd->add_option("--trigger-threshold", a->trigger_threshold, "Onset threshold, x background RMS");
  cmd->add_option("--duration", a->duration_s, "Read at most this many seconds per input (live commissioning)");
  cmd->add_option("--holdout", a->holdout, "Fraction of windows (the last ones) held out for threshold calibration");
  cmd->add_option("--recalibrate", a->recalibrate, "Refit standardisation and thresholds of this model on new normal data");
  cmd->add_option("--channel", a->channel, "Use only this channel of multi-channel inputs");
  cmd->add_option("--sample-rate", a->sample_rate, "Sample rate for raw stdin / CSV without time column");
  cmd->add_option("--channels", a->channels, "Channel count for raw stdin");
  cmd->add_option("--seed", a->seed, "Random seed (autoencoder)");
  AddImageTrainFlags(*cmd, a->image);
  cmd->callback([a, cmd] { DoTrain(*a, *cmd); });
}

}  // namespace tend::cli
