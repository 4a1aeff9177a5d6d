// The part trigger: polls a "part present" coil or discrete input (a rising edge is a new part) or
// a stroke/part counter register (each increment is a new part) on the PLC and produces part
// numbers, so the runtime can tag the next event with the PLC's event_id. Its own thread and
// link; reconnects with backoff; a counter that moved while the link was down is reported as
// missed parts, a counter reset resynchronises with a log line.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/status.h"
#include "io/modbus_link.h"

namespace tend::io {

// The --plc-trigger value: "coil:ADDR", "discrete:ADDR" or "di:ADDR" (a rising edge is a part),
// "counter:ADDR" or "hr:ADDR" (a holding register), "ir:ADDR" (an input register): each
// increment is a part.
struct TriggerSpec {
  enum class Table { kCoil, kDiscreteInput, kHoldingRegister, kInputRegister };
  Table table = Table::kDiscreteInput;
  int address = 0;
  bool is_counter() const {
    return table == Table::kHoldingRegister || table == Table::kInputRegister;
  }
};
Result<TriggerSpec> ParseTriggerSpec(const std::string& spec);

struct TriggerOptions {
  LinkOptions link;                // --plc (the same PLC as the reject sink, its own connection)
  TriggerSpec trigger;             // --plc-trigger di:3 | coil:3 | hr:100 | ir:100   plc_trigger
  double poll_interval_s = 0.005;  // --plc-trigger-poll-ms plc_trigger_poll_ms
  // Edge mode: read the PLC's part number from this holding register at each edge
  // (--plc-part-register, plc_part_register); -1: number parts 1, 2, 3, ... from the start.
  int part_register = -1;
  int max_jump = 100;        // counter mode: a larger step (or a step back) is a reset
  int queue_capacity = 256;  // parts not yet taken by TryPop/WaitPop
  double log_interval_s = 10;
  Status Validate() const;
};

struct PartEvent {
  int64_t part_number = 0;  // the counter value, the part register, or tend's own count
  std::chrono::steady_clock::time_point detected;
  std::chrono::system_clock::time_point detected_wall;
};

struct TriggerStats {
  bool connected = false;
  int64_t parts = 0;          // part events produced
  int64_t parts_missed = 0;   // counter steps that happened while the link was down
  int64_t queue_dropped = 0;  // parts nobody took in time
  int64_t resyncs = 0;        // counter resets or jumps beyond max_jump
  int64_t polls = 0, exceptions = 0, link_errors = 0, connects = 0, connect_failures = 0;
  std::string last_error;
};

class PlcTrigger {
 public:
  // Starts polling. `on_part`, when given, is called on the poller thread for every part (keep it
  // short); parts are queued for TryPop/WaitPop either way.
  static Result<std::unique_ptr<PlcTrigger>> Start(
      const TriggerOptions& options, std::function<void(const PartEvent&)> on_part = {});
  ~PlcTrigger();

  bool TryPop(PartEvent& out);
  bool WaitPop(PartEvent& out, std::chrono::milliseconds timeout);
  TriggerStats stats() const;

  class Impl;

 private:
  explicit PlcTrigger(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tend::io
