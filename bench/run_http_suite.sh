#!/usr/bin/env bash
# run_http_suite.sh - run http_bench.sh over the peer servers, REPS times each
# (round-robin, so slow drift in machine noise spreads over all peers), then
# print medians/min/max via summarize.py.
#
# usage: run_http_suite.sh OUTDIR [REPS] [PEER...]
#   env: VENV (default BENCH_HOME/venv), DUR (10), WARM (2), CONNS (50),
#        QUIET_PCT (25), QUIET_WAIT (30): see http_bench.sh --quiet-*
#        CLOSE_PEERS (peers also run with 'Connection: close'; default
#        "daphne uvicorn-httptools-uvloop uvicorn-h11-asyncio raw-asyncio raw-twisted-epoll")
#   PEER names: see peer_cmd below; default = all. A server command of your own:
#        NAME:'cmd with {port}' (e.g. another checkout's gateway, for a before/after comparison)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: $0 OUTDIR [REPS] [PEER...]}; shift
REPS=${1:-3}; [ $# -gt 0 ] && shift
VENV=${VENV:-${BENCH_HOME:-$HOME/.cache/gateway-bench}/venv}
DUR=${DUR:-10}; WARM=${WARM:-2}; CONNS=${CONNS:-50}
QUIET_PCT=${QUIET_PCT:-25}; QUIET_WAIT=${QUIET_WAIT:-30}
CLOSE_PEERS=${CLOSE_PEERS-"gateway daphne uvicorn-httptools-uvloop uvicorn-h11-asyncio raw-asyncio raw-twisted-epoll"}
export PATH="$VENV/bin:$PATH" PYTHONPATH="$HERE/apps${PYTHONPATH:+:$PYTHONPATH}"
APP=asgi_apps:hello
PY="$VENV/bin/python"
# Our gateway: the checkout's own virtualenv (make install), configured by bench/conf/hello.yaml.
GATEWAY_BIN=${GATEWAY_BIN:-$HERE/../.venv/bin/gateway}

peer_cmd() {
  case "$1" in
    gateway)                  echo env GATEWAY_BENCH_PORT={port} GATEWAY_BENCH_LOOP=uvloop $GATEWAY_BIN run -c $HERE/conf/hello.yaml;;
    gateway-asyncio)          echo env GATEWAY_BENCH_PORT={port} GATEWAY_BENCH_LOOP=asyncio $GATEWAY_BIN run -c $HERE/conf/hello.yaml;;
    daphne)                   echo daphne -v 0 -b 127.0.0.1 -p {port} $APP;;
    uvicorn-httptools-uvloop) echo uvicorn $APP --host 127.0.0.1 --port {port} --http httptools --loop uvloop --no-access-log --log-level warning;;
    uvicorn-h11-asyncio)      echo uvicorn $APP --host 127.0.0.1 --port {port} --http h11 --loop asyncio --no-access-log --log-level warning;;
    hypercorn)                echo hypercorn -w 0 -b 127.0.0.1:{port} $APP;;
    granian)                  echo granian --interface asgi --workers 1 --host 127.0.0.1 --port {port} --log-level warning $APP;;
    granian-asyncio)          echo granian --interface asgi --workers 1 --loop asyncio --host 127.0.0.1 --port {port} --log-level warning $APP;;
    raw-asyncio)              echo $PY $HERE/apps/raw_asyncio_http.py {port};;
    raw-asyncio-uvloop)       echo $PY $HERE/apps/raw_asyncio_http.py {port} --uvloop;;
    raw-twisted-epoll)        echo $PY $HERE/apps/raw_twisted_http.py {port} --reactor epoll;;
    raw-twisted-asyncio)      echo $PY $HERE/apps/raw_twisted_http.py {port} --reactor asyncio;;
    raw-twisted-asyncio-uvloop) echo $PY $HERE/apps/raw_twisted_http.py {port} --reactor asyncio-uvloop;;
    *:*)                      echo "${1#*:}";;
    *) echo "unknown peer $1" >&2; return 1;;
  esac
}

if [ $# -gt 0 ]; then PEERS=("$@"); else
  PEERS=(gateway gateway-asyncio daphne uvicorn-httptools-uvloop uvicorn-h11-asyncio hypercorn granian
         raw-asyncio raw-asyncio-uvloop raw-twisted-epoll raw-twisted-asyncio
         raw-twisted-asyncio-uvloop); fi

mkdir -p "$OUT"
TSV="$OUT/http.tsv"
for rep in $(seq "$REPS"); do
  for p in "${PEERS[@]}"; do
    read -r -a CMD <<<"$(peer_cmd "$p")" || exit 1
    "$HERE/http_bench.sh" -n "${p%%:*}" --quiet-pct "$QUIET_PCT" --quiet-wait "$QUIET_WAIT" -c "$CONNS" -d "$DUR" -w "$WARM" --tsv "$TSV" \
        --logdir "$OUT/logs" -- "${CMD[@]}"
    sleep 1
  done
  for p in "${PEERS[@]}"; do
    case " $CLOSE_PEERS " in *" $p "*) ;; *) continue;; esac
    read -r -a CMD <<<"$(peer_cmd "$p")" || exit 1
    "$HERE/http_bench.sh" -n "${p%%:*}" --close --quiet-pct "$QUIET_PCT" --quiet-wait "$QUIET_WAIT" -c "$CONNS" -d "$DUR" -w "$WARM" --tsv "$TSV" \
        --logdir "$OUT/logs" -- "${CMD[@]}"
    sleep 1
  done
done
python3 "$HERE/summarize.py" "$TSV" --key name,mode --metrics rps,p50_ms,p99_ms,server_cpu_pct,rps_per_server_core,foreign_cpu_pct
