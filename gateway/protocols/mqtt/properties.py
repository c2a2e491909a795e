# -*- test-case-name: tests.unit.mqtt.test_codec -*-
"""MQTT 5.0 properties (§2.2.2): one typed, immutable :class:`Properties` value for every packet.

Every property of the specification is a field named after it (snake case). A field is ``None``
(or an empty tuple for the two repeatable ones) when the property is absent. Which properties a
packet may carry is checked on encode and on decode against the table of §2.2.2.2:

* an identifier that is unknown or not valid for the packet type is a Malformed Packet (0x81);
* a property that may appear once but appears twice is a Protocol Error (0x82); User Property
  may repeat anywhere, Subscription Identifier only in PUBLISH (server to client, §3.3.2.3.8);
* out-of-range values are a Protocol Error (0x82), except Topic Alias 0 (0x94, §3.3.2.3.4).

User properties are an ordered tuple of ``(name, value)`` pairs; order and duplicates are kept
(§3.1.2.11.8: "the same name is allowed to appear more than once").
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any, Callable, NamedTuple

from gateway.protocols.errors import LocalProtocolError, RemoteProtocolError
from gateway.protocols.mqtt.datatypes import (
    Buffer,
    encode_bin,
    encode_str,
    encode_u16,
    encode_u32,
    encode_vbi,
    read_bin,
    read_str,
    read_u16,
    read_u32,
    read_u8,
    read_vbi,
    malformed,
    protocol_error,
)
from gateway.protocols.mqtt.reasons import PacketType, ReasonCode
from gateway.protocols.mqtt.topics import InvalidTopicError, validate_topic_name

__all__ = ["EMPTY_PROPERTIES", "Properties", "PropertyId", "WILL_PROPERTIES"]


class PropertyId(IntEnum):
    """Property identifiers (§2.2.2.2, Table 2-4)."""

    PAYLOAD_FORMAT_INDICATOR = 0x01
    MESSAGE_EXPIRY_INTERVAL = 0x02
    CONTENT_TYPE = 0x03
    RESPONSE_TOPIC = 0x08
    CORRELATION_DATA = 0x09
    SUBSCRIPTION_IDENTIFIER = 0x0B
    SESSION_EXPIRY_INTERVAL = 0x11
    ASSIGNED_CLIENT_IDENTIFIER = 0x12
    SERVER_KEEP_ALIVE = 0x13
    AUTHENTICATION_METHOD = 0x15
    AUTHENTICATION_DATA = 0x16
    REQUEST_PROBLEM_INFORMATION = 0x17
    WILL_DELAY_INTERVAL = 0x18
    REQUEST_RESPONSE_INFORMATION = 0x19
    RESPONSE_INFORMATION = 0x1A
    SERVER_REFERENCE = 0x1C
    REASON_STRING = 0x1F
    RECEIVE_MAXIMUM = 0x21
    TOPIC_ALIAS_MAXIMUM = 0x22
    TOPIC_ALIAS = 0x23
    MAXIMUM_QOS = 0x24
    RETAIN_AVAILABLE = 0x25
    USER_PROPERTY = 0x26
    MAXIMUM_PACKET_SIZE = 0x27
    WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
    SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
    SHARED_SUBSCRIPTION_AVAILABLE = 0x2A


@dataclass(frozen=True, slots=True, repr=False)
class Properties:
    """The MQTT 5.0 properties of one packet (or of a Will message). All fields are optional.

    Byte properties with the values 0/1 are ``bool``; Maximum QoS and Payload Format Indicator
    stay ``int``. ``subscription_identifiers`` holds at most one value except in a PUBLISH sent
    by the server, which carries one per matching subscription (§3.3.4).
    """

    payload_format_indicator: int | None = None
    message_expiry_interval: int | None = None
    content_type: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    subscription_identifiers: tuple[int, ...] = ()
    session_expiry_interval: int | None = None
    assigned_client_identifier: str | None = None
    server_keep_alive: int | None = None
    authentication_method: str | None = None
    authentication_data: bytes | None = None
    request_problem_information: bool | None = None
    will_delay_interval: int | None = None
    request_response_information: bool | None = None
    response_information: str | None = None
    server_reference: str | None = None
    reason_string: str | None = None
    receive_maximum: int | None = None
    topic_alias_maximum: int | None = None
    topic_alias: int | None = None
    maximum_qos: int | None = None
    retain_available: bool | None = None
    user_properties: tuple[tuple[str, str], ...] = ()
    maximum_packet_size: int | None = None
    wildcard_subscription_available: bool | None = None
    subscription_identifier_available: bool | None = None
    shared_subscription_available: bool | None = None

    def __bool__(self) -> bool:
        """False when no property is set."""
        return self != EMPTY_PROPERTIES

    def __repr__(self) -> str:
        """Only the properties that are set, e.g. ``Properties(topic_alias=3)``."""
        shown = (
            f"{name}={getattr(self, name)!r}"
            for name in self.__slots__
            if getattr(self, name) not in (None, ())
        )
        return f"Properties({', '.join(shown)})"


#: The shared "no properties" value; decoders return this very object when a packet has none.
EMPTY_PROPERTIES = Properties()

#: Pseudo packet type for the Will Properties of a CONNECT payload (§3.1.3.2).
WILL_PROPERTIES = 0

_P = PacketType
_ACKS = frozenset({_P.PUBACK, _P.PUBREC, _P.PUBREL, _P.PUBCOMP})
_ALL = frozenset(set(_P) - {_P.PINGREQ, _P.PINGRESP} | {WILL_PROPERTIES})


class _Kind(IntEnum):
    BYTE = 1
    BOOL = 2
    U16 = 3
    U32 = 4
    VBI = 5
    STR = 6
    BIN = 7
    PAIR = 8


class _Spec(NamedTuple):
    ident: int
    attr: str
    kind: _Kind
    packets: frozenset[int]


_K = _Kind
_MESSAGE = frozenset({_P.PUBLISH, WILL_PROPERTIES})
_SPECS: tuple[_Spec, ...] = (
    _Spec(0x01, "payload_format_indicator", _K.BYTE, _MESSAGE),
    _Spec(0x02, "message_expiry_interval", _K.U32, _MESSAGE),
    _Spec(0x03, "content_type", _K.STR, _MESSAGE),
    _Spec(0x08, "response_topic", _K.STR, _MESSAGE),
    _Spec(0x09, "correlation_data", _K.BIN, _MESSAGE),
    _Spec(0x0B, "subscription_identifiers", _K.VBI, frozenset({_P.PUBLISH, _P.SUBSCRIBE})),
    _Spec(
        0x11, "session_expiry_interval", _K.U32,
        frozenset({_P.CONNECT, _P.CONNACK, _P.DISCONNECT}),
    ),
    _Spec(0x12, "assigned_client_identifier", _K.STR, frozenset({_P.CONNACK})),
    _Spec(0x13, "server_keep_alive", _K.U16, frozenset({_P.CONNACK})),
    _Spec(0x15, "authentication_method", _K.STR, frozenset({_P.CONNECT, _P.CONNACK, _P.AUTH})),
    _Spec(0x16, "authentication_data", _K.BIN, frozenset({_P.CONNECT, _P.CONNACK, _P.AUTH})),
    _Spec(0x17, "request_problem_information", _K.BOOL, frozenset({_P.CONNECT})),
    _Spec(0x18, "will_delay_interval", _K.U32, frozenset({WILL_PROPERTIES})),
    _Spec(0x19, "request_response_information", _K.BOOL, frozenset({_P.CONNECT})),
    _Spec(0x1A, "response_information", _K.STR, frozenset({_P.CONNACK})),
    _Spec(0x1C, "server_reference", _K.STR, frozenset({_P.CONNACK, _P.DISCONNECT})),
    _Spec(
        0x1F, "reason_string", _K.STR,
        _ACKS | {_P.CONNACK, _P.SUBACK, _P.UNSUBACK, _P.DISCONNECT, _P.AUTH},
    ),
    _Spec(0x21, "receive_maximum", _K.U16, frozenset({_P.CONNECT, _P.CONNACK})),
    _Spec(0x22, "topic_alias_maximum", _K.U16, frozenset({_P.CONNECT, _P.CONNACK})),
    _Spec(0x23, "topic_alias", _K.U16, frozenset({_P.PUBLISH})),
    _Spec(0x24, "maximum_qos", _K.BYTE, frozenset({_P.CONNACK})),
    _Spec(0x25, "retain_available", _K.BOOL, frozenset({_P.CONNACK})),
    _Spec(0x26, "user_properties", _K.PAIR, _ALL),
    _Spec(0x27, "maximum_packet_size", _K.U32, frozenset({_P.CONNECT, _P.CONNACK})),
    _Spec(0x28, "wildcard_subscription_available", _K.BOOL, frozenset({_P.CONNACK})),
    _Spec(0x29, "subscription_identifier_available", _K.BOOL, frozenset({_P.CONNACK})),
    _Spec(0x2A, "shared_subscription_available", _K.BOOL, frozenset({_P.CONNACK})),
)
_BY_ID: dict[int, _Spec] = {spec.ident: spec for spec in _SPECS}
if {spec.attr for spec in _SPECS} != {field.name for field in fields(Properties)}:
    raise ImportError("properties table and Properties fields disagree")  # a bug, caught early


def _value_problem(values: dict[str, Any], packet_type: int) -> tuple[str, int] | None:
    """Spec rules on property values, shared by encode and decode: (message, reason) or None."""
    for attr in ("payload_format_indicator", "maximum_qos"):
        value = values.get(attr)
        if value is not None and value not in (0, 1):
            # §3.3.2.3.2, §3.2.2.3.4: "a value other than 0 or 1" is a Protocol Error.
            return f"{attr} must be 0 or 1, not {value}", ReasonCode.PROTOCOL_ERROR
    for attr in ("receive_maximum", "maximum_packet_size"):
        if values.get(attr) == 0:
            # §3.1.2.11.3, §3.1.2.11.4: "It is a Protocol Error ... to have the value 0".
            return f"{attr} must not be 0", ReasonCode.PROTOCOL_ERROR
    if values.get("topic_alias") == 0:
        # §3.3.2.3.4: "A Topic Alias of 0 is not permitted" -> DISCONNECT 0x94.
        return "topic alias must not be 0", ReasonCode.TOPIC_ALIAS_INVALID
    sub_ids = values.get("subscription_identifiers", ())
    if 0 in sub_ids:
        # §3.8.2.1.2: "It is a Protocol Error if the Subscription Identifier has a value of 0".
        return "subscription identifier must not be 0", ReasonCode.PROTOCOL_ERROR
    if len(sub_ids) > 1 and packet_type != PacketType.PUBLISH:
        return "subscription identifier included more than once", ReasonCode.PROTOCOL_ERROR
    if "authentication_data" in values and "authentication_method" not in values:
        # §3.1.2.11.10: "a Protocol Error to include Authentication Data if there is no
        # Authentication Method".
        return "authentication data without an authentication method", ReasonCode.PROTOCOL_ERROR
    response_topic = values.get("response_topic")
    if response_topic is not None:
        try:
            validate_topic_name(response_topic)  # §3.3.2.3.5 [MQTT-3.3.2-14]
        except InvalidTopicError as exc:
            return f"response topic: {exc}", ReasonCode.PROTOCOL_ERROR
    return None


def decode_properties(
    buf: Buffer, pos: int, end: int, packet_type: int
) -> tuple[Properties, int]:
    """Read a Property Length and the properties after it (§2.2.2), validated for the type.

    Returns the properties (:data:`EMPTY_PROPERTIES` when there are none) and the position after
    them.

    Raises:
        RemoteProtocolError: malformed or forbidden properties, with the hint of §2.2.2.2.
    """
    if pos < end and buf[pos] == 0:
        return EMPTY_PROPERTIES, pos + 1  # the fast path: no properties at all
    length, pos = read_vbi(buf, pos, end)
    stop = pos + length
    if stop > end:
        raise malformed("properties run past the end of the packet")
    values: dict[str, Any] = {}
    user: list[tuple[str, str]] = []
    sub_ids: list[int] = []
    while pos < stop:
        ident = buf[pos]
        pos += 1
        spec = _BY_ID.get(ident)
        if spec is None or packet_type not in spec.packets:
            raise malformed(f"property 0x{ident:02X} is not valid in this packet")
        kind = spec.kind
        value: Any
        if kind == _K.STR:
            value, pos = read_str(buf, pos, stop)
        elif kind == _K.U32:
            value, pos = read_u32(buf, pos, stop)
        elif kind == _K.U16:
            value, pos = read_u16(buf, pos, stop)
        elif kind == _K.PAIR:
            name, pos = read_str(buf, pos, stop)
            text, pos = read_str(buf, pos, stop)
            user.append((name, text))
            continue
        elif kind == _K.VBI:
            value, pos = read_vbi(buf, pos, stop)
            sub_ids.append(value)
            continue
        elif kind == _K.BIN:
            value, pos = read_bin(buf, pos, stop)
        else:
            value, pos = read_u8(buf, pos, stop)
            if kind == _K.BOOL:
                if value > 1:
                    # e.g. §3.1.2.11.6: "a value other than 0 or 1" is a Protocol Error.
                    raise protocol_error(f"{spec.attr} must be 0 or 1, not {value}")
                value = value == 1
        if spec.attr in values:
            raise protocol_error(f"property {spec.attr} included more than once")
        values[spec.attr] = value
    if sub_ids:
        values["subscription_identifiers"] = tuple(sub_ids)
    problem = _value_problem(values, packet_type)
    if problem is not None:
        raise RemoteProtocolError(problem[0], hint=problem[1])
    if user:
        values["user_properties"] = tuple(user)
    return Properties(**values), pos


def _encode_byte(value: int, what: str) -> bytes:
    if not 0 <= value <= 0xFF:
        raise LocalProtocolError(f"{what} {value} does not fit in a byte")
    return bytes((value,))


def _encode_bool(value: bool, what: str) -> bytes:
    return b"\x01" if value else b"\x00"


_ENCODERS: dict[_Kind, Callable[[Any, str], bytes]] = {
    _K.BYTE: _encode_byte,
    _K.BOOL: _encode_bool,
    _K.U16: encode_u16,
    _K.U32: encode_u32,
    _K.STR: encode_str,
    _K.BIN: encode_bin,
}


def encode_properties(props: Properties, packet_type: int) -> bytes:
    """Encode a Property Length and the properties (§2.2.2) for ``packet_type``.

    Raises:
        LocalProtocolError: a property not allowed in this packet, or a value out of range.
    """
    if props is EMPTY_PROPERTIES:
        return b"\x00"
    out: list[bytes] = []
    values: dict[str, Any] = {}
    for spec in _SPECS:
        value = getattr(props, spec.attr)
        if value is None or value == ():
            continue
        if packet_type not in spec.packets:
            raise LocalProtocolError(f"property {spec.attr} is not allowed in this packet")
        values[spec.attr] = value
        ident = bytes((spec.ident,))
        if spec.kind == _K.PAIR:
            for name, text in value:
                out.append(ident + encode_str(name, "user property name"))
                out.append(encode_str(text, "user property value"))
        elif spec.kind == _K.VBI:
            for number in value:
                out.append(ident + encode_vbi(number))
        else:
            out.append(ident + _ENCODERS[spec.kind](value, spec.attr))
    problem = _value_problem(values, packet_type)
    if problem is not None:
        raise LocalProtocolError(problem[0], hint=problem[1])
    body = b"".join(out)
    return encode_vbi(len(body)) + body
