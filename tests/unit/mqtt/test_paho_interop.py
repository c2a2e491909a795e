"""Cross-check of the codec against paho-mqtt's encoder (a client we must understand).

paho has no public encoder, so its client's private ``_send_*`` methods are used with the
packet queue captured instead of written to a socket. If a paho release changes those
internals, these tests skip rather than fail.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, strategies as st

from gateway.protocols.mqtt import (
    Connect,
    Disconnect,
    PingReq,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ReasonCode,
    Subscribe,
    Subscription,
    Unsubscribe,
    Will,
    decode,
)
from tests.strategies.mqtt import mqtt_text, topic_filters, topic_names

mqtt = pytest.importorskip("paho.mqtt.client")
paho_properties = pytest.importorskip("paho.mqtt.properties")
paho_packettypes = pytest.importorskip("paho.mqtt.packettypes")
paho_options = pytest.importorskip("paho.mqtt.subscribeoptions")
paho_reasons = pytest.importorskip("paho.mqtt.reasoncodes")


class _FakeSocket:
    """Enough of a socket for paho's "connected" checks and its clean-up."""

    def close(self) -> None:
        """Nothing to close."""

    def fileno(self) -> int:
        return -1


class CapturingClient:
    """A paho client whose outgoing packets are collected instead of sent."""

    def __init__(self, level: int, **connect: Any) -> None:
        protocol = mqtt.MQTTv5 if level == 5 else mqtt.MQTTv311
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, "dev-1", protocol=protocol)
        self.level = level
        self.packets: list[bytes] = []
        self.client._packet_queue = self._capture
        self.client._sock = _FakeSocket()  # "connected", for the _send_* guards
        if not hasattr(self.client, "_send_publish"):  # pragma: no cover
            pytest.skip("paho internals changed")

    def _capture(self, command: int, packet: bytes, mid: int, qos: int, info: Any = None) -> Any:
        self.packets.append(bytes(packet))
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def decoded(self) -> Any:
        """Decode the last captured packet with our codec, checking it is consumed whole."""
        data = self.packets.pop()
        packet, used = decode(data, protocol_level=self.level)
        assert used == len(data)
        return packet


def paho_props(packet_type: str, **values: Any) -> Any:
    props = paho_properties.Properties(getattr(paho_packettypes.PacketTypes, packet_type))
    for name, value in values.items():
        setattr(props, name, value)
    return props


@pytest.mark.parametrize("level", [4, 5])
def test_paho_connect_decodes(level: int) -> None:
    """paho's CONNECT with user name, password and a retained QoS 1 Will."""
    capture = CapturingClient(level)
    client = capture.client
    client.username_pw_set("user", "secret")
    will_props = paho_props("WILLMESSAGE", WillDelayInterval=5) if level == 5 else None
    client.will_set("clients/dev-1", b"gone", 1, True, properties=will_props)
    if level == 5:
        client._connect_properties = paho_props(
            "CONNECT", SessionExpiryInterval=60, ReceiveMaximum=10
        )
    client._send_connect(30)
    expected = Connect(
        "dev-1",
        level,
        True,
        30,
        "user",
        b"secret",
        Will(
            "clients/dev-1",
            b"gone",
            1,
            True,
            Properties(will_delay_interval=5) if level == 5 else Properties(),
        ),
        Properties(session_expiry_interval=60, receive_maximum=10) if level == 5 else Properties(),
    )
    packet, used = decode(capture.packets[0], protocol_level=None)
    assert packet == expected and used == len(capture.packets[0])


@given(
    st.sampled_from([4, 5]),
    topic_names,
    st.binary(max_size=40),
    st.integers(0, 2),
    st.booleans(),
    st.lists(st.tuples(mqtt_text, mqtt_text), max_size=3),
)
def test_paho_publish_decodes(
    level: int, topic: str, payload: bytes, qos: int, retain: bool, user: list[tuple[str, str]]
) -> None:
    """Any PUBLISH paho encodes decodes to the same message (5.0: with user properties)."""
    capture = CapturingClient(level)
    props = None
    if level == 5 and user:
        props = paho_props("PUBLISH", UserProperty=user)
    capture.client._send_publish(7, topic.encode(), payload, qos, retain, False, None, props)
    expected = Publish(
        topic,
        payload,
        qos,
        retain,
        False,
        7 if qos else None,
        Properties(user_properties=tuple(user)) if props else Properties(),
    )
    assert capture.decoded() == expected


@given(
    st.sampled_from([4, 5]),
    st.lists(st.tuples(topic_filters, st.integers(0, 2)), min_size=1, max_size=3),
    st.booleans(),
    st.integers(0, 2),
)
def test_paho_subscribe_and_unsubscribe_decode(
    level: int, requests: list[tuple[str, int]], retain_as_published: bool, handling: int
) -> None:
    """paho's SUBSCRIBE (with 5.0 options) and UNSUBSCRIBE decode to the same requests."""
    capture = CapturingClient(level)
    if level == 5:
        topics = [
            (f.encode(), paho_options.SubscribeOptions(q, False, retain_as_published, handling))
            for f, q in requests
        ]
        expected = tuple(
            Subscription(f, q, False, retain_as_published, handling) for f, q in requests
        )
    else:
        topics = [(f.encode(), q) for f, q in requests]
        expected = tuple(Subscription(f, q) for f, q in requests)
    _, mid = capture.client._send_subscribe(False, topics)
    assert capture.decoded() == Subscribe(mid, expected)
    _, mid = capture.client._send_unsubscribe(False, [f.encode() for f, _ in requests])
    assert capture.decoded() == Unsubscribe(mid, tuple(f for f, _ in requests))


@pytest.mark.parametrize("level", [4, 5])
def test_paho_acks_ping_and_disconnect_decode(level: int) -> None:
    """PUBACK, PUBREC, PUBREL, PUBCOMP, PINGREQ and DISCONNECT as paho sends them."""
    capture = CapturingClient(level)
    client = capture.client
    client._send_puback(1)
    assert capture.decoded() == PubAck(1)
    client._send_pubrec(2)
    assert capture.decoded() == PubRec(2)
    client._send_pubrel(3)
    assert capture.decoded() == PubRel(3)
    client._send_pubcomp(4)
    assert capture.decoded() == PubComp(4)
    client._send_pingreq()
    assert capture.decoded() == PingReq()
    if level == 5:
        reason = paho_reasons.ReasonCode(paho_packettypes.PacketTypes.DISCONNECT, identifier=4)
        client._send_disconnect(reason)
        assert capture.decoded() == Disconnect(ReasonCode.DISCONNECT_WITH_WILL_MESSAGE)
    else:
        client._send_disconnect()
        assert capture.decoded() == Disconnect()
