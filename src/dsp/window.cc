#include "dsp/window.h"

#include <cmath>
#include <numbers>

namespace tend::dsp {

Result<WindowFn> ParseWindowFn(std::string_view name) {
  if (name == "hann") return WindowFn::kHann;
  if (name == "hamming") return WindowFn::kHamming;
  if (name == "blackman") return WindowFn::kBlackman;
  if (name == "rect") return WindowFn::kRect;
  return Fail(Error::Invalid("window_fn: unknown window '" + std::string(name) +
                             "' (expected hann, hamming, blackman or rect)"));
}

const char* WindowFnName(WindowFn fn) {
  switch (fn) {
    case WindowFn::kHann:
      return "hann";
    case WindowFn::kHamming:
      return "hamming";
    case WindowFn::kBlackman:
      return "blackman";
    case WindowFn::kRect:
      return "rect";
  }
  return "rect";
}

CosineSum WindowCoefficients(WindowFn fn) {
  switch (fn) {
    case WindowFn::kHann:
      return {0.5, 0.5, 0.0};
    case WindowFn::kHamming:
      return {0.54, 0.46, 0.0};
    case WindowFn::kBlackman:
      return {0.42, 0.5, 0.08};
    case WindowFn::kRect:
      return {1.0, 0.0, 0.0};
  }
  return {};
}

void FillWindow(WindowFn fn, std::span<float> w) {
  const CosineSum c = WindowCoefficients(fn);
  const double n = static_cast<double>(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    const double t = 2.0 * std::numbers::pi * static_cast<double>(i) / n;
    w[i] = static_cast<float>(c.a0 - c.a1 * std::cos(t) + c.a2 * std::cos(2.0 * t));
  }
}

double WindowPower(WindowFn fn, int n) {
  const CosineSum c = WindowCoefficients(fn);
  return n * (c.a0 * c.a0 + 0.5 * c.a1 * c.a1 + 0.5 * c.a2 * c.a2);
}

}  // namespace tend::dsp
