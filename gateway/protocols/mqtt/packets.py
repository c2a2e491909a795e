# -*- test-case-name: tests.unit.mqtt.test_codec -*-
"""The fifteen MQTT control packets as frozen dataclasses, shared by MQTT 3.1.1 and 5.0.

One class per packet type serves both protocol levels: fields that only exist in 5.0
(``properties``, most reason codes) keep their defaults for 3.1.1, and :func:`~.codec.encode`
refuses a 3.1.1 packet that sets them. Reason codes are :class:`~.reasons.ReasonCode` members
after decoding (plain ``int`` is accepted on encode); a 3.1.1 CONNACK carries a
:class:`~.reasons.ConnectReturnCode` in ``reason_code``.

Packet identifiers are ``int`` in 1..65535 (§2.2.1); a QoS 0 PUBLISH has ``packet_id=None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Union

from gateway.protocols.mqtt.properties import EMPTY_PROPERTIES, Properties
from gateway.protocols.mqtt.reasons import PacketType, ReasonCode

__all__ = [
    "Auth",
    "ConnAck",
    "Connect",
    "Disconnect",
    "Packet",
    "PingReq",
    "PingResp",
    "PubAck",
    "PubComp",
    "PubRec",
    "PubRel",
    "Publish",
    "RetainHandling",
    "SubAck",
    "Subscribe",
    "Subscription",
    "UnsubAck",
    "Unsubscribe",
    "Will",
]


class RetainHandling(IntEnum):
    """When retained messages are sent for a new subscription (5.0 §3.8.3.1)."""

    SEND_ON_SUBSCRIBE = 0
    SEND_IF_NEW_SUBSCRIPTION = 1
    DO_NOT_SEND = 2


@dataclass(frozen=True, slots=True)
class Will:
    """The Will Message of a CONNECT (§3.1.2.5, §3.1.3.2-3.1.3.4)."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties = EMPTY_PROPERTIES  #: Will Properties (5.0 §3.1.3.2).


@dataclass(frozen=True, slots=True)
class Connect:
    """CONNECT: the client's connection request (§3.1).

    ``protocol_level`` is 4 (3.1.1) or 5 (5.0); it selects the encoding of this packet itself.
    ``clean_start`` is 3.1.1's Clean Session flag. ``keep_alive`` is in seconds, 0 = disabled.
    """

    client_id: str
    protocol_level: int = 5
    clean_start: bool = True
    keep_alive: int = 0
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: Properties = EMPTY_PROPERTIES
    packet_type: ClassVar[PacketType] = PacketType.CONNECT


@dataclass(frozen=True, slots=True)
class ConnAck:
    """CONNACK: the server's answer to CONNECT (§3.2)."""

    session_present: bool = False
    reason_code: int = ReasonCode.SUCCESS  #: A ConnectReturnCode for 3.1.1.
    properties: Properties = EMPTY_PROPERTIES
    packet_type: ClassVar[PacketType] = PacketType.CONNACK


@dataclass(frozen=True, slots=True)
class Publish:
    """PUBLISH: an application message (§3.3).

    ``topic`` may be empty in 5.0 when ``properties.topic_alias`` is set (§3.3.2.3.4).
    ``packet_id`` is required for QoS 1 and 2 and must be ``None`` for QoS 0.
    """

    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: Properties = EMPTY_PROPERTIES
    packet_type: ClassVar[PacketType] = PacketType.PUBLISH


@dataclass(frozen=True, slots=True)
class PubAck:
    """PUBACK: the answer to a QoS 1 PUBLISH (§3.4)."""

    packet_id: int
    reason_code: int = ReasonCode.SUCCESS
    properties: Properties = EMPTY_PROPERTIES
    packet_type: ClassVar[PacketType] = PacketType.PUBACK


@dataclass(frozen=True, slots=True)
class PubRec:
    """PUBREC: the first answer to a QoS 2 PUBLISH (§3.5)."""

    packet_id: int
    reason_code: int = ReasonCode.SUCCESS
    properties: Properties = EMPTY_PROPERTIES
    packet_type: ClassVar[PacketType] = PacketType.PUBREC


@dataclass(frozen=True, slots=True)
class PubRel:
    """PUBREL: the answer to PUBREC (§3.6)."""

    packet_id: int
    reason_code: int = ReasonCode.SUCCESS
    properties: Properties = EMPTY_PROPERTIES
    packet_type: ClassVar[PacketType] = PacketType.PUBREL


@dataclass(frozen=True, slots=True)
class PubComp:
    """PUBCOMP: the answer to PUBREL, ending a QoS 2 exchange (§3.7)."""

    packet_id: int
    reason_code: int = ReasonCode.SUCCESS
    properties: Properties = EMPTY_PROPERTIES
    packet_type: ClassVar[PacketType] = PacketType.PUBCOMP


@dataclass(frozen=True, slots=True)
class Subscription:
    """One topic filter and its Subscription Options in a SUBSCRIBE (§3.8.3.1).

    ``no_local``, ``retain_as_published`` and ``retain_handling`` exist in 5.0 only.
    """

    topic_filter: str
    qos: int = 0
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = RetainHandling.SEND_ON_SUBSCRIBE


@dataclass(frozen=True, slots=True)
class Subscribe:
    """SUBSCRIBE: one or more subscription requests (§3.8)."""

    packet_id: int
    subscriptions: tuple[Subscription, ...]
    properties: Properties = EMPTY_PROPERTIES
    packet_type: ClassVar[PacketType] = PacketType.SUBSCRIBE


@dataclass(frozen=True, slots=True)
class SubAck:
    """SUBACK: one reason code per requested subscription, in order (§3.9)."""

    packet_id: int
    reason_codes: tuple[int, ...]
    properties: Properties = EMPTY_PROPERTIES
    packet_type: ClassVar[PacketType] = PacketType.SUBACK


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """UNSUBSCRIBE: one or more topic filters to remove (§3.10)."""

    packet_id: int
    topic_filters: tuple[str, ...]
    properties: Properties = EMPTY_PROPERTIES
    packet_type: ClassVar[PacketType] = PacketType.UNSUBSCRIBE


@dataclass(frozen=True, slots=True)
class UnsubAck:
    """UNSUBACK (§3.11): in 5.0 one reason code per topic filter; in 3.1.1 none (``()``)."""

    packet_id: int
    reason_codes: tuple[int, ...] = ()
    properties: Properties = EMPTY_PROPERTIES
    packet_type: ClassVar[PacketType] = PacketType.UNSUBACK


@dataclass(frozen=True, slots=True)
class PingReq:
    """PINGREQ: a keep-alive probe from the client (§3.12)."""

    packet_type: ClassVar[PacketType] = PacketType.PINGREQ


@dataclass(frozen=True, slots=True)
class PingResp:
    """PINGRESP: the server's answer to PINGREQ (§3.13)."""

    packet_type: ClassVar[PacketType] = PacketType.PINGRESP


@dataclass(frozen=True, slots=True)
class Disconnect:
    """DISCONNECT (§3.14): from the client in 3.1.1; from either side, with a reason, in 5.0."""

    reason_code: int = ReasonCode.NORMAL_DISCONNECTION
    properties: Properties = EMPTY_PROPERTIES
    packet_type: ClassVar[PacketType] = PacketType.DISCONNECT


@dataclass(frozen=True, slots=True)
class Auth:
    """AUTH: an enhanced authentication exchange step (5.0 only, §3.15)."""

    reason_code: int = ReasonCode.SUCCESS
    properties: Properties = EMPTY_PROPERTIES
    packet_type: ClassVar[PacketType] = PacketType.AUTH


#: Any MQTT control packet.
Packet = Union[
    Connect, ConnAck, Publish, PubAck, PubRec, PubRel, PubComp, Subscribe, SubAck,
    Unsubscribe, UnsubAck, PingReq, PingResp, Disconnect, Auth,
]


# A fast constructor for the decoder's hot path. A frozen dataclass's generated __init__ sets
# each field through object.__setattr__ (about 0.3 us each); the slots' own descriptors set
# them in a fraction of that. Same result, same validation (none): for internal use only.
_new_object = object.__new__
_slots = vars(Publish)  # the slot member descriptors
_set_topic = _slots["topic"].__set__
_set_payload = _slots["payload"].__set__
_set_qos = _slots["qos"].__set__
_set_retain = _slots["retain"].__set__
_set_dup = _slots["dup"].__set__
_set_packet_id = _slots["packet_id"].__set__
_set_properties = _slots["properties"].__set__


def new_publish(
    topic: str,
    payload: bytes,
    qos: int,
    retain: bool,
    dup: bool,
    packet_id: int | None,
    properties: Properties,
) -> Publish:
    """Build a :class:`Publish` like ``Publish(...)`` with all fields given, only faster."""
    packet: Publish = _new_object(Publish)
    _set_topic(packet, topic)
    _set_payload(packet, payload)
    _set_qos(packet, qos)
    _set_retain(packet, retain)
    _set_dup(packet, dup)
    _set_packet_id(packet, packet_id)
    _set_properties(packet, properties)
    return packet
