#include "runtime/reference_gate.h"

#include "agent/dataset.h"
#include "eval/metrics.h"

namespace tend::runtime {

Result<double> ReferenceAuc(agent::Model& model, const ReferenceSet& set) {
  if (!model.input().windowing) {
    return Fail(Error::Unsupported("OTA reference set: model kind '" + model.kind() +
                                   "' does not take sample windows"));
  }
  const agent::WindowingSpec& windowing = *model.input().windowing;
  agent::ScoreOut out;
  model.PrepareOut(out);
  auto scores = [&](const std::vector<std::string>& specs) -> Result<std::vector<double>> {
    std::vector<double> v;
    std::vector<agent::InputSpec> inputs;
    for (const auto& s : specs) {
      TEND_ASSIGN_OR_RETURN(auto in, agent::InputSpec::Parse(s));
      inputs.push_back(in);
    }
    EventView ev;
    ev.spec = model.input().event;
    TEND_RETURN_NOT_OK(agent::ForEachWindow(
        inputs, set.source, windowing, -1,
        [&](std::span<const float> w, const agent::WindowInfo& info) -> Status {
          ev.index = info.index;
          ev.start_frame = info.start_frame;
          ev.t_start_s = info.t_start_s;
          ev.bytes = std::as_bytes(w);
          TEND_RETURN_NOT_OK(model.Score(ev, out));
          v.push_back(out.score);
          return Ok();
        }));
    if (v.empty()) return Fail(Error::Invalid("OTA reference set: no windows"));
    return v;
  };
  TEND_ASSIGN_OR_RETURN(auto normal, scores(set.normal));
  TEND_ASSIGN_OR_RETURN(auto anomalous, scores(set.anomalous));
  return eval::RocAuc(normal, anomalous);
}

}  // namespace tend::runtime
