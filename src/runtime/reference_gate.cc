#include "runtime/reference_gate.h"

#include "agent/dataset.h"
#include "eval/metrics.h"
#include "runtime/frame_fit.h"
#include "sources/frame_source.h"

namespace tend::runtime {

namespace {

// Image models: every image of the sets (folders, globs, files), fitted to the model's input as
// the "images" source fits camera frames, scored by the model as the agent scores a part. A
// reference image that cannot be decoded is an error: the set is broken, the gate cannot judge.
Result<std::vector<double>> FrameScores(agent::Model& model, const std::vector<std::string>& specs,
                                        agent::ScoreOut& out) {
  std::vector<double> v;
  FrameFitter fit(model.input());
  sources::FrameSourceOptions o;
  o.channels = static_cast<int>(model.input().event.dims[2]);
  for (const auto& spec : specs) {
    TEND_ASSIGN_OR_RETURN(auto src, sources::OpenImageFiles(spec, o));
    sources::Frame f;
    for (;;) {
      TEND_ASSIGN_OR_RETURN(bool more, src->Next(f));
      if (!more) break;
      auto wrap = [&](Error e) { return e.Wrap("OTA reference image " + f.path); };
      TEND_RETURN_NOT_OK(f.status.map_error(wrap));
      TEND_ASSIGN_OR_RETURN(auto bytes, fit.Fit(f.image.view()).map_error(wrap));
      EventView ev;
      ev.index = ev.event_id = static_cast<int64_t>(v.size());
      ev.spec = model.input().event;
      ev.bytes = bytes;
      TEND_RETURN_NOT_OK(model.Score(ev, out).map_error(wrap));
      v.push_back(out.score);
    }
  }
  if (v.empty()) return Fail(Error::Invalid("OTA reference set: no images"));
  return v;
}

}  // namespace

Result<double> ReferenceAuc(agent::Model& model, const ReferenceSet& set) {
  if (TakesFrames(model.input())) {
    agent::ScoreOut out;
    model.PrepareOut(out);
    TEND_ASSIGN_OR_RETURN(auto normal, FrameScores(model, set.normal, out));
    TEND_ASSIGN_OR_RETURN(auto anomalous, FrameScores(model, set.anomalous, out));
    return eval::RocAuc(normal, anomalous);
  }
  if (!model.input().windowing) {
    return Fail(Error::Unsupported("OTA reference set: model kind '" + model.kind() +
                                   "' takes neither sample windows nor camera frames"));
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
