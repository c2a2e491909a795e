#!/usr/bin/env bash
# run_smtp_suite.sh - SMTP throughput, side by side: the gateway (each message routed through
# ProtocolTypeRouter -> EmailToRouter -> an AsyncEmailConsumer that accepts it, 250 only after
# the consumer accepted) against aiosmtpd (a handler that accepts), driven by Postfix's
# smtp-source through smtp_bench.sh (10 persistent sessions, 2 KB messages by default).
#
# usage: run_smtp_suite.sh OUTDIR [REPS] [PEER...]
#   PEER: gateway (uvloop), gateway-asyncio, aiosmtpd (asyncio), aiosmtpd-uvloop; default: gateway aiosmtpd
#   env:  VENV (aiosmtpd's virtualenv, default BENCH_HOME/venv), GATEWAY_PY (default .venv/bin/python),
#         DUR (10), WARM (2), SESSIONS (10), SIZE (2048), SCPU (0), CCPU (1),
#         QUIET_PCT (25), QUIET_WAIT (30): before each run, wait up to QUIET_WAIT s for the machine
#         to be less than QUIET_PCT % busy (as http_bench.sh does); then run anyway
#
# Peers run round-robin REPS times, each freshly started in its own session pinned to CPU $SCPU
# (smtp-source on $CCPU), stopped by signalling that process group only. Each row records
# msg/s, the server's CPU seconds (from /proc), msg per server CPU-second (the most noise-robust
# figure on a shared machine) and foreign_cpu_pct (CPU other tenants used during the window).
# Output: OUTDIR/smtp.tsv, OUTDIR/logs/, and Markdown tables on stdout.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: $0 OUTDIR [REPS] [PEER...]}; shift
REPS=${1:-3}; [ $# -gt 0 ] && shift
VENV=${VENV:-${BENCH_HOME:-$HOME/.cache/gateway-bench}/venv}
GATEWAY_PY=${GATEWAY_PY:-$HERE/../.venv/bin/python}
DUR=${DUR:-10}; WARM=${WARM:-2}; SESSIONS=${SESSIONS:-10}; SIZE=${SIZE:-2048}
SCPU=${SCPU:-0}; CCPU=${CCPU:-1}; QUIET_PCT=${QUIET_PCT:-25}; QUIET_WAIT=${QUIET_WAIT:-30}
if [ $# -gt 0 ]; then PEERS=("$@"); else PEERS=(gateway aiosmtpd); fi

mkdir -p "$OUT/logs" "$OUT/apps"
TSV="$OUT/smtp.tsv"
[ -f "$TSV" ] || printf 'name\trep\tmessages\tseconds\trate\tserver_cpu_s\tper_cpu_s\tforeign_cpu_pct\n' > "$TSV"

# -- the two servers' programs, written next to the results ------------------------------------
cat > "$OUT/apps/aiosmtpd_peer.py" <<'EOF'
"""aiosmtpd peer: a handler that accepts every message (250 after the DATA handler returns)."""
import asyncio
import sys

from aiosmtpd.smtp import SMTP


class Accept:
    async def handle_DATA(self, server, session, envelope):
        return "250 Message accepted for delivery"


async def main(port):
    loop = asyncio.get_running_loop()
    await loop.create_server(lambda: SMTP(Accept(), hostname="aiosmtpd.bench"), "127.0.0.1", port, backlog=1024)
    await asyncio.Event().wait()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[2] == "uvloop":
        import uvloop
        uvloop.install()
    asyncio.run(main(int(sys.argv[1])))
EOF
cat > "$OUT/apps/smtp_bench_app.py" <<'EOF'
"""The gateway's benchmark application: every message through the router to a consumer."""
from gateway.consumers.email import AsyncEmailConsumer
from gateway.routing import EmailToRouter, ProtocolTypeRouter, regex


class Accept(AsyncEmailConsumer):
    async def receive(self, message, raw):
        pass  # returning accepts: the client gets 250 now


application = ProtocolTypeRouter({"email": EmailToRouter([regex(r"@example\.com$", Accept.as_asgi())])})
EOF
gateway_config() {  # $1 port, $2 loop
  cat > "$OUT/apps/gateway-$2.yaml" <<EOF
application: smtp_bench_app:application
loop: $2
lifespan: "off"
listeners:
  - name: mx
    protocol: smtp
    endpoint: tcp:$1:interface=127.0.0.1:backlog=1024
    hostname: gateway.bench
    limits: {max_connections_per_client: 1000}
logging: {level: warn}
EOF
  echo "$OUT/apps/gateway-$2.yaml"
}

peer_cmd() {  # $1 peer, $2 port
  case "$1" in
    gateway)          echo "$GATEWAY_PY -m gateway run -c $(gateway_config "$2" uvloop)";;
    gateway-asyncio)  echo "$GATEWAY_PY -m gateway run -c $(gateway_config "$2" asyncio)";;
    aiosmtpd)         echo "$VENV/bin/python $OUT/apps/aiosmtpd_peer.py $2";;
    aiosmtpd-uvloop)  echo "$VENV/bin/python $OUT/apps/aiosmtpd_peer.py $2 uvloop";;
    *) echo "unknown peer $1" >&2; return 1;;
  esac
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }          # jiffies
busy_all() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }                     # jiffies
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

HZ=$(getconf CLK_TCK); NCPU=$(nproc)
wait_quiet() {  # up to QUIET_WAIT seconds for < QUIET_PCT % of all CPUs busy over one second
  local deadline=$((SECONDS + QUIET_WAIT)) a b t0 t1
  while [ "$SECONDS" -lt "$deadline" ]; do
    a=$(busy_all); t0=$(awk '/^cpu /{s=0; for (i=2; i<=NF; i++) s+=$i; print s}' /proc/stat); sleep 1
    b=$(busy_all); t1=$(awk '/^cpu /{s=0; for (i=2; i<=NF; i++) s+=$i; print s}' /proc/stat)
    awk -v a="$a" -v b="$b" -v t0="$t0" -v t1="$t1" -v q="$QUIET_PCT" 'BEGIN{exit !((b-a)*100 < q*(t1-t0))}' && return 0
  done
  return 1
}
for rep in $(seq "$REPS"); do
  for peer in "${PEERS[@]}"; do
    wait_quiet || echo "machine still busy after ${QUIET_WAIT}s; running anyway (see foreign_cpu_pct)" >&2
    port=$(free_port)
    read -r -a CMD <<<"$(peer_cmd "$peer" "$port")" || exit 1
    log="$OUT/logs/$peer-$rep.log"
    PYTHONPATH="$OUT/apps:$HERE/..${PYTHONPATH:+:$PYTHONPATH}" setsid taskset -c "$SCPU" "${CMD[@]}" >"$log" 2>&1 &
    pid=$!
    if ! wait_port "$port"; then echo "$peer did not start; see $log" >&2; kill -TERM -- "-$pid" 2>/dev/null; continue; fi
    DURATION=$WARM SESSIONS=$SESSIONS SIZE=$SIZE taskset -c "$CCPU" "$HERE/smtp_bench.sh" 127.0.0.1 "$port" >/dev/null 2>&1
    c0=$(cpu_of "$pid"); b0=$(busy_all)
    line=$(DURATION=$DUR SESSIONS=$SESSIONS SIZE=$SIZE taskset -c "$CCPU" "$HERE/smtp_bench.sh" 127.0.0.1 "$port" 2>>"$log")
    c1=$(cpu_of "$pid"); b1=$(busy_all)
    kill -TERM -- "-$pid" 2>/dev/null; wait "$pid" 2>/dev/null
    messages=$(sed -nE 's/.*messages=([0-9]+).*/\1/p' <<<"$line"); seconds=$(sed -nE 's/.*duration=([0-9.]+)s.*/\1/p' <<<"$line")
    rate=$(sed -nE 's/.*rate=([0-9.]+).*/\1/p' <<<"$line")
    if [ -z "$messages" ]; then echo "$peer rep $rep failed: $line (see $log)" >&2; continue; fi
    awk -v n="$peer" -v r="$rep" -v m="$messages" -v s="$seconds" -v rate="$rate" -v c0="$c0" -v c1="$c1" \
        -v b0="$b0" -v b1="$b1" -v hz="$HZ" -v ncpu="$NCPU" 'BEGIN {
      cpu = (c1 - c0) / hz; busy = (b1 - b0) / hz; foreign = (busy - cpu) / (s * ncpu) * 100
      if (foreign < 0) foreign = 0
      printf "%s\t%s\t%s\t%s\t%s\t%.2f\t%.0f\t%.0f\n", n, r, m, s, rate, cpu, (cpu > 0 ? m / cpu : 0), foreign
    }' >> "$TSV"
    tail -1 "$TSV"
    sleep 1
  done
done

echo
python3 "$HERE/summarize.py" "$TSV" --key name --metrics rate,per_cpu_s,server_cpu_s,foreign_cpu_pct \
  --ratio-to aiosmtpd --ratio-metric rate
echo
# Paired ratios: gateway / aiosmtpd within each repetition (the two ran back to back).
python3 - "$TSV" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
by = {}
for row in rows:
    by.setdefault(row["rep"], {})[row["name"]] = row
for metric in ("rate", "per_cpu_s"):
    ratios = [float(p["gateway"][metric]) / float(p["aiosmtpd"][metric])
              for p in by.values() if "gateway" in p and "aiosmtpd" in p and float(p["aiosmtpd"][metric]) > 0]
    if ratios:
        print(f"gateway / aiosmtpd, {metric}, per repetition: " + ", ".join(f"{r:.2f}" for r in ratios)
              + f"; median {statistics.median(ratios):.2f}")
EOF
