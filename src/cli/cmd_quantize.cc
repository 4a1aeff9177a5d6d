// `tend quantize`: post-training INT8 quantisation (QDQ, calibrated on .npy windows) or FP16
// conversion of an ONNX model, with a report of what was converted and what stayed FP32.
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <sstream>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/vision_commands.h"
#include "core/fs.h"
#include "optimize/quantize.h"

namespace tend::cli {
namespace {

struct QuantizeArgs {
  std::string model, calibration, out, method = "minmax", trt_table;
  double percentile = 99.999;
  bool fp16 = false, per_tensor = false, reduce_range = false, symmetric = false, json = false;
  std::vector<std::string> ops, exclude, keep_fp32, calibrate_images, augment;
  int64_t max_samples = 0, min_samples = 16;
  int batch = 8, threads = 1;
};

std::string OpList(const std::map<std::string, int>& ops) {
  std::string s;
  for (const auto& [op, n] : ops) s += (s.empty() ? "" : ", ") + fmt::format("{} x{}", op, n);
  return s.empty() ? "none" : s;
}

int64_t FileSize(const std::string& p) {
  std::error_code ec;
  auto n = std::filesystem::file_size(p, ec);
  return ec ? 0 : static_cast<int64_t>(n);
}

std::string DefaultOut(const std::string& model, const char* suffix) {
  std::filesystem::path p(model);
  std::string stem = p.stem().string();
  return (p.parent_path() / (stem + "." + suffix + ".onnx")).string();
}

void DoQuantize(const QuantizeArgs& a) {
  if (!a.calibration.empty() && !a.calibrate_images.empty())
    Die("give either --calibration or --calibrate-images, not both");
  if (!a.augment.empty() && a.calibrate_images.empty()) Die("--augment needs --calibrate-images");
  if (!a.fp16 && a.calibration.empty() && a.calibrate_images.empty()) {
    Die("--calibration is required for INT8: a .npy (or a directory of them) shaped "
        "[N, ...model input dims...]; for an image model, --calibrate-images DIR...");
  }
  const std::string out = a.out.empty() ? DefaultOut(a.model, a.fp16 ? "fp16" : "int8") : a.out;
  {
    std::error_code ec;
    if (std::filesystem::exists(out, ec) && std::filesystem::equivalent(out, a.model, ec)) {
      Die("--out " + out + " is the input model; write the converted model elsewhere");
    }
  }
  optimize::NpyArray calib;
  if (!a.calibration.empty()) calib = OrDie(optimize::ReadNpyFileOrDir(a.calibration));
  if (!a.calibrate_images.empty()) {
    if (!IsImageModelFile(a.model)) Die(a.model + ": --calibrate-images needs an image model");
    calib = ImageCalibrationNpy(a.model, a.calibrate_images, a.augment, a.max_samples);
  }
  const bool have_calib = !calib.data.empty();

  optimize::ConvertedModel result;
  if (a.fp16) {
    optimize::Fp16Options o;
    o.keep_fp32_ops.insert(a.keep_fp32.begin(), a.keep_fp32.end());
    if (have_calib) o.check_data = &calib;
    o.threads = a.threads;
    result = OrDie(optimize::ConvertFp16(a.model, o));
  } else {
    optimize::QuantizeOptions o;
    o.method = OrDie(optimize::ParseCalibrationMethod(a.method), "--method");
    if (!(a.percentile > 50 && a.percentile <= 100)) {
      Die(fmt::format("--percentile {} must be in (50, 100]", a.percentile));
    }
    o.percentile = a.percentile;
    o.per_channel = !a.per_tensor;
    o.reduce_range = a.reduce_range;
    o.symmetric_activations = a.symmetric;
    for (const auto& op : a.ops) {
      if (!optimize::SupportedOpTypes().count(op)) {
        std::string all;
        for (const auto& s : optimize::SupportedOpTypes()) all += (all.empty() ? "" : ",") + s;
        Die(fmt::format("--ops: '{}' is not an op the quantiser converts ({})", op, all));
      }
      o.op_types.insert(op);
    }
    o.exclude_nodes.insert(a.exclude.begin(), a.exclude.end());
    o.max_samples = a.max_samples;
    o.min_samples = a.min_samples;
    o.batch = a.batch;
    o.threads = a.threads;
    o.all_tensor_ranges = !a.trt_table.empty();
    auto progress = std::make_shared<Progress>("calibrating");
    o.progress = [progress](const std::string& stage, int64_t done, int64_t total) {
      progress->Update(static_cast<double>(done) / static_cast<double>(total),
                       fmt::format("{} {}/{} windows", stage, done, total));
    };
    result = OrDie(optimize::QuantizeInt8(a.model, calib, o));
    progress->Done(fmt::format("{} windows", result.report.calibration_samples));
    if (!a.trt_table.empty()) {
      OrDie(fs::WriteFileAtomic(a.trt_table,
                                optimize::TensorRtCalibrationTable(result.report.ranges)),
            "--trt-calibration-table");
    }
  }
  OrDie(fs::WriteFileAtomic(out, result.bytes), "writing " + out);

  const auto& r = result.report;
  if (a.json) {
    auto j = r.ToJson();
    j["model"] = a.model;
    j["out"] = out;
    j["size_bytes_in"] = FileSize(a.model);
    j["size_bytes_out"] = FileSize(out);
    if (!a.trt_table.empty()) j["trt_calibration_table"] = a.trt_table;
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("%s -> %s (%s", a.model.c_str(), out.c_str(), r.precision.c_str());
  if (r.precision == "int8") {
    std::printf(", %s calibration on %lld windows", r.method.c_str(),
                static_cast<long long>(r.calibration_samples));
  }
  std::printf(")\n");
  std::printf("  converted:  %s\n", OpList(r.quantized_ops).c_str());
  if (r.fused_activations > 0) {
    std::printf("              (%d Relu/Clip folded into the preceding quantiser)\n",
                r.fused_activations);
  }
  std::printf("  left FP32:  %s\n", OpList(r.unquantized_ops).c_str());
  constexpr size_t kShown = 20;
  for (size_t i = 0; i < r.unquantized_nodes.size() && i < kShown; ++i) {
    std::printf("    %s\n", r.unquantized_nodes[i].c_str());
  }
  if (r.unquantized_nodes.size() > kShown) {
    std::printf("    ... and %zu more (--json lists all)\n", r.unquantized_nodes.size() - kShown);
  }
  for (const auto& c : r.checks) {
    std::printf(
        "  check on %lld windows: output '%s' max |diff| %.4g, mean |diff| %.4g (FP32 max |value| "
        "%.4g)\n",
        static_cast<long long>(r.check_samples), c.name.c_str(), c.max_abs_diff, c.mean_abs_diff,
        c.fp32_max_abs);
  }
  std::printf("  size: %.1f kB -> %.1f kB\n", static_cast<double>(FileSize(a.model)) / 1024.0,
              static_cast<double>(FileSize(out)) / 1024.0);
  if (!a.trt_table.empty()) {
    std::printf("  TensorRT calibration table (%zu tensors): %s\n", r.ranges.size(),
                a.trt_table.c_str());
  }
  std::printf(
      "  measure accuracy before shipping: tend compare %s %s --validation VAL.npy --labels "
      "LABELS.npy\n",
      a.model.c_str(), out.c_str());
}

}  // namespace

void RegisterQuantize(CLI::App& app) {
  auto a = std::make_shared<QuantizeArgs>();
  auto* cmd = app.add_subcommand(
      "quantize", "INT8 post-training quantisation (QDQ) or FP16 conversion of an ONNX model");
  cmd->add_option("model", a->model, "FP32 ONNX model")->required();
  cmd->add_option("--calibration", a->calibration,
                  "Calibration windows: .npy float32 [N, ...input dims...] or a directory of "
                  ".npy (500-1,000 representative windows)");
  cmd->add_option("--calibrate-images", a->calibrate_images,
                  "Image model: calibrate on these good-part image sets (the fitting split), "
                  "preprocessed through the model's card");
  cmd->add_option("--augment", a->augment,
                  "--calibrate-images: also add flipped copies (hflip,vflip) to reach 500-1,000")
      ->delimiter(',');
  cmd->add_option("--out,-o", a->out, "Output model (default: MODEL.int8.onnx / MODEL.fp16.onnx)");
  cmd->add_option("--method", a->method, "Activation ranges: minmax, percentile or entropy")
      ->check(CLI::IsMember({"minmax", "percentile", "entropy"}));
  cmd->add_option("--percentile", a->percentile, "--method percentile: % of values kept (99.999)");
  cmd->add_flag("--fp16", a->fp16, "Convert to float16 instead (inputs/outputs stay float32)");
  cmd->add_option("--keep-fp32", a->keep_fp32, "--fp16: op types to keep in float32")
      ->delimiter(',');
  cmd->add_flag("--per-tensor", a->per_tensor,
                "One weight scale per tensor instead of per channel");
  cmd->add_flag("--reduce-range", a->reduce_range,
                "7-bit weights (x86 CPUs without VNNI can saturate with 8)");
  cmd->add_flag("--symmetric", a->symmetric,
                "int8 activations with zero point 0 (what TensorRT accepts) instead of uint8");
  cmd->add_option("--ops", a->ops,
                  "Op types to convert, comma-separated (default: every supported type but "
                  "Mul, Sigmoid, LeakyRelu)")
      ->delimiter(',');
  cmd->add_option("--exclude", a->exclude, "Node names to leave FP32")->delimiter(',');
  cmd->add_option("--max-samples", a->max_samples, "Use at most N calibration windows");
  cmd->add_option("--min-samples", a->min_samples, "Refuse fewer calibration windows (16)");
  cmd->add_option("--batch", a->batch, "Windows per calibration run (dynamic batch models)");
  cmd->add_option("--threads", a->threads, "ONNX Runtime intra-op threads for calibration");
  cmd->add_option(
      "--trt-calibration-table", a->trt_table,
      "Also write a TensorRT INT8 calibration table (native format) for the FP32 model");
  cmd->add_flag("--json", a->json, "Print the report as JSON");
  cmd->callback([a] { DoQuantize(*a); });
}

}  // namespace tend::cli
