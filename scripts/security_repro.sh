#!/usr/bin/env bash
# Issue #17's own scenarios, run through a `tend` binary: one line per defect, "DEFECT" when the
# binary shows it, "fixed" when it does not. Used to show each defect on the tree the issue was
# filed against (9031a37) and its absence on main (docs/security-regressions.md). Everything
# happens in a new temporary folder; the device node of item 11 is made there (never /dev/null).
# Needs /usr/bin/python3 with python3-onnx. Exits 0 when every scenario says "fixed".
#
#   scripts/security_repro.sh path/to/tend
set -uo pipefail
T=$(realpath "${1:?usage: security_repro.sh path/to/tend}")
d=$(mktemp -d /tmp/tend-repro.XXXXXX)
trap 'rm -rf "$d"' EXIT
cd "$d"
defects=0
say() {  # item, 0 = fixed / 1 = defect, detail
  if [ "$2" -eq 0 ]; then echo "item $1: fixed: $3"; else echo "item $1: DEFECT: $3"; defects=$((defects + 1)); fi
}
sig() { [ "$1" -ge 128 ] && echo 1 || echo 0; }  # exit status of a command killed by a signal
how() { [ "$1" -ge 128 ] && echo "exit $1 (signal $(($1 - 128)))" || echo "exit $1"; }
first_error() { grep -m1 'error' "$1" | cut -c1-150; }

"$T" --log-level warn train --input 'sim:strokes=60,wear=0,seed=5' --out m.onnx --name press-ae \
  --version 1 >/dev/null 2>train.err || { cat train.err; exit 2; }
"$T" keygen --out pub >/dev/null 2>&1
"$T" --log-level warn publish m.onnx --name press-ae --version 1 --profile x86-cpu-fp32 \
  --key pub.key --registry reg >/dev/null 2>&1 || { echo "publish failed"; exit 2; }

# 1. Unsigned timestamp.json whose signed part nests 80,000 arrays: `ota check` must refuse it.
/usr/bin/python3 -c "
n = 80000
open('reg/timestamp.json', 'w').write('{\"signed\":{\"_type\":\"timestamp\",\"version\":2,\"x\":' +
    '[' * n + ']' * n + '},\"signatures\":[{\"keyid\":\"00\",\"sig\":\"00\"}]}')"
"$T" --log-level warn ota check --registry reg --model-dir dev --name press-ae \
  --profile x86-cpu-fp32 --root reg/root.json --allow-unmeasured >o1 2>e1
rc=$?
say 1 "$(sig $rc)" "ota check $(how $rc); $(first_error e1)"

# 6. Health messages at a NaN interval, broker port closed: the agent must not crash at shutdown
# (before: the exporter was destroyed under the telemetry worker; now the setting is refused too).
printf '[mqtt]\nhealth_interval_s = nan\n' >h.toml
timeout 120 "$T" run --config h.toml --model m.onnx --source 'sim:strokes=3,seed=4' --speed 0 \
  --quiet --metrics-port 0 --mqtt mqtt://127.0.0.1:1 --state-dir st6 >o6 2>e6
rc=$?
say 6 "$(sig $rc)" "run with mqtt.health_interval_s = nan $(how $rc); $(first_error e6)"

# 8. Model metadata whose tend.training_summary nests 400,000 arrays: refused, not a crash.
/usr/bin/python3 -c "
import onnx
m = onnx.load('m.onnx')
n = 400000
for p in m.metadata_props:
    if p.key == 'tend.training_summary':
        p.value = '{\"x\":' + '[' * n + ']' * n + '}'
onnx.save(m, 'nested.onnx')"
timeout 120 "$T" --log-level warn score --model nested.onnx --input 'sim:strokes=3,seed=4' \
  >o8 2>e8
rc=$?
say 8 "$(sig $rc)" "score --model nested.onnx $(how $rc); $(first_error e8)"

# 10. The same recording as CSV with and without a UTF-8 byte-order mark: both must read as one
# channel with a time column.
"$T" simulate --sim 'sim:strokes=4,wear=0,seed=7' --out s.wav >/dev/null 2>&1
/usr/bin/python3 -c "
import struct
b = open('s.wav', 'rb').read(); i = b.find(b'data'); n = struct.unpack('<I', b[i + 4:i + 8])[0] // 4
xs = struct.unpack('<%df' % n, b[i + 8:i + 8 + 4 * n])
text = 'time,x\n' + ''.join('%.4f,%.6f\n' % (k / 10000, x) for k, x in enumerate(xs))
open('plain.csv', 'w').write(text)
open('bom.csv', 'wb').write(b'\xef\xbb\xbf' + text.encode())
lines = text.split('\n'); lines[100] = lines[100].split(',')[0] + ',1e-400'
open('tiny.csv', 'w').write('\n'.join(lines))"
"$T" --log-level warn score --model m.onnx --input plain.csv >plain.out 2>e10p
"$T" --log-level warn score --model m.onnx --input bom.csv >bom.out 2>e10
rc=$?
nolat() { sed -E 's/"latency_ms":[^,]*,//' "$1"; }  # the one field that varies from run to run
if [ $rc -eq 0 ] && [ -s bom.out ] && [ "$(nolat plain.out)" = "$(nolat bom.out)" ]; then
  say 10 0 "bom.csv scores exactly as plain.csv ($(wc -l <bom.out) windows)"
else
  say 10 1 "bom.csv exit $rc; $(first_error e10)"
fi

# 11. --out through a symlink and through a character device (made here, never /dev/null).
mkdir real && ln -s real/scores.jsonl link.jsonl
"$T" --log-level warn score --model m.onnx --input 'sim:strokes=3,wear=0,seed=4' \
  --out link.jsonl >/dev/null 2>&1
if [ -L link.jsonl ] && [ -s real/scores.jsonl ]; then
  say 11a 0 "--out link.jsonl wrote through the symlink"
else
  say 11a 1 "--out link.jsonl replaced the symlink by $(stat -c %F link.jsonl)"
fi
if mknod nulldev c 1 3 2>/dev/null; then
  "$T" --log-level warn score --model m.onnx --input 'sim:strokes=3,wear=0,seed=4' \
    --out nulldev >/dev/null 2>&1
  if [ -c nulldev ]; then
    say 11b 0 "--out DEVICE wrote through the character device"
  else
    say 11b 1 "--out DEVICE replaced the character device by a $(stat -c %F nulldev)"
  fi
else
  echo "item 11b: skipped: mknod needs root"
fi
# 11. A value below the smallest double (1e-400) is zero, not "not finite".
"$T" --log-level warn score --model m.onnx --input tiny.csv >/dev/null 2>e11
rc=$?
if [ $rc -eq 0 ]; then say 11c 0 "1e-400 read as 0"; else say 11c 1 "exit $rc; $(first_error e11)"; fi
echo "defects shown: $defects"
[ $defects -eq 0 ]
