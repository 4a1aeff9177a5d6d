// The reject sink: decisions reach the PLC over Modbus TCP. On each alert a coil is pulsed and a
// reject counter (holding register, wrapping at 65,536) is incremented, so the PLC sees every
// reject even when two pulses merge; optionally the last score and severity go to registers.
// OnDecision runs on the pipeline thread and only copies a few numbers into a preallocated ring;
// a worker owns the link, reconnects with backoff, and counts every write it could not make.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"
#include "decide/decision.h"
#include "io/modbus_link.h"

namespace tend::io {

// One field per CLI flag and per-asset config key (see docs/plc.md). Addresses are the
// zero-based Modbus protocol addresses; -1 = not used.
struct PlcSinkOptions {
  LinkOptions link;            // --plc modbus://HOST:PORT[?unit=N]           plc
  std::string asset_id;        // --asset (until Decision carries asset_id)   [[asset]] id
  int reject_coil = -1;        // --plc-reject-coil ADDR                      plc_reject_coil
  double pulse_s = 0.2;        // --plc-pulse-ms MS                           plc_pulse_ms
  int reject_counter = -1;     // --plc-reject-counter ADDR (holding reg.)    plc_reject_counter
  int score_register = -1;     // --plc-score-register ADDR: float32, 2 regs  plc_score_register
  int severity_register = -1;  // --plc-severity-register ADDR                plc_severity_register
  int line_unsafe_coil = -1;   // --plc-line-unsafe-coil ADDR                 plc_line_unsafe_coil
  // --plc-reject-part-register ADDR (plc_reject_part_register): each reject's part number
  // (Decision::part_id, -1 = none) as int32 in 2 registers, high word first, written before its
  // coil and counter; rejects are then written one by one.
  int reject_part_register = -1;
  int queue_capacity = 1024;   // --plc-queue N                               plc_queue
  double log_interval_s = 10;  // missed writes and link errors: one line at most this often
  Status Validate() const;
};

// Severity register values: 0 = no alert, then 1 LOW, 2 MEDIUM, 3 HIGH.
uint16_t SeverityRegisterValue(const Decision& d);

// What the sink did, for metrics and the health payload (ToJson).
struct PlcSinkStats {
  bool connected = false;
  int64_t decisions = 0;        // OnDecision calls
  int64_t rejects = 0;          // alerts seen
  int64_t rejects_written = 0;  // coil pulsed and counter incremented
  int64_t rejects_missed = 0;   // alerts whose coil or counter write did not happen
  int64_t updates_written = 0;  // score/severity register writes
  int64_t updates_missed = 0;
  int64_t queue_dropped = 0;  // decisions dropped because the worker was queue_capacity behind
  int64_t exceptions = 0;     // Modbus exception responses
  int64_t link_errors = 0;    // timeouts, resets: the link was closed and reconnected
  int64_t connects = 0, connect_failures = 0;
  int64_t line_unsafe_set = 0;  // times the line-unsafe coil was set after missed rejects
  uint16_t counter = 0;         // last value written to the reject counter
  std::string last_error;
};
nlohmann::json ToJson(const PlcSinkStats& s);

class PlcRejectSink : public DecisionSink {
 public:
  // Validates the options and starts the worker; the first connect happens there, so an
  // unreachable PLC never delays the start (it is retried with backoff and counted).
  static Result<std::unique_ptr<PlcRejectSink>> Create(const PlcSinkOptions& options);
  ~PlcRejectSink() override;  // finishes a pulse in flight (coil off), then disconnects

  void OnDecision(const Decision& decision) override;  // never blocks on the network
  PlcSinkStats stats() const;
  // Decision -> coil written latencies (ms) of the most recent rejects, oldest first.
  std::vector<double> RecentRejectLatenciesMs() const;
  // Waits until every decision received so far was processed (written or counted as missed).
  Status Drain(std::chrono::milliseconds timeout);

  class Impl;

 private:
  explicit PlcRejectSink(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tend::io
