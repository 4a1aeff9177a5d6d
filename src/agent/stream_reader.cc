#include "agent/stream_reader.h"

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

namespace tend::agent {

using Clock = std::chrono::steady_clock;

Result<std::unique_ptr<StreamEventReader>> StreamEventReader::Create(
    std::unique_ptr<sources::Source> source, const WindowingSpec& windowing,
    const StreamReaderOptions& options) {
  if (!source) return Fail(Error::Internal("stream reader: no source"));
  TEND_RETURN_NOT_OK(windowing.CheckStream(source->info(), source->Describe()));
  std::unique_ptr<StreamEventReader> r(new StreamEventReader());
  TEND_ASSIGN_OR_RETURN(r->windower_, windowing.MakeWindower());
  r->source_ = std::move(source);
  r->windowing_ = windowing;
  r->opts_ = options;
  r->spec_ = EventSpec::Make(ElementType::kF32, {windowing.channels, windowing.window});
  return r;
}

double StreamEventReader::event_span_s() const {
  const double sr = source_->info().sample_rate;
  if (opts_.speed <= 0 || sr <= 0) return 0;
  return static_cast<double>(windowing_.window) / sr / opts_.speed;
}

Status StreamEventReader::Run(const std::atomic<bool>& stop, const EmitEvent& emit) {
  source_->SetInterrupt(&stop);
  const auto& info = source_->info();
  const int ch = info.channels;
  const double sr = info.sample_rate;
  constexpr size_t kChunk = 1024;
  std::vector<float> buf(kChunk * static_cast<size_t>(ch));
  int64_t frames_total = 0;
  const int64_t max_frames =
      opts_.duration_s > 0 ? static_cast<int64_t>(opts_.duration_s * sr) : -1;
  const auto t0 = Clock::now();
  EventView ev;
  ev.spec = spec_;
  // The source's own clock (a CSV time column), kept for the frames a window can still span.
  std::vector<double> clock(static_cast<size_t>(windowing_.window) + kChunk);
  bool has_clock = false;
  const std::function<void(const sources::WindowView&)> on_window =
      [&](const sources::WindowView& w) {
        ev.event_id = w.index;
        ev.index = w.index;
        ev.start_frame = w.start_frame;
        ev.t_start_s = w.t_start_s;
        ev.bytes = std::as_bytes(w.samples);
        ev.source_span_s = -1;
        const int64_t last = w.start_frame + windowing_.window - 1;
        if (has_clock && w.start_frame >= 0 && last < frames_total &&
            frames_total - w.start_frame <= static_cast<int64_t>(clock.size())) {
          ev.source_span_s = clock[static_cast<size_t>(last) % clock.size()] -
                             clock[static_cast<size_t>(w.start_frame) % clock.size()];
        }
        emit(ev);
      };
  Status st = Ok();
  while (!stop.load()) {
    size_t want = kChunk;
    if (max_frames >= 0) {
      if (frames_total >= max_frames) break;
      want = static_cast<size_t>(std::min<int64_t>(kChunk, max_frames - frames_total));
    }
    auto r = source_->Read(buf, want);
    if (!r) {
      st = Fail(r.error());
      break;
    }
    if (*r == 0) break;
    const std::span<const double> times = source_->FrameTimes();
    has_clock = times.size() == *r;
    for (size_t i = 0; has_clock && i < *r; ++i) {
      clock[static_cast<size_t>(frames_total + static_cast<int64_t>(i)) % clock.size()] = times[i];
    }
    frames_total += static_cast<int64_t>(*r);
    signal_s_.store(static_cast<double>(frames_total) / sr);
    if (opts_.speed > 0) {
      // Pace the replay: frames are released when their time (scaled) has come.
      auto due = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                          static_cast<double>(frames_total) / sr / opts_.speed));
      while (!stop.load() && Clock::now() < due) {
        std::this_thread::sleep_until(std::min(due, Clock::now() + std::chrono::milliseconds(50)));
      }
    }
    windower_->Push(std::span<const float>(buf.data(), *r * static_cast<size_t>(ch)), *r,
                    on_window);
  }
  source_->SetInterrupt(nullptr);
  return st;
}

}  // namespace tend::agent
