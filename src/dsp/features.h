// Feature extraction: a window of float samples (planar, one block per channel) becomes the
// vector a FeatureSpec describes (time statistics, spectral shape, band energies, envelope-
// spectrum band energies for bearing-type faults). Pure computation, no allocation per window.
#pragma once

#include <complex>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "dsp/feature_spec.h"
#include "dsp/fft.h"
#include "dsp/spectrum_bins.h"
#include "dsp/window.h"

namespace tend::dsp {

// Population statistics (ddof = 0, like numpy's default). kurtosis is Pearson's (a Gaussian
// gives 3, scipy.stats.kurtosis(fisher=False)); skewness is scipy.stats.skew. Ratios whose
// denominator is zero (a constant or all-zero window) are reported as 0 rather than NaN/Inf, so
// a dead sensor yields a finite vector that the model can flag.
struct TimeFeatures {
  double mean = 0, rms = 0, peak = 0, peak_to_peak = 0, std = 0;
  double crest_factor = 0;    // peak / rms
  double kurtosis = 0;        // m4 / m2^2
  double skewness = 0;        // m3 / m2^1.5
  double shape_factor = 0;    // rms / mean(|x|)
  double impulse_factor = 0;  // peak / mean(|x|)
};
// x must be non-empty and finite (see CheckFinite).
TimeFeatures ComputeTimeFeatures(std::span<const float> x);

// Ok when every sample is finite; otherwise an error naming `what` and the first bad index,
// e.g. "channel 'ch1' sample 17 is NaN".
Status CheckFinite(std::span<const float> x, std::string_view what);

class FeatureExtractor {
 public:
  // Validates the spec, plans the FFTs and allocates every buffer.
  static Result<std::unique_ptr<FeatureExtractor>> Create(const FeatureSpec& spec);

  // `window` is PLANAR: channel c occupies [c*spec.window, (c+1)*spec.window).
  // out.size() == spec.Size(). Returns an error naming channel and sample index for NaN/Inf
  // (out is then unspecified). Allocates nothing on success.
  Status Compute(std::span<const float> window, std::span<float> out);

  const FeatureSpec& spec() const { return spec_; }

  // The envelope is computed decimated: envelope_size() points over the window, i.e. at
  // envelope_sample_rate() = sample_rate * envelope_size() / window. 0 when the envelope is off.
  int envelope_size() const { return env_n_; }
  double envelope_sample_rate() const;
  // Squared envelope |z|^2 (z: analytic signal of the demod band, not normalised) of the last
  // channel Compute processed; point j is at sample j * window / envelope_size().
  std::span<const float> LastSquaredEnvelopeForTest() const { return envelope_; }

 private:
  explicit FeatureExtractor(FeatureSpec spec) : spec_(std::move(spec)) {}
  Status Init();
  void ComputeChannel(std::span<const float> x, float* out);
  void PowerSpectrum();
  void SpectralShape(float* out) const;
  void Envelope();
  float BandValue(const std::vector<double>& power, BinRange bins) const;
  Status InitFrames(WindowFn fn);
  float* FrameFeatures(std::span<const float> x, float* out);

  FeatureSpec spec_;
  CosineSum win_;
  int n_ = 0;        // samples per channel
  int max_bin_ = 0;  // highest usable bin (max_hz)
  bool need_fft_ = false;
  bool need_power_ = false;
  double power_scale_ = 0;  // 1 / (n * sum(w^2)): one-sided power in units^2 per bin
  std::vector<BinRange> band_bins_;
  std::vector<BinRange> env_band_bins_;
  BinRange demod_bins_;

  std::unique_ptr<RealFft> fft_;
  std::vector<float> centred_;                 // x - mean(x)
  std::vector<std::complex<float>> spectrum_;  // 2 guard bins, n/2+1 bins, 2 guard bins
  std::vector<float> windowed_;                // windowed spectrum, bins 0..max_bin_, re/im
  std::vector<double> power_;                  // windowed one-sided power, bins 0..max_bin_

  int env_n_ = 0;
  double env_power_scale_ = 0;
  std::unique_ptr<ComplexFft> env_ifft_;
  std::unique_ptr<RealFft> env_fft_;
  std::vector<std::complex<float>> env_in_;  // demod band shifted to baseband, zero padded
  std::vector<std::complex<float>> env_z_;   // decimated analytic signal
  std::vector<float> envelope_;              // |env_z_|^2
  std::vector<float> env_window_;
  std::vector<float> env_windowed_;  // (envelope / mean - 1) * window
  std::vector<std::complex<float>> env_spec_;
  std::vector<double> env_power_;

  // Frame mode (short-time analysis inside the window).
  int frame_max_bin_ = 0;
  double frame_power_scale_ = 0;
  std::unique_ptr<RealFft> frame_fft_;
  std::vector<float> frame_win_;                 // the window function, frame samples
  std::vector<float> frame_buf_;                 // one frame, mean removed and windowed
  std::vector<std::complex<float>> frame_spec_;  // its spectrum, frame/2+1 bins
  std::vector<double> frame_power_;              // one-sided power, bins 0..frame_max_bin_
  std::vector<BinRange> frame_band_bins_;
  std::vector<double> frame_sum_, frame_max_;  // per band, over the frames of a window
};

}  // namespace tend::dsp
