#!/usr/bin/env bash
# `make bench-fleet`: the fleet's scale figures (docs/fleet.md, "Scale").
#   1. ingest: `tend fleet simulate` publishes DEVICES devices at RATE x the real traffic (scores
#      18/min/device, health every 15 s, alerts, status, OTA states) to Mosquitto; two
#      `tend fleet ingest` instances in one shared-subscription group store it in PostgreSQL.
#      Reported: published and stored messages per second, and how long the store lags behind.
#   2. console: the device list (GET /api/devices) of `tend fleet serve` over that database, after
#      a day of alerts is added (ALERTS_PER_DAY rows), p50/p95 over REQUESTS requests, with the
#      default 2 s snapshot and with a snapshot recomputed on every request (worst case).
# Needs root (PostgreSQL runs as the postgres user), PostgreSQL 15 and Mosquitto (bootstrap.sh).
#   scripts/bench_fleet.sh [BUILD_DIR]   (env: DEVICES=1000 RATE=10 SECONDS_RUN=60 REQUESTS=300)
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
tend="$build/tend"
devices=${DEVICES:-1000}
rate=${RATE:-10}
seconds=${SECONDS_RUN:-60}
requests=${REQUESTS:-300}
alerts_per_day=${ALERTS_PER_DAY:-400000}
pgbin=/usr/lib/postgresql/15/bin
work=$(mktemp -d /tmp/tend-bench-fleet-XXXXXX)
pids=()
cleanup() {
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill "${pids[$i]}" 2>/dev/null || true; wait "${pids[$i]}" 2>/dev/null || true; done
  [ -f "$work/pg/PG_VERSION" ] && runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== setup: PostgreSQL 15, Mosquitto, two ingest instances ($work)"
chown postgres "$work"
pgport=$(free_port)
runuser -u postgres -- "$pgbin/initdb" -D "$work/pg" -A trust -U postgres >/dev/null
runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pg" -w -l "$work/pg.log" \
  -o "-p $pgport -k $work -c listen_addresses=127.0.0.1" start >/dev/null
db="postgresql://postgres@127.0.0.1:$pgport/postgres"
mqport=$(free_port)
cat >"$work/mosquitto.conf" <<EOF
listener $mqport 127.0.0.1
allow_anonymous true
max_inflight_messages 1000
max_queued_messages 100000
EOF
mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 & pids+=($!)
sleep 0.5
for i in 1 2; do
  "$tend" fleet ingest --mqtt "mqtt://127.0.0.1:$mqport" --group scale --db "$db" --stats-every 10 \
    >"$work/ingest$i.log" 2>&1 & pids+=($!)
done
for i in 1 2; do
  for _ in $(seq 100); do grep -q "ingesting from" "$work/ingest$i.log" && break; sleep 0.1; done
done
count() {
  psql -h 127.0.0.1 -p "$pgport" -U postgres -Atc \
    "SELECT (SELECT count(*) FROM scores) + (SELECT count(*) FROM alerts) + (SELECT count(*) FROM health)"
}

echo "== ingest: $devices devices at ${rate}x for ${seconds} s"
start_ns=$(date +%s%N)
"$tend" --log-level warn fleet simulate --mqtt "mqtt://127.0.0.1:$mqport" --devices "$devices" \
  --rate "$rate" --duration "$seconds" --connections 20 --stats-every 0 >"$work/sim.json"
sim_end_ns=$(date +%s%N)
published=$(tail -1 "$work/sim.json" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["scores"]+s["alerts"]+s["health"])')
prev=-1; stored=$(count)
while [ "$stored" != "$prev" ]; do prev=$stored; sleep 2; stored=$(count); done
drained_ns=$(date +%s%N)
for i in 1 2; do kill -TERM "${pids[$((i))]}"; done
sleep 2
python3 - "$published" "$stored" "$start_ns" "$sim_end_ns" "$drained_ns" "$work/sim.json" <<'EOF'
import json, sys
pub, stored, t0, t1, t2 = (int(x) for x in sys.argv[1:6])
sim = json.loads(open(sys.argv[6]).read().splitlines()[-1])
# Rates over the simulator's own publishing time (its start-up, connecting and announcing the
# devices, is not traffic); the store has caught up when its count stops growing.
run, lag = sim["elapsed_s"], (t2 - t1) / 1e9 - 2.0  # the last 2 s poll found nothing new
print(json.dumps({"published": pub, "stored": stored, "published_per_s": round(pub / run, 1),
                  "stored_per_s": round(stored / (run + max(lag, 0)), 1),
                  "store_caught_up_after_end_s": round(max(lag, 0), 1),
                  "lost": pub - stored, "simulator": sim}))
EOF
echo "ingest instances, every 10 s (queued = QoS 0 messages waiting for the writer):"
grep -h "fleet: received" "$work"/ingest*.log | sed 's/.*fleet: //' || true

echo "== console: GET /api/devices at $devices devices, $alerts_per_day alerts over the last 24 h"
psql -h 127.0.0.1 -p "$pgport" -U postgres -qAtc "
  INSERT INTO alerts(msg_id, device_id, factory_id, line_id, asset_id, ts_ms, timestamp,
    anomaly_score, severity, top_sensors, model_version, seq, received_ms)
  SELECT 'bench-' || g, 'sim-' || lpad(((g % $devices) + 1)::text, 4, '0'), 'plant-a', 'line-1',
    'press-1', (extract(epoch from now()) * 1000)::bigint - (g * 86400000::bigint / $alerts_per_day),
    'bench', 1.2, 'LOW', '[\"kurtosis\"]', '1', g, 0 FROM generate_series(1, $alerts_per_day) g;
  ANALYZE;"
"$tend" fleet token create --db "$db" --role viewer --name bench >"$work/token" 2>/dev/null
for age in 2 0; do  # the default background refresh, then a snapshot computed per request
  port=$(free_port)
  "$tend" fleet serve --db "$db" --port "$port" --snapshot-max-age "$age" >"$work/serve.log" 2>&1 & spid=$!
  for _ in $(seq 100); do grep -q "console on" "$work/serve.log" && break; sleep 0.1; done
  python3 - "$port" "$(cat "$work/token")" "$requests" "$age" <<'EOF'
import http.client, json, statistics, sys, time
port, token, n, age = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
paths = ["/api/devices?limit=50", "/api/devices?sort=alerts_24h&order=desc&limit=50",
         "/api/devices?factory=plant-b&sort=backlog&order=desc&limit=50", "/api/devices?offset=950&limit=50"]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
lat, total = [], None
for i in range(n):
    t = time.perf_counter()
    c.request("GET", paths[i % len(paths)], headers={"Authorization": "Bearer " + token})
    r = c.getresponse(); body = r.read()
    lat.append((time.perf_counter() - t) * 1000)
    assert r.status == 200, body
    if i == 0: total = json.loads(body)["total"]
    time.sleep(0.05)
lat.sort()
print(json.dumps({"snapshot_max_age_s": float(age), "devices": total, "requests": n,
                  "p50_ms": round(lat[len(lat) // 2], 1), "p95_ms": round(lat[int(len(lat) * 0.95)], 1),
                  "max_ms": round(lat[-1], 1)}))
EOF
  kill "$spid"; wait "$spid" 2>/dev/null || true
done
