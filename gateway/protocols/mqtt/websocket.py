# -*- test-case-name: tests.unit.mqtt.test_websocket -*-
"""MQTT over WebSocket (MQTT 5.0 §6, 3.1.1 §6): autobahn frames, our MQTT connection.

The client offers the subprotocol ``mqtt`` (``mqttv3.1`` is accepted too) and sends MQTT
packets in binary frames ([MQTT-6.0.0-1]: any other frame closes the connection); packets may
span frames and frames may hold several packets, so frames are just a byte stream for
:class:`~.adapter.MqttConnection`.

Two ways to serve it:

* ``transport: websocket`` on an MQTT listener: :class:`MqttWebSocketFactory` on the listener's
  own endpoint (autobahn answers the HTTP handshake; other paths get 404);
* on a path of an HTTP listener: :func:`mount_websocket` installs :class:`MqttWebSocketMount`
  as the HTTP listener's WebSocket upgrade hook (``HTTPSettings.websocket``). For an upgrade
  request on the path, the mount takes the connection over from the HTTP protocol: it replays
  the request head (``request.raw_head`` plus ``protocol.conn.trailing_data``) into an autobahn
  protocol, which answers the handshake; the connection stays counted by the HTTP listener
  (whose drain then shuts it down the MQTT way, DISCONNECT 0x8B). Other requests go to the
  hook that was installed before (the application's WebSockets).
"""

from __future__ import annotations

from typing import Any

import txaio
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from gateway.listener import TrackingFactory
from gateway.metrics.stats import MqttStats
from gateway.protocols.mqtt.adapter import MqttConnection, MqttSettings, TransportSide
from gateway.protocols.transport import address_tuple, server_tuple

__all__ = ["MqttWebSocketFactory", "MqttWebSocketMount", "MqttWebSocketProtocol", "mount_websocket"]

log = Logger(namespace="gateway.mqtt")

#: Subprotocols accepted, in order of preference (mqttv3.1 is what old clients offer).
SUBPROTOCOLS = ("mqtt", "mqttv3.1")


@implementer(IPushProducer)
class MqttWebSocketProtocol(TransportSide, WebSocketServerProtocol):  # type: ignore[misc]  # autobahn's own bases disagree
    """One MQTT-over-WebSocket connection."""

    conn: MqttConnection | None = None
    tracker: Any = None  # the TrackingFactory that counts this connection
    client_override: Any = None  # the client address an HTTP listener resolved (proxies)
    _info: dict[str, Any] | None = None

    # -- autobahn callbacks -----------------------------------------------------------------

    def connectionMade(self) -> None:
        super().connectionMade()
        if self.tracker is None:
            self.tracker = getattr(self.factory, "tracker", None)
            if self.tracker is not None:
                self.tracker.connection_opened(self)

    def onConnect(self, request: Any) -> str:
        path = self.factory.mqtt_path
        if path is not None and request.path != path:
            raise ConnectionDeny(ConnectionDeny.NOT_FOUND, "not found")
        for offered in SUBPROTOCOLS:
            if offered in request.protocols:
                headers = [[name.encode("latin-1"), str(value).encode("latin-1")] for name, value in request.headers.items()]
                self._info = {"path": request.path, "headers": headers, "subprotocol": offered}
                return offered
        raise ConnectionDeny(ConnectionDeny.BAD_REQUEST, "the WebSocket subprotocol mqtt is required")

    def onOpen(self) -> None:
        transport = self.transport
        transport.registerProducer(self, True)
        client = self.client_override or address_tuple(transport.getPeer())
        self.conn = MqttConnection(
            self.factory.mqtt_settings, self, transport="websocket", client=client,
            server=server_tuple(transport.getHost()), extra={"websocket": self._info},
        )
        self.conn.start()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not isBinary:
            self.dropConnection(abort=True)  # [MQTT-6.0.0-1]
            return
        if self.conn is not None:
            self.conn.data_received(payload)

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.connection_lost()

    def connectionLost(self, reason: Any = None) -> None:
        super().connectionLost(reason)
        tracker, self.tracker = self.tracker, None
        if tracker is not None:
            tracker.connection_closed(self)

    # -- the io interface of MqttConnection ---------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.writes_paused:
            self.buffered += len(data)
        self.sendMessage(data, isBinary=True)

    def close(self) -> None:
        self.sendClose(1000)

    # -- the listener -------------------------------------------------------------------------

    def shutdown(self) -> None:
        """DISCONNECT 0x8B (5.0), then close; before the handshake completed: close."""
        if self.conn is not None:
            self.conn.shutdown()
        else:
            self.dropConnection(abort=False)

    def abort(self) -> None:
        """Close now."""
        self.transport.abortConnection()


class _Factory(WebSocketServerFactory):
    protocol = MqttWebSocketProtocol

    def __init__(self, settings: MqttSettings, path: str | None, allowed_origins: tuple[str, ...]) -> None:
        # autobahn's timers go through txaio: point it at our reactor, never the global import.
        txaio.use_twisted()
        txaio.config.loop = settings.reactor  # type: ignore[attr-defined]
        WebSocketServerFactory.__init__(self, reactor=settings.reactor, server=None)
        self.setProtocolOptions(
            allowedOrigins=list(allowed_origins),
            maxMessagePayloadSize=settings.options.max_packet_size + 8,
            autoFragmentSize=0,
            openHandshakeTimeout=10,
        )
        self.mqtt_settings = settings
        self.mqtt_path = path
        self.tracker: Any = None


class MqttWebSocketFactory(_Factory, TrackingFactory):
    """``transport: websocket``: MQTT over WebSocket on an MQTT listener's own endpoint."""

    noisy = False
    stats_class = MqttStats

    def __init__(self, settings: MqttSettings, *, path: str | None = "/mqtt",
                 allowed_origins: tuple[str, ...] = ("*",), max_connections: int | None = None) -> None:
        TrackingFactory.__init__(self, max_connections)
        _Factory.__init__(self, settings, path, allowed_origins)
        self.tracker = self

    def buildProtocol(self, addr: Any) -> MqttWebSocketProtocol:
        protocol = MqttWebSocketProtocol()
        protocol.factory = self
        return protocol


class MqttWebSocketMount:
    """An HTTP listener's WebSocket upgrade hook serving MQTT on one path.

    Args:
        settings: the MQTT settings (broker, limits, consumer) of the mounted endpoint.
        path: the URL path (exact match on the scope's ``path``).
        fallback: the hook that was installed before, for every other upgrade request.
    """

    def __init__(self, settings: MqttSettings, path: str = "/mqtt", *, fallback: Any = None,
                 allowed_origins: tuple[str, ...] = ("*",)) -> None:
        self.path = path
        self.fallback = fallback
        self.factory = _Factory(settings, None, allowed_origins)

    def __call__(self, protocol: Any, request: Any, scope: dict[str, Any]) -> bool:
        """Take the connection over when the request is for our path; else pass it on."""
        if scope.get("path") != self.path:
            return bool(self.fallback(protocol, request, scope)) if self.fallback is not None else False
        transport = protocol.transport
        head = bytes(request.raw_head) + bytes(getattr(protocol.conn, "trailing_data", b"") or b"")
        ws = MqttWebSocketProtocol()
        self.factory.isSecure = scope.get("scheme") == "wss"  # for autobahn's Origin check
        ws.factory = self.factory
        client = scope.get("client")
        ws.client_override = tuple(client) if client else None
        transport.unregisterProducer()  # the HTTP protocol was the producer
        if hasattr(transport, "wrappedProtocol"):
            transport.wrappedProtocol = ws  # TLS: TLSMemoryBIOProtocol delivers to it now
        else:
            transport.protocol = ws  # plain TCP
        tracker = getattr(protocol, "factory", None)
        if tracker is not None and hasattr(tracker, "connection_closed"):
            tracker.connection_closed(protocol)
            tracker.connection_opened(ws)
            ws.tracker = tracker
        ws.makeConnection(transport)
        ws.dataReceived(head)
        return True


def mount_websocket(http_settings: Any, settings: MqttSettings, path: str = "/mqtt",
                    allowed_origins: tuple[str, ...] = ("*",)) -> MqttWebSocketMount:
    """Serve MQTT over WebSocket at ``path`` of the HTTP listener whose settings these are.

    The one-call integration: ``mount_websocket(http_settings, mqtt_settings, "/mqtt")``
    chains in front of whatever ``http_settings.websocket`` hook was there.
    """
    mount = MqttWebSocketMount(settings, path, fallback=http_settings.websocket, allowed_origins=allowed_origins)
    http_settings.websocket = mount
    return mount
