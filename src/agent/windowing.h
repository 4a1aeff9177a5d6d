// How a model wants its input cut: the stream it expects (sample rate, channels, window length)
// and the windowing (fixed length and hop, or stroke-triggered). Stored in the model file's
// metadata so that training, scoring and serving cut identical windows.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "sources/source.h"
#include "sources/windower.h"

namespace tend::agent {

struct WindowingSpec {
  double sample_rate = 10000;
  int channels = 1;
  int window = 2000;
  std::string mode = "fixed";  // "fixed" | "trigger"
  int hop = 2000;              // fixed mode
  sources::TriggerOptions trigger;  // trigger mode (length is `window`)

  Status Validate() const;
  nlohmann::json ToJson() const;
  static Result<WindowingSpec> FromJson(const nlohmann::json& j);
  Result<std::unique_ptr<sources::Windower>> MakeWindower() const;
  // A source must deliver what the model was trained on: same rate and channel count.
  Status CheckStream(const sources::StreamInfo& info, const std::string& source_name) const;
};

}  // namespace tend::agent
