// Offline checks of the press simulator and the stroke trigger (not a unit test).
//   tend_sim_write <spec> <out.wav> <labels.csv>   writes a run for tests/sources/sim_features.py
//   tend_sim_write --check-trigger <spec>           runs the default stroke trigger over a run and
//                                                   prints hits, misses, extras, onset errors and
//                                                   generation time
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "sources/source.h"
#include "sources/windower.h"

namespace {

using namespace tend::sources;

std::unique_ptr<PressSimulator> MakeSim(const std::string& spec) {
  auto opts = SimulatorOptions::Parse(spec.rfind("sim:", 0) == 0 ? spec.substr(4) : "");
  if (!opts) {
    std::fprintf(stderr, "error: %s\n", opts.error().message.c_str());
    std::exit(1);
  }
  auto sim = PressSimulator::Create(*opts);
  if (!sim) {
    std::fprintf(stderr, "error: %s\n", sim.error().message.c_str());
    std::exit(1);
  }
  return std::move(*sim);
}

int CheckTrigger(const std::string& spec) {
  auto sim = MakeSim(spec);
  const TriggerOptions t;
  auto w = MakeStrokeTrigger(sim->info().channels, sim->info().sample_rate, t);
  std::vector<float> buf(4096 * sim->info().channels);
  std::vector<int64_t> onsets;
  double gen_s = 0;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    auto n = sim->Read(buf, 4096);
    gen_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!n) {
      std::fprintf(stderr, "error: %s\n", n.error().message.c_str());
      return 1;
    }
    if (*n == 0) break;
    w->Push(buf, *n, [&](const WindowView& v) { onsets.push_back(v.start_frame + t.pretrigger); });
  }
  // Match each window to the nearest label within 20 ms.
  const auto& labels = sim->labels();
  const int64_t tol = static_cast<int64_t>(0.02 * sim->info().sample_rate);
  size_t j = 0, matched = 0, extra = 0;
  std::vector<int64_t> err;
  for (int64_t on : onsets) {
    while (j < labels.size() && labels[j].onset_frame < on - tol) ++j;
    if (j < labels.size() && std::llabs(labels[j].onset_frame - on) <= tol) {
      err.push_back(on - labels[j].onset_frame);
      ++matched;
      ++j;
    } else {
      ++extra;
    }
  }
  std::sort(err.begin(), err.end());
  std::printf(
      "%s\n  strokes %zu, windows %zu: matched %zu, missed %zu, extra %zu; onset error (frames) "
      "min %lld median %lld max %lld\n  generated %lld frames in %.3f s wall\n",
      sim->Describe().c_str(), labels.size(), onsets.size(), matched, labels.size() - matched,
      extra, err.empty() ? 0LL : static_cast<long long>(err.front()),
      err.empty() ? 0LL : static_cast<long long>(err[err.size() / 2]),
      err.empty() ? 0LL : static_cast<long long>(err.back()),
      static_cast<long long>(sim->info().total_frames), gen_s);
  return matched == labels.size() && extra == 0 ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--check-trigger") return CheckTrigger(argv[2]);
  if (argc != 4) {
    std::fprintf(stderr,
                 "usage: %s sim:key=value,... out.wav labels.csv\n"
                 "       %s --check-trigger sim:key=value,...\n",
                 argv[0], argv[0]);
    return 2;
  }
  auto sim = MakeSim(argv[1]);
  const auto t0 = std::chrono::steady_clock::now();
  auto st = sim->WriteLabelled(argv[2], argv[3]);
  if (!st) {
    std::fprintf(stderr, "error: %s\n", st.error().message.c_str());
    return 1;
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s: %lld frames, %zu strokes, written in %.3f s\n", sim->Describe().c_str(),
              static_cast<long long>(sim->info().total_frames), sim->labels().size(), s);
  return 0;
}
