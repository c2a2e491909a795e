#!/usr/bin/env bash
# run_channels_redis_suite.sh - channels_redis' own tests (tests/test_core.py, tests/test_sentinel.py
# of the 4.3.0 sdist) against the gateway's Redis layer, with only their imports changed, and
# against channels_redis itself for reference, in the same run.
#
# usage: run_channels_redis_suite.sh [OUTDIR] [pytest args...]
#
# The test files hard-code redis://localhost:6379 and a sentinel at localhost:26379 (master
# "sentinel", sentinel password "channels_redis"). So that they run exactly as written without
# touching a Redis the machine already runs on those ports, everything (a redis-server on 6379,
# a redis-server --sentinel on 26379, pytest) runs in a private network namespace
# (unshare --net --map-root-user; Linux, needs user namespaces).
#
# The only edit to the test files is the import line:
#   from channels_redis.core import ChannelFull, RedisChannelLayer
# becomes
#   from gateway.exceptions import ChannelFull
#   from gateway.layers.redis import RedisChannelLayer
#
# env: BENCH_HOME (~/.cache/gateway-bench; the suite's venv lives in $BENCH_HOME/crsuite-venv),
#      REDIS_SERVER (redis-server), TARGETS ("gateway channels_redis"), REPEAT_DOUBLE_RECEIVE (25:
#      extra runs of test_double_receive against the gateway, each counted).
# Output: per target pytest's summary line and the tests that did not pass; logs in OUTDIR.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
OUT=${1:-$(mktemp -d /tmp/crsuite.XXXXXX)}; [ $# -gt 0 ] && shift
BENCH_HOME=${BENCH_HOME:-$HOME/.cache/gateway-bench}
VENV=$BENCH_HOME/crsuite-venv
REDIS_SERVER=${REDIS_SERVER:-redis-server}
TARGETS=${TARGETS:-gateway channels_redis}
REPEAT_DOUBLE_RECEIVE=${REPEAT_DOUBLE_RECEIVE:-25}
VERSION=4.3.0
mkdir -p "$OUT"

if [ "${_CRSUITE_INSIDE:-}" != 1 ]; then
  # -- outside the namespace: prepare the venv and the test files, then re-enter ----------------
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" || exit 1
    "$VENV/bin/pip" install -q --upgrade pip
  fi
  "$VENV/bin/pip" install -q -e "$REPO" "channels_redis==$VERSION" pytest pytest-asyncio async-timeout \
    pytest-timeout cryptography || exit 1
  SRC=$BENCH_HOME/channels_redis-$VERSION
  if [ ! -d "$SRC/tests" ]; then
    (cd "$BENCH_HOME" && "$VENV/bin/pip" download -q --no-deps --no-binary :all: "channels_redis==$VERSION" \
      && tar xzf "channels_redis-$VERSION.tar.gz") || exit 1
  fi
  for target in $TARGETS; do
    dir=$OUT/$target
    rm -rf "$dir"; mkdir -p "$dir/tests"
    cp "$SRC/setup.cfg" "$dir/"                 # their pytest settings: asyncio_mode=auto, timeout=10
    : > "$dir/tests/__init__.py"
    for f in test_core.py test_sentinel.py; do
      if [ "$target" = gateway ]; then
        sed 's/^from channels_redis.core import ChannelFull, RedisChannelLayer$/from gateway.exceptions import ChannelFull\nfrom gateway.layers.redis import RedisChannelLayer/' \
          "$SRC/tests/$f" > "$dir/tests/$f"
        grep -q '^from gateway.layers.redis import RedisChannelLayer$' "$dir/tests/$f" \
          || { echo "the import line of $f changed upstream" >&2; exit 1; }
      else
        cp "$SRC/tests/$f" "$dir/tests/$f"
      fi
    done
  done
  exec env _CRSUITE_INSIDE=1 unshare --net --map-root-user "$0" "$OUT" "$@"
fi

# -- inside the private network namespace ------------------------------------------------------
ip link set lo up 2>/dev/null || python3 - <<'PY'
import fcntl, socket, struct
s = socket.socket(); ifr = struct.pack("16sH", b"lo", 0)
flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, ifr))[1]
fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"lo", flags | 1))
PY
WORK=$OUT/servers; mkdir -p "$WORK"
"$REDIS_SERVER" --port 6379 --bind 127.0.0.1 ::1 --save '' --appendonly no --dir "$WORK" \
  --logfile "$WORK/redis.log" --daemonize no </dev/null >/dev/null 2>&1 &
RPID=$!
cat > "$WORK/sentinel.conf" <<EOF
port 26379
bind 127.0.0.1 ::1
requirepass channels_redis
sentinel monitor sentinel 127.0.0.1 6379 1
EOF
"$REDIS_SERVER" "$WORK/sentinel.conf" --sentinel --dir "$WORK" --logfile "$WORK/sentinel.log" \
  </dev/null >/dev/null 2>&1 &
SPID=$!
trap 'kill $RPID $SPID 2>/dev/null; wait $RPID $SPID 2>/dev/null' EXIT
for _ in $(seq 100); do
  redis-cli -p 6379 ping 2>/dev/null | grep -q PONG && redis-cli -p 26379 -a channels_redis --no-auth-warning \
    sentinel get-master-addr-by-name sentinel 2>/dev/null | grep -q 6379 && break
  sleep 0.1
done

for target in $TARGETS; do
  dir=$OUT/$target
  (cd "$dir" && timeout 900 "$VENV/bin/python" -m pytest -q -rfEX -p no:cacheprovider \
    tests/test_core.py tests/test_sentinel.py "$@" > "$dir/pytest.log" 2>&1)
  echo "$target: $(tail -n 1 "$dir/pytest.log" | sed 's/^=* *//; s/ *=*$//')"
  grep -E '^(FAILED|ERROR|XPASS) ' "$dir/pytest.log" | sed "s/^/  /"
  if [ "$REPEAT_DOUBLE_RECEIVE" -gt 0 ]; then
    ok=0
    for i in $(seq "$REPEAT_DOUBLE_RECEIVE"); do
      (cd "$dir" && timeout 60 "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
        "tests/test_core.py::test_double_receive" > "$dir/double_receive.$i.log" 2>&1) && ok=$((ok + 1))
    done
    echo "$target: test_double_receive passed $ok of $REPEAT_DOUBLE_RECEIVE runs"
  fi
done
echo "logs: $OUT"
