#!/usr/bin/env bash
# run_connector_suite.sh OUTDIR [REPS] - the MQTT connector suite for bench/run.sh: messages/s
# drained from Mosquitto by a trivial consumer, the gateway's connector vs mqttasgi (from
# BENCH_HOME/venv) vs mosquitto_sub, QoS 1 and 0 (bench/connector_bench.py; env: N, the messages
# per drain, default 50000; BENCH_VERSION, 3.1.1 or 5.0).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: $0 OUTDIR [REPS]}; REPS=${2:-3}
exec python3 "$HERE/connector_bench.py" "$OUT" --reps "$REPS" --n "${N:-50000}"
