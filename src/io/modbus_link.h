// The PLC link: one Modbus TCP client connection (libmodbus), owned by exactly one thread (a sink's
// or a poller's worker, never the pipeline thread). Every failed request is classified: a Modbus
// exception response (the PLC answered "no": wrong address, busy, ...) leaves the link up; anything
// else (timeout, reset, garbage) closes it so the owner reconnects with backoff.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "core/status.h"

namespace tend::io {

// modbus://HOST[:PORT][?unit=N]; port 502 and unit 1 by default.
struct ModbusAddress {
  std::string host;
  int port = 502;
  int unit = 1;  // Modbus unit identifier (slave id), 0..255
};
Result<ModbusAddress> ParseModbusUrl(const std::string& url);

// How one link talks to its PLC. Maps to --plc, --plc-timeout-ms, --plc-reconnect-max-s and to the
// per-asset config keys plc, plc_timeout_ms, plc_reconnect_max_s.
struct LinkOptions {
  std::string url;               // modbus://HOST[:PORT][?unit=N]
  double timeout_s = 0.5;        // connect and response timeout of one request
  double reconnect_min_s = 0.1;  // backoff doubles from min to max after each failed connect
  double reconnect_max_s = 5;
  Status Validate() const;
};

// A duration in seconds (an option's double) as a steady_clock duration.
inline std::chrono::steady_clock::duration SteadySeconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(s));
}

// Exponential backoff without allocation: min, 2*min, ... max, +-20 % jitter.
class Backoff {
 public:
  Backoff(double min_s, double max_s) : min_s_(min_s), max_s_(max_s), cur_s_(min_s) {}
  void Reset() { cur_s_ = min_s_; }
  std::chrono::steady_clock::duration Next();

 private:
  double min_s_, max_s_, cur_s_;
  uint32_t rng_ = 2463534242u;
};

// Modbus exception codes by name ("illegal data address" for 2, ...).
const char* ModbusExceptionName(int code);

class ModbusLink {
 public:
  // Validates the options; does not connect. Unsupported error when tend was built without
  // libmodbus (TEND_WITH_MODBUS=OFF).
  static Result<std::unique_ptr<ModbusLink>> Create(const LinkOptions& options);
  ~ModbusLink();
  ModbusLink(const ModbusLink&) = delete;
  ModbusLink& operator=(const ModbusLink&) = delete;

  Status Connect();
  void Close();
  bool connected() const { return connected_; }
  const std::string& url() const { return url_; }

  // Each returns Ok or an error naming the request; after an error, last_exception() is the
  // Modbus exception code (> 0: the link is still up) or 0 (the link was closed).
  Status WriteCoil(int address, bool on);
  Status WriteRegisters(int address, int count, const uint16_t* values);
  Status ReadHoldingRegisters(int address, int count, uint16_t* out);
  Status ReadInputRegisters(int address, int count, uint16_t* out);
  Status ReadCoils(int address, int count, uint8_t* out);
  Status ReadDiscreteInputs(int address, int count, uint8_t* out);
  int last_exception() const { return last_exception_; }

 private:
  ModbusLink() = default;
  Status Check(int rc, const char* what, int address);

  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
  std::string url_;
  bool connected_ = false;
  int last_exception_ = 0;
};

}  // namespace tend::io
