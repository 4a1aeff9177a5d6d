// `tend train`: fit a detector on normal data only and write one self-describing ONNX model.
// Also commissioning from a live source (--duration) and recalibration of an existing model on
// new normal data (--recalibrate).
#include <fmt/format.h>
#include <unistd.h>

#include <Eigen/Core>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>

#include "agent/dataset.h"
#include "agent/input_profile.h"
#include "agent/monitors.h"
#include "agent/served_model.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/vision_commands.h"
#include "core/config.h"
#include "core/fs.h"
#include "core/log.h"
#include "detect/detector.h"
#include "detect/onnx_export.h"
#include "detect/select.h"
#include "dsp/features.h"

namespace tend::cli {
namespace {

struct TrainArgs {
  std::vector<std::string> inputs, anomalous;
  std::string out;
  std::string config;
  std::string detector = "auto";
  std::string features = "auto";  // auto | press | bearing | vibration | sound
  std::string name = "press-anomaly", version = "1";
  std::string recalibrate;
  int window = agent::kDefaultWindow, hop = 0;
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
  if (cmd.count("--anomalous") == 0) TEND_RETURN_NOT_OK(c.Get("train.anomalous", a.anomalous));
  if (cmd.count("--out") == 0) TEND_RETURN_NOT_OK(c.Get("train.out", a.out));
  return c.CheckNoUnknownKeys();
}

std::vector<agent::InputSpec> ParseInputs(const std::vector<std::string>& specs) {
  std::vector<agent::InputSpec> inputs;
  for (auto& s : specs) inputs.push_back(OrDie(agent::InputSpec::Parse(s)));
  return inputs;
}

// Windowing and features: from the model being recalibrated, or chosen from the input (what
// the user set explicitly wins); the choice is printed and kept for the model card.
struct Plan {
  agent::WindowingSpec windowing;
  dsp::FeatureSpec spec;
  nlohmann::json choice = nlohmann::json::object();
  bool clips = false;
  std::vector<std::string> detectors;  // preference order (empty: detect's default)
};

Plan MakePlan(const TrainArgs& a, const CLI::App& cmd, const std::vector<agent::InputSpec>& inputs,
              const sources::SourceOptions& so, const agent::ServedModel* base) {
  Plan p;
  if (base) {
    // Same architecture, same windowing and features: only standardisation and thresholds move.
    p.windowing = base->windowing();
    p.spec = OrDie(agent::FeaturesFromCard(base->card()), a.recalibrate);
    return p;
  }
  agent::InputRequest req;
  req.features = a.features;
  if (cmd.count("--window") || a.window != agent::kDefaultWindow) req.window = a.window;
  req.hop = a.hop;
  if (a.trigger) req.trigger = true;
  if (!a.trigger && cmd.count("--hop")) req.trigger = false;
  req.pretrigger = a.pretrigger;
  req.trigger_threshold = a.trigger_threshold;
  auto c = OrDie(agent::ChooseFromInputs(inputs, so, req), inputs[0].ToString());
  for (const auto& r : c.reasons) std::printf("%s\n", r.c_str());
  p.windowing = c.windowing;
  p.spec = c.spec;
  p.choice = c.ToJson();
  p.clips = c.kind == "clips";
  p.detectors = c.detectors;
  return p;
}

detect::Matrix ToMatrix(const agent::FeatureRows& r) {
  Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> m(
      r.values.data(), r.rows, static_cast<Eigen::Index>(r.features));
  return m;
}

agent::FeatureRows ReadRows(const std::vector<agent::InputSpec>& inputs,
                            const sources::SourceOptions& so, const Plan& plan, double duration_s,
                            const char* what) {
  Progress progress(what);
  auto rows = OrDie(
      agent::ExtractFeatureRows(inputs, so, plan.windowing, plan.spec, duration_s, [&](int64_t n) {
        if (n % 50 == 0) progress.Update(-1, fmt::format("{} windows", n));
      }));
  progress.Done(fmt::format("{} windows", rows.rows));
  return rows;
}

// The detector to train: the one asked for, or the best of the candidates (detect/select.h).
std::string PickDetector(const TrainArgs& a, const detect::Matrix& x, const std::vector<int>& clip,
                         const detect::Matrix* anomalous, const std::vector<int>& anomalous_clip,
                         const Plan& plan, const detect::TrainOptions& topt,
                         nlohmann::json& report) {
  if (a.detector != "auto") return a.detector;
  detect::SelectOptions sopt;
  if (!plan.detectors.empty()) sopt.candidates = plan.detectors;
  sopt.train = topt;
  sopt.train.progress = nullptr;
  const detect::Rows normal{&x, plan.clips ? clip : std::vector<int>{}};
  const detect::Rows anom{anomalous, plan.clips ? anomalous_clip : std::vector<int>{}};
  auto sel = OrDie(
      detect::SelectDetector(normal, anomalous ? &anom : nullptr, plan.spec.FeatureNames(), sopt),
      "detector selection");
  for (const auto& c : sel.report.value("candidates", nlohmann::json::array())) {
    std::string what;
    if (c.contains("skipped")) {
      what = "skipped: " + c["skipped"].get<std::string>();
    } else if (c.contains("auc")) {
      what = fmt::format("AUC {:.4f}", c["auc"].get<double>());
    } else {
      what =
          fmt::format("{} later normal windows over LOW", c["later_windows_over_low"].get<int>());
    }
    std::printf("  %-12s %s\n", c["detector"].get<std::string>().c_str(), what.c_str());
  }
  std::printf("detector: %s\n", sel.reason.c_str());
  report = sel.report;
  return sel.detector;
}

// What the model file says about itself beyond the detector: identity, feature spec, training
// summary (inputs, the choices made and why) and the feature reference for drift monitoring.
detect::ModelCard MakeCard(const TrainArgs& a, const CLI::App& cmd, const Plan& plan,
                           const agent::ServedModel* base, const agent::FeatureRows& rows,
                           const nlohmann::json& selection, double train_seconds) {
  detect::ModelCard card;
  if (base) {
    card = base->card();
    card.version = cmd.count("--version") ? a.version : card.version + ".r";
  } else {
    card.name = a.name;
    card.version = a.version;
    card.feature_spec = {{"windowing", plan.windowing.ToJson()}, {"features", plan.spec.ToJson()}};
    card.input_kind = "features";
    card.feature_names = plan.spec.FeatureNames();
  }
  card.created = detect::NowIso8601Utc();
  nlohmann::json srcs = nlohmann::json::array();
  for (auto& in : ParseInputs(a.inputs)) srcs.push_back(in.ToString());
  const auto& w = plan.windowing;
  card.training_summary = {{"inputs", srcs},
                           {"windows", rows.rows},
                           {"signal_s", static_cast<double>(rows.rows) * w.window / w.sample_rate},
                           {"recalibrated_from", a.recalibrate},
                           {"train_seconds", train_seconds}};
  if (!base) {
    card.training_summary["input_choice"] = plan.choice;
    if (!selection.is_null()) card.training_summary["detector_selection"] = selection;
    if (plan.clips) card.training_summary["clip_score"] = "geometric_mean";
  } else if (base->card().training_summary.contains("clip_score")) {
    card.training_summary["clip_score"] = base->card().training_summary["clip_score"];
  }
  // The commissioning distribution of every feature, for drift monitoring in service.
  if (auto ref = DriftReference::FromRows(rows.values, rows.features)) {
    card.feature_reference = agent::FeatureReferenceJson(*ref);
  }
  return card;
}

detect::TrainedDetector Fit(const TrainArgs& a, const Plan& plan, const detect::Matrix& x,
                            detect::TrainOptions& topt, bool recalibrate) {
  Progress tp("training");
  topt.progress = [&](const std::string& stage, double frac) { tp.Update(frac, stage); };
  detect::TrainedDetector det =
      recalibrate
          ? OrDie(detect::Recalibrate(
                      OrDie(detect::DetectorFromModel(a.recalibrate), a.recalibrate), x, topt),
                  "recalibration")
          : OrDie(detect::Train(x, plan.spec.FeatureNames(), topt), "training");
  topt.progress = nullptr;
  tp.Done(det.detector);
  return det;
}

void DoTrain(TrainArgs& a, CLI::App& cmd) {
  OrDie(LoadTrainConfig(a, cmd));
  if (a.inputs.empty()) Die("no training input given (--input FILE... or sim:...)");
  if (!a.recalibrate.empty() && IsImageModelFile(a.recalibrate)) {
    if (!IsImageInputs(a.inputs)) Die("--recalibrate of an image model takes image sets (--input)");
    return RunImageRecalibrate(a.recalibrate, a.inputs, a.out, a.holdout,
                               cmd.count("--version") ? a.version : "", a.image.threads);
  }
  if (IsImageInputs(a.inputs)) {
    a.image.detector = a.detector;  // auto, padim or patchcore
    return RunImageTrain(cmd, a.image, a.inputs, a.out, a.name, a.version, a.holdout, a.seed);
  }
  if (a.out.empty()) Die("no output model path given (--out MODEL.onnx)");
  if (!(a.holdout > 0 && a.holdout < 0.9)) Die("--holdout must be in (0, 0.9)");
  const auto inputs = ParseInputs(a.inputs);
  sources::SourceOptions so;
  so.sample_rate = a.sample_rate;
  so.channels = a.channels;
  so.wav_channel = a.channel;
  std::unique_ptr<agent::ServedModel> base;
  if (!a.recalibrate.empty()) {
    agent::ServeOptions sopt;
    sopt.warmup_runs = 0;
    base = OrDie(agent::ServedModel::Load(a.recalibrate, sopt), "recalibrate");
  }
  const Plan plan = MakePlan(a, cmd, inputs, so, base.get());
  const auto t0 = std::chrono::steady_clock::now();
  const auto rows = ReadRows(inputs, so, plan, a.duration_s, "reading windows");
  if (rows.rows == 0)
    Die("no windows found in the training input (too short, or no strokes triggered)");
  const detect::Matrix x = ToMatrix(rows);
  std::optional<agent::FeatureRows> anomalous_rows;
  detect::Matrix anomalous;
  if (!a.anomalous.empty() && !base) {
    anomalous_rows = ReadRows(ParseInputs(a.anomalous), so, plan, -1, "reading anomalous windows");
    anomalous = ToMatrix(*anomalous_rows);
  }
  detect::TrainOptions topt;
  topt.holdout_fraction = a.holdout;
  topt.seed = a.seed;
  nlohmann::json selection;
  if (!base) {
    topt.detector = PickDetector(a, x, rows.clip, anomalous_rows ? &anomalous : nullptr,
                                 anomalous_rows ? anomalous_rows->clip : std::vector<int>{}, plan,
                                 topt, selection);
  }
  const detect::TrainedDetector det = Fit(a, plan, x, topt, base != nullptr);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const detect::ModelCard card = MakeCard(a, cmd, plan, base.get(), rows, selection, seconds);
  auto bytes = OrDie(detect::ExportOnnx(det, card), "export");
  OrDie(fs::WriteFileAtomic(a.out, bytes), "writing model");
  const int n_fit = det.calibration.value("n_train", 0);
  std::printf(
      "trained %s on %lld windows (%d fitted, %lld held out for thresholds; %zu features, %s "
      "windowing): thresholds LOW %.4g, MEDIUM %.4g, HIGH %.4g -> %s\n",
      det.detector.c_str(), static_cast<long long>(rows.rows), n_fit,
      static_cast<long long>(rows.rows - n_fit), rows.features, plan.windowing.mode.c_str(),
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
  cmd->add_option("--anomalous", a->anomalous,
                  "Anomalous examples, only to choose the detector (--detector auto)");
  cmd->add_option("--detector", a->detector,
                  "auto (compare and keep the best) | mahalanobis | broadband | pca | autoencoder");
  cmd->add_option("--features", a->features,
                  "Feature set: auto (from the input) | press | bearing | vibration | sound");
  cmd->add_option("--name", a->name, "Model name");
  cmd->add_option("--version", a->version, "Model version");
  cmd->add_option("--window", a->window, "Window length in samples");
  cmd->add_option("--hop", a->hop, "Hop in samples (fixed windowing; default = window)");
  cmd->add_flag("--trigger", a->trigger,
                "Stroke-triggered windows (default for sim sources and recordings with regular "
                "strokes)");
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
