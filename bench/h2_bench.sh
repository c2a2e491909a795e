#!/usr/bin/env bash
# h2_bench.sh - HTTP/2 side by side: h2load (10 connections x 10 concurrent streams) against the
# gateway, Hypercorn and Daphne over TLS (h2 by ALPN), plus cleartext h2c (prior knowledge) for the
# gateway and Hypercorn (Daphne has no h2c), in one run; then the resident memory per open HTTP/2
# connection of each (bench/h2conns.py: N connections, one request each, kept open).
#
# usage: bench/h2_bench.sh [REQUESTS] [CONNS_FOR_MEMORY]     (default 100000, 500)
#   env: BENCH_HOME / VENV (the peers, bench/setup_peers.sh), TARGETS (default: all of
#        "gateway-tls hypercorn-tls daphne-tls gateway-h2c hypercorn-h2c"), WARM (warm-up
#        requests, default 5000), SERVER_CPU / CLIENT_CPU (taskset lists, default 0 / 1)
# Output: one RESULT line per target (rps, p50/p99 are h2load's), one MEMORY line per target,
# then the ratios. Needs h2load (Debian's nghttp2-client). The goal: gateway >= 3x Hypercorn and
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
pin() { if [ -n "$1" ] && command -v taskset >/dev/null; then echo "taskset -c $1"; fi; }

declare -A RPS
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
  MEM=$("$GW_PY" "$HERE/h2conns.py" "$PORT" "$MEMCONNS" "$SPID" $tls 2>&1 | tail -1)
  $(pin "$CCPU") h2load -n "$WARM" -c 10 -m 10 "$URL" >/dev/null 2>&1
  $(pin "$CCPU") h2load -n "$REQUESTS" -c 10 -m 10 "$URL" >"$TMP/$target.h2load" 2>&1
  rps=$(awk '/^finished in/ {gsub(",", "", $4); print $4}' "$TMP/$target.h2load")
  ok=$(awk '/^requests:/ {print $8}' "$TMP/$target.h2load")
  proto=$(awk '/^Application protocol:/ {print $3}' "$TMP/$target.h2load")
  p50=$(awk '/^time for request:/ {print $5}' "$TMP/$target.h2load")
  RPS[$target]=${rps:-0}
  echo "RESULT name=$target protocol=${proto:-?} rps=${rps:-0} succeeded=${ok:-0}/$REQUESTS mean_request_time=${p50:-?}"
  echo "MEMORY name=$target $MEM"
  kill -TERM -- -"$SPID" 2>/dev/null; sleep 0.5; kill -KILL -- -"$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null
done
ratio() { awk -v a="${RPS[$1]:-0}" -v b="${RPS[$2]:-0}" -v n="$1/$2" 'BEGIN { if (b > 0) printf "RATIO %s=%.2f\n", n, a / b }'; }
ratio gateway-tls hypercorn-tls
ratio gateway-tls daphne-tls
ratio gateway-h2c hypercorn-h2c
