#include "io/part_matcher.h"

#include <algorithm>

namespace tend::io {

PartMatcher::PartMatcher(const PartMatchOptions& options)
    : tolerance_(std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(std::max(0.0, options.tolerance_s)))),
      ring_(static_cast<size_t>(std::max(1, options.capacity))) {}

void PartMatcher::PopFront() {
  head_ = (head_ + 1) % ring_.size();
  --count_;
}

void PartMatcher::AddPart(int64_t part_number, Clock::time_point detected) {
  ++st_.parts;
  if (count_ == ring_.size()) {  // no event for a long time: the oldest part is lost
    PopFront();
    ++st_.parts_missed;
  }
  ring_[(head_ + count_) % ring_.size()] = {part_number, detected};
  ++count_;
}

int64_t PartMatcher::Match(Clock::time_point arrival, Clock::duration span) {
  ++st_.events;
  const Clock::time_point earliest = arrival - std::max(span, Clock::duration::zero()) - tolerance_;
  int64_t part = -1;
  // Parts come in detection order: settle every one this event could have covered.
  while (count_ > 0 && ring_[head_].detected <= arrival) {
    const Part& p = ring_[head_];
    if (p.detected >= earliest) {
      if (part >= 0) ++st_.parts_missed;  // two parts for one event: the later one wins
      part = p.number;
    } else {
      ++st_.parts_missed;  // no event came within tolerance after it
    }
    PopFront();
  }
  ++(part >= 0 ? st_.matched : st_.unmatched);
  return part;
}

void PartMatcher::Finish() {
  st_.parts_missed += static_cast<int64_t>(count_);
  head_ = count_ = 0;
}

}  // namespace tend::io
