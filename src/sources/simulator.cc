// The stamping-press simulator.
//
// Physics (what a die-set accelerometer on a mechanical press sees):
// - The press strokes every 60/spm s (crank driven: the period is steady, onsets jitter by a few
//   ms). Between strokes the sensor sees broadband noise plus mains hum (50 Hz and harmonics, from
//   motors and drives).
// - At each stroke the punch hits the blank: a short contact-force pulse (half-sine, ~0.5 ms).
//   The structure answers as a bank of lightly damped modes (modal superposition): each mode is a
//   two-pole resonator driven by the force, i.e. a damped sinusoid per impact. The die set's
//   modes sit at 228/291/347 Hz with decay time constants 42/33/27 ms (~150 ms of audible ring);
//   two local punch/edge modes at 1.65/2.35 kHz decay in ~4 ms and are barely excited by a blunt,
//   healthy contact. A healthy press still varies from stroke to stroke: force +-6 % (sd), mode
//   frequencies +-0.3 %, decays +-5 %, modal gains +-8 %, contact time +-10 %, and now and then a
//   faint knock from the stripper/knock-out (Poisson, mean 0.5 per stroke, 3 % of the impact).
//   All of it is Gaussian truncated at 3 sd, so healthy strokes have no freak outliers.
// - Die wear w (0 new .. 1 failing) acts through a severity s(w) = w^2 (1 - exp(-(w/0.15)^2)):
//   damage accelerates (the usual P-F curve: s ~ w^2), and below w ~ 0.15 clearances are still
//   inside the die's tolerances (the soft dead zone), so wear 0-0.1 is indistinguishable from
//   healthy variability while 0.3 (s = 0.088) is clearly off in several features; everything
//   moves smoothly in between:
//     * loss of stiffness (cracks, worn guides): every die-set mode frequency x (1 - 0.10 s);
//     * more damping / energy leaking into loose joints: decay times / (1 + 2.5 s);
//     * clearance between punch and guide: a secondary impact (3 + 5 w) ms after the main one at
//       min(1.5 s, 0.8) of its force, plus rattle - Poisson(0.5 + 15 s) small impacts in the
//       15-90 ms after the hit at (0.03 + 0.3 sqrt(s)) of the force. The signal gets more
//       impulsive (kurtosis, crest factor, envelope modulation), and the interference of the two
//       impacts reshapes the fine 200-400 Hz band energies;
//     * edge chipping: a sharper contact (pulse duration x (1 - 0.4 s)) and stronger excitation
//       of the high-frequency edge modes (gain 0.08 + 1.2 s): the spectral centroid moves up;
//     * larger impact velocity through the clearance: force x (1 + 0.25 s).
//   Measured with tests/sources/sim_features.py (1,000 healthy strokes vs 300 per wear level,
//   2,000-sample windows, 19 features): wear 0.1 shifts no feature by more than 0.2 healthy sd
//   (Gaussian-detector AUC 0.56); wear 0.3 shifts seven by 1.7-4.1 sd (AUC 1.000); wear 0.2 is
//   in between (AUC 0.94). simulator_test.cc guards these properties.
//
// Determinism: each stroke's random numbers come from its own generator seeded by (seed,
// stroke), so labels are known up front and rendering does not depend on how Read is chunked.
// Background noise is one sequential stream; the hum phasors are re-synchronised to the absolute
// frame index every 4096 frames. Same options => bit-identical output on the same build.
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numbers>

#include "core/fs.h"
#include "sources/source.h"

namespace tend::sources {
namespace {

constexpr int kStructModes = 3;
constexpr int kHfModes = 2;
constexpr int kModes = kStructModes + kHfModes;
constexpr double kModeHz[kModes] = {228, 291, 347, 1650, 2350};
constexpr double kModeTau[kModes] = {0.042, 0.033, 0.027, 0.004, 0.0035};
// Modal gain per channel: channel 0 on the die set, channel 1 on the press frame (the path
// through the frame favours the middle mode and attenuates the edge modes).
constexpr double kModeGain[2][kStructModes] = {{1.0, 0.75, 0.55}, {0.45, 0.9, 0.6}};
constexpr double kHfChannelGain[2] = {1.0, 0.3};
constexpr double kContactS = 0.0005;
constexpr int kMaxRattle = 24;
constexpr int kHumHarmonics = 3;
constexpr int kResyncFrames = 4096;

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Per-stroke random numbers, drawn in a fixed order.
class StrokeRng {
 public:
  StrokeRng(uint64_t seed, int64_t stroke)
      : gen_(SplitMix64(SplitMix64(seed) + static_cast<uint64_t>(stroke))) {}
  double Uniform() { return ((gen_() >> 11) + 0.5) * 0x1.0p-53; }  // (0, 1)
  double Gauss() {
    const double u1 = Uniform(), u2 = Uniform();
    return std::sqrt(-2 * std::log(u1)) * std::cos(2 * std::numbers::pi * u2);
  }
  // Gaussian with standard deviation sd, truncated at +-3 sd.
  double Var(double sd) { return sd * std::clamp(Gauss(), -3.0, 3.0); }
  int Poisson(double mean, int cap) {
    const double limit = std::exp(-mean);
    int k = 0;
    double p = Uniform();
    while (p > limit && k < cap) {
      ++k;
      p *= Uniform();
    }
    return k;
  }

 private:
  std::mt19937_64 gen_;
};

struct Impact {
  double t_s, force, contact_s;
};

struct StrokePlan {
  double jitter_s = 0;
  double mode_hz[kModes], mode_tau[kModes], mode_gain[kModes];
  Impact impacts[2 + kMaxRattle];
  int n_impacts = 0;
};

double JitterSd(const SimulatorOptions& o) {
  return std::min(o.jitter_ms * 1e-3, 60.0 / o.strokes_per_min / 30);
}

// How far wear has progressed into the die's dynamics: ~w^2 (damage accelerates), with a soft
// dead zone below w ~ 0.15 where clearances are still inside the die's tolerances.
double Severity(double w) { return w * w * (1 - std::exp(-(w / 0.15) * (w / 0.15))); }

StrokePlan PlanStroke(const SimulatorOptions& o, int64_t k, double wear) {
  StrokeRng rng(o.seed, k);
  StrokePlan p;
  p.jitter_s = rng.Var(JitterSd(o));  // first draw: labels depend on it alone
  const double s = Severity(wear);
  const double force = o.impact_g * (1 + rng.Var(0.06)) * (1 + 0.25 * s);
  const double contact = kContactS * (1 + rng.Var(0.10)) * (1 - 0.4 * s);
  for (int m = 0; m < kStructModes; ++m) {
    p.mode_hz[m] = kModeHz[m] * (1 + rng.Var(0.003)) * (1 - 0.10 * s);
    p.mode_tau[m] = kModeTau[m] * (1 + rng.Var(0.05)) / (1 + 2.5 * s);
    p.mode_gain[m] = 1 + rng.Var(0.08);
  }
  const double hf_gain = (0.08 + 1.2 * s) * (1 + rng.Var(0.2));
  for (int m = kStructModes; m < kModes; ++m) {
    p.mode_hz[m] = kModeHz[m] * (1 + rng.Var(0.005));
    p.mode_tau[m] = kModeTau[m];
    p.mode_gain[m] = hf_gain;
  }
  p.impacts[p.n_impacts++] = {0.0, force, contact};
  const double delay = (0.003 + 0.005 * wear) * (1 + rng.Var(0.05));
  const double second = std::min(1.5 * s, 0.8) * (1 + rng.Var(0.1));
  p.impacts[p.n_impacts++] = {delay, force * second, contact};
  const int rattle = rng.Poisson(0.5 + 15 * s, kMaxRattle);
  for (int i = 0; i < rattle; ++i) {
    const double t = 0.015 + 0.075 * rng.Uniform();
    const double a = force * (0.03 + 0.3 * std::sqrt(s)) * (0.5 + 0.5 * rng.Uniform());
    p.impacts[p.n_impacts++] = {t, a, contact * 0.6};
  }
  return p;
}

constexpr const char* kKeys[] = {"sr",    "spm", "strokes", "seed", "wear",      "wear_end",
                                 "noise", "hum", "hum_hz",  "amp",  "jitter_ms", "ch"};

std::string KeyList() {
  std::string s;
  for (const char* k : kKeys) s += (s.empty() ? "" : ", ") + std::string(k);
  return s;
}

}  // namespace

Result<SimulatorOptions> SimulatorOptions::Parse(const std::string& kv) {
  return Parse(kv, SimulatorOptions{});
}

Result<SimulatorOptions> SimulatorOptions::Parse(const std::string& spec,
                                                 const SimulatorOptions& base) {
  // "sim" and "sim:k=v,..." as users write them for `--input`/`--source` (and as ToString()
  // prints), or the bare "k=v,...": every --sim flag accepts all three.
  const std::string kv =
      spec == "sim" ? std::string() : (spec.rfind("sim:", 0) == 0 ? spec.substr(4) : spec);
  SimulatorOptions o = base;
  bool wear_end_given = false;
  std::vector<std::string> seen;
  size_t pos = 0;
  while (pos <= kv.size() && !kv.empty()) {
    size_t comma = kv.find(',', pos);
    if (comma == std::string::npos) comma = kv.size();
    const std::string item = kv.substr(pos, comma - pos);
    pos = comma + 1;
    if (item.empty()) {
      if (comma == kv.size()) break;
      return Fail(Error::Invalid("sim: empty option in '" + kv + "'"));
    }
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Fail(Error::Invalid("sim: expected key=value, got '" + item + "'"));
    }
    const std::string key = item.substr(0, eq), val = item.substr(eq + 1);
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
      return Fail(Error::Invalid("sim: option '" + key + "' given twice"));
    }
    seen.push_back(key);
    auto bad = [&](const char* what) {
      return Fail(Error::Invalid(fmt::format("sim: {}={}: expected {}", key, val, what)));
    };
    auto num = [&](double* out) -> bool {
      const char* b = val.data();
      const char* e = b + val.size();
      if (b != e && *b == '+') ++b;
      auto [p, ec] = std::from_chars(b, e, *out);
      return b != e && ec == std::errc() && p == e && std::isfinite(*out);
    };
    auto integer = [&](auto* out) -> bool {
      auto [p, ec] = std::from_chars(val.data(), val.data() + val.size(), *out);
      return !val.empty() && ec == std::errc() && p == val.data() + val.size();
    };
    double d = 0;
    if (key == "sr") {
      if (!num(&o.sample_rate)) return bad("a number (Hz)");
    } else if (key == "spm") {
      if (!num(&o.strokes_per_min)) return bad("a number");
    } else if (key == "strokes") {
      if (!integer(&o.strokes)) return bad("an integer");
    } else if (key == "seed") {
      if (!integer(&o.seed)) return bad("a non-negative integer");
    } else if (key == "wear") {
      if (!num(&o.wear_start)) return bad("a number in 0..1");
    } else if (key == "wear_end") {
      if (!num(&o.wear_end)) return bad("a number in 0..1");
      wear_end_given = true;
    } else if (key == "noise") {
      if (!num(&o.noise_g)) return bad("a number (g RMS)");
    } else if (key == "hum") {
      if (!num(&o.hum_g)) return bad("a number (g)");
    } else if (key == "hum_hz") {
      if (!num(&o.hum_hz)) return bad("a number (Hz)");
    } else if (key == "amp") {
      if (!num(&o.impact_g)) return bad("a number (g)");
    } else if (key == "jitter_ms") {
      if (!num(&o.jitter_ms)) return bad("a number (ms)");
    } else if (key == "ch") {
      if (!num(&d) || d != std::floor(d)) return bad("1 or 2");
      o.channels = static_cast<int>(std::clamp(d, -1.0, 1e6));
    } else {
      return Fail(
          Error::Invalid(fmt::format("sim: unknown option '{}' (known: {})", key, KeyList())));
    }
  }
  if (!wear_end_given) o.wear_end = o.wear_start;
  TEND_RETURN_NOT_OK(o.Validate());
  return o;
}

std::string SimulatorOptions::ToSpec() const {
  return fmt::format(
      "sim:sr={},spm={},strokes={},seed={},wear={},wear_end={},noise={},hum={},hum_hz={},amp={},"
      "jitter_ms={},ch={}",
      sample_rate, strokes_per_min, strokes, seed, wear_start, wear_end, noise_g, hum_g, hum_hz,
      impact_g, jitter_ms, channels);
}

Status SimulatorOptions::Validate() const {
  auto bad = [](const std::string& m) { return Fail(Error::Invalid("sim: " + m)); };
  if (!(sample_rate >= 1000 && sample_rate <= 1e6)) {
    return bad(fmt::format("sr={} out of range (1000..1000000 Hz)", sample_rate));
  }
  if (!(strokes_per_min > 0 && strokes_per_min <= 1200)) {
    return bad(fmt::format("spm={} out of range (0..1200 strokes per minute)", strokes_per_min));
  }
  if (strokes > 10'000'000)
    return bad(fmt::format("strokes={} too many (use 0 for endless)", strokes));
  if (!(wear_start >= 0 && wear_start <= 1))
    return bad(fmt::format("wear={} not in 0..1", wear_start));
  if (!(wear_end >= 0 && wear_end <= 1))
    return bad(fmt::format("wear_end={} not in 0..1", wear_end));
  if (!(noise_g >= 0 && std::isfinite(noise_g)))
    return bad(fmt::format("noise={} must be >= 0", noise_g));
  if (!(hum_g >= 0 && std::isfinite(hum_g))) return bad(fmt::format("hum={} must be >= 0", hum_g));
  if (!(hum_hz > 0 && hum_hz * kHumHarmonics < sample_rate / 2)) {
    return bad(fmt::format("hum_hz={} must be > 0 with its 3rd harmonic below Nyquist", hum_hz));
  }
  if (!(impact_g > 0 && impact_g < 1e6)) return bad(fmt::format("amp={} must be > 0", impact_g));
  if (!(jitter_ms >= 0 && std::isfinite(jitter_ms))) {
    return bad(fmt::format("jitter_ms={} must be >= 0", jitter_ms));
  }
  if (channels != 1 && channels != 2) return bad(fmt::format("ch={} must be 1 or 2", channels));
  return Ok();
}

Result<std::unique_ptr<PressSimulator>> PressSimulator::Create(const SimulatorOptions& opts) {
  TEND_RETURN_NOT_OK(opts.Validate());
  std::unique_ptr<PressSimulator> s(new PressSimulator());
  s->opts_ = opts;
  const double fs = opts.sample_rate;
  const double period_s = 60.0 / opts.strokes_per_min;
  s->period_frames_ = period_s * fs;
  s->info_.sample_rate = fs;
  s->info_.channels = opts.channels;
  s->info_.channel_names = opts.channels == 1 ? std::vector<std::string>{"die"}
                                              : std::vector<std::string>{"die", "frame"};
  s->info_.total_frames = opts.strokes > 0 ? std::llround(opts.strokes * s->period_frames_) : -1;
  // Strokes never overlap: the ring is cut (with a taper) before 80 % of the period, and onsets
  // move by at most 3 sd = T/10.
  s->render_len_ = static_cast<int>(std::min(0.4 * fs, 0.8 * s->period_frames_));
  s->render_.assign(static_cast<size_t>(s->render_len_) * opts.channels, 0.f);
  s->force_.assign(s->render_len_, 0.f);
  s->mode_out_.assign(s->render_len_, 0.0);
  if (opts.strokes > 0) {
    s->labels_.reserve(opts.strokes);
    for (int64_t k = 0; k < opts.strokes; ++k) s->labels_.push_back(s->LabelFor(k));
  }
  s->noise_rng_.seed(SplitMix64(opts.seed ^ 0x6E6F697365ull));
  StrokeRng phase_rng(opts.seed, -1);
  for (int c = 0; c < opts.channels; ++c) {
    for (int h = 1; h <= kHumHarmonics; ++h) {
      Phasor p;
      p.omega = h * opts.hum_hz / fs;  // cycles per frame
      p.phase = phase_rng.Uniform();   // cycles
      p.amp = opts.hum_g * (h == 1 ? 1.0 : h == 2 ? 0.5 : 0.3) * (c == 0 ? 1.0 : 0.7);
      const double w = 2 * std::numbers::pi * p.omega;
      p.step_re = std::cos(w);
      p.step_im = std::sin(w);
      s->hum_.push_back(p);
    }
  }
  return s;
}

PressSimulator::~PressSimulator() = default;

PressSimulator::StrokeLabel PressSimulator::LabelFor(int64_t k) const {
  double wear = opts_.wear_start;
  if (opts_.strokes > 1) {
    wear += (opts_.wear_end - opts_.wear_start) * static_cast<double>(k) /
            static_cast<double>(opts_.strokes - 1);
  }
  StrokeRng rng(opts_.seed, k);
  const double jitter_s = rng.Var(JitterSd(opts_));
  const int64_t onset = std::llround((k + 0.3) * period_frames_ + jitter_s * opts_.sample_rate);
  return {k, onset, static_cast<double>(onset) / opts_.sample_rate, wear};
}

void PressSimulator::RenderStroke(int64_t k) {
  const StrokeLabel label = opts_.strokes > 0 ? labels_[static_cast<size_t>(k)] : LabelFor(k);
  if (opts_.strokes <= 0 && k == static_cast<int64_t>(labels_.size())) labels_.push_back(label);
  const StrokePlan p = PlanStroke(opts_, k, label.wear);
  const double fs = opts_.sample_rate;
  const int n = render_len_;
  const int ch = opts_.channels;

  // Contact force: half-sine pulses of unit area (in samples) times the impact's force.
  std::fill(force_.begin(), force_.end(), 0.f);
  for (int i = 0; i < p.n_impacts; ++i) {
    const Impact& im = p.impacts[i];
    if (im.force == 0) continue;
    const int first = static_cast<int>(std::ceil(im.t_s * fs));
    const int last = static_cast<int>(std::floor((im.t_s + im.contact_s) * fs));
    double sum = 0;
    for (int j = std::max(first, 0); j <= last && j < n; ++j) {
      sum += std::sin(std::numbers::pi * (j / fs - im.t_s) / im.contact_s);
    }
    if (sum <= 0) {  // the pulse falls between two samples at a low sample rate
      const int j = static_cast<int>(std::lround(im.t_s * fs));
      if (j < n) force_[j] += static_cast<float>(im.force);
      continue;
    }
    for (int j = std::max(first, 0); j <= last && j < n; ++j) {
      force_[j] += static_cast<float>(
          im.force * std::sin(std::numbers::pi * (j / fs - im.t_s) / im.contact_s) / sum);
    }
  }

  // Each mode is a two-pole resonator with impulse response r^n sin((n + 1) w).
  std::fill(render_.begin(), render_.end(), 0.f);
  for (int m = 0; m < kModes; ++m) {
    if (p.mode_hz[m] >= 0.45 * fs) continue;  // above what this sample rate can carry
    const double w = 2 * std::numbers::pi * p.mode_hz[m] / fs;
    const double r = std::exp(-1.0 / (p.mode_tau[m] * fs));
    const double a1 = 2 * r * std::cos(w), a2 = -r * r, b = std::sin(w);
    double y1 = 0, y2 = 0;
    for (int j = 0; j < n; ++j) {
      const double y = a1 * y1 + a2 * y2 + b * force_[j];
      mode_out_[j] = y;
      y2 = y1;
      y1 = y;
    }
    for (int c = 0; c < ch; ++c) {
      const double g = p.mode_gain[m] * (m < kStructModes ? kModeGain[c][m] : kHfChannelGain[c]);
      float* out = render_.data() + c;
      for (int j = 0; j < n; ++j)
        out[static_cast<size_t>(j) * ch] += static_cast<float>(g * mode_out_[j]);
    }
  }
  // Raised-cosine fade over the last 10 % so the cut ring leaves no step.
  const int fade = std::max(1, n / 10);
  for (int j = n - fade; j < n; ++j) {
    const double g = 0.5 * (1 + std::cos(std::numbers::pi * (j - (n - fade) + 1) / fade));
    for (int c = 0; c < ch; ++c) render_[static_cast<size_t>(j) * ch + c] *= static_cast<float>(g);
  }
  rendered_stroke_ = k;
  rendered_onset_ = label.onset_frame;
}

double PressSimulator::NextGaussian() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  // Box-Muller from one 64-bit draw: two 32-bit uniforms (tails reach 6.8 sd, plenty for noise).
  const uint64_t x = noise_rng_();
  const double u1 = (static_cast<double>(x >> 32) + 0.5) * 0x1.0p-32;
  const double u2 = static_cast<double>(x & 0xFFFFFFFFu) * 0x1.0p-32;
  const double r = std::sqrt(-2 * std::log(u1));
  const double a = 2 * std::numbers::pi * u2;
  spare_ = r * std::sin(a);
  has_spare_ = true;
  return r * std::cos(a);
}

Result<size_t> PressSimulator::Read(std::span<float> out, size_t max_frames) {
  const int ch = opts_.channels;
  if (out.size() < max_frames * ch) {
    return Fail(Error::Internal(fmt::format("sim: Read buffer holds {} floats, {} frames need {}",
                                            out.size(), max_frames, max_frames * ch)));
  }
  int64_t n = static_cast<int64_t>(max_frames);
  if (info_.total_frames >= 0) n = std::min(n, info_.total_frames - pos_);
  if (n <= 0) return size_t{0};
  const int64_t p0 = pos_, p1 = pos_ + n;

  // Background: noise and hum, in segments between hum re-syncs.
  const double noise = opts_.noise_g;
  for (int64_t i = 0; i < n;) {
    const int64_t frame = p0 + i;
    const int64_t phase = frame % kResyncFrames;
    if (phase == 0) {
      for (auto& h : hum_) {
        const double cyc = std::fmod(h.omega * static_cast<double>(frame) + h.phase, 1.0);
        h.re = std::cos(2 * std::numbers::pi * cyc);
        h.im = std::sin(2 * std::numbers::pi * cyc);
      }
    }
    const int64_t end = std::min(n, i + (kResyncFrames - phase));
    for (; i < end; ++i) {
      for (int c = 0; c < ch; ++c) {
        double v = noise * NextGaussian();
        for (int j = 0; j < kHumHarmonics; ++j) {
          Phasor& h = hum_[c * kHumHarmonics + j];
          v += h.amp * h.im;
          const double re = h.re * h.step_re - h.im * h.step_im;
          h.im = h.re * h.step_im + h.im * h.step_re;
          h.re = re;
        }
        out[i * ch + c] = static_cast<float>(v);
      }
    }
  }

  // Strokes overlapping [p0, p1).
  for (;;) {
    const int64_t k = next_stroke_;
    if (opts_.strokes > 0 && k >= opts_.strokes) break;
    const int64_t onset = opts_.strokes > 0
                              ? labels_[static_cast<size_t>(k)].onset_frame
                              : (rendered_stroke_ == k ? rendered_onset_ : LabelFor(k).onset_frame);
    if (onset >= p1) break;
    const int64_t end = onset + render_len_;
    if (end > p0) {
      if (rendered_stroke_ != k) RenderStroke(k);
      const int64_t a = std::max(onset, p0), b = std::min(end, p1);
      const float* src = render_.data() + (a - onset) * ch;
      float* dst = out.data() + (a - p0) * ch;
      for (int64_t i = 0; i < (b - a) * ch; ++i) dst[i] += src[i];
    }
    if (end > p1) break;
    ++next_stroke_;
  }
  pos_ = p1;
  return static_cast<size_t>(n);
}

std::string PressSimulator::Describe() const {
  return fmt::format("{} ({} Hz, {} ch)", opts_.ToSpec(), opts_.sample_rate, opts_.channels);
}

Status PressSimulator::WriteLabelled(const std::string& wav_path,
                                     const std::string& labels_csv_path) {
  if (opts_.strokes <= 0) {
    return Fail(Error::Invalid("sim: cannot write an endless run (strokes <= 0) to a file"));
  }
  TEND_ASSIGN_OR_RETURN(auto fresh, Create(opts_));
  TEND_ASSIGN_OR_RETURN(auto writer,
                        WavWriter::Create(wav_path, opts_.sample_rate, opts_.channels));
  std::vector<float> buf(8192 * static_cast<size_t>(opts_.channels));
  for (;;) {
    TEND_ASSIGN_OR_RETURN(size_t got, fresh->Read(buf, 8192));
    if (got == 0) break;
    TEND_RETURN_NOT_OK(writer->Write(std::span<const float>(buf.data(), got * opts_.channels)));
  }
  std::string csv = "stroke,onset_frame,t_s,wear\n";
  for (const auto& l : labels_)
    csv += fmt::format("{},{},{},{}\n", l.stroke, l.onset_frame, l.t_s, l.wear);
  TEND_RETURN_NOT_OK(writer->Close());
  return fs::WriteFileAtomic(labels_csv_path, csv);
}

}  // namespace tend::sources
