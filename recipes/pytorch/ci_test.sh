#!/usr/bin/env bash
# CI check of the PyTorch recipe on a small budget (about a minute): simulate with tend, train,
# export with the model card, quantise to INT8, gate the accuracy drop with `tend compare`, and
# serve both models through tend's raw-window path (`tend eval` on freshly simulated strokes).
#
#   recipes/pytorch/ci_test.sh BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?usage: ci_test.sh BUILD_DIR}" && pwd)
tend="$build/tend"
py=/usr/bin/python3
[ -x "$tend" ] || { echo "ci_test: error: $tend not built" >&2; exit 1; }
out=$(mktemp -d /tmp/tend-recipe-XXXXXX)
trap 'rm -rf "$out"' EXIT
cd "$here"

"$py" recipes/pytorch/train_cnn.py --tend "$tend" --out "$out" --quick --threads 2

# The exported model carries tend's model card.
"$py" - "$out/cnn.onnx" <<'EOF'
import json, sys, onnx
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m)
meta = {p.key: json.loads(p.value) for p in m.metadata_props}
assert meta["tend.input_kind"] == "raw", meta
assert meta["tend.feature_spec"]["windowing"]["window"] == 2000, meta
t = meta["tend.thresholds"]
assert 0 < t["low"] <= t["medium"] <= t["high"], t
print("ci_test: model card ok:", meta["tend.name"], meta["tend.detector"], t)
EOF

"$tend" quantize "$out/cnn.onnx" --calibration "$out/calib.npy" --out "$out/cnn.int8.onnx"
# Exit 3 (and a failed test) if INT8 loses more than 1.5 AUC points.
"$tend" compare "$out/cnn.onnx" "$out/cnn.int8.onnx" --validation "$out/val.npy" \
  --labels "$out/val_labels.npy" --iterations 50 --max-drop 1.5

# Served the way `tend run` serves it: stroke-triggered windows from the simulator.
for m in cnn.onnx cnn.int8.onnx; do
  "$tend" eval --model "$out/$m" --normal "sim:strokes=60,wear=0,seed=901" \
    --anomalous "sim:strokes=60,wear=0.6,seed=902" --json >"$out/eval.json"
  "$py" - "$out/eval.json" "$m" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
print(f"ci_test: tend eval {sys.argv[2]}: AUC {j['auc']:.4f}")
assert j["auc"] > 0.9, j["auc"]
EOF
done
echo "ci_test: ok"
