# -*- test-case-name: tests.unit.mqtt -*-
"""The receiving half of :class:`~gateway.protocols.mqtt.connection.MqttServerConnection`:
connection state, packet decoding and dispatch, peer-error handling, output and timing.

The public class in :mod:`.connection` adds the contract and the upper layer's decisions on top.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from gateway.protocols.errors import LocalProtocolError, RemoteProtocolError
from gateway.protocols.mqtt import _handshake as handshake
from gateway.protocols.mqtt._inbound import InboundFlow
from gateway.protocols.mqtt._outbound import OutboundFlow
from gateway.protocols.mqtt.codec import MAX_PACKET_SIZE, decode, encode, peek_connect_level
from gateway.protocols.mqtt.events import (
    AuthReceived, ConnectionClosed, ConnectionState, ConnectReceived, DisconnectReceived, Event,
    PublishReceived, ServerOptions, SubscribeReceived, UnsubscribeReceived,
)
from gateway.protocols.mqtt.packets import (
    Auth, Connect, Disconnect, Packet, PingReq, PingResp, PubAck, PubComp, PubRec, PubRel,
    Publish, Subscribe, Unsubscribe,
)
from gateway.protocols.mqtt.properties import EMPTY_PROPERTIES, Properties
from gateway.protocols.mqtt.reasons import SERVER_DISCONNECT_CODES, PacketType, ReasonCode

__all__ = ["ReceivingCore"]

AWAITING_CONNECT = ConnectionState.AWAITING_CONNECT
CONNECTING = ConnectionState.CONNECTING
CONNECTED = ConnectionState.CONNECTED
CLOSED = ConnectionState.CLOSED


def peer_error(message: str, reason: ReasonCode) -> RemoteProtocolError:
    """A :class:`RemoteProtocolError` whose hint is ``reason``."""
    return RemoteProtocolError(message, hint=reason)


class ReceivingCore:
    """State, input processing and output shared by the server connection (see module doc)."""

    def __init__(self, options: ServerOptions | None = None) -> None:
        self._options = options if options is not None else ServerOptions()
        self._state = AWAITING_CONNECT
        self._level: int | None = None
        self._connect: Connect | None = None
        self._buffer = bytearray()
        self._events: list[Event] = []
        self._out: list[bytes] = []
        #: The peer error that closed the connection, if any.
        self.error: RemoteProtocolError | None = None
        # Time is stamped lazily by next_deadline()/handle_timeout(), which receive `now`.
        self._started: float | None = None
        self._last_seen = 0.0
        self._activity = False
        self._keep_alive = 0
        self._auth_method: str | None = None
        self._session_expiry = 0
        self._client_max_packet = MAX_PACKET_SIZE
        self._inbound = InboundFlow(self._options)
        self._outbound = OutboundFlow(self._options, self._out, self._write)
        self._handlers: dict[type, Callable[..., None]] = {
            Connect: self._on_connect,
            Publish: self._on_publish,
            PubAck: self._on_ack,
            PubRec: self._on_ack,
            PubComp: self._on_ack,
            PubRel: self._on_pubrel,
            Subscribe: self._on_subscribe,
            Unsubscribe: self._on_unsubscribe,
            PingReq: self._on_pingreq,
            Disconnect: self._on_disconnect,
            Auth: self._on_auth,
        }

    @property
    def paused(self) -> bool:
        """True while the adapter should stop reading from the transport.

        That is while the CONNECT awaits the upper layer's decision, and while as many QoS 1/2
        publishes await ``ack_publish()`` as our Receive Maximum (3.1.1 has no flow control,
        so this is its only back-pressure). The keep-alive deadline is suspended meanwhile:
        the slow side is ours.
        """
        if self._state is CONNECTING:
            return True
        return (
            self._state is CONNECTED
            and self._inbound.awaiting_app >= self._options.receive_maximum
        )

    # -- input --------------------------------------------------------------------------------

    def _drain(self) -> None:
        buffer = self._buffer
        if not buffer:
            return
        consumed = self._process(buffer)
        if self._state is CLOSED:
            self._buffer = bytearray()
        elif consumed:
            self._buffer = buffer[consumed:]  # a new bytearray: never resize a viewed buffer

    def _process(self, data: bytes | bytearray) -> int:
        """Decode and handle packets from ``data`` while the state allows; return bytes used."""
        pos = 0
        size = len(data)
        view = memoryview(data)
        max_size = self._options.max_packet_size
        try:
            while pos < size:
                state = self._state
                if state is CONNECTING:
                    # §3.1.4: nothing but AUTH (5.0, enhanced authentication) is processed
                    # before the CONNACK; the rest waits for accept(). Without an authentication
                    # method in the CONNECT an AUTH waits as well: it is a protocol error either
                    # way, reported the same whether it came with the CONNECT or after accept().
                    if self._level != 5 or self._auth_method is None or view[pos] >> 4 != PacketType.AUTH:
                        break
                elif state is CLOSED:
                    break
                packet, used = decode(
                    view[pos:] if pos else view,
                    protocol_level=self._level,
                    max_packet_size=max_size,
                )
                if packet is None:
                    break
                pos += used
                self._activity = True
                self._handlers.get(type(packet), self._on_unexpected)(packet)
        except RemoteProtocolError as exc:
            self._fail(exc, bytes(view[pos : pos + 16]))
        finally:
            view.release()
        return pos

    def _fail(self, exc: RemoteProtocolError, head: bytes) -> None:
        # A fresh exception: no traceback keeping frames (and memoryviews) alive.
        error = RemoteProtocolError(exc.message, hint=exc.hint)
        reason = exc.hint
        state = self._state
        if state is AWAITING_CONNECT or state is CONNECTING:
            level = self._level if self._level is not None else peek_connect_level(head)
            self._refuse(reason, level, EMPTY_PROPERTIES)
        elif self._level == 5:
            # §4.13.1: the server MAY send DISCONNECT with the reason before closing.
            code = reason if reason in SERVER_DISCONNECT_CODES else ReasonCode.PROTOCOL_ERROR
            self._write(Disconnect(code))
        self._close(reason, error, state is CONNECTED)

    def _refuse(self, reason: int, level: int | None, properties: Properties) -> None:
        answer = handshake.refusal(reason, level, self._state is CONNECTING)
        if answer is not None:
            connack, level = answer
            if level == 5 and properties:
                connack = replace(connack, properties=properties)
            self._write(connack, level)

    def _close(self, reason: int | None, error: RemoteProtocolError | None, will: bool) -> None:
        self._state = CLOSED
        self.error = error
        has_will = self._connect is not None and self._connect.will is not None
        self._events.append(ConnectionClosed(reason, will and has_will, error))

    def _on_connect(self, packet: Connect) -> None:
        if self._state is not AWAITING_CONNECT:
            raise peer_error("second CONNECT", ReasonCode.PROTOCOL_ERROR)  # [MQTT-3.1.0-2]
        level = packet.protocol_level
        self._level = self._inbound.level = self._outbound.level = level
        self._connect = packet
        handshake.check_connect(packet, self._options)
        if level == 5:
            props = packet.properties
            self._auth_method = props.authentication_method
            self._session_expiry = props.session_expiry_interval or 0
            outbound = self._outbound
            outbound.window = min(props.receive_maximum or 65535, outbound.window)
            if props.maximum_packet_size is not None:
                self._client_max_packet = outbound.max_packet_size = props.maximum_packet_size
            if self._options.outbound_topic_aliases:
                outbound.alias_maximum = props.topic_alias_maximum or 0
        self._keep_alive = packet.keep_alive
        self._state = CONNECTING
        self._events.append(ConnectReceived(packet))

    def _on_publish(self, packet: Publish) -> None:
        deliver, answer = self._inbound.on_publish(packet)
        if answer is not None:
            self._write(answer)
        if deliver is not None:
            self._events.append(PublishReceived(deliver))

    def _on_ack(self, packet: PubAck | PubRec | PubComp) -> None:
        outbound = self._outbound
        event: Event | None
        if isinstance(packet, PubAck):
            event = outbound.on_puback(packet)
        elif isinstance(packet, PubRec):
            event = outbound.on_pubrec(packet)
        else:
            event = outbound.on_pubcomp(packet)
        if event is not None:
            self._events.append(event)

    def _on_pubrel(self, packet: PubRel) -> None:
        self._write(self._inbound.on_pubrel(packet.packet_id))

    def _on_subscribe(self, packet: Subscribe) -> None:
        self._inbound.on_subscribe(packet)
        self._events.append(SubscribeReceived(packet))

    def _on_unsubscribe(self, packet: Unsubscribe) -> None:
        self._inbound.on_unsubscribe(packet.packet_id, len(packet.topic_filters))
        self._events.append(UnsubscribeReceived(packet))

    def _on_pingreq(self, packet: PingReq) -> None:
        self._write(PingResp())  # §3.12.4: the server MUST answer PINGREQ with PINGRESP

    def _on_disconnect(self, packet: Disconnect) -> None:
        expiry = packet.properties.session_expiry_interval
        if expiry and not self._session_expiry:
            # [MQTT-3.14.2-2]: a session the CONNECT made expire at once cannot be extended.
            raise peer_error("session expiry set on DISCONNECT", ReasonCode.PROTOCOL_ERROR)
        self._events.append(DisconnectReceived(ReasonCode(packet.reason_code), packet.properties))
        # §3.1.2.5: the Will is discarded on a DISCONNECT with reason 0x00 (any 3.1.1 one).
        self._close(packet.reason_code, None, packet.reason_code != 0)

    def _on_auth(self, packet: Auth) -> None:
        handshake.check_client_auth(packet, self._auth_method, self._state is CONNECTED)
        self._events.append(AuthReceived(ReasonCode(packet.reason_code), packet.properties))

    def _on_unexpected(self, packet: Packet) -> None:
        # CONNACK, SUBACK, UNSUBACK, PINGRESP only go from server to client.
        raise peer_error(f"{type(packet).__name__} sent to a server", ReasonCode.PROTOCOL_ERROR)

    # -- output and helpers -------------------------------------------------------------------

    def _write(self, packet: Any, level: int | None = None) -> None:
        """Encode ``packet`` (at ``level``, else the connection's) into the output."""
        level = level or self._level or 4
        data = encode(packet, level)
        props = getattr(packet, "properties", EMPTY_PROPERTIES)
        if len(data) > self._client_max_packet and props:
            # §3.2.2.3.9 etc.: Reason String and User Properties are the first to go when a
            # packet would exceed the client's Maximum Packet Size.
            slim = replace(props, reason_string=None, user_properties=())
            data = encode(replace(packet, properties=slim), level)
        self._out.append(data)

    def _require(self, state: ConnectionState, what: str) -> None:
        if self._state is not state:
            raise LocalProtocolError(f"{what}() in state {self._state.name}")

    def _observe(self, now: float) -> None:
        if self._started is None:
            self._started = now
        if self._activity:
            self._activity = False
            self._last_seen = now

    def _deadline(self) -> float | None:
        state = self._state
        if state is AWAITING_CONNECT:
            timeout = self._options.connect_timeout
            if timeout is None or self._started is None:
                return None
            return self._started + timeout
        if state is not CONNECTED or not self._keep_alive or self.paused:
            return None
        # §3.1.2.10: "within one and a half times the Keep Alive time period".
        return self._last_seen + 1.5 * self._keep_alive
