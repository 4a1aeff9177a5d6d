#include "io/modbus_link.h"

#include <modbus/modbus.h>

#include <cerrno>
#include <cmath>

namespace tend::io {

struct ModbusLink::Ctx {
  modbus_t* mb = nullptr;
  ~Ctx() {
    if (mb) {
      modbus_close(mb);
      modbus_free(mb);
    }
  }
};

Result<std::unique_ptr<ModbusLink>> ModbusLink::Create(const LinkOptions& o) {
  TEND_RETURN_NOT_OK(o.Validate());
  TEND_ASSIGN_OR_RETURN(ModbusAddress a, ParseModbusUrl(o.url));
  std::unique_ptr<ModbusLink> link(new ModbusLink());
  link->url_ = o.url;
  link->ctx_ = std::make_unique<Ctx>();
  std::string port = std::to_string(a.port);
  link->ctx_->mb = modbus_new_tcp_pi(a.host.c_str(), port.c_str());
  if (!link->ctx_->mb) {
    return Fail(Error::Invalid("PLC " + o.url + ": " + modbus_strerror(errno)));
  }
  modbus_t* mb = link->ctx_->mb;
  if (modbus_set_slave(mb, a.unit) != 0) {
    return Fail(Error::Invalid("PLC " + o.url + ": unit " + std::to_string(a.unit) + ": " +
                               modbus_strerror(errno)));
  }
  double whole = std::floor(o.timeout_s);
  auto sec = static_cast<uint32_t>(whole);
  auto usec = static_cast<uint32_t>((o.timeout_s - whole) * 1e6);
  modbus_set_response_timeout(mb, sec, usec);
  // A reply that starts but stalls is bounded too (byte timeout), so no request waits for ever.
  modbus_set_byte_timeout(mb, sec, usec);
  return link;
}

ModbusLink::~ModbusLink() = default;

Status ModbusLink::Connect() {
  Close();
  if (modbus_connect(ctx_->mb) != 0) {
    return Fail(Error::Io("PLC " + url_ + ": cannot connect: " + modbus_strerror(errno)));
  }
  connected_ = true;
  return Ok();
}

void ModbusLink::Close() {
  if (connected_) modbus_close(ctx_->mb);
  connected_ = false;
}

Status ModbusLink::Check(int rc, const char* what, int address) {
  if (rc >= 0) {
    last_exception_ = 0;
    return Ok();
  }
  int e = errno;
  std::string where = std::string(what) + " at " + std::to_string(address);
  if (e > MODBUS_ENOBASE && e <= EMBXGTAR) {
    last_exception_ = e - MODBUS_ENOBASE;
    return Fail(Error::Unsupported("PLC " + url_ + ": " + where + ": Modbus exception " +
                                   std::to_string(last_exception_) + " (" +
                                   ModbusExceptionName(last_exception_) + ")"));
  }
  last_exception_ = 0;
  Close();  // timeouts and protocol errors leave the stream in an unknown state
  return Fail(Error::Io("PLC " + url_ + ": " + where + ": " + modbus_strerror(e)));
}

Status ModbusLink::WriteCoil(int address, bool on) {
  if (!connected_) return Fail(Error::Io("PLC " + url_ + ": not connected"));
  return Check(modbus_write_bit(ctx_->mb, address, on ? 1 : 0), "write coil", address);
}

Status ModbusLink::WriteRegisters(int address, int count, const uint16_t* values) {
  if (!connected_) return Fail(Error::Io("PLC " + url_ + ": not connected"));
  int rc = count == 1 ? modbus_write_register(ctx_->mb, address, values[0])
                      : modbus_write_registers(ctx_->mb, address, count, values);
  return Check(rc, "write holding register", address);
}

Status ModbusLink::ReadHoldingRegisters(int address, int count, uint16_t* out) {
  if (!connected_) return Fail(Error::Io("PLC " + url_ + ": not connected"));
  return Check(modbus_read_registers(ctx_->mb, address, count, out), "read holding register",
               address);
}

Status ModbusLink::ReadInputRegisters(int address, int count, uint16_t* out) {
  if (!connected_) return Fail(Error::Io("PLC " + url_ + ": not connected"));
  return Check(modbus_read_input_registers(ctx_->mb, address, count, out), "read input register",
               address);
}

Status ModbusLink::ReadCoils(int address, int count, uint8_t* out) {
  if (!connected_) return Fail(Error::Io("PLC " + url_ + ": not connected"));
  return Check(modbus_read_bits(ctx_->mb, address, count, out), "read coil", address);
}

Status ModbusLink::ReadDiscreteInputs(int address, int count, uint8_t* out) {
  if (!connected_) return Fail(Error::Io("PLC " + url_ + ": not connected"));
  return Check(modbus_read_input_bits(ctx_->mb, address, count, out), "read discrete input",
               address);
}

}  // namespace tend::io
