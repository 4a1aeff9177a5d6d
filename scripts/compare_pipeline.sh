#!/usr/bin/env bash
# Per-window pipeline latency of two tend binaries in one run: `tend bench --pipeline` on the same
# model, alternating A and B for ROUNDS rounds so that both see the same machine load, then the
# median of each binary's p50 and p99 (stage "total": features + inference + decision, i.e. the
# decider and the monitors; binaries before #14 had no decision stage) and B/A ratios.
#   scripts/compare_pipeline.sh BEFORE_TEND AFTER_TEND [ROUNDS] [STROKES]
set -euo pipefail
A=$1
B=$2
ROUNDS=${3:-7}
STROKES=${4:-2000}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
"$B" train --input "sim:strokes=200,wear=0,seed=1" --out "$DIR/press.onnx" >/dev/null 2>&1
for i in $(seq "$ROUNDS"); do
  for who in A B; do
    bin=$A
    [ "$who" = B ] && bin=$B
    "$bin" bench --pipeline --model "$DIR/press.onnx" --strokes "$STROKES" --json 2>/dev/null |
      python3 -c "import json,sys; t=json.load(sys.stdin)['stages']['total']; print('$who', t['p50_ms'], t['p99_ms'])" \
        >>"$DIR/runs.txt"
  done
done
python3 - "$DIR/runs.txt" "$A" "$B" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {w: (statistics.median(float(r[1]) for r in rows if r[0] == w),
           statistics.median(float(r[2]) for r in rows if r[0] == w)) for w in "AB"}
n = sum(1 for r in rows if r[0] == "A")
print(f"{n} rounds each, medians of the per-run figures (ms, stage total = features + inference + decision)")
print(f"A {sys.argv[2]}: p50 {med['A'][0]:.4f}  p99 {med['A'][1]:.4f}")
print(f"B {sys.argv[3]}: p50 {med['B'][0]:.4f}  p99 {med['B'][1]:.4f}")
print(f"B/A: p50 {med['B'][0]/med['A'][0]:.3f}  p99 {med['B'][1]/med['A'][1]:.3f}")
PY
