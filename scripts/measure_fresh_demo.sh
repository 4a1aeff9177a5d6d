#!/usr/bin/env bash
# Issue #16 item 12: how long a fresh machine waits for `make demo` to show its first decision.
# Clones REV of this repository into a new temporary folder and runs `make demo` there from an
# empty build directory with ccache disabled (CCACHE_DISABLE=1), as a first-time user would.
# Prints one line: REV, wall seconds to the first decision line, wall seconds of the whole
# `make demo`, CPU seconds (user + sys, all children: robust to other load on the machine) and the
# number of compile units built. The packages of scripts/bootstrap.sh must already be installed:
# their apt time is not included. ONNXRUNTIME_ROOT (default: this checkout's third_party copy)
# avoids re-downloading the ONNX Runtime SDK for every clone.
#
#   scripts/measure_fresh_demo.sh REV [KEEP_DIR]
set -euo pipefail
rev=${1:?usage: measure_fresh_demo.sh REV [KEEP_DIR]}
here=$(cd "$(dirname "$0")/.." && pwd)
export ONNXRUNTIME_ROOT=${ONNXRUNTIME_ROOT:-$here/third_party/onnxruntime}
export CCACHE_DISABLE=1
work=${2:-$(mktemp -d /tmp/fresh-demo.XXXXXX)}
mkdir -p "$work"
git clone -q --no-checkout "$here" "$work/tend"
git -C "$work/tend" checkout -q "$rev"
cd "$work/tend"
log="$work/make-demo.log"
start=$(date +%s.%N)
# The first line of `tend run`'s decision output: "window N ... score ..." (text form, any version).
/usr/bin/time -f 'time: %e wall %U user %S sys' -o "$work/time.txt" make demo 2>&1 |
  while IFS= read -r line; do
    printf '%s %s\n' "$(date +%s.%N)" "$line"
  done >"$log"
first=$(awk -v s="$start" '/== 2\. Production/ {p=1; next} p && $2 ~ /^(window|stroke|#)?[0-9]/ {print $1 - s; exit}' "$log")
read -r _ wall _ user _ sys _ <"$work/time.txt"
units=$(grep -c 'Building C' "$log" || true)
printf '%s first_decision_s=%.0f make_demo_wall_s=%.0f cpu_s=%.0f compile_units=%s log=%s\n' \
  "$rev" "${first:-nan}" "$wall" "$(echo "$user + $sys" | bc)" "$units" "$log"
