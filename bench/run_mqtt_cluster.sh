#!/usr/bin/env bash
# run_mqtt_cluster.sh - QoS 1 throughput across two gateway processes (one broker over Redis),
# next to one gateway process and Mosquitto, in the same run.
#
# Peers (each started fresh on free ports, pinned to CPU 0; the load generator on CPU 1):
#   mosquitto        mosquitto -p PORT
#   gateway          one process, bench/conf/mqtt.yaml (memory store)
#   gateway-cluster  two processes + redis-server, bench/conf/mqtt-cluster.yaml; the publisher
#                    connects to node A, the subscribers to node B (mqtt_bench.js --sub-port),
#                    so every message crosses Redis (node A, redis and node B share CPU 0)
# Scenarios (mqtt_bench.js): b = QoS 1, 1 pub -> 1 sub (N messages); d = QoS 1, 1 pub -> 50 subs
# (FAN_N messages). Prints msgs/s per peer and scenario (median of REPS) and the ratios.
#
# usage: run_mqtt_cluster.sh OUTDIR [REPS]     env: N (20000), FAN_N (1000), GATEWAY_BIN
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: $0 OUTDIR [REPS]}; REPS=${2:-3}
N=${N:-20000}; FAN_N=${FAN_N:-1000}
GATEWAY_BIN=${GATEWAY_BIN:-$HERE/../.venv/bin/gateway}
export GATEWAY_BENCH_LOOP=${GATEWAY_BENCH_LOOP:-uvloop}
export PYTHONPATH="$HERE/apps${PYTHONPATH:+:$PYTHONPATH}"
ulimit -n 20000 2>/dev/null || true
mkdir -p "$OUT/logs"
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
PIDS=()
stop_all() {
  for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  done
  PIDS=()
}
trap stop_all EXIT INT TERM
start() { # logname command... -> PIDS
  local log=$1; shift
  setsid taskset -c 0 "$@" >"$OUT/logs/$log.log" 2>&1 &
  PIDS+=($!)
}
wait_port() { for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; return 1; }
bench() { # label pubport subport -> appends "label scenario rate" to OUT/cluster.tsv
  local label=$1 pport=$2 sport=$3 sc rate
  for sc in b d; do
    rate=$(taskset -c 1 node "$HERE/mqtt_bench.js" "127.0.0.1:$pport" --sub-port "$sport" --only $sc \
             --n "$N" --fan-n "$FAN_N" 2>&1 | tee -a "$OUT/logs/bench-$label.log" | awk '/delivered/ && /msgs\/s/ {v=""; for (i=1;i<=NF;i++) if ($i ~ /msgs\/s/) v=$(i-1); print v}' | head -1)
    echo -e "$label\t$sc\t${rate:-0}" >>"$OUT/cluster.tsv"
  done
}
: >"$OUT/cluster.tsv"
for rep in $(seq "$REPS"); do
  P=$(free_port); start mosquitto-$rep mosquitto -p "$P"; wait_port "$P" && bench mosquitto "$P" "$P"; stop_all
  P=$(free_port); start gateway-$rep env GATEWAY_BENCH_PORT=$P "$GATEWAY_BIN" run -c "$HERE/conf/mqtt.yaml"
  wait_port "$P" && bench gateway "$P" "$P"; stop_all
  R=$(free_port); start redis-$rep redis-server --port "$R" --bind 127.0.0.1 --save "" --appendonly no; wait_port "$R"
  A=$(free_port); B=$(free_port)
  start node-a-$rep env GATEWAY_BENCH_PORT=$A GATEWAY_BENCH_REDIS=redis://127.0.0.1:$R/0 "$GATEWAY_BIN" run -c "$HERE/conf/mqtt-cluster.yaml"
  start node-b-$rep env GATEWAY_BENCH_PORT=$B GATEWAY_BENCH_REDIS=redis://127.0.0.1:$R/0 "$GATEWAY_BIN" run -c "$HERE/conf/mqtt-cluster.yaml"
  wait_port "$A" && wait_port "$B" && bench gateway-cluster "$A" "$B"; stop_all
done
python3 - "$OUT/cluster.tsv" <<'PY'
import statistics, sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines() if line]
rates = {}
for label, sc, rate in rows:
    rates.setdefault((label, sc), []).append(float(rate))
names = {"b": "QoS 1, 1 -> 1", "d": "QoS 1, 1 -> 50"}
print("| scenario | mosquitto | gateway (1 process) | gateway (2 nodes, cross-node) | 1 process / mosquitto | 2 nodes / mosquitto | 2 nodes / 1 process |")
print("|---|---:|---:|---:|---:|---:|---:|")
for sc in ("b", "d"):
    m, g, c = (statistics.median(rates.get((p, sc), [0])) for p in ("mosquitto", "gateway", "gateway-cluster"))
    r = lambda x, y: f"{x / y:.2f}x" if y else "-"
    print(f"| {names[sc]} | {m:,.0f} | {g:,.0f} | {c:,.0f} | {r(g, m)} | {r(c, m)} | {r(c, g)} |")
PY
