"""Drive an HTTPProtocol over a StringTransport with a fake clock and a real asyncio loop."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from gateway.protocols.http.adapter import HTTPProtocol, HTTPSettings
from gateway.protocols.http.core import HTTPLimits
from tests.unit.loop_harness import LoopHarness


class Harness(LoopHarness):
    """One connection. ``send(bytes)`` feeds the client side; ``output()`` takes what we wrote."""

    def __init__(self, app: Any, *, limits: HTTPLimits | None = None, **settings: Any) -> None:
        super().__init__()
        settings.setdefault("server_header", b"")
        self.settings = HTTPSettings(app=app, loop=self.loop, reactor=self.clock, limits=limits or HTTPLimits(), **settings)
        self.protocol = HTTPProtocol(self.settings)
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8000), peerAddress=IPv4Address("TCP", "192.0.2.1", 40000)
        )
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)
        self.run()

    def output(self) -> bytes:
        value = self.transport.value()
        self.transport.clear()
        return value

    @property
    def closed(self) -> bool:
        """The server is done with the connection: closed, or lingering to close after an error
        answer (reading and throwing away what the client still sends)."""
        return bool(self.transport.disconnecting) or self.protocol.closing

    def disconnect(self) -> None:
        self.protocol.connectionLost(None)
        self.run()


def responses(data: bytes) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """Split raw response bytes into (status, headers, body) triples (content-length or chunked)."""
    out = []
    while data:
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.split(b": ", 1) for line in lines[1:])
        if b"content-length" in headers:
            n = int(headers[b"content-length"])
            body, data = data[:n], data[n:]
        elif headers.get(b"transfer-encoding") == b"chunked":
            body = b""
            while True:
                size_line, _, data = data.partition(b"\r\n")
                size = int(size_line, 16)
                if size == 0:
                    _, _, data = data.partition(b"\r\n")
                    break
                body += data[:size]
                data = data[size + 2:]
        else:
            body, data = data, b""
        out.append((status, headers, body))
    return out
