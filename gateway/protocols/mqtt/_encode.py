# -*- test-case-name: tests.unit.mqtt.test_codec -*-
"""Encoding of MQTT packets (§2, §3); exposed as :func:`gateway.protocols.mqtt.codec.encode`.

An encoder refuses, with :class:`LocalProtocolError`, any packet the decoder would refuse, so
``decode(encode(p)) == p`` for every packet ``encode`` accepts. 5.0-only content (properties,
reason codes other than success, AUTH) cannot be encoded at level 4.
"""

from __future__ import annotations

from typing import Any, Callable

from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.mqtt._wire import encode_bin, encode_str, encode_u16, encode_vbi
from gateway.protocols.mqtt.packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    PubRec,
    PubRel,
    Publish,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
)
from gateway.protocols.mqtt.properties import (
    EMPTY_PROPERTIES,
    WILL_PROPERTIES,
    Properties,
    encode_properties,
)
from gateway.protocols.mqtt.reasons import (
    AUTH_CODES,
    CONNACK_CODES,
    DISCONNECT_CODES,
    PUBACK_CODES,
    PUBREL_CODES,
    SUBACK_CODES,
    SUBACK_CODES_V4,
    UNSUBACK_CODES,
    ConnectReturnCode,
    PacketType,
)
from gateway.protocols.mqtt.topics import (
    SHARED_PREFIX,
    InvalidTopicError,
    validate_topic_filter,
    validate_topic_name,
)

__all__ = ["encode"]


def _frame(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_vbi(len(body)) + body


def _properties(props: Properties, packet_type: int, level: int) -> bytes:
    if level == 5:
        return encode_properties(props, packet_type)
    if props is not EMPTY_PROPERTIES and props != EMPTY_PROPERTIES:
        raise LocalProtocolError("MQTT 3.1.1 packets have no properties")
    return b""


def _packet_id(packet_id: int | None) -> bytes:
    if packet_id is None or not 1 <= packet_id <= 0xFFFF:
        raise LocalProtocolError(f"packet identifier {packet_id!r} is not in 1..65535")
    return packet_id.to_bytes(2, "big")


def _qos(qos: int, what: str) -> int:
    if qos not in (0, 1, 2):
        raise LocalProtocolError(f"{what} QoS {qos!r} is not 0, 1 or 2")
    return qos


def _check(check: Callable[[str], None], value: str) -> None:
    try:
        check(value)
    except InvalidTopicError as exc:
        raise LocalProtocolError(str(exc)) from None


def _reason(code: int, allowed: frozenset[int], what: str) -> bytes:
    if code not in allowed:
        raise LocalProtocolError(f"reason code {code!r} is not valid in {what}")
    return bytes((code,))


def _encode_connect(packet: Connect, level: int) -> bytes:
    version = packet.protocol_level
    if version != level:
        raise LocalProtocolError(f"CONNECT for level {version} encoded at level {level}")
    flags = 0x02 if packet.clean_start else 0
    will = packet.will
    payload = [encode_str(packet.client_id, "client identifier")]
    if will is not None:
        flags |= 0x04 | (_qos(will.qos, "will") << 3) | (0x20 if will.retain else 0)
        _check(validate_topic_name, will.topic)
        if version == 5:
            payload.append(encode_properties(will.properties, WILL_PROPERTIES))
        else:
            _properties(will.properties, WILL_PROPERTIES, 4)
        payload.append(encode_str(will.topic, "will topic"))
        payload.append(encode_bin(will.payload, "will payload"))
    if packet.username is not None:
        flags |= 0x80
        payload.append(encode_str(packet.username, "user name"))
    if packet.password is not None:
        if version == 4 and packet.username is None:
            raise LocalProtocolError("MQTT 3.1.1 needs a user name to send a password")
        flags |= 0x40
        payload.append(encode_bin(packet.password, "password"))
    header = (
        b"\x00\x04MQTT"
        + bytes((version, flags))
        + encode_u16(packet.keep_alive, "keep alive")
        + _properties(packet.properties, PacketType.CONNECT, version)
    )
    return _frame(0x10, header + b"".join(payload))


def _encode_connack(packet: ConnAck, level: int) -> bytes:
    code = packet.reason_code
    if level == 5:
        reason = _reason(code, CONNACK_CODES, "CONNACK")
    else:
        reason = _reason(code, frozenset(ConnectReturnCode), "a 3.1.1 CONNACK")
    if packet.session_present and code:
        raise LocalProtocolError("a refusing CONNACK cannot set Session Present")
    flags = b"\x01" if packet.session_present else b"\x00"
    properties = _properties(packet.properties, PacketType.CONNACK, level)
    return _frame(0x20, flags + reason + properties)


def _encode_publish(packet: Publish, level: int) -> bytes:
    qos = packet.qos
    topic = packet.topic
    if "+" in topic or "#" in topic:
        raise LocalProtocolError(f"topic name {topic!r} contains a wildcard")
    header = encode_str(topic, "topic name")
    if qos:
        header += _packet_id(packet.packet_id)
    elif packet.packet_id is not None or packet.dup:
        raise LocalProtocolError("a QoS 0 PUBLISH has no packet identifier and no DUP flag")
    properties = packet.properties
    if level == 5:
        header += encode_properties(properties, PacketType.PUBLISH)
        if not topic and properties.topic_alias is None:
            raise LocalProtocolError("an empty topic name needs a topic alias")
    else:
        if properties is not EMPTY_PROPERTIES and properties != EMPTY_PROPERTIES:
            raise LocalProtocolError("MQTT 3.1.1 packets have no properties")
        if not topic:
            raise LocalProtocolError("empty topic name")
    first = 0x30 | (_qos(qos, "PUBLISH") << 1)
    if packet.dup:
        first |= 0x08
    if packet.retain:
        first |= 0x01
    payload = packet.payload
    return b"".join(
        (bytes((first,)), encode_vbi(len(header) + len(payload)), header, payload)
    )


def _ack_encoder(first: int, allowed: frozenset[int], name: str) -> Callable[[Any, int], bytes]:
    def encode_ack(packet: PubAck | PubRec | PubRel | PubComp, level: int) -> bytes:
        """Encode a PUBACK, PUBREC, PUBREL or PUBCOMP, in its shortest form (§3.4.2.1)."""
        packet_id = _packet_id(packet.packet_id)
        code = packet.reason_code
        properties = packet.properties
        if properties is EMPTY_PROPERTIES and code == 0:
            return bytes((first, 2)) + packet_id  # 3.1.1, and the 5.0 short form (§3.4.2.1)
        if level == 4:
            if code != 0 or properties != EMPTY_PROPERTIES:
                raise LocalProtocolError(f"a 3.1.1 {name} has no reason code or properties")
            return bytes((first, 2)) + packet_id
        reason = _reason(code, allowed, name)
        if properties == EMPTY_PROPERTIES:
            return bytes((first, 3)) + packet_id + reason
        body = packet_id + reason + encode_properties(properties, first >> 4)
        return _frame(first, body)

    return encode_ack


def _encode_subscribe(packet: Subscribe, level: int) -> bytes:
    if not packet.subscriptions:
        raise LocalProtocolError("SUBSCRIBE needs at least one subscription")
    parts = [
        _packet_id(packet.packet_id),
        _properties(packet.properties, PacketType.SUBSCRIBE, level),
    ]
    for sub in packet.subscriptions:
        _check(validate_topic_filter, sub.topic_filter)
        options = _qos(sub.qos, "subscription")
        if level == 5:
            if sub.retain_handling not in (0, 1, 2):
                raise LocalProtocolError(f"retain handling {sub.retain_handling!r}")
            if sub.no_local and sub.topic_filter.startswith(SHARED_PREFIX):
                raise LocalProtocolError("No Local cannot be set on a shared subscription")
            options |= (
                (0x04 if sub.no_local else 0)
                | (0x08 if sub.retain_as_published else 0)
                | (sub.retain_handling << 4)
            )
        elif sub.no_local or sub.retain_as_published or sub.retain_handling:
            raise LocalProtocolError("MQTT 3.1.1 subscriptions have only a QoS")
        parts.append(encode_str(sub.topic_filter, "topic filter") + bytes((options,)))
    return _frame(0x82, b"".join(parts))


def _encode_suback(packet: SubAck, level: int) -> bytes:
    if not packet.reason_codes:
        raise LocalProtocolError("SUBACK needs at least one reason code")
    allowed = SUBACK_CODES if level == 5 else SUBACK_CODES_V4
    codes = b"".join(_reason(code, allowed, "SUBACK") for code in packet.reason_codes)
    body = (
        _packet_id(packet.packet_id)
        + _properties(packet.properties, PacketType.SUBACK, level)
        + codes
    )
    return _frame(0x90, body)


def _encode_unsubscribe(packet: Unsubscribe, level: int) -> bytes:
    if not packet.topic_filters:
        raise LocalProtocolError("UNSUBSCRIBE needs at least one topic filter")
    parts = [
        _packet_id(packet.packet_id),
        _properties(packet.properties, PacketType.UNSUBSCRIBE, level),
    ]
    for topic_filter in packet.topic_filters:
        _check(validate_topic_filter, topic_filter)
        parts.append(encode_str(topic_filter, "topic filter"))
    return _frame(0xA2, b"".join(parts))


def _encode_unsuback(packet: UnsubAck, level: int) -> bytes:
    packet_id = _packet_id(packet.packet_id)
    if level == 4:
        if packet.reason_codes or packet.properties != EMPTY_PROPERTIES:
            raise LocalProtocolError("a 3.1.1 UNSUBACK has no reason codes or properties")
        return b"\xb0\x02" + packet_id
    if not packet.reason_codes:
        raise LocalProtocolError("a 5.0 UNSUBACK needs one reason code per topic filter")
    codes = b"".join(_reason(code, UNSUBACK_CODES, "UNSUBACK") for code in packet.reason_codes)
    properties = encode_properties(packet.properties, PacketType.UNSUBACK)
    return _frame(0xB0, packet_id + properties + codes)


def _encode_disconnect(packet: Disconnect, level: int) -> bytes:
    code = packet.reason_code
    properties = packet.properties
    if code == 0 and properties == EMPTY_PROPERTIES:
        return b"\xe0\x00"  # 3.1.1, and 5.0's Remaining Length 0 (§3.14.2.1)
    if level == 4:
        raise LocalProtocolError("a 3.1.1 DISCONNECT has no reason code or properties")
    reason = _reason(code, DISCONNECT_CODES, "DISCONNECT")
    if properties == EMPTY_PROPERTIES:
        return b"\xe0\x01" + reason
    return _frame(0xE0, reason + encode_properties(properties, PacketType.DISCONNECT))


def _encode_auth(packet: Auth, level: int) -> bytes:
    if level != 5:
        raise LocalProtocolError("AUTH exists in MQTT 5.0 only")
    code = packet.reason_code
    properties = packet.properties
    if code == 0 and properties == EMPTY_PROPERTIES:
        return b"\xf0\x00"
    reason = _reason(code, AUTH_CODES, "AUTH")
    return _frame(0xF0, reason + encode_properties(properties, PacketType.AUTH))


def _encode_pingreq(packet: PingReq, level: int) -> bytes:
    return b"\xc0\x00"


def _encode_pingresp(packet: PingResp, level: int) -> bytes:
    return b"\xd0\x00"


_ENCODERS: dict[type, Callable[[Any, int], bytes]] = {
    Connect: _encode_connect,
    ConnAck: _encode_connack,
    Publish: _encode_publish,
    PubAck: _ack_encoder(0x40, PUBACK_CODES, "PUBACK"),
    PubRec: _ack_encoder(0x50, PUBACK_CODES, "PUBREC"),
    PubRel: _ack_encoder(0x62, PUBREL_CODES, "PUBREL"),
    PubComp: _ack_encoder(0x70, PUBREL_CODES, "PUBCOMP"),
    Subscribe: _encode_subscribe,
    SubAck: _encode_suback,
    Unsubscribe: _encode_unsubscribe,
    UnsubAck: _encode_unsuback,
    PingReq: _encode_pingreq,
    PingResp: _encode_pingresp,
    Disconnect: _encode_disconnect,
    Auth: _encode_auth,
}


def encode(packet: Packet, protocol_level: int) -> bytes:
    """Encode ``packet`` for a connection at ``protocol_level`` (4 = 3.1.1, 5 = 5.0).

    Returns:
        The packet's bytes, fixed header included.

    Raises:
        LocalProtocolError: the packet is not valid at that level (a property in 3.1.1, a
            reason code outside the packet's table, a QoS 1 PUBLISH without packet identifier,
            a string with U+0000, a field out of range, ...).
    """
    if protocol_level not in (4, 5):
        raise LocalProtocolError(f"unsupported protocol level {protocol_level!r}")
    encoder = _ENCODERS.get(type(packet))
    if encoder is None:
        raise LocalProtocolError(f"{packet!r} is not an MQTT packet")
    return encoder(packet, protocol_level)
