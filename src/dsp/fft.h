// Planned FFTs over caller-owned buffers, backed by KissFFT (BSD-3-Clause): permissive, small,
// mixed radix (2, 3, 4, 5), so a 2,000-sample window needs no padding. Plans are made once;
// a transform allocates nothing.
#pragma once

#include <complex>
#include <memory>
#include <span>

#include "core/status.h"

namespace tend::dsp {

// Forward real FFT of even length n: n real samples -> n/2+1 complex bins, unnormalised
// (X[k] = sum_t x[t] exp(-2 pi i k t / n)).
class RealFft {
 public:
  static Result<std::unique_ptr<RealFft>> Create(int n);
  ~RealFft();
  RealFft(const RealFft&) = delete;
  RealFft& operator=(const RealFft&) = delete;

  int size() const { return n_; }
  // in.size() == n, out.size() == n/2+1; in and out must not overlap.
  void Forward(std::span<const float> in, std::span<std::complex<float>> out) const;

 private:
  RealFft(int n, void* cfg) : n_(n), cfg_(cfg) {}
  int n_;
  void* cfg_;  // kiss_fftr_cfg
};

// Complex FFT of length n, forward (exp(-...)) or inverse (exp(+...)), unnormalised.
class ComplexFft {
 public:
  static Result<std::unique_ptr<ComplexFft>> Create(int n, bool inverse);
  ~ComplexFft();
  ComplexFft(const ComplexFft&) = delete;
  ComplexFft& operator=(const ComplexFft&) = delete;

  int size() const { return n_; }
  // Both spans have n elements and must not overlap (KissFFT allocates for in-place transforms).
  void Transform(std::span<const std::complex<float>> in, std::span<std::complex<float>> out) const;

 private:
  ComplexFft(int n, void* cfg) : n_(n), cfg_(cfg) {}
  int n_;
  void* cfg_;  // kiss_fft_cfg
};

// Smallest even m >= n whose only prime factors are 2, 3 and 5 (fast for KissFFT).
int NextFastEvenSize(int n);

}  // namespace tend::dsp
