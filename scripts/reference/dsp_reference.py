#!/usr/bin/python3
"""Independent numpy/scipy implementation of tend's DSP features, and the test-data generator.

The C++ extractor (src/dsp/) takes shortcuts for speed: it windows in the frequency domain and
computes the envelope decimated from the FFT it already has. This file does everything the
plain way, in float64: time-domain windowing, np.fft.rfft, scipy.stats moments, and a full-rate
scipy.signal.hilbert envelope. The C++ tests compare against what it writes:

    /usr/bin/python3 scripts/reference/dsp_reference.py            # writes tests/data/dsp/reference.json

`features(spec, x)` is also the "what a user would write" baseline that
scripts/reference/dsp_numpy_baseline.py times.

Conventions shared with the C++ side (see src/dsp/feature_spec.h):
  * bin k is at k*fs/N and belongs to band [lo, hi) when lo <= k*fs/N < hi (with a 1e-6-bin
    tolerance on the edges);
  * power spectra are one-sided mean-square per bin: |X|^2 / (N*sum(w^2)), doubled except at
    DC and Nyquist, so a band's power is the signal's mean square in that band;
  * band energies are 10*log10(power + energy_floor) when log_energies is set;
  * the envelope is the squared envelope |hilbert(band-passed x)|^2, divided by its mean,
    minus 1, windowed, and its one-sided power spectrum is summed over the envelope bands.
"""
import json
import math
import os
import sys

import numpy as np
import scipy.io.wavfile
import scipy.signal
import scipy.stats

TIME_NAMES = ["mean", "rms", "peak", "peak_to_peak", "std", "crest_factor", "kurtosis",
              "skewness", "shape_factor", "impulse_factor"]
SPECTRAL_NAMES = ["spectral_centroid", "spectral_spread", "dominant_freq", "spectral_kurtosis"]
SCIPY_WINDOW = {"hann": "hann", "hamming": "hamming", "blackman": "blackman", "rect": "boxcar"}


def band_bins(lo, hi, bin_hz, max_bin):
    b0 = math.ceil(lo / bin_hz - 1e-6)
    b1 = math.ceil(hi / bin_hz - 1e-6)
    return min(max(b0, 0), max_bin + 1), min(max(b1, 0), max_bin + 1)


def usable_max_bin(max_hz, bin_hz, n):
    return int(min(max(math.floor(max_hz / bin_hz + 1e-6), 0), n // 2))


def fmt_hz(v):
    s = repr(float(v))
    if s.endswith(".0"):
        s = s[:-2]
    return s.replace(".", "p")


def feature_names(spec):
    names = []
    for ch in spec["channel_names"]:
        names += [f"{ch}.{n}" for n in TIME_NAMES] if spec["time_features"] else []
        names += [f"{ch}.{n}" for n in SPECTRAL_NAMES] if spec["spectral_features"] else []
        names += [f"{ch}.band_{fmt_hz(lo)}_{fmt_hz(hi)}" for lo, hi in spec["bands"]]
        if spec["envelope"]:
            names += [f"{ch}.env_band_{fmt_hz(lo)}_{fmt_hz(hi)}" for lo, hi in spec["envelope_bands"]]
        if spec.get("frame", 0) > 0:
            for stat in ("mean", "max"):
                names += [f"{ch}.frame_band_{fmt_hz(lo)}_{fmt_hz(hi)}_{stat}"
                          for lo, hi in spec["frame_bands"]]
            if spec["frame_flatness"]:
                names += [f"{ch}.frame_flatness_mean", f"{ch}.frame_flatness_max"]
    return names


def one_sided_power(spectrum, n, w):
    p = np.abs(spectrum) ** 2 / (n * np.sum(w ** 2))
    p[1:] *= 2
    if n % 2 == 0:
        p[-1] /= 2  # Nyquist appears once
    return p


def band_value(spec, p):
    return 10 * np.log10(p + spec["energy_floor"]) if spec["log_energies"] else p


def time_features(x):
    mean = np.mean(x)
    rms = np.sqrt(np.mean(x ** 2))
    peak = np.max(np.abs(x))
    mean_abs = np.mean(np.abs(x))
    std = np.std(x)
    return [mean, rms, peak, np.ptp(x), std,
            peak / rms if rms > 0 else 0.0,
            scipy.stats.kurtosis(x, fisher=False) if std > 0 else 0.0,
            scipy.stats.skew(x) if std > 0 else 0.0,
            rms / mean_abs if mean_abs > 0 else 0.0,
            peak / mean_abs if mean_abs > 0 else 0.0]


def spectral_power(spec, x0, w):
    n = len(x0)
    return one_sided_power(np.fft.rfft(x0 * w), n, w)


def spectral_features(spec, p):
    n, fs = spec["window"], spec["sample_rate"]
    kmax = usable_max_bin(spec["max_hz"], fs / n, n)
    f = np.arange(kmax + 1) * fs / n
    pu = p[:kmax + 1]
    total = np.sum(pu)
    if total <= 0:
        return [0.0] * 4
    c = np.sum(f * pu) / total
    var = np.sum((f - c) ** 2 * pu) / total
    kurt = np.sum((f - c) ** 4 * pu) / total / var ** 2 if var > 0 else 0.0
    dominant = f[1 + np.argmax(pu[1:])]
    return [c, np.sqrt(var), dominant, kurt]


def band_features(spec, p):
    n, fs = spec["window"], spec["sample_rate"]
    kmax = usable_max_bin(spec["max_hz"], fs / n, n)
    out = []
    for lo, hi in spec["bands"]:
        b0, b1 = band_bins(lo, hi, fs / n, kmax)
        out.append(band_value(spec, np.sum(p[b0:b1])))
    return out


def envelope_signal(spec, x0):
    """Full-rate squared Hilbert envelope |z|^2 of the demodulation band (brick-wall band-pass
    by FFT)."""
    n, fs = spec["window"], spec["sample_rate"]
    kmax = usable_max_bin(spec["max_hz"], fs / n, n)
    d0, d1 = band_bins(*spec["envelope_demod_band"], fs / n, kmax)
    spectrum = np.fft.rfft(x0)
    band = np.zeros_like(spectrum)
    band[d0:d1] = spectrum[d0:d1]
    xb = np.fft.irfft(band, n)
    return np.abs(scipy.signal.hilbert(xb)) ** 2


def envelope_features(spec, env, w):
    n, fs = spec["window"], spec["sample_rate"]
    mean = np.mean(env)
    normalised = env / mean - 1 if mean > 0 else np.zeros_like(env)
    p = one_sided_power(np.fft.rfft(normalised * w), n, w)
    out = []
    for lo, hi in spec["envelope_bands"]:
        b0, b1 = band_bins(lo, hi, fs / n, n // 2)
        out.append(band_value(spec, np.sum(p[b0:b1])))
    return out


def frame_features(spec, xc):
    """Short-time analysis: frames inside the window, each mean-removed and windowed in the
    time domain; per band the mean and max over frames of the band value, then the same for
    spectral flatness in dB (power floored at energy_floor)."""
    fs, f, hop = spec["sample_rate"], spec["frame"], spec["frame_hop"]
    w = scipy.signal.get_window(SCIPY_WINDOW[spec["window_fn"]], f)
    kmax = usable_max_bin(spec["max_hz"], fs / f, f)
    frames = 1 + (len(xc) - f) // hop
    bands, flat = [], []
    for i in range(frames):
        seg = xc[i * hop:i * hop + f]
        p = one_sided_power(np.fft.rfft((seg - np.mean(seg)) * w), f, w)[:kmax + 1]
        row = []
        for lo, hi in spec["frame_bands"]:
            b0, b1 = band_bins(lo, hi, fs / f, kmax)
            row.append(band_value(spec, np.sum(p[b0:b1])))
        bands.append(row)
        q = np.maximum(p[1:], spec["energy_floor"])
        flat.append(10 * (np.mean(np.log10(q)) - np.log10(np.mean(q))))
    bands = np.array(bands)
    out = list(bands.mean(axis=0)) + list(bands.max(axis=0))
    if spec["frame_flatness"]:
        out += [np.mean(flat), np.max(flat)]
    return out


def make_window(spec):
    return scipy.signal.get_window(SCIPY_WINDOW[spec["window_fn"]], spec["window"])  # periodic


def features(spec, x, w=None):
    """x: planar float array, channel c at [c*N, (c+1)*N). Returns the feature vector (float64).
    w: the window from make_window(spec), made here when not given."""
    n = spec["window"]
    if w is None:
        w = make_window(spec)
    out = []
    for c in range(spec["channels"]):
        xc = np.asarray(x[c * n:(c + 1) * n], dtype=np.float64)
        if not np.all(np.isfinite(xc)):
            raise ValueError(f"channel {c}: non-finite sample")
        if spec["time_features"]:
            out += time_features(xc)
        x0 = xc - np.mean(xc)
        if spec["spectral_features"] or spec["bands"]:
            p = spectral_power(spec, x0, w)
            if spec["spectral_features"]:
                out += spectral_features(spec, p)
            out += band_features(spec, p)
        if spec["envelope"]:
            out += envelope_features(spec, envelope_signal(spec, x0), w)
        if spec.get("frame", 0) > 0:
            out += frame_features(spec, xc)
    return np.array(out, dtype=np.float64)


def full_spec(**kw):
    """A spec dict with every key, as FeatureSpec::ToJson writes it."""
    spec = {"version": 1, "sample_rate": 10000.0, "channels": 1, "window": 2000,
            "channel_names": None, "window_fn": "hann", "time_features": True,
            "spectral_features": True, "bands": [], "envelope": True,
            "envelope_demod_band": [1000.0, 4000.0], "envelope_bands": [], "max_hz": None,
            "log_energies": True, "energy_floor": 1e-12}
    spec.update(kw)
    if spec.get("frame", 0) == 0:
        for k in ("frame", "frame_hop", "frame_bands", "frame_flatness"):
            spec.pop(k, None)
    if spec["channel_names"] is None:
        spec["channel_names"] = [f"ch{c}" for c in range(spec["channels"])]
    if spec["max_hz"] is None:
        spec["max_hz"] = 0.45 * spec["sample_rate"]
    spec["feature_names"] = feature_names(spec)
    return spec


# --- test signals (seeded) ------------------------------------------------------------------

def press_stroke(rng, fs=10000.0, n=2000):
    """A stroke: 1 g offset, decaying 240/310/385 Hz die modes, a 2.7 kHz structural ring
    re-excited every 1/120 s (an impact train), broadband noise."""
    t = np.arange(n) / fs
    onset = 0.05
    after = np.clip(t - onset, 0, None)
    hit = (t >= onset) * np.exp(-after / 0.04)
    x = 1.0 + hit * (0.8 * np.sin(2 * np.pi * 240 * t) + 0.5 * np.sin(2 * np.pi * 310 * t + 0.3)
                     + 0.3 * np.sin(2 * np.pi * 385 * t + 1.1))
    phase = (t * 120.0) % 1.0
    x += 0.2 * np.exp(-phase / 0.08) * np.sin(2 * np.pi * 2700 * t)
    x += 0.03 * rng.standard_normal(n)
    return x.astype(np.float32)


def am_noise(rng, fs, n, carrier_lo, carrier_hi, fm, depth):
    """Band-limited noise amplitude-modulated at fm: what an outer-race fault does to the
    housing resonance."""
    noise = rng.standard_normal(n)
    spectrum = np.fft.rfft(noise)
    f = np.arange(len(spectrum)) * fs / n
    spectrum[(f < carrier_lo) | (f > carrier_hi)] = 0
    carrier = np.fft.irfft(spectrum, n)
    carrier /= np.std(carrier)
    t = np.arange(n) / fs
    return ((1 + depth * np.cos(2 * np.pi * fm * t)) * carrier).astype(np.float32)


def impulsive(rng, n):
    x = 0.1 * rng.standard_normal(n)
    for pos in rng.choice(n - 64, size=12, replace=False):
        x[pos:pos + 64] += rng.uniform(1, 3) * np.exp(-np.arange(64) / 6.0) * np.sin(
            2 * np.pi * 0.23 * np.arange(64))
    return x.astype(np.float32)


def read_wav_planar(path, offset, n):
    rate, data = scipy.io.wavfile.read(path)
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 1:
        data = data[:, None]
    win = data[offset:offset + n, :]
    return rate, np.concatenate([win[:, c] for c in range(win.shape[1])])


def short(x):
    """float32 values in their shortest round-trip text, so the JSON stays small and exact."""
    return [float(str(v)) for v in np.asarray(x, dtype=np.float32)]


def make_cases(shared_dir):
    rng = np.random.default_rng(20240611)
    cases = []

    # 1. The press preset (same bands as FeatureSpec::DefaultPress at 10 kHz / 2,000 samples).
    press_bands = [[0.0, 200.0]] + [[200.0 + 25 * i, 225.0 + 25 * i] for i in range(8)] + [
        [400.0, 800.0], [800.0, 1600.0], [1600.0, 3200.0], [3200.0, 4500.0]]
    spec = full_spec(bands=press_bands, envelope_demod_band=[1000.0, 4000.0],
                     envelope_bands=[[100.0 * i, 100.0 * (i + 1)] for i in range(5)])
    cases.append({"name": "press_stroke", "spec": spec, "signal": press_stroke(rng)})

    # 2. Two channels, Hamming, fractional band edges, linear energies, another rate and length.
    fs, n = 8000.0, 1024
    t = np.arange(n) / fs
    ch0 = (np.sin(2 * np.pi * (300 * t + 900 * t ** 2 / (2 * t[-1]))) +
           0.1 * rng.standard_normal(n)).astype(np.float32)
    ch1 = am_noise(rng, fs, n, 1800, 2800, 8000 / 1024 * 13, 0.6)
    spec = full_spec(sample_rate=fs, channels=2, window=n, channel_names=["x", "y_axis"],
                     window_fn="hamming", log_energies=False,
                     bands=[[0.0, 12.5], [12.5, 250.0], [250.0, 812.5], [812.5, 3000.0]],
                     envelope_demod_band=[1500.0, 3000.0],
                     envelope_bands=[[0.0, 62.5], [62.5, 125.0], [125.0, 400.0]])
    cases.append({"name": "two_channel_hamming", "spec": spec,
                  "signal": np.concatenate([ch0, ch1])})

    # 3. Blackman, time and band features only, impulsive signal (kurtosis far from 3).
    spec = full_spec(sample_rate=25600.0, window=4096, window_fn="blackman",
                     spectral_features=False, envelope=False,
                     bands=[[0.0, 1000.0], [1000.0, 5000.0], [5000.0, 11520.0]])
    cases.append({"name": "impulsive_blackman", "spec": spec, "signal": impulsive(rng, 4096)})

    # 4. Rect window, spectral shape only, a tone between bins plus noise.
    fs, n = 10000.0, 2000
    t = np.arange(n) / fs
    x = (0.5 * np.sin(2 * np.pi * 1234.5 * t) + 0.2 * rng.standard_normal(n)).astype(np.float32)
    spec = full_spec(window_fn="rect", time_features=False, envelope=False, bands=[],
                     max_hz=3000.0)
    cases.append({"name": "rect_spectral", "spec": spec, "signal": x})

    # 5. Envelope check sample by sample: a 1000-1980 Hz demod band (196 bins) and envelope
    #    bands up to 250 Hz make the extractor pick a 250-point envelope (the smallest even
    #    2^a 3^b 5^c >= 196 + 49 + 3), which divides 2,000: its points are every 8th sample of
    #    scipy's full-rate squared envelope, stored here as "envelope".
    fs, n = 10000.0, 2000
    x = am_noise(rng, fs, n, 1100, 1900, 105.0, 0.7) + 0.02 * rng.standard_normal(n).astype(
        np.float32)
    spec = full_spec(time_features=False, spectral_features=False, bands=[],
                     envelope_demod_band=[1000.0, 1980.0],
                     envelope_bands=[[50.0 * i, 50.0 * (i + 1)] for i in range(5)])
    env = envelope_signal(spec, np.asarray(x, np.float64) - np.mean(np.asarray(x, np.float64)))
    cases.append({"name": "envelope_samples", "spec": spec, "signal": x,
                  "envelope_stride": 8, "envelope": env[::8]})

    # 6. Frame mode (machine sound in a long window): 16 kHz, 8,192 samples, 1,024-sample frames
    #    every 512, mel-spaced bands, flatness; a steady hum, noise and one click in the middle
    #    (the max over frames must see the click, the mean the hum).
    fs, n = 16000.0, 8192
    t = np.arange(n) / fs
    x = 0.05 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(n)
    x[4000:4100] += 0.5 * np.exp(-np.arange(100) / 15.0) * np.sin(2 * np.pi * 3000 * t[:100])
    spec = full_spec(sample_rate=fs, window=n, spectral_features=False, envelope=False,
                     bands=[], frame=1024, frame_hop=512, frame_flatness=True,
                     frame_bands=[[0.0, 150.0], [150.0, 400.0], [400.0, 1000.0],
                                  [1000.0, 2500.0], [2500.0, 7200.0]])
    cases.append({"name": "sound_frames", "spec": spec, "signal": x.astype(np.float32)})

    # 7. Real data: CWRU outer-race fault, both channels (DE, FE), with the bearing preset. The
    #    samples are not copied here; the test reads the WAV from the shared data directory.
    cwru = "de12k_ORat6007_0hp_1797rpm_X130.wav"
    path = os.path.join(shared_dir, "data", "cwru", cwru)
    if os.path.exists(path):
        rate, x = read_wav_planar(path, 24000, 2000)
        bearing_bands = [[500.0 * i, 500.0 * (i + 1)] for i in range(10)]
        spec = full_spec(sample_rate=float(rate), channels=2, window=2000, max_hz=5000.0,
                         bands=bearing_bands, envelope_demod_band=[2000.0, 4500.0],
                         envelope_bands=[[25.0 * i, 25.0 * (i + 1)] for i in range(20)])
        cases.append({"name": "cwru_outer_race", "spec": spec, "signal": x,
                      "wav": {"file": "data/cwru/" + cwru, "offset": 24000}})
    else:
        print(f"warning: {path} not found; the CWRU case is left out", file=sys.stderr)
    return cases


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    shared = os.environ.get("TEND_SHARED_DIR", os.path.join(os.path.dirname(root), "shared"))
    out_path = os.path.join(root, "tests", "data", "dsp", "reference.json")
    out = {"generator": "scripts/reference/dsp_reference.py (numpy %s, scipy %s)" % (
        np.__version__, scipy.__version__), "cases": []}
    for case in make_cases(shared):
        spec, x = case["spec"], case["signal"]
        entry = {"name": case["name"], "spec": spec,
                 "expected": [float(v) for v in features(spec, x)]}
        if "wav" in case:
            entry["wav"] = case["wav"]
        else:
            entry["signal"] = short(x)
        if "envelope" in case:
            entry["envelope_stride"] = case["envelope_stride"]
            entry["envelope"] = [float(v) for v in case["envelope"]]
        out["cases"].append(entry)
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {out_path} ({os.path.getsize(out_path)} bytes, {len(out['cases'])} cases)")


if __name__ == "__main__":
    main()
