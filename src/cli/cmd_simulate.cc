// `tend simulate`: writes a simulated press run as a labelled float32 WAV plus a labels CSV
// (stroke, onset_frame, t_s, wear), for training elsewhere (the PyTorch recipe) or for replay.
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "sources/source.h"

namespace tend::cli {
namespace {

struct SimArgs {
  std::string spec = "sim";
  std::string out, labels;
};

void DoSimulate(const SimArgs& a) {
  if (a.out.empty()) Die("no output given (--out run.wav)");
  std::string kv = a.spec == "sim" ? "" : (a.spec.rfind("sim:", 0) == 0 ? a.spec.substr(4) : "");
  if (a.spec != "sim" && a.spec.rfind("sim:", 0) != 0) Die("--sim must be 'sim' or 'sim:key=value,...'");
  auto opts = OrDie(sources::SimulatorOptions::Parse(kv));
  if (opts.strokes <= 0) Die("an endless simulation cannot be written to a file: give strokes=N");
  auto sim = OrDie(sources::PressSimulator::Create(opts));
  std::string labels = a.labels.empty() ? a.out + ".labels.csv" : a.labels;
  OrDie(sim->WriteLabelled(a.out, labels));
  std::printf("wrote %s (%lld strokes, %s) and %s\n", a.out.c_str(), static_cast<long long>(opts.strokes),
              opts.ToSpec().c_str(), labels.c_str());
}

}  // namespace

void RegisterSimulate(CLI::App& app) {
  auto a = std::make_shared<SimArgs>();
  auto* cmd = app.add_subcommand("simulate", "Write a simulated press run as labelled WAV + CSV");
  cmd->add_option("--sim", a->spec, "Simulator spec: sim:strokes=300,wear=0,wear_end=1,seed=1,...");
  cmd->add_option("--out,-o", a->out, "Output WAV");
  cmd->add_option("--labels", a->labels, "Labels CSV (default: <out>.labels.csv)");
  cmd->callback([a] { DoSimulate(*a); });
}

}  // namespace tend::cli
