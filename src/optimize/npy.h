// NumPy .npy arrays, the format ML engineers already have: calibration and validation windows
// for `tend quantize` / `tend compare`. A strict reader (format 1.0-3.0, C order, little-endian)
// that names the file and the problem, and a writer for tools and tests.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace tend::optimize {

// A dense float32 array in C order. shape[0] is the sample axis for calibration/validation data.
struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;

  int64_t rows() const { return shape.empty() ? 0 : shape[0]; }
  // Elements per row (product of shape[1:]); 1 for a 1-D array.
  int64_t row_size() const;
  std::span<const float> row(int64_t i) const;
};

// "[500,1,2000]"
std::string ShapeString(std::span<const int64_t> shape);

// Reads float data: dtype '<f4' only (as the file says, not converted), C order, no NaN/Inf.
// Errors: not .npy (bad magic), unsupported version, header that does not parse, dtype other
// than '<f4' (named), Fortran order, truncated data, trailing bytes, NaN/Inf (with index).
Result<NpyArray> ReadNpy(const std::string& path);

// Reads `path` if it is a file; if it is a directory, reads every *.npy in it (sorted by name)
// and concatenates them along axis 0 (all must have the same row shape).
Result<NpyArray> ReadNpyFileOrDir(const std::string& path);

// Labels: a 1-D (or [N,1]) array of '<f4', '<f8', '<i4', '<i8', '|i1', '|u1' or '|b1', returned
// as floats. Values are checked by the caller (e.g. 0/1 for AUC).
Result<std::vector<float>> ReadNpyLabels(const std::string& path);

// Writes a '<f4' C-order .npy (format 1.0), atomically.
Status WriteNpy(const std::string& path, std::span<const int64_t> shape,
                std::span<const float> data);

}  // namespace tend::optimize
