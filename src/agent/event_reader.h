// Where an agent's events come from: a sample stream cut into windows (StreamEventReader) or a
// source of whole events such as camera frames. The agent runs Run() on its acquisition thread
// and copies each event into a preallocated slot.
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include "core/event.h"
#include "core/status.h"

namespace tend::agent {

using EmitEvent = std::function<void(const EventView&)>;

class EventReader {
 public:
  virtual ~EventReader() = default;

  // Every event this reader emits has exactly this spec (the agent sizes its slots from it).
  virtual const EventSpec& spec() const = 0;
  // A live source (a sensor, a camera) never waits for the pipeline: when the agent's backlog is
  // full an event is dropped and counted (an overrun). A replay (a file or stdin read as fast as
  // possible) is waited for instead, so that every event is decided.
  virtual bool live() const = 0;
  // A replay as fast as the pipeline takes it (`--speed 0`): its events are read ahead into the
  // backlog, so each is due when the pipeline takes it and the deadline counts from then (not
  // from EventView::arrival, nor from the read-ahead). Live sources and paced replays: false.
  virtual bool due_when_taken() const { return false; }
  // e.g. "wav:a.wav (12000 Hz, 2 ch, float32)".
  virtual std::string Describe() const = 0;

  // Produces events in order until the input ends (Ok), `stop` becomes true (Ok) or an error.
  // `emit` may block (back-pressure). Must notice `stop` within about 100 ms, even while its
  // input is idle.
  virtual Status Run(const std::atomic<bool>& stop, const EmitEvent& emit) = 0;

  // Wall-clock seconds one event covers as it is produced: a window of samples at the replay
  // speed; 0 for an instant (a camera frame) or an unpaced replay. Event stages match outside
  // events (a PLC's part) by time against [arrival - span, arrival].
  virtual double event_span_s() const { return 0; }

  // Seconds of signal read so far (sample streams), for the run summary; 0 when not known.
  virtual double signal_s() const { return 0; }
};

}  // namespace tend::agent
