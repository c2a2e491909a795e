#!/usr/bin/env bash
# instructions.sh PEER MODE [N] - user-space instructions per HTTP request, WebSocket handshake or
# echo round trip, SMTP message, SMS webhook or MQTT publish of one server, counted by valgrind's
# callgrind: unlike rates, this does not move with the machine's other load (a few tenths of a
# percent between runs). Needs valgrind.
#   PEER: gateway | daphne | uvicorn-wsproto
#   MODE: get | post | conn | hs | echo | smtp | sms | mqtt-qos0 | mqtt-qos1 | mqtt-app-qos0 | mqtt-app-qos1
#         | h2c | h2
# h2c and h2 (gateway only): HTTP/2 GET / of asgi_apps:hello (bench/conf/hello_h2.yaml), cleartext by
# prior knowledge or over TLS (h2 by ALPN), driven by h2load on one connection with 10 concurrent
# streams (the shape of bench/h2_bench.sh): after a warm-up, one h2load run of N requests and one of
# 4N are counted apart, and the difference per request is reported (connection set-up, and TLS's
# handshake, cancel out).
# smtp and sms run the gateway with bench/conf/mail.yaml (a router and an accepting consumer:
# asgi_apps:mail): smtp is one smtplib session sending N 2 KB messages, sms N signed generic
# webhooks on one keep-alive connection.
# The server runs under callgrind (about 50x slower); after 30 warm-up operations the counters
# are zeroed, N operations run (bench/rawclient.py, sequential), and the counters are dumped.
# MQTT modes (gateway only): 1 publisher -> 1 subscriber of one topic, MQTT 3.1.1, 32-byte
# payloads; mqtt-qos* through the built-in broker alone (conf/mqtt.yaml), mqtt-app-qos* through
# an application (conf/mqtt-app.yaml: the generic AsyncMqttConsumer on every connection, which
# forwards each publish into the broker).
# GATEWAY_SRC=DIR measures another checkout of the gateway with this one's venv (before/after).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
PEER=${1:?usage: $0 PEER get|post|conn|hs|echo|smtp|sms|mqtt-qos0|mqtt-qos1|mqtt-app-qos0|mqtt-app-qos1 [N]}; MODE=${2:?}; N=${3:-300}
SRC=$(cd "${GATEWAY_SRC:-$HERE/..}" && pwd)
VENV=${VENV:-${BENCH_HOME:-$HOME/.cache/gateway-bench}/venv}
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
SMS_PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
OUT=$(mktemp -d)
CONF=hello.yaml; APP=asgi_apps:echo; TARGET=$PORT
case $MODE in
  smtp) CONF=mail.yaml; APP=asgi_apps:mail;;
  sms) CONF=mail.yaml; APP=asgi_apps:mail; TARGET=$SMS_PORT;;
  mqtt-qos*) CONF=mqtt.yaml;;
  mqtt-app-qos*) CONF=mqtt-app.yaml;;
  h2c|h2) CONF=hello_h2.yaml; APP=asgi_apps:hello;;
esac
ENDPOINT=""
case $MODE in
  h2c) ENDPOINT="tcp:$PORT:interface=127.0.0.1"; URL="http://127.0.0.1:$PORT/";;
  h2) "$HERE/../.venv/bin/python" - "$OUT" <<'PY' || exit 1
import sys, trustme
ca = trustme.CA()
cert = ca.issue_cert("localhost", "127.0.0.1")
cert.private_key_pem.write_to_path(sys.argv[1] + "/key.pem")
cert.cert_chain_pems[0].write_to_path(sys.argv[1] + "/cert.pem")
PY
      ENDPOINT="ssl:$PORT:interface=127.0.0.1:privateKey=$OUT/key.pem:certKey=$OUT/cert.pem"; URL="https://127.0.0.1:$PORT/";;
esac
case $PEER in
  gateway) CMD=("$HERE/../.venv/bin/python" -m gateway run -c "$HERE/conf/$CONF");;
  daphne) CMD=("$VENV/bin/python" "$VENV/bin/daphne" -v 0 -b 127.0.0.1 -p "$PORT" asgi_apps:echo);;
  uvicorn-wsproto) CMD=("$VENV/bin/python" "$VENV/bin/uvicorn" asgi_apps:echo --host 127.0.0.1 --port "$PORT"
                        --http httptools --loop uvloop --ws wsproto --no-access-log --log-level warning);;
  *) echo "unknown peer $PEER" >&2; exit 2;;
esac
cd "$SRC" || exit 1
env GATEWAY_BENCH_PORT="$PORT" GATEWAY_BENCH_ENDPOINT="$ENDPOINT" GATEWAY_BENCH_SMS_PORT="$SMS_PORT" GATEWAY_BENCH_APP="$APP" PYTHONPATH="$HERE/apps" \
  valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" "${CMD[@]}" >"$OUT/server.log" 2>&1 &
VPID=$!
case $MODE in
  mqtt-*)
    # One client process: warm-up, zero, N publishes, dump, then the connections close.
    python3 "$HERE/rawclient.py" "$PORT" "$N" "mqtt-${MODE##*-}" 30 \
      "callgrind_control -z $VPID >/dev/null 2>&1" "callgrind_control -d $VPID >/dev/null 2>&1" || { cat "$OUT/server.log"; exit 1; }
    ;;
  h2c|h2)
    command -v h2load >/dev/null || { echo "h2load not found (apt-get install nghttp2-client)" >&2; kill -TERM "$VPID"; exit 2; }
    for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$TARGET") 2>/dev/null && break; sleep 0.5; done
    h2load -n 300 -c 1 -m 10 "$URL" >/dev/null 2>&1
    for n in "$N" $((4 * N)); do
      callgrind_control -z "$VPID" >/dev/null
      h2load -n "$n" -c 1 -m 10 "$URL" >"$OUT/h2load.$n" 2>&1
      grep -q "succeeded, 0 failed, 0 errored" "$OUT/h2load.$n" || { echo "h2load failed:" >&2; cat "$OUT/h2load.$n" >&2; }
      callgrind_control -d "$VPID" >/dev/null
    done
    ;;
  *)
    for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$TARGET") 2>/dev/null && break; sleep 0.5; done
    python3 "$HERE/rawclient.py" "$TARGET" 30 "$MODE"
    callgrind_control -z "$VPID" >/dev/null
    python3 "$HERE/rawclient.py" "$TARGET" "$N" "$MODE"
    callgrind_control -d "$VPID" >/dev/null
    ;;
esac
sleep 2
kill -TERM "$VPID"; wait "$VPID" 2>/dev/null
TOTAL=$(awk '/^summary:/ {print $2}' "$OUT/cg.out.1")
case $MODE in
  h2c|h2) TOTAL4=$(awk '/^summary:/ {print $2}' "$OUT/cg.out.2")
          echo "RESULT name=$PEER mode=$MODE n=$N instructions_per_op=$(((TOTAL4 - TOTAL) / (3 * N)))";;
  *) echo "RESULT name=$PEER mode=$MODE n=$N instructions_per_op=$((TOTAL / N))";;
esac
[ -n "${KEEP:-}" ] && echo "kept $OUT" || rm -rf "$OUT"
