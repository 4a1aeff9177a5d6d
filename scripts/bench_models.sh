#!/usr/bin/env bash
# Exports the benchmark models (LSTM, 1D CNN, MobileNet-V2; PyTorch 1.13, opsets 13-17), runs
# `tend bench` on each, then the overhead benchmark (bare Ort::Session::Run vs tend's Session::Run
# on the same model in the same process). Results also land in BUILD/bench/results/.
#
#   scripts/bench_models.sh BUILD [extra tend bench flags, e.g. --threads 2 --provider cuda]
set -euo pipefail
BUILD=${1:?usage: scripts/bench_models.sh BUILD [tend bench flags]}
shift
here=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$BUILD" && pwd)
PY=${TEND_PYTHON:-/usr/bin/python3}
models="$BUILD/bench/models"
results="$BUILD/bench/results"
mkdir -p "$results"

[ -x "$BUILD/tend" ] || { echo "bench_models: $BUILD/tend not built" >&2; exit 1; }
if [ ! -f "$models/mobilenet_v2.onnx" ] || [ "$here/scripts/models/export_models.py" -nt "$models/expected.json" ]; then
  "$PY" "$here/scripts/models/export_models.py" "$models" --set bench
fi

for m in lstm cnn1d mobilenet_v2; do
  iters=2000; [ "$m" = mobilenet_v2 ] && iters=300
  echo "== tend bench --model $m.onnx --warmup 20 --iterations $iters $*"
  "$BUILD/tend" --log-level warn bench --model "$models/$m.onnx" --warmup 20 --iterations "$iters" "$@" \
    | tee "$results/$m.txt"
  "$BUILD/tend" --log-level warn bench --model "$models/$m.onnx" --warmup 20 --iterations "$iters" --json "$@" \
    > "$results/$m.json"
  echo
done

echo "== tend bench --pipeline (simulated strokes: features only, then the raw-window CNN)"
"$BUILD/tend" --log-level warn bench --pipeline --strokes 500 "$@" | tee "$results/pipeline_features.txt"
echo
"$BUILD/tend" --log-level warn bench --pipeline --model "$models/cnn1d.onnx" --strokes 500 "$@" \
  | tee "$results/pipeline_cnn1d.txt"
echo

if [ -x "$BUILD/bench/ort_overhead_benchmark" ]; then
  echo "== ort_overhead_benchmark (p50_ratio = tend p50 / bare ONNX Runtime p50, interleaved runs)"
  "$BUILD/bench/ort_overhead_benchmark" --models_dir="$models" \
    --benchmark_out="$results/ort_overhead.json" --benchmark_out_format=json
fi
