#!/usr/bin/env bash
# Per-window pipeline latency of two tend binaries in one run: `tend bench --pipeline` on the same
# model, alternating A and B for ROUNDS rounds so that both see the same machine load, then per
# stage the median over rounds of each binary's p50 and p99, and B/A ratios.
#   scripts/compare_pipeline.sh BEFORE_TEND AFTER_TEND [ROUNDS] [STROKES]
# Stages: features, inference, decision (the decider and the asset's monitors: health, drift,
# input health; binaries before #14 had no decision stage and show "-"), total (the whole
# per-window path the bench times: features + inference + decision). The figure the #14 target
# is about is total's p99 ratio.
# Environment: PIN=CPU runs every bench pinned to that core (taskset -c CPU; steadier on a busy
# machine); NICE=N runs them under nice -n N. The load average is printed before and after.
set -euo pipefail
A=$1
B=$2
ROUNDS=${3:-15}
STROKES=${4:-5000}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
RUN=()
[ -n "${NICE:-}" ] && RUN+=(nice -n "$NICE")
[ -n "${PIN:-}" ] && RUN+=(taskset -c "$PIN")
"$B" train --input "sim:strokes=200,wear=0,seed=1" --out "$DIR/press.onnx" >/dev/null 2>&1
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)  (${ROUNDS} rounds x ${STROKES} strokes each${PIN:+, pinned to cpu $PIN})"
for i in $(seq "$ROUNDS"); do
  # Alternate which binary goes first, so neither always runs right after the other.
  order="A B"
  [ $((i % 2)) -eq 0 ] && order="B A"
  for who in $order; do
    bin=$A
    [ "$who" = B ] && bin=$B
    "${RUN[@]}" "$bin" bench --pipeline --model "$DIR/press.onnx" --strokes "$STROKES" --json \
      2>/dev/null | python3 -c "
import json, sys
st = json.load(sys.stdin)['stages']
for k, v in st.items(): print('$who', k, v['p50_ms'], v['p99_ms'])" >>"$DIR/runs.txt"
  done
done
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$DIR/runs.txt" "$A" "$B" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
def med(who, stage, col):
    v = [float(r[col]) for r in rows if r[0] == who and r[1] == stage]
    return statistics.median(v) if v else None
print(f"A = {sys.argv[2]}\nB = {sys.argv[3]}")
print("medians over rounds of each run's percentile, microseconds")
print(f"{'stage':10} {'A p50':>8} {'B p50':>8} {'B/A':>6}   {'A p99':>8} {'B p99':>8} {'B/A':>6}")
fmt = lambda x: f"{x * 1000:8.2f}" if x is not None else f"{'-':>8}"
ratio = lambda a, b: f"{b / a:6.3f}" if a and b else f"{'-':>6}"
for stage in ("features", "inference", "decision", "total"):
    a50, b50, a99, b99 = (med("A", stage, 2), med("B", stage, 2), med("A", stage, 3),
                          med("B", stage, 3))
    if a50 is None and b50 is None:
        continue
    print(f"{stage:10} {fmt(a50)} {fmt(b50)} {ratio(a50, b50)}   {fmt(a99)} {fmt(b99)} {ratio(a99, b99)}")
PY
