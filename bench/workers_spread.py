"""How evenly new connections spread over worker processes: the gateway with 2 (or N) workers,
``supervisor.balance: reuseport`` and ``shared``, a burst of new connections from several
threads, each asking which process answered (``asgi_apps:pid``).

    .venv/bin/python bench/workers_spread.py [--workers 2] [--connections 400] [--threads 8] [--rounds 3]

Prints one line per balance and round: the connections each worker took, and the largest share.
A redis-server on a free port backs the channel layer (workers > 1 needs one).
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def burst(port: int, connections: int, threads: int) -> Counter[int]:
    counts: Counter[int] = Counter()
    lock = threading.Lock()

    def run(n: int) -> None:
        for _ in range(n):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/")
            pid = int(conn.getresponse().read())
            conn.close()
            with lock:
                counts[pid] += 1

    workers = [threading.Thread(target=run, args=(connections // threads,)) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=400)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="spread-"))
    redis_port = free_port()
    redis = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(redis_port), "--bind",
                              "127.0.0.1", "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        for balance in ("reuseport", "shared"):
            port = free_port()
            config = tmp / f"{balance}.yaml"
            config.write_text(f"""application: asgi_apps:pid
workers: {args.workers}
supervisor: {{balance: {balance}}}
layers:
  default: {{backend: redis, hosts: ["redis://127.0.0.1:{redis_port}/0"]}}
listeners:
  - {{name: web, protocol: http, endpoint: "tcp:{port}:interface=127.0.0.1"}}
logging: {{level: warn}}
""")
            env = dict(os.environ, PYTHONPATH=f"{HERE / 'apps'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
            daemon = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(config)], env=env,
                                      cwd=HERE.parent)
            try:
                wait_port(port)
                time.sleep(1)  # every worker serving (READY=1 is what systemd would wait for)
                for round_number in range(args.rounds):
                    counts = burst(port, args.connections, args.threads)
                    total = sum(counts.values())
                    shares = sorted(counts.values(), reverse=True)
                    print(f"balance={balance} round={round_number + 1} connections={total} per_worker={shares} "
                          f"largest_share={shares[0] / total:.0%}", flush=True)
            finally:
                daemon.terminate()
                daemon.wait(60)
    finally:
        redis.terminate()
        redis.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
