#!/usr/bin/python3
"""Physics check for the press simulator (not run by ctest: needs numpy/scipy).

Writes runs with build/tests/sources/tend_sim_write, cuts one 2,000-sample window per stroke
(200 samples before the labelled onset, +-1 ms of trigger jitter), computes the kind of features a
detector uses (RMS, crest, kurtosis, 20 Hz band energies in 200-400 Hz, spectral centroid,
1-3 kHz energy, envelope-spectrum bands) and reports, per wear level, each feature's shift in
units of the healthy standard deviation (z) and the AUC of a Gaussian (Mahalanobis) detector
trained on healthy strokes only.

  /usr/bin/python3 tests/sources/sim_features.py build/tests/sources/tend_sim_write
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from scipy.io import wavfile
from scipy.signal import hilbert

FS = 10000
BANDS = list(range(200, 400, 20))
NAMES = (["log_rms", "crest", "kurtosis"] + [f"b{lo}" for lo in BANDS] +
         ["centroid", "hf_1k3k", "env0_50", "env50_100", "env100_200", "env200_500"])


def run(tool, spec, tmp):
    wav, lab = os.path.join(tmp, "r.wav"), os.path.join(tmp, "r.csv")
    subprocess.run([tool, spec, wav, lab], check=True, stdout=subprocess.DEVNULL)
    fs, x = wavfile.read(wav)
    assert fs == FS
    labels = np.genfromtxt(lab, delimiter=",", names=True)
    return x.astype(np.float64), labels


def windows(x, labels, rng, n=2000, pre=200):
    out = []
    for onset in labels["onset_frame"].astype(int):
        s = onset - pre + rng.integers(-10, 11)
        if s >= 0 and s + n <= len(x):
            out.append(x[s:s + n])
    return np.array(out)


def features(W):
    freqs = np.fft.rfftfreq(W.shape[1], 1 / FS)
    hann = np.hanning(W.shape[1])
    F = []
    for x in W:
        v = []
        rms = np.sqrt(np.mean(x ** 2))
        xc = x - x.mean()
        v += [np.log(rms), np.max(np.abs(x)) / rms, np.mean(xc ** 4) / np.mean(xc ** 2) ** 2]
        S = np.abs(np.fft.rfft(x * hann)) ** 2
        v += [np.log(S[(freqs >= lo) & (freqs < lo + 20)].sum()) for lo in BANDS]
        m = freqs <= 5000
        v.append((S[m] * freqs[m]).sum() / S[m].sum())
        v.append(np.log(S[(freqs >= 1000) & (freqs < 3000)].sum()))
        X = np.fft.rfft(x)
        X[(freqs < 200) | (freqs > 400)] = 0
        env = np.abs(hilbert(np.fft.irfft(X, len(x))))
        E = np.abs(np.fft.rfft(env - env.mean())) ** 2
        v += [np.log(E[(freqs >= lo) & (freqs < hi)].sum())
              for lo, hi in [(0, 50), (50, 100), (100, 200), (200, 500)]]
        F.append(v)
    return np.array(F)


def auc(pos, neg):
    return (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()


def main():
    tool = sys.argv[1]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        H = features(windows(*run(tool, "sim:strokes=1000,seed=11", tmp), rng))
        Htr, Hte = H[:600], H[600:]
        mu, sd = Htr.mean(0), Htr.std(0)
        Z = (Htr - mu) / sd
        Ci = np.linalg.inv(np.cov(Z.T) + 1e-3 * np.eye(Z.shape[1]))

        def score(F):
            Zf = (F - mu) / sd
            return np.einsum("ij,jk,ik->i", Zf, Ci, Zf)

        sh = score(Hte)
        thr = np.quantile(score(Htr), 0.999)
        print("healthy: %d train, %d test strokes; test above the train 99.9%% score: %.3f"
              % (len(Htr), len(Hte), np.mean(sh > thr)))
        print("wear   AUC    >thr  " + " ".join(f"{n:>9}" for n in NAMES))
        for i, w in enumerate([0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0]):
            Fw = features(windows(*run(tool, f"sim:strokes=300,seed={100 + i},wear={w}", tmp), rng))
            z = (Fw.mean(0) - mu) / sd
            sw = score(Fw)
            print(f"{w:4.2f} {auc(sw, sh):6.4f} {np.mean(sw > thr):6.3f}  " +
                  " ".join(f"{v:9.2f}" for v in z))


if __name__ == "__main__":
    main()
