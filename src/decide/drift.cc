#include "decide/drift.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace tend {

Status DriftOptions::Validate() const {
  auto bad = [](const std::string& m) { return Fail(Error::Invalid("drift: " + m)); };
  if (window < 10 || window > 1000000)
    return bad(fmt::format("window {} must be 10..1000000", window));
  if (min_events < 1 || min_events > window) {
    return bad(fmt::format("min_events {} must be in 1..window ({})", min_events, window));
  }
  if (!(warn > 0) || !(alert > warn) || !std::isfinite(alert)) {
    return bad(fmt::format("levels must satisfy 0 < warn ({}) < alert ({})", warn, alert));
  }
  if (top_k < 1 || top_k > 1000) return bad(fmt::format("top_k {} must be 1..1000", top_k));
  return Ok();
}

const char* DriftLevelName(DriftLevel l) {
  switch (l) {
    case DriftLevel::kNone:
      return "none";
    case DriftLevel::kWarn:
      return "warn";
    case DriftLevel::kAlert:
      return "alert";
  }
  return "none";
}

Result<DriftReference> DriftReference::FromRows(std::span<const float> rows, size_t f) {
  if (f == 0 || rows.size() % f != 0) {
    return Fail(Error::Invalid("drift reference: rows must be a whole number of feature vectors"));
  }
  const size_t n = rows.size() / f;
  if (n < kDriftBins) {
    return Fail(Error::Invalid(
        fmt::format("drift reference: {} rows are too few for deciles (need {})", n, kDriftBins)));
  }
  DriftReference ref;
  ref.deciles.resize(f);
  std::vector<float> col(n);
  for (size_t j = 0; j < f; ++j) {
    for (size_t i = 0; i < n; ++i) {
      col[i] = rows[i * f + j];
      if (!std::isfinite(col[i])) {
        return Fail(
            Error::Invalid(fmt::format("drift reference: row {} feature {} is not finite", i, j)));
      }
    }
    std::sort(col.begin(), col.end());
    for (int d = 1; d < kDriftBins; ++d) {  // numpy's linear interpolation
      const double pos = (n - 1) * d / double(kDriftBins);
      const size_t lo = static_cast<size_t>(pos);
      const double frac = pos - lo;
      ref.deciles[j][d - 1] =
          static_cast<float>(col[lo] + (lo + 1 < n ? frac * (col[lo + 1] - col[lo]) : 0.0));
    }
  }
  ref.rows = static_cast<int64_t>(n);
  ref.shares.resize(f);
  for (size_t j = 0; j < f; ++j) {
    std::array<int64_t, kDriftBins> counts{};
    for (size_t i = 0; i < n; ++i)
      ++counts[static_cast<size_t>(Bin(ref.deciles[j], rows[i * f + j]))];
    for (int b = 0; b < kDriftBins; ++b) {
      ref.shares[j][static_cast<size_t>(b)] =
          static_cast<float>(counts[static_cast<size_t>(b)]) / n;
    }
  }
  return ref;
}

int DriftReference::Bin(const std::array<float, kDriftBins - 1>& q, float v) {
  if (std::isnan(v)) return kDriftBins - 1;
  return static_cast<int>(std::upper_bound(q.begin(), q.end(), v) - q.begin());
}

Status DriftReference::Validate() const {
  if (deciles.empty()) return Fail(Error::Invalid("drift reference: no features"));
  if (rows < kDriftBins) {
    return Fail(Error::Invalid(fmt::format("drift reference: {} rows are too few", rows)));
  }
  if (shares.size() != deciles.size()) {
    return Fail(Error::Invalid(fmt::format("drift reference: {} bin shares for {} features",
                                           shares.size(), deciles.size())));
  }
  for (size_t j = 0; j < shares.size(); ++j) {
    double total = 0;
    for (float q : shares[j]) {
      if (!(q >= 0 && q <= 1))
        return Fail(Error::Invalid("drift reference: a bin share is not in [0, 1]"));
      total += q;
    }
    if (std::fabs(total - 1) > 1e-3) {
      return Fail(Error::Invalid(
          fmt::format("drift reference: feature {} bin shares sum to {}", j, total)));
    }
  }
  for (size_t j = 0; j < deciles.size(); ++j) {
    for (int d = 0; d < kDriftBins - 1; ++d) {
      if (!std::isfinite(deciles[j][d]) || (d > 0 && deciles[j][d] < deciles[j][d - 1])) {
        return Fail(Error::Invalid(
            fmt::format("drift reference: feature {} deciles are not finite and ascending", j)));
      }
    }
  }
  return Ok();
}

Result<DriftMonitor> DriftMonitor::Create(DriftReference reference, const DriftOptions& o) {
  TEND_RETURN_NOT_OK(o.Validate());
  TEND_RETURN_NOT_OK(reference.Validate());
  DriftMonitor m;
  const size_t f = reference.deciles.size();
  m.options_ = o;
  m.ref_ = std::move(reference);
  m.ring_.assign(static_cast<size_t>(o.window) * f, 0);
  m.counts_.assign(f * kDriftBins, 0);
  m.psi_.assign(f, 0);
  m.terms_.assign(f * kDriftBins, 0);
  m.raw_.assign(f, 0);
  m.order_.resize(f);
  m.top_.resize(static_cast<size_t>(o.top_k));
  // A full window's PSI terms without a log per event: ln(p/q) = ln(c + 0.5) - ln(q*n + 0.5)
  // (the common denominator n + 5 cancels), both sides from tables.
  const double n = static_cast<double>(o.window);
  m.log_count_.resize(static_cast<size_t>(o.window) + 1);
  for (size_t c = 0; c < m.log_count_.size(); ++c) {
    m.log_count_[c] = std::log(static_cast<double>(c) + 0.5);
  }
  m.ref_full_.resize(f * kDriftBins);
  m.log_ref_full_.resize(f * kDriftBins);
  for (size_t j = 0; j < f; ++j) {
    for (size_t b = 0; b < kDriftBins; ++b) {
      const double q = m.ref_.shares[j][b] * n + 0.5;
      m.ref_full_[j * kDriftBins + b] = q / (n + 0.5 * kDriftBins);
      m.log_ref_full_[j * kDriftBins + b] = std::log(q);
    }
  }
  return m;
}

// The bin of v against ascending cut points: how many are <= v (ties go up, as
// numpy.digitize), without branches; NaN goes last.
namespace {
uint8_t BinOf(const std::array<float, kDriftBins - 1>& q, float v) {
  if (std::isnan(v)) return kDriftBins - 1;
  int bin = 0;
  for (int k = 0; k < kDriftBins - 1; ++k) bin += q[static_cast<size_t>(k)] <= v;
  return static_cast<uint8_t>(bin);
}
}  // namespace

void DriftMonitor::Observe(std::span<const float> x) {
  const size_t f = psi_.size();
  uint8_t* slot = ring_.data() + pos_ * f;
  const bool full = events_ >= options_.window;
  // A full recompute once per window re-anchors the running sums against rounding.
  const bool incremental = full && terms_full_ && events_ % options_.window != 0;
  for (size_t j = 0; j < f; ++j) {
    const uint8_t bin = BinOf(ref_.deciles[j], j < x.size() ? x[j] : 0.0f);
    const uint8_t old = slot[j];
    if (full) --counts_[j * kDriftBins + old];
    slot[j] = bin;
    ++counts_[j * kDriftBins + bin];
    if (incremental && old != bin) {
      UpdateTerm(j, old);
      UpdateTerm(j, bin);
    }
  }
  pos_ = (pos_ + 1) % static_cast<size_t>(options_.window);
  ++events_;
  if (!ready()) return;
  if (incremental) {
    Summarise();
  } else {
    Recompute();
  }
}

double DriftMonitor::Term(size_t j, int b, double n) const {
  const double p =
      (counts_[j * kDriftBins + static_cast<size_t>(b)] + 0.5) / (n + 0.5 * kDriftBins);
  const double q = (ref_.shares[j][static_cast<size_t>(b)] * n + 0.5) / (n + 0.5 * kDriftBins);
  return (p - q) * std::log(p / q);
}

// Term(j, b, window) from the tables (same value up to rounding).
void DriftMonitor::UpdateTerm(size_t j, int b) {
  const size_t at = j * kDriftBins + static_cast<size_t>(b);
  const int32_t c = counts_[at];
  const double n = static_cast<double>(options_.window);
  const double p = (c + 0.5) / (n + 0.5 * kDriftBins);
  double& t = terms_[at];
  raw_[j] -= t;
  t = (p - ref_full_[at]) * (log_count_[static_cast<size_t>(c)] - log_ref_full_[at]);
  raw_[j] += t;
}

void DriftMonitor::Recompute() {
  const size_t f = psi_.size();
  const double n = static_cast<double>(std::min<int64_t>(events_, options_.window));
  for (size_t j = 0; j < f; ++j) {
    double psi = 0;
    for (int b = 0; b < kDriftBins; ++b) {
      terms_[j * kDriftBins + static_cast<size_t>(b)] = Term(j, b, n);
      psi += terms_[j * kDriftBins + static_cast<size_t>(b)];
    }
    raw_[j] = psi;
  }
  terms_full_ = events_ >= options_.window;
  Summarise();
}

// PSI per feature (less what chance alone gives), the level and the top k.
void DriftMonitor::Summarise() {
  const size_t f = psi_.size();
  const double n = static_cast<double>(std::min<int64_t>(events_, options_.window));
  // The reference side is smoothed as if it had as many rows as the window.
  const double chance = (kDriftBins - 1) * (1.0 / n + 1.0 / static_cast<double>(ref_.rows));
  level_ = DriftLevel::kNone;
  for (size_t j = 0; j < f; ++j) {
    const double psi = std::max(0.0, raw_[j] - chance);
    psi_[j] = static_cast<float>(psi);
    if (psi >= options_.alert) {
      level_ = DriftLevel::kAlert;
    } else if (psi >= options_.warn && level_ == DriftLevel::kNone) {
      level_ = DriftLevel::kWarn;
    }
  }
  top_stale_ = true;
}

std::span<const FeatureDrift> DriftMonitor::Top() const {
  if (!ready()) return {};
  if (top_stale_) SortTop();
  return {top_.data(), top_count_};
}

// The top k by PSI; on demand (a scrape, a summary), not per event.
void DriftMonitor::SortTop() const {
  const size_t f = psi_.size();
  for (size_t j = 0; j < f; ++j) order_[j] = static_cast<int>(j);
  top_count_ = std::min(top_.size(), f);
  std::partial_sort(order_.begin(), order_.begin() + static_cast<std::ptrdiff_t>(top_count_),
                    order_.end(), [&](int a, int b) { return psi_[a] > psi_[b]; });
  for (size_t k = 0; k < top_count_; ++k) {
    const float p = psi_[order_[k]];
    top_[k] = {order_[k], p,
               p >= options_.alert  ? DriftLevel::kAlert
               : p >= options_.warn ? DriftLevel::kWarn
                                    : DriftLevel::kNone};
  }
  top_stale_ = false;
}

int DriftMonitor::CountAtLeast(DriftLevel level) const {
  if (!ready()) return 0;
  const double t = level == DriftLevel::kAlert  ? options_.alert
                   : level == DriftLevel::kWarn ? options_.warn
                                                : -1;
  return static_cast<int>(std::count_if(psi_.begin(), psi_.end(), [&](float p) { return p >= t; }));
}

std::string InputProblemNames(uint32_t p) {
  if (p == kInputOk) return "ok";
  std::string s;
  auto add = [&](uint32_t bit, const char* name) {
    if (p & bit) s += (s.empty() ? "" : ",") + std::string(name);
  };
  add(kFlatLine, "flat_line");
  add(kClipping, "clipping");
  add(kNonFinite, "non_finite");
  add(kRateGlitch, "rate_glitch");
  return s;
}

Status InputHealthOptions::Validate() const {
  if (!(flat_rel >= 0 && flat_rel < 1))
    return Fail(Error::Invalid("input health: flat_rel must be in [0, 1)"));
  if (flat_windows < 1) return Fail(Error::Invalid("input health: flat_windows must be >= 1"));
  if (clip_samples < 2) return Fail(Error::Invalid("input health: clip_samples must be >= 2"));
  if (!(rate_tolerance > 0 && rate_tolerance < 1)) {
    return Fail(Error::Invalid("input health: rate_tolerance must be in (0, 1)"));
  }
  return Ok();
}

Result<InputHealth> InputHealth::Create(int channels, double sample_rate,
                                        std::vector<float> reference_std,
                                        const InputHealthOptions& o) {
  TEND_RETURN_NOT_OK(o.Validate());
  if (channels < 1 || !(sample_rate > 0)) {
    return Fail(Error::Invalid("input health: channels and sample_rate must be positive"));
  }
  if (!reference_std.empty() && reference_std.size() != static_cast<size_t>(channels)) {
    return Fail(Error::Invalid(fmt::format("input health: {} reference stds for {} channels",
                                           reference_std.size(), channels)));
  }
  InputHealth h;
  h.channels_ = channels;
  h.sample_rate_ = sample_rate;
  h.ref_std_ = std::move(reference_std);
  h.flat_run_.assign(static_cast<size_t>(channels), 0);
  h.opt_ = o;
  return h;
}

namespace {

// One channel of one window: what input health judges.
struct ChannelPass {
  double sum = 0, sum2 = 0;  // of x - shift over the finite samples
  double shift = 0;
  float lo = 0, hi = 0;
  int64_t at_lo = 0, at_hi = 0;  // samples equal to lo / hi
  int64_t used = 0, bad = 0;     // finite / non-finite samples

  // One sample into the extremes (and the counts at them) and the sums.
  void Add(float v) {
    at_hi = v > hi ? 1 : at_hi + (v == hi);
    at_lo = v < lo ? 1 : at_lo + (v == lo);
    hi = std::max(hi, v);
    lo = std::min(lo, v);
    const double d = static_cast<double>(v) - shift;
    sum += d;
    sum2 += d * d;
  }
};

// GCC/Clang vector extensions (SSE2 on x86-64, NEON on arm64), as dsp/features.cc has them.
typedef float Float4 __attribute__((vector_size(16)));
typedef int32_t Int4 __attribute__((vector_size(16)));

// Four lanes' running extremes and how many samples sat at them: a lane's count restarts when
// its extreme moves.
struct Extremes4 {
  Float4 lo = {HUGE_VALF, HUGE_VALF, HUGE_VALF, HUGE_VALF}, hi = -lo;
  Int4 nlo = {0, 0, 0, 0}, nhi = {0, 0, 0, 0};
  void Add(Float4 v) {
    const Int4 gt = v > hi, lt = v < lo;
    nhi = gt ? Int4{1, 1, 1, 1} : nhi - (v == hi);  // a true comparison is -1
    nlo = lt ? Int4{1, 1, 1, 1} : nlo - (v == lo);
    hi = gt ? v : hi;
    lo = lt ? v : lo;
  }
  void Into(ChannelPass& c) const {
    for (int l = 0; l < 4; ++l) {
      c.hi = std::max(c.hi, hi[l]);
      c.lo = std::min(c.lo, lo[l]);
    }
  }
  void CountInto(ChannelPass& c) const {  // after every Into
    for (int l = 0; l < 4; ++l) {
      c.at_hi += hi[l] == c.hi ? nhi[l] : 0;
      c.at_lo += lo[l] == c.lo ? nlo[l] : 0;
    }
  }
};

// Adds a float block sum's lanes to a double total.
void AddBlock(double& total, Float4 b) {
  total += (static_cast<double>(b[0]) + b[1]) + (static_cast<double>(b[2]) + b[3]);
}

// Sums, extremes and how many samples sit at each extreme, in one vectorised pass over 8
// samples a step (two sets of 4 lanes: independent dependency chains); the lanes that hold the
// overall extreme add up their counts. The sums are of x - x[0], which keeps the variance exact
// for a signal with a large offset; blocks of 128 samples are summed in float (16 per lane),
// then in double. Meaningful only when the sums come out finite (no NaN/Inf sample).
ChannelPass FastPass(const float* x, size_t n) {
  ChannelPass c;
  c.shift = x[0];
  const Float4 shift = {x[0], x[0], x[0], x[0]};
  Extremes4 ea, eb;
  size_t i = 0;
  constexpr size_t kBlock = 128;
  const size_t whole = n - n % 8;
  while (i < whole) {
    const size_t end = std::min(whole, i + kBlock);
    Float4 sa = {0, 0, 0, 0}, sb = sa, qa = sa, qb = sa;
    for (; i < end; i += 8) {
      Float4 va, vb;
      std::memcpy(&va, x + i, sizeof va);
      std::memcpy(&vb, x + i + 4, sizeof vb);
      ea.Add(va);
      eb.Add(vb);
      const Float4 da = va - shift, db = vb - shift;
      sa += da;
      sb += db;
      qa += da * da;
      qb += db * db;
    }
    AddBlock(c.sum, sa + sb);
    AddBlock(c.sum2, qa + qb);
  }
  c.hi = -HUGE_VALF;
  c.lo = HUGE_VALF;
  ea.Into(c);
  eb.Into(c);
  ea.CountInto(c);
  eb.CountInto(c);
  for (; i < n; ++i) c.Add(x[i]);
  c.used = static_cast<int64_t>(n);
  return c;
}

// The same over the finite samples only, for a window that has NaN/Inf samples (rare).
ChannelPass FinitePass(const float* x, size_t n) {
  ChannelPass c;
  for (size_t i = 0; i < n; ++i) {
    const float v = x[i];
    if (!std::isfinite(v)) {
      ++c.bad;
      continue;
    }
    if (c.used++ == 0) {
      c.shift = v;
      c.lo = c.hi = v;
    }
    c.Add(v);
  }
  return c;
}

}  // namespace

// One pass over each channel's samples (FastPass; FinitePass when it meets NaN/Inf).
const InputHealthStatus& InputHealth::Observe(std::span<const float> planar) {
  InputHealthStatus& s = status_;
  s.problems = kInputOk;
  ++s.windows;
  const size_t n = planar.size() / static_cast<size_t>(channels_);
  for (int c = 0; c < channels_ && n > 0; ++c) {
    const float* x = planar.data() + static_cast<size_t>(c) * n;
    ChannelPass p = FastPass(x, n);
    if (!std::isfinite(p.sum) || !std::isfinite(p.sum2)) p = FinitePass(x, n);
    if (p.bad > 0) {
      s.problems |= kNonFinite;
      s.non_finite_samples += p.bad;
    }
    if (p.used < 2) continue;
    const double mean = p.sum / static_cast<double>(p.used);  // of x - shift
    const double sd = std::sqrt(std::max(0.0, p.sum2 / static_cast<double>(p.used) - mean * mean));
    const double ref = ref_std_.empty() ? 0.0 : ref_std_[static_cast<size_t>(c)];
    const bool flat = p.hi == p.lo || sd <= opt_.flat_rel * ref;
    int& run = flat_run_[static_cast<size_t>(c)];
    run = flat ? run + 1 : 0;
    if (run >= opt_.flat_windows) {
      s.problems |= kFlatLine;
      s.flat_channel = c;
    }
    if (p.hi > p.lo && std::max(p.at_hi, p.at_lo) >= opt_.clip_samples) {
      s.problems |= kClipping;
      s.clipped_channel = c;
    }
  }
  s.flat_windows += (s.problems & kFlatLine) ? 1 : 0;
  s.clipped_windows += (s.problems & kClipping) ? 1 : 0;
  s.non_finite_windows += (s.problems & kNonFinite) ? 1 : 0;
  return s;
}

const InputHealthStatus& InputHealth::ObserveTiming(int64_t frames, double seconds) {
  status_.problems &= ~kRateGlitch;
  if (seconds > 0 && frames >= 0) {
    status_.measured_rate = static_cast<double>(frames) / seconds;
    if (std::fabs(status_.measured_rate / sample_rate_ - 1) > opt_.rate_tolerance) {
      status_.problems |= kRateGlitch;
      ++status_.rate_glitches;
    }
  }
  return status_;
}

}  // namespace tend
