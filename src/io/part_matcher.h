// Matching the PLC's parts to events by time. A part detected at t_plc belongs to the first event
// complete at or after it whose time covers it: a camera frame (an instant) covers
// [arrival - tolerance, arrival], a sample window covers [arrival - span - tolerance, arrival]
// (span: the window's length in wall-clock time). Each event carries at most one part (the
// latest it covers) and each part goes to at most one event; a part that no event took is
// missed, an event without a part is unmatched. No allocation after construction, no locking:
// called on one thread (the asset's acquisition thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

namespace tend::io {

struct PartMatchOptions {
  double tolerance_s = 0.1;  // --plc-trigger-tolerance-ms: how long before an event a part counts
  int capacity = 256;        // parts waiting for an event; beyond it the oldest is missed
};

struct PartMatchStats {
  int64_t events = 0;        // events offered
  int64_t matched = 0;       // events that got a part
  int64_t unmatched = 0;     // events with no part within tolerance
  int64_t parts = 0;         // parts offered
  int64_t parts_missed = 0;  // parts no event took (too old, two parts for one event, run ended)
};

class PartMatcher {
 public:
  using Clock = std::chrono::steady_clock;
  explicit PartMatcher(const PartMatchOptions& options);

  // A part the PLC reported, detected at `detected` (parts come in detection order).
  void AddPart(int64_t part_number, Clock::time_point detected);
  // The part of an event complete at `arrival` that covers `span` before it; -1: none. Every
  // part detected at or before `arrival` is settled here (matched or missed).
  int64_t Match(Clock::time_point arrival, Clock::duration span);
  // No more events: the parts still waiting are missed.
  void Finish();

  const PartMatchStats& stats() const { return st_; }

 private:
  struct Part {
    int64_t number = 0;
    Clock::time_point detected;
  };
  void PopFront();

  Clock::duration tolerance_;
  std::vector<Part> ring_;
  size_t head_ = 0, count_ = 0;
  PartMatchStats st_;
};

}  // namespace tend::io
