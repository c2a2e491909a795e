#!/usr/bin/env bash
# instructions.sh PEER MODE [N] - user-space instructions per HTTP request, WebSocket handshake or
# echo round trip, SMTP message or SMS webhook of one server, counted by valgrind's callgrind:
# unlike rates, this does not move with the machine's other load (a few tenths of a percent
# between runs). Needs valgrind.
#   PEER: gateway | daphne | uvicorn-wsproto      MODE: get | post | conn | hs | echo | smtp | sms
# smtp and sms run the gateway with bench/conf/mail.yaml (a router and an accepting consumer:
# asgi_apps:mail): smtp is one smtplib session sending N 2 KB messages, sms N signed generic
# webhooks on one keep-alive connection.
# The server runs under callgrind (about 50x slower); after 30 warm-up operations the counters
# are zeroed, N operations run (bench/rawclient.py, sequential), and the counters are dumped.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
PEER=${1:?usage: $0 PEER get|post|conn|hs|echo|smtp|sms [N]}; MODE=${2:?}; N=${3:-300}
VENV=${VENV:-${BENCH_HOME:-$HOME/.cache/gateway-bench}/venv}
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
SMS_PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
OUT=$(mktemp -d)
CONF=hello.yaml; APP=asgi_apps:echo; TARGET=$PORT
case $MODE in
  smtp) CONF=mail.yaml; APP=asgi_apps:mail;;
  sms) CONF=mail.yaml; APP=asgi_apps:mail; TARGET=$SMS_PORT;;
esac
case $PEER in
  gateway) CMD=("$HERE/../.venv/bin/python" -m gateway run -c "$HERE/conf/$CONF");;
  daphne) CMD=("$VENV/bin/python" "$VENV/bin/daphne" -v 0 -b 127.0.0.1 -p "$PORT" asgi_apps:echo);;
  uvicorn-wsproto) CMD=("$VENV/bin/python" "$VENV/bin/uvicorn" asgi_apps:echo --host 127.0.0.1 --port "$PORT"
                        --http httptools --loop uvloop --ws wsproto --no-access-log --log-level warning);;
  *) echo "unknown peer $PEER" >&2; exit 2;;
esac
cd "$HERE/.." || exit 1
env GATEWAY_BENCH_PORT="$PORT" GATEWAY_BENCH_SMS_PORT="$SMS_PORT" GATEWAY_BENCH_APP="$APP" PYTHONPATH="$HERE/apps" \
  valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" "${CMD[@]}" >"$OUT/server.log" 2>&1 &
VPID=$!
for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$TARGET") 2>/dev/null && break; sleep 0.5; done
python3 "$HERE/rawclient.py" "$TARGET" 30 "$MODE"
callgrind_control -z "$VPID" >/dev/null
python3 "$HERE/rawclient.py" "$TARGET" "$N" "$MODE"
callgrind_control -d "$VPID" >/dev/null
sleep 2
kill -TERM "$VPID"; wait "$VPID" 2>/dev/null
TOTAL=$(awk '/^summary:/ {print $2}' "$OUT/cg.out.1")
echo "RESULT name=$PEER mode=$MODE n=$N instructions_per_op=$((TOTAL / N))"
[ -n "${KEEP:-}" ] && echo "kept $OUT" || rm -rf "$OUT"
