#!/usr/bin/env bash
# run_layer_cluster.sh OUTDIR [PRIMARIES...] - the Redis layer on a Redis Cluster of 1 and 3
# primaries (default "1 3"): PAIRS pairs of processes (layer_bench.py p2p_pipe_xproc: a sender and
# its receiver child) run at once, each pair on its own process channels, so their keys spread
# over the cluster's slots. Prints the total messages/s, the redis-servers' CPU and how the
# commands spread over the primaries (ZADDs: one per message written), per cluster size.
#
# A cluster of one primary is made by hand (redis-cli --cluster create needs three): every node
# gets an equal range of the 16384 slots (CLUSTER ADDSLOTSRANGE) and meets the first (naming its
# cluster bus port, which is not port + 10000 here: both are free ports).
#
# env: PAIRS (3), DUR (5), WARMUP (1), PY (.venv/bin/python), CPUS_REDIS (1), CPUS_CLIENTS (0):
#      taskset CPU lists for the redis-servers and the clients.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: $0 OUTDIR [PRIMARIES...]}; shift
SIZES=("$@"); [ ${#SIZES[@]} -eq 0 ] && SIZES=(1 3)
PAIRS=${PAIRS:-3}; DUR=${DUR:-5}; WARMUP=${WARMUP:-1}
PY=${PY:-$HERE/../.venv/bin/python}
CPUS_REDIS=${CPUS_REDIS:-1}; CPUS_CLIENTS=${CPUS_CLIENTS:-0}
mkdir -p "$OUT"
USED=" "
free_port() {  # a free port not in $USED (the caller adds it: this runs in a subshell)
  local p
  while :; do
    p=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
    case "$USED" in *" $p "*) ;; *) echo "$p"; return ;; esac
  done
}
ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT
trap 'exit 130' INT TERM

for size in "${SIZES[@]}"; do
  PIDS=(); PORTS=(); BUSES=()
  dir="$OUT/cluster-$size"; rm -rf "$dir"; mkdir -p "$dir"
  for i in $(seq "$size"); do
    port=$(free_port); USED="$USED$port "; bus=$(free_port); USED="$USED$bus "; PORTS+=("$port"); BUSES+=("$bus")
    mkdir -p "$dir/$port"
    taskset -c "$CPUS_REDIS" redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-port "$bus" --cluster-config-file "nodes.conf" --dir "$dir/$port" --save '' --appendonly no \
      --logfile "$dir/$port/redis.log" --daemonize no </dev/null >/dev/null 2>&1 &
    PIDS+=($!)
  done
  for port in "${PORTS[@]}"; do
    for _ in $(seq 50); do redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
  done
  per=$((16384 / size))
  for i in $(seq 0 $((size - 1))); do
    start=$((i * per)); end=$(( i == size - 1 ? 16383 : (i + 1) * per - 1 ))
    redis-cli -p "${PORTS[$i]}" cluster addslotsrange "$start" "$end" >/dev/null
    [ "$i" -gt 0 ] && redis-cli -p "${PORTS[$i]}" cluster meet 127.0.0.1 "${PORTS[0]}" "${BUSES[0]}" >/dev/null
  done
  for _ in $(seq 150); do  # every node ok, all agree on the slot map, and every node knows the others
    ok=0; maps=""
    for port in "${PORTS[@]}"; do
      redis-cli -p "$port" cluster info | grep -q "cluster_state:ok" && ok=$((ok + 1))
      maps="$maps$(redis-cli -p "$port" cluster slots | md5sum)\n"
    done
    known=$(redis-cli -p "${PORTS[$((size - 1))]}" cluster nodes | grep -c connected)
    [ "$ok" -eq "$size" ] && [ "$known" -eq "$size" ] && [ "$(printf "$maps" | sort -u | wc -l)" -eq 1 ] && break
    sleep 0.2
  done
  seeds=$(printf '"redis+cluster://127.0.0.1:%s",' "${PORTS[@]}"); seeds="[${seeds%,}]"
  for port in "${PORTS[@]}"; do redis-cli -p "$port" config resetstat >/dev/null; done
  before=0; for pid in "${PIDS[@]}"; do before=$((before + $(ticks "$pid"))); done
  t0=$(date +%s.%N)
  drivers=()
  for p in $(seq "$PAIRS"); do
    PYTHONPATH="$HERE/.." taskset -c "$CPUS_CLIENTS" "$PY" "$HERE/layer_bench.py" \
      --layer gateway.layers.redis:RedisChannelLayer --kwargs "{\"hosts\": $seeds}" --name "cluster-$size" \
      --tests p2p_pipe_xproc --duration "$DUR" --warmup "$WARMUP" --reactor asyncio >"$dir/pair-$p.log" 2>&1 &
    drivers+=($!)
  done
  for pid in "${drivers[@]}"; do wait "$pid"; done
  t1=$(date +%s.%N)
  after=0; for pid in "${PIDS[@]}"; do after=$((after + $(ticks "$pid"))); done
  total=$(grep -ho 'rate=[0-9.]*' "$dir"/pair-*.log | cut -d= -f2 | paste -sd+ | bc)
  redis_cpu=$(echo "($after - $before) / $(getconf CLK_TCK) / ($t1 - $t0) * 100" | bc -l)
  share=""
  for port in "${PORTS[@]}"; do
    calls=$(redis-cli -p "$port" info commandstats | tr -d '\r' | grep -E '^cmdstat_zadd:' \
      | sed 's/^[^:]*:calls=\([0-9]*\),.*/\1/' | paste -sd+ | bc)
    share="$share ${port}:${calls:-0}"
  done
  printf 'RESULT primaries=%s pairs=%s total_rate=%.0f redis_cpu_pct=%.0f zadds_per_primary=%s\n' \
    "$size" "$PAIRS" "${total:-0}" "$redis_cpu" "${share# }"
  cleanup
done
