#!/usr/bin/env bash
# run_mqtt_suite.sh - MQTT broker benchmarks (mqtt_bench.js) against the gateway's built-in
# broker, Mosquitto and amqtt, side by side in one run.
#
# For each repetition and each peer a fresh broker is started on a free port, pinned to CPU 0
# (setsid: pid == pgid), and every scenario runs as its own `node mqtt_bench.js --only X`
# pinned to CPU 1; the server's CPU use during each scenario is recorded. The broker's process
# group is stopped afterwards. Results: OUTDIR/mqtt.tsv and Markdown tables (median of REPS)
# with the ratios gateway/amqtt and gateway/mosquitto per scenario, in delivered messages per
# second and in broker CPU time per message (cpu_us_per_msg: robust on a shared machine).
#
# usage: run_mqtt_suite.sh OUTDIR [REPS] [PEER...]
#   PEER: gateway mosquitto amqtt (default: all three), or NAME:'command with {port}'
#   env: N (100000 messages, scenarios a b), FAN_N (2000 messages x 50 subscribers, c d),
#        CONNS (1000, scenario e), SCENARIOS ("a b c d e"), SLOW_DIV (5: amqtt gets N/5 and
#        FAN_N/5, it would take minutes otherwise; rates are per second either way),
#        VENV (BENCH_HOME/venv, where amqtt is), GATEWAY_BIN (../.venv/bin/gateway),
#        GATEWAY_BENCH_LOOP (uvloop), QUIET_PCT (25), QUIET_WAIT (30)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: $0 OUTDIR [REPS] [PEER...]}; shift
REPS=${1:-3}; [ $# -gt 0 ] && shift
VENV=${VENV:-${BENCH_HOME:-$HOME/.cache/gateway-bench}/venv}
GATEWAY_BIN=${GATEWAY_BIN:-$HERE/../.venv/bin/gateway}
N=${N:-100000}; FAN_N=${FAN_N:-2000}; CONNS=${CONNS:-1000}; SLOW_DIV=${SLOW_DIV:-5}
SCENARIOS=${SCENARIOS:-"a b c d e"}
QUIET_PCT=${QUIET_PCT:-25}; QUIET_WAIT=${QUIET_WAIT:-30}
export GATEWAY_BENCH_LOOP=${GATEWAY_BENCH_LOOP:-uvloop}
export PYTHONPATH="$HERE/apps${PYTHONPATH:+:$PYTHONPATH}"
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT/logs"

peer_cmd() {
  case "$1" in
    gateway)   echo env GATEWAY_BENCH_PORT={port} $GATEWAY_BIN run -c $HERE/conf/mqtt.yaml;;
    mosquitto) echo mosquitto -p {port};;
    amqtt)     echo $VENV/bin/amqtt -c $OUT/amqtt-{port}.yaml;;
    *:*)       echo "${1#*:}";;
    *) echo "unknown peer $1" >&2; return 1;;
  esac
}

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
busy_1s() {
  python3 - <<'PY'
import os, time
def rd():
    f = [int(x) for x in open('/proc/stat').readline().split()[1:]]
    return f[0] + f[1] + f[2] + f[5] + f[6] + f[7], sum(f[:8])
b0, t0 = rd(); time.sleep(1); b1, t1 = rd()
print(int(round((b1 - b0) / max(1, t1 - t0) * 100 * os.cpu_count())))
PY
}
wait_quiet() {
  local b q; b=$(busy_1s); q=$(date +%s)
  while [ "$b" -gt "$QUIET_PCT" ] && [ $(( $(date +%s) - q )) -lt "$QUIET_WAIT" ]; do b=$(busy_1s); done
}
# CPU seconds (user+system) used so far by the process group's leader and its children
cpu_of() { awk '{print ($14+$15+$16+$17)}' "/proc/$1/stat" 2>/dev/null || echo 0; }

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

start_server() { # name -> sets SPID, PORT; returns 1 if not listening
  local name=$1 a; PORT=$(free_port)
  cat >"$OUT/amqtt-$PORT.yaml" <<EOF
listeners:
  default: {type: tcp, bind: "127.0.0.1:$PORT"}
plugins:
  amqtt.plugins.authentication.AnonymousAuthPlugin: {allow_anonymous: true}
EOF
  read -r -a RAW <<<"$(peer_cmd "$name")" || return 1
  CMD=(); for a in "${RAW[@]}"; do CMD+=("${a//\{port\}/$PORT}"); done
  setsid taskset -c 0 "${CMD[@]}" >"$OUT/logs/server-${name//[^A-Za-z0-9_.-]/_}-$PORT.log" 2>&1 </dev/null &
  SPID=$!
  for _ in $(seq 150); do
    kill -0 "$SPID" 2>/dev/null || return 1
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$PORT),0.2).close()" 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

TSV="$OUT/mqtt.tsv"
[ -f "$TSV" ] || printf 'name\tscenario\trate\tunit\tserver_cpu_pct\tlost\trep\terror\tcpu_us_per_msg\n' >"$TSV"
if [ $# -gt 0 ]; then PEERS=("$@"); else PEERS=(gateway mosquitto amqtt); fi
echo "mqtt suite: $(node --version), $(mosquitto -h 2>/dev/null | head -1), amqtt $($VENV/bin/pip show amqtt 2>/dev/null | awk '/^Version/{print $2}'), reps=$REPS"

for rep in $(seq "$REPS"); do
  for p in "${PEERS[@]}"; do
    label=${p%%:*}
    n=$N; fan=$FAN_N
    if [ "$label" = amqtt ]; then n=$((N / SLOW_DIV)); fan=$((FAN_N / SLOW_DIV)); fi
    wait_quiet
    if ! start_server "$p"; then
      echo "RESULT name=$label error=server_not_ready"; printf '%s\t-\t\t\t\t\t%s\tserver_not_ready\n' "$label" "$rep" >>"$TSV"
      stop_server; continue
    fi
    for s in $SCENARIOS; do
      c0=$(cpu_of "$SPID"); t0=$(date +%s.%N)
      line=$(timeout 300 taskset -c 1 node "$HERE/mqtt_bench.js" "127.0.0.1:$PORT" --only "$s" \
             --n "$n" --fan-n "$fan" --conns "$CONNS" --timeout 120 2>&1 | grep -E "^$s\)")
      c1=$(cpu_of "$SPID"); t1=$(date +%s.%N)
      echo "RESULT name=$label rep=$rep $line"
      cpu=$(python3 -c "import os;print(round(($c1-$c0)/os.sysconf('SC_CLK_TCK')/max(1e-9,$t1-$t0)*100))")
      case $s in a|b) msgs=$n;; c|d) msgs=$((fan * 50));; *) msgs=$CONNS;; esac
      # the broker's CPU time per delivered message (per connection for e): unlike the rate,
      # it does not drop when other tenants take the CPU away (what "on one core" compares)
      us=$(python3 -c "import os;print(round(($c1-$c0)/os.sysconf('SC_CLK_TCK')/max(1,$msgs)*1e6, 2))")
      rate=$(python3 -c 'import re,sys; m=re.search(r"delivered (\d+) msgs/s|(\d+) conn/s", sys.argv[1]); print(next(g for g in m.groups() if g) if m else "")' "$line")
      unit="msgs/s"; [ "$s" = e ] && unit="conn/s"
      lost=$(echo "$line" | grep -oE 'LOST [0-9]+' | grep -oE '[0-9]+' || true)
      err=""; [ -z "$rate" ] && err="no_result"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$s" "$rate" "$unit" "$cpu" "${lost:-0}" "$rep" "$err" "$us" >>"$TSV"
      sleep 0.5
    done
    stop_server
    sleep 1
  done
done

S="python3 $HERE/summarize.py"
echo; echo "## MQTT: median (min-max) of $REPS; a 1->1 QoS0, b 1->1 QoS1, c 1->50 QoS0, d 1->50 QoS1 (delivered msgs/s), e connections/s"
$S "$TSV" --key name,scenario --metrics rate,server_cpu_pct,cpu_us_per_msg
echo
python3 - "$TSV" <<'PY'
import csv, statistics, sys
rows = [r for r in csv.DictReader(open(sys.argv[1]), delimiter="\t") if r["rate"] and not r["error"]]
med, cpu = {}, {}
for r in rows:
    med.setdefault((r["scenario"], r["name"]), []).append(float(r["rate"]))
    if r.get("cpu_us_per_msg"):
        cpu.setdefault((r["scenario"], r["name"]), []).append(float(r["cpu_us_per_msg"]))
med = {k: statistics.median(v) for k, v in med.items()}
cpu = {k: statistics.median(v) for k, v in cpu.items() if min(v) > 0}
names = ["gateway", "mosquitto", "amqtt"]
names += sorted({k[1] for k in med} - set(names))  # NAME:command peers (another checkout)
print("| scenario | " + " | ".join(names) + " | gateway/amqtt | gateway/mosquitto |")
print("|---" * (len(names) + 3) + "|")
for s in sorted({k[0] for k in med}):
    cells = [f"{med[(s, n)]:.0f}" if (s, n) in med else "-" for n in names]
    g = med.get((s, "gateway"))
    ratio = lambda o: f"{g / med[(s, o)]:.2f}" if g and med.get((s, o)) else "-"
    print(f"| {s} | " + " | ".join(cells) + f" | {ratio('amqtt')} | {ratio('mosquitto')} |")
print()
print("Broker CPU per delivered message (µs, median); 'on one core' = messages per CPU-second, the")
print("ratio is mosquitto's CPU per message / gateway's (robust when other tenants share the box):")
print("| scenario | " + " | ".join(names) + " | gateway/mosquitto on one core |")
print("|---" * (len(names) + 2) + "|")
for s in sorted({k[0] for k in cpu}):
    cells = [f"{cpu[(s, n)]:.2f}" if (s, n) in cpu else "-" for n in names]
    g, m = cpu.get((s, "gateway")), cpu.get((s, "mosquitto"))
    print(f"| {s} | " + " | ".join(cells) + f" | {m / g:.2f} |" if g and m else f"| {s} | " + " | ".join(cells) + " | - |")
PY
