# -*- test-case-name: tests.unit.mqtt -*-
"""What :class:`~.connection.MqttServerConnection` reports, is configured with, and persists.

* Events (frozen dataclasses) returned by ``events_received()``: what the client did.
* :class:`ServerOptions`: the server's limits and capabilities, advertised in a 5.0 CONNACK.
* :class:`SessionState`: the protocol part of an MQTT session (unacknowledged outbound QoS 1/2
  messages, queued messages, QoS 2 identifiers awaiting PUBREL), which a broker stores when a
  persistent session's connection ends and hands back to ``accept(session=...)`` on resume.
  Subscriptions are not in it: they are the broker's.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Union

from gateway.protocols.errors import RemoteProtocolError
from gateway.protocols.mqtt.codec import MAX_PACKET_SIZE
from gateway.protocols.mqtt.packets import Connect, Publish, Subscribe, Unsubscribe
from gateway.protocols.mqtt.properties import EMPTY_PROPERTIES, Properties
from gateway.protocols.mqtt.reasons import ReasonCode

__all__ = [
    "AuthReceived",
    "ConnectReceived",
    "ConnectionClosed",
    "ConnectionState",
    "DisconnectReceived",
    "Event",
    "OutboundMessage",
    "PubAckReceived",
    "PubCompReceived",
    "PubRecReceived",
    "PublishReceived",
    "PublishStatus",
    "ServerOptions",
    "SessionState",
    "SubscribeReceived",
    "UnsubscribeReceived",
]


class ConnectionState(Enum):
    """The states of a server connection."""

    #: Waiting for the client's CONNECT (the connect timeout runs).
    AWAITING_CONNECT = "awaiting_connect"
    #: CONNECT received; waiting for ``accept()``/``reject()`` (AUTH exchanges happen here).
    CONNECTING = "connecting"
    #: CONNACK sent; the session runs.
    CONNECTED = "connected"
    #: Finished; ``data_to_send()`` may still hold a last CONNACK or DISCONNECT.
    CLOSED = "closed"


class PublishStatus(Enum):
    """What ``MqttServerConnection.publish()`` did with a message."""

    #: Written to ``data_to_send()`` (QoS 1/2: now awaiting the client's acknowledgement).
    SENT = "sent"
    #: QoS 1/2 held back by the client's Receive Maximum; sent when an acknowledgement frees
    #: a slot (it is part of :class:`SessionState` meanwhile).
    QUEUED = "queued"
    #: Discarded: larger than the client's Maximum Packet Size (§3.1.2.11.4: "behave as if it
    #: had completed sending"), or the queue is full (``max_queued_messages``).
    DROPPED = "dropped"


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Limits and capabilities of the server side of a connection.

    Everything the 5.0 CONNACK advertises is derived from here, and enforced on receive.
    """

    #: Largest packet accepted, fixed header included (0x95 above it). Advertised in 5.0.
    max_packet_size: int = 1_048_576
    #: Our Receive Maximum: QoS 1/2 publishes the client may have unacknowledged (0x93 above).
    receive_maximum: int = 64
    #: Our Topic Alias Maximum: how many inbound aliases a 5.0 client may use (0 = none).
    topic_alias_maximum: int = 10
    #: Maximum QoS of client publishes we support (5.0; 0x9B above it).
    maximum_qos: int = 2
    retain_available: bool = True
    wildcard_subscription_available: bool = True
    subscription_identifier_available: bool = True
    shared_subscription_available: bool = True
    #: Cap on the client's keep-alive, in seconds (5.0 Server Keep Alive); None = no cap.
    #: A 5.0 client asking for 0 (no keep-alive) or more gets this value in the CONNACK.
    max_keep_alive: int | None = None
    #: Seconds from the start of the connection to the CONNECT; None = wait forever.
    connect_timeout: float | None = 10.0
    #: Protocol levels we accept (4 = 3.1.1, 5 = 5.0).
    protocol_levels: frozenset[int] = frozenset({4, 5})
    #: Cap on our outbound QoS 1/2 in flight, on top of the client's Receive Maximum.
    max_outbound_inflight: int = 65535
    #: Outbound QoS 1/2 messages held while the client's window is full; None = no limit.
    max_queued_messages: int | None = 1000
    #: Use topic aliases for outbound publishes when the 5.0 client allows them (its CONNECT's
    #: Topic Alias Maximum): a topic sent again goes as an empty topic name plus its alias.
    outbound_topic_aliases: bool = False
    #: Cap on the outbound aliases of one connection (the client's maximum applies too); when
    #: all are taken, the least recently used one is given to the next new topic.
    outbound_topic_alias_maximum: int = 65535
    #: Report the client's acknowledgements of our publishes (PubAckReceived, PubRecReceived,
    #: PubCompReceived). The broker and the ASGI mapping do not use them: off there, which
    #: spares an event per delivered QoS 1/2 message.
    acknowledgement_events: bool = True

    def __post_init__(self) -> None:
        """Reject values the protocol cannot express."""
        if not 1 <= self.receive_maximum <= 65535:
            raise ValueError("receive_maximum must be in 1..65535")
        if not 0 <= self.topic_alias_maximum <= 65535:
            raise ValueError("topic_alias_maximum must be in 0..65535")
        if not 0 <= self.outbound_topic_alias_maximum <= 65535:
            raise ValueError("outbound_topic_alias_maximum must be in 0..65535")
        if not 2 <= self.max_packet_size <= MAX_PACKET_SIZE:
            raise ValueError(f"max_packet_size must be in 2..{MAX_PACKET_SIZE}")
        if self.maximum_qos not in (0, 1, 2):
            raise ValueError("maximum_qos must be 0, 1 or 2")
        if self.max_keep_alive is not None and not 1 <= self.max_keep_alive <= 65535:
            raise ValueError("max_keep_alive must be in 1..65535")
        if not self.protocol_levels or not self.protocol_levels <= {4, 5}:
            raise ValueError("protocol_levels must be a non-empty subset of {4, 5}")
        if not 1 <= self.max_outbound_inflight <= 65535:
            raise ValueError("max_outbound_inflight must be in 1..65535")


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """An outbound QoS 1/2 message the client has not yet fully acknowledged.

    ``publish`` carries its packet identifier and full topic (never an alias). ``released`` is
    True once the client's PUBREC arrived and our PUBREL went out (QoS 2, awaiting PUBCOMP):
    such a message is resumed with a PUBREL, the others with the PUBLISH and DUP set (§4.4).
    """

    publish: Publish
    released: bool = False


@dataclass(frozen=True, slots=True)
class SessionState:
    """A snapshot of the protocol state of a session, for a broker to persist and resume.

    Take it with ``session_state()`` after the connection closed; pass it to
    ``accept(session_present=True, session=...)`` of the client's next connection. All fields
    are plain data (packets, ints), so the broker may serialise them as it likes.
    """

    #: Unacknowledged outbound QoS 1/2 messages, in the order they were first sent.
    outbound: tuple[OutboundMessage, ...] = ()
    #: Outbound QoS 1/2 messages not yet sent (no packet identifier yet), in order.
    queued: tuple[Publish, ...] = ()
    #: Packet identifiers of inbound QoS 2 messages we PUBREC'd, awaiting the client's PUBREL:
    #: a re-sent PUBLISH with one of these is not delivered again (§4.3.3).
    inbound_qos2: frozenset[int] = frozenset()
    #: Where outbound packet identifier allocation continues.
    next_packet_id: int = 1


@dataclass(frozen=True, slots=True)
class ConnectReceived:
    """The client's CONNECT. Answer with ``accept()``, ``reject()`` or (5.0) ``auth()``."""

    packet: Connect


@dataclass(frozen=True, slots=True)
class AuthReceived:
    """An AUTH from the client (5.0 enhanced authentication, §4.12).

    ``reason_code`` is 0x18 Continue authentication (during CONNECT, or a re-authentication in
    progress) or 0x19 Re-authenticate. Answer with ``auth()``, or ``accept()``/``reject()``
    while connecting, or ``disconnect()``.
    """

    reason_code: ReasonCode
    properties: Properties


@dataclass(frozen=True, slots=True)
class PublishReceived:
    """An application message from the client, topic alias already resolved.

    For QoS 1 and 2 the client gets its PUBACK/PUBREC only when the upper layer calls
    ``ack_publish(packet.packet_id)``. A QoS 2 message is reported once, even if the client
    re-sends it before the exchange completes.
    """

    packet: Publish


@dataclass(frozen=True, slots=True)
class PubAckReceived:
    """The client acknowledged our QoS 1 PUBLISH (a reason >= 0x80 means it refused it)."""

    packet_id: int
    reason_code: ReasonCode
    properties: Properties = EMPTY_PROPERTIES


@dataclass(frozen=True, slots=True)
class PubRecReceived:
    """The client received our QoS 2 PUBLISH; the connection already answered with PUBREL
    (unless the reason is >= 0x80, which ends the exchange)."""

    packet_id: int
    reason_code: ReasonCode
    properties: Properties = EMPTY_PROPERTIES


@dataclass(frozen=True, slots=True)
class PubCompReceived:
    """The client completed our QoS 2 exchange."""

    packet_id: int
    reason_code: ReasonCode
    properties: Properties = EMPTY_PROPERTIES


@dataclass(frozen=True, slots=True)
class SubscribeReceived:
    """A SUBSCRIBE. Answer with ``suback(packet.packet_id, reason_codes)``."""

    packet: Subscribe


@dataclass(frozen=True, slots=True)
class UnsubscribeReceived:
    """An UNSUBSCRIBE. Answer with ``unsuback(packet.packet_id, ...)``."""

    packet: Unsubscribe


@dataclass(frozen=True, slots=True)
class DisconnectReceived:
    """The client sent DISCONNECT (followed by :class:`ConnectionClosed`)."""

    reason_code: ReasonCode
    properties: Properties = EMPTY_PROPERTIES


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The connection is over; the last event. Close the transport after ``data_to_send()``.

    Attributes:
        reason_code: the reason sent or received in the CONNACK/DISCONNECT that ended the
            connection (or the error hint), None when the network connection just ended.
        publish_will: True when the broker must publish the client's Will Message: the
            connection had been accepted, had a Will, and did not end with a client DISCONNECT
            of reason 0x00 (§3.1.2.5; any 3.1.1 DISCONNECT discards the Will).
        error: the peer's protocol error that caused the close, if any; its ``hint`` is the
            reason code already queued in ``data_to_send()`` when the protocol allows one
            (``None`` for the connect timeout, which is answered by closing).
    """

    reason_code: int | None
    publish_will: bool = False
    error: RemoteProtocolError | None = None


#: Anything ``events_received()`` returns.
Event = Union[
    ConnectReceived,
    AuthReceived,
    PublishReceived,
    PubAckReceived,
    PubRecReceived,
    PubCompReceived,
    SubscribeReceived,
    UnsubscribeReceived,
    DisconnectReceived,
    ConnectionClosed,
]
