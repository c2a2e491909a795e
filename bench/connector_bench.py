#!/usr/bin/env python3
"""connector_bench.py - messages/s a trivial consumer drains from Mosquitto: the gateway's MQTT
connector vs mqttasgi vs mosquitto_sub (the raw receive rate), side by side in one run.

For each repetition, QoS and peer: a fresh Mosquitto on a free port (pinned to CPU 1); the peer
connects once with a persistent session and subscribes to bench/#, and leaves; N messages are
published to its session (mosquitto_pub -l); the peer connects again and drains them. The rate is
(N - 1) / (time of the last message - time of the first), taken by the consumer itself (the
gateway's and mqttasgi's count in bench/apps/connector_apps.py; mosquitto_sub prints a timestamp
per message), so start-up does not count. At QoS 1 a message is acknowledged after the consumer
handled it (the gateway) or when it arrived (mqttasgi's paho, mosquitto_sub). MQTT 3.1.1 by default,
so that Mosquitto's in-flight window (max_inflight_messages 20) is the same for every peer.

usage: connector_bench.py OUTDIR [--reps 3] [--n 20000] [--qos 1 0] [--peers gateway mqttasgi mosquitto_sub]
       connector_bench.py OUTDIR --instructions [--n 4000] [--qos 1]   (callgrind; needs valgrind)
  env: VENV (BENCH_HOME/venv, where mqttasgi is), GATEWAY_BIN (../.venv/bin/gateway),
       GATEWAY_BENCH_LOOP (uvloop), BENCH_VERSION (3.1.1 or 5.0)
Results: OUTDIR/connector.tsv and a Markdown table (median of the reps, ratios) on stdout and in
OUTDIR/connector.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH_HOME = Path(os.environ.get("BENCH_HOME", Path.home() / ".cache" / "gateway-bench"))
VENV = Path(os.environ.get("VENV", BENCH_HOME / "venv"))
GATEWAY_BIN = os.environ.get("GATEWAY_BIN", str(HERE.parent / ".venv" / "bin" / "gateway"))
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
TASKSET = shutil.which("taskset")
VERSION = os.environ.get("BENCH_VERSION", "3.1.1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cpu: int, command: list[str]) -> list[str]:
    return [TASKSET, "-c", str(cpu), *command] if TASKSET and (os.cpu_count() or 1) > 1 else command


def wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout}s")
        time.sleep(0.02)


class Broker:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.log = tmp / f"mosquitto-{self.port}.log"
        config = tmp / f"mosquitto-{self.port}.conf"
        import getpass

        config.write_text("\n".join([
            f"user {getpass.getuser()}", f"listener {self.port} 127.0.0.1", "allow_anonymous true",
            f"log_dest file {self.log}", "log_type notice", "log_type subscribe", "log_type information",
            "max_queued_messages 0", "max_inflight_messages 20", "queue_qos0_messages true",
            "persistent_client_expiration 1h",
        ]) + "\n")
        self.process = subprocess.Popen(pinned(1, [MOSQUITTO, "-c", str(config)]), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_for(lambda: self.log.exists() and "running" in self.log.read_text(), 10, "mosquitto")

    def subscribed(self, client_id: str) -> bool:
        return f"{client_id} " in self.log.read_text() and any(
            line.split(": ", 1)[-1].startswith(f"{client_id} ") for line in self.log.read_text().splitlines())

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def preload(broker: Broker, n: int, qos: int) -> None:
    data = "".join(f"{i}\n" for i in range(n)).encode()
    subprocess.run(["mosquitto_pub", "-p", str(broker.port), "-h", "127.0.0.1", "-q", str(qos), "-t", "bench/x",
                    "-l", "-i", "bench-loader"], input=data, check=True, timeout=300)


def consumer_command(peer: str, broker: Broker, qos: int) -> tuple[list[str], dict[str, str], str]:
    env = dict(os.environ, BENCH_QOS=str(qos), BENCH_TOPIC="bench/#",
               PYTHONPATH=str(HERE / "apps") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if peer == "gateway":
        env.update(BENCH_BROKER=f"mqtt://127.0.0.1:{broker.port}", BENCH_VERSION=VERSION,
                   GATEWAY_BENCH_LOOP=os.environ.get("GATEWAY_BENCH_LOOP", "uvloop"))
        return [GATEWAY_BIN, "run", "-c", str(HERE / "conf" / "connector.yaml")], env, "bench-gateway"
    if peer == "mqttasgi":
        return [str(VENV / "bin" / "mqttasgi"), "-H", "127.0.0.1", "-p", str(broker.port), "-c", "False",
                "-i", "bench-mqttasgi", "connector_apps:Bench"], env, "bench-mqttasgi"
    raise ValueError(peer)


def run_app_peer(peer: str, tmp: Path, n: int, qos: int) -> float:
    broker = Broker(tmp)
    try:
        command, env, client_id = consumer_command(peer, broker, qos)
        result = tmp / f"{peer}-{broker.port}.json"
        env.update(BENCH_N=str(n), BENCH_RESULT=str(result))
        log = open(tmp / f"{peer}-{broker.port}.log", "wb")
        first = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=HERE / "apps")
        wait_for(lambda: broker.subscribed(client_id), 60, f"{peer}'s subscription")
        stop(first)
        preload(broker, n, qos)
        drain = subprocess.Popen(pinned(0, command), env=env, stdout=log, stderr=subprocess.STDOUT, cwd=HERE / "apps")
        try:
            wait_for(result.exists, 600, f"{peer} draining {n} messages")
            time.sleep(0.05)
            numbers = json.loads(result.read_text())
        finally:
            stop(drain)
            log.close()
        return (n - 1) / (numbers["last"] - numbers["first"])
    finally:
        broker.stop()


def instructions(tmp: Path, n: int, qos: int) -> int:
    """User-space instructions (callgrind) of a gateway daemon that starts, drains ``n`` messages
    and stops; the difference of two such runs is the cost of the messages in between."""
    broker = Broker(tmp)
    try:
        command, env, client_id = consumer_command("gateway", broker, qos)
        result = tmp / f"cg-{broker.port}.json"
        out = tmp / f"cg-{broker.port}.out"
        env.update(BENCH_N=str(n), BENCH_RESULT=str(result))
        log = open(tmp / f"cg-{broker.port}.log", "wb")
        first = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=HERE / "apps")
        wait_for(lambda: broker.subscribed(client_id), 60, "the gateway's subscription")
        stop(first)
        preload(broker, n, qos)
        python = str(Path(GATEWAY_BIN).parent / "python")
        drain = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", python, "-m", "gateway",
                                  "run", "-c", str(HERE / "conf" / "connector.yaml")],
                                 env=env, stdout=log, stderr=subprocess.STDOUT, cwd=HERE / "apps")
        try:
            wait_for(result.exists, 1800, f"the gateway draining {n} messages under callgrind")
        finally:
            stop(drain)
            log.close()
        for line in out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
        raise RuntimeError("no totals in the callgrind output")
    finally:
        broker.stop()


def run_mosquitto_sub(tmp: Path, n: int, qos: int) -> float:
    broker = Broker(tmp)
    try:
        common = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", str(qos), "-t", "bench/#", "-c",
                  "-i", "bench-raw", "-V", "mqttv5" if VERSION == "5.0" else "mqttv311"]
        subprocess.run([*common, "-E"], check=True, timeout=30)
        preload(broker, n, qos)
        out = subprocess.run(pinned(0, [*common, "-C", str(n), "-F", "%U"]), check=True, timeout=600,
                             capture_output=True, text=True).stdout.split()
        return (n - 1) / (float(out[-1]) - float(out[0]))
    finally:
        broker.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--qos", type=int, nargs="+", default=[1, 0])
    parser.add_argument("--peers", nargs="+", default=["gateway", "mqttasgi", "mosquitto_sub"])
    parser.add_argument("--mqttasgi-n", type=int, default=0,
                        help="messages for mqttasgi (default: N / 50, at least 200; it is slow, rates are per second either way)")
    parser.add_argument("--instructions", action="store_true",
                        help="instead: the gateway's instructions per drained message (callgrind; the difference of "
                             "draining N and N/4 messages), not moved by the machine's load")
    args = parser.parse_args()
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    if args.instructions:
        with tempfile.TemporaryDirectory() as scratch:
            for qos in args.qos:
                small = args.n // 4
                per = (instructions(Path(scratch), args.n, qos) - instructions(Path(scratch), small, qos)) / (args.n - small)
                print(f"RESULT name=gateway mode=connector-qos{qos} n={args.n} instructions_per_message={per:.0f}", flush=True)
        return 0
    rows: list[tuple[int, str, int, int, float]] = []
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        for rep in range(args.reps):
            for qos in args.qos:
                for peer in args.peers:
                    n = args.n if peer != "mqttasgi" else (args.mqttasgi_n or max(200, args.n // 50))
                    rate = run_mosquitto_sub(tmp, n, qos) if peer == "mosquitto_sub" else run_app_peer(peer, tmp, n, qos)
                    rows.append((rep, peer, qos, n, rate))
                    print(f"RESULT rep={rep} peer={peer} qos={qos} n={n} rate={rate:.0f}/s", flush=True)
    with open(out / "connector.tsv", "w") as tsv:
        tsv.write("rep\tpeer\tqos\tn\trate\n")
        for row in rows:
            tsv.write("\t".join(str(x) for x in row) + "\n")
    lines = [f"MQTT {VERSION}, messages/s drained from Mosquitto by a trivial consumer (median of {args.reps})", "",
             "| QoS | " + " | ".join(args.peers) + " | gateway / mqttasgi | gateway / mosquitto_sub |",
             "|---|" + "---|" * (len(args.peers) + 2)]
    for qos in args.qos:
        medians = {peer: statistics.median(r[4] for r in rows if r[1] == peer and r[2] == qos) for peer in args.peers}
        gateway = medians.get("gateway")
        ratio = lambda other: f"{gateway / medians[other]:.2f}" if gateway and medians.get(other) else "-"  # noqa: E731
        lines.append(f"| {qos} | " + " | ".join(f"{medians[p]:.0f}" for p in args.peers)
                     + f" | {ratio('mqttasgi')} | {ratio('mosquitto_sub')} |")
    text = "\n".join(lines) + "\n"
    (out / "connector.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
