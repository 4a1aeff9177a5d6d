#!/usr/bin/env bash
# `make bench`: the benchmarks whose figures the issues ask for, each next to its baseline in the
# same run. Timings on a shared machine are noisy: compare the ratios, not the absolute numbers.
set -uo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")/.." && pwd)
out=${TEND_BENCH_OUT:-$here/out/bench}
mkdir -p "$out"
tend="$build/tend"

echo "== DSP features: C++ vs numpy (one 2,000-sample channel)"
"$here/scripts/bench_dsp.sh" "$build" || echo "(dsp benchmark failed)"

echo
echo "== Per-window pipeline (features + model + decision): tend vs a numpy version of the same path"
"$tend" train --input "sim:strokes=200,wear=0,seed=11" --out "$out/press.onnx" >/dev/null
"$tend" simulate --sim "sim:strokes=300,wear=0,wear_end=1,seed=12" --out "$out/run.wav" >/dev/null
"$tend" bench --pipeline --model "$out/press.onnx" --json >"$out/pipeline.json" && cat "$out/pipeline.json"
/usr/bin/python3 "$here/scripts/reference/pipeline_numpy_baseline.py" "$out/press.onnx" "$out/run.wav" \
  "$out/run.wav.labels.csv" | tee "$out/pipeline_numpy.json"

for s in bench_models.sh bench_quantize.sh; do
  if [ -x "$here/scripts/$s" ]; then
    echo
    echo "== $s"
    "$here/scripts/$s" "$build" || echo "($s failed)"
  fi
done
for b in "$build"/bench/*; do
  case "$(basename "$b")" in dsp_feature_benchmark) continue ;; esac
  [ -x "$b" ] || continue
  echo
  echo "== $(basename "$b")"
  "$b" --benchmark_min_time=0.2 2>&1 | tail -n 30
done
