// What a source produces and a model scores: one event of one asset (a vibration window, a press
// stroke, a part under a camera) as typed bytes with a shape. A vibration window is f32
// [channels, samples] (planar); a camera frame is u8 [height, width, channels]. Views point into
// buffers the agent owns and sized once; nothing here allocates.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

namespace tend {

enum class ElementType : uint8_t { kF32, kU8, kU16 };

constexpr size_t ElementSize(ElementType t) {
  switch (t) {
    case ElementType::kF32:
      return 4;
    case ElementType::kU8:
      return 1;
    case ElementType::kU16:
      return 2;
  }
  return 1;
}

constexpr const char* ElementTypeName(ElementType t) {
  switch (t) {
    case ElementType::kF32:
      return "f32";
    case ElementType::kU8:
      return "u8";
    case ElementType::kU16:
      return "u16";
  }
  return "?";
}

template <typename T>
constexpr bool IsElementOf(ElementType t) {
  if constexpr (std::is_same_v<T, float>) return t == ElementType::kF32;
  if constexpr (std::is_same_v<T, uint8_t>) return t == ElementType::kU8;
  if constexpr (std::is_same_v<T, uint16_t>) return t == ElementType::kU16;
  return false;
}

// What every event of one stream looks like: element type and a row-major shape of 1..4 dims.
struct EventSpec {
  static constexpr int kMaxRank = 4;
  ElementType type = ElementType::kF32;
  int rank = 0;
  std::array<int64_t, kMaxRank> dims{};

  static EventSpec Make(ElementType type, std::initializer_list<int64_t> dims) {
    EventSpec s;
    s.type = type;
    for (int64_t d : dims) {
      if (s.rank < kMaxRank) s.dims[static_cast<size_t>(s.rank++)] = d;
    }
    return s;
  }
  int64_t elements() const {
    int64_t n = rank > 0 ? 1 : 0;
    for (int i = 0; i < rank; ++i) n *= dims[static_cast<size_t>(i)];
    return n;
  }
  size_t bytes() const { return static_cast<size_t>(elements()) * ElementSize(type); }
  // "f32[1,2000]", "u8[480,640,3]".
  std::string ToString() const {
    std::string s = ElementTypeName(type);
    s += '[';
    for (int i = 0; i < rank; ++i) {
      if (i) s += ',';
      s += std::to_string(dims[static_cast<size_t>(i)]);
    }
    s += ']';
    return s;
  }
  bool operator==(const EventSpec& o) const {
    if (type != o.type || rank != o.rank) return false;
    for (int i = 0; i < rank; ++i) {
      if (dims[static_cast<size_t>(i)] != o.dims[static_cast<size_t>(i)]) return false;
    }
    return true;
  }
};

// One event, as the agent hands it to a model. Valid only during the call it is passed to.
struct EventView {
  std::string_view asset_id;
  int64_t event_id = -1;     // stroke or part number as the source counts it; -1: none
  int64_t part_id = -1;      // the PLC's part number (tagged by an event stage); -1: none
  int64_t index = 0;         // 0-based per asset and run
  int64_t start_frame = -1;  // sample streams: first frame of the window; -1 for frame sources
  double t_start_s = 0;      // seconds since the start of the source
  // Sample streams whose source keeps its own clock (a CSV time column): seconds from the
  // window's first frame to its last by that clock, for the sample-rate check of input health
  // (a recording whose rate glitched). -1: the source has no clock of its own.
  double source_span_s = -1;
  // When the event was complete (a frame: when it arrived from the camera's driver, when the
  // watched file appeared, when a replayed file was due); the deadline counts from here. Left
  // at its default (epoch) by sources that do not know: the agent then counts from enqueue.
  std::chrono::steady_clock::time_point arrival;
  EventSpec spec;
  std::span<const std::byte> bytes;  // spec.bytes() bytes
  // Not empty: the source could not produce a valid event (a frame that could not be decoded, a
  // camera buffer that arrived incomplete) and this says why, in one line ("where: why"); `bytes`
  // are then zeros and must not be scored. The agent decides such an event with its fail-safe
  // decision whatever the model kind, and counts it (summary "invalid_events", metric
  // edge_invalid_events_total).
  std::string_view error;

  // The elements as T (float, uint8_t or uint16_t); empty when T is not the element type.
  template <typename T>
  std::span<const T> as() const {
    if (!IsElementOf<T>(spec.type)) return {};
    return {reinterpret_cast<const T*>(bytes.data()), bytes.size() / sizeof(T)};
  }
};

}  // namespace tend
