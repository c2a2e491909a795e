# -*- test-case-name: tests.unit.mqtt.test_codec -*-
"""The MQTT 3.1.1 / 5.0 codec: ``decode`` bytes into packets and ``encode`` packets into bytes.

``decode(buf, protocol_level=..., max_packet_size=...)`` looks at the start of ``buf`` and
returns ``(packet, consumed)``, or ``(None, 0)`` when ``buf`` does not yet hold a whole packet
("need more data": keep the bytes, append more, call again). It raises
:class:`~gateway.protocols.errors.RemoteProtocolError` whose ``hint`` is the
:class:`~.reasons.ReasonCode` the specification prescribes, and nothing else, whatever the bytes:

====================================================  =====================================
what was received                                     hint
====================================================  =====================================
reserved packet type or fixed-header flags (§2.1.3),  0x81 Malformed Packet
bad lengths, remaining length over 4 bytes or not
minimal, ill-formed UTF-8 or U+0000 (§1.5.4), an
unknown property or one not valid for the packet,
reserved bits set, a reason code outside the table
a packet identifier of 0, a repeated property, an     0x82 Protocol Error
out-of-range property value, an empty SUBSCRIBE,
the first packet not a CONNECT (``protocol_level``
``None``), Retain Handling 3, No Local on $share
a packet larger than ``max_packet_size`` (checked     0x95 Packet too large
as soon as the fixed header is in, §3.1.2.11.4)
wildcards in, or an empty, topic name                 0x90 Topic Name invalid
invalid topic filter (§4.7.1, §4.8.2)                 0x8F Topic Filter invalid
Topic Alias 0                                         0x94 Topic Alias invalid
a CONNECT for another protocol or level (§3.1.2.2)    0x84 Unsupported Protocol Version
====================================================  =====================================

A CONNECT is always decoded with the level it announces; every other packet with
``protocol_level`` (4 or 5, the level of the connection).

:func:`encode` refuses, with :class:`LocalProtocolError`, any packet the decoder would refuse, so
``decode(encode(p)) == p`` for every packet it accepts; 5.0-only content (properties, reason codes
other than success, AUTH) cannot be encoded at level 4. A PUBLISH is encoded by one function,
:func:`publish_parts`, both for one packet and for a broker's message shared by many subscribers.
"""

from __future__ import annotations

from typing import Any, Callable

from gateway.protocols.errors import LocalProtocolError, RemoteProtocolError
from gateway.protocols.mqtt.datatypes import (
    Buffer,
    encode_bin,
    encode_str,
    encode_u16,
    encode_vbi,
    malformed,
    protocol_error,
    read_bin,
    read_str,
    read_u8,
    read_u16,
)
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
    RetainHandling,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
    new_publish,
)
from gateway.protocols.mqtt.properties import (
    EMPTY_PROPERTIES,
    WILL_PROPERTIES,
    Properties,
    decode_properties,
    encode_properties,
)
from gateway.protocols.mqtt.reasons import (
    AUTH_CODES,
    AUTH_LOOKUP,
    CONNACK_CODES,
    CONNACK_LOOKUP,
    CONNECT_RETURN_LOOKUP,
    DISCONNECT_CODES,
    DISCONNECT_LOOKUP,
    PUBACK_CODES,
    PUBACK_LOOKUP,
    PUBREL_CODES,
    PUBREL_LOOKUP,
    SUBACK_CODES,
    SUBACK_CODES_V4,
    SUBACK_LOOKUP,
    SUBACK_LOOKUP_V4,
    UNSUBACK_CODES,
    UNSUBACK_LOOKUP,
    ConnectReturnCode,
    PacketType,
    ReasonCode,
)
from gateway.protocols.mqtt.topics import (
    SHARED_PREFIX,
    InvalidTopicError,
    validate_topic_filter,
    validate_topic_name,
)

__all__ = ["MAX_PACKET_SIZE", "decode", "encode", "peek_connect_level", "publish_parts"]


# -- decoding: one decoder per packet type (§3) ------------------------------

Decoder = Callable[[Buffer, int, int, int, int], Packet]
_RETAIN_HANDLING = tuple(RetainHandling)


def _done(pos: int, end: int, what: str) -> None:
    if pos != end:
        raise malformed(f"{what} has {end - pos} unexpected trailing bytes")


def _packet_id(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    packet_id, pos = read_u16(buf, pos, end)
    if packet_id == 0:
        # §2.2.1: packet identifiers are non-zero [MQTT-2.2.1-3].
        raise protocol_error("packet identifier 0")
    return packet_id, pos


def _topic_name(topic: str, what: str) -> None:
    try:
        validate_topic_name(topic)
    except InvalidTopicError as exc:
        raise RemoteProtocolError(f"{what}: {exc}", hint=ReasonCode.TOPIC_NAME_INVALID) from None


def _topic_filter(topic_filter: str) -> None:
    try:
        validate_topic_filter(topic_filter)
    except InvalidTopicError as exc:
        raise RemoteProtocolError(str(exc), hint=ReasonCode.TOPIC_FILTER_INVALID) from None


def _decode_connect(buf: Buffer, pos: int, end: int, first: int, _level: int) -> Connect:
    name, pos = read_str(buf, pos, end)
    version, pos = read_u8(buf, pos, end)
    if name != "MQTT" or version not in (4, 5):
        # §3.1.2.1/§3.1.2.2: refuse with CONNACK 0x84 (5.0) / return code 1 (3.1.1).
        raise RemoteProtocolError(
            f"unsupported protocol {name!r} level {version}",
            hint=ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
        )
    flags, pos = read_u8(buf, pos, end)
    if flags & 0x01:
        raise malformed("CONNECT reserved flag is set")  # [MQTT-3.1.2-3]
    will_flag = flags & 0x04
    will_qos = (flags >> 3) & 0x03
    will_retain = bool(flags & 0x20)
    if will_flag:
        if will_qos == 3:
            raise malformed("Will QoS 3")  # §3.1.2.6
    elif will_qos or will_retain:
        raise malformed("Will QoS or Will Retain set without a Will")  # [MQTT-3.1.2-11, -13]
    if version == 4 and flags & 0xC0 == 0x40:
        raise malformed("password without a user name")  # 3.1.1 [MQTT-3.1.2-22]
    keep_alive, pos = read_u16(buf, pos, end)
    properties = EMPTY_PROPERTIES
    if version == 5:
        properties, pos = decode_properties(buf, pos, end, PacketType.CONNECT)
    client_id, pos = read_str(buf, pos, end)
    will = None
    if will_flag:
        will_properties = EMPTY_PROPERTIES
        if version == 5:
            will_properties, pos = decode_properties(buf, pos, end, WILL_PROPERTIES)
        will_topic, pos = read_str(buf, pos, end)
        _topic_name(will_topic, "will topic")
        will_payload, pos = read_bin(buf, pos, end)
        will = Will(will_topic, will_payload, will_qos, will_retain, will_properties)
    username = password = None
    if flags & 0x80:
        username, pos = read_str(buf, pos, end)
    if flags & 0x40:
        password, pos = read_bin(buf, pos, end)
    _done(pos, end, "CONNECT")
    return Connect(
        client_id, version, bool(flags & 0x02), keep_alive, username, password, will, properties
    )


def _decode_connack(buf: Buffer, pos: int, end: int, first: int, level: int) -> ConnAck:
    flags, pos = read_u8(buf, pos, end)
    if flags & 0xFE:
        raise malformed("CONNACK reserved flags are set")  # §3.2.2.1
    code, pos = read_u8(buf, pos, end)
    reason = (CONNACK_LOOKUP if level == 5 else CONNECT_RETURN_LOOKUP).get(code)
    if reason is None:
        raise malformed(f"CONNACK reason code 0x{code:02X} is not defined")
    properties = EMPTY_PROPERTIES
    if level == 5:
        properties, pos = decode_properties(buf, pos, end, PacketType.CONNACK)
    _done(pos, end, "CONNACK")
    if flags and reason:
        # [MQTT-3.2.2-6] (5.0) / [MQTT-3.2.2-4] (3.1.1): Session Present is 0 on refusal.
        raise protocol_error("CONNACK refuses the connection but sets Session Present")
    return ConnAck(bool(flags), reason, properties)


def _decode_publish(buf: Buffer, pos: int, end: int, first: int, level: int) -> Publish:
    # The hot path of a broker: reads are inlined rather than calling the _wire helpers.
    if pos + 2 > end:
        raise malformed("PUBLISH ends inside the topic length")
    stop = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if stop > end:
        raise malformed("PUBLISH topic runs past the end of the packet")
    try:
        topic = str(buf[pos + 2 : stop], "utf-8")
    except UnicodeDecodeError as exc:
        raise malformed(f"topic is not valid UTF-8 ({exc.reason})") from None
    if "\x00" in topic:
        raise malformed("topic contains U+0000")  # [MQTT-1.5.4-2]
    if "+" in topic or "#" in topic:
        # [MQTT-3.3.2-2]: "The Topic Name in the PUBLISH packet MUST NOT contain wildcards".
        raise RemoteProtocolError(
            f"topic name {topic!r} contains a wildcard", hint=ReasonCode.TOPIC_NAME_INVALID
        )
    pos = stop
    qos = (first >> 1) & 0x03
    packet_id = None
    if qos:
        if pos + 2 > end:
            raise malformed("PUBLISH ends inside the packet identifier")
        packet_id = (buf[pos] << 8) | buf[pos + 1]
        pos += 2
        if packet_id == 0:
            raise protocol_error("packet identifier 0")  # [MQTT-2.2.1-3]
    properties = EMPTY_PROPERTIES
    if level == 5:
        if pos < end and buf[pos] == 0:
            pos += 1
        else:
            properties, pos = decode_properties(buf, pos, end, PacketType.PUBLISH)
        if not topic and properties.topic_alias is None:
            # §3.3.2.3.4: "a Protocol Error if the Topic Name is zero length and there is no
            # Topic Alias".
            raise protocol_error("PUBLISH with an empty topic and no topic alias")
    elif not topic:
        raise RemoteProtocolError("empty topic name", hint=ReasonCode.TOPIC_NAME_INVALID)
    return new_publish(
        topic, bytes(buf[pos:end]), qos, bool(first & 0x01), bool(first & 0x08), packet_id,
        properties,
    )


def _ack_decoder(
    cls: type[PubAck] | type[PubRec] | type[PubRel] | type[PubComp],
    lookup: dict[int, ReasonCode],
) -> Decoder:
    def decode_ack(buf: Buffer, pos: int, end: int, first: int, level: int) -> Packet:
        """Decode a PUBACK, PUBREC, PUBREL or PUBCOMP (§3.4-§3.7)."""
        packet_id, pos = _packet_id(buf, pos, end)
        if pos == end:
            # 3.1.1, and 5.0 "Reason Code and Property Length can be omitted if the Reason Code
            # is 0x00 (Success) and there are no Properties" (§3.4.2.1).
            return cls(packet_id)
        if level == 4:
            raise malformed(f"{cls.__name__} longer than 2 bytes in MQTT 3.1.1")
        reason = lookup.get(buf[pos])
        if reason is None:
            raise malformed(f"{cls.__name__} reason code 0x{buf[pos]:02X} is not defined")
        if pos + 1 == end:
            return cls(packet_id, reason)  # "no Property Length and the value of 0 is used"
        properties, pos = decode_properties(buf, pos + 1, end, cls.packet_type)
        _done(pos, end, cls.__name__)
        return cls(packet_id, reason, properties)

    return decode_ack


def _decode_subscribe(buf: Buffer, pos: int, end: int, first: int, level: int) -> Subscribe:
    packet_id, pos = _packet_id(buf, pos, end)
    properties = EMPTY_PROPERTIES
    if level == 5:
        properties, pos = decode_properties(buf, pos, end, PacketType.SUBSCRIBE)
    subscriptions = []
    while pos < end:
        topic_filter, pos = read_str(buf, pos, end)
        options, pos = read_u8(buf, pos, end)
        qos = options & 0x03
        if level == 4:
            if options & 0xFC or qos == 3:
                raise malformed("SUBSCRIBE reserved bits or QoS 3")  # 3.1.1 [MQTT-3-8.3-4]
        elif options & 0xC0:
            raise malformed("SUBSCRIBE reserved option bits are set")  # [MQTT-3.8.3-5]
        elif qos == 3:
            raise protocol_error("SUBSCRIBE with maximum QoS 3")  # §3.8.3.1
        retain_handling = (options >> 4) & 0x03
        if retain_handling == 3:
            raise protocol_error("Retain Handling 3")  # §3.8.3.1
        _topic_filter(topic_filter)
        no_local = bool(options & 0x04)
        if no_local and topic_filter.startswith(SHARED_PREFIX):
            raise protocol_error("No Local on a shared subscription")  # [MQTT-3.8.3-4]
        subscriptions.append(
            Subscription(
                topic_filter, qos, no_local, bool(options & 0x08),
                _RETAIN_HANDLING[retain_handling],
            )
        )
    if not subscriptions:
        raise protocol_error("SUBSCRIBE without topic filters")  # [MQTT-3.8.3-2]
    return Subscribe(packet_id, tuple(subscriptions), properties)


def _reason_list(
    buf: Buffer, pos: int, end: int, lookup: dict[int, ReasonCode], what: str
) -> tuple[ReasonCode, ...]:
    if pos >= end:
        raise protocol_error(f"{what} without reason codes")
    codes = []
    for index in range(pos, end):
        reason = lookup.get(buf[index])
        if reason is None:
            raise malformed(f"{what} reason code 0x{buf[index]:02X} is not defined")
        codes.append(reason)
    return tuple(codes)


def _decode_suback(buf: Buffer, pos: int, end: int, first: int, level: int) -> SubAck:
    packet_id, pos = _packet_id(buf, pos, end)
    properties = EMPTY_PROPERTIES
    if level == 5:
        properties, pos = decode_properties(buf, pos, end, PacketType.SUBACK)
    lookup = SUBACK_LOOKUP if level == 5 else SUBACK_LOOKUP_V4
    return SubAck(packet_id, _reason_list(buf, pos, end, lookup, "SUBACK"), properties)


def _decode_unsubscribe(buf: Buffer, pos: int, end: int, first: int, level: int) -> Unsubscribe:
    packet_id, pos = _packet_id(buf, pos, end)
    properties = EMPTY_PROPERTIES
    if level == 5:
        properties, pos = decode_properties(buf, pos, end, PacketType.UNSUBSCRIBE)
    topic_filters = []
    while pos < end:
        topic_filter, pos = read_str(buf, pos, end)
        _topic_filter(topic_filter)
        topic_filters.append(topic_filter)
    if not topic_filters:
        raise protocol_error("UNSUBSCRIBE without topic filters")  # [MQTT-3.10.3-2]
    return Unsubscribe(packet_id, tuple(topic_filters), properties)


def _decode_unsuback(buf: Buffer, pos: int, end: int, first: int, level: int) -> UnsubAck:
    packet_id, pos = _packet_id(buf, pos, end)
    if level == 4:
        _done(pos, end, "UNSUBACK")
        return UnsubAck(packet_id)
    properties, pos = decode_properties(buf, pos, end, PacketType.UNSUBACK)
    return UnsubAck(
        packet_id, _reason_list(buf, pos, end, UNSUBACK_LOOKUP, "UNSUBACK"), properties
    )


def _decode_pingreq(buf: Buffer, pos: int, end: int, first: int, level: int) -> PingReq:
    _done(pos, end, "PINGREQ")
    return _PINGREQ


def _decode_pingresp(buf: Buffer, pos: int, end: int, first: int, level: int) -> PingResp:
    _done(pos, end, "PINGRESP")
    return _PINGRESP


def _reason_and_properties(
    buf: Buffer, pos: int, end: int, lookup: dict[int, ReasonCode], packet_type: PacketType
) -> tuple[ReasonCode, Properties]:
    reason = lookup.get(buf[pos])
    if reason is None:
        raise malformed(f"{packet_type.name} reason code 0x{buf[pos]:02X} is not defined")
    properties, pos = decode_properties(buf, pos + 1, end, packet_type)
    _done(pos, end, packet_type.name)
    return reason, properties


def _decode_disconnect(buf: Buffer, pos: int, end: int, first: int, level: int) -> Disconnect:
    if pos == end:
        return _DISCONNECT  # 3.1.1, or 5.0 with Remaining Length 0: Normal disconnection
    if level == 4:
        raise malformed("DISCONNECT with a body in MQTT 3.1.1")
    if pos + 1 == end:
        # §3.14.2.2.1: "If the Remaining Length is less than 2, a value of 0 is used".
        reason = DISCONNECT_LOOKUP.get(buf[pos])
        if reason is None:
            raise malformed(f"DISCONNECT reason code 0x{buf[pos]:02X} is not defined")
        return Disconnect(reason)
    return Disconnect(
        *_reason_and_properties(buf, pos, end, DISCONNECT_LOOKUP, PacketType.DISCONNECT)
    )


def _decode_auth(buf: Buffer, pos: int, end: int, first: int, level: int) -> Auth:
    if pos == end:
        return Auth()  # §3.15.2.1: Remaining Length 0 means Success without properties
    return Auth(*_reason_and_properties(buf, pos, end, AUTH_LOOKUP, PacketType.AUTH))


_PINGREQ = PingReq()
_PINGRESP = PingResp()
_DISCONNECT = Disconnect()
DECODERS: tuple[Decoder, ...] = (
    _decode_connect,  # 0 is rejected by the first-byte table before dispatch
    _decode_connect,
    _decode_connack,
    _decode_publish,
    _ack_decoder(PubAck, PUBACK_LOOKUP),
    _ack_decoder(PubRec, PUBACK_LOOKUP),  # PUBREC shares PUBACK's reason codes (§3.5.2.1)
    _ack_decoder(PubRel, PUBREL_LOOKUP),
    _ack_decoder(PubComp, PUBREL_LOOKUP),  # PUBCOMP shares PUBREL's (§3.7.2.1)
    _decode_subscribe,
    _decode_suback,
    _decode_unsubscribe,
    _decode_unsuback,
    _decode_pingreq,
    _decode_pingresp,
    _decode_disconnect,
    _decode_auth,
)


# -- encoding ----------------------------------------------------------------------

def _frame(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_vbi(len(body)) + body


def _properties(props: Properties, packet_type: int, level: int) -> bytes:
    if level == 5:
        return encode_properties(props, packet_type)
    if props is not EMPTY_PROPERTIES and props != EMPTY_PROPERTIES:
        raise LocalProtocolError("MQTT 3.1.1 packets have no properties")
    return b""


def _encode_packet_id(packet_id: int | None) -> bytes:
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


def publish_parts(
    topic: str, payload: bytes, qos: int, retain: bool, properties: Properties, level: int, dup: bool = False
) -> tuple[bytes, bytes]:
    """A PUBLISH at ``level`` split where the packet identifier goes (QoS 1/2):
    ``(fixed header + topic name, properties + payload)``; the remaining length counts the two
    identifier bytes when ``qos`` is not 0.

    The one PUBLISH encoder: :func:`encode` puts one packet's identifier between the parts, a
    broker encodes a message once per (level, QoS, RETAIN) and every subscriber's connection
    puts its own identifier in. The topic name is checked as a UTF-8 string (§1.5.4); the rules
    on wildcards, QoS and identifiers are :func:`encode`'s (a broker's messages were decoded).
    """
    try:
        name = topic.encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError("topic name is not encodable as UTF-8 (lone surrogate)") from None
    if len(name) > 0xFFFF or "\x00" in topic:
        raise LocalProtocolError("topic name is longer than 65535 bytes or contains U+0000")
    head = len(name).to_bytes(2, "big") + name
    if level != 5:
        tail = payload
    elif properties is EMPTY_PROPERTIES:
        tail = b"\x00" + payload  # a property length of 0
    else:
        tail = encode_properties(properties, PacketType.PUBLISH) + payload
    first = 0x30 | qos << 1 | (0x08 if dup else 0) | (0x01 if retain else 0)
    size = len(head) + len(tail) + (2 if qos else 0)
    if size < 0x80:  # a one-byte Remaining Length: small messages, the common case
        return bytes((first, size)) + head, tail
    return bytes((first,)) + encode_vbi(size) + head, tail


def _encode_publish(packet: Publish, level: int) -> bytes:
    qos = _qos(packet.qos, "PUBLISH")
    topic = packet.topic
    if "+" in topic or "#" in topic:
        raise LocalProtocolError(f"topic name {topic!r} contains a wildcard")
    properties = packet.properties
    if level == 5:
        if not topic and properties.topic_alias is None:
            raise LocalProtocolError("an empty topic name needs a topic alias")
    else:
        if properties is not EMPTY_PROPERTIES and properties != EMPTY_PROPERTIES:
            raise LocalProtocolError("MQTT 3.1.1 packets have no properties")
        if not topic:
            raise LocalProtocolError("empty topic name")
    if not qos and (packet.packet_id is not None or packet.dup):
        raise LocalProtocolError("a QoS 0 PUBLISH has no packet identifier and no DUP flag")
    head, tail = publish_parts(topic, packet.payload, qos, packet.retain, properties, level, packet.dup)
    if qos:
        return head + _encode_packet_id(packet.packet_id) + tail
    return head + tail


def _ack_encoder(first: int, allowed: frozenset[int], name: str) -> Callable[[Any, int], bytes]:
    def encode_ack(packet: PubAck | PubRec | PubRel | PubComp, level: int) -> bytes:
        """Encode a PUBACK, PUBREC, PUBREL or PUBCOMP, in its shortest form (§3.4.2.1)."""
        packet_id = _encode_packet_id(packet.packet_id)
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
        _encode_packet_id(packet.packet_id),
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
        _encode_packet_id(packet.packet_id)
        + _properties(packet.properties, PacketType.SUBACK, level)
        + codes
    )
    return _frame(0x90, body)


def _encode_unsubscribe(packet: Unsubscribe, level: int) -> bytes:
    if not packet.topic_filters:
        raise LocalProtocolError("UNSUBSCRIBE needs at least one topic filter")
    parts = [
        _encode_packet_id(packet.packet_id),
        _properties(packet.properties, PacketType.UNSUBSCRIBE, level),
    ]
    for topic_filter in packet.topic_filters:
        _check(validate_topic_filter, topic_filter)
        parts.append(encode_str(topic_filter, "topic filter"))
    return _frame(0xA2, b"".join(parts))


def _encode_unsuback(packet: UnsubAck, level: int) -> bytes:
    packet_id = _encode_packet_id(packet.packet_id)
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


# -- the codec ---------------------------------------------------------------------

#: The largest packet MQTT can express: 1 type byte + 4 length bytes + 268,435,455 (§2.1.4).
MAX_PACKET_SIZE = 268_435_460


# Required flags (low nibble of byte 1) of every packet type but PUBLISH (§2.1.3, Table 2-2).
_FIXED_FLAGS = {
    PacketType.CONNECT: 0, PacketType.CONNACK: 0, PacketType.PUBACK: 0, PacketType.PUBREC: 0,
    PacketType.PUBREL: 2, PacketType.PUBCOMP: 0, PacketType.SUBSCRIBE: 2, PacketType.SUBACK: 0,
    PacketType.UNSUBSCRIBE: 2, PacketType.UNSUBACK: 0, PacketType.PINGREQ: 0,
    PacketType.PINGRESP: 0, PacketType.DISCONNECT: 0, PacketType.AUTH: 0,
}


def _first_byte_problem(byte: int, level: int | None) -> tuple[str, ReasonCode] | None:
    kind, flags = byte >> 4, byte & 0x0F
    if kind == 0 or (kind == PacketType.AUTH and level == 4):
        # Type 0 is reserved in both versions; 15 is reserved in 3.1.1 and AUTH in 5.0.
        return f"reserved packet type {kind}", ReasonCode.MALFORMED_PACKET
    if kind == PacketType.PUBLISH:
        if flags & 0x06 == 0x06:
            return "PUBLISH with QoS 3", ReasonCode.MALFORMED_PACKET  # §3.3.1.2
        if flags & 0x08 and not flags & 0x06:
            return "PUBLISH with DUP set at QoS 0", ReasonCode.MALFORMED_PACKET  # [MQTT-3.3.1-2]
    elif flags != _FIXED_FLAGS[PacketType(kind)]:
        return f"invalid fixed header flags for packet type {kind}", ReasonCode.MALFORMED_PACKET
    if level is None and kind != PacketType.CONNECT:
        # [MQTT-3.1.0-1]: "the first packet sent from the Client to the Server MUST be a CONNECT".
        return "the first packet must be CONNECT", ReasonCode.PROTOCOL_ERROR
    return None


_FIRST_BYTE: dict[int | None, tuple[tuple[str, ReasonCode] | None, ...]] = {
    level: tuple(_first_byte_problem(byte, level) for byte in range(256))
    for level in (None, 4, 5)
}


def decode(
    buf: Buffer, *, protocol_level: int | None, max_packet_size: int = MAX_PACKET_SIZE
) -> tuple[Packet | None, int]:
    """Decode one packet from the start of ``buf``.

    Args:
        buf: received bytes, ideally a ``memoryview`` (no copies are made of the header).
        protocol_level: 4 or 5, the level negotiated by the connection's CONNECT; ``None``
            before the CONNECT, when only a CONNECT is acceptable.
        max_packet_size: the largest whole packet (fixed header included) we accept.

    Returns:
        ``(packet, consumed)``, or ``(None, 0)`` if ``buf`` holds only part of a packet.

    Raises:
        RemoteProtocolError: the bytes break the protocol or a limit; ``hint`` is the reason
            code to send (see the module documentation).
        LocalProtocolError: ``protocol_level`` is not 4, 5 or None.
    """
    table = _FIRST_BYTE.get(protocol_level)
    if table is None:
        raise LocalProtocolError(f"unsupported protocol level {protocol_level!r}")
    size = len(buf)
    if size == 0:
        return None, 0
    first = buf[0]
    problem = table[first]
    if problem is not None:
        raise RemoteProtocolError(problem[0], hint=problem[1])
    if size < 2:
        return None, 0
    byte = buf[1]
    pos = 2
    length = byte & 0x7F
    shift = 7
    while byte >= 0x80:  # Remaining Length: a Variable Byte Integer (§2.1.4)
        if pos == 5:
            raise malformed("remaining length longer than four bytes")
        if pos >= size:
            return None, 0
        byte = buf[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if byte == 0:
            raise malformed("remaining length is not minimally encoded")  # [MQTT-1.5.5-1]
    end = pos + length
    if end > max_packet_size:
        # Checked before the body arrives, so an oversized packet is refused without buffering.
        raise RemoteProtocolError(
            f"packet of {end} bytes exceeds the maximum packet size {max_packet_size}",
            hint=ReasonCode.PACKET_TOO_LARGE,
        )
    if end > size:
        return None, 0
    level = protocol_level if protocol_level is not None else 5
    return DECODERS[first >> 4](buf, pos, end, first, level), end


def peek_connect_level(buf: Buffer) -> int | None:
    """The protocol level a (possibly invalid or incomplete) CONNECT at ``buf`` announces.

    Used to pick the CONNACK format when a CONNECT cannot be decoded. ``None`` if ``buf`` does
    not start with a CONNECT or is too short to tell.
    """
    if len(buf) < 2 or buf[0] != 0x10:
        return None
    pos = 1
    while pos < min(len(buf), 5) and buf[pos] & 0x80:
        pos += 1
    pos += 1  # past the last remaining length byte
    if pos + 2 > len(buf):
        return None
    level_at = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    return buf[level_at] if level_at < len(buf) else None
