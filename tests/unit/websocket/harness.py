"""Drive a WebSocket upgrade through the real HTTP protocol on a StringTransport.

The client side is the ``websockets`` library's sans-IO ``ClientProtocol`` (or raw bytes); the
server runs on a ``MemoryReactorClock`` and a real asyncio loop, as in ``tests/unit/http``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame
from websockets.http11 import Response
from websockets.uri import parse_uri

from gateway.listener import TrackingFactory
from gateway.protocols.http.adapter import HTTPProtocol, HTTPSettings
from gateway.protocols.http.core import HTTPLimits
from gateway.protocols.websocket.config import WebSocketConfig
from gateway.protocols.websocket.listener import websocket_upgrade
from tests.unit.loop_harness import LoopHarness


class WSHarness(LoopHarness):
    """One connection to a listener with WebSocket support."""

    rounds = 10

    def __init__(self, app: Any, config: WebSocketConfig | None = None, *, application_close_timeout: float = 5.0,
                 **http_settings: Any) -> None:
        super().__init__()
        self.hook = websocket_upgrade(
            config or WebSocketConfig(), app=app, loop=self.loop, reactor=self.clock, server_name="gateway",
            application_close_timeout=application_close_timeout,
        )
        self.settings = HTTPSettings(app=app, loop=self.loop, reactor=self.clock, limits=HTTPLimits(),
                                     websocket=self.hook, server_header=b"server: gateway\r\n", **http_settings)
        self.factory = TrackingFactory()
        self.transport: StringTransport | None = None
        self.client: ClientProtocol | None = None

    # -- connecting ---------------------------------------------------------------------------

    def open_transport(self) -> StringTransport:
        http = HTTPProtocol(self.settings)
        http.factory = self.factory
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8000), peerAddress=IPv4Address("TCP", "192.0.2.1", 40000),
            lenient=True,
        )
        http.makeConnection(self.transport)
        self.http = http
        return self.transport

    def connect(self, path: str = "/", *, subprotocols: list[str] | None = None, deflate: bool = False,
                headers: dict[str, str] | None = None) -> Response:
        """Handshake with a real client; returns the server's response (101 or a denial)."""
        self.open_transport()
        extensions = [ClientPerMessageDeflateFactory()] if deflate else None
        self.client = ClientProtocol(parse_uri("ws://127.0.0.1:8000" + path), subprotocols=subprotocols,  # type: ignore[arg-type]
                                     extensions=extensions, max_size=None)
        request = self.client.connect()
        for name, value in (headers or {}).items():
            request.headers[name] = value
        self.client.send_request(request)
        self.flush_client()
        response = None
        self.pending: list[Any] = []
        for event in self.events():
            if isinstance(event, Response):
                response = event
            else:
                self.pending.append(event)  # frames that came right behind the response
        if response is None:
            raise AssertionError(f"no response; server wrote {self.written!r}")
        return response

    # -- traffic ------------------------------------------------------------------------------

    @property
    def protocol(self) -> Any:
        """The protocol the transport delivers to now (the WebSocket one after the upgrade)."""
        return getattr(self.transport, "protocol", self.http)

    def feed(self, data: bytes) -> None:
        """Bytes from the client."""
        self.protocol.dataReceived(data)
        self.run()

    def flush_client(self) -> None:
        assert self.client is not None
        for data in self.client.data_to_send():
            if data:
                self.feed(data)

    def output(self) -> bytes:
        assert self.transport is not None
        value = self.transport.value()
        self.transport.clear()
        return value

    def events(self) -> list[Any]:
        """What the client got since last time (a Response, then Frames)."""
        assert self.client is not None
        self.written = self.output()
        self.client.receive_data(self.written)
        pending, self.pending = getattr(self, "pending", []), []
        return pending + list(self.client.events_received())

    def frames(self) -> list[Frame]:
        return [event for event in self.events() if isinstance(event, Frame)]

    @property
    def closed(self) -> bool:
        """The server is done with the connection: closed, or (a refused upgrade, still the HTTP
        protocol's) lingering to close after its error answer."""
        assert self.transport is not None
        return bool(self.transport.disconnecting) or (self.transport.producer is self.http and self.http.closing)

    def lose(self) -> None:
        """The TCP connection went away (as Twisted reports it)."""
        self.protocol.connectionLost(None)
        self.run()


def masked(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, key: bytes = b"\x01\x02\x03\x04") -> bytes:
    """A client frame (RFC 6455 5.2), masked with ``key``."""
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class Recorder:
    """An application that records what it receives and does what a script says."""

    def __init__(self, script: Any = None) -> None:
        self.received: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []
        self.scope: dict[str, Any] | None = None
        self.script = script

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope
        self.receive, self.send = receive, send
        if self.script is not None:
            await self.script(self, receive, send)
            return
        await self.echo()

    async def echo(self, accept: dict[str, Any] | None = None) -> None:
        message = await self.receive()
        self.received.append(message)
        await self.send(accept or {"type": "websocket.accept"})
        while True:
            message = await self.receive()
            self.received.append(message)
            if message["type"] == "websocket.disconnect":
                return
            await self.send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})
