#!/usr/bin/env bash
# run_paho_interop.sh - the Eclipse Paho interoperability suite (github.com/eclipse/paho.mqtt.testing,
# interoperability/: client_test.py for MQTT 3.1.1, client_test5.py for 5.0) against the gateway's
# built-in broker and Mosquitto, each tuned the same way, in one run.
#
# Tuning (as one tunes Mosquitto for this suite): keep-alive capped at 60 s (the 5.0 keep-alive
# test asks for 0 and expects a Server Keep Alive) and subscriptions to test/nosubscribe refused
# (the subscribe-failure tests). The gateway: bench/conf/paho-interop.yaml; Mosquitto: a
# generated config and ACL file (max_keepalive 60; topic readwrite #; topic deny test/nosubscribe).
# Each suite gets a fresh broker (the suites leave retained messages and sessions behind).
#
# usage: run_paho_interop.sh OUTDIR [PEER...]      PEER: gateway mosquitto (default: both)
#   env: PAHO_TESTING  a checkout (or bare git directory) of paho.mqtt.testing; default: cloned
#                      from GitHub into BENCH_HOME/paho.mqtt.testing once (its code is not ours
#                      to commit: Eclipse Public License)
#        PAHO_REPO     https://github.com/eclipse/paho.mqtt.testing.git
#        PAHO_REF      a commit or branch to run (default: what the checkout has)
#        GATEWAY_BIN   ../.venv/bin/gateway; PYTHON (python3, runs the suites: stdlib only)
# Results: OUTDIR/paho.tsv (peer, suite, tests, passed, failing tests) and a Markdown table.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: $0 OUTDIR [PEER...]}; shift
PEERS=${*:-gateway mosquitto}
BENCH_HOME=${BENCH_HOME:-$HOME/.cache/gateway-bench}
GATEWAY_BIN=${GATEWAY_BIN:-$HERE/../.venv/bin/gateway}
PYTHON=${PYTHON:-python3}
PAHO_REPO=${PAHO_REPO:-https://github.com/eclipse/paho.mqtt.testing.git}
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)

# -- the suite: a work tree to run from ------------------------------------------------------
SRC=${PAHO_TESTING:-$BENCH_HOME/paho.mqtt.testing}
if [ ! -e "$SRC" ]; then
  git clone --quiet "$PAHO_REPO" "$SRC" || { echo "cannot clone $PAHO_REPO" >&2; exit 1; }
fi
TREE=$OUT/paho.mqtt.testing
rm -rf "$TREE"
if [ -d "$SRC/interoperability" ] && [ -z "${PAHO_REF:-}" ]; then
  cp -r "$SRC" "$TREE"                        # a plain checkout
else
  git clone --quiet "$SRC" "$TREE" || exit 1  # a bare git directory (or a ref to pick)
  [ -n "${PAHO_REF:-}" ] && git -C "$TREE" checkout --quiet "$PAHO_REF"
fi
SUITE=$TREE/interoperability
COMMIT=$(git -C "$TREE" rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "paho.mqtt.testing $COMMIT ($SRC)"

free_port() { "$PYTHON" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

SPID=""
stop_server() {
  [ -n "$SPID" ] || return 0
  if kill -0 "$SPID" 2>/dev/null; then
    kill -TERM -- "-$SPID" 2>/dev/null || kill -TERM "$SPID" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
  fi
  kill -KILL -- "-$SPID" 2>/dev/null
  wait "$SPID" 2>/dev/null
  SPID=""
}
trap stop_server EXIT INT TERM

start_server() { # peer log -> sets SPID, PORT; returns 1 if it does not listen
  local peer=$1 log=$2
  PORT=$(free_port)
  case $peer in
    gateway)
      GATEWAY_BENCH_PORT=$PORT PYTHONPATH="$HERE/apps${PYTHONPATH:+:$PYTHONPATH}" \
        setsid "$GATEWAY_BIN" run -c "$HERE/conf/paho-interop.yaml" >"$log" 2>&1 &
      ;;
    mosquitto)
      printf 'topic readwrite #\ntopic deny test/nosubscribe\n' >"$OUT/mosquitto.acl"
      printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_keepalive 60\nacl_file %s\n' \
        "$PORT" "$OUT/mosquitto.acl" >"$OUT/mosquitto.conf"
      setsid mosquitto -c "$OUT/mosquitto.conf" >"$log" 2>&1 &
      ;;
    *) echo "unknown peer $peer" >&2; return 1;;
  esac
  SPID=$!
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.1
  done
  return 1
}

printf 'peer\tsuite\ttests\tpassed\tfailing\n' >"$OUT/paho.tsv"
for peer in $PEERS; do
  for suite in 3.1.1 5.0; do
    log=$OUT/logs/$peer-$suite
    if ! start_server "$peer" "$log.server.log"; then
      echo "$peer did not start (see $log.server.log)" >&2; stop_server; continue
    fi
    echo "== $peer $suite (port $PORT)"
    (cd "$SUITE" && timeout 1200 "$PYTHON" "$HERE/paho_interop.py" "$SUITE" 127.0.0.1 "$PORT" "$suite") \
      >"$log.out" 2>"$log.err"
    line=$(grep '^RESULT' "$log.out" | tail -1)
    stop_server
    if [ -z "$line" ]; then
      echo "$peer $suite: no result (see $log.err)" >&2
      printf '%s\t%s\t-\t-\tsuite did not finish\n' "$peer" "$suite" >>"$OUT/paho.tsv"
      continue
    fi
    echo "$line"
    run=${line#*run=}; run=${run%% *}; passed=${line#*passed=}; passed=${passed%% *}; failed=${line#*failed=}
    printf '%s\t%s\t%s\t%s\t%s\n' "$peer" "$suite" "$run" "$passed" "$failed" >>"$OUT/paho.tsv"
  done
done

echo
echo "| broker | 3.1.1 | 5.0 | total | failing |"
echo "|---|---|---|---|---|"
awk -F'\t' 'NR > 1 {
  key = $1; if (!(key in seen)) { order[++n] = key; seen[key] = 1 }
  cell[key, $2] = $4 "/" $3; pass[key] += $4; total[key] += $3
  if ($5 != "-") fail[key] = fail[key] (fail[key] ? ", " : "") $2 ": " $5
}
END { for (i = 1; i <= n; i++) { k = order[i]
  printf "| %s | %s | %s | **%d/%d** | %s |\n", k, cell[k, "3.1.1"], cell[k, "5.0"], pass[k], total[k], (fail[k] ? fail[k] : "-") } }' "$OUT/paho.tsv"
