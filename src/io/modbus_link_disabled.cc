// Built instead of modbus_link.cc when TEND_WITH_MODBUS=OFF (no libmodbus): every PLC component
// fails to start with one clear line instead of the build failing.
#include "io/modbus_link.h"

namespace tend::io {

struct ModbusLink::Ctx {};

Result<std::unique_ptr<ModbusLink>> ModbusLink::Create(const LinkOptions& o) {
  TEND_RETURN_NOT_OK(o.Validate());
  return Fail(Error::Unsupported("PLC " + o.url +
                                 ": this tend was built without libmodbus (TEND_WITH_MODBUS=OFF)"));
}
ModbusLink::~ModbusLink() = default;
Status ModbusLink::Connect() { return Fail(Error::Unsupported("no libmodbus")); }
void ModbusLink::Close() {}
Status ModbusLink::Check(int, const char*, int) { return Fail(Error::Unsupported("no libmodbus")); }
Status ModbusLink::WriteCoil(int, bool) { return Fail(Error::Unsupported("no libmodbus")); }
Status ModbusLink::WriteRegisters(int, int, const uint16_t*) {
  return Fail(Error::Unsupported("no libmodbus"));
}
Status ModbusLink::ReadHoldingRegisters(int, int, uint16_t*) {
  return Fail(Error::Unsupported("no libmodbus"));
}
Status ModbusLink::ReadInputRegisters(int, int, uint16_t*) {
  return Fail(Error::Unsupported("no libmodbus"));
}
Status ModbusLink::ReadCoils(int, int, uint8_t*) {
  return Fail(Error::Unsupported("no libmodbus"));
}
Status ModbusLink::ReadDiscreteInputs(int, int, uint8_t*) {
  return Fail(Error::Unsupported("no libmodbus"));
}

}  // namespace tend::io
