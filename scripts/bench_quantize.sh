#!/usr/bin/env bash
# Reproduces the quantisation measurements (CPU, one intra-op thread, as on the edge box):
#   1. the PyTorch recipe's 1D CNN: FP32 vs INT8 (and FP16) p50 latency in the same run, AUC drop;
#   2. MobileNet-V2 (torchvision architecture, 224x224): INT8/FP32 latency ratio;
#   3. the model engineer's benchmark 1D CNN (BatchNorm + MaxPool): INT8/FP32 ratio;
#   4. default feature models from `tend train` (mahalanobis, autoencoder): INT8 score
#      correlation with FP32.
#
#   scripts/bench_quantize.sh [BUILD]     (default build; needs BUILD/tend and BUILD/bench/dump_model_inputs)
# Results: BUILD/bench-quantize/*.json and a summary on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
build=${1:-build}
tend="$build/tend"
dump="$build/bench/dump_model_inputs"
out="$build/bench-quantize"
py=/usr/bin/python3
iters=${ITERATIONS:-1000}
[ -x "$tend" ] || { echo "bench_quantize: error: $tend not built (cmake --build $build --target tend)" >&2; exit 2; }
[ -x "$dump" ] || { echo "bench_quantize: error: $dump not built (cmake --build $build --target dump_model_inputs)" >&2; exit 2; }
mkdir -p "$out"
summary() { "$py" - "$@" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
ref = j["models"][0]
for m in j["models"]:
    line = f"  {m['path'].split('/')[-1]:28s} {m['precision']:5s} p50 {m['p50_ms']:8.3f} ms  p99 {m['p99_ms']:8.3f} ms  " \
           f"speed-up {m['speedup_p50']:5.2f}x  size {m['size_bytes']/1024:8.1f} kB"
    if j["metric"]:
        line += f"  {j['metric']} {m[j['metric']]:.4f} (drop {100*m['drop']:+.2f} pt)"
    if m is not ref:
        line += f"  score corr {m['score_correlation']:.4f}  max|diff| {m['max_abs_diff']:.3g}"
    print(line)
EOF
}

echo "== 1. PyTorch recipe 1D CNN (raw 2,000-sample stroke windows)"
"$py" recipes/pytorch/train_cnn.py --tend "$tend" --out "$out/cnn" >"$out/cnn_train.log" 2>&1
tail -2 "$out/cnn_train.log"
"$tend" quantize "$out/cnn/cnn.onnx" --calibration "$out/cnn/calib.npy" --out "$out/cnn/cnn.int8.onnx" >"$out/cnn_int8.txt"
"$tend" quantize "$out/cnn/cnn.onnx" --fp16 --calibration "$out/cnn/calib.npy" --out "$out/cnn/cnn.fp16.onnx" >"$out/cnn_fp16.txt"
"$tend" compare "$out/cnn/cnn.onnx" "$out/cnn/cnn.int8.onnx" "$out/cnn/cnn.fp16.onnx" \
  --validation "$out/cnn/val.npy" --labels "$out/cnn/val_labels.npy" --iterations "$iters" --threads 1 \
  --json >"$out/compare_cnn.json" || true
summary "$out/compare_cnn.json"

echo "== 2./3. MobileNet-V2 224x224 and the benchmark 1D CNN (random weights)"
"$py" scripts/models/export_models.py "$out/models" --set bench >/dev/null 2>&1
"$py" - "$out/models" <<'EOF'
import sys, numpy as np
rng = np.random.default_rng(0)
d = sys.argv[1]
# Smooth random images normalised like ImageNet inputs, and damped bursts for the CNN: enough
# to calibrate ranges and to time; these models have random weights, so there is no accuracy.
img = rng.standard_normal((96, 3, 28, 28)).astype(np.float32)
np.save(f"{d}/mobilenet_data.npy", np.repeat(np.repeat(img, 8, axis=2), 8, axis=3))
t = np.arange(2000) / 10000.0
w = np.exp(-t / 0.04)[None, None, :] * np.sin(2 * np.pi * 290 * t)[None, None, :]
w = w * (1 + 0.1 * rng.standard_normal((96, 1, 1))) + 0.02 * rng.standard_normal((96, 1, 2000))
np.save(f"{d}/cnn1d_data.npy", w.astype(np.float32))
EOF
"$tend" quantize "$out/models/mobilenet_v2.onnx" --calibration "$out/models/mobilenet_data.npy" \
  --out "$out/models/mobilenet_v2.int8.onnx" >"$out/mobilenet_int8.txt"
"$tend" compare "$out/models/mobilenet_v2.onnx" "$out/models/mobilenet_v2.int8.onnx" \
  --validation "$out/models/mobilenet_data.npy" --iterations 200 --threads 1 --json >"$out/compare_mobilenet.json"
summary "$out/compare_mobilenet.json"
"$tend" quantize "$out/models/cnn1d.onnx" --calibration "$out/models/cnn1d_data.npy" \
  --out "$out/models/cnn1d.int8.onnx" >"$out/cnn1d_int8.txt"
"$tend" compare "$out/models/cnn1d.onnx" "$out/models/cnn1d.int8.onnx" \
  --validation "$out/models/cnn1d_data.npy" --iterations "$iters" --threads 1 --json >"$out/compare_cnn1d.json"
summary "$out/compare_cnn1d.json"

echo "== 4. Feature models from tend train (INT8 score correlation with FP32)"
for det in mahalanobis autoencoder; do
  d="$out/feat_$det"
  mkdir -p "$d"
  "$tend" train --input "sim:strokes=600,wear=0,seed=11" --detector "$det" --out "$d/model.onnx" >"$d/train.log" 2>&1
  "$dump" "$d/model.onnx" "$d/calib" "0=sim:strokes=400,wear=0,wear_end=1,seed=12" >/dev/null
  "$dump" "$d/model.onnx" "$d/val" "0=sim:strokes=300,wear=0,wear_end=0.1,seed=13" \
    "1=sim:strokes=300,wear=0.3,wear_end=1,seed=14" >/dev/null
  "$tend" quantize "$d/model.onnx" --calibration "$d/calib.x.npy" --out "$d/model.int8.onnx" >"$d/int8.txt"
  "$tend" compare "$d/model.onnx" "$d/model.int8.onnx" --validation "$d/val.x.npy" \
    --labels "$d/val.y.npy" --iterations "$iters" --threads 1 --json >"$d/compare.json" || true
  echo " $det:"
  summary "$d/compare.json"
done
echo "== onnx.checker (full_check) on every converted model"
find "$out" -name '*.int8.onnx' -o -name '*.fp16.onnx' | sort | while read -r f; do
  "$py" -c "import onnx,sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)" "$f" \
    && echo "  ok  $f" || echo "  FAIL $f"
done
echo "results in $out"
