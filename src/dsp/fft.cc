#include "dsp/fft.h"

#include <kiss_fft.h>
#include <kiss_fftr.h>

#include <cassert>
#include <cstdlib>
#include <string>

namespace tend::dsp {

// std::complex<float> is specified to be layout-compatible with float[2], as is kiss_fft_cpx.
static_assert(sizeof(kiss_fft_cpx) == sizeof(std::complex<float>));
static_assert(alignof(kiss_fft_cpx) <= alignof(std::complex<float>));

Result<std::unique_ptr<RealFft>> RealFft::Create(int n) {
  if (n < 4 || n % 2 != 0) {
    return Fail(Error::Invalid("real FFT length " + std::to_string(n) + " must be even and >= 4"));
  }
  kiss_fftr_cfg cfg = kiss_fftr_alloc(n, 0, nullptr, nullptr);
  if (cfg == nullptr) {
    return Fail(Error::Internal("kiss_fftr_alloc(" + std::to_string(n) + ") failed"));
  }
  return std::unique_ptr<RealFft>(new RealFft(n, cfg));
}

RealFft::~RealFft() { kiss_fftr_free(cfg_); }

void RealFft::Forward(std::span<const float> in, std::span<std::complex<float>> out) const {
  assert(in.size() == static_cast<size_t>(n_) && out.size() == static_cast<size_t>(n_ / 2 + 1));
  kiss_fftr(static_cast<kiss_fftr_cfg>(cfg_), in.data(),
            reinterpret_cast<kiss_fft_cpx*>(out.data()));
}

Result<std::unique_ptr<ComplexFft>> ComplexFft::Create(int n, bool inverse) {
  if (n < 1) {
    return Fail(Error::Invalid("complex FFT length " + std::to_string(n) + " must be >= 1"));
  }
  kiss_fft_cfg cfg = kiss_fft_alloc(n, inverse ? 1 : 0, nullptr, nullptr);
  if (cfg == nullptr) {
    return Fail(Error::Internal("kiss_fft_alloc(" + std::to_string(n) + ") failed"));
  }
  return std::unique_ptr<ComplexFft>(new ComplexFft(n, cfg));
}

ComplexFft::~ComplexFft() { kiss_fft_free(cfg_); }

void ComplexFft::Transform(std::span<const std::complex<float>> in,
                           std::span<std::complex<float>> out) const {
  assert(in.size() == static_cast<size_t>(n_) && out.size() == static_cast<size_t>(n_));
  assert(in.data() != out.data());
  kiss_fft(static_cast<kiss_fft_cfg>(cfg_), reinterpret_cast<const kiss_fft_cpx*>(in.data()),
           reinterpret_cast<kiss_fft_cpx*>(out.data()));
}

int NextFastEvenSize(int n) {
  for (int m = n < 2 ? 2 : n + (n % 2);; m += 2) {
    int r = m;
    for (int p : {2, 3, 5}) {
      while (r % p == 0) r /= p;
    }
    if (r == 1) return m;
  }
}

}  // namespace tend::dsp
