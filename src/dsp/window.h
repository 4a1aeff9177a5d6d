// Window functions for spectral analysis. All are periodic ("DFT-even") cosine sums, the form
// whose DFT has only 1, 3 or 5 non-zero bins: that lets the extractor window a spectrum by a
// short convolution in the frequency domain and reuse one FFT for the raw and windowed spectra.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "core/status.h"

namespace tend::dsp {

enum class WindowFn { kHann, kHamming, kBlackman, kRect };

// "hann" | "hamming" | "blackman" | "rect"; anything else is an error naming the value.
Result<WindowFn> ParseWindowFn(std::string_view name);
const char* WindowFnName(WindowFn fn);

// w[n] = a0 - a1*cos(2*pi*n/N) + a2*cos(4*pi*n/N), n = 0..N-1 (scipy.signal.get_window's
// definitions with fftbins=True). In the frequency domain, multiplying by w is
// Xw[k] = a0*X[k] - a1/2*(X[k-1] + X[k+1]) + a2/2*(X[k-2] + X[k+2]).
struct CosineSum {
  double a0 = 1, a1 = 0, a2 = 0;
};
CosineSum WindowCoefficients(WindowFn fn);

// Fills w with the periodic window of length w.size().
void FillWindow(WindowFn fn, std::span<float> w);

// sum(w[n]^2) over a periodic window of length n, in closed form: n*(a0^2 + a1^2/2 + a2^2/2).
double WindowPower(WindowFn fn, int n);

}  // namespace tend::dsp
