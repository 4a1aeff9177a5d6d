#include "detect/stats.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>

namespace tend::detect {

namespace {

// Continued fraction for the incomplete beta (modified Lentz), valid for x < (a+1)/(a+b+2).
double BetaContinuedFraction(double a, double b, double x) {
  constexpr double kTiny = 1e-300;
  constexpr double kEps = 1e-15;
  const double qab = a + b, qap = a + 1, qam = a - 1;
  double c = 1, d = 1 - qab * x / qap;
  if (std::fabs(d) < kTiny) d = kTiny;
  d = 1 / d;
  double h = d;
  for (int m = 1; m <= 10000; ++m) {
    const int m2 = 2 * m;
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1 + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1 / d;
    h *= d * c;
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1 + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1 / d;
    const double del = d * c;
    h *= del;
    if (std::fabs(del - 1) < kEps) break;
  }
  return h;
}

}  // namespace

double RegularizedIncompleteBeta(double a, double b, double x) {
  assert(a > 0 && b > 0);
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const double log_front =
      std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x);
  if (x < (a + 1) / (a + b + 2)) return std::exp(log_front) * BetaContinuedFraction(a, b, x) / a;
  return 1 - std::exp(log_front) * BetaContinuedFraction(b, a, 1 - x) / b;
}

double StudentTUpperTail(double t, double dof) {
  if (t == 0) return 0.5;
  const double x = dof / (dof + t * t);
  const double tail = 0.5 * RegularizedIncompleteBeta(dof / 2, 0.5, x);
  return t > 0 ? tail : 1 - tail;
}

double StudentTUpperQuantile(double p, double dof) {
  assert(p > 0 && p < 0.5 && dof > 0);
  // Bracket, then bisect on log(tail): monotone, and robust for extreme p and small dof.
  double lo = 0, hi = 1;
  while (StudentTUpperTail(hi, dof) > p && hi < 1e300) {
    lo = hi;
    hi *= 2;
  }
  const double log_p = std::log(p);
  for (int i = 0; i < 200 && (hi - lo) > 1e-12 * hi; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (std::log(StudentTUpperTail(mid, dof)) > log_p)
      lo = mid;
    else
      hi = mid;
  }
  return 0.5 * (lo + hi);
}

double NormalUpperQuantile(double p) {
  assert(p > 0 && p < 0.5);
  double lo = 0, hi = 40;
  const double log_p = std::log(p);
  for (int i = 0; i < 200 && (hi - lo) > 1e-13; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (std::log(0.5 * std::erfc(mid / std::sqrt(2.0))) > log_p)
      lo = mid;
    else
      hi = mid;
  }
  return 0.5 * (lo + hi);
}

double SampleQuantile(std::vector<double> values, double q) {
  assert(!values.empty());
  std::sort(values.begin(), values.end());
  const double pos = q * static_cast<double>(values.size() - 1);
  const size_t i = static_cast<size_t>(std::floor(pos));
  if (i + 1 >= values.size()) return values.back();
  const double frac = pos - static_cast<double>(i);
  return values[i] + frac * (values[i + 1] - values[i]);
}

}  // namespace tend::detect
