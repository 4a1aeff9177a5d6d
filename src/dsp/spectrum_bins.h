// Which FFT bins a band in Hz covers. One rule everywhere (spec validation, the extractor, the
// numpy reference): bin k sits at k*bin_hz and belongs to [lo, hi) when lo <= k*bin_hz < hi.
#pragma once

#include <algorithm>
#include <cmath>

#include "dsp/feature_spec.h"

namespace tend::dsp {

struct BinRange {
  int begin = 0, end = 0;  // [begin, end)
};

// The tolerance keeps an edge that is an exact multiple of bin_hz on the right side of the
// rounding of lo/bin_hz (e.g. 200 / (12000/2000) computed as 33.333...).
inline BinRange BandBins(const Band& b, double bin_hz, int max_bin) {
  constexpr double kEps = 1e-6;
  const double lo = std::ceil(b.lo_hz / bin_hz - kEps);
  const double hi = std::ceil(b.hi_hz / bin_hz - kEps);
  BinRange r;
  r.begin = static_cast<int>(std::clamp(lo, 0.0, static_cast<double>(max_bin) + 1));
  r.end = static_cast<int>(std::clamp(hi, 0.0, static_cast<double>(max_bin) + 1));
  return r;
}

// Highest bin at or below max_hz (and at most the Nyquist bin window/2).
inline int UsableMaxBin(double max_hz, double bin_hz, int window) {
  const double k = std::floor(max_hz / bin_hz + 1e-6);
  return static_cast<int>(std::clamp(k, 0.0, static_cast<double>(window / 2)));
}

}  // namespace tend::dsp
