"""HTTP/1.1 against clients that misbehave, over real sockets: memory stays bounded by the limits,
and an error answer reaches a client that is still sending."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon, http_config, wait_until

pytestmark = pytest.mark.slow


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_client_pipelining_without_reading_answers_cannot_grow_memory(tmp_path: Path) -> None:
    """One connection sends GET / as fast as it can and never reads: reading pauses once the
    answers back up (write_high_water), so the daemon's memory stays flat while it keeps sending."""
    with Daemon(tmp_path, http_config(listener_extra="limits: {write_high_water: 64KiB}")) as daemon:
        assert daemon.process is not None
        pid = daemon.process.pid
        request = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n" * 256
        sock = socket.create_connection(("127.0.0.1", daemon.port()))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sent = 0
        stop = threading.Event()

        def flood() -> None:
            nonlocal sent
            sock.settimeout(0.5)
            while not stop.is_set():
                try:
                    sent += sock.send(request)
                except TimeoutError:
                    continue  # the daemon stopped reading: that is the point
                except OSError:
                    return

        thread = threading.Thread(target=flood, daemon=True)
        thread.start()
        try:
            # Wait until the daemon stops reading: the client's sends stall.
            def stalled() -> bool:
                before = sent
                time.sleep(0.5)
                return sent == before and sent > 0

            wait_until(stalled, timeout=20, what="the daemon to stop reading")
            first = rss_kib(pid)
            time.sleep(3)
            assert sent < 64 * 1024 * 1024  # it did not read everything the client offered
            assert rss_kib(pid) - first < 4 * 1024  # flat, not growing with the client's offer
        finally:
            stop.set()
            sock.close()
            thread.join(5)


@pytest.mark.parametrize("size", [256 * 1024, 900 * 1024])
def test_an_error_answer_reaches_a_client_still_sending_its_body(tmp_path: Path, size: int) -> None:
    """413 for a body over max_body_size is answered as soon as the head is read; the client goes on
    sending the whole body, then reads: its sends must not be reset (a client uploading, such as
    curl, reports the reset and never reads the answer), and it must find the 413."""
    config = http_config(listener_extra="limits: {max_body_size: 1KiB}")
    with Daemon(tmp_path, config) as daemon:
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", daemon.port())) as sock:
                sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
                body = b"x" * 65536
                for _ in range(size // len(body)):
                    time.sleep(0.001)  # as a client on a real network: the answer arrives meanwhile
                    sock.sendall(body)
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 413 "), answer[:100]
