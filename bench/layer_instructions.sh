#!/usr/bin/env bash
# layer_instructions.sh [N] - user-space instructions per message of the Redis layer's
# pipelined send+receive (bench/layer_p2p.py: sender, receiver and acknowledgements in one
# process, through a private redis-server), counted by valgrind's callgrind. Two runs (N and
# 4N messages) are subtracted, so start-up and imports cancel out. Unlike rates, the count does
# not move with the machine's other load: use it to check a hot-path change before and after.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
N=${1:-500}
PY=${PY:-$HERE/../.venv/bin/python}
OUT=$(mktemp -d)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  --logfile "$OUT/redis.log" </dev/null >/dev/null 2>&1 &
RPID=$!
trap 'kill $RPID 2>/dev/null; wait $RPID 2>/dev/null; rm -rf "$OUT"' EXIT
for _ in $(seq 50); do redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
count() {
  PYTHONPATH="$HERE/.." valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.$1" \
    "$PY" "$HERE/layer_p2p.py" "redis://127.0.0.1:$PORT/0" "$1" >"$OUT/run.$1.log" 2>&1
  awk '/^summary:/ {print $2}' "$OUT/cg.$1"
}
SMALL=$(count "$N")
BIG=$(count $((4 * N)))
echo "RESULT n=$N..$((4 * N)) instructions_per_message=$(( (BIG - SMALL) / (3 * N) ))"
