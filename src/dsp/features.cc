#include "dsp/features.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "dsp/spectrum_bins.h"

namespace tend::dsp {
namespace {

// Plain loops on purpose: this file is compiled with reassociation allowed (see CMakeLists.txt),
// so the compiler vectorises these sums. Sums are in double: 2,000-sample moments stay exact
// to ~1e-12, far below what float32 input resolves.
struct Pass1 {
  double sum = 0, sum_abs = 0;
  float min = 0, max = 0;
};

// GCC/Clang vector extension: 4 floats, lowered to SSE2 on x86-64 and NEON on arm64.
typedef float Float4 __attribute__((vector_size(16)));

Pass1 SumsMinMax(std::span<const float> x) {
  const float* p = x.data();
  const size_t n = x.size();
  double s = 0, a = 0;
  for (size_t i = 0; i < n; ++i) {
    s += p[i];
    a += std::fabs(p[i]);
  }
  // A min/max reduction is not vectorised without assuming away NaN (which would also fold
  // the isfinite checks), so it is spelled out with vector selects.
  Float4 lo = {p[0], p[0], p[0], p[0]}, hi = lo;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    Float4 v;
    std::memcpy(&v, p + i, sizeof v);
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  float mn = std::min(std::min(lo[0], lo[1]), std::min(lo[2], lo[3]));
  float mx = std::max(std::max(hi[0], hi[1]), std::max(hi[2], hi[3]));
  for (; i < n; ++i) {
    mn = std::min(mn, p[i]);
    mx = std::max(mx, p[i]);
  }
  return {s, a, mn, mx};
}

struct Moments {
  double m2 = 0, m3 = 0, m4 = 0;  // sums of d^2, d^3, d^4 with d = x - mean
};

Moments CentralMoments(std::span<const float> x, double mean) {
  const float* p = x.data();
  const size_t n = x.size();
  double m2 = 0, m3 = 0, m4 = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(p[i]) - mean;
    const double d2 = d * d;
    m2 += d2;
    m3 += d2 * d;
    m4 += d2 * d2;
  }
  return {m2, m3, m4};
}

// The FFT input: the signal minus its mean.
void Centre(std::span<const float> x, double mean, float* centred) {
  const float* p = x.data();
  const size_t n = x.size();
  for (size_t i = 0; i < n; ++i) centred[i] = static_cast<float>(static_cast<double>(p[i]) - mean);
}

TimeFeatures FinishTimeFeatures(const Pass1& p, const Moments& mo, size_t count) {
  const double n = static_cast<double>(count);
  TimeFeatures t;
  t.mean = p.sum / n;
  const double m2 = mo.m2 / n;
  t.std = std::sqrt(m2);
  t.rms = std::sqrt(m2 + t.mean * t.mean);
  t.peak = std::max(std::fabs(static_cast<double>(p.min)), std::fabs(static_cast<double>(p.max)));
  t.peak_to_peak = static_cast<double>(p.max) - static_cast<double>(p.min);
  const double mean_abs = p.sum_abs / n;
  t.crest_factor = t.rms > 0 ? t.peak / t.rms : 0;
  t.shape_factor = mean_abs > 0 ? t.rms / mean_abs : 0;
  t.impulse_factor = mean_abs > 0 ? t.peak / mean_abs : 0;
  if (m2 > 0) {
    t.kurtosis = (mo.m4 / n) / (m2 * m2);
    t.skewness = (mo.m3 / n) / (m2 * std::sqrt(m2));
  }
  return t;
}

void WriteTimeFeatures(const TimeFeatures& t, float* out) {
  const double v[] = {t.mean,         t.rms,      t.peak,     t.peak_to_peak, t.std,
                      t.crest_factor, t.kurtosis, t.skewness, t.shape_factor, t.impulse_factor};
  for (size_t i = 0; i < std::size(v); ++i) out[i] = static_cast<float>(v[i]);
}

// One-sided spectrum weight: DC and Nyquist appear once in the two-sided spectrum, the rest twice.
inline double OneSided(int k, int nyquist_bin) { return (k == 0 || k == nyquist_bin) ? 1.0 : 2.0; }

}  // namespace

TimeFeatures ComputeTimeFeatures(std::span<const float> x) {
  if (x.empty()) return {};
  const Pass1 p = SumsMinMax(x);
  const double mean = p.sum / static_cast<double>(x.size());
  return FinishTimeFeatures(p, CentralMoments(x, mean), x.size());
}

Status CheckFinite(std::span<const float> x, std::string_view what) {
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) {
      return Fail(Error::Invalid(fmt::format("{} sample {} is {}", what, i,
                                             std::isnan(x[i]) ? "NaN"
                                             : x[i] > 0       ? "+Inf"
                                                              : "-Inf")));
    }
  }
  return Ok();
}

Result<std::unique_ptr<FeatureExtractor>> FeatureExtractor::Create(const FeatureSpec& spec) {
  TEND_RETURN_NOT_OK(spec.Validate());
  std::unique_ptr<FeatureExtractor> fx(new FeatureExtractor(spec));
  TEND_RETURN_NOT_OK(fx->Init());
  return fx;
}

Status FeatureExtractor::Init() {
  n_ = spec_.window;
  const double bin_hz = spec_.BinHz();
  max_bin_ = UsableMaxBin(spec_.UsableMaxHz(), bin_hz, n_);
  need_power_ = spec_.spectral_features || !spec_.bands.empty();
  need_fft_ = need_power_ || spec_.envelope;
  TEND_ASSIGN_OR_RETURN(const WindowFn fn, ParseWindowFn(spec_.window_fn));
  win_ = WindowCoefficients(fn);
  power_scale_ = 1.0 / (static_cast<double>(n_) * WindowPower(fn, n_));
  centred_.assign(n_, 0.0f);
  for (const Band& b : spec_.bands) band_bins_.push_back(BandBins(b, bin_hz, max_bin_));
  if (need_fft_) {
    TEND_ASSIGN_OR_RETURN(fft_, RealFft::Create(n_));
    spectrum_.assign(n_ / 2 + 1 + 4, {0.0f, 0.0f});
    windowed_.assign(2 * (max_bin_ + 1), 0.0f);
    power_.assign(max_bin_ + 1, 0.0);
  }
  if (spec_.envelope) {
    demod_bins_ = BandBins(spec_.envelope_demod_band, bin_hz, max_bin_);
    const int width = demod_bins_.end - demod_bins_.begin;
    int top = 0;  // highest envelope-spectrum bin any envelope band needs
    for (const Band& b : spec_.envelope_bands) {
      top = std::max(top, BandBins(b, bin_hz, n_ / 2).end - 1);
    }
    // The envelope spectrum keeps the window's bin spacing whatever the decimation. |z|^2 has
    // content below `width` bins and the window widens that by its 2 taps, so with
    // env_n_ >= width + top + 3 nothing folds back onto bins <= top (the decimated spectrum is
    // exact there), and env_n_/2 >= top + 1 makes the spectrum reach the envelope bands.
    env_n_ = NextFastEvenSize(std::max({width + top + 3, 2 * (top + 1), 16}));
    for (const Band& b : spec_.envelope_bands) {
      env_band_bins_.push_back(BandBins(b, bin_hz, env_n_ / 2));
    }
    TEND_ASSIGN_OR_RETURN(env_ifft_, ComplexFft::Create(env_n_, /*inverse=*/true));
    TEND_ASSIGN_OR_RETURN(env_fft_, RealFft::Create(env_n_));
    env_in_.assign(env_n_, {0.0f, 0.0f});
    env_z_.assign(env_n_, {0.0f, 0.0f});
    envelope_.assign(env_n_, 0.0f);
    env_window_.assign(env_n_, 0.0f);
    FillWindow(fn, env_window_);
    env_windowed_.assign(env_n_, 0.0f);
    env_spec_.assign(env_n_ / 2 + 1, {0.0f, 0.0f});
    env_power_.assign(top + 1, 0.0);
    env_power_scale_ = 1.0 / (static_cast<double>(env_n_) * WindowPower(fn, env_n_));
  }
  if (spec_.frame > 0) TEND_RETURN_NOT_OK(InitFrames(fn));
  return Ok();
}

Status FeatureExtractor::InitFrames(WindowFn fn) {
  const int f = spec_.frame;
  const double bin_hz = spec_.sample_rate / f;
  frame_max_bin_ = UsableMaxBin(spec_.UsableMaxHz(), bin_hz, f);
  frame_power_scale_ = 2.0 / (static_cast<double>(f) * WindowPower(fn, f));
  TEND_ASSIGN_OR_RETURN(frame_fft_, RealFft::Create(f));
  frame_win_.assign(f, 0.0f);
  FillWindow(fn, frame_win_);
  frame_buf_.assign(f, 0.0f);
  frame_spec_.assign(f / 2 + 1, {0.0f, 0.0f});
  frame_power_.assign(frame_max_bin_ + 1, 0.0);
  for (const Band& b : spec_.frame_bands) {
    frame_band_bins_.push_back(BandBins(b, bin_hz, frame_max_bin_));
  }
  const size_t slots = spec_.frame_bands.size() + 1;  // + flatness
  frame_sum_.assign(slots, 0.0);
  frame_max_.assign(slots, 0.0);
  return Ok();
}

double FeatureExtractor::envelope_sample_rate() const {
  return spec_.sample_rate * env_n_ / static_cast<double>(n_);
}

Status FeatureExtractor::Compute(std::span<const float> window, std::span<float> out) {
  const size_t n = static_cast<size_t>(n_);
  const size_t channels = static_cast<size_t>(spec_.channels);
  if (window.size() != n * channels) {
    return Fail(Error::Invalid(
        fmt::format("feature window has {} samples, expected {} ({} channels x {} samples)",
                    window.size(), n * channels, channels, n)));
  }
  const size_t per_channel = spec_.FeaturesPerChannel();
  if (out.size() != per_channel * channels) {
    return Fail(Error::Invalid(fmt::format("feature output has {} slots, the spec needs {}",
                                           out.size(), per_channel * channels)));
  }
  for (size_t c = 0; c < channels; ++c) {
    const auto x = window.subspan(c * n, n);
    const Pass1 p = SumsMinMax(x);
    // sum(|x|) in double cannot overflow for float input, so it is non-finite exactly when a
    // sample is NaN or Inf: the check costs nothing on the good path.
    if (!std::isfinite(p.sum_abs)) {
      return CheckFinite(x, fmt::format("channel '{}'", spec_.ChannelName(static_cast<int>(c))));
    }
    float* o = out.data() + c * per_channel;
    const double mean = p.sum / static_cast<double>(n);
    if (spec_.time_features) {
      WriteTimeFeatures(FinishTimeFeatures(p, CentralMoments(x, mean), n), o);
      o += TimeFeatureNames().size();
    }
    if (!need_fft_) {
      if (spec_.frame > 0) FrameFeatures(x, o);
      continue;
    }
    Centre(x, mean, centred_.data());
    // The spectrum of the centred signal: the mean (gravity, sensor offset) is a time feature
    // and would otherwise leak into the lowest band through the window's main lobe.
    fft_->Forward(centred_, std::span(spectrum_).subspan(2, n / 2 + 1));
    if (need_power_) {
      PowerSpectrum();
      if (spec_.spectral_features) {
        SpectralShape(o);
        o += SpectralFeatureNames().size();
      }
      for (const BinRange& r : band_bins_) *o++ = BandValue(power_, r);
    }
    if (spec_.envelope) {
      Envelope();
      for (const BinRange& r : env_band_bins_) *o++ = BandValue(env_power_, r);
    }
    if (spec_.frame > 0) o = FrameFeatures(x, o);
  }
  return Ok();
}

// Short-time spectra of the frames inside the window: per band the mean and max over frames of
// the band value, then the same for spectral flatness (see feature_spec.h).
float* FeatureExtractor::FrameFeatures(std::span<const float> x, float* out) {
  const int f = spec_.frame;
  const int frames = spec_.Frames();
  const size_t nb = spec_.frame_bands.size();
  std::fill(frame_sum_.begin(), frame_sum_.end(), 0.0);
  std::fill(frame_max_.begin(), frame_max_.end(), -HUGE_VAL);
  const double floor = spec_.energy_floor;
  for (int i = 0; i < frames; ++i) {
    const float* p = x.data() + static_cast<size_t>(i) * spec_.frame_hop;
    double mean = 0;
    for (int t = 0; t < f; ++t) mean += p[t];
    mean /= f;
    for (int t = 0; t < f; ++t) {
      frame_buf_[t] = static_cast<float>((p[t] - mean) * frame_win_[t]);
    }
    frame_fft_->Forward(frame_buf_, frame_spec_);
    for (int k = 0; k <= frame_max_bin_; ++k) {
      const double re = frame_spec_[k].real(), im = frame_spec_[k].imag();
      frame_power_[k] = frame_power_scale_ * (re * re + im * im);
    }
    frame_power_[0] *= 0.5;
    if (frame_max_bin_ == f / 2) frame_power_[frame_max_bin_] *= 0.5;
    for (size_t b = 0; b < nb; ++b) {
      const double v = BandValue(frame_power_, frame_band_bins_[b]);
      frame_sum_[b] += v;
      frame_max_[b] = std::max(frame_max_[b], v);
    }
    if (spec_.frame_flatness) {
      double sum = 0, log_sum = 0;
      for (int k = 1; k <= frame_max_bin_; ++k) {
        const double pk = std::max(frame_power_[k], floor);
        sum += pk;
        log_sum += std::log(pk);
      }
      const double bins = frame_max_bin_;
      const double v = 10.0 / std::log(10.0) * (log_sum / bins - std::log(sum / bins));
      frame_sum_[nb] += v;
      frame_max_[nb] = std::max(frame_max_[nb], v);
    }
  }
  for (size_t b = 0; b < nb; ++b) *out++ = static_cast<float>(frame_sum_[b] / frames);
  for (size_t b = 0; b < nb; ++b) *out++ = static_cast<float>(frame_max_[b]);
  if (spec_.frame_flatness) {
    *out++ = static_cast<float>(frame_sum_[nb] / frames);
    *out++ = static_cast<float>(frame_max_[nb]);
  }
  return out;
}

// Windows in the frequency domain (the periodic cosine-sum windows are 3- or 5-tap
// convolutions there), so one FFT of the unwindowed signal serves both the windowed power
// spectrum here and the envelope, which wants the unwindowed band.
void FeatureExtractor::PowerSpectrum() {
  const int h = n_ / 2;
  std::complex<float>* X = spectrum_.data() + 2;  // X[-2..h+2] are addressable
  X[-1] = std::conj(X[1]);
  X[-2] = std::conj(X[2]);
  X[h + 1] = std::conj(X[h - 1]);
  X[h + 2] = std::conj(X[h - 2]);
  // The same taps apply to the real and the imaginary parts, so the convolution runs over the
  // interleaved floats (std::complex<float> arrays may be accessed as float[2] arrays).
  const float a0 = static_cast<float>(win_.a0);
  const float h1 = static_cast<float>(0.5 * win_.a1);
  const float h2 = static_cast<float>(0.5 * win_.a2);
  const float* x = reinterpret_cast<const float*>(X);
  float* y = windowed_.data();
  const int count = 2 * (max_bin_ + 1);
  for (int i = 0; i < count; ++i) {
    y[i] = a0 * x[i] - h1 * (x[i - 2] + x[i + 2]) + h2 * (x[i - 4] + x[i + 4]);
  }
  const double scale = 2 * power_scale_;
  for (int k = 0; k <= max_bin_; ++k) {
    const float re = y[2 * k], im = y[2 * k + 1];
    power_[k] = scale * (re * re + im * im);
  }
  power_[0] *= 0.5;  // DC and Nyquist appear once in the two-sided spectrum
  if (max_bin_ == h) power_[h] *= 0.5;
}

// Centroid, spread and kurtosis of the power spectrum seen as a distribution over 0..max_hz.
// Two passes: central moments from raw ones lose everything to cancellation for a narrow peak
// at a high frequency.
void FeatureExtractor::SpectralShape(float* out) const {
  const double bin_hz = spec_.BinHz();
  const double* p = power_.data();
  double total = 0, first = 0;
  double best = -1;
  int arg_max = std::min(1, max_bin_);
  for (int k = 0; k <= max_bin_; ++k) {
    total += p[k];
    first += k * p[k];
  }
  for (int k = 1; k <= max_bin_; ++k) {
    if (p[k] > best) {
      best = p[k];
      arg_max = k;
    }
  }
  if (!(total > 0)) {
    std::fill(out, out + 4, 0.0f);
    return;
  }
  const double centroid = first / total;  // in bins
  double m2 = 0, m4 = 0;
  for (int k = 0; k <= max_bin_; ++k) {
    const double d = k - centroid;
    const double d2 = d * d;
    m2 += d2 * p[k];
    m4 += d2 * d2 * p[k];
  }
  m2 /= total;
  m4 /= total;
  out[0] = static_cast<float>(centroid * bin_hz);
  out[1] = static_cast<float>(std::sqrt(m2) * bin_hz);
  out[2] = static_cast<float>(arg_max * bin_hz);
  out[3] = static_cast<float>(m2 > 0 ? m4 / (m2 * m2) : 0.0);
}

// Squared-envelope spectrum without a full-length Hilbert transform. The analytic signal of the
// demod band is z(t) = 2/N * sum_{k in band} X[k] exp(2 pi i k t / N). Shifting the band down to
// bin 0 only rotates z's phase, so |z| is unchanged; evaluated at t = j*N/L it is an L-point
// inverse DFT of the shifted bins. One small complex FFT gives the envelope decimated to L
// points, and a small real FFT gives its spectrum, at the same bin spacing as the signal's.
//
// The squared envelope |z|^2 (not |z|) is used because it is band-limited: its spectrum stops
// at the demod bandwidth, so with L chosen in Init nothing folds back onto the envelope bands and
// the decimated result equals the full-rate one. |z| has a slowly decaying spectral tail that
// would alias (measured: up to ~1 dB on real bearing data), and the squared envelope is also the
// usual choice in bearing diagnostics (Randall & Antoni 2011). It is divided by its mean, so the
// envelope bands measure modulation depth independent of sensor gain and vibration level (the
// band energies carry the level).
void FeatureExtractor::Envelope() {
  const std::complex<float>* X = spectrum_.data() + 2;
  const float gain = 2.0f / static_cast<float>(n_);
  const int width = demod_bins_.end - demod_bins_.begin;
  for (int m = 0; m < width; ++m) env_in_[m] = gain * X[demod_bins_.begin + m];
  env_ifft_->Transform(env_in_, env_z_);
  double sum = 0;
  for (int j = 0; j < env_n_; ++j) {
    const float re = env_z_[j].real(), im = env_z_[j].imag();
    envelope_[j] = re * re + im * im;
    sum += envelope_[j];
  }
  if (!(sum > 0)) {  // nothing in the demod band: no modulation to speak of
    std::fill(env_power_.begin(), env_power_.end(), 0.0);
    return;
  }
  const float inv_mean = static_cast<float>(env_n_ / sum);
  for (int j = 0; j < env_n_; ++j) {
    env_windowed_[j] = (envelope_[j] * inv_mean - 1.0f) * env_window_[j];
  }
  env_fft_->Forward(env_windowed_, env_spec_);
  const int h = env_n_ / 2;
  for (size_t k = 0; k < env_power_.size(); ++k) {
    const std::complex<float> e = env_spec_[k];
    env_power_[k] =
        OneSided(static_cast<int>(k), h) * env_power_scale_ *
        (static_cast<double>(e.real()) * e.real() + static_cast<double>(e.imag()) * e.imag());
  }
}

float FeatureExtractor::BandValue(const std::vector<double>& power, BinRange bins) const {
  double e = 0;
  for (int k = bins.begin; k < bins.end; ++k) e += power[k];
  return static_cast<float>(spec_.log_energies ? 10.0 * std::log10(e + spec_.energy_floor) : e);
}

}  // namespace tend::dsp
