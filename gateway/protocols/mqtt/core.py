# -*- test-case-name: tests.unit.mqtt -*-
"""The server side of one MQTT 3.1.1 / 5.0 connection, sans-IO.

The contract (shared with the other protocol cores)::

    conn = MqttServerConnection(ServerOptions(...))
    conn.receive_data(data)          # bytes from the client; b"" when the connection ended
    conn.events_received() -> list   # what the client did (see .events)
    conn.accept() / reject() / ack_publish() / suback() / unsuback() / publish() / auth() /
    disconnect()                     # the upper layer's decisions
    conn.data_to_send() -> bytes     # for the transport
    conn.next_deadline(now)          # when to call handle_timeout(now); time is passed in
    conn.closed, conn.paused         # close the transport / stop reading

**The adapter** keeps one flush point: after ``connectionMade``, every ``receive_data()``,
every decision of the upper layer and every ``handle_timeout()``, it forwards
``events_received()``, writes ``data_to_send()``, closes the transport once ``closed`` (after
writing), pauses or resumes reading on ``paused``, and re-arms its single timer at
``next_deadline(reactor.seconds())``. ``connectionLost`` is ``receive_data(b"")``.

**Time** is never read. ``next_deadline(now)`` also stamps "now" on what happened since the
previous call: its first call starts the connect timeout (``ServerOptions.connect_timeout``,
until the CONNECT arrives), and packets received since the previous call reset the keep-alive
clock (1.5 x the keep-alive, §3.1.2.10, capped in 5.0 by ``max_keep_alive`` through Server Keep
Alive). When the timer fires, call ``handle_timeout(now)``: it closes the connection if the
deadline really passed (5.0: DISCONNECT 0x8D).

**Errors.** Peer errors are *reported*, never raised: the connection queues the CONNACK or
DISCONNECT the protocol allows (5.0 reason code = the error's ``hint``; 3.1.1 only has CONNACK
return codes 1 and 2 and otherwise just closes, §3.1.4, §4.8), moves to ``CLOSED`` and ends
the events with :class:`ConnectionClosed` whose ``error`` is the
:class:`~gateway.protocols.errors.RemoteProtocolError` (also kept in ``conn.error``). So no
method raises because of what the client sent, including ``accept()``, which processes the
packets the client pipelined behind its CONNECT. Misuse by the upper layer raises
:class:`~gateway.protocols.errors.LocalProtocolError`; answers (acks, accept, ...) given after
the connection closed are silently ignored, except ``publish()``, which raises so that a broker
keeps the message for the session.

**Acknowledge after handling.** A QoS 1/2 PUBLISH from the client is answered (PUBACK/PUBREC)
only when the upper layer calls ``ack_publish()``, i.e. after the consumer handled it; if the
consumer fails, do not ack (disconnect instead) and the client re-sends it when it reconnects.
QoS 2 is delivered once: a re-sent PUBLISH with an identifier still in the exchange is not
reported again (§4.3.3, method B). PINGRESP, PUBREL and PUBCOMP are sent by the connection.

**Flow control.** Our Receive Maximum (``ServerOptions.receive_maximum``, advertised in 5.0)
bounds the client's unacknowledged QoS 1/2 publishes (0x93 beyond it in 5.0); ``paused`` asks
the adapter to stop reading while that many wait for ``ack_publish()`` (3.1.1's only
back-pressure). The client's Receive Maximum bounds ours: ``publish()`` queues beyond it
(``PublishStatus.QUEUED``) and sends as acknowledgements arrive.

**Sessions.** The protocol state of a session (unacknowledged and queued outbound messages,
inbound QoS 2 identifiers awaiting PUBREL, the next packet identifier) is a plain
:class:`SessionState` snapshot from ``session_state()``, taken when the connection closed.
A broker stores it with the subscriptions and hands it to the next connection's
``accept(session_present=True, session=...)``, which re-sends (DUP set) and resumes (§4.4).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from gateway.protocols.errors import LocalProtocolError, RemoteProtocolError
from gateway.protocols.mqtt.codec import MAX_PACKET_SIZE, decode, encode, peek_connect_level
from gateway.protocols.mqtt.events import (
    AuthReceived, ConnectionClosed, ConnectionState, ConnectReceived, DisconnectReceived, Event,
    PublishReceived, PublishStatus, ServerOptions, SessionState, SubscribeReceived, UnsubscribeReceived,
)
from gateway.protocols.mqtt.inbound import InboundFlow
from gateway.protocols.mqtt.outbound import OutboundFlow
from gateway.protocols.mqtt.packets import (
    Auth, ConnAck, Connect, Disconnect, Packet, PingReq, PingResp, PubAck, PubComp, PubRec, PubRel,
    Publish, SubAck, Subscribe, UnsubAck, Unsubscribe,
)
from gateway.protocols.mqtt.properties import EMPTY_PROPERTIES, Properties
from gateway.protocols.mqtt.reasons import (
    CONNACK_CODES, SERVER_DISCONNECT_CODES, PacketType, ReasonCode, to_connect_return_code,
)

__all__ = ["MqttServerConnection", "payload_format_invalid"]

AWAITING_CONNECT = ConnectionState.AWAITING_CONNECT
CONNECTING = ConnectionState.CONNECTING
CONNECTED = ConnectionState.CONNECTED
CLOSED = ConnectionState.CLOSED


def peer_error(message: str, reason: ReasonCode) -> RemoteProtocolError:
    """A :class:`RemoteProtocolError` whose hint is ``reason``."""
    return RemoteProtocolError(message, hint=reason)


def payload_format_invalid(packet: Publish) -> bool:
    """True when the publish says its payload is UTF-8 (indicator 1) and it is not."""
    props = packet.properties
    if props is EMPTY_PROPERTIES or props.payload_format_indicator != 1:
        return False
    try:
        packet.payload.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


# -- the CONNECT / CONNACK / AUTH rules (§3.1, §3.2, §3.15, §4.12) ------------------------

# CONNACK properties derived from ServerOptions; the upper layer may not set them.
_MANAGED = (
    "receive_maximum",
    "maximum_packet_size",
    "topic_alias_maximum",
    "maximum_qos",
    "retain_available",
    "wildcard_subscription_available",
    "subscription_identifier_available",
    "shared_subscription_available",
)


def _check_connect(packet: Connect, options: ServerOptions) -> None:
    """Server-side rules on a decoded CONNECT.

    Raises:
        RemoteProtocolError: a disabled protocol level (0x84), or a 3.1.1 empty client id
            without clean session (0x85, sent as return code 2, [MQTT-3.1.3-8]).
    """
    if packet.protocol_level not in options.protocol_levels:
        raise RemoteProtocolError(
            f"protocol level {packet.protocol_level} is disabled",
            hint=ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
        )
    if packet.protocol_level == 4 and not packet.client_id and not packet.clean_start:
        raise RemoteProtocolError(
            "empty client id without clean session", hint=ReasonCode.CLIENT_IDENTIFIER_NOT_VALID
        )


def _connack_properties(options: ServerOptions, connect: Connect, given: Properties) -> Properties:
    """The properties of a 5.0 CONNACK accepting ``connect``: ``given`` plus our limits.

    Raises:
        LocalProtocolError: ``given`` sets a limit the options own, or lacks the Assigned
            Client Identifier an empty client id requires [MQTT-3.2.2-16].
    """
    for name in _MANAGED:
        if getattr(given, name) is not None:
            raise LocalProtocolError(f"{name} is set by the connection from ServerOptions")
    if not connect.client_id and given.assigned_client_identifier is None:
        raise LocalProtocolError("assigned_client_identifier is needed for an empty client id")
    keep_alive = given.server_keep_alive
    maximum = options.max_keep_alive
    if keep_alive is None and maximum is not None:
        if connect.keep_alive == 0 or connect.keep_alive > maximum:
            keep_alive = maximum  # §3.2.2.3.14 Server Keep Alive
    # Advertise only what differs from the defaults a client assumes when absent (§3.2.2.3).
    return replace(
        given,
        server_keep_alive=keep_alive,
        receive_maximum=options.receive_maximum if options.receive_maximum < 65535 else None,
        maximum_packet_size=(
            options.max_packet_size if options.max_packet_size < MAX_PACKET_SIZE else None
        ),
        topic_alias_maximum=options.topic_alias_maximum or None,
        maximum_qos=options.maximum_qos if options.maximum_qos < 2 else None,
        retain_available=None if options.retain_available else False,
        wildcard_subscription_available=None if options.wildcard_subscription_available else False,
        subscription_identifier_available=(
            None if options.subscription_identifier_available else False
        ),
        shared_subscription_available=None if options.shared_subscription_available else False,
    )


def _refusal(reason: int, level: int | None, valid_connect: bool) -> tuple[ConnAck, int] | None:
    """The CONNACK refusing a CONNECT and the level to encode it at, or None to just close.

    Args:
        reason: the 5.0 reason (>= 0x80; other codes become 0x80 Unspecified error).
        level: the level the CONNECT announced (levels above 5 get the 5.0 format, below 4
            the 3.1.1 one), or None when it is not even an MQTT CONNECT.
        valid_connect: the CONNECT was decoded (refused by policy, not for being invalid).
    """
    if level is None:
        return None
    if level >= 5:
        code = reason if reason in CONNACK_CODES and reason >= 0x80 else 0x80
        return ConnAck(False, code), 5
    if valid_connect or reason in (
        ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
        ReasonCode.CLIENT_IDENTIFIER_NOT_VALID,
    ):
        # 3.1.1 §3.1.4: a CONNECT that does not conform is closed without a CONNACK; a valid
        # but refused one (and return codes 1 and 2, §3.2.2.3) gets a return code.
        return ConnAck(False, to_connect_return_code(reason)), 4
    return None


def _check_client_auth(packet: Auth, method: str | None, connected: bool) -> None:
    """Rules on an AUTH from the client (§4.12).

    Raises:
        RemoteProtocolError (0x82): no enhanced authentication was started by the CONNECT,
            another method, or a reason a client may not send now.
    """
    if method is None:
        raise RemoteProtocolError(
            "AUTH without an authentication method in CONNECT", hint=ReasonCode.PROTOCOL_ERROR
        )
    if packet.properties.authentication_method != method:
        # §4.12: "the same value as the Authentication Method in the CONNECT".
        raise RemoteProtocolError(
            "AUTH with another authentication method", hint=ReasonCode.PROTOCOL_ERROR
        )
    allowed = [ReasonCode.CONTINUE_AUTHENTICATION]
    if connected:
        allowed.append(ReasonCode.RE_AUTHENTICATE)  # §4.12.1, only after the CONNACK
    if packet.reason_code not in allowed:
        raise RemoteProtocolError(
            f"AUTH reason 0x{packet.reason_code:02X} from a client", hint=ReasonCode.PROTOCOL_ERROR
        )


class MqttServerConnection:
    """The server side of one MQTT connection (3.1.1 or 5.0, chosen by the client's CONNECT).

    Args:
        options: limits and capabilities; defaults to ``ServerOptions()``.
    """

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
        self._outbound = OutboundFlow(self._options, self._out)

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

    # -- state --------------------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """The current :class:`ConnectionState`."""
        return self._state

    @property
    def closed(self) -> bool:
        """True once the connection is over: write ``data_to_send()``, then close."""
        return self._state is CLOSED

    @property
    def protocol_level(self) -> int | None:
        """4 (3.1.1) or 5 (5.0) once the CONNECT arrived, else None."""
        return self._level

    @property
    def keep_alive(self) -> int:
        """The keep-alive in force, in seconds (after a 5.0 Server Keep Alive); 0 = none."""
        return self._keep_alive

    # -- the contract -------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes received from the client; ``b""`` means the connection ended.

        Then call ``events_received()`` and ``data_to_send()`` (PINGRESP, PUBREL, PUBCOMP and
        error replies are produced here). Data after the connection closed is ignored.
        """
        if self._state is CLOSED:
            return
        if not data:
            self._close(None, None, self._state is CONNECTED)
            return
        if self._buffer:
            try:
                self._buffer += data
            except BufferError:  # pragma: no cover - a stale view pins the buffer
                self._buffer = self._buffer + data
            self._drain()
            return
        consumed = self._process(data)  # the fast path: no copy when nothing is buffered
        if self._state is not CLOSED and consumed < len(data):
            self._buffer = bytearray(data[consumed:])

    def events_received(self) -> list[Event]:
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
        return data

    def next_deadline(self, now: float) -> float | None:
        """When ``handle_timeout()`` must run next (same clock as ``now``), or None.

        ``now`` also timestamps what happened since the previous call: the first call starts
        the connect timeout, and packets received since the last call reset the keep-alive.
        So the adapter calls this at its flush point, after every ``receive_data()``.
        """
        self._observe(now)
        return self._deadline()

    def handle_timeout(self, now: float) -> None:
        """Act on an expired deadline: the connect timeout, or 1.5x the keep-alive (§3.1.2.10).

        Closes the connection if a deadline passed (5.0: DISCONNECT 0x8D Keep Alive timeout
        first). Then call ``events_received()`` and ``data_to_send()``.
        """
        self._observe(now)
        deadline = self._deadline()
        if deadline is None or now < deadline:
            return
        if self._state is AWAITING_CONNECT:
            self._close(None, RemoteProtocolError("no CONNECT before the connect timeout"), False)
            return
        if self._level == 5:
            self._write(Disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT))
        error = peer_error("nothing received for 1.5x keep-alive", ReasonCode.KEEP_ALIVE_TIMEOUT)
        self._close(ReasonCode.KEEP_ALIVE_TIMEOUT, error, True)

    # -- decisions of the upper layer -----------------------------------------------------------

    def accept(
        self,
        *,
        session_present: bool = False,
        properties: Properties = EMPTY_PROPERTIES,
        session: SessionState | None = None,
    ) -> None:
        """Accept the CONNECT: send CONNACK 0x00, resume ``session``, process pipelined data.

        Args:
            session_present: whether the server had a session for this client (must be False
                for a clean start, [MQTT-3.2.2-2]).
            properties: 5.0 CONNACK properties chosen by the upper layer (session expiry,
                assigned client identifier - required when the client sent an empty one -,
                server keep alive, authentication, reason string, user properties...). The
                limits of :class:`ServerOptions` are added by the connection and may not be
                set here. Ignored for 3.1.1.
            session: a stored :class:`SessionState` to resume: unacknowledged messages are
                re-sent with DUP set, PUBRELs re-sent, queued messages sent as the client's
                Receive Maximum allows (§4.4).

        Does nothing if the connection closed meanwhile (the events end with
        :class:`ConnectionClosed`). Then call ``events_received()`` (the client may have
        pipelined packets) and ``data_to_send()``.
        """
        if self._state is CLOSED:
            return
        self._require(CONNECTING, "accept")
        connect = self._connect
        if connect is None:  # pragma: no cover - always set in CONNECTING
            raise LocalProtocolError("no CONNECT to accept")
        if session is not None and not session_present:
            raise LocalProtocolError("resuming a session requires session_present=True")
        if session_present and connect.clean_start:
            raise LocalProtocolError("a clean start cannot have a session present")
        ack_properties = EMPTY_PROPERTIES
        if self._level == 5:
            ack_properties = _connack_properties(self._options, connect, properties)
        self._write(ConnAck(session_present, ReasonCode.SUCCESS, ack_properties))
        self._state = CONNECTED
        self._activity = True  # the keep-alive runs from now
        if ack_properties.server_keep_alive is not None:
            self._keep_alive = ack_properties.server_keep_alive
        if session is not None:
            self._inbound.restore(session.inbound_qos2)
            self._outbound.restore(session.outbound, session.queued, session.next_packet_id)
        self._outbound.pump()
        self._drain()

    def reject(self, reason_code: int, properties: Properties = EMPTY_PROPERTIES) -> None:
        """Refuse the CONNECT with a CONNACK reason >= 0x80, then close.

        For 3.1.1 the reason is translated to a return code (:func:`to_connect_return_code`)
        and ``properties`` are ignored. Does nothing once closed. Then call
        ``events_received()`` and ``data_to_send()``.
        """
        if self._state is CLOSED:
            return
        self._require(CONNECTING, "reject")
        if reason_code < 0x80 or reason_code not in CONNACK_CODES:
            raise LocalProtocolError(f"0x{reason_code:02X} is not a CONNACK failure reason")
        self._refuse(reason_code, self._level, properties)
        self._close(reason_code, None, False)

    def auth(self, reason_code: int, properties: Properties = EMPTY_PROPERTIES) -> None:
        """Send AUTH (5.0 enhanced authentication, §4.12).

        ``reason_code`` is 0x18 Continue authentication (while connecting or
        re-authenticating) or 0x00 Success (ending a re-authentication). The Authentication
        Method of the CONNECT is filled in when ``properties`` has none. To end the initial
        authentication, call ``accept()`` (with authentication data in its properties) or
        ``reject()``. Does nothing once closed. Then call ``data_to_send()``.
        """
        if self._state is CLOSED:
            return
        if self._level != 5 or self._auth_method is None:
            raise LocalProtocolError("AUTH needs a 5.0 CONNECT with an authentication method")
        allowed = [ReasonCode.CONTINUE_AUTHENTICATION]
        if self._state is CONNECTED:
            allowed.append(ReasonCode.SUCCESS)
        if reason_code not in allowed:
            raise LocalProtocolError(f"AUTH reason 0x{reason_code:02X} is not allowed now")
        if properties.authentication_method is None:
            properties = replace(properties, authentication_method=self._auth_method)
        self._write(Auth(reason_code, properties))

    def ack_publish(
        self,
        packet_id: int,
        reason_code: int = ReasonCode.SUCCESS,
        properties: Properties = EMPTY_PROPERTIES,
    ) -> None:
        """Acknowledge a client's QoS 1/2 PUBLISH once it has been handled.

        Sends PUBACK (QoS 1) or PUBREC (QoS 2; the PUBREL/PUBCOMP that follow are handled by
        the connection). A 5.0 reason >= 0x80 (e.g. 0x87 Not authorized) tells the client the
        message was refused and ends the exchange; 3.1.1 acks carry no reason, so there the
        message simply counts as handled. Does nothing once the connection is closed (the
        client re-sends unacknowledged messages when it reconnects). Then call
        ``data_to_send()``.
        """
        state = self._state
        if state is CLOSED:
            return
        inbound = self._inbound
        if state is CONNECTED and not reason_code and properties is EMPTY_PROPERTIES:
            self._out.append(inbound.ack_success(packet_id))  # the common case, in one call
            if inbound.awaiting_app + 1 == self._options.receive_maximum:
                self._activity = True
            return
        self._require(CONNECTED, "ack_publish")
        answer = inbound.ack(packet_id, reason_code, properties)
        if isinstance(answer, bytes):
            self._out.append(answer)
        else:
            self._write(answer)
        inbound.acked(packet_id, reason_code)
        if inbound.awaiting_app + 1 == self._options.receive_maximum:
            self._activity = True  # reading resumes (see `paused`): restart the keep-alive

    def suback(
        self,
        packet_id: int,
        reason_codes: tuple[int, ...] | list[int],
        properties: Properties = EMPTY_PROPERTIES,
    ) -> None:
        """Answer a SUBSCRIBE with one reason code per subscription, in order.

        Granted QoS 0/1/2 or a failure (>= 0x80, e.g. 0x87 Not authorized). For 3.1.1 every
        failure becomes 0x80 and ``properties`` are ignored. Does nothing once closed. Then
        call ``data_to_send()``.
        """
        if self._state is CLOSED:
            return
        self._require(CONNECTED, "suback")
        count = self._inbound.subscribe_count(packet_id)
        codes = tuple(reason_codes)
        if len(codes) != count:
            raise LocalProtocolError(f"SUBACK needs {count} reason codes, got {len(codes)}")
        if self._level == 4:
            codes = tuple(code if code < 0x80 else ReasonCode.UNSPECIFIED_ERROR for code in codes)
            properties = EMPTY_PROPERTIES
        self._write(SubAck(packet_id, codes, properties))
        self._inbound.answered(packet_id)

    def unsuback(
        self,
        packet_id: int,
        reason_codes: tuple[int, ...] | list[int] | None = None,
        properties: Properties = EMPTY_PROPERTIES,
    ) -> None:
        """Answer an UNSUBSCRIBE; 5.0 reason codes (one per filter) default to 0x00 Success.

        3.1.1 UNSUBACKs carry no reason codes or properties (they are ignored). Does nothing
        once closed. Then call ``data_to_send()``.
        """
        if self._state is CLOSED:
            return
        self._require(CONNECTED, "unsuback")
        count = self._inbound.subscribe_count(packet_id, unsubscribe=True)
        if self._level == 4:
            self._write(UnsubAck(packet_id))
        else:
            codes = tuple(reason_codes) if reason_codes is not None else (0,) * count
            if len(codes) != count:
                raise LocalProtocolError(f"UNSUBACK needs {count} reason codes")
            self._write(UnsubAck(packet_id, codes, properties))
        self._inbound.answered(packet_id, unsubscribe=True)

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 0,
        retain: bool = False,
        properties: Properties = EMPTY_PROPERTIES,
        wire: tuple[bytes, bytes] | None = None,
    ) -> PublishStatus:
        """Deliver an application message to the client; return what became of it.

        QoS 1/2 messages get a packet identifier and stay in the session until acknowledged;
        beyond the client's Receive Maximum they are queued (§4.9). Messages larger than the
        client's Maximum Packet Size are dropped. Properties are dropped for 3.1.1 clients;
        the Topic Alias is managed by the connection (``outbound_topic_aliases``). Then call
        ``data_to_send()``.

        ``wire`` lets a broker fanning one message out to many clients encode it once per
        protocol level: the PUBLISH bytes for this connection's level without DUP, split where
        the packet identifier goes (for QoS 0, the two halves are simply joined). The caller
        vouches that they encode exactly ``topic``/``payload``/``qos``/``retain``/``properties``
        (properties dropped for 3.1.1).

        Raises:
            LocalProtocolError: not connected (before ``accept()`` or after the close), or
                invalid arguments. A broker then keeps the message for the session.
        """
        if self._state is not CONNECTED:
            raise LocalProtocolError(f"publish() in state {self._state.name}")
        if qos not in (0, 1, 2):
            raise LocalProtocolError(f"QoS {qos!r} is not 0, 1 or 2")
        if properties.topic_alias is not None:
            raise LocalProtocolError("topic aliases are managed by the connection")
        return self._outbound.publish(topic, payload, qos, retain, properties, wire)

    def publish_checked(
        self, topic: str, payload: bytes, qos: int, retain: bool, properties: Properties,
        wire: tuple[bytes, bytes] | None = None,
    ) -> PublishStatus:
        """:meth:`publish` for a message checked already (a broker's: decoded from a client,
        no topic alias, QoS 0..2): the same, with positional arguments and fewer checks (the
        broker's delivery path)."""
        if self._state is not CONNECTED:
            raise LocalProtocolError(f"publish() in state {self._state.name}")
        return self._outbound.publish(topic, payload, qos, retain, properties, wire)

    def send_qos0_bytes(self, data: bytes) -> bool:
        """Queue an already encoded QoS 0 PUBLISH for the client (the fan-out fast path).

        A broker encodes a QoS 0 message once per protocol level (see :func:`encode` and
        :func:`~.packets.new_publish`; for 3.1.1 without properties) and hands the same bytes
        to every subscriber of that level. Messages larger than the client's Maximum Packet
        Size are discarded as ``publish()`` does. Returns False, queueing nothing, when this
        connection cannot take shared bytes (not connected, or outbound topic aliases in use):
        call ``publish()`` instead. Then call ``data_to_send()``.
        """
        if self._state is not CONNECTED or self._outbound.alias_maximum:
            return False
        if len(data) <= self._outbound.max_packet_size:
            self._out.append(data)
        return True

    def disconnect(
        self,
        reason_code: int = ReasonCode.NORMAL_DISCONNECTION,
        properties: Properties = EMPTY_PROPERTIES,
    ) -> None:
        """Close the connection from the server side (shutdown, takeover, policy...).

        Connected 5.0 clients get DISCONNECT with ``reason_code``; 3.1.1 clients just see the
        connection close (3.1.1 has no server DISCONNECT). While connecting this is
        ``reject()``, with ``reason_code`` if it is a CONNACK failure code, else 0x80. Does
        nothing once closed. Then call ``events_received()`` and ``data_to_send()``.
        """
        state = self._state
        if state is CLOSED:
            return
        if state is AWAITING_CONNECT:
            self._close(reason_code, None, False)
        elif state is CONNECTING:
            connack_failure = reason_code >= 0x80 and reason_code in CONNACK_CODES
            self.reject(reason_code if connack_failure else 0x80, properties)
        else:
            if self._level == 5:
                if reason_code not in SERVER_DISCONNECT_CODES:
                    raise LocalProtocolError(f"0x{reason_code:02X} is not a DISCONNECT reason")
                self._write(Disconnect(reason_code, properties))
            self._close(reason_code, None, True)

    def session_state(self) -> SessionState:
        """A snapshot of the session's protocol state (see :class:`SessionState`)."""
        outbound, queued, next_id = self._outbound.snapshot()
        return SessionState(outbound, queued, self._inbound.released(), next_id)

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
        outbound = self._outbound
        events = self._events
        try:
            while pos < size:
                state = self._state
                if (
                    state is CONNECTED and view[pos] == 0x40 and pos + 4 <= size and view[pos + 1] == 2
                    and (view[pos + 2] or view[pos + 3]) and max_size >= 4
                ):
                    # The hot path of QoS 1 delivery: the two-byte PUBACK (3.1.1, and 5.0's
                    # success without properties) is handled without decoding a packet.
                    event = outbound.puback((view[pos + 2] << 8) | view[pos + 3])
                    pos += 4
                    self._activity = True
                    if event is not None:
                        events.append(event)
                    continue
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
                _HANDLERS.get(type(packet), _ON_UNEXPECTED)(self, packet)
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
        answer = _refusal(reason, level, self._state is CONNECTING)
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
        _check_connect(packet, self._options)
        if level == 5:
            props = packet.properties
            self._auth_method = props.authentication_method
            self._session_expiry = props.session_expiry_interval or 0
            outbound = self._outbound
            outbound.window = min(props.receive_maximum or 65535, outbound.window)
            if props.maximum_packet_size is not None:
                self._client_max_packet = outbound.max_packet_size = props.maximum_packet_size
            if self._options.outbound_topic_aliases and props.topic_alias_maximum:
                outbound.alias_maximum = min(props.topic_alias_maximum, self._options.outbound_topic_alias_maximum)
        self._keep_alive = packet.keep_alive
        self._state = CONNECTING
        self._events.append(ConnectReceived(packet))

    def _on_publish(self, packet: Publish) -> None:
        deliver, answer = self._inbound.on_publish(packet)
        if answer is not None:
            self._write(answer)
        if deliver is not None:
            if deliver.properties is not EMPTY_PROPERTIES and payload_format_invalid(deliver):
                # §3.3.2.3.2: a payload that claims to be UTF-8 and is not is refused: 0x99 in
                # the PUBACK/PUBREC, or (QoS 0 has no answer) DISCONNECT 0x99.
                if deliver.packet_id is None:
                    raise peer_error("the payload is not the UTF-8 it claims to be", ReasonCode.PAYLOAD_FORMAT_INVALID)
                self.ack_publish(deliver.packet_id, ReasonCode.PAYLOAD_FORMAT_INVALID)
                return
            event: PublishReceived = _new_object(PublishReceived)
            _set_event_packet(event, deliver)  # PublishReceived(deliver), without the frozen __init__
            self._events.append(event)

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
        _check_client_auth(packet, self._auth_method, self._state is CONNECTED)
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


_new_object = object.__new__
_set_event_packet = PublishReceived.__dict__["packet"].__set__

# What each packet from a client does: a table of the class's functions (not of one
# connection's bound methods, which would make every connection a reference cycle).
_HANDLERS: dict[type, Callable[[MqttServerConnection, Any], None]] = {
    Connect: MqttServerConnection._on_connect,
    Publish: MqttServerConnection._on_publish,
    PubAck: MqttServerConnection._on_ack,
    PubRec: MqttServerConnection._on_ack,
    PubComp: MqttServerConnection._on_ack,
    PubRel: MqttServerConnection._on_pubrel,
    Subscribe: MqttServerConnection._on_subscribe,
    Unsubscribe: MqttServerConnection._on_unsubscribe,
    PingReq: MqttServerConnection._on_pingreq,
    Disconnect: MqttServerConnection._on_disconnect,
    Auth: MqttServerConnection._on_auth,
}
_ON_UNEXPECTED = MqttServerConnection._on_unexpected
