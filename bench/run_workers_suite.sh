#!/usr/bin/env bash
# run_workers_suite.sh - HTTP keep-alive with worker processes: the gateway with 1 and 2 workers
# next to uvicorn --workers 2 (httptools, uvloop) and hypercorn -w 2, in the same run, REPS
# times each (round-robin), then medians/min/max via summarize.py.
#
# usage: run_workers_suite.sh OUTDIR [REPS] [PEER...]
#   env: VENV (default BENCH_HOME/venv), DUR (10), WARM (2), CONNS (64), THREADS (2),
#        QUIET_PCT (25), QUIET_WAIT (30)
#   PEER names: gateway-1w gateway-2w uvicorn-w2 hypercorn-w2 (default: all)
# Nothing is pinned: the servers' processes and wrk share every core, as they would on a small
# machine (the goal is relative: 2 workers >= 1.5x one, >= 1.0x uvicorn --workers 2).
# A redis-server on a free port backs the gateway's channel layer (workers > 1 needs one).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: $0 OUTDIR [REPS] [PEER...]}; shift
REPS=${1:-3}; [ $# -gt 0 ] && shift
VENV=${VENV:-${BENCH_HOME:-$HOME/.cache/gateway-bench}/venv}
DUR=${DUR:-10}; WARM=${WARM:-2}; CONNS=${CONNS:-64}; THREADS=${THREADS:-2}
QUIET_PCT=${QUIET_PCT:-25}; QUIET_WAIT=${QUIET_WAIT:-30}
export PATH="$VENV/bin:$PATH" PYTHONPATH="$HERE/apps${PYTHONPATH:+:$PYTHONPATH}"
APP=asgi_apps:hello
GATEWAY_BIN=${GATEWAY_BIN:-$HERE/../.venv/bin/gateway}
REDIS_PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
mkdir -p "$OUT"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >"$OUT/redis.log" 2>&1 &
REDIS_PID=$!
trap 'kill $REDIS_PID 2>/dev/null' EXIT

peer_cmd() {
  case "$1" in
    gateway-1w)   echo env GATEWAY_BENCH_PORT={port} GATEWAY_BENCH_LOOP=uvloop $GATEWAY_BIN run -c $HERE/conf/hello.yaml;;
    gateway-2w)   echo env GATEWAY_BENCH_PORT={port} GATEWAY_BENCH_LOOP=uvloop GATEWAY_BENCH_WORKERS=2 GATEWAY_BENCH_REDIS_PORT=$REDIS_PORT $GATEWAY_BIN run -c $HERE/conf/hello_workers.yaml;;
    uvicorn-w2)   echo uvicorn $APP --workers 2 --host 127.0.0.1 --port {port} --http httptools --loop uvloop --no-access-log --log-level warning;;
    hypercorn-w2) echo hypercorn -w 2 -b 127.0.0.1:{port} $APP;;
    *:*)          echo "${1#*:}";;
    *) echo "unknown peer $1" >&2; return 1;;
  esac
}

if [ $# -gt 0 ]; then PEERS=("$@"); else PEERS=(gateway-1w gateway-2w uvicorn-w2 hypercorn-w2); fi
TSV="$OUT/workers.tsv"
for rep in $(seq "$REPS"); do
  for p in "${PEERS[@]}"; do
    read -r -a CMD <<<"$(peer_cmd "$p")" || exit 1
    "$HERE/http_bench.sh" -n "${p%%:*}" --server-cpu '' --client-cpu '' -t "$THREADS" -c "$CONNS" -d "$DUR" -w "$WARM" \
        --quiet-pct "$QUIET_PCT" --quiet-wait "$QUIET_WAIT" --tsv "$TSV" --logdir "$OUT/logs" -- "${CMD[@]}"
    sleep 1
  done
done
python3 "$HERE/summarize.py" "$TSV" --key name,mode --metrics rps,p50_ms,p99_ms,server_cpu_pct,foreign_cpu_pct
