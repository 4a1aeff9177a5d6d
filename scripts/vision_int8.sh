#!/bin/bash
# INT8 of an image model on the magnetic tiles, measured end to end (docs/vision.md, "INT8"):
#   1. `tend quantize --calibrate-images` on the fitting split (MT_Free@skip=5) plus horizontal and
#      vertical flips of it (label-free), at most 1,000 inputs; never the held-out fifth
#      (MT_Free@every=5) nor a defect folder;
#   2. `tend train --recalibrate`: LOW/MEDIUM/HIGH of the INT8 model from its own scores of the
#      held-out good images the FP32 fit used;
#   3. `tend eval` of FP32 and INT8 on MT_Free@every=5 against the three defect folders: AUROC all
#      and per folder, false rejects at LOW (INT8 with the FP32 thresholds and with its own);
#   4. `tend bench --pipeline` of FP32 and INT8 alternated ROUNDS times on one pinned core
#      (taskset -c CPU, --threads 1, 256x256 JPEG frames): backbone p50, total p50/p99, and the
#      speed-up per round (a ratio within the round, which the machine's load cancels out of).
#      With BASE=DIR (an earlier OUTDIR of this script, e.g. from an older build or model),
#      each round also benches DIR's FP32 and INT8 models (with BASE_TEND, default TEND): a
#      before/after comparison under the same load.
#
#   scripts/vision_int8.sh MODEL.onnx [OUTDIR]       (default OUTDIR: out/int8-MODEL)
#
# Environment: TEND (build/tend), D (../shared/data/magnetic-tiles), ROUNDS (3), ITER (300 frames
# per bench run), CPU (1), HOLDOUT (0.25: the --holdout the model was fitted with), QUANTIZE_FLAGS
# (the op selection below), BENCH_ONLY=1 (keep OUTDIR's models and evals, re-run the bench: on a
# loaded machine, more and shorter rounds, e.g. ROUNDS=10 ITER=100, give steadier ratios).
# Writes the models, every JSON and summary.md into OUTDIR (and model.txt: MODEL's path, which a
# later run's BASE reads).
set -euo pipefail
MODEL=${1:?usage: scripts/vision_int8.sh MODEL.onnx [OUTDIR]}
base=$(basename "$MODEL" .onnx)
OUT=${2:-out/int8-$base}
TEND=${TEND:-build/tend}
D=${D:-../shared/data/magnetic-tiles}
ROUNDS=${ROUNDS:-3}
ITER=${ITER:-300}
CPU=${CPU:-1}
HOLDOUT=${HOLDOUT:-0.25}
# The backbone's Conv/Clip/Add and the PaDiM head's whitening MatMuls (their INT8 weights cut
# scoring and the file 4x); the squared-distance MatMul and the embedding's Concat stay FP32, and
# so do the embedding's AveragePools: ONNX Runtime's QLinearAveragePool took 0.68 ms per frame
# where the FP32 pools take 0.04 (and made the Resizes after them run on uint8, 0.25 ms against
# 0.07). For a backbone-only INT8 (e.g. a PatchCore head, whose distance MatMul cancels large
# terms): QUANTIZE_FLAGS="--ops Conv,Clip,Add --exclude tend_emb_concat_Concat --reduce-range".
QUANTIZE_FLAGS=${QUANTIZE_FLAGS:---ops Conv,Clip,Add,MatMul --exclude tend_emb_concat_Concat,tend_patch_sq_MatMul --reduce-range}
FIT="$D/MT_Free@skip=5"
HELD="$D/MT_Free@every=5"
DEFECTS=("$D/MT_Blowhole" "$D/MT_Crack" "$D/MT_Fray")
mkdir -p "$OUT"
Q="$OUT/$base.int8.onnx"
R="$OUT/$base.int8.r.onnx"
VARIANTS="fp32 int8"
if [ -n "${BASE:-}" ]; then
  BASE_TEND=${BASE_TEND:-$TEND}
  BASE_FP32=$(cat "$BASE/model.txt" 2>/dev/null || true)
  BASE_INT8=$(find "$BASE" -maxdepth 1 -name '*.int8.r.onnx' | head -1)
  if [ ! -f "$BASE_FP32" ] || [ ! -f "$BASE_INT8" ]; then
    echo "BASE=$BASE: no FP32 model (model.txt) or no *.int8.r.onnx there" >&2
    exit 2
  fi
  VARIANTS="base_fp32 base_int8 fp32 int8"
fi
echo "$MODEL" >"$OUT/model.txt"

if [ "${BENCH_ONLY:-0}" != 1 ]; then
echo "== quantize ($OUT/quantize.log)"
# shellcheck disable=SC2086  # QUANTIZE_FLAGS is a list of flags
"$TEND" quantize "$MODEL" --calibrate-images "$FIT" --augment hflip,vflip --max-samples 1000 \
  $QUANTIZE_FLAGS --out "$Q" >"$OUT/quantize.log" 2>&1
grep -E "^calibration:|check on|size:" "$OUT/quantize.log"
echo "== recalibrate"
"$TEND" train --recalibrate "$Q" --input "$FIT" --holdout "$HOLDOUT" --out "$R" 2>/dev/null
echo "== eval"
"$TEND" eval --model "$MODEL" --normal "$HELD" --anomalous "${DEFECTS[@]}" --json >"$OUT/eval.fp32.json" 2>/dev/null
"$TEND" eval --model "$Q" --normal "$HELD" --anomalous "${DEFECTS[@]}" --json >"$OUT/eval.int8.json" 2>/dev/null
"$TEND" eval --model "$R" --normal "$HELD" --anomalous "${DEFECTS[@]}" --json >"$OUT/eval.int8.r.json" 2>/dev/null
fi
rm -f "$OUT"/bench.*.json
echo "== bench, $ROUNDS rounds of ${VARIANTS// / then } on cpu $CPU"
uptime | tee "$OUT/load.txt"
for i in $(seq 1 "$ROUNDS"); do
  for v in $VARIANTS; do
    t=$TEND
    case $v in
      fp32) m=$MODEL ;;
      int8) m=$R ;;
      base_fp32) m=$BASE_FP32 t=$BASE_TEND ;;
      base_int8) m=$BASE_INT8 t=$BASE_TEND ;;
    esac
    taskset -c "$CPU" "$t" bench --pipeline --model "$m" --input "$HELD" --frame-size 256x256 \
      --threads 1 --iterations "$ITER" --json >"$OUT/bench.$v.$i.json" 2>/dev/null
  done
done
uptime | tee -a "$OUT/load.txt"

/usr/bin/python3 - "$OUT" "$ROUNDS" "$VARIANTS" <<'EOF' | tee "$OUT/summary.md"
import json, statistics, sys
out, rounds, variants = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
ev = {k: json.load(open(f"{out}/eval.{k}.json")) for k in ("fp32", "int8", "int8.r")}
def folders(e):
    return " / ".join(f"{a['auc']:.3f}" for a in e["anomalous_inputs"])
def fr(e):
    return e["at_threshold"]["LOW"]["false_reject_rate"] * 100
def rec(e):
    return e["at_threshold"]["LOW"]["recall"]
names = " / ".join(a["input"].rstrip("/").split("/")[-1] for a in ev["fp32"]["anomalous_inputs"])
f, q, r = ev["fp32"], ev["int8"], ev["int8.r"]
print("| | FP32 | INT8 (FP32 thresholds) | INT8 recalibrated |")
print("|---|---|---|---|")
print(f"| AUROC, all defects | {f['auc']:.3f} | {q['auc']:.3f} ({(q['auc']-f['auc'])*100:+.1f} pt) | {r['auc']:.3f} |")
print(f"| {names} | {folders(f)} | {folders(q)} | {folders(r)} |")
print(f"| LOW threshold | {f['at_threshold']['LOW']['threshold']:.4g} | {q['at_threshold']['LOW']['threshold']:.4g} | {r['at_threshold']['LOW']['threshold']:.4g} |")
print(f"| false rejects at LOW / recall at LOW | {fr(f):.1f} % / {rec(f):.3f} | {fr(q):.1f} % / {rec(q):.3f} | {fr(r):.1f} % / {rec(r):.3f} |")
b = {v: [json.load(open(f"{out}/bench.{v}.{i}.json"))["stages"] for i in range(1, rounds + 1)]
     for v in variants}
def med(v, stage, q):
    return statistics.median(s[stage][q] for s in b[v])
names = {"fp32": "FP32", "int8": "INT8", "base_fp32": "FP32 (base)", "base_int8": "INT8 (base)"}
print()
print(f"bench, median of {rounds} alternated rounds (ms):")
print()
print("| | " + " | ".join(names[v] for v in variants) + " |")
print("|---" * (len(variants) + 1) + "|")
for stage in ("decode", "preprocess", "inference", "scoring", "total"):
    print(f"| {stage} p50 / p99 | " + " | ".join(
        f"{med(v, stage, 'p50_ms'):.2f} / {med(v, stage, 'p99_ms'):.2f}" for v in variants) + " |")
print()
pairs = [("", "fp32", "int8")] + ([("base: ", "base_fp32", "base_int8")] if "base_fp32" in b else [])
for label, fv, qv in pairs:
    for stage, what in (("inference", "backbone (inference)"), ("scoring", "scoring"), ("total", "total")):
        ratios = [f[stage]["p50_ms"] / q[stage]["p50_ms"] for f, q in zip(b[fv], b[qv])]
        print(f"{label}{what} p50 speed-up per round: " + ", ".join(f"{x:.2f}x" for x in ratios) +
              f"; median {statistics.median(ratios):.2f}x")
for v in variants:
    extra = [(s["decode"]["p50_ms"] + s["preprocess"]["p50_ms"] + s["scoring"]["p50_ms"]) /
             s["inference"]["p50_ms"] for s in b[v]]
    print(f"{v}: (decode + preprocess + scoring) p50 / backbone p50 = {statistics.median(extra):.2f}")
if "base_fp32" in b:
    for v in ("fp32", "int8"):
        for stage in ("inference", "scoring", "total"):
            ratios = [o[stage]["p50_ms"] / n[stage]["p50_ms"] for o, n in zip(b["base_" + v], b[v])]
            print(f"{v} {stage} p50, base / this: median {statistics.median(ratios):.2f}x")
EOF
