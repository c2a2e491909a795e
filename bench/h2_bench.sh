#!/usr/bin/env bash
# h2_bench.sh - HTTP/2 side by side: h2load (10 connections x 10 concurrent streams) against the
# gateway, Hypercorn and Daphne over TLS (h2 by ALPN), plus cleartext h2c (prior knowledge) for the
# gateway and Hypercorn (Daphne has no h2c), in one run; then the resident memory per open HTTP/2
# connection of each (bench/h2conns.py: N connections, one request each, kept open).
#
# usage: bench/h2_bench.sh [REQUESTS] [CONNS_FOR_MEMORY]     (default 100000, 500)
#   env: BENCH_HOME / VENV (the peers, bench/setup_peers.sh), TARGETS (default: all of
#        "gateway-tls hypercorn-tls daphne-tls gateway-h2c hypercorn-h2c"), WARM (warm-up
#        requests, default 5000), SERVER_CPU / CLIENT_CPU (taskset lists, default 0 / 1),
#        REPS (rounds over all targets, default 1: on a machine other work shares, several short
#        rounds interleave the targets with the load; memory is measured in the first round only)
# Output: one RESULT line per target and round (rps and mean request time are h2load's;
# cpu_ms_per_1000: the server's CPU time, user + system of all its processes, per 1000 requests,
# which the machine's other load moves much less than the rate), one MEMORY line per target, the
# ratios of each round (RATIO: requests/s; CPURATIO: the peer's CPU time per request over the
# gateway's), then (REPS > 1) the median requests/s of each target and the
# ratios of the medians. Needs h2load (Debian's nghttp2-client). The goal: gateway >= 3x Hypercorn and
# >= 5x Daphne in requests per second.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REQUESTS=${1:-100000}; MEMCONNS=${2:-500}
BENCH_HOME=${BENCH_HOME:-$HOME/.cache/gateway-bench}
VENV=${VENV:-$BENCH_HOME/venv}
TARGETS=${TARGETS:-gateway-tls hypercorn-tls daphne-tls gateway-h2c hypercorn-h2c}
WARM=${WARM:-5000}
SCPU=${SERVER_CPU:-0}; CCPU=${CLIENT_CPU:-1}
GW_PY="$HERE/../.venv/bin/python"
command -v h2load >/dev/null || { echo "h2load not found (apt-get install nghttp2-client)" >&2; exit 2; }
[ -x "$VENV/bin/hypercorn" ] && [ -x "$VENV/bin/daphne" ] || { echo "peers missing: run bench/setup_peers.sh" >&2; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# A throwaway certificate (trustme, from the gateway's test dependencies).
"$GW_PY" - "$TMP" <<'PY'
import sys, trustme
ca = trustme.CA()
cert = ca.issue_cert("localhost", "127.0.0.1")
cert.private_key_pem.write_to_path(sys.argv[1] + "/key.pem")
cert.cert_chain_pems[0].write_to_path(sys.argv[1] + "/cert.pem")
PY
KEY=$TMP/key.pem; CERT=$TMP/cert.pem
# Hypercorn closes a connection after 1000 requests by default (keep_alive_max_requests), which
# h2load does not survive; the others have no such limit.
printf 'keep_alive_max_requests = 100000000\n' >"$TMP/hypercorn.toml"
# CPU time (clock ticks, user + system) of every process in a session.
cputicks() { local t=0 pid; for pid in $(pgrep -s "$1"); do t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0))); done; echo "$t"; }
HZ=$(getconf CLK_TCK)
pin() { if [ -n "$1" ] && command -v taskset >/dev/null; then echo "taskset -c $1"; fi; }

REPS=${REPS:-1}
declare -A RPS ALL CPU ALLCPU
ratio() {
  awk -v a="${RPS[$1]:-0}" -v b="${RPS[$2]:-0}" -v n="$1/$2" -v p="$3" 'BEGIN { if (b > 0) printf "%sRATIO %s=%.2f\n", p, n, a / b }'
  awk -v a="${CPU[$1]:-0}" -v b="${CPU[$2]:-0}" -v n="$1/$2" -v p="$3" 'BEGIN { if (a > 0 && b > 0) printf "%sCPURATIO %s=%.2f\n", p, n, b / a }'
}
median() { printf '%s\n' $1 | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
for round in $(seq "$REPS"); do
for target in $TARGETS; do
  PORT=$("$GW_PY" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  scheme=https; tls=tls
  case $target in
    gateway-tls) CMD=(env GATEWAY_BENCH_ENDPOINT="ssl:$PORT:interface=127.0.0.1:privateKey=$KEY:certKey=$CERT"
                      PYTHONPATH="$HERE/apps" "$GW_PY" -m gateway run -c "$HERE/conf/hello_h2.yaml");;
    gateway-h2c) CMD=(env GATEWAY_BENCH_ENDPOINT="tcp:$PORT:interface=127.0.0.1:backlog=4096"
                      PYTHONPATH="$HERE/apps" "$GW_PY" -m gateway run -c "$HERE/conf/hello_h2.yaml"); scheme=http; tls="";;
    hypercorn-tls) CMD=(env PYTHONPATH="$HERE/apps" "$VENV/bin/hypercorn" -c "$TMP/hypercorn.toml" --bind "127.0.0.1:$PORT" --certfile "$CERT"
                        --keyfile "$KEY" --worker-class uvloop --log-level warning asgi_apps:hello);;
    hypercorn-h2c) CMD=(env PYTHONPATH="$HERE/apps" "$VENV/bin/hypercorn" -c "$TMP/hypercorn.toml" --bind "127.0.0.1:$PORT" --worker-class uvloop
                        --log-level warning asgi_apps:hello); scheme=http; tls="";;
    daphne-tls) CMD=(env PYTHONPATH="$HERE/apps" "$VENV/bin/daphne" -v 0
                     -e "ssl:$PORT:interface=127.0.0.1:privateKey=$KEY:certKey=$CERT" asgi_apps:hello);;
    *) echo "unknown target $target" >&2; exit 2;;
  esac
  setsid $(pin "$SCPU") "${CMD[@]}" >"$TMP/$target.log" 2>&1 &
  SPID=$!
  URL="$scheme://127.0.0.1:$PORT/"
  ready=""
  for _ in $(seq 300); do
    if curl -sk --http2-prior-knowledge -o /dev/null --max-time 1 "$URL" 2>/dev/null || curl -sk -o /dev/null --max-time 1 "$URL" 2>/dev/null; then ready=1; break; fi
    sleep 0.1
  done
  if [ -z "$ready" ]; then echo "RESULT name=$target error=not-ready"; cat "$TMP/$target.log" >&2; kill -TERM -- -"$SPID" 2>/dev/null; continue; fi
  # Memory first, on a server that has served one request: after the load the allocator keeps
  # freed memory, which new connections would reuse unseen.
  MEM=""
  [ "$round" = 1 ] && MEM=$("$GW_PY" "$HERE/h2conns.py" "$PORT" "$MEMCONNS" "$SPID" $tls 2>&1 | tail -1)
  $(pin "$CCPU") h2load -n "$WARM" -c 10 -m 10 "$URL" >/dev/null 2>&1
  t0=$(cputicks "$SPID")
  $(pin "$CCPU") h2load -n "$REQUESTS" -c 10 -m 10 "$URL" >"$TMP/$target.h2load" 2>&1
  t1=$(cputicks "$SPID")
  cpu=$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$REQUESTS" 'BEGIN { printf "%.1f", t * 1000000 / hz / n }')
  CPU[$target]=$cpu
  ALLCPU[$target]="${ALLCPU[$target]:-} $cpu"
  rps=$(awk '/^finished in/ {gsub(",", "", $4); print $4}' "$TMP/$target.h2load")
  ok=$(awk '/^requests:/ {print $8}' "$TMP/$target.h2load")
  proto=$(awk '/^Application protocol:/ {print $3}' "$TMP/$target.h2load")
  p50=$(awk '/^time for request:/ {print $5}' "$TMP/$target.h2load")
  RPS[$target]=${rps:-0}
  ALL[$target]="${ALL[$target]:-} ${rps:-0}"
  echo "RESULT name=$target round=$round protocol=${proto:-?} rps=${rps:-0} succeeded=${ok:-0}/$REQUESTS mean_request_time=${p50:-?} cpu_ms_per_1000=$cpu"
  [ -n "$MEM" ] && echo "MEMORY name=$target $MEM"
  kill -TERM -- -"$SPID" 2>/dev/null; sleep 0.5; kill -KILL -- -"$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null
done
ratio gateway-tls hypercorn-tls "round=$round "
ratio gateway-tls daphne-tls "round=$round "
ratio gateway-h2c hypercorn-h2c "round=$round "
done
if [ "$REPS" -gt 1 ]; then
  for target in $TARGETS; do
    RPS[$target]=$(median "${ALL[$target]}")
    CPU[$target]=$(median "${ALLCPU[$target]}")
    echo "MEDIAN name=$target rps=${RPS[$target]} cpu_ms_per_1000=${CPU[$target]} rounds=${ALL[$target]# }"
  done
  ratio gateway-tls hypercorn-tls "median "
  ratio gateway-tls daphne-tls "median "
  ratio gateway-h2c hypercorn-h2c "median "
fi
