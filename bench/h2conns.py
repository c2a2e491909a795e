"""Open N HTTP/2 connections (prior knowledge, or TLS with ALPN h2), make one request on each, keep
them open, and print the server's resident memory before and after: bench/h2_bench.sh's memory
per open HTTP/2 connection.

usage: h2conns.py PORT N SERVER_PID [tls]
"""

from __future__ import annotations

import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events


def rss_kib(pid: int) -> int:
    total = 0
    for child in [pid, *children(pid)]:
        try:
            with open(f"/proc/{child}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            direct = [int(p) for p in f.read().split()]
    except OSError:
        return []
    return direct + [g for c in direct for g in children(c)]


def open_one(port: int, tls: bool) -> tuple[socket.socket, h2.connection.H2Connection]:
    sock = socket.create_connection(("127.0.0.1", port))
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2"])
        sock = context.wrap_socket(sock)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":scheme", "https" if tls else "http"), (":authority", "localhost"),
                          (":path", "/")], end_stream=True)
    sock.sendall(conn.data_to_send())
    done = False
    while not done:
        data = sock.recv(65536)
        if not data:
            raise SystemExit("server closed a connection")
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.StreamEnded):
                done = True
        sock.sendall(conn.data_to_send())
    return sock, conn


def main() -> None:
    port, n, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    tls = len(sys.argv) > 4 and sys.argv[4] == "tls"
    open_one(port, tls)[0].close()  # warm up
    time.sleep(0.5)
    before = rss_kib(pid)
    kept = [open_one(port, tls) for _ in range(n)]
    time.sleep(1.0)
    after = rss_kib(pid)
    print(f"connections={n} rss_before_kib={before} rss_after_kib={after} kib_per_connection={(after - before) / n:.1f}")
    for sock, _ in kept:
        sock.close()


if __name__ == "__main__":
    main()
