#!/usr/bin/env bash
# The main job on an embedded default: train on a healthy simulated press, then run the press
# through die wear from new (0) to failing (1) and show every decision plus a summary.
set -euo pipefail
TEND=${1:-build/tend}
OUT=${TEND_DEMO_DIR:-out/demo}
mkdir -p "$OUT"

echo "== 1. Commissioning: train on 200 healthy strokes (wear 0) from the press simulator"
"$TEND" train --input "sim:strokes=200,wear=0,seed=11" --out "$OUT/press.onnx" --name press-demo --version 1

echo
echo "== 2. Production: 300 strokes while the die wears from new (0) to failing (1), at 100x real time"
"$TEND" run --model "$OUT/press.onnx" --source "sim:strokes=300,wear=0,wear_end=1,seed=12" \
  --speed 100 --decision-log "$OUT/decisions.jsonl" --summary-json "$OUT/summary.json"

echo
echo "== 3. Evaluation on fresh strokes: healthy vs worn (wear >= 0.3), with a picture"
"$TEND" eval --model "$OUT/press.onnx" --normal "sim:strokes=300,wear=0,seed=13" \
  --anomalous "sim:strokes=100,wear=0.3,wear_end=0.5,seed=14" "sim:strokes=100,wear=0.5,wear_end=1,seed=15" \
  --plot "$OUT/scores.svg"
echo
echo "decisions: $OUT/decisions.jsonl   summary: $OUT/summary.json   score plot: $OUT/scores.svg"
