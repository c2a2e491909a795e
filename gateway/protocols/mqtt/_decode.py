# -*- test-case-name: tests.unit.mqtt.test_codec -*-
"""Per-packet decoders behind :func:`gateway.protocols.mqtt.codec.decode` (MQTT §3).

Each decoder takes ``(buf, pos, end, first, level)``: the buffer, the start and end of the
packet's variable header and payload, the first byte of the fixed header (its flags are already
validated) and the protocol level. It returns the packet or raises
:class:`~gateway.protocols.errors.RemoteProtocolError` with the reason code as ``hint``.
"""

from __future__ import annotations

from typing import Callable

from gateway.protocols.errors import RemoteProtocolError
from gateway.protocols.mqtt._wire import (
    Buffer,
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
)
from gateway.protocols.mqtt.reasons import (
    AUTH_LOOKUP,
    CONNACK_LOOKUP,
    CONNECT_RETURN_LOOKUP,
    DISCONNECT_LOOKUP,
    PUBACK_LOOKUP,
    PUBREL_LOOKUP,
    SUBACK_LOOKUP,
    SUBACK_LOOKUP_V4,
    UNSUBACK_LOOKUP,
    PacketType,
    ReasonCode,
)
from gateway.protocols.mqtt.topics import (
    SHARED_PREFIX,
    InvalidTopicError,
    validate_topic_filter,
    validate_topic_name,
)

__all__ = ["DECODERS"]

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
