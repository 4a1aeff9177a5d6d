// Fuzz target: the PLC option strings from flags and config files (modbus:// URL, trigger spec).
#include <cstddef>
#include <cstdint>
#include <string>

#include "io/plc_trigger.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string s(reinterpret_cast<const char*>(data), size);
  (void)tend::io::ParseModbusUrl(s);
  (void)tend::io::ParseTriggerSpec(s);
  return 0;
}
