# Third-party dependencies. All come from Debian 12 packages except ONNX Runtime (see
# FindOnnxRuntime.cmake). Each is exposed as an imported target; tend's modules link what they use.
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(tl-expected REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(tomlplusplus REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(CLI11 REQUIRED)
find_package(Eigen3 REQUIRED NO_MODULE)
find_package(Protobuf REQUIRED)
find_package(ONNX REQUIRED)          # libonnx-dev: the ONNX protobuf schema, to read/write model files
find_package(OnnxRuntime REQUIRED)   # cmake/FindOnnxRuntime.cmake -> onnxruntime::onnxruntime
find_package(SQLite3 REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(PahoMqttCpp QUIET)
find_package(prometheus-cpp QUIET)
pkg_check_modules(SODIUM QUIET IMPORTED_TARGET libsodium)
pkg_check_modules(HTTPLIB QUIET IMPORTED_TARGET cpp-httplib)
pkg_check_modules(PQXX QUIET IMPORTED_TARGET libpqxx)

# libmodbus (LGPL-2.1) for the PLC link: linked dynamically, and optional. ON by default where it
# is found; OFF builds tend without it (the PLC components then refuse to start).
pkg_check_modules(MODBUS QUIET IMPORTED_TARGET libmodbus)
if(MODBUS_FOUND)
  set(_tend_modbus_default ON)
else()
  set(_tend_modbus_default OFF)
endif()
option(TEND_WITH_MODBUS "PLC link over Modbus TCP with libmodbus (LGPL-2.1, dynamic)"
       ${_tend_modbus_default})
if(TEND_WITH_MODBUS AND NOT MODBUS_FOUND)
  message(FATAL_ERROR "TEND_WITH_MODBUS=ON but libmodbus was not found (apt-get install libmodbus-dev)")
endif()

if(TEND_WITH_FFTW)
  message(WARNING "TEND_WITH_FFTW=ON: FFTW is GPL; a binary built this way is GPL-encumbered.")
  pkg_check_modules(FFTW3F REQUIRED IMPORTED_TARGET fftw3f)
else()
  find_package(kissfft CONFIG REQUIRED COMPONENTS SHARED float)
endif()

if(TEND_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(TEND_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()

# Debian's python with numpy/scipy/torch/onnx (not whatever python3 is first on PATH).
set(TEND_PYTHON /usr/bin/python3 CACHE FILEPATH "Python with numpy, scipy, torch and onnx")
