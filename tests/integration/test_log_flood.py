"""A client flooding a daemon with bad input gets a bounded number of log lines plus summaries
(``logging.rejections``), on a real daemon with real clients."""

from __future__ import annotations

import re
import smtplib
import socket
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.integration.daemon import Daemon, wait_until

pytestmark = pytest.mark.slow

LINES = 3
CONFIG = f"""
application: gateway.demo:application
listeners:
  - {{name: web, protocol: http, endpoint: "tcp:0:interface=127.0.0.1"}}
  - {{name: mail, protocol: smtp, endpoint: "tcp:0:interface=127.0.0.1", hostname: localhost}}
  - name: texts
    protocol: sms
    endpoint: "tcp:0:interface=127.0.0.1"
    public_url: "http://127.0.0.1:1"
    accounts: [{{name: demo, provider: generic, path: /sms/demo, secret: s3cret}}]
logging: {{level: info, rejections: {{lines: {LINES}, period: 1s}}}}
"""
SUMMARY = re.compile(r"(\S+): (\d+) more rejected \((.+)\) in the last 1 s")


def summarised(output: str) -> Counter[tuple[str, str]]:
    """Rejections counted by the summary lines, by (listener, reason)."""
    counts: Counter[tuple[str, str]] = Counter()
    for listener, count, reason in SUMMARY.findall(output):
        counts[(listener, reason)] += int(count)
    return counts


def check_bounded(output: str, line: str, listener: str, reason: str, total: int) -> None:
    """Every one of ``total`` rejections is either a logged ``line`` or counted by a summary, and
    at most ``LINES`` are logged per window."""
    logged = output.count(line)
    windows = len([m for m in SUMMARY.finditer(output) if m.group(1) == listener and m.group(3) == reason])
    assert logged + summarised(output)[(listener, reason)] == total, output[-3000:]
    assert LINES <= logged <= LINES * (windows + 1)
    assert windows >= 1


def test_a_flood_of_bad_webhooks_and_refused_recipients_is_summarised(tmp_path: Path) -> None:
    with Daemon(tmp_path, CONFIG) as daemon:
        url = daemon.url("texts") + "/sms/demo"
        with httpx.Client() as client:
            for _ in range(300):
                assert client.post(url, content=b"{}", headers={"content-type": "application/json"}).status_code == 403
            for _ in range(50):
                assert client.post(url, content=b"{}", headers={"content-type": "text/plain"}).status_code == 415
        for _ in range(10):  # 15 refused recipients per session (20 errors end one)
            with smtplib.SMTP("127.0.0.1", daemon.port("mail"), timeout=10) as smtp:
                smtp.ehlo()
                smtp.mail("a@example.com")
                for n in range(15):
                    assert smtp.rcpt(f"nobody{n}@example.com")[0] == 550
        wait_until(lambda: logged_total(daemon.output()) + sum(summarised(daemon.output()).values()) >= 500,
                   timeout=20, what="every rejection logged or summarised")
        output = daemon.output()
    check_bounded(output, "rejected (403)", "texts", "demo webhook 403", 300)
    check_bounded(output, "rejected (415)", "texts", "demo webhook 415", 50)
    check_bounded(output, "Refused recipient", "mail", "recipient without a route", 150)
    assert len(output.splitlines()) < 60, output  # instead of 500 lines


def logged_total(output: str) -> int:
    return sum(output.count(line) for line in ("rejected (403)", "rejected (415)", "Refused recipient"))


HANDSHAKE = (b"GET /ws/rooms/lobby/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: %s\r\n\r\n")


def test_refused_websocket_handshakes_and_protocol_errors_are_quiet(tmp_path: Path) -> None:
    with Daemon(tmp_path, CONFIG) as daemon:
        port = daemon.port("web")
        for _ in range(50):  # another site's page: the demo refuses it (403)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(HANDSHAKE % b"http://evil.example")
                assert s.recv(100).startswith(b"HTTP/1.1 403 ")
        for _ in range(50):  # an unmasked frame: closed with 1002
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(HANDSHAKE % b"http://127.0.0.1")
                assert s.recv(1000).startswith(b"HTTP/1.1 101 ")
                s.sendall(b"\x81\x05hello")
                assert s.recv(100).startswith(b"\x88")
        assert "dropping connection to peer" not in daemon.output()
        wait_until(lambda: summarised(daemon.output())[("web", "WebSocket protocol error")] > 0, timeout=20,
                   what="the summary of the protocol errors")
        output = daemon.output()
    check_bounded(output, "failing WebSocket connection", "web", "WebSocket protocol error", 50)
