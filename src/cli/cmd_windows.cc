// `tend windows`: cuts recordings into the windows a model sees — stroke-triggered or fixed, as
// its model card says — and writes them as the .npy arrays `tend quantize --calibration` and
// `tend compare --validation/--labels` read: raw windows for raw-input models, feature vectors
// for feature models, shaped like the model's input ([N, ...input dims...]).
#include <fmt/format.h>

#include <cstdio>
#include <memory>

#include "agent/dataset.h"
#include "agent/served_model.h"
#include "cli/commands.h"
#include "cli/vision_commands.h"
#include "model/session.h"
#include "optimize/npy.h"

namespace tend::cli {
namespace {

struct WindowsArgs {
  std::string model, out, labels;
  std::vector<std::string> inputs, normal, anomalous, augment;
  int64_t max_windows = 0;
  int channel = -1;
};

struct Collected {
  std::vector<float> data;    // row-major, `row` floats per window
  std::vector<float> labels;  // one per window (only with --normal/--anomalous)
  size_t row = 0;
};

// The model's declared input dims after the batch: [1,2000], [2000] or [42].
std::vector<int64_t> InputDims(const std::string& path) {
  model::SessionOptions so;
  so.providers = {"cpu"};
  auto s = OrDie(model::Session::LoadFile(path, so), "--model");
  const auto& shape = s->inputs().at(0).shape;
  if (shape.size() < 2) Die(path + ": model input has no batch dimension");
  std::vector<int64_t> dims(shape.begin() + 1, shape.end());
  for (auto d : dims) {
    if (d <= 0) Die(path + ": model input " + model::ShapeToString(shape) + " has a dynamic dim");
  }
  return dims;
}

// Appends every window of `spec` (the features for a feature model) with `label` (< 0: none).
void Collect(agent::ServedModel& m, const std::string& spec, float label,
             const sources::SourceOptions& so, Collected& c) {
  auto in = OrDie(agent::InputSpec::Parse(spec));
  agent::ScoreOut out;
  m.PrepareOut(out);
  size_t before = c.data.size();
  OrDie(agent::ForEachWindow(
      {in}, so, m.windowing(), -1,
      [&](std::span<const float> w, const agent::WindowInfo& info) -> Status {
        std::span<const float> row = w;
        if (!m.raw_input()) {  // score it to get the exact features serving computes
          auto st = m.Score(w, out);
          if (!st) return Fail(st.error().Wrap(info.input->ToString()));
          row = m.last_features();
        }
        if (row.size() != c.row) {
          return Fail(Error::Internal(
              fmt::format("window of {} values, model input takes {}", row.size(), c.row)));
        }
        c.data.insert(c.data.end(), row.begin(), row.end());
        if (label >= 0) c.labels.push_back(label);
        return Ok();
      }));
  if (c.data.size() == before) {
    Die(in.ToString() + ": no windows (shorter than the model's window, or no stroke triggered)");
  }
}

// Keeps `max` windows spread evenly over the whole set (a run from healthy to worn stays
// represented end to end, which calibration needs).
void Thin(Collected& c, int64_t max) {
  const size_t n = c.data.size() / c.row;
  if (max <= 0 || n <= static_cast<size_t>(max)) return;
  Collected t;
  t.row = c.row;
  for (int64_t k = 0; k < max; ++k) {
    size_t i = static_cast<size_t>(k) * n / static_cast<size_t>(max);
    t.data.insert(t.data.end(), c.data.begin() + static_cast<std::ptrdiff_t>(i * c.row),
                  c.data.begin() + static_cast<std::ptrdiff_t>((i + 1) * c.row));
    if (!c.labels.empty()) t.labels.push_back(c.labels[i]);
  }
  c = std::move(t);
}

void DoWindows(const WindowsArgs& a) {
  const bool labelled = !a.normal.empty() || !a.anomalous.empty();
  if (a.inputs.empty() && !labelled) Die("no input: give --input, or --normal and --anomalous");
  if (!a.inputs.empty() && labelled) Die("give either --input or --normal/--anomalous, not both");
  if (!a.labels.empty() && !labelled) Die("--labels needs --normal and/or --anomalous inputs");
  if (a.max_windows < 0) Die("--max must be >= 0");
  if (IsImageModelFile(a.model)) {  // preprocessed network inputs of good-part images
    if (labelled) Die("image models: give the calibration images with --input");
    auto npy = ImageCalibrationNpy(a.model, a.inputs, a.augment, a.max_windows);
    OrDie(optimize::WriteNpy(a.out, npy.shape, npy.data));
    std::printf("%s: %lld preprocessed images %s\n", a.out.c_str(),
                static_cast<long long>(npy.rows()), optimize::ShapeString(npy.shape).c_str());
    return;
  }
  if (!a.augment.empty()) Die("--augment is for image models");
  agent::ServeOptions sopt;
  sopt.session.providers = {"cpu"};
  sopt.warmup_runs = 0;
  auto model = OrDie(agent::ServedModel::Load(a.model, sopt));
  std::vector<int64_t> dims = InputDims(a.model);
  Collected c;
  c.row = 1;
  for (auto d : dims) c.row *= static_cast<size_t>(d);
  sources::SourceOptions so;
  so.wav_channel = a.channel;
  for (const auto& s : a.inputs) Collect(*model, s, -1, so, c);
  for (const auto& s : a.normal) Collect(*model, s, 0, so, c);
  for (const auto& s : a.anomalous) Collect(*model, s, 1, so, c);
  Thin(c, a.max_windows);
  const int64_t n = static_cast<int64_t>(c.data.size() / c.row);
  std::vector<int64_t> shape = {n};
  shape.insert(shape.end(), dims.begin(), dims.end());
  OrDie(optimize::WriteNpy(a.out, shape, c.data));
  std::printf("%s: %lld windows %s (%s)\n", a.out.c_str(), static_cast<long long>(n),
              model::ShapeToString(shape).c_str(),
              model->raw_input() ? "raw windows" : "feature vectors");
  if (!a.labels.empty()) {
    const std::vector<int64_t> lshape = {n};
    OrDie(optimize::WriteNpy(a.labels, lshape, c.labels));
    int64_t anomalous = 0;
    for (float l : c.labels) anomalous += l > 0 ? 1 : 0;
    std::printf("%s: %lld labels (%lld normal, %lld anomalous)\n", a.labels.c_str(),
                static_cast<long long>(n), static_cast<long long>(n - anomalous),
                static_cast<long long>(anomalous));
  }
}

}  // namespace

void RegisterWindows(CLI::App& app) {
  auto a = std::make_shared<WindowsArgs>();
  auto* cmd = app.add_subcommand(
      "windows",
      "Cut recordings into the model's windows and write them as .npy for quantize/compare");
  cmd->add_option("--model,-m", a->model, "Model whose windowing and input to follow (.onnx)")
      ->required();
  cmd->add_option("--out,-o", a->out, ".npy to write: [N, ...model input dims...] float32")
      ->required();
  cmd->add_option("--input,-i", a->inputs,
                  "WAV/CSV files (FILE@START:END to cut) or sim:...: unlabelled windows");
  cmd->add_option("--normal", a->normal, "Inputs whose windows are labelled 0");
  cmd->add_option("--anomalous", a->anomalous, "Inputs whose windows are labelled 1");
  cmd->add_option("--labels", a->labels, ".npy to write the labels to: [N] float32 0/1");
  cmd->add_option("--max", a->max_windows,
                  "Keep at most this many windows, spread evenly over all inputs (0: all)");
  cmd->add_option("--channel", a->channel, "Use only this channel of multi-channel inputs");
  cmd->add_option("--augment", a->augment,
                  "Image models: also add flipped copies of each image (hflip,vflip)")
      ->delimiter(',');
  cmd->callback([a] { DoWindows(*a); });
}

}  // namespace tend::cli
