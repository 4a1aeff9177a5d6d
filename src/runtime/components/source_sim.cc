// Source "sim": the stamping-press simulator (sim:strokes=300,wear=0,wear_end=1,seed=1,...; see
// sources::SimulatorOptions). It takes the model's rate and channel count unless told otherwise.
#include "runtime/component_util.h"

TEND_COMPONENT(source_sim) {
  using namespace tend;
  runtime::SourceDescriptor d;
  d.name = "sim";
  d.description =
      "stamping-press simulator: sim:strokes=N,wear=W,wear_end=W,seed=S,spm=,sr=,noise=,ch=";
  d.open = [](const runtime::SourceRequest& req) -> Result<std::unique_ptr<agent::EventReader>> {
    return runtime::OpenStreamReader(
        req, sources::OpenSource(req.spec, runtime::SourceOptionsFor(req)), false);
  };
  return registry.AddSource(std::move(d));
}
