#include "agent/windowing.h"

#include <cmath>

#include <fmt/format.h>

namespace tend::agent {

Status WindowingSpec::Validate() const {
  if (!(sample_rate > 0) || !std::isfinite(sample_rate)) {
    return Fail(Error::Invalid("windowing: sample_rate must be > 0"));
  }
  if (channels < 1 || channels > 64) return Fail(Error::Invalid("windowing: channels must be 1..64"));
  if (window < 16 || window > (1 << 22)) return Fail(Error::Invalid("windowing: window must be 16..4194304 samples"));
  if (mode == "fixed") {
    if (hop < 1) return Fail(Error::Invalid("windowing: hop must be >= 1 sample"));
  } else if (mode == "trigger") {
    if (trigger.pretrigger < 0 || trigger.pretrigger >= window) {
      return Fail(Error::Invalid("windowing: pretrigger must be in [0, window)"));
    }
    if (trigger.channel < 0 || trigger.channel >= channels) {
      return Fail(Error::Invalid("windowing: trigger channel out of range"));
    }
    sources::TriggerOptions t = trigger;
    t.length = window;
    TEND_RETURN_NOT_OK(t.Validate(channels, sample_rate).map_error([](Error e) { return e.Wrap("windowing"); }));
  } else {
    return Fail(Error::Invalid("windowing: mode must be 'fixed' or 'trigger', got '" + mode + "'"));
  }
  return Ok();
}

nlohmann::json WindowingSpec::ToJson() const {
  nlohmann::json j{{"sample_rate", sample_rate}, {"channels", channels}, {"window", window},
                   {"mode", mode}};
  if (mode == "fixed") {
    j["hop"] = hop;
  } else {
    j["pretrigger"] = trigger.pretrigger;
    j["threshold"] = trigger.threshold;
    j["holdoff_s"] = trigger.holdoff_s;
    j["trigger_channel"] = trigger.channel;
  }
  return j;
}

Result<WindowingSpec> WindowingSpec::FromJson(const nlohmann::json& j) {
  if (!j.is_object()) return Fail(Error::Invalid("windowing: expected a JSON object"));
  WindowingSpec w;
  try {
    for (auto& [k, v] : j.items()) {
      if (k == "sample_rate") w.sample_rate = v.get<double>();
      else if (k == "channels") w.channels = v.get<int>();
      else if (k == "window") w.window = v.get<int>();
      else if (k == "mode") w.mode = v.get<std::string>();
      else if (k == "hop") w.hop = v.get<int>();
      else if (k == "pretrigger") w.trigger.pretrigger = v.get<int>();
      else if (k == "threshold") w.trigger.threshold = v.get<double>();
      else if (k == "holdoff_s") w.trigger.holdoff_s = v.get<double>();
      else if (k == "trigger_channel") w.trigger.channel = v.get<int>();
      else return Fail(Error::Invalid("windowing: unknown key '" + k + "'"));
    }
  } catch (const nlohmann::json::exception& e) {
    return Fail(Error::Invalid(std::string("windowing: wrong type: ") + e.what()));
  }
  w.trigger.length = w.window;
  TEND_RETURN_NOT_OK(w.Validate());
  return w;
}

Result<std::unique_ptr<sources::Windower>> WindowingSpec::MakeWindower() const {
  if (mode == "trigger") {
    sources::TriggerOptions t = trigger;
    t.length = window;
    return sources::CreateStrokeTrigger(channels, sample_rate, t);
  }
  return sources::CreateFixedWindower(channels, sample_rate, window, hop);
}

Status WindowingSpec::CheckStream(const sources::StreamInfo& info, const std::string& name) const {
  if (std::fabs(info.sample_rate - sample_rate) > 1e-6 * sample_rate) {
    return Fail(Error::Invalid(fmt::format(
        "{}: sample rate {} Hz differs from the model's {} Hz (resample the input or retrain)", name,
        info.sample_rate, sample_rate)));
  }
  if (info.channels != channels) {
    return Fail(Error::Invalid(fmt::format("{}: {} channel(s), but the model expects {}", name,
                                           info.channels, channels)));
  }
  return Ok();
}

}  // namespace tend::agent
