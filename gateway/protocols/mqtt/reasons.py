# -*- test-case-name: tests.unit.mqtt.test_codec -*-
"""MQTT packet types, reason codes and which reason codes each packet may carry.

MQTT 5.0 (§2.4) gives every acknowledgement a one-byte Reason Code; values below 0x80 mean
success, 0x80 and above mean failure. MQTT 3.1.1 only has CONNACK return codes 0-5 (§3.2.2.3) and
SUBACK return codes 0, 1, 2 and 0x80 (§3.9.3). :class:`ReasonCode` covers all 5.0 codes and the
3.1.1 SUBACK codes; :class:`ConnectReturnCode` covers the 3.1.1 CONNACK codes, which overlap
numerically with 5.0 codes of a different meaning and so get their own enum.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "ConnectReturnCode",
    "PacketType",
    "ReasonCode",
    "to_connect_return_code",
]


class PacketType(IntEnum):
    """MQTT Control Packet types (the high nibble of the first byte; §2.1.2)."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15  #: MQTT 5.0 only; reserved (forbidden) in 3.1.1.


class ReasonCode(IntEnum):
    """MQTT 5.0 Reason Codes (§2.4, Table 2-6), also used for 3.1.1 SUBACK return codes.

    Several codes share the value 0x00 (Success, Normal disconnection, Granted QoS 0); Python
    makes the later names aliases of :attr:`SUCCESS`.
    """

    SUCCESS = 0x00
    NORMAL_DISCONNECTION = 0x00
    GRANTED_QOS_0 = 0x00
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    DISCONNECT_WITH_WILL_MESSAGE = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    CONTINUE_AUTHENTICATION = 0x18
    RE_AUTHENTICATE = 0x19
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    PACKET_IDENTIFIER_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2

    @property
    def is_failure(self) -> bool:
        """True for codes 0x80 and above, which mean the operation failed (§2.4)."""
        return self >= 0x80


class ConnectReturnCode(IntEnum):
    """MQTT 3.1.1 CONNACK return codes (§3.2.2.3, Table 3.1); 6-255 are reserved."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USER_NAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


R = ReasonCode

# The reason codes each 5.0 packet may carry (§3.x.2.1 tables). A received code outside its set
# "does not conform to this specification", so the codec treats it as a Malformed Packet.
CONNACK_CODES: frozenset[int] = frozenset(
    {
        R.SUCCESS, R.UNSPECIFIED_ERROR, R.MALFORMED_PACKET, R.PROTOCOL_ERROR,
        R.IMPLEMENTATION_SPECIFIC_ERROR, R.UNSUPPORTED_PROTOCOL_VERSION,
        R.CLIENT_IDENTIFIER_NOT_VALID, R.BAD_USER_NAME_OR_PASSWORD, R.NOT_AUTHORIZED,
        R.SERVER_UNAVAILABLE, R.SERVER_BUSY, R.BANNED, R.BAD_AUTHENTICATION_METHOD,
        R.TOPIC_NAME_INVALID, R.PACKET_TOO_LARGE, R.QUOTA_EXCEEDED, R.PAYLOAD_FORMAT_INVALID,
        R.RETAIN_NOT_SUPPORTED, R.QOS_NOT_SUPPORTED, R.USE_ANOTHER_SERVER, R.SERVER_MOVED,
        R.CONNECTION_RATE_EXCEEDED,
    }
)
PUBACK_CODES: frozenset[int] = frozenset(
    {
        R.SUCCESS, R.NO_MATCHING_SUBSCRIBERS, R.UNSPECIFIED_ERROR,
        R.IMPLEMENTATION_SPECIFIC_ERROR, R.NOT_AUTHORIZED, R.TOPIC_NAME_INVALID,
        R.PACKET_IDENTIFIER_IN_USE, R.QUOTA_EXCEEDED, R.PAYLOAD_FORMAT_INVALID,
    }
)
PUBREC_CODES = PUBACK_CODES  # §3.5.2.1: the same table as PUBACK.
PUBREL_CODES: frozenset[int] = frozenset({R.SUCCESS, R.PACKET_IDENTIFIER_NOT_FOUND})
PUBCOMP_CODES = PUBREL_CODES  # §3.7.2.1
SUBACK_CODES: frozenset[int] = frozenset(
    {
        R.GRANTED_QOS_0, R.GRANTED_QOS_1, R.GRANTED_QOS_2, R.UNSPECIFIED_ERROR,
        R.IMPLEMENTATION_SPECIFIC_ERROR, R.NOT_AUTHORIZED, R.TOPIC_FILTER_INVALID,
        R.PACKET_IDENTIFIER_IN_USE, R.QUOTA_EXCEEDED, R.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
        R.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED, R.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
    }
)
SUBACK_CODES_V4: frozenset[int] = frozenset(
    {R.GRANTED_QOS_0, R.GRANTED_QOS_1, R.GRANTED_QOS_2, R.UNSPECIFIED_ERROR}
)  # 3.1.1 §3.9.3: 0x80 is "Failure".
UNSUBACK_CODES: frozenset[int] = frozenset(
    {
        R.SUCCESS, R.NO_SUBSCRIPTION_EXISTED, R.UNSPECIFIED_ERROR,
        R.IMPLEMENTATION_SPECIFIC_ERROR, R.NOT_AUTHORIZED, R.TOPIC_FILTER_INVALID,
        R.PACKET_IDENTIFIER_IN_USE,
    }
)
DISCONNECT_CODES: frozenset[int] = frozenset(
    {
        R.NORMAL_DISCONNECTION, R.DISCONNECT_WITH_WILL_MESSAGE, R.UNSPECIFIED_ERROR,
        R.MALFORMED_PACKET, R.PROTOCOL_ERROR, R.IMPLEMENTATION_SPECIFIC_ERROR, R.NOT_AUTHORIZED,
        R.SERVER_BUSY, R.SERVER_SHUTTING_DOWN, R.KEEP_ALIVE_TIMEOUT, R.SESSION_TAKEN_OVER,
        R.TOPIC_FILTER_INVALID, R.TOPIC_NAME_INVALID, R.RECEIVE_MAXIMUM_EXCEEDED,
        R.TOPIC_ALIAS_INVALID, R.PACKET_TOO_LARGE, R.MESSAGE_RATE_TOO_HIGH, R.QUOTA_EXCEEDED,
        R.ADMINISTRATIVE_ACTION, R.PAYLOAD_FORMAT_INVALID, R.RETAIN_NOT_SUPPORTED,
        R.QOS_NOT_SUPPORTED, R.USE_ANOTHER_SERVER, R.SERVER_MOVED,
        R.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED, R.CONNECTION_RATE_EXCEEDED,
        R.MAXIMUM_CONNECT_TIME, R.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
        R.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
    }
)
# §3.14.2.1: 0x04 is "Sent by: Client" only; everything else in the table may come from a server.
SERVER_DISCONNECT_CODES: frozenset[int] = DISCONNECT_CODES - {R.DISCONNECT_WITH_WILL_MESSAGE}
AUTH_CODES: frozenset[int] = frozenset({R.SUCCESS, R.CONTINUE_AUTHENTICATION, R.RE_AUTHENTICATE})

# int -> enum member lookups, so the decoder turns a byte into a ReasonCode with one dict lookup
# (and rejects codes outside the packet's table with the same lookup).
def _lookup(codes: frozenset[int]) -> dict[int, ReasonCode]:
    return {int(code): ReasonCode(code) for code in codes}


CONNACK_LOOKUP = _lookup(CONNACK_CODES)
PUBACK_LOOKUP = _lookup(PUBACK_CODES)
PUBREL_LOOKUP = _lookup(PUBREL_CODES)
SUBACK_LOOKUP = _lookup(SUBACK_CODES)
SUBACK_LOOKUP_V4 = _lookup(SUBACK_CODES_V4)
UNSUBACK_LOOKUP = _lookup(UNSUBACK_CODES)
DISCONNECT_LOOKUP = _lookup(DISCONNECT_CODES)
AUTH_LOOKUP = _lookup(AUTH_CODES)
CONNECT_RETURN_LOOKUP: dict[int, ConnectReturnCode] = {int(c): c for c in ConnectReturnCode}

# 5.0 CONNACK reason -> the closest 3.1.1 return code, so the upper layer can always speak 5.0
# reason codes and the connection translates for 3.1.1 clients (3.1.1 §3.2.2.3 has only five).
_TO_V4: dict[int, ConnectReturnCode] = {
    R.SUCCESS: ConnectReturnCode.ACCEPTED,
    R.UNSUPPORTED_PROTOCOL_VERSION: ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION,
    R.CLIENT_IDENTIFIER_NOT_VALID: ConnectReturnCode.IDENTIFIER_REJECTED,
    R.SERVER_UNAVAILABLE: ConnectReturnCode.SERVER_UNAVAILABLE,
    R.SERVER_BUSY: ConnectReturnCode.SERVER_UNAVAILABLE,
    R.USE_ANOTHER_SERVER: ConnectReturnCode.SERVER_UNAVAILABLE,
    R.SERVER_MOVED: ConnectReturnCode.SERVER_UNAVAILABLE,
    R.CONNECTION_RATE_EXCEEDED: ConnectReturnCode.SERVER_UNAVAILABLE,
    R.BAD_USER_NAME_OR_PASSWORD: ConnectReturnCode.BAD_USER_NAME_OR_PASSWORD,
    R.NOT_AUTHORIZED: ConnectReturnCode.NOT_AUTHORIZED,
    R.BANNED: ConnectReturnCode.NOT_AUTHORIZED,
    R.BAD_AUTHENTICATION_METHOD: ConnectReturnCode.NOT_AUTHORIZED,
}


def to_connect_return_code(reason: int) -> ConnectReturnCode:
    """Map a 5.0 CONNACK reason code to the 3.1.1 return code a 3.1.1 client understands.

    Codes without a 3.1.1 counterpart become "Server unavailable" (return code 3), the generic
    refusal of 3.1.1.
    """
    return _TO_V4.get(reason, ConnectReturnCode.SERVER_UNAVAILABLE)
