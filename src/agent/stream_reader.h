// A sample stream (WAV, CSV, raw float32 on stdin, the press simulator) as events: frames are
// read in chunks, paced to the replay speed, and cut into planar f32 [channels, window] windows
// the way the model was trained (fixed hop or stroke trigger).
#pragma once

#include <memory>

#include "agent/event_reader.h"
#include "agent/windowing.h"
#include "sources/source.h"

namespace tend::agent {

struct StreamReaderOptions {
  double speed = 1.0;      // replay speed factor; 0 = as fast as possible
  double duration_s = -1;  // stop after this much signal (-1: no limit)
  bool live = false;       // see EventReader::live()
};

class StreamEventReader final : public EventReader {
 public:
  // The source must deliver what `windowing` expects (same rate and channel count).
  static Result<std::unique_ptr<StreamEventReader>> Create(std::unique_ptr<sources::Source> source,
                                                           const WindowingSpec& windowing,
                                                           const StreamReaderOptions& options);

  const EventSpec& spec() const override { return spec_; }
  bool live() const override { return opts_.live; }
  std::string Describe() const override { return source_->Describe(); }
  Status Run(const std::atomic<bool>& stop, const EmitEvent& emit) override;
  double signal_s() const override { return signal_s_.load(); }
  double event_span_s() const override;

  const sources::Source& source() const { return *source_; }

 private:
  StreamEventReader() = default;

  std::unique_ptr<sources::Source> source_;
  std::unique_ptr<sources::Windower> windower_;
  WindowingSpec windowing_;
  StreamReaderOptions opts_;
  EventSpec spec_;
  std::atomic<double> signal_s_{0};
};

}  // namespace tend::agent
