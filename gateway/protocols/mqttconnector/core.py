# -*- test-case-name: tests.unit.mqttconnector.test_core -*-
"""The client side of one MQTT 3.1.1 / 5.0 connection, sans-IO: the connector's wire core.

It speaks to a broker with the project's one MQTT implementation: packets from
:mod:`gateway.protocols.mqtt.codec`, and the same two flows as the server core
(:class:`~gateway.protocols.mqtt.inbound.InboundFlow` for the messages the broker sends us,
acknowledged only once handled; :class:`~gateway.protocols.mqtt.outbound.OutboundFlow` for ours:
packet identifiers, QoS 1/2 exchanges, the broker's Receive Maximum, queueing, re-sending on
resume). The contract is the server core's, turned around::

    conn = MqttClientConnection(ClientOptions(...))
    conn.connect(Connect(...), session=None)  # CONNECT; then wait for ConnAckReceived
    conn.receive_data(data)                   # bytes from the broker; b"" when the connection ended
    conn.events_received() -> list            # what the broker did
    conn.subscribe() / unsubscribe() / publish() / ack_publish() / disconnect()
    conn.data_to_send() -> bytes              # for the transport
    conn.next_deadline(now)                   # when to call handle_timeout(now); time is passed in
    conn.closed, conn.paused                  # close the transport / stop reading

**The adapter** keeps one flush point: after ``connect()``, every ``receive_data()``, every
decision and every ``handle_timeout()``, it handles ``events_received()``, writes
``data_to_send()``, closes the transport once ``closed``, pauses or resumes reading on
``paused``, and re-arms its one timer at ``next_deadline(reactor.seconds())``.

**Time** is never read. ``next_deadline(now)`` stamps "now" on what happened since its previous
call: its first call after ``connect()`` starts the CONNACK timeout
(``ClientOptions.connack_timeout``); bytes handed out by ``data_to_send()`` move the keep-alive
clock: when nothing was sent for the keep-alive (the broker's Server Keep Alive in 5.0), a
PINGREQ goes out ([MQTT-3.1.2-20]); when nothing at all comes back within another keep-alive,
the connection closes (``ConnectionClosed`` with an error; no DISCONNECT: the broker is not
listening). While reading is paused (our side is slow) the answer is not expected.

**Errors.** What the broker sends against the protocol is *reported*: the connection queues a
DISCONNECT with the error's reason (5.0, a reason a client may send, else 0x82), moves to
``CLOSED`` and ends the events with :class:`~gateway.protocols.mqtt.events.ConnectionClosed`
whose ``error`` is the :class:`~gateway.protocols.errors.RemoteProtocolError`. A refusing
CONNACK gives :class:`ConnAckReceived` then ``ConnectionClosed``. A 3.1.1 CONNACK answering our
5.0 CONNECT (a broker without 5.0) is read as the refusal it is (0x84). Misuse raises
:class:`~gateway.protocols.errors.LocalProtocolError`.

**Acknowledge after handling.** A QoS 1/2 PUBLISH from the broker is answered (PUBACK/PUBREC)
only when the upper layer calls ``ack_publish()``; ``paused`` asks the adapter to stop reading
while our Receive Maximum of them wait (3.1.1's only back-pressure). PUBREL/PUBCOMP and PINGREQ
are the connection's.

**Sessions.** ``connect(packet, session=...)`` takes the :class:`SessionState` of the previous
connection (``session_state()`` once it closed, plus messages published meanwhile as
``queued``). When the CONNACK says the broker kept the session, unacknowledged messages are
re-sent with their identifiers and DUP, PUBRELs re-sent, queued messages sent as the broker's
Receive Maximum allows (§4.4). When it did not (a new session), the messages the broker never
acknowledged are sent again as new messages (QoS 1/2 are at least once; a QoS 2 message the
broker already PUBREC'd is its own and is not sent twice), and the identifiers of the old
session are forgotten ([MQTT-3.2.2-5]).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Callable, Union

from gateway.protocols.errors import LocalProtocolError, RemoteProtocolError
from gateway.protocols.mqtt.codec import MAX_PACKET_SIZE, decode, encode
from gateway.protocols.mqtt.core import payload_format_invalid
from gateway.protocols.mqtt.events import (
    ConnectionClosed, DisconnectReceived, PubAckReceived, PubCompReceived, PublishReceived, PublishStatus,
    PubRecReceived, ServerOptions, SessionState,
)
from gateway.protocols.mqtt.inbound import InboundFlow
from gateway.protocols.mqtt.outbound import OutboundFlow
from gateway.protocols.mqtt.packets import (
    ConnAck, Connect, Disconnect, Packet, PingResp, PubAck, PubComp, PubRec, PubRel, Publish, SubAck, Subscribe,
    Subscription, UnsubAck, Unsubscribe,
)
from gateway.protocols.mqtt.properties import EMPTY_PROPERTIES, Properties
from gateway.protocols.mqtt.reasons import ReasonCode
from gateway.protocols.mqtt.topics import InvalidTopicError, validate_topic_name

__all__ = [
    "CLIENT_DISCONNECT_CODES", "ClientEvent", "ClientOptions", "ClientState", "ConnAckReceived",
    "MqttClientConnection", "SubAckReceived", "UnsubAckReceived",
]

R = ReasonCode

#: The DISCONNECT reasons a client may send (5.0 §3.14.2.1, "Sent by: Client" or both).
CLIENT_DISCONNECT_CODES: frozenset[int] = frozenset({
    R.NORMAL_DISCONNECTION, R.DISCONNECT_WITH_WILL_MESSAGE, R.UNSPECIFIED_ERROR, R.MALFORMED_PACKET,
    R.PROTOCOL_ERROR, R.IMPLEMENTATION_SPECIFIC_ERROR, R.TOPIC_NAME_INVALID, R.RECEIVE_MAXIMUM_EXCEEDED,
    R.TOPIC_ALIAS_INVALID, R.PACKET_TOO_LARGE, R.MESSAGE_RATE_TOO_HIGH, R.QUOTA_EXCEEDED,
    R.ADMINISTRATIVE_ACTION, R.PAYLOAD_FORMAT_INVALID,
})

# CONNECT properties the connection sets from ClientOptions; the caller may not.
_MANAGED = ("receive_maximum", "maximum_packet_size", "topic_alias_maximum")


class ClientState(Enum):
    """The states of a client connection."""

    #: Nothing sent yet: call ``connect()``.
    IDLE = "idle"
    #: CONNECT sent; waiting for the broker's CONNACK (the CONNACK timeout runs).
    AWAITING_CONNACK = "awaiting_connack"
    #: CONNACK 0x00 received; the session runs.
    CONNECTED = "connected"
    #: Finished; ``data_to_send()`` may still hold a last DISCONNECT.
    CLOSED = "closed"


IDLE = ClientState.IDLE
AWAITING_CONNACK = ClientState.AWAITING_CONNACK
CONNECTED = ClientState.CONNECTED
CLOSED = ClientState.CLOSED


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Our limits as a client, advertised in a 5.0 CONNECT and enforced on receive."""

    #: Our Receive Maximum: QoS 1/2 publishes the broker may have unacknowledged with us.
    receive_maximum: int = 64
    #: Largest packet we accept from the broker, fixed header included (0x95 above it).
    max_packet_size: int = 1_048_576
    #: Topic aliases the broker may use in what it sends us (5.0; 0 = none).
    topic_alias_maximum: int = 0
    #: Seconds from ``connect()`` (the first ``next_deadline``) to the CONNACK; None = forever.
    connack_timeout: float | None = 10.0
    #: Cap on our QoS 1/2 messages in flight, on top of the broker's Receive Maximum.
    max_outbound_inflight: int = 65535

    def __post_init__(self) -> None:
        """Reject values the protocol cannot express."""
        if not 1 <= self.receive_maximum <= 65535:
            raise ValueError("receive_maximum must be in 1..65535")
        if not 2 <= self.max_packet_size <= MAX_PACKET_SIZE:
            raise ValueError(f"max_packet_size must be in 2..{MAX_PACKET_SIZE}")
        if not 0 <= self.topic_alias_maximum <= 65535:
            raise ValueError("topic_alias_maximum must be in 0..65535")
        if not 1 <= self.max_outbound_inflight <= 65535:
            raise ValueError("max_outbound_inflight must be in 1..65535")

    def flow_options(self) -> ServerOptions:
        """The options the shared flows read (our side of the limits; no queue cap: the
        connector bounds what it hands over)."""
        return ServerOptions(
            max_packet_size=self.max_packet_size, receive_maximum=self.receive_maximum,
            topic_alias_maximum=self.topic_alias_maximum, connect_timeout=None,
            max_outbound_inflight=self.max_outbound_inflight, max_queued_messages=None,
        )


@dataclass(frozen=True, slots=True)
class ConnAckReceived:
    """The broker's CONNACK. ``packet.reason_code`` 0 (3.1.1: return code 0) accepts; anything
    else refused the connection, and :class:`ConnectionClosed` follows."""

    packet: ConnAck


@dataclass(frozen=True, slots=True)
class SubAckReceived:
    """The answer to ``subscribe()``: granted QoS 0/1/2 or a failure (>= 0x80) per filter."""

    packet_id: int
    reason_codes: tuple[int, ...]
    properties: Properties = EMPTY_PROPERTIES


@dataclass(frozen=True, slots=True)
class UnsubAckReceived:
    """The answer to ``unsubscribe()`` (3.1.1: no reason codes, ``()``)."""

    packet_id: int
    reason_codes: tuple[int, ...]
    properties: Properties = EMPTY_PROPERTIES


#: Anything ``events_received()`` returns.
ClientEvent = Union[
    ConnAckReceived, PublishReceived, PubAckReceived, PubRecReceived, PubCompReceived, SubAckReceived,
    UnsubAckReceived, DisconnectReceived, ConnectionClosed,
]


def _peer_error(message: str, reason: int = R.PROTOCOL_ERROR) -> RemoteProtocolError:
    return RemoteProtocolError(message, hint=reason)


class MqttClientConnection:
    """The client side of one MQTT connection (see the module documentation).

    Args:
        options: our limits; defaults to ``ClientOptions()``.
    """

    def __init__(self, options: ClientOptions | None = None) -> None:
        self._options = options if options is not None else ClientOptions()
        self._state = IDLE
        self._level = 5
        self._connect: Connect | None = None
        self._session: SessionState | None = None
        self._subscriptions: tuple[Subscription, ...] = ()
        #: The packet identifier of the SUBSCRIBE sent on the CONNACK, if any.
        self.subscribe_packet_id: int | None = None
        self._buffer = bytearray()
        self._events: list[ClientEvent] = []
        self._out: list[bytes] = []
        #: The broker's error that closed the connection, if any.
        self.error: RemoteProtocolError | None = None
        #: The CONNACK, once received.
        self.connack: ConnAck | None = None
        flow = self._options.flow_options()
        self._inbound = InboundFlow(flow, from_server=True)
        self._outbound = OutboundFlow(flow, self._out)
        self._requests: dict[int, int] = {}  # SUBSCRIBE/UNSUBSCRIBE packet id -> filters
        self._pending = 0  # our QoS 1/2 messages not yet completed (sent, in flight or queued)
        self._maximum_qos = 2
        self._retain_available = True
        # Time, stamped lazily by next_deadline()/handle_timeout().
        self._keep_alive = 0
        self._started: float | None = None
        self._last_sent = 0.0
        self._sent = False
        self._activity = False
        self._ping_sent: float | None = None

    # -- state --------------------------------------------------------------------------------

    @property
    def state(self) -> ClientState:
        """The current :class:`ClientState`."""
        return self._state

    @property
    def closed(self) -> bool:
        """True once the connection is over: write ``data_to_send()``, then close."""
        return self._state is CLOSED

    @property
    def protocol_level(self) -> int:
        """4 (3.1.1) or 5 (5.0): the level of the CONNECT."""
        return self._level

    @property
    def keep_alive(self) -> int:
        """The keep-alive in force, in seconds (the broker's Server Keep Alive once it said)."""
        return self._keep_alive

    @property
    def paused(self) -> bool:
        """True while the adapter should stop reading: our Receive Maximum of the broker's QoS
        1/2 publishes await ``ack_publish()``."""
        return self._state is CONNECTED and self._inbound.awaiting_app >= self._options.receive_maximum

    @property
    def outbound_pending(self) -> int:
        """Our QoS 1/2 messages the broker has not completed yet (in flight or queued)."""
        return self._pending

    @property
    def maximum_qos(self) -> int:
        """The broker's Maximum QoS (2 unless its CONNACK said less)."""
        return self._maximum_qos

    # -- the contract -------------------------------------------------------------------------

    def connect(self, packet: Connect, session: SessionState | None = None,
                subscriptions: tuple[Subscription, ...] = ()) -> None:
        """Send the CONNECT; once accepted, SUBSCRIBE to ``subscriptions`` (its packet identifier
        is :attr:`subscribe_packet_id`) and resume ``session`` (see the module documentation),
        in that order, so that the session's messages reach subscriptions of our own.

        The 5.0 limits of :class:`ClientOptions` (Receive Maximum, Maximum Packet Size, Topic
        Alias Maximum) are added here and may not be set in ``packet.properties``. Then call
        ``data_to_send()`` and ``next_deadline()``.

        Raises:
            LocalProtocolError: called twice, or an invalid CONNECT.
        """
        if self._state is not IDLE:
            raise LocalProtocolError(f"connect() in state {self._state.name}")
        if packet.protocol_level not in (4, 5):
            raise LocalProtocolError(f"protocol level {packet.protocol_level!r} is not 4 or 5")
        if packet.protocol_level == 5:
            given = packet.properties
            for name in _MANAGED:
                if getattr(given, name) is not None:
                    raise LocalProtocolError(f"{name} is set by the connection from ClientOptions")
            options = self._options
            packet = replace(packet, properties=replace(
                given,
                receive_maximum=options.receive_maximum if options.receive_maximum < 65535 else None,
                maximum_packet_size=options.max_packet_size if options.max_packet_size < MAX_PACKET_SIZE else None,
                topic_alias_maximum=options.topic_alias_maximum or None,
            ))
        self._out.append(encode(packet, packet.protocol_level))
        self._level = self._inbound.level = self._outbound.level = packet.protocol_level
        if subscriptions:
            encode(Subscribe(1, subscriptions), packet.protocol_level)  # checked now, sent on the CONNACK
        self._connect = packet
        self._session = session
        self._subscriptions = subscriptions
        self._keep_alive = packet.keep_alive
        self._state = AWAITING_CONNACK

    def receive_data(self, data: bytes) -> None:
        """Feed bytes received from the broker; ``b""`` means the connection ended.

        Then call ``events_received()`` and ``data_to_send()``. Data after the connection
        closed is ignored.
        """
        if self._state is CLOSED:
            return
        if not data:
            self._close(None, None)
            return
        buffer = self._buffer
        if buffer:
            buffer += data  # no view of it is alive between calls
            consumed = self._process(buffer)
            if self._state is not CLOSED and consumed:
                self._buffer = buffer[consumed:]  # a new bytearray: never resize a viewed buffer
            return
        consumed = self._process(data)  # the fast path: no copy when nothing is buffered
        if self._state is not CLOSED and consumed < len(data):
            self._buffer = bytearray(data[consumed:])

    def events_received(self) -> list[ClientEvent]:
        """Return (and forget) the events produced since the last call, in order."""
        events = self._events
        self._events = []
        return events

    def data_to_send(self) -> bytes:
        """Return (and forget) the bytes to write to the transport."""
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()  # the same list object: the outbound flow appends to it
        self._sent = True
        return data

    def next_deadline(self, now: float) -> float | None:
        """When ``handle_timeout()`` must run next (same clock as ``now``), or None; also
        stamps ``now`` on what was sent and received since the previous call."""
        self._observe(now)
        return self._deadline()

    def handle_timeout(self, now: float) -> None:
        """Act on an expired deadline: the CONNACK timeout, a PINGREQ due, or a broker that
        stopped answering. Then call ``events_received()`` and ``data_to_send()``."""
        self._observe(now)
        state = self._state
        if state is AWAITING_CONNACK:
            timeout = self._options.connack_timeout
            if timeout is not None and self._started is not None and now >= self._started + timeout:
                self._close(None, RemoteProtocolError(f"no CONNACK within {timeout:g}s"))
            return
        if state is not CONNECTED or not self._keep_alive:
            return
        keep_alive = self._keep_alive
        if self._ping_sent is not None and not self.paused and now >= self._ping_sent + keep_alive:
            error = _peer_error(f"nothing received from the broker for {keep_alive}s after a PINGREQ",
                                R.KEEP_ALIVE_TIMEOUT)
            self._close(R.KEEP_ALIVE_TIMEOUT, error)
            return
        if now >= self._last_sent + keep_alive:
            self._out.append(b"\xc0\x00")  # PINGREQ
            self._sent = True
            self._last_sent = now
            if self._ping_sent is None:
                self._ping_sent = now

    # -- decisions of the upper layer ---------------------------------------------------------

    def subscribe(self, subscriptions: list[Subscription] | tuple[Subscription, ...],
                  properties: Properties = EMPTY_PROPERTIES) -> int:
        """Send SUBSCRIBE; returns its packet identifier (a :class:`SubAckReceived` answers).

        Raises:
            LocalProtocolError: not connected, or an invalid subscription.
        """
        self._require_connected("subscribe")
        packet_id = self._outbound.reserve_id()
        try:
            data = encode(Subscribe(packet_id, tuple(subscriptions), properties), self._level)
        except LocalProtocolError:
            self._outbound.release_id(packet_id)
            raise
        self._out.append(data)
        self._requests[packet_id] = len(subscriptions)
        return packet_id

    def unsubscribe(self, topic_filters: list[str] | tuple[str, ...],
                    properties: Properties = EMPTY_PROPERTIES) -> int:
        """Send UNSUBSCRIBE; returns its packet identifier (an :class:`UnsubAckReceived` answers)."""
        self._require_connected("unsubscribe")
        packet_id = self._outbound.reserve_id()
        try:
            data = encode(Unsubscribe(packet_id, tuple(topic_filters), properties), self._level)
        except LocalProtocolError:
            self._outbound.release_id(packet_id)
            raise
        self._out.append(data)
        self._requests[packet_id] = -len(topic_filters)
        return packet_id

    def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False,
                properties: Properties = EMPTY_PROPERTIES) -> PublishStatus:
        """Publish a message to the broker; return what became of it.

        QoS above the broker's Maximum QoS is lowered to it ([MQTT-3.2.2-11]). QoS 1/2 messages
        get a packet identifier and stay in the session until the broker completes them; beyond
        its Receive Maximum they are queued (§4.9). A message larger than the broker's Maximum
        Packet Size is dropped. Properties are dropped for 3.1.1. Then call ``data_to_send()``.

        Raises:
            LocalProtocolError: not connected; an invalid topic, QoS or property; RETAIN to a
                broker without retained messages.
        """
        self._require_connected("publish")
        if qos not in (0, 1, 2):
            raise LocalProtocolError(f"QoS {qos!r} is not 0, 1 or 2")
        try:
            validate_topic_name(topic)
        except InvalidTopicError as exc:
            raise LocalProtocolError(f"topic name {topic!r}: {exc}") from None
        if retain and not self._retain_available:
            raise LocalProtocolError("the broker does not support retained messages (Retain Available 0)")
        if properties is not EMPTY_PROPERTIES:
            if properties.topic_alias is not None or properties.subscription_identifiers:
                raise LocalProtocolError("topic aliases and subscription identifiers are not the publisher's")
            if self._level == 5:
                encode(Publish(topic, b"", 0, False, False, None, properties), 5)  # checks the properties
        if qos > self._maximum_qos:
            qos = self._maximum_qos
        status = self._outbound.publish(topic, payload, qos, retain, properties)
        if qos and status is not PublishStatus.DROPPED:
            self._pending += 1
        return status

    def ack_publish(self, packet_id: int, reason_code: int = R.SUCCESS,
                    properties: Properties = EMPTY_PROPERTIES) -> None:
        """Acknowledge the broker's QoS 1/2 PUBLISH once it has been handled (PUBACK/PUBREC; a
        5.0 reason >= 0x80 refuses it: the broker does not send it again). Does nothing once
        closed (the broker sends unacknowledged messages again on the next connection). Then
        call ``data_to_send()``."""
        if self._state is CLOSED:
            return
        self._require_connected("ack_publish")
        inbound = self._inbound
        answer = inbound.ack(packet_id, reason_code, properties)
        if isinstance(answer, bytes):
            self._out.append(answer)
        else:
            self._out.append(encode(answer, self._level))
        inbound.acked(packet_id, reason_code)
        if inbound.awaiting_app + 1 == self._options.receive_maximum:
            self._activity = True  # reading resumes (see `paused`): the broker's answers count again

    def disconnect(self, reason_code: int = R.NORMAL_DISCONNECTION, properties: Properties = EMPTY_PROPERTIES) -> None:
        """End the connection from our side: DISCONNECT (5.0 with ``reason_code``, one a client
        may send), then close. Before the CONNACK the connection just closes. Does nothing
        once closed. Then call ``events_received()`` and ``data_to_send()``."""
        state = self._state
        if state is CLOSED:
            return
        if state is CONNECTED:
            if self._level == 5:
                if reason_code not in CLIENT_DISCONNECT_CODES:
                    raise LocalProtocolError(f"0x{reason_code:02X} is not a client DISCONNECT reason")
                self._out.append(encode(Disconnect(reason_code, properties), 5))
            else:
                self._out.append(b"\xe0\x00")
        self._close(reason_code, None)

    def session_state(self) -> SessionState:
        """A snapshot of the session's protocol state, for the next connection's ``connect()``.

        Before a CONNACK accepted this connection, the session handed to ``connect()`` is
        returned unchanged (nothing of it was resumed yet).
        """
        if self.connack is None or self.connack.reason_code:
            return self._session if self._session is not None else SessionState()
        outbound, queued, next_id = self._outbound.snapshot()
        return SessionState(outbound, queued, self._inbound.released(), next_id)

    # -- input --------------------------------------------------------------------------------

    def _process(self, data: bytes | bytearray) -> int:
        """Decode and handle packets from ``data``; return the bytes used."""
        pos = 0
        size = len(data)
        view = memoryview(data)
        max_size = self._options.max_packet_size
        try:
            while pos < size and self._state is not CLOSED:
                if self._state is AWAITING_CONNACK and self._level == 5 and data[pos:pos + 2] == b"\x20\x02":
                    # A 5.0 CONNACK is at least 3 bytes long: this is a 3.1.1 broker's answer.
                    packet, used = decode(view[pos:], protocol_level=4, max_packet_size=max_size)
                    if packet is not None:
                        pos += used
                        self._old_broker(packet)
                    break
                packet, used = decode(view[pos:] if pos else view, protocol_level=self._level,
                                      max_packet_size=max_size)
                if packet is None:
                    break
                pos += used
                self._activity = True
                _HANDLERS.get(type(packet), _ON_UNEXPECTED)(self, packet)
        except RemoteProtocolError as exc:
            self._fail(exc)
        finally:
            view.release()
        return pos

    def _fail(self, exc: RemoteProtocolError) -> None:
        error = RemoteProtocolError(exc.message, hint=exc.hint)  # no traceback holding frames
        if self._state is CONNECTED and self._level == 5:
            code = exc.hint if exc.hint in CLIENT_DISCONNECT_CODES else R.PROTOCOL_ERROR
            self._out.append(encode(Disconnect(code), 5))
        self._close(exc.hint, error)

    def _close(self, reason: int | None, error: RemoteProtocolError | None) -> None:
        self._state = CLOSED
        self.error = error
        self._buffer = bytearray()
        self._events.append(ConnectionClosed(reason, False, error))

    def _old_broker(self, packet: Any) -> None:
        self.connack = ConnAck(False, R.UNSUPPORTED_PROTOCOL_VERSION)
        self._events.append(ConnAckReceived(self.connack))
        self._close(R.UNSUPPORTED_PROTOCOL_VERSION, None)

    def _on_connack(self, packet: ConnAck) -> None:
        if self._state is not AWAITING_CONNACK:
            raise _peer_error("a second CONNACK")
        connect = self._connect
        if connect is not None and packet.session_present and connect.clean_start:
            raise _peer_error("CONNACK with Session Present for a clean start")  # [MQTT-3.2.2-2]
        self.connack = packet
        if packet.reason_code:
            self._events.append(ConnAckReceived(packet))
            self._close(packet.reason_code, None)
            return
        self._state = CONNECTED
        outbound = self._outbound
        if self._level == 5:
            props = packet.properties
            outbound.window = min(props.receive_maximum or 65535, self._options.max_outbound_inflight)
            if props.maximum_packet_size is not None:
                outbound.max_packet_size = props.maximum_packet_size
            if props.maximum_qos is not None:
                self._maximum_qos = props.maximum_qos
            if props.retain_available is False:
                self._retain_available = False
            if props.server_keep_alive is not None:
                self._keep_alive = props.server_keep_alive
        self._events.append(ConnAckReceived(packet))
        if self._subscriptions:
            self.subscribe_packet_id = self.subscribe(self._subscriptions)
        session = self._session
        if session is not None:
            if packet.session_present:
                # §4.4: the broker kept the session: re-send with the original identifiers.
                self._inbound.restore(session.inbound_qos2)
                outbound.restore(session.outbound, session.queued, session.next_packet_id)
                self._pending = len(session.outbound) + len(session.queued)
            else:
                # A new session: what the broker never took is sent again, as new messages.
                again = tuple(m.publish for m in session.outbound if not m.released) + session.queued
                outbound.restore((), again, session.next_packet_id)
                self._pending = len(again)
        outbound.pump()

    def _on_publish(self, packet: Publish) -> None:
        if self._state is not CONNECTED:
            raise _peer_error("PUBLISH before the CONNACK")
        deliver, answer = self._inbound.on_publish(packet)
        if answer is not None:
            self._out.append(encode(answer, self._level))
        if deliver is not None:
            if deliver.properties is not EMPTY_PROPERTIES and payload_format_invalid(deliver):
                # §3.3.2.3.2: a payload that claims to be UTF-8 and is not is refused.
                if deliver.packet_id is None:
                    raise _peer_error("the payload is not the UTF-8 it claims to be", R.PAYLOAD_FORMAT_INVALID)
                self.ack_publish(deliver.packet_id, R.PAYLOAD_FORMAT_INVALID)
                return
            self._events.append(PublishReceived(deliver))

    def _on_ack(self, packet: PubAck | PubRec | PubComp) -> None:
        if self._state is not CONNECTED:
            raise _peer_error(f"{type(packet).__name__} before the CONNACK")
        outbound = self._outbound
        event: PubAckReceived | PubRecReceived | PubCompReceived | None
        if isinstance(packet, PubAck):
            event = outbound.on_puback(packet)
            done = event is not None
        elif isinstance(packet, PubRec):
            event = outbound.on_pubrec(packet)
            done = event is not None and packet.reason_code >= 0x80
        else:
            event = outbound.on_pubcomp(packet)
            done = event is not None
        if event is not None:
            if done:
                self._pending -= 1
            self._events.append(event)

    def _on_pubrel(self, packet: PubRel) -> None:
        if self._state is not CONNECTED:
            raise _peer_error("PUBREL before the CONNACK")
        self._out.append(encode(self._inbound.on_pubrel(packet.packet_id), self._level))

    def _on_suback(self, packet: SubAck | UnsubAck) -> None:
        count = self._requests.get(packet.packet_id)
        unsubscribe = isinstance(packet, UnsubAck)
        what = "UNSUBACK" if unsubscribe else "SUBACK"
        if count is None or (count < 0) != unsubscribe:
            raise _peer_error(f"{what} for packet id {packet.packet_id}, which awaits none")
        if (packet.reason_codes or not unsubscribe) and len(packet.reason_codes) != abs(count):
            raise _peer_error(f"{what} with {len(packet.reason_codes)} reason codes for {abs(count)} filters")
        del self._requests[packet.packet_id]
        self._outbound.release_id(packet.packet_id)
        cls = UnsubAckReceived if unsubscribe else SubAckReceived
        self._events.append(cls(packet.packet_id, tuple(packet.reason_codes), packet.properties))

    def _on_pingresp(self, packet: PingResp) -> None:
        pass  # any packet shows the broker is there (stamped by _observe)

    def _on_disconnect(self, packet: Disconnect) -> None:
        self._events.append(DisconnectReceived(R(packet.reason_code), packet.properties))
        self._close(packet.reason_code, None)

    def _on_unexpected(self, packet: Packet) -> None:
        # CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ only go from client to server; AUTH needs an
        # authentication method we never send.
        raise _peer_error(f"{type(packet).__name__} sent to a client")

    # -- helpers ------------------------------------------------------------------------------

    def _require_connected(self, what: str) -> None:
        if self._state is not CONNECTED:
            raise LocalProtocolError(f"{what}() in state {self._state.name}")

    def _observe(self, now: float) -> None:
        if self._started is None and self._state is not IDLE:
            self._started = now
        if self._sent:
            self._sent = False
            self._last_sent = now
        if self._activity:
            self._activity = False
            self._ping_sent = None  # the broker is there

    def _deadline(self) -> float | None:
        state = self._state
        if state is AWAITING_CONNACK:
            timeout = self._options.connack_timeout
            if timeout is None or self._started is None:
                return None
            return self._started + timeout
        if state is not CONNECTED or not self._keep_alive:
            return None
        deadline = self._last_sent + self._keep_alive
        if self._ping_sent is not None and not self.paused:
            deadline = min(deadline, self._ping_sent + self._keep_alive)
        return deadline


# What each packet from the broker does (functions of the class, not bound methods: no cycles).
_HANDLERS: dict[type, Callable[[MqttClientConnection, Any], None]] = {
    ConnAck: MqttClientConnection._on_connack,
    Publish: MqttClientConnection._on_publish,
    PubAck: MqttClientConnection._on_ack,
    PubRec: MqttClientConnection._on_ack,
    PubComp: MqttClientConnection._on_ack,
    PubRel: MqttClientConnection._on_pubrel,
    SubAck: MqttClientConnection._on_suback,
    UnsubAck: MqttClientConnection._on_suback,
    PingResp: MqttClientConnection._on_pingresp,
    Disconnect: MqttClientConnection._on_disconnect,
}
_ON_UNEXPECTED = MqttClientConnection._on_unexpected
