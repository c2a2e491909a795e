#!/usr/bin/env bash
# run_ws_suite.sh - WebSocket benchmarks (ws_bench.js) against peer servers.
# For each repetition, each peer and each mode (echo, connect, idle) a fresh
# server is started pinned to CPU 0 (setsid: pid == pgid), the Node client is
# pinned to CPU 1, and the server group is stopped by its pgid afterwards.
#
# usage: run_ws_suite.sh OUTDIR [REPS] [PEER...]
#   env: VENV (BENCH_HOME/venv), NODE_DIR (BENCH_HOME, holds
#        node_modules/ws), MODES ("echo connect idle"), DUR (10), CONNS (50),
#        IDLE (5000), QUIET_PCT (25), QUIET_WAIT (30)
#   PEER: daphne uvicorn-websockets uvicorn-wsproto uvicorn-websockets-sansio
#         hypercorn  (default: daphne uvicorn-websockets uvicorn-wsproto hypercorn)
#   A SERVER command of your own:  PEER=name:'cmd with {port}'
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: $0 OUTDIR [REPS] [PEER...]}; shift
REPS=${1:-3}; [ $# -gt 0 ] && shift
VENV=${VENV:-${BENCH_HOME:-$HOME/.cache/gateway-bench}/venv}
NODE_DIR=${NODE_DIR:-${BENCH_HOME:-$HOME/.cache/gateway-bench}}
MODES=${MODES:-"echo connect idle"}
DUR=${DUR:-10}; CONNS=${CONNS:-50}; IDLE=${IDLE:-5000}
QUIET_PCT=${QUIET_PCT:-25}; QUIET_WAIT=${QUIET_WAIT:-30}
export PATH="$VENV/bin:$PATH" PYTHONPATH="$HERE/apps${PYTHONPATH:+:$PYTHONPATH}"
export NODE_PATH="$NODE_DIR/node_modules" WS_MODULE_DIR="$NODE_DIR/node_modules"
APP=asgi_apps:echo
GATEWAY_BIN=${GATEWAY_BIN:-$HERE/../.venv/bin/gateway}
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

peer_cmd() {
  case "$1" in
    gateway)            echo env GATEWAY_BENCH_PORT={port} GATEWAY_BENCH_APP=$APP $GATEWAY_BIN run -c $HERE/conf/hello.yaml;;
    daphne)             echo daphne -v 0 -b 127.0.0.1 -p {port} $APP;;
    uvicorn-websockets) echo uvicorn $APP --host 127.0.0.1 --port {port} --http httptools --loop uvloop --ws websockets --no-access-log --log-level warning;;
    uvicorn-wsproto)    echo uvicorn $APP --host 127.0.0.1 --port {port} --http httptools --loop uvloop --ws wsproto --no-access-log --log-level warning;;
    uvicorn-websockets-sansio) echo uvicorn $APP --host 127.0.0.1 --port {port} --http httptools --loop uvloop --ws websockets-sansio --no-access-log --log-level warning;;
    hypercorn)          echo hypercorn -w 0 -b 127.0.0.1:{port} $APP;;
    *:*)                echo "${1#*:}";;
    *) echo "unknown peer $1" >&2; return 1;;
  esac
}

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
busy_1s() {
  python3 - <<'PY'
import os, time
def rd():
    f = [int(x) for x in open('/proc/stat').readline().split()[1:]]
    return f[0] + f[1] + f[2] + f[5] + f[6] + f[7], sum(f[:8])
b0, t0 = rd(); time.sleep(1); b1, t1 = rd()
print(int(round((b1 - b0) / max(1, t1 - t0) * 100 * os.cpu_count())))
PY
}
wait_quiet() {
  local b q; b=$(busy_1s); q=$(date +%s)
  while [ "$b" -gt "$QUIET_PCT" ] && [ $(( $(date +%s) - q )) -lt "$QUIET_WAIT" ]; do b=$(busy_1s); done
}

SPID=""
stop_server() {
  [ -n "$SPID" ] || return 0
  if kill -0 "$SPID" 2>/dev/null; then
    kill -TERM -- "-$SPID" 2>/dev/null || kill -TERM "$SPID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
  fi
  kill -KILL -- "-$SPID" 2>/dev/null
  wait "$SPID" 2>/dev/null
  SPID=""
}
trap stop_server EXIT INT TERM

start_server() { # name -> sets SPID, PORT; returns 1 if not ready
  local name=$1 a; PORT=$(free_port)
  read -r -a RAW <<<"$(peer_cmd "$name")" || return 1
  CMD=(); for a in "${RAW[@]}"; do CMD+=("${a//\{port\}/$PORT}"); done
  setsid taskset -c 0 "${CMD[@]}" >"$OUT/logs/server-${name//[^A-Za-z0-9_.-]/_}-$PORT.log" 2>&1 </dev/null &
  SPID=$!
  for _ in $(seq 150); do
    kill -0 "$SPID" 2>/dev/null || return 1
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/" && return 0
    sleep 0.2
  done
  return 1
}

mkdir -p "$OUT/logs"
if [ $# -gt 0 ]; then PEERS=("$@"); else
  PEERS=(daphne uvicorn-websockets uvicorn-wsproto hypercorn); fi

for rep in $(seq "$REPS"); do
  for p in "${PEERS[@]}"; do
    label=${p%%:*}
    for mode in $MODES; do
      wait_quiet
      if ! start_server "$p"; then
        echo "RESULT name=$label mode=$mode error=server_not_ready"; stop_server; continue
      fi
      case $mode in
        echo)    extra=(--conns "$CONNS" --duration "$DUR" --size 32);;
        connect) extra=(--conns "$CONNS" --duration "$DUR");;
        idle)    extra=(--idle "$IDLE" --inflight 50 --settle 3);;
      esac
      timeout $((DUR + 180)) taskset -c 1 node "$HERE/ws_bench.js" --url "ws://127.0.0.1:$PORT/" \
          --mode "$mode" --name "$label" --pid "$SPID" --tsv "$OUT/ws.tsv" "${extra[@]}"
      stop_server
      sleep 1
    done
  done
done

S="python3 $HERE/summarize.py"
for mode in $MODES; do
  f="$OUT/ws-$mode.tsv"; [ -f "$f" ] || continue
  echo; echo "## $mode"
  case $mode in
    echo|connect) $S "$f" --key name,mode --metrics rate,p50_ms,p99_ms,server_cpu_pct,client_cpu_pct,foreign_cpu_pct;;
    idle)         $S "$f" --key name,mode --metrics rss_before_kb,rss_after_kb,per_conn_kb,rate,idle_conns;;
  esac
done
