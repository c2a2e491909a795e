#!/usr/bin/env bash
# run.sh - what `make bench` runs: every side-by-side suite, one after another (never
# concurrently: they would disturb each other), into one results directory.
#
# usage: bench/run.sh [OUTDIR] [REPS]          (default: bench/results/<UTC date-time>, 3)
#        bench/run.sh --dry-run [OUTDIR] [REPS]  (check the prerequisites, print the commands)
#   env: SUITES ("http ws layer mqtt connector smtp": the suites to run), and every suite's own variables
#        (BENCH_HOME, VENV, QUIET_WAIT, ...; see bench/README.md)
#
# The peers (Daphne, Uvicorn, Mosquitto, amqtt, mqttasgi, aiosmtpd, channels_redis, wrk, node's ws) come
# from bench/setup_peers.sh; without them this script says so and exits 2. About 50 minutes for
# everything at REPS=3: run it on a quiet machine.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
OUT=${1:-$HERE/results/$(date -u +%Y%m%dT%H%M%SZ)}; REPS=${2:-3}
SUITES=${SUITES:-http ws layer mqtt connector smtp}
BENCH_HOME=${BENCH_HOME:-$HOME/.cache/gateway-bench}
VENV=${VENV:-$BENCH_HOME/venv}

missing=""
[ -x "$HERE/../.venv/bin/gateway" ] || missing="$missing gateway(make install)"
[ -x "$VENV/bin/python" ] || missing="$missing $VENV(bench/setup_peers.sh)"
for suite in $SUITES; do
  case $suite in
    http) need="wrk";;
    ws) need="node";;
    layer) need="redis-server";;
    mqtt) need="node mosquitto";;
    connector) need="mosquitto mosquitto_pub mosquitto_sub";;
    smtp) need="smtp-source";;
    *) echo "run.sh: unknown suite '$suite' (http ws layer mqtt connector smtp)" >&2; exit 2;;
  esac
  for cmd in $need; do
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing="$missing $cmd"
  done
  [ -x "$HERE/run_${suite}_suite.sh" ] || missing="$missing bench/run_${suite}_suite.sh"
done
if [ -n "$missing" ]; then
  echo "run.sh: missing:$missing; run bench/setup_peers.sh first (see bench/README.md)" >&2
  exit 2
fi

run() {
  echo "+ $*"
  [ "$DRY" = 1 ] || "$@"
}

if [ "$DRY" = 0 ]; then
  mkdir -p "$OUT"
  {
    echo "date: $(date -u +%FT%TZ)"; echo "kernel: $(uname -r)"
    echo "cpus: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
    echo "python: $("$VENV/bin/python" -V 2>&1)"; echo "gateway: $("$HERE/../.venv/bin/gateway" --version)"
    echo "suites: $SUITES; repetitions: $REPS"
  } > "$OUT/versions.txt"
  cat "$OUT/versions.txt"
fi
status=0
for suite in $SUITES; do
  if [ "$DRY" = 1 ]; then
    run "$HERE/run_${suite}_suite.sh" "$OUT/$suite" "$REPS"
  else
    run "$HERE/run_${suite}_suite.sh" "$OUT/$suite" "$REPS" > "$OUT/$suite.out" 2>&1 || {
      echo "run.sh: the $suite suite failed; see $OUT/$suite.out" >&2; status=1; }
    tail -n 30 "$OUT/$suite.out"
  fi
done
[ "$DRY" = 1 ] || echo "results in $OUT"
exit $status
