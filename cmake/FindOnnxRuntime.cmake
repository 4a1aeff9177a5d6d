# Finds ONNX Runtime's C/C++ API and defines onnxruntime::onnxruntime.
# Looked for, in order:
#   1. ONNXRUNTIME_ROOT (CMake or environment variable): an official release tarball unpacked
#      (include/ + lib/), e.g. onnxruntime-linux-x64-1.29.0.
#   2. third_party/onnxruntime, laid out by scripts/bootstrap.sh from the pinned npm package.
#   3. A system install: an onnxruntime CMake package, or headers and library on the default
#      paths (/usr, /usr/local, include/onnxruntime/ too).
if(TARGET onnxruntime::onnxruntime)
  return()
endif()

if(NOT ONNXRUNTIME_ROOT AND DEFINED ENV{ONNXRUNTIME_ROOT})
  set(ONNXRUNTIME_ROOT $ENV{ONNXRUNTIME_ROOT})
endif()

set(_ort_hints)
if(ONNXRUNTIME_ROOT)
  list(APPEND _ort_hints ${ONNXRUNTIME_ROOT})
else()
  list(APPEND _ort_hints ${CMAKE_SOURCE_DIR}/third_party/onnxruntime)
  # A system package that ships a CMake config (recent official builds and distros do).
  find_package(onnxruntime CONFIG QUIET)
  if(TARGET onnxruntime::onnxruntime)
    set(OnnxRuntime_FOUND TRUE)
    message(STATUS "ONNX Runtime: system CMake package")
    return()
  endif()
endif()

find_path(OnnxRuntime_INCLUDE_DIR onnxruntime_cxx_api.h
  HINTS ${_ort_hints}
  PATH_SUFFIXES include include/onnxruntime include/onnxruntime/core/session
  NO_DEFAULT_PATH)
find_library(OnnxRuntime_LIBRARY NAMES onnxruntime
  HINTS ${_ort_hints} PATH_SUFFIXES lib lib64 NO_DEFAULT_PATH)
if(NOT ONNXRUNTIME_ROOT)
  find_path(OnnxRuntime_INCLUDE_DIR onnxruntime_cxx_api.h PATH_SUFFIXES onnxruntime onnxruntime/core/session)
  find_library(OnnxRuntime_LIBRARY NAMES onnxruntime)
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(OnnxRuntime REQUIRED_VARS OnnxRuntime_LIBRARY OnnxRuntime_INCLUDE_DIR
  FAIL_MESSAGE "ONNX Runtime not found: run scripts/bootstrap.sh, or set ONNXRUNTIME_ROOT to an unpacked official release")

if(OnnxRuntime_FOUND)
  add_library(onnxruntime::onnxruntime SHARED IMPORTED)
  set_target_properties(onnxruntime::onnxruntime PROPERTIES
    IMPORTED_LOCATION ${OnnxRuntime_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${OnnxRuntime_INCLUDE_DIR})
  get_filename_component(OnnxRuntime_LIBRARY_DIR ${OnnxRuntime_LIBRARY} DIRECTORY)
  set(OnnxRuntime_LIBRARY_DIR ${OnnxRuntime_LIBRARY_DIR} CACHE INTERNAL "")
  message(STATUS "ONNX Runtime: ${OnnxRuntime_LIBRARY}")
endif()
mark_as_advanced(OnnxRuntime_INCLUDE_DIR OnnxRuntime_LIBRARY)
