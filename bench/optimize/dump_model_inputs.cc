// Writes what a model sees — feature vectors for feature models, raw windows for raw-window
// models — cut from sources exactly as `tend run` cuts them, as .npy for `tend quantize` and
// `tend compare` (scripts/bench_quantize.sh uses it for the feature-model measurement).
//
//   dump_model_inputs MODEL.onnx OUT_PREFIX LABEL=SPEC [LABEL=SPEC ...]
//     LABEL: 0 (normal) or 1 (anomalous); SPEC: what `tend run --source` takes (sim:..., a.wav)
//   -> OUT_PREFIX.x.npy [N, ...model input...] and OUT_PREFIX.y.npy [N] (float32 labels)
#include <cstdio>
#include <string>
#include <vector>

#include "agent/dataset.h"
#include "agent/served_model.h"
#include "optimize/npy.h"

int main(int argc, char** argv) {
  using namespace tend;
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s MODEL.onnx OUT_PREFIX LABEL=SPEC [LABEL=SPEC ...]\n", argv[0]);
    return 2;
  }
  agent::ServeOptions so;
  so.warmup_runs = 1;
  auto model = agent::ServedModel::Load(argv[1], so);
  if (!model) {
    std::fprintf(stderr, "error: %s\n", model.error().message.c_str());
    return 1;
  }
  auto& m = **model;
  agent::ScoreOut out;
  m.PrepareOut(out);
  std::vector<float> x, y;
  int64_t rows = 0, width = 0;
  for (int i = 3; i < argc; ++i) {
    std::string arg = argv[i];
    auto eq = arg.find('=');
    if (eq == std::string::npos || (arg.substr(0, eq) != "0" && arg.substr(0, eq) != "1")) {
      std::fprintf(stderr, "error: '%s': expected 0=SPEC or 1=SPEC\n", arg.c_str());
      return 2;
    }
    const float label = arg[0] == '1' ? 1.0f : 0.0f;
    auto spec = agent::InputSpec::Parse(arg.substr(eq + 1));
    if (!spec) {
      std::fprintf(stderr, "error: %s\n", spec.error().message.c_str());
      return 2;
    }
    auto st =
        agent::ForEachWindow({*spec}, {}, m.windowing(), -1,
                             [&](std::span<const float> w, const agent::WindowInfo&) -> Status {
                               TEND_RETURN_NOT_OK(m.Score(w, out));
                               std::span<const float> row = m.raw_input() ? w : m.last_features();
                               width = static_cast<int64_t>(row.size());
                               x.insert(x.end(), row.begin(), row.end());
                               y.push_back(label);
                               ++rows;
                               return Ok();
                             });
    if (!st) {
      std::fprintf(stderr, "error: %s\n", st.error().message.c_str());
      return 1;
    }
  }
  std::vector<int64_t> xshape = {rows, width};
  if (m.raw_input()) xshape = {rows, m.windowing().channels, m.windowing().window};
  const std::string prefix = argv[2];
  const std::vector<int64_t> yshape = {rows};
  auto a = optimize::WriteNpy(prefix + ".x.npy", xshape, x);
  auto b = optimize::WriteNpy(prefix + ".y.npy", yshape, y);
  if (!a || !b) {
    std::fprintf(stderr, "error: %s\n", (!a ? a.error() : b.error()).message.c_str());
    return 1;
  }
  std::printf("%s.x.npy %s, %s.y.npy\n", prefix.c_str(), optimize::ShapeString(xshape).c_str(),
              prefix.c_str());
  return 0;
}
