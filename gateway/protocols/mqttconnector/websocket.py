# -*- test-case-name: tests.integration.test_mqtt_connector -*-
"""A connector connection over WebSocket (``ws://``, ``wss://``; MQTT 5.0 §6): autobahn's client
frames, our MQTT connection.

The connector offers the subprotocol ``mqtt`` and sends its packets in binary frames
([MQTT-6.0.0-1]: a text frame from the broker closes the connection); frames are a byte stream for
:class:`~.adapter.ConnectorConnection`, which starts once the WebSocket handshake is done.
"""

from __future__ import annotations

from typing import Any

import txaio
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from gateway.protocols.mqtt.adapter import TransportSide
from gateway.protocols.mqttconnector.adapter import Connector, ConnectorConnection, failure_text
from gateway.protocols.transport import address_tuple, server_tuple

__all__ = ["ConnectorWebSocketProtocol", "client_protocol"]


@implementer(IPushProducer)
class ConnectorWebSocketProtocol(TransportSide, WebSocketClientProtocol):  # type: ignore[misc]  # autobahn's own bases disagree
    """One connector connection over WebSocket: the transport side of :class:`ConnectorConnection`
    (flow control and TLS details from :class:`TransportSide`)."""

    connector: Connector
    conn: ConnectorConnection | None = None
    _lost_reason: str | None = None

    # -- autobahn callbacks -----------------------------------------------------------------

    def onOpen(self) -> None:
        transport = self.transport
        transport.registerProducer(self, True)
        self.conn = ConnectorConnection(
            self.connector, self, client=address_tuple(transport.getPeer()), server=server_tuple(transport.getHost()),
            websocket_path=self.connector.address.path,
        )
        self.conn.start()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not isBinary:
            self._lost_reason = "the broker sent a text frame"
            self.dropConnection(abort=True)  # [MQTT-6.0.0-1]
            return
        if self.conn is not None:
            self.conn.data_received(payload)

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.connection_lost(self._lost_reason or (f"WebSocket closed ({code})" if code else None))

    def connectionLost(self, reason: Any = None) -> None:
        self._lost_reason = self._lost_reason or failure_text(reason)
        super().connectionLost(reason)
        conn, self.conn = self.conn, None
        if conn is not None:  # the handshake never completed: onClose saw no connection
            conn.connection_lost(self._lost_reason)

    # -- the io interface ---------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.writes_paused:
            self.buffered += len(data)
        self.sendMessage(data, isBinary=True)

    def close(self) -> None:
        self.sendClose(1000)

    def abort(self) -> None:
        self.transport.abortConnection()


def client_protocol(connector: Connector) -> ConnectorWebSocketProtocol:
    """A protocol for one WebSocket connection of ``connector`` (connect it to the broker's
    TCP or TLS endpoint)."""
    # autobahn's timers go through txaio: point it at our reactor, never the global import.
    txaio.use_twisted()
    txaio.config.loop = connector.reactor  # type: ignore[attr-defined]
    address = connector.address
    factory = WebSocketClientFactory(address.url, protocols=["mqtt"], reactor=connector.reactor)
    factory.setProtocolOptions(
        autoFragmentSize=0,
        maxMessagePayloadSize=connector.options.max_packet_size + 8,
        openHandshakeTimeout=float(connector.config.timeouts.connect),
        failByDrop=False,
    )
    protocol = ConnectorWebSocketProtocol()
    protocol.factory = factory
    protocol.connector = connector
    return protocol
