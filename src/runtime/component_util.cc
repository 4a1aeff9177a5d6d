#include "runtime/component_util.h"

namespace tend::runtime {

agent::ServeOptions ServeOptionsFrom(const Settings& s) {
  agent::ServeOptions o;
  o.top_k = static_cast<int>(s.GetInt("decide.top_sensors"));
  o.warmup_runs = static_cast<int>(s.GetInt("model.warmup_runs"));
  auto& ss = o.session;
  ss.intra_op_threads = static_cast<int>(s.GetInt("model.intra_op_threads"));
  if (!s.GetList("model.providers").empty()) ss.providers = s.GetList("model.providers");
  ss.cuda_device = static_cast<int>(s.GetInt("model.cuda_device"));
  ss.trt_engine_cache_dir = s.GetString("model.trt_engine_cache_dir");
  ss.trt_fp16 = s.GetBool("model.trt_fp16");
  ss.trt_int8 = s.GetBool("model.trt_int8");
  ss.trt_int8_calibration_table = s.GetString("model.trt_int8_calibration_table");
  ss.state_dir = s.GetString("model.state_dir");
  return o;
}

sources::SourceOptions SourceOptionsFrom(const Settings& s) {
  sources::SourceOptions o;
  o.sample_rate = s.GetFloat("agent.sample_rate");
  o.channels = static_cast<int>(s.GetInt("agent.channels"));
  o.wav_channel = static_cast<int>(s.GetInt("agent.channel"));
  o.keep_non_finite = true;
  return o;
}

sources::SourceOptions SourceOptionsFor(const SourceRequest& req) {
  sources::SourceOptions so = SourceOptionsFrom(*req.settings);
  if (req.input->windowing) {
    if (so.sample_rate <= 0) so.sample_rate = req.input->windowing->sample_rate;
    if (so.channels <= 0) so.channels = req.input->windowing->channels;
  }
  return so;
}

Result<std::unique_ptr<agent::EventReader>> OpenStreamReader(
    const SourceRequest& req, Result<std::unique_ptr<sources::Source>> source, bool live) {
  if (!req.input->windowing) {
    return Fail(Error::Invalid("source '" + req.spec +
                               "' delivers a sample stream, but the "
                               "model takes " +
                               req.input->event.ToString() + " events"));
  }
  if (!source) return Fail(source.error());
  agent::StreamReaderOptions o;
  o.speed = req.settings->GetFloat("agent.speed");
  o.duration_s = req.settings->GetFloat("agent.duration_s");
  o.live = live;
  TEND_ASSIGN_OR_RETURN(
      auto r, agent::StreamEventReader::Create(std::move(*source), *req.input->windowing, o));
  return std::unique_ptr<agent::EventReader>(std::move(r));
}

}  // namespace tend::runtime
