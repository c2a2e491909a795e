"""The MQTT codec: round trips, partial data, totality, and the limits of the specification.

Example tests are named after the section of MQTT 5.0 (or 3.1.1 where it differs) they check.
"""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from gateway.protocols.errors import LocalProtocolError, RemoteProtocolError
from gateway.protocols.mqtt import (
    MAX_PACKET_SIZE,
    Auth,
    ConnAck,
    Connect,
    ConnectReturnCode,
    Disconnect,
    PingReq,
    Properties,
    PubAck,
    PubRec,
    PubRel,
    Publish,
    ReasonCode,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
    decode,
    encode,
    peek_connect_level,
)
from gateway.protocols.mqtt.datatypes import encode_vbi, read_vbi
from tests.strategies.mqtt import connects, packets

R = ReasonCode
#: Every hint the decoder documents.
DOCUMENTED_HINTS = {
    R.MALFORMED_PACKET,
    R.PROTOCOL_ERROR,
    R.UNSUPPORTED_PROTOCOL_VERSION,
    R.TOPIC_FILTER_INVALID,
    R.TOPIC_NAME_INVALID,
    R.TOPIC_ALIAS_INVALID,
    R.PACKET_TOO_LARGE,
}
levels = st.sampled_from([4, 5])


def hint_of(data: bytes, level: int | None = 5, **kwargs: int) -> int:
    """Decode ``data``, expecting a RemoteProtocolError; return its hint."""
    with pytest.raises(RemoteProtocolError) as info:
        decode(memoryview(data), protocol_level=level, **kwargs)
    return info.value.hint  # type: ignore[no-any-return]


def frame(first: int, body: bytes) -> bytes:
    """A packet from its first byte and body (remaining length computed)."""
    return bytes((first,)) + encode_vbi(len(body)) + body


def mqtt_str(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return len(data).to_bytes(2, "big") + data


# -- properties ----------------------------------------------------------------------------------


@given(st.data())
def test_decode_of_encode_is_identity(data: st.DataObject) -> None:
    """decode(encode(p)) == p, consuming exactly the encoded bytes, for both levels."""
    level = data.draw(levels)
    packet = data.draw(packets(level))
    encoded = encode(packet, level)
    assert decode(memoryview(encoded), protocol_level=level) == (packet, len(encoded))


@given(st.data())
def test_connect_decodes_before_the_level_is_known(data: st.DataObject) -> None:
    """A CONNECT announces its own level, so it decodes with protocol_level=None."""
    level = data.draw(levels)
    packet = data.draw(connects(level))
    encoded = encode(packet, level)
    assert decode(encoded, protocol_level=None) == (packet, len(encoded))


@given(st.data())
def test_every_truncated_prefix_asks_for_more_data(data: st.DataObject) -> None:
    """Any strict prefix of a packet is "need more data", never an error or a packet."""
    level = data.draw(levels)
    encoded = encode(data.draw(packets(level)), level)
    view = memoryview(encoded)
    for end in range(len(encoded)):
        assert decode(view[:end], protocol_level=level) == (None, 0)


@given(st.data())
def test_a_stream_of_packets_decodes_in_order(data: st.DataObject) -> None:
    """Concatenated packets decode one by one from a memoryview, in order."""
    level = data.draw(levels)
    sent = data.draw(st.lists(packets(level), min_size=1, max_size=6))
    stream = memoryview(b"".join(encode(packet, level) for packet in sent))
    received = []
    while stream:
        packet, used = decode(stream, protocol_level=level)
        assert packet is not None
        received.append(packet)
        stream = stream[used:]
    assert received == sent


def check_total(data: bytes, level: int | None) -> None:
    """The totality invariant: a packet (which re-encodes and round-trips), "need more data",
    or a RemoteProtocolError with a documented reason code. Nothing else."""
    try:
        packet, used = decode(memoryview(data), protocol_level=level)
    except RemoteProtocolError as exc:
        assert exc.hint in DOCUMENTED_HINTS, exc
        return
    if packet is None:
        assert used == 0
        return
    assert 0 < used <= len(data)
    effective = packet.protocol_level if isinstance(packet, Connect) else level
    assert effective in (4, 5)
    again = encode(packet, effective)
    assert decode(again, protocol_level=effective) == (packet, len(again))


@given(st.binary(max_size=80), st.sampled_from([None, 4, 5]))
def test_arbitrary_bytes_give_packets_or_remote_errors(data: bytes, level: int | None) -> None:
    """Random bytes never make the decoder raise anything undocumented."""
    check_total(data, level)


@given(st.data())
def test_mutated_packets_give_packets_or_remote_errors(data: st.DataObject) -> None:
    """Valid packets with bytes changed, inserted or removed reach deep into every decoder."""
    level = data.draw(levels)
    encoded = bytearray(encode(data.draw(packets(level)), level))
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.integers(0, len(encoded)))
        action = data.draw(st.sampled_from(["set", "insert", "delete"]))
        byte = data.draw(st.integers(0, 255))
        if action == "insert":
            encoded.insert(where, byte)
        elif where < len(encoded):
            if action == "set":
                encoded[where] = byte
            else:
                del encoded[where]
    check_total(bytes(encoded), data.draw(st.sampled_from([None, level])))


@given(st.integers(min_value=0, max_value=268_435_455))
def test_1_5_5_variable_byte_integer_round_trip(value: int) -> None:
    """Every VBI value encodes in the fewest bytes (1-4) and decodes back."""
    encoded = encode_vbi(value)
    expected_size = 1 if value < 128 else 2 if value < 16384 else 3 if value < 2097152 else 4
    assert len(encoded) == expected_size
    assert read_vbi(encoded, 0, len(encoded)) == (value, len(encoded))


# -- §1.5 data representation --------------------------------------------------------------------


def test_1_5_4_string_with_null_character_is_malformed() -> None:
    """[MQTT-1.5.4-2] U+0000 in a UTF-8 string is a Malformed Packet."""
    assert hint_of(frame(0x30, mqtt_str("a\x00b") + b"\x00")) == R.MALFORMED_PACKET
    assert hint_of(frame(0x30, mqtt_str("a\x00b")), level=4) == R.MALFORMED_PACKET


@pytest.mark.parametrize(
    "raw",
    [b"\xed\xa0\x80", b"\xc0\xaf", b"\xff", b"\xf4\x90\x80\x80", b"a\xe2\x82"],
    ids=["surrogate", "overlong", "invalid-byte", "above-10ffff", "truncated"],
)
def test_1_5_4_ill_formed_utf8_is_malformed(raw: bytes) -> None:
    """[MQTT-1.5.4-1] ill-formed UTF-8, including encoded surrogates, is malformed."""
    assert hint_of(frame(0x30, mqtt_str(raw) + b"\x00")) == R.MALFORMED_PACKET


def test_1_5_4_byte_order_mark_is_kept() -> None:
    """[MQTT-1.5.4-3] a leading U+FEFF is part of the string, not skipped."""
    packet, _ = decode(frame(0x30, mqtt_str("\ufeffa/b")), protocol_level=4)
    assert packet == Publish("\ufeffa/b")


def test_1_5_5_remaining_length_longer_than_four_bytes_is_malformed() -> None:
    """The Remaining Length is at most four bytes; a fifth is malformed."""
    assert hint_of(b"\x30\xff\xff\xff\xff\x01") == R.MALFORMED_PACKET
    # ... detected as soon as the fifth byte is there, before any body.
    assert hint_of(b"\x30\x80\x80\x80\x80") == R.MALFORMED_PACKET
    assert decode(b"\x30\x80\x80\x80", protocol_level=5) == (None, 0)


def test_1_5_5_remaining_length_not_minimally_encoded_is_malformed() -> None:
    """[MQTT-1.5.5-1] 0x80 0x00 encodes 0 in two bytes: not the minimum."""
    assert hint_of(b"\xc0\x80\x00") == R.MALFORMED_PACKET


def test_1_5_5_largest_remaining_length_is_accepted_up_to_the_header() -> None:
    """268,435,455 (ff ff ff 7f) is a valid length: with no size limit, it asks for data."""
    header = b"\x30\xff\xff\xff\x7f"
    assert decode(header + b"\x00\x01a", protocol_level=5) == (None, 0)
    assert MAX_PACKET_SIZE == 5 + 268_435_455


# -- §2 packet format ----------------------------------------------------------------------------


@pytest.mark.parametrize("level", [None, 4, 5])
def test_2_1_2_packet_type_0_is_reserved(level: int | None) -> None:
    """Packet type 0 is reserved: malformed, rejected from the first byte alone."""
    assert hint_of(b"\x00", level) == R.MALFORMED_PACKET


def test_2_1_2_auth_is_reserved_in_3_1_1() -> None:
    """Type 15 is AUTH in 5.0 and reserved (malformed) in 3.1.1."""
    assert hint_of(b"\xf0\x00", level=4) == R.MALFORMED_PACKET
    assert decode(b"\xf0\x00", protocol_level=5) == (Auth(), 2)


@pytest.mark.parametrize(
    "data",
    [
        b"\x41\x02\x00\x01",  # PUBACK with flags 0001
        b"\x60\x02\x00\x01",  # PUBREL must have flags 0010
        b"\x80\x06\x00\x01\x00\x01a\x00",  # SUBSCRIBE must have flags 0010
        b"\xa0\x05\x00\x01\x00\x01a",  # UNSUBSCRIBE must have flags 0010
        b"\xc1\x00",  # PINGREQ with flags
        b"\x12\x00",  # CONNECT with flags
    ],
)
def test_2_1_3_fixed_header_flags_must_be_as_specified(data: bytes) -> None:
    """§2.1.3: "If invalid flags are received it is a Malformed Packet"."""
    assert hint_of(data, level=4) == R.MALFORMED_PACKET


def test_3_3_1_2_publish_with_qos_3_is_malformed() -> None:
    """§3.3.1.2: both QoS bits set is a Malformed Packet."""
    assert hint_of(b"\x36") == R.MALFORMED_PACKET


def test_3_3_1_1_dup_flag_with_qos_0_is_malformed() -> None:
    """[MQTT-3.3.1-2] the DUP flag MUST be 0 for QoS 0 messages."""
    assert hint_of(b"\x38") == R.MALFORMED_PACKET
    assert decode(frame(0x3A, mqtt_str("t") + b"\x00\x07\x00"), protocol_level=5)[0] == Publish(
        "t", qos=1, dup=True, packet_id=7
    )


def test_2_2_1_packet_identifier_zero_is_a_protocol_error() -> None:
    """[MQTT-2.2.1-3] packet identifiers are non-zero."""
    assert hint_of(b"\x40\x02\x00\x00") == R.PROTOCOL_ERROR
    assert hint_of(frame(0x32, mqtt_str("t") + b"\x00\x00\x00")) == R.PROTOCOL_ERROR
    assert hint_of(frame(0x82, b"\x00\x00\x00" + mqtt_str("t") + b"\x00")) == R.PROTOCOL_ERROR


def test_2_2_2_2_property_not_valid_for_the_packet_is_malformed() -> None:
    """§2.2.2.2: a property identifier not valid for the packet type is malformed."""
    session_expiry = b"\x05\x11\x00\x00\x00\x0a"
    assert hint_of(frame(0x30, mqtt_str("t") + session_expiry)) == R.MALFORMED_PACKET


def test_2_2_2_2_unknown_property_is_malformed() -> None:
    """An unknown identifier (0x7F) cannot be parsed: malformed."""
    assert hint_of(frame(0x30, mqtt_str("t") + b"\x02\x7f\x00")) == R.MALFORMED_PACKET


def test_2_2_2_2_property_running_past_its_length_is_malformed() -> None:
    """A four-byte property in a two-byte property block is malformed."""
    assert hint_of(frame(0x30, mqtt_str("t") + b"\x02\x02\x00\x00\x00\x01")) == (
        R.MALFORMED_PACKET
    )


def test_3_3_2_3_3_property_included_twice_is_a_protocol_error() -> None:
    """"It is a Protocol Error to include the Message Expiry Interval more than once"."""
    twice = b"\x0a" + b"\x02\x00\x00\x00\x01" * 2
    assert hint_of(frame(0x30, mqtt_str("t") + twice)) == R.PROTOCOL_ERROR


def test_3_3_2_3_7_user_properties_may_repeat_in_order() -> None:
    """User Property may appear many times, also with the same name; order is kept."""
    pairs = (("k", "1"), ("a", "2"), ("k", "3"))
    packet = Publish("t", properties=Properties(user_properties=pairs))
    decoded, _ = decode(encode(packet, 5), protocol_level=5)
    assert isinstance(decoded, Publish)
    assert decoded.properties.user_properties == pairs


def test_3_3_4_publish_may_carry_several_subscription_identifiers() -> None:
    """A server's PUBLISH carries one Subscription Identifier per matching subscription."""
    packet = Publish("t", properties=Properties(subscription_identifiers=(1, 268_435_455)))
    assert decode(encode(packet, 5), protocol_level=5)[0] == packet


def test_3_8_2_1_2_subscribe_with_two_subscription_identifiers_is_a_protocol_error() -> None:
    """Subscription Identifier may appear once in SUBSCRIBE."""
    body = b"\x00\x01" + b"\x04\x0b\x01\x0b\x02" + mqtt_str("t") + b"\x00"
    assert hint_of(frame(0x82, body)) == R.PROTOCOL_ERROR
    with pytest.raises(LocalProtocolError):
        encode(Subscribe(1, (Subscription("t"),), Properties(subscription_identifiers=(1, 2))), 5)


def test_3_8_2_1_2_subscription_identifier_zero_is_a_protocol_error() -> None:
    """"It is a Protocol Error if the Subscription Identifier has a value of 0"."""
    body = b"\x00\x01" + b"\x02\x0b\x00" + mqtt_str("t") + b"\x00"
    assert hint_of(frame(0x82, body)) == R.PROTOCOL_ERROR


def test_3_3_2_3_4_topic_alias_zero_is_invalid() -> None:
    """A Topic Alias of 0 is not permitted: DISCONNECT 0x94 Topic Alias invalid."""
    assert hint_of(frame(0x30, mqtt_str("t") + b"\x03\x23\x00\x00")) == R.TOPIC_ALIAS_INVALID


def test_3_3_2_3_4_empty_topic_without_alias_is_a_protocol_error() -> None:
    """"It is a Protocol Error if the Topic Name is zero length and there is no Topic Alias"."""
    assert hint_of(frame(0x30, mqtt_str("") + b"\x00")) == R.PROTOCOL_ERROR
    with_alias, _ = decode(frame(0x30, mqtt_str("") + b"\x03\x23\x00\x05"), protocol_level=5)
    assert with_alias == Publish("", properties=Properties(topic_alias=5))


@pytest.mark.parametrize("topic", ["a/+", "#", "a/#/b", "sport+"])
def test_3_3_2_1_topic_name_with_wildcards_is_invalid(topic: str) -> None:
    """[MQTT-3.3.2-2] the Topic Name MUST NOT contain wildcard characters: 0x90."""
    assert hint_of(frame(0x30, mqtt_str(topic) + b"\x00")) == R.TOPIC_NAME_INVALID
    assert hint_of(frame(0x30, mqtt_str(topic)), level=4) == R.TOPIC_NAME_INVALID


def test_4_7_3_empty_topic_name_is_invalid_in_3_1_1() -> None:
    """[MQTT-4.7.3-1] topic names are at least one character long (3.1.1 has no aliases)."""
    assert hint_of(frame(0x30, mqtt_str("")), level=4) == R.TOPIC_NAME_INVALID


def test_3_3_2_3_5_response_topic_with_wildcard_is_a_protocol_error() -> None:
    """[MQTT-3.3.2-14] the Response Topic MUST NOT contain wildcards."""
    props = b"\x08" + mqtt_str("a/#")
    body = mqtt_str("t") + bytes((len(props),)) + props
    assert hint_of(frame(0x30, body)) == R.PROTOCOL_ERROR


# -- §3.1 CONNECT --------------------------------------------------------------------------------


def connect_bytes(
    name: bytes = b"MQTT",
    level: int = 4,
    flags: int = 0x02,
    payload: bytes = b"",
    props: bytes = b"",
) -> bytes:
    """A CONNECT with client id "c" and the given header fields."""
    body = mqtt_str(name) + bytes((level, flags)) + b"\x00\x3c" + props + mqtt_str("c") + payload
    return frame(0x10, body)


def test_3_1_0_the_first_packet_must_be_a_connect() -> None:
    """[MQTT-3.1.0-1] before the CONNECT (level None) any other packet is a protocol error,
    detected from the first byte."""
    assert hint_of(b"\x30", level=None) == R.PROTOCOL_ERROR
    assert hint_of(b"\xc0\x00", level=None) == R.PROTOCOL_ERROR


@pytest.mark.parametrize(
    "name, level",
    [(b"MQTT", 3), (b"MQTT", 6), (b"MQIsdp", 3), (b"MQIsdp", 4), (b"HTTP", 4)],
)
def test_3_1_2_1_and_3_1_2_2_unsupported_protocol_gets_reason_0x84(name: bytes, level: int) -> None:
    """A wrong protocol name or level is refused with 0x84 (return code 1 in 3.1.1)."""
    data = connect_bytes(name, level)
    assert hint_of(data, level=None) == R.UNSUPPORTED_PROTOCOL_VERSION
    assert peek_connect_level(data) == level


def test_3_1_2_3_connect_flags_reserved_bit_must_be_zero() -> None:
    """[MQTT-3.1.2-3] the reserved flag is 0, else the CONNECT is malformed."""
    assert decode(connect_bytes(flags=0x02), protocol_level=None)[0] == Connect(
        "c", 4, keep_alive=60
    )
    assert hint_of(connect_bytes(flags=0x03), level=None) == R.MALFORMED_PACKET


def test_3_1_2_6_will_qos_3_is_malformed() -> None:
    """§3.1.2.6: Will QoS 3 is a Malformed Packet."""
    will = mqtt_str("w") + mqtt_str(b"")
    assert hint_of(connect_bytes(flags=0x04 | 0x18, payload=will), level=None) == (
        R.MALFORMED_PACKET
    )


@pytest.mark.parametrize("flags", [0x08, 0x10, 0x20], ids=["qos1", "qos2", "retain"])
def test_3_1_2_5_will_qos_and_retain_need_the_will_flag(flags: int) -> None:
    """[MQTT-3.1.2-11] and [MQTT-3.1.2-13]: without a Will, Will QoS and Retain are 0."""
    assert hint_of(connect_bytes(flags=flags), level=None) == R.MALFORMED_PACKET


def test_3_1_2_9_password_without_user_name() -> None:
    """3.1.1 [MQTT-3.1.2-22] forbids a password without a user name; 5.0 allows it."""
    password = mqtt_str(b"secret")
    assert hint_of(connect_bytes(flags=0x42, payload=password), level=None) == (
        R.MALFORMED_PACKET
    )
    packet, _ = decode(
        connect_bytes(level=5, flags=0x42, props=b"\x00", payload=password), protocol_level=None
    )
    assert packet == Connect("c", 5, keep_alive=60, password=b"secret")


def test_3_1_3_will_topic_with_wildcard_is_invalid() -> None:
    """The Will Topic is a topic name: wildcards give 0x90."""
    will = mqtt_str("a/+") + mqtt_str(b"x")
    assert hint_of(connect_bytes(flags=0x06, payload=will), level=None) == R.TOPIC_NAME_INVALID


def test_3_1_connect_with_trailing_bytes_is_malformed() -> None:
    """Fields must fill the Remaining Length exactly (a user name without its flag)."""
    assert hint_of(connect_bytes(payload=mqtt_str("user")), level=None) == R.MALFORMED_PACKET


@pytest.mark.parametrize(
    "props, reason",
    [
        (b"\x02\x17\x02", R.PROTOCOL_ERROR),  # Request Problem Information 2 (§3.1.2.11.7)
        (b"\x02\x19\x05", R.PROTOCOL_ERROR),  # Request Response Information 5 (§3.1.2.11.6)
        (b"\x03\x21\x00\x00", R.PROTOCOL_ERROR),  # Receive Maximum 0 (§3.1.2.11.3)
        (b"\x05\x27\x00\x00\x00\x00", R.PROTOCOL_ERROR),  # Maximum Packet Size 0 (§3.1.2.11.4)
        (b"\x03\x16\x00\x00", R.PROTOCOL_ERROR),  # Authentication Data without a Method
        (b"\x02\x24\x01", R.MALFORMED_PACKET),  # Maximum QoS is a CONNACK property
    ],
)
def test_3_1_2_11_connect_property_values(props: bytes, reason: int) -> None:
    """CONNECT property values outside their range are protocol errors (§3.1.2.11)."""
    assert hint_of(connect_bytes(level=5, props=props), level=None) == reason


def test_3_1_2_11_connect_properties_decode() -> None:
    """All CONNECT properties, in one packet."""
    props = Properties(
        session_expiry_interval=3600,
        receive_maximum=20,
        maximum_packet_size=1024,
        topic_alias_maximum=5,
        request_response_information=True,
        request_problem_information=False,
        authentication_method="SCRAM-SHA-1",
        authentication_data=b"\x01\x02",
        user_properties=(("region", "eu"),),
    )
    packet = Connect("dev-1", 5, False, 30, "u", b"p", Will("dead", b"x", 1, True), props)
    assert decode(encode(packet, 5), protocol_level=None)[0] == packet


# -- §3.1.2.11.4 maximum packet size -------------------------------------------------------------


def test_3_1_2_11_4_packet_too_large_is_refused_from_the_fixed_header() -> None:
    """An oversized packet is refused (0x95) as soon as its length is known, unbuffered."""
    assert hint_of(b"\x30\xff\xff\x03", max_packet_size=1000) == R.PACKET_TOO_LARGE


def test_3_1_2_11_4_maximum_packet_size_counts_the_whole_packet() -> None:
    """The limit is on the total size, fixed header included."""
    data = encode(Publish("t", b"x" * 100), 5)
    assert decode(data, protocol_level=5, max_packet_size=len(data))[1] == len(data)
    assert hint_of(data, max_packet_size=len(data) - 1) == R.PACKET_TOO_LARGE


# -- §3.2 CONNACK, §3.4-3.7 acknowledgements ------------------------------------------------------


def test_3_2_2_1_connack_reserved_flags_are_malformed() -> None:
    """[MQTT-3.2.2-1] bits 7-1 of the Acknowledge Flags are reserved."""
    assert hint_of(b"\x20\x02\x02\x00", level=4) == R.MALFORMED_PACKET


def test_3_2_2_2_session_present_with_a_refusal_is_a_protocol_error() -> None:
    """[MQTT-3.2.2-6] a refusing CONNACK has Session Present 0."""
    assert hint_of(b"\x20\x02\x01\x05", level=4) == R.PROTOCOL_ERROR
    with pytest.raises(LocalProtocolError):
        encode(ConnAck(True, R.NOT_AUTHORIZED), 5)


def test_3_2_2_3_connack_return_codes_of_3_1_1() -> None:
    """3.1.1 CONNACK return codes 0-5; 6 and above are reserved."""
    assert decode(b"\x20\x02\x00\x05", protocol_level=4)[0] == ConnAck(
        False, ConnectReturnCode.NOT_AUTHORIZED
    )
    assert hint_of(b"\x20\x02\x00\x06", level=4) == R.MALFORMED_PACKET


def test_3_4_2_1_puback_short_forms() -> None:
    """PUBACK is 2 bytes for success without properties; 3 with a reason; more with both."""
    assert encode(PubAck(7), 5) == b"\x40\x02\x00\x07"
    assert encode(PubAck(7, R.NO_MATCHING_SUBSCRIBERS), 5) == b"\x40\x03\x00\x07\x10"
    assert decode(b"\x40\x03\x00\x07\x00", protocol_level=5)[0] == PubAck(7)
    assert decode(b"\x40\x04\x00\x07\x87\x00", protocol_level=5)[0] == PubAck(7, R.NOT_AUTHORIZED)
    assert hint_of(b"\x40\x03\x00\x07\x00", level=4) == R.MALFORMED_PACKET


def test_3_4_2_1_reason_code_outside_the_packets_table_is_malformed() -> None:
    """A PUBACK cannot carry 0x8F, a PUBREL cannot carry 0x10."""
    assert hint_of(b"\x40\x03\x00\x07\x8f") == R.MALFORMED_PACKET
    assert hint_of(b"\x62\x03\x00\x07\x10") == R.MALFORMED_PACKET
    with pytest.raises(LocalProtocolError):
        encode(PubRel(7, R.NOT_AUTHORIZED), 5)


# -- §3.8-3.11 subscriptions ---------------------------------------------------------------------


def subscribe_bytes(topic_filter: str, options: int, level: int = 5) -> bytes:
    """A SUBSCRIBE with packet id 1 and one filter."""
    props = b"\x00" if level == 5 else b""
    return frame(0x82, b"\x00\x01" + props + mqtt_str(topic_filter) + bytes((options,)))


def test_3_8_3_1_subscription_options_decode() -> None:
    """QoS, No Local, Retain As Published and Retain Handling are bits 0-5."""
    packet, _ = decode(subscribe_bytes("a/+", 0b0010_1110), protocol_level=5)
    assert packet == Subscribe(1, (Subscription("a/+", 2, True, True, 2),))


def test_3_8_3_1_reserved_subscription_option_bits_are_malformed() -> None:
    """[MQTT-3.8.3-5] bits 6-7 reserved in 5.0; 3.1.1 reserves bits 2-7."""
    assert hint_of(subscribe_bytes("a", 0x40)) == R.MALFORMED_PACKET
    assert hint_of(subscribe_bytes("a", 0x04, 4), level=4) == R.MALFORMED_PACKET


def test_3_8_3_1_qos_3_and_retain_handling_3_are_protocol_errors() -> None:
    """5.0: a Maximum QoS of 3 or a Retain Handling of 3 is a Protocol Error."""
    assert hint_of(subscribe_bytes("a", 0x03)) == R.PROTOCOL_ERROR
    assert hint_of(subscribe_bytes("a", 0x30)) == R.PROTOCOL_ERROR
    assert hint_of(subscribe_bytes("a", 0x03, 4), level=4) == R.MALFORMED_PACKET


def test_3_8_3_1_no_local_on_a_shared_subscription_is_a_protocol_error() -> None:
    """[MQTT-3.8.3-4] No Local cannot be set on a shared subscription."""
    assert hint_of(subscribe_bytes("$share/g/a", 0x04)) == R.PROTOCOL_ERROR
    assert decode(subscribe_bytes("$share/g/a", 0x01), protocol_level=5)[0] == Subscribe(
        1, (Subscription("$share/g/a", 1),)
    )


def test_3_8_3_subscribe_without_a_filter_is_a_protocol_error() -> None:
    """[MQTT-3.8.3-2] at least one topic filter; same for UNSUBSCRIBE [MQTT-3.10.3-2]."""
    assert hint_of(frame(0x82, b"\x00\x01\x00")) == R.PROTOCOL_ERROR
    assert hint_of(frame(0xA2, b"\x00\x01"), level=4) == R.PROTOCOL_ERROR


@pytest.mark.parametrize("topic_filter", ["a/#/b", "a#", "a/b+", "", "$share/g", "$share//a"])
def test_4_7_1_invalid_topic_filters_are_refused_with_0x8f(topic_filter: str) -> None:
    """Misplaced wildcards and incomplete shared subscriptions give 0x8F Topic Filter invalid."""
    assert hint_of(subscribe_bytes(topic_filter, 0)) == R.TOPIC_FILTER_INVALID
    unsubscribe = frame(0xA2, b"\x00\x01" + mqtt_str(topic_filter))
    assert hint_of(unsubscribe, level=4) == R.TOPIC_FILTER_INVALID


def test_3_9_3_suback_codes_per_level() -> None:
    """3.1.1 SUBACK codes are 0, 1, 2 and 0x80 only."""
    assert decode(b"\x90\x04\x00\x01\x00\x80", protocol_level=4)[0] == SubAck(1, (0, 0x80))
    assert hint_of(b"\x90\x03\x00\x01\x87", level=4) == R.MALFORMED_PACKET
    assert decode(b"\x90\x04\x00\x01\x00\x87", protocol_level=5)[0] == SubAck(1, (0x87,))


def test_3_11_unsuback_per_level() -> None:
    """UNSUBACK has reason codes in 5.0 and none in 3.1.1."""
    assert encode(UnsubAck(3), 4) == b"\xb0\x02\x00\x03"
    assert decode(encode(UnsubAck(3, (R.NO_SUBSCRIPTION_EXISTED,)), 5), protocol_level=5)[
        0
    ] == UnsubAck(3, (0x11,))
    with pytest.raises(LocalProtocolError):
        encode(UnsubAck(3, (0,)), 4)


# -- §3.12-3.15 ----------------------------------------------------------------------------------


def test_3_12_pingreq_with_a_body_is_malformed() -> None:
    """PINGREQ has Remaining Length 0."""
    assert decode(b"\xc0\x00", protocol_level=4) == (PingReq(), 2)
    assert hint_of(b"\xc0\x01\x00", level=4) == R.MALFORMED_PACKET


def test_3_14_2_disconnect_forms() -> None:
    """5.0 DISCONNECT: empty for Normal disconnection, one byte for a bare reason."""
    assert encode(Disconnect(), 5) == b"\xe0\x00"
    assert decode(b"\xe0\x01\x04", protocol_level=5)[0] == Disconnect(
        R.DISCONNECT_WITH_WILL_MESSAGE
    )
    assert hint_of(b"\xe0\x01\x04", level=4) == R.MALFORMED_PACKET
    assert hint_of(b"\xe0\x01\x01") == R.MALFORMED_PACKET


def test_3_15_2_auth_needs_its_property_length() -> None:
    """AUTH: Remaining Length 0 means Success; otherwise reason and properties."""
    assert hint_of(b"\xf0\x01\x18") == R.MALFORMED_PACKET
    auth = Auth(R.CONTINUE_AUTHENTICATION, Properties(authentication_method="m"))
    assert decode(encode(auth, 5), protocol_level=5)[0] == auth


# -- encode refuses what decode would refuse ------------------------------------------------------


@pytest.mark.parametrize(
    "packet, level",
    [
        (Publish("t", properties=Properties(message_expiry_interval=1)), 4),
        (Publish("t", qos=1), 5),
        (Publish("t", packet_id=3), 5),
        (Publish("t", dup=True), 5),
        (Publish("t", qos=3, packet_id=1), 5),
        (Publish("a/+"), 5),
        (Publish("a\x00"), 5),
        (Publish("\ud800"), 5),
        (Publish(""), 5),
        (Publish("t", properties=Properties(session_expiry_interval=1)), 5),
        (Publish("t", properties=Properties(topic_alias=0)), 5),
        (PubAck(0), 5),
        (PubAck(1, R.NO_MATCHING_SUBSCRIBERS), 4),
        (PubAck(1, R.TOPIC_FILTER_INVALID), 5),
        (Subscribe(1, ()), 5),
        (Subscribe(1, (Subscription("a/#/b"),)), 5),
        (Subscribe(1, (Subscription("a", no_local=True),)), 4),
        (SubAck(1, (R.NOT_AUTHORIZED,)), 4),
        (Unsubscribe(1, ()), 5),
        (UnsubAck(1), 5),
        (Disconnect(R.SERVER_BUSY), 4),
        (Auth(), 4),
        (Connect("c", 5), 4),
        (Connect("c", 4, password=b"p"), 4),
        (Connect("c", 5, properties=Properties(authentication_data=b"x")), 5),
        (PubRec(1, properties=Properties(receive_maximum=0)), 5),
    ],
)
def test_encode_refuses_invalid_packets(packet: object, level: int) -> None:
    """encode raises LocalProtocolError for packets the decoder would refuse."""
    with pytest.raises(LocalProtocolError):
        encode(packet, level)  # type: ignore[arg-type]


def test_unknown_protocol_level_is_a_local_error() -> None:
    """Levels other than 4, 5 (and None for decode) are API misuse."""
    with pytest.raises(LocalProtocolError):
        decode(b"\xc0\x00", protocol_level=3)
    with pytest.raises(LocalProtocolError):
        encode(PingReq(), 3)
    with pytest.raises(LocalProtocolError):
        encode("not a packet", 5)  # type: ignore[arg-type]


def test_known_bytes_of_a_3_1_1_connect() -> None:
    """A CONNECT as Mosquitto's client sends it decodes field by field."""
    data = bytes.fromhex("101700044d5154540402003c000b6d6f73712d636c69656e74")
    assert decode(data, protocol_level=None) == (Connect("mosq-client", 4, True, 60), len(data))


def test_peek_connect_level() -> None:
    """peek_connect_level reads the level of a partial CONNECT, or says it cannot."""
    data = encode(Connect("c", 5), 5)
    assert peek_connect_level(data[:9]) == 5
    assert peek_connect_level(data[:8]) is None
    assert peek_connect_level(b"\x30\x00") is None


def test_decode_accepts_bytes_bytearray_and_memoryview() -> None:
    """Any bytes-like buffer of unsigned bytes works; a memoryview avoids copies."""
    data = encode(Publish("t", b"x", 1, packet_id=1), 5)
    expected = (Publish("t", b"x", 1, packet_id=1), len(data))
    assert decode(data, protocol_level=5) == expected
    assert decode(bytearray(data), protocol_level=5) == expected
    assert decode(memoryview(b"junk" + data)[4:], protocol_level=5) == expected


def test_2_4_reason_codes_of_0x80_and_above_are_failures() -> None:
    """§2.4: "Reason Code values of 0x80 or greater indicate failure"."""
    assert R.UNSPECIFIED_ERROR.is_failure and R.NOT_AUTHORIZED.is_failure
    assert not R.GRANTED_QOS_2.is_failure and not R.NO_MATCHING_SUBSCRIBERS.is_failure
