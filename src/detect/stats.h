// Small numerical helpers for threshold calibration: Student-t and normal tail quantiles, and
// sample quantiles. Self-contained so the device needs no statistics library.
#pragma once

#include <vector>

namespace tend::detect {

// Regularized incomplete beta function I_x(a, b), a, b > 0, 0 <= x <= 1.
double RegularizedIncompleteBeta(double a, double b, double x);

// Upper tail of Student's t with `dof` degrees of freedom: P(T > t).
double StudentTUpperTail(double t, double dof);

// t such that P(T > t) = p, for 0 < p < 0.5 (accurate to ~1e-10 relative).
double StudentTUpperQuantile(double p, double dof);

// z such that P(Z > z) = p for the standard normal, 0 < p < 0.5.
double NormalUpperQuantile(double p);

// Linear-interpolation sample quantile (numpy's default), q in [0, 1]; `values` non-empty.
double SampleQuantile(std::vector<double> values, double q);

}  // namespace tend::detect
