#!/usr/bin/env bash
# Visual inspection on real photographs (../shared/data/magnetic-tiles, see its SOURCE.md): fit on
# four fifths of the good tiles, evaluate on the fifth never fitted against the three defect
# folders, then let the agent decide every part of a mixed folder, one decision per image.
set -euo pipefail
TEND=${1:-build/tend}
DATA=${TEND_TILES:-$(cd "$(dirname "$0")/.." && pwd)/../shared/data/magnetic-tiles}
OUT=${TEND_DEMO_DIR:-out/demo-vision}
mkdir -p "$OUT"
[ -d "$DATA/MT_Free" ] || { echo "demo-vision: no magnetic-tile images at $DATA (set TEND_TILES)" >&2; exit 1; }

echo "== 1. Commissioning: fit on the good tiles, every 5th kept out (default backbone)"
"$TEND" train --input "$DATA/MT_Free@skip=5" --out "$OUT/tiles.onnx" --name tiles-demo --version 1

echo
echo "== 2. Evaluation: unseen good tiles vs each defect folder, with a picture"
"$TEND" eval --model "$OUT/tiles.onnx" --normal "$DATA/MT_Free@every=5" \
  --anomalous "$DATA/MT_Blowhole" "$DATA/MT_Crack" "$DATA/MT_Fray" --plot "$OUT/scores.svg"

echo
echo "== 3. Production: the agent decides every part of a mixed folder (10 unseen good, 10 defects)"
rm -rf "$OUT/line" && mkdir -p "$OUT/line"
i=0
for f in $(ls "$DATA/MT_Free"/*.jpg | awk 'NR % 5 == 1' | head -10) \
         $(ls "$DATA/MT_Blowhole"/*.jpg | head -4) $(ls "$DATA/MT_Crack"/*.jpg | head -3) \
         $(ls "$DATA/MT_Fray"/*.jpg | head -3); do
  ln -s "$f" "$OUT/line/$(printf 'part%03d' $i)_$(basename "$(dirname "$f")").jpg"
  i=$((i + 1))
done
"$TEND" run --model "$OUT/tiles.onnx" --source "images:$OUT/line" --speed 0 \
  --metrics-port 0 --state-dir "$OUT/state" --decision-log "$OUT/decisions.jsonl" --summary-json "$OUT/summary.json"
echo
echo "decisions: $OUT/decisions.jsonl   summary: $OUT/summary.json   score plot: $OUT/scores.svg"
