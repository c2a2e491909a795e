"""Bad requests and timed-out clients of one listener are logged a few times, then summarised."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, formatEvent

from gateway.logs import RejectionLimits, RejectionLog
from gateway.protocols.http.adapter import HTTPProtocol, log
from tests.unit.http.harness import Harness, responses


async def hello(scope: object, receive: object, send: object) -> None:
    raise AssertionError("no request reaches the application")


def test_a_flood_of_bad_requests_and_slow_clients_gives_bounded_lines() -> None:
    h = Harness(hello, header_timeout=10.0)
    try:
        h.settings.rejections = RejectionLog("web", h.clock, log, RejectionLimits(lines=2, period=30.0))
        transports = []
        for n in range(100):
            protocol = HTTPProtocol(h.settings)
            transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.1", 40000 + n))
            protocol.makeConnection(transport)
            protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n" if n % 2 else b"GET / HTTP/1.1\r\nX: ")
            transports.append(transport)
        h.advance(10.1)  # the slow half times out
        statuses = [responses(t.value())[0][0] for t in transports]
        assert statuses.count(400) == 50 and statuses.count(408) == 50
        lines = [formatEvent(e) for e in h.log if e.get("log_namespace") == "gateway.http"]
        assert len([line for line in lines if line.startswith("Bad request")]) == 2
        assert len([line for line in lines if "no complete request head" in line]) == 2
        h.advance(30.0)  # both windows closed (the timeouts opened theirs 10 s later)
        summaries = sorted(formatEvent(e) for e in h.log if "more rejected" in formatEvent(e))
        assert summaries == ["web: 48 more rejected (bad request 400) in the last 30 s",
                             "web: 48 more rejected (request head timeout) in the last 30 s"]
        levels = {formatEvent(e): e["log_level"] for e in h.log if "more rejected" in formatEvent(e)}
        assert levels[summaries[0]] is LogLevel.debug and levels[summaries[1]] is LogLevel.info
    finally:
        h.close()
