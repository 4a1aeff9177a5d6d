// The feature spec: which features a window of samples turns into, in which order, with which
// parameters. Training writes it into the model's metadata (ToJson) and serving rebuilds the
// extractor from it (FromJson), so both sides produce the identical vector.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/status.h"

namespace tend::dsp {

// A frequency band [lo_hz, hi_hz): an FFT bin at frequency f belongs to it when lo_hz <= f < hi_hz.
struct Band {
  double lo_hz = 0, hi_hz = 0;
  bool operator==(const Band&) const = default;
};

// Per-channel features, in this order (names are "<channel>.<feature>"):
//   time (time_features):        mean rms peak peak_to_peak std crest_factor kurtosis skewness
//                                shape_factor impulse_factor
//   spectral (spectral_features): spectral_centroid spectral_spread dominant_freq spectral_kurtosis
//   bands:                        band_<lo>_<hi> for each of `bands`
//   envelope (envelope):          env_band_<lo>_<hi> for each of `envelope_bands`
//   frames (frame > 0):           frame_band_<lo>_<hi>_mean for each of `frame_bands`, then
//                                 frame_band_<lo>_<hi>_max for each, then (frame_flatness)
//                                 frame_flatness_mean frame_flatness_max
// Channels follow each other: all of channel 0's features, then channel 1's, ...
//
// Definitions (the numpy reference, scripts/reference/dsp_reference.py, spells them out too):
//   * Spectra are of the mean-removed window, with the periodic window `window_fn`, one-sided
//     and scaled so that a band's power is the signal's mean square in that band (a tone of
//     amplitude A puts A^2/2 in its band whatever the window). Spectral shape features use the
//     bins from 0 to max_hz; dominant_freq is the strongest bin above 0 Hz (resolution
//     sample_rate/window).
//   * Envelope: the squared envelope |z|^2 of the analytic signal of envelope_demod_band,
//     divided by its mean (dimensionless: modulation depth, not level), minus 1, windowed; its
//     power spectrum is summed over each envelope band. For x = (1 + m cos(2 pi fm t)) carrier,
//     the band holding fm gets 2 m^2 / (1 + m^2/2)^2.
//   * Band and envelope-band values are log energies, 10*log10(power + energy_floor) (dB re
//     1 unit^2, resp. re 1), when log_energies is set (the default): raw band powers span many
//     decades, and in dB a model sees well-scaled, roughly Gaussian inputs. With log_energies off
//     they are the powers themselves.
//   * Frames (short-time analysis inside a long window, for sound): frames of `frame` samples
//     every `frame_hop` samples that lie entirely inside the window, each mean-removed and
//     multiplied by the periodic `window_fn` in the time domain; the one-sided power spectrum is
//     scaled as above and summed over each of `frame_bands` (bins at sample_rate/frame, up to
//     max_hz). Per band, the mean and the maximum over the frames of the band value (dB when
//     log_energies) are features: the mean is the steady sound, the max the loudest event
//     (a valve's click, a knock). Spectral flatness per frame is 10*log10(geometric mean /
//     arithmetic mean) of the power over bins 1..max_bin (0 dB = white noise, very negative =
//     tonal), each power floored at energy_floor (a silent frame reads 0 dB); its mean and max
//     over the frames are features.
struct FeatureSpec {
  double sample_rate = 10000;  // Hz
  int channels = 1;
  int window = 2000;  // samples per channel per window (even: the real FFT needs it)
  std::vector<std::string> channel_names;  // default ch0, ch1...
  std::string window_fn = "hann";          // hann | hamming | blackman | rect
  bool time_features = true, spectral_features = true;
  std::vector<Band> bands;  // band energies
  bool envelope = true;
  Band envelope_demod_band;          // band around the structural resonance used for the envelope
  std::vector<Band> envelope_bands;  // energies in the (squared, normalised) envelope spectrum
  double max_hz = 0;                 // upper usable frequency (anti-alias); 0 = 0.45*sample_rate
  bool log_energies = true;
  double energy_floor = 1e-12;    // added before the log so a silent band stays finite
  int frame = 0;                  // short-time frame in samples (even); 0 = no frame features
  int frame_hop = 0;              // frame step in samples (frame mode)
  std::vector<Band> frame_bands;  // bands of the frame spectra (resolution sample_rate/frame)
  bool frame_flatness = false;    // spectral flatness per frame (frame mode)

  // Fine 25 Hz bands over the 200-400 Hz stroke signature, octave bands above up to max_hz;
  // envelope of 1-4 kHz (impacts ringing the structure) with 100 Hz envelope bands to 500 Hz.
  static FeatureSpec DefaultPress(double sample_rate = 10000, int channels = 1, int window = 2000);
  // For CWRU-like bearing data: 500 Hz bands up to 5 kHz (never above: see the CWRU pitfalls),
  // envelope of the 2-4.5 kHz housing resonance, 25 Hz envelope bands to 500 Hz which resolve
  // BPFO/BSF/BPFI (~107/141/162 Hz at 30 Hz shaft speed) and their harmonics.
  static FeatureSpec DefaultBearing(double sample_rate = 12000, int channels = 1,
                                    int window = 2000);
  // For continuous vibration of any machine (no stroke, no known bearing geometry): time and
  // spectral-shape features and 24 equal bands from 0 Hz to max_hz (0.45 x sample rate), each at
  // least 2 bins wide. Equal bands give every part of the spectrum the same say, which the
  // broadband detector (detect/detector.h) relies on.
  static FeatureSpec DefaultVibration(double sample_rate, int channels, int window);
  // For machine sound in long windows (a clip of seconds): time features of the whole window
  // and, from ~64 ms frames with 50 % overlap, 16 mel-spaced bands up to max_hz (each at least 2
  // frame bins wide) as mean and max over the frames, plus spectral flatness. Nothing needs an
  // FFT of the whole window.
  static FeatureSpec DefaultSound(double sample_rate, int channels, int window);
  // The frame length DefaultSound uses at a sample rate: the power of two nearest 64 ms.
  static int SoundFrameLength(double sample_rate);

  // Clear one-line errors for anything Create would trip on (names the field and the value).
  Status Validate() const;
  std::vector<std::string> FeatureNames() const;  // e.g. "ch0.rms", "ch0.band_200_250"
  size_t Size() const;
  size_t FeaturesPerChannel() const;
  int Frames() const;                    // frames per window in frame mode (0 otherwise)
  std::string ChannelName(int c) const;  // channel_names[c], or "ch<c>" when none are given
  double UsableMaxHz() const;            // max_hz, or 0.45*sample_rate when max_hz is 0
  double BinHz() const { return sample_rate / window; }

  // Every field, resolved (channel names, max_hz), plus "version" and "feature_names". The frame
  // keys are written only in frame mode, so specs without frames read in older builds too.
  nlohmann::json ToJson() const;
  // Strict: unknown keys and wrong types are errors naming the key. Missing keys take their
  // value from the preset named by "preset" ("press", the default, "bearing", "vibration" or
  // "sound") built with the given sample_rate/channels/window. "feature_names", when present,
  // must equal FeatureNames() so a model can never be served with a different vector than it
  // was trained on. Validates.
  static Result<FeatureSpec> FromJson(const nlohmann::json& j);

  bool operator==(const FeatureSpec&) const = default;

 private:
  Status ValidateFrames() const;
};

// Time-domain feature names, in output order (without the channel prefix).
const std::vector<std::string>& TimeFeatureNames();
const std::vector<std::string>& SpectralFeatureNames();
// "band_200_250"; fractional edges use 'p' for the point ("band_12p5_25") so that '.' only ever
// separates the channel from the feature.
std::string BandName(const std::string& prefix, const Band& band);

}  // namespace tend::dsp
