// Helpers for component authors: the common settings as the options of the modules below
// (model session, sample sources, stream replay), and a sample stream as an agent event reader.
#pragma once

#include <memory>

#include "agent/served_model.h"
#include "agent/stream_reader.h"
#include "core/settings.h"
#include "runtime/registry.h"
#include "sources/source.h"

namespace tend::runtime {

// model.* and decide.top_sensors.
agent::ServeOptions ServeOptionsFrom(const Settings& s);
// agent.sample_rate, agent.channels, agent.channel; non-finite samples are kept (the agent decides
// such a window fail-safe instead of ending the run).
sources::SourceOptions SourceOptionsFrom(const Settings& s);
// As above for one request: a rate or channel count not given comes from the model's windowing
// (raw input, CSV without a time column, the simulator; files keep their own).
sources::SourceOptions SourceOptionsFor(const SourceRequest& req);

// A sample source cut into the windows the model wants, replayed at agent.speed for at most
// agent.duration_s. Errors when the model does not take sample windows (e.g. an image model).
Result<std::unique_ptr<agent::EventReader>> OpenStreamReader(
    const SourceRequest& req, Result<std::unique_ptr<sources::Source>> source, bool live);

}  // namespace tend::runtime
