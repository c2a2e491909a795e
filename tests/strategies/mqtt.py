"""Hypothesis strategies for MQTT 3.1.1 and 5.0: valid topics, properties and packets.

``packets(level)`` generates every packet type valid at ``level`` (4 = 3.1.1, 5 = 5.0), with
5.0 properties drawn from exactly the set each packet type allows (§2.2.2.2). Everything it
generates is accepted by ``encode`` and must come back equal from ``decode``.
"""

from __future__ import annotations

import functools
from typing import Any

from hypothesis import strategies as st

from gateway.protocols.mqtt import (
    Auth,
    ConnAck,
    Connect,
    ConnectReturnCode,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    Properties,
    PubAck,
    PubComp,
    PubRec,
    PubRel,
    Publish,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from gateway.protocols.mqtt.properties import WILL_PROPERTIES
from gateway.protocols.mqtt.reasons import (
    AUTH_CODES,
    CONNACK_CODES,
    DISCONNECT_CODES,
    PUBACK_CODES,
    PUBREL_CODES,
    SUBACK_CODES,
    SUBACK_CODES_V4,
    UNSUBACK_CODES,
    PacketType,
)

__all__ = [
    "binary",
    "client_packets",
    "mqtt_text",
    "packet_ids",
    "packets",
    "properties_for",
    "topic_filters",
    "topic_names",
]

P = PacketType

# Characters that matter to a UTF-8 codec: ASCII, 2-, 3- and 4-byte sequences, a byte order
# mark, a control character, the last BMP and the last Unicode code points. (Sampling from a
# list is much cheaper for hypothesis than st.characters(); full Unicode is exercised by the
# arbitrary-bytes tests.)
_CHARS = list("azAZ09 -_$/+#") + ["é", "€", "😀", "\ufeff", "\u0001", "\uffff", "\U0010ffff"]
_TEXT_CHARS = st.sampled_from([c for c in _CHARS if c not in "/+#"] + ["/"])
_LEVEL_CHARS = st.sampled_from([c for c in _CHARS if c not in "/+#"])

#: Valid MQTT strings: no U+0000 (§1.5.4) and no surrogates (unencodable in UTF-8).
mqtt_text = st.text(alphabet=_TEXT_CHARS, max_size=8)
binary = st.binary(max_size=24)
packet_ids = st.integers(min_value=1, max_value=65535)
u16 = st.integers(min_value=0, max_value=0xFFFF)
u32 = st.integers(min_value=0, max_value=0xFFFF_FFFF)

# One topic level: any text but the separator and the wildcards; "$" and empty levels included.
_level = st.text(alphabet=_LEVEL_CHARS, max_size=5) | st.sampled_from(["", "$SYS", "sport"])

#: Valid topic names (§4.7.3): at least one character, no wildcards.
topic_names = st.lists(_level, min_size=1, max_size=4).map("/".join).filter(bool)


@st.composite
def _plain_filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(_level | st.just("+"), min_size=1, max_size=4))
    if draw(st.booleans()):
        levels.append("#")
    result = "/".join(levels)
    return result if result else "#"


_share_names = st.text(alphabet=_LEVEL_CHARS, min_size=1, max_size=5)

#: Valid topic filters (§4.7.1), some of them shared subscriptions (§4.8.2).
topic_filters = _plain_filters() | st.builds(
    lambda name, inner: f"$share/{name}/{inner}", _share_names, _plain_filters()
)

_bool01 = st.sampled_from([0, 1])
_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "payload_format_indicator": _bool01,
    "message_expiry_interval": u32,
    "content_type": mqtt_text,
    "response_topic": topic_names,
    "correlation_data": binary,
    "session_expiry_interval": u32,
    "assigned_client_identifier": mqtt_text,
    "authentication_method": mqtt_text,
    "server_keep_alive": u16,
    "request_problem_information": st.booleans(),
    "will_delay_interval": u32,
    "request_response_information": st.booleans(),
    "response_information": mqtt_text,
    "server_reference": mqtt_text,
    "reason_string": mqtt_text,
    "receive_maximum": st.integers(min_value=1, max_value=65535),
    "topic_alias_maximum": u16,
    "topic_alias": st.integers(min_value=1, max_value=65535),
    "maximum_qos": _bool01,
    "retain_available": st.booleans(),
    "maximum_packet_size": st.integers(min_value=1, max_value=0xFFFF_FFFF),
    "wildcard_subscription_available": st.booleans(),
    "subscription_identifier_available": st.booleans(),
    "shared_subscription_available": st.booleans(),
}

# Which properties each packet allows (§2.2.2.2, Table 2-4), written out independently of the
# codec's own table so the tests check it.
_ALLOWED: dict[int, tuple[str, ...]] = {
    P.CONNECT: (
        "session_expiry_interval", "authentication_method", "request_problem_information",
        "request_response_information", "receive_maximum", "topic_alias_maximum",
        "maximum_packet_size",
    ),
    P.CONNACK: (
        "session_expiry_interval", "assigned_client_identifier", "server_keep_alive",
        "authentication_method", "response_information", "server_reference", "reason_string",
        "receive_maximum", "topic_alias_maximum", "maximum_qos", "retain_available",
        "maximum_packet_size", "wildcard_subscription_available",
        "subscription_identifier_available", "shared_subscription_available",
    ),
    P.PUBLISH: (
        "payload_format_indicator", "message_expiry_interval", "content_type", "response_topic",
        "correlation_data", "topic_alias",
    ),
    WILL_PROPERTIES: (
        "payload_format_indicator", "message_expiry_interval", "content_type", "response_topic",
        "correlation_data", "will_delay_interval",
    ),
    P.PUBACK: ("reason_string",),
    P.PUBREC: ("reason_string",),
    P.PUBREL: ("reason_string",),
    P.PUBCOMP: ("reason_string",),
    P.SUBSCRIBE: (),
    P.SUBACK: ("reason_string",),
    P.UNSUBSCRIBE: (),
    P.UNSUBACK: ("reason_string",),
    P.DISCONNECT: ("session_expiry_interval", "server_reference", "reason_string"),
    P.AUTH: ("authentication_method", "reason_string"),
}
_MAX_SUB_IDS: dict[int, int] = {P.PUBLISH: 3, P.SUBSCRIBE: 1}
_AUTH_DATA = {P.CONNECT, P.CONNACK, P.AUTH}


_NAME_LISTS: dict[int, st.SearchStrategy[list[str]]] = {
    packet_type: st.lists(st.sampled_from(names), unique=True, max_size=len(names))
    for packet_type, names in _ALLOWED.items()
    if names
}
_SUB_ID_LISTS: dict[int, st.SearchStrategy[list[int]]] = {
    packet_type: st.lists(st.integers(min_value=1, max_value=268_435_455), max_size=size)
    for packet_type, size in _MAX_SUB_IDS.items()
}
_USER_PROPERTIES = st.lists(st.tuples(mqtt_text, mqtt_text), max_size=3).map(tuple)
_MAYBE_BINARY = st.none() | binary
_MAYBE_TEXT = st.none() | mqtt_text
_QOS = st.integers(0, 2)
_ONE_IN_FOUR = st.integers(0, 3)


@st.composite
def _properties_for(draw: st.DrawFn, packet_type: int) -> Properties:
    if draw(_ONE_IN_FOUR) == 0:
        return Properties()
    values: dict[str, Any] = {}
    if packet_type in _NAME_LISTS:
        for name in draw(_NAME_LISTS[packet_type]):
            values[name] = draw(_VALUES[name])
    if packet_type in _AUTH_DATA and "authentication_method" in values:
        # §3.1.2.11.10: Authentication Data only together with an Authentication Method.
        data = draw(_MAYBE_BINARY)
        if data is not None:
            values["authentication_data"] = data
    if packet_type in _SUB_ID_LISTS:
        values["subscription_identifiers"] = tuple(draw(_SUB_ID_LISTS[packet_type]))
    values["user_properties"] = draw(_USER_PROPERTIES)
    return Properties(**values)


@functools.lru_cache(maxsize=None)
def properties_for(packet_type: int) -> st.SearchStrategy[Properties]:
    """Valid 5.0 properties for ``packet_type`` (or ``WILL_PROPERTIES``), often none at all."""
    return _properties_for(packet_type)


_NO_PROPERTIES = st.just(Properties())


def _props(level: int, packet_type: int) -> st.SearchStrategy[Properties]:
    return properties_for(packet_type) if level == 5 else _NO_PROPERTIES


def _reasons(codes: frozenset[int]) -> st.SearchStrategy[int]:
    return st.sampled_from(sorted(codes))


@st.composite
def _wills(draw: st.DrawFn, level: int) -> Will:
    return Will(
        draw(topic_names),
        draw(binary),
        draw(_QOS),
        draw(st.booleans()),
        draw(_props(level, WILL_PROPERTIES)),
    )


@st.composite
def _connects(draw: st.DrawFn, level: int) -> Connect:
    username = draw(_MAYBE_TEXT)
    password = draw(_MAYBE_BINARY)
    if level == 4 and username is None:
        password = None  # 3.1.1 [MQTT-3.1.2-22]
    return Connect(
        client_id=draw(mqtt_text),
        protocol_level=level,
        clean_start=draw(st.booleans()),
        keep_alive=draw(u16),
        username=username,
        password=password,
        will=draw(_MAYBE_WILL[level]),
        properties=draw(_props(level, P.CONNECT)),
    )


_MAYBE_WILL = {level: st.none() | _wills(level) for level in (4, 5)}


@functools.lru_cache(maxsize=None)
def connects(level: int) -> st.SearchStrategy[Connect]:
    """A valid CONNECT at ``level``."""
    return _connects(level)


_CONNACK_REASONS = {
    5: _reasons(CONNACK_CODES),
    4: _reasons(frozenset(ConnectReturnCode)),
}


@st.composite
def _connacks(draw: st.DrawFn, level: int) -> ConnAck:
    reason = draw(_CONNACK_REASONS[level])
    return ConnAck(
        session_present=draw(st.booleans()) if reason == 0 else False,
        reason_code=reason,
        properties=draw(_props(level, P.CONNACK)),
    )


@st.composite
def _publishes(draw: st.DrawFn, level: int, payloads: st.SearchStrategy[bytes]) -> Publish:
    qos = draw(_QOS)
    props = draw(_props(level, P.PUBLISH))
    topic = draw(topic_names)
    if level == 5 and props.topic_alias is not None and draw(st.booleans()):
        topic = ""
    return Publish(
        topic=topic,
        payload=draw(payloads),
        qos=qos,
        retain=draw(st.booleans()),
        dup=draw(st.booleans()) if qos else False,
        packet_id=draw(packet_ids) if qos else None,
        properties=props,
    )


@functools.lru_cache(maxsize=None)
def publishes(level: int, max_payload: int = 64) -> st.SearchStrategy[Publish]:
    """A valid PUBLISH at ``level`` (5.0: sometimes an empty topic with a topic alias)."""
    return _publishes(level, st.binary(max_size=max_payload))


def _acks(level: int, cls: type, codes: frozenset[int]) -> st.SearchStrategy[Packet]:
    if level == 4:
        return st.builds(cls, packet_ids)
    packet_type: int = getattr(cls, "packet_type")
    return st.builds(cls, packet_ids, _reasons(codes), _props(level, packet_type))


@st.composite
def _subscriptions(draw: st.DrawFn, level: int) -> Subscription:
    topic_filter = draw(topic_filters)
    if level == 4:
        return Subscription(topic_filter, draw(_QOS))
    return Subscription(
        topic_filter,
        draw(_QOS),
        no_local=draw(st.booleans()) and not topic_filter.startswith("$share/"),
        retain_as_published=draw(st.booleans()),
        retain_handling=draw(_QOS),
    )


@functools.lru_cache(maxsize=None)
def packets(level: int) -> st.SearchStrategy[Packet]:
    """Any valid packet at ``level`` (4 or 5)."""
    options: list[st.SearchStrategy[Packet]] = [
        connects(level),
        _connacks(level),
        publishes(level),
        _acks(level, PubAck, PUBACK_CODES),
        _acks(level, PubRec, PUBACK_CODES),
        _acks(level, PubRel, PUBREL_CODES),
        _acks(level, PubComp, PUBREL_CODES),
        st.builds(
            Subscribe,
            packet_ids,
            st.lists(_subscriptions(level), min_size=1, max_size=4).map(tuple),
            _props(level, P.SUBSCRIBE),
        ),
        st.builds(
            SubAck,
            packet_ids,
            st.lists(
                _reasons(SUBACK_CODES if level == 5 else SUBACK_CODES_V4), min_size=1, max_size=5
            ).map(tuple),
            _props(level, P.SUBACK),
        ),
        st.builds(
            Unsubscribe,
            packet_ids,
            st.lists(topic_filters, min_size=1, max_size=4).map(tuple),
            _props(level, P.UNSUBSCRIBE),
        ),
        st.just(PingReq()),
        st.just(PingResp()),
    ]
    if level == 4:
        options += [st.builds(UnsubAck, packet_ids), st.just(Disconnect())]
    else:
        options += [
            st.builds(
                UnsubAck,
                packet_ids,
                st.lists(_reasons(UNSUBACK_CODES), min_size=1, max_size=5).map(tuple),
                _props(level, P.UNSUBACK),
            ),
            st.builds(Disconnect, _reasons(DISCONNECT_CODES), _props(level, P.DISCONNECT)),
            st.builds(Auth, _reasons(AUTH_CODES), _props(level, P.AUTH)),
        ]
    return st.one_of(options)


@functools.lru_cache(maxsize=None)
def client_packets(level: int) -> st.SearchStrategy[Packet]:
    """Packets a client may send after its CONNECT (valid on their own, not as a sequence)."""
    options: list[st.SearchStrategy[Packet]] = [
        publishes(level),
        _acks(level, PubAck, PUBACK_CODES),
        _acks(level, PubRec, PUBACK_CODES),
        _acks(level, PubRel, PUBREL_CODES),
        _acks(level, PubComp, PUBREL_CODES),
        st.builds(
            Subscribe,
            packet_ids,
            st.lists(_subscriptions(level), min_size=1, max_size=3).map(tuple),
            _props(level, P.SUBSCRIBE),
        ),
        st.builds(
            Unsubscribe,
            packet_ids,
            st.lists(topic_filters, min_size=1, max_size=3).map(tuple),
            _props(level, P.UNSUBSCRIBE),
        ),
        st.just(PingReq()),
        st.just(Disconnect()),
    ]
    return st.one_of(options)
