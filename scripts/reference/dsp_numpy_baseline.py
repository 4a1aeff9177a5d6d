#!/usr/bin/python3
"""The numpy/scipy baseline for bench/dsp/feature_benchmark.cc: the same features computed the
straightforward way a user would write them (np.fft.rfft, scipy.signal.hilbert, scipy.stats),
from scripts/reference/dsp_reference.py, timed per call with time.perf_counter.

    build/bench/dsp_feature_benchmark --tend_dump_spec=press > /tmp/spec.json
    /usr/bin/python3 scripts/reference/dsp_numpy_baseline.py --spec /tmp/spec.json [--calls 2000]

Prints one JSON object: group -> {p50_us, p99_us, mean_us, calls}. Groups match the C++
benchmark: full, time, fft_spectral, fft_bands, fft_envelope, fft (the bare rfft). The window
function is made once outside the timed calls, as the C++ extractor plans it once.
scripts/bench_dsp.sh runs both and prints them side by side.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dsp_reference as ref  # noqa: E402


def groups(spec, w):
    def time_group(x):
        return ref.time_features(np.asarray(x, dtype=np.float64))

    def centred(x):
        x = np.asarray(x, dtype=np.float64)
        return x - np.mean(x)

    def spectral_group(x):
        return ref.spectral_features(spec, ref.spectral_power(spec, centred(x), w))

    def bands_group(x):
        return ref.band_features(spec, ref.spectral_power(spec, centred(x), w))

    def envelope_group(x):
        return ref.envelope_features(spec, ref.envelope_signal(spec, centred(x)), w)

    return {
        "full": lambda x: ref.features(spec, x, w),
        "time": time_group,
        "fft_spectral": spectral_group,
        "fft_bands": bands_group,
        "fft_envelope": envelope_group,
        "fft": lambda x: np.fft.rfft(x),
    }


def measure(fn, x, calls, warmup=50):
    for _ in range(warmup):
        fn(x)
    us = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        fn(x)
        us[i] = (time.perf_counter() - t0) * 1e6
    return {"p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)),
            "mean_us": float(np.mean(us)), "calls": calls}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", required=True, help="FeatureSpec JSON (--tend_dump_spec output)")
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args()
    with open(args.spec) as f:
        spec = json.load(f)
    if spec["channels"] != 1:
        sys.exit("dsp_numpy_baseline: the benchmark spec has one channel")
    x = ref.press_stroke(np.random.default_rng(1234), spec["sample_rate"], spec["window"])
    w = ref.make_window(spec)
    out = {name: measure(fn, x, args.calls) for name, fn in groups(spec, w).items()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
