// Image models in train / score / eval / bench (see vision_commands.h).
#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/vision_commands.h"
#include "core/fs.h"
#include "inspect/image_bench.h"
#include "inspect/image_eval.h"
#include "inspect/image_train.h"
#include "model/latency.h"
#include "sources/frame_source.h"
#include "vision/decode.h"
#include "vision/overlay.h"
#include "vision/preprocess.h"

namespace tend::cli {

namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kBackboneFile = "mobilenet_v2_imagenet.onnx";

std::pair<int, int> ParseSize(const std::string& flag, const std::string& s) {
  int w = 0, h = 0;
  char x = 0;
  if (std::sscanf(s.c_str(), "%d%c%d", &w, &x, &h) != 3 || (x != 'x' && x != 'X') || w <= 0 ||
      h <= 0) {
    Die(fmt::format("{} '{}': expected WIDTHxHEIGHT, e.g. 256x256", flag, s));
  }
  return {w, h};
}

vision::Roi ParseRoi(const std::string& s) {
  vision::Roi r;
  if (s.empty()) return r;
  if (std::sscanf(s.c_str(), "%d,%d,%d,%d", &r.x, &r.y, &r.width, &r.height) != 4 || r.width <= 0 ||
      r.height <= 0) {
    Die("--roi '" + s + "': expected X,Y,WIDTH,HEIGHT in frame pixels");
  }
  return r;
}

}  // namespace

std::string DefaultBackbone() {
  if (const char* env = std::getenv("TEND_BACKBONE"); env && *env) return env;
  std::error_code ec;
  stdfs::path exe = stdfs::read_symlink("/proc/self/exe", ec).parent_path();
  for (const auto& dir : {exe / "backbones", exe / ".." / "share" / "tend" / "backbones",
                          exe / ".." / "third_party" / "backbones"}) {
    if (stdfs::exists(dir / kBackboneFile, ec))
      return (dir / kBackboneFile).lexically_normal().string();
  }
  return "";
}

void AddImageTrainFlags(CLI::App& cmd, ImageTrainFlags& f) {
  cmd.add_option("--backbone", f.backbone,
                 "Images: ONNX CNN backbone (default: MobileNetV2, see docs/vision.md)");
  cmd.add_option("--layers", f.layers,
                 "Images: backbone layers (tensor or node names) whose features are used")
      ->delimiter(',');
  cmd.add_option("--size", f.size, "Images: network input WIDTHxHEIGHT")->capture_default_str();
  cmd.add_option("--color", f.color, "Images: grey or rgb")->check(CLI::IsMember({"grey", "rgb"}));
  cmd.add_option("--roi", f.roi,
                 "Images: region of interest X,Y,WIDTH,HEIGHT in frame pixels (default: all)");
  cmd.add_option("--fit", f.fit,
                 "Images: stretch the ROI to --size, or letterbox it (keep its aspect ratio, pad; "
                 "padding is masked out of the score)")
      ->check(CLI::IsMember({"stretch", "letterbox"}))
      ->capture_default_str();
  cmd.add_option("--intensity", f.intensity, "Images: standardize (per frame) or raw")
      ->check(CLI::IsMember({"standardize", "raw"}));
  cmd.add_option("--mean", f.mean, "Images: per-channel mean on [0,1] (default: the backbone's)")
      ->delimiter(',');
  cmd.add_option("--std", f.std, "Images: per-channel std on [0,1] (default: the backbone's)")
      ->delimiter(',');
  cmd.add_option("--dims", f.dims, "Images: embedding channels kept (random subset)")
      ->capture_default_str();
  cmd.add_option("--eps", f.eps, "Images: covariance ridge")->capture_default_str();
  cmd.add_option("--coreset", f.coreset,
                 "Images, --detector patchcore: fraction of the good patches kept in the bank")
      ->capture_default_str();
  cmd.add_option("--coreset-max", f.coreset_max,
                 "Images, --detector patchcore: at most this many bank patches (0 = no cap)");
  cmd.add_option("--smooth", f.smooth,
                 "Images: Gaussian smoothing of the anomaly map before its maximum (sigma in "
                 "grid cells; 0 = none)")
      ->check(CLI::Range(0.0, 16.0))
      ->capture_default_str();
  cmd.add_option(
         "--pool", f.pool,
         "Images: each patch embedding averages its POOLxPOOL neighbourhood (odd; 1 = none)")
      ->check(CLI::Range(1, 15))
      ->capture_default_str();
  cmd.add_option("--border", f.border,
                 "Images: mirror the input BORDER pixels out on each side before the backbone, so "
                 "patches at the frame's edge see mirrored content, not zero padding (0 = none; a "
                 "multiple of the coarsest layer's stride)")
      ->check(CLI::Range(0, 256))
      ->capture_default_str();
  cmd.add_flag("--flip", f.flip, "Images: also fit each fitting image mirrored left-right");
  cmd.add_option("--threads", f.threads,
                 "Images: ONNX Runtime threads while fitting (0 = all cores)");
}

bool IsImageInputs(const std::vector<std::string>& inputs) {
  size_t images = 0;
  for (const auto& in : inputs) images += sources::IsFrameSourceSpec(in) ? 1 : 0;
  if (images != 0 && images != inputs.size())
    Die("--input mixes image folders with signal recordings");
  return images != 0 && images == inputs.size();
}

void RunImageTrain(const CLI::App& cmd, const ImageTrainFlags& f,
                   const std::vector<std::string>& inputs, const std::string& out,
                   const std::string& name, const std::string& version, double holdout,
                   uint64_t seed) {
  if (out.empty()) Die("no output model path given (--out MODEL.onnx)");
  inspect::ImageTrainOptions o;
  o.inputs = inputs;
  o.backbone = f.backbone.empty() ? DefaultBackbone() : f.backbone;
  if (o.backbone.empty()) {
    Die(Error::NotFound(
        "no default image backbone found: run scripts/bootstrap.sh (it builds "
        "third_party/backbones/mobilenet_v2_imagenet.onnx) or pass --backbone F.onnx"));
  }
  auto [w, h] = ParseSize("--size", f.size);
  o.preprocess.width = w;
  o.preprocess.height = h;
  o.preprocess.color = f.color;
  o.preprocess.channels = 3;
  o.preprocess.roi = ParseRoi(f.roi);
  o.preprocess.intensity = f.intensity;
  o.preprocess.fit = f.fit;
  if (!f.mean.empty() || !f.std.empty()) {
    if (f.mean.size() != 3 || f.std.size() != 3)
      Die("--mean and --std take three values each (R,G,B)");
    for (size_t c = 0; c < 3; ++c) {
      o.preprocess.mean[c] = f.mean[c];
      o.preprocess.std[c] = f.std[c];
    }
    o.mean_std_given = true;
  }
  o.embedding.layers = f.layers;
  o.embedding.dims = f.dims;
  o.embedding.pool = f.pool;
  o.embedding.border = f.border;
  o.embedding.seed = seed;
  o.eps = f.eps;
  o.detector = f.detector == "auto" ? "padim" : f.detector;
  if (o.detector != "padim" && o.detector != "patchcore")
    Die("--detector '" + f.detector + "': image models take padim or patchcore");
  o.coreset.fraction = f.coreset;
  o.coreset.max_size = f.coreset_max;
  o.coreset.seed = seed;
  o.map.smooth_sigma = f.smooth;
  o.flip = f.flip;
  o.holdout = holdout;
  o.name = cmd.count("--name") ? name : "part-inspection";
  o.version = version;
  o.threads = f.threads;
  auto progress = std::make_shared<Progress>("training");
  o.progress = [progress](const std::string& stage, double frac) { progress->Update(frac, stage); };
  auto r = OrDie(inspect::TrainImageModel(o), "training");
  progress->Done("done");
  OrDie(fs::WriteFileAtomic(out, r.bytes), "writing model");
  const auto& t = r.card.thresholds;
  std::printf(
      "trained %s on %lld good images (%lld held out for thresholds), %s: thresholds LOW %.4g, "
      "MEDIUM %.4g, HIGH %.4g -> %s\n",
      o.detector.c_str(), static_cast<long long>(r.fit_images),
      static_cast<long long>(r.holdout_images),
      fmt::format("grid {}x{}, {} dims", r.card.feature_spec["detector"]["grid"][0].get<int>(),
                  r.card.feature_spec["detector"]["grid"][1].get<int>(),
                  r.card.feature_spec["detector"]["dims"].get<int>())
          .c_str(),
      static_cast<double>(t.low), static_cast<double>(t.medium), static_cast<double>(t.high),
      out.c_str());
}

bool IsImageModelFile(const std::string& path) {
  auto r = inspect::IsImageModel(path);
  return r && *r;
}

namespace {

std::unique_ptr<inspect::ImageModel> LoadImageModel(const std::string& path, int threads = 1,
                                                    int warmup = 3) {
  inspect::ImageServeOptions so;
  so.session.intra_op_threads = threads;
  so.warmup_runs = warmup;
  return OrDie(inspect::ImageModel::Load(path, so));
}

// frame.png -> DIR/frame.overlay.png: the frame with its anomaly map, coloured from LOW/2 to HIGH.
Status WriteOverlay(const std::string& dir, const sources::Frame& f, const inspect::ImageModel& m,
                    const inspect::ImageScore& s) {
  vision::Image out;
  vision::OverlayOptions o;
  o.lo = m.thresholds().low * 0.5f;
  o.hi = m.thresholds().high;
  if (m.preprocess().fit == "letterbox") {
    // The map covers the letterboxed canvas (padding included): draw it over that canvas.
    vision::Preprocessor pre(m.preprocess());
    vision::Image canvas;
    TEND_RETURN_NOT_OK(pre.RunU8(f.image.view(), canvas));
    TEND_RETURN_NOT_OK(
        vision::RenderOverlay(canvas.view(), {}, s.map, s.map_width, s.map_height, o, out));
  } else {
    TEND_RETURN_NOT_OK(vision::RenderOverlay(f.image.view(), m.preprocess().roi, s.map, s.map_width,
                                             s.map_height, o, out));
  }
  TEND_ASSIGN_OR_RETURN(std::string png, vision::EncodePng(out.view()));
  return fs::WriteFileAtomic(
      (stdfs::path(dir) / (stdfs::path(f.name).stem().string() + ".overlay.png")).string(), png);
}

}  // namespace

void RunImageScore(const std::string& model_path, const std::vector<std::string>& inputs,
                   const std::string& out_path, const std::string& overlay_dir) {
  auto model = LoadImageModel(model_path);
  if (!overlay_dir.empty()) OrDie(fs::MakeDirs(overlay_dir), "--overlays");
  Decider decider(model->thresholds(), DebounceOptions{1, 1});
  std::string lines;
  int64_t n = 0, rejects = 0;
  for (const auto& in : inputs) {
    OrDie(inspect::ScoreImageSet(
        *model, in, [&](const sources::Frame& f, const inspect::ImageScore& s) -> Status {
          Decision d;
          d.window_index = n++;
          d.anomaly_score = s.score;
          decider.Decide(d);
          json j = {{"index", d.window_index},        {"file", f.path},
                    {"anomaly_score", s.score},       {"severity", SeverityName(d.severity)},
                    {"is_alert", d.is_alert},         {"preprocess_ms", s.preprocess_ms},
                    {"inference_ms", s.inference_ms}, {"scoring_ms", s.scoring_ms}};
          lines += j.dump() + "\n";
          if (d.is_alert) {
            ++rejects;
            if (!overlay_dir.empty()) TEND_RETURN_NOT_OK(WriteOverlay(overlay_dir, f, *model, s));
          }
          return Ok();
        }));
  }
  if (out_path.empty()) {
    std::fputs(lines.c_str(), stdout);
  } else {
    OrDie(fs::WriteFileAtomic(out_path, lines), "--out");
  }
  std::fprintf(stderr, "scored %lld images, %lld rejects (score >= LOW %.4g)\n",
               static_cast<long long>(n), static_cast<long long>(rejects),
               static_cast<double>(model->thresholds().low));
}

void RunImageEval(const std::string& model_path, const std::vector<std::string>& normal,
                  const std::vector<std::string>& anomalous, bool as_json,
                  const std::string& plot) {
  auto model = LoadImageModel(model_path);
  auto score_all = [&](const std::vector<std::string>& sets) {
    std::vector<inspect::ScoredImages> v;
    for (const auto& s : sets) v.push_back(OrDie(inspect::ScoreImageSet(*model, s)));
    return v;
  };
  auto nv = score_all(normal);
  auto av = score_all(anomalous);
  json j = inspect::EvaluationReport(model->thresholds(), nv, av);
  j["model"] = model_path;
  if (!plot.empty()) {
    OrDie(
        fs::WriteFileAtomic(plot, inspect::ScoreDistributionSvg(model->thresholds(), nv, av,
                                                                "tend eval: " + model->card().name +
                                                                    " v" + model->card().version)),
        "writing plot");
    j["plot"] = plot;
  }
  if (as_json) {
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("model %s: %zu good images, %zu defect images, ROC AUC %.4f\n\n", model_path.c_str(),
              j["normal_images"].get<size_t>(), j["anomalous_images"].get<size_t>(),
              j["auc"].get<double>());
  std::printf("%-8s %10s %8s %14s %9s\n", "tier", "threshold", "recall", "false-rejects",
              "rejects");
  for (const char* t : {"LOW", "MEDIUM", "HIGH"}) {
    const auto& r = j["at_threshold"][t];
    std::printf("%-8s %10.4g %8.4f %14.4f %9lld\n", t, r["threshold"].get<double>(),
                r["recall"].get<double>(), r["false_reject_rate"].get<double>(),
                r["rejects"].get<long long>());
  }
  std::printf("\n%-44s %7s %7s %10s %10s %10s\n", "input", "images", "AUC", "rec@LOW", "rec@MED",
              "rec@HIGH");
  for (const auto& r : j["anomalous_inputs"]) {
    std::string in = r["input"];
    if (in.size() > 44) in = "..." + in.substr(in.size() - 41);
    std::printf("%-44s %7zu %7.4f %10.4f %10.4f %10.4f\n", in.c_str(), r["images"].get<size_t>(),
                r["auc"].get<double>(), r["recall_at_LOW"].get<double>(),
                r["recall_at_MEDIUM"].get<double>(), r["recall_at_HIGH"].get<double>());
  }
  for (const auto& r : j["normal_inputs"]) {
    std::string in = r["input"];
    if (in.size() > 44) in = "..." + in.substr(in.size() - 41);
    std::printf("%-44s %7zu %7s  false rejects at LOW %.4f, MEDIUM %.4f, HIGH %.4f\n", in.c_str(),
                r["images"].get<size_t>(), "-", r["false_reject_rate_at_LOW"].get<double>(),
                r["false_reject_rate_at_MEDIUM"].get<double>(),
                r["false_reject_rate_at_HIGH"].get<double>());
  }
  if (!plot.empty()) std::printf("\nplot: %s\n", plot.c_str());
}

void AddImageBenchFlags(CLI::App& cmd, ImageBenchFlags& f) {
  cmd.add_option("--input,-i", f.inputs,
                 "--pipeline with an image model: image folders to cycle through");
  cmd.add_option(
      "--frame-size", f.frame_size,
      "--pipeline with an image model: resize every image to WxH and re-encode it as JPEG first");
}

namespace {

json Stats(const std::vector<double>& v) {
  auto st = model::ComputeLatencyStats(v, 0);
  return {{"mean_ms", st.mean_ms},
          {"p50_ms", st.p50_ms},
          {"p95_ms", st.p95_ms},
          {"p99_ms", st.p99_ms},
          {"p999_ms", st.p999_ms},
          {"max_ms", st.max_ms},
          {"n", st.n}};
}

}  // namespace

void RunImageBench(const std::string& model_path, const ImageBenchFlags& f, int frames, int warmup,
                   int threads, bool as_json) {
  if (f.inputs.empty())
    Die("bench --pipeline with an image model needs --input DIR (images to decode)");
  auto model = LoadImageModel(model_path, threads, 5);
  inspect::ImageBenchOptions o;
  o.inputs = f.inputs;
  o.frames = frames;
  o.warmup = warmup;
  if (!f.frame_size.empty())
    std::tie(o.frame_width, o.frame_height) = ParseSize("--frame-size", f.frame_size);
  auto r = OrDie(inspect::BenchImagePipeline(*model, o), "bench");
  json j;
  j["mode"] = "pipeline";
  j["input"] = "image model";
  j["model"] = model_path;
  j["provider"] = model->info().provider;
  j["threads"] = threads;
  j["frames"] = r.total.size();
  j["images"] = r.images;
  j["frame_size"] =
      f.frame_size.empty() ? "as stored" : fmt::format("{}x{}", r.frame_width, r.frame_height);
  j["split"] = model->split();
  const std::pair<const char*, const std::vector<double>*> stages[] = {
      {"decode", &r.decode},   {"preprocess", &r.preprocess}, {"inference", &r.inference},
      {"scoring", &r.scoring}, {"decision", &r.decision},     {"total", &r.total}};
  for (const auto& [name, v] : stages) j["stages"][name] = Stats(*v);
  if (as_json) {
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf(
      "pipeline    image model, %zu frames measured after %d warm-up (%lld images, frames %s)\n",
      r.total.size(), warmup, static_cast<long long>(r.images),
      j["frame_size"].get<std::string>().c_str());
  std::printf("model       %s\nprovider    %s, %d thread(s)\n\n", model_path.c_str(),
              model->info().provider.c_str(), threads);
  std::printf("%-12s %9s %9s %9s %9s %9s\n", "stage ms", "mean", "p50", "p95", "p99", "max");
  for (const auto& [name, v] : stages) {
    const auto& s = j["stages"][name];
    std::printf("%-12s %9.3f %9.3f %9.3f %9.3f %9.3f\n", name, s["mean_ms"].get<double>(),
                s["p50_ms"].get<double>(), s["p95_ms"].get<double>(), s["p99_ms"].get<double>(),
                s["max_ms"].get<double>());
  }
}

}  // namespace tend::cli
