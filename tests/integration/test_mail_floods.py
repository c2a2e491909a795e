"""Memory per connection stays bounded whatever a client does: floods over real sockets.

A client pipelines SMTP commands (or SMS webhooks) as fast as it can and never reads a reply. The
daemon must stop reading from it once its replies back up (the write buffer passes its high-water
mark) instead of queueing replies without end: the client's sends then block, and the daemon's
resident memory, measured once it has gone quiet, grows by a bounded amount (a few hundred KiB of
buffers), not by the tens of megabytes the replies to what was sent would take.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import select
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon

pytestmark = pytest.mark.slow

#: Most the daemon's resident memory may grow by during a flood (the replies to what is sent
#: would take well over ten times this).
BOUND = 24 * 1024 * 1024
#: Most a flood sends: the replies to this much SMTP input would take about 400 MB.
VOLUME = 24 * 1024 * 1024


def rss(pid: int) -> int:
    """The process's resident set size, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def wait_quiet(pid: int, timeout: float = 60.0) -> None:
    """Wait until the process used no CPU for a second (it handled everything it read)."""
    deadline = time.monotonic() + timeout
    last = cpu_ticks(pid)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = cpu_ticks(pid)
        if now == last:
            return
        last = now
    raise AssertionError(f"the daemon was still busy after {timeout}s")


def flood(port: int, chunk: Callable[[], bytes], volume: int = VOLUME, timeout: float = 60.0) -> tuple[socket.socket, int, bool]:
    """Send ``chunk()`` after ``chunk()`` without reading anything, until the daemon stops taking
    them (no room to send for 3 s), ``volume`` bytes are sent, or ``timeout`` passes. Returns the
    socket (still open), the bytes sent, and whether the sends blocked."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # replies back up at once
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    sent = 0
    pending = b""
    deadline = time.monotonic() + timeout
    while sent < volume and time.monotonic() < deadline:
        if not pending:
            pending = chunk()
        _, writable, _ = select.select([], [sock], [], 3.0)
        if not writable:
            return sock, sent, True
        try:
            count = sock.send(pending)
        except BlockingIOError:
            continue
        sent += count
        pending = pending[count:]
    return sock, sent, False


@pytest.fixture
def daemon_for(tmp_path: Path) -> Iterator[Callable[[str, dict[str, str]], Daemon]]:
    started: list[Daemon] = []

    def start(config: str, env: dict[str, str]) -> Daemon:
        daemon = Daemon(tmp_path, config, env=env).start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


SMTP_GROUP = (b"EHLO flood.example\r\n" * 90 + b"MAIL FROM:<f@example.org>\r\nRCPT TO:<x@accept.test>\r\nDATA\r\n"
              b"Subject: flood\r\n\r\nx\r\n.\r\n")


def test_smtp_pipelining_without_reading_replies_keeps_memory_bounded(daemon_for: Callable[..., Daemon]) -> None:
    """90 EHLOs and a message per group: about 20 KB of replies for each KB sent (EHLO stays under
    the junk-command limit, which each accepted message resets)."""
    daemon = daemon_for("""
        application: tests.email_apps:app
        listeners:
          - {name: mx, protocol: smtp, endpoint: "tcp:0:interface=127.0.0.1", hostname: mx.test}
        """, {})
    assert daemon.process is not None
    pid = daemon.process.pid
    port = daemon.port("mx")
    warm, _, _ = flood(port, lambda: SMTP_GROUP, volume=len(SMTP_GROUP) * 20, timeout=10)  # imports, caches
    warm.close()
    wait_quiet(pid)
    before = rss(pid)
    sock, sent, blocked = flood(port, lambda: SMTP_GROUP)
    try:
        wait_quiet(pid)
        grown = rss(pid) - before
    finally:
        sock.close()
    assert blocked, f"the daemon read all {sent} bytes without the client reading a reply"
    assert grown < BOUND, f"RSS grew by {grown / 2**20:.1f} MiB after {sent / 2**20:.1f} MiB of pipelined commands"


def test_sms_webhooks_pipelined_without_reading_answers_keep_memory_bounded(daemon_for: Callable[..., Daemon]) -> None:
    """Signed webhooks that each take the application a second: the HTTP side holds a bounded
    pipeline of them and stops reading, whatever the client sends behind."""
    daemon = daemon_for("""
        application: tests.sms_apps:app
        listeners:
          - name: texts
            protocol: sms
            endpoint: "tcp:0:interface=127.0.0.1"
            public_url: https://sms.example.com
            accounts:
              - {name: gen, provider: generic, path: /generic, secret: gen-secret}
        """, {})
    assert daemon.process is not None
    pid = daemon.process.pid
    port = daemon.port("texts")
    counter = iter(range(10**9))
    stamp = str(int(time.time()))
    text = "hello"

    def webhook() -> bytes:
        body = json.dumps({"type": "message", "id": f"flood-{os.getpid()}-{next(counter)}", "from": "+447400123456",
                           "to": "+441134960000", "text": text}).encode()
        signature = "v1=" + hmac.new(b"gen-secret", stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        return (b"POST /generic HTTP/1.1\r\nHost: sms.example.com\r\nContent-Type: application/json\r\n"
                b"X-SMS-Timestamp: %s\r\nX-SMS-Signature: %s\r\nContent-Length: %d\r\n\r\n%s"
                % (stamp.encode(), signature.encode(), len(body), body))

    warm, _, _ = flood(port, webhook, volume=50_000, timeout=10)
    warm.close()
    wait_quiet(pid)
    before = rss(pid)
    text = "slow 1"
    sock, sent, blocked = flood(port, webhook)
    try:
        wait_quiet(pid)
        grown = rss(pid) - before
    finally:
        sock.close()
    assert blocked, f"the daemon read all {sent} bytes of webhooks without the client reading an answer"
    assert grown < BOUND, f"RSS grew by {grown / 2**20:.1f} MiB after {sent / 2**20:.1f} MiB of pipelined webhooks"
