#!/usr/bin/env bash
# layer_instructions.sh [N] - user-space instructions per message of the Redis layer's
# pipelined send+receive (bench/layer_p2p.py: sender, receiver and acknowledgements in one
# process, through a private redis-server), counted by valgrind's callgrind. Two runs (N and
# 4N messages) are subtracted, so start-up and imports cancel out. Unlike rates, the count does
# not move with the machine's other load: use it to check a hot-path change before and after.
#   SEND_WINDOW=N: the layer's send_window (default 0: every send waits for its reply).
#   GROUP=1: count instructions per group_send to 1 000 channels of the process instead
#   (bench/layer_group.py, every member received; N defaults to 20 sends); GROUP=memory: the same
#   on the in-memory layer (the floor: waking 1 000 receiver tasks).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
GROUP=${GROUP:-}
if [ -n "$GROUP" ]; then N=${1:-20}; else N=${1:-500}; fi
PY=${PY:-$HERE/../.venv/bin/python}
OUT=$(mktemp -d)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  --logfile "$OUT/redis.log" </dev/null >/dev/null 2>&1 &
RPID=$!
trap 'kill $RPID 2>/dev/null; wait $RPID 2>/dev/null; rm -rf "$OUT"' EXIT
for _ in $(seq 50); do redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
count() {
  local script=("$HERE/layer_p2p.py" "redis://127.0.0.1:$PORT/0" "$1")
  case "$GROUP" in
    memory) script=("$HERE/layer_group.py" "redis://127.0.0.1:$PORT/0" "$1" 1000 --layer memory) ;;
    ?*) script=("$HERE/layer_group.py" "redis://127.0.0.1:$PORT/0" "$1" 1000) ;;
  esac
  PYTHONPATH="$HERE/.." valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.$1" \
    "$PY" "${script[@]}" >"$OUT/run.$1.log" 2>&1
  awk '/^summary:/ {print $2}' "$OUT/cg.$1"
}
SMALL=$(count "$N")
BIG=$(count $((4 * N)))
unit=message; [ -n "$GROUP" ] && unit=group_send
echo "RESULT n=$N..$((4 * N)) instructions_per_$unit=$(( (BIG - SMALL) / (3 * N) ))"
