#!/usr/bin/env bash
# DSP feature extraction speed: the C++ extractor (Google Benchmark, every call timed) next to a
# straightforward numpy/scipy implementation of the same features, in the same run, pinned to
# the same core. One 2,000-sample channel, FeatureSpec::DefaultPress (10 kHz).
#
#   scripts/bench_dsp.sh [BUILD_DIR]        # default: build; TEND_BENCH_CORE=1 picks the core
#   TEND_BENCH_RT=1 scripts/bench_dsp.sh build   # both under SCHED_FIFO (root): on a busy machine
#                                                # this keeps other processes' time slices out of p99
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
core=${TEND_BENCH_CORE:-1}
bench="$build/bench/dsp_feature_benchmark"
py=/usr/bin/python3
[ -x "$bench" ] || { echo "bench_dsp: $bench not found (cmake --build $build --target dsp_feature_benchmark)" >&2; exit 1; }

pin=(taskset -c "$core")
[ -n "${TEND_BENCH_RT:-}" ] && pin=(chrt -f 50 taskset -c "$core")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bench" --tend_dump_spec=press >"$tmp/spec.json"
"${pin[@]}" "$bench" --benchmark_out="$tmp/cpp.json" --benchmark_out_format=json >/dev/null 2>"$tmp/cpp.err" \
  || { cat "$tmp/cpp.err" >&2; exit 1; }
"${pin[@]}" "$py" "$here/scripts/reference/dsp_numpy_baseline.py" --spec "$tmp/spec.json" >"$tmp/py.json"

"$py" - "$tmp/cpp.json" "$tmp/py.json" "$core${TEND_BENCH_RT:+, SCHED_FIFO}" <<'PY'
import json, sys
cpp_raw = json.load(open(sys.argv[1]))
py = json.load(open(sys.argv[2]))
cpp = {}
for b in cpp_raw["benchmarks"]:
    parts = [q for q in b["name"].split("/") if not q.startswith("iterations:")]
    key = "fft" if parts[0] == "BM_Fft" else parts[1]
    cpp[key] = b
order = [("full", f"whole vector ({int(cpp['full']['features'])} features)"), ("time", "time-domain group"),
         ("fft", "real FFT alone (2000)"), ("fft_spectral", "FFT + spectral shape"),
         ("fft_bands", "FFT + band energies"), ("fft_envelope", "FFT + envelope bands")]
ctx = cpp_raw.get("context", {})
print(f"dsp feature extraction, one 2,000-sample channel, DefaultPress, pinned to core {sys.argv[3]}")
load = ", ".join(f"{v:.1f}" for v in ctx.get("load_avg", []))
print(f"host: {ctx.get('host_name', '?')}, {ctx.get('num_cpus', '?')} cpus @ {ctx.get('mhz_per_cpu', '?')} MHz, "
      f"load average {load or '?'}; C++ {cpp['full']['iterations']} calls/group, "
      f"numpy {py['full']['calls']} calls/group")
print(f"{'group':<28}{'C++ p50':>9}{'C++ p99':>9}{'numpy p50':>11}{'numpy p99':>11}{'speedup p50':>13}"
      f"{'C++ share':>11}{'numpy share':>13}")
full_c, full_p = cpp["full"]["p50_us"], py["full"]["p50_us"]
fft_c, fft_p = cpp["fft"]["p50_us"], py["fft"]["p50_us"]
for key, label in order:
    c, p = cpp[key], py[key]
    share_c = c["p50_us"] / full_c * 100
    share_p = p["p50_us"] / full_p * 100
    print(f"{label:<28}{c['p50_us']:>9.2f}{c['p99_us']:>9.2f}{p['p50_us']:>11.1f}{p['p99_us']:>11.1f}"
          f"{p['p50_us'] / c['p50_us']:>12.1f}x{share_c:>10.0f}%{share_p:>12.0f}%")
print("times in microseconds per call; share = the group alone / the whole vector (p50).")
print("increments over the FFT (p50, C++ | numpy): " + ", ".join(
    f"{k.replace('fft_', '')} {cpp[k]['p50_us'] - fft_c:.2f} | {py[k]['p50_us'] - fft_p:.1f}"
    for k in ("fft_spectral", "fft_bands", "fft_envelope")))
ok = cpp["full"]["p50_us"] <= 30 and cpp["full"]["p99_us"] <= 60
print(f"target (whole vector <= 30 us p50, <= 60 us p99): {'met' if ok else 'NOT met'}")
PY
