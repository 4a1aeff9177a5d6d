// Per-asset drift monitoring: is the input still the kind of data the model was commissioned on?
// Two monitors, both pure logic (no clocks, no I/O, nothing allocated per event):
//
// DriftMonitor: per-feature population stability index (PSI) of a rolling window of the last
// `window` events against the commissioning distribution, on that distribution's deciles (10
// bins): PSI = sum_b (p_b - q_b) ln(p_b / q_b), q_b the commissioning share of bin b (10 %
// each for a continuous feature; a feature with ties, such as a frequency on the FFT grid,
// fills its bins unevenly), p_b the window's share, 0.5 added to every bin count on both sides
// (so an empty bin stays finite). Levels: warn at
// 0.1, alert at 0.25 (the usual PSI reading: < 0.1 stable, 0.1-0.25 moved, > 0.25 shifted).
// Chance level: a window of n events from the commissioning distribution itself, compared with
// deciles estimated from m commissioning rows, gives PSI of about 9 (1/n + 1/m) on average
// (0.05 for n = 360, m = 400; PSI is close to the chi-square distance, 9 = bins - 1), which
// with tens of features would put the largest over 0.1 by chance alone. The PSI reported is the
// excess over that chance level (never below 0), and nothing is reported before min_events.
// The monitor reports each feature's PSI, the top k, and the worst level; it does not know what
// is "bad", only "different from commissioning".
//
// InputHealth: the raw signal itself, per channel and window: a flat-lined sensor (the channel's
// std below flat_rel x its commissioning std, or exactly constant, for flat_windows windows in
// a row), clipping (at least clip_samples samples sit at the window's extreme value: a clean
// signal touches its peak once or twice, a clipped one rides the rail), NaN/Inf samples
// (a NaN burst: every window with one is counted; the window cannot be scored) and a
// sample-rate glitch (frames delivered per second of the caller's clock off the nominal rate
// by more than rate_tolerance).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace tend {

inline constexpr int kDriftBins = 10;

struct DriftOptions {
  int window = 360;      // events in the rolling window (an hour at one event per 10 s)
  int min_events = 360;  // no PSI is reported before this many events
  double warn = 0.1;
  double alert = 0.25;
  int top_k = 5;  // features reported (metric cardinality)
  Status Validate() const;
};

enum class DriftLevel { kNone = 0, kWarn = 1, kAlert = 2 };
const char* DriftLevelName(DriftLevel l);  // "none" | "warn" | "alert"

struct FeatureDrift {
  int feature = -1;
  float psi = 0;
  DriftLevel level = DriftLevel::kNone;
};

// The commissioning distribution: 9 decile cut points per feature, ascending, and the share of
// commissioning rows in each of the 10 bins they make.
struct DriftReference {
  std::vector<std::array<float, kDriftBins - 1>> deciles;
  std::vector<std::array<float, kDriftBins>> shares;
  int64_t rows = 0;  // commissioning rows the deciles came from
  // From commissioning rows (row-major, rows x features); errors on too few rows or a NaN.
  static Result<DriftReference> FromRows(std::span<const float> rows, size_t features);
  Status Validate() const;
  // The bin of a value: ties with a cut point go up (numpy.digitize), NaN goes last.
  static int Bin(const std::array<float, kDriftBins - 1>& cuts, float v);
};

class DriftMonitor {
 public:
  static Result<DriftMonitor> Create(DriftReference reference, const DriftOptions& options);

  // One event's feature vector (the model's input, before any adaptation). Non-finite values
  // fall in the outermost bins.
  void Observe(std::span<const float> features);

  int64_t events() const { return events_; }
  bool ready() const { return events_ >= options_.min_events; }
  float Psi(size_t feature) const { return psi_[feature]; }
  DriftLevel Level() const { return level_; }  // the worst feature's (none until ready)
  // The top k features by PSI, worst first (sorted when asked, not per event).
  std::span<const FeatureDrift> Top() const;
  int CountAtLeast(DriftLevel level) const;  // features at `level` or worse
  size_t features() const { return psi_.size(); }

 private:
  DriftMonitor() = default;
  void Recompute();
  void Summarise();
  void SortTop() const;
  double Term(size_t feature, int bin, double n) const;
  void UpdateTerm(size_t feature, int bin);

  DriftOptions options_;
  DriftReference ref_;
  std::vector<uint8_t> ring_;    // window x features bin indices
  std::vector<int32_t> counts_;  // features x bins
  std::vector<float> psi_;
  // Each bin's PSI term and each feature's sum of them, valid for a full window (n = window):
  // an event then moves one count per feature, so two terms are updated instead of every bin.
  std::vector<double> terms_;  // features x bins
  std::vector<double> raw_;    // features
  bool terms_full_ = false;
  // Tables for a full window's terms: ln(c + 0.5) per count c, and per feature and bin the
  // reference share q and ln(q n + 0.5) (n = window).
  std::vector<double> log_count_;
  std::vector<double> ref_full_, log_ref_full_;
  // The top k, sorted on demand from psi_ (Top() is const: a cache).
  mutable std::vector<int> order_;
  mutable std::vector<FeatureDrift> top_;
  mutable size_t top_count_ = 0;
  mutable bool top_stale_ = true;
  size_t pos_ = 0;
  int64_t events_ = 0;
  DriftLevel level_ = DriftLevel::kNone;
};

enum InputProblem : uint32_t {
  kInputOk = 0,
  kFlatLine = 1u << 0,
  kClipping = 1u << 1,
  kNonFinite = 1u << 2,
  kRateGlitch = 1u << 3,
};
std::string InputProblemNames(uint32_t problems);  // "flat_line,clipping" ("ok" when none)

struct InputHealthOptions {
  double flat_rel = 1e-3;  // std below this share of the commissioning std is flat
  int flat_windows = 3;    // consecutive flat windows before a channel counts as flat-lined
  int clip_samples = 4;    // samples at the window's extreme before it counts as clipped
  double rate_tolerance = 0.02;
  Status Validate() const;
};

struct InputHealthStatus {
  uint32_t problems = kInputOk;  // seen in the latest window (timing: latest check)
  int64_t windows = 0;
  int64_t flat_windows = 0, clipped_windows = 0, non_finite_windows = 0, rate_glitches = 0;
  int64_t non_finite_samples = 0;
  int flat_channel = -1, clipped_channel = -1;  // latest offending channel
  double measured_rate = 0;                     // latest ObserveTiming figure
};

class InputHealth {
 public:
  // `reference_std`: each channel's commissioning std (empty: only an exactly constant channel
  // counts as flat).
  static Result<InputHealth> Create(int channels, double sample_rate,
                                    std::vector<float> reference_std,
                                    const InputHealthOptions& options);

  // One window, PLANAR (channel c at [c*n, (c+1)*n)).
  const InputHealthStatus& Observe(std::span<const float> planar);
  // `frames` delivered over `seconds` of the caller's clock.
  const InputHealthStatus& ObserveTiming(int64_t frames, double seconds);
  const InputHealthStatus& status() const { return status_; }

 private:
  InputHealth() = default;
  int channels_ = 1;
  double sample_rate_ = 0;
  std::vector<float> ref_std_;
  std::vector<int> flat_run_;
  InputHealthOptions opt_;
  InputHealthStatus status_;
};

}  // namespace tend
