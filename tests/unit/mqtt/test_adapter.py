"""The MQTT adapter with the built-in broker (``consumer: broker``), on a fake transport."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.protocols.mqtt import (
    ConnAck, Connect, Disconnect, PingReq, PingResp, Properties, PubAck, PubComp, Publish, PubRec, PubRel,
    ReasonCode, ServerOptions, SubAck, Subscribe, Subscription, UnsubAck, Unsubscribe, Will,
)
from gateway.protocols.mqtt.broker import AccessRule, Authenticator, hash_password
from tests.unit.mqtt.harness import Harness


def connack(packets: list[object]) -> tuple[bool, int]:
    """(session present, reason code) of the only packet, a CONNACK."""
    (packet,) = packets
    assert isinstance(packet, ConnAck)
    return packet.session_present, int(packet.reason_code)


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    assert h.errors() == []
    h.close()


def test_connect_publish_subscribe_all_qos(harness: Harness) -> None:
    sub = harness.client()
    assert connack(sub.connect("sub")) == (False, 0)
    sub.send(Subscribe(1, (Subscription("t/#", 2),)))
    assert sub.received() == [SubAck(1, (2,))]
    pub = harness.client(level=4)
    assert connack(pub.connect("pub")) == (False, 0)
    pub.send(Publish("t/0", b"zero"), Publish("t/1", b"one", 1, packet_id=5), Publish("t/2", b"two", 2, packet_id=6))
    assert pub.received() == [PubAck(5), PubRec(6)]
    pub.send(PubRel(6))
    assert pub.received() == [PubComp(6)]
    got = sub.received()
    assert [(p.topic, p.payload, p.qos) for p in got] == [("t/0", b"zero", 0), ("t/1", b"one", 1), ("t/2", b"two", 2)]
    sub.send(PubAck(got[1].packet_id), PubRec(got[2].packet_id))
    assert sub.received() == [PubRel(got[2].packet_id)]


def test_fan_out_shares_encoded_bytes_per_level(harness: Harness) -> None:
    subs = [harness.client(level=level) for level in (4, 5, 5)]
    for n, sub in enumerate(subs):
        sub.connect(f"s{n}")
        sub.send(Subscribe(1, (Subscription("f", 0),)))
        sub.received()
    pub = harness.client()
    pub.connect("p")
    pub.send(Publish("f", b"x", properties=Properties(content_type="text/plain")))
    v4, v5a, v5b = (sub.received() for sub in subs)
    assert v4 == [Publish("f", b"x")]  # 3.1.1: no properties
    assert v5a == v5b == [Publish("f", b"x", properties=Properties(content_type="text/plain"))]


@pytest.mark.parametrize("level", [4, 5])
def test_publishes_in_the_same_read_as_the_disconnect_go_through(harness: Harness, level: int) -> None:
    """A client that pipelines publishes and its DISCONNECT (Paho's retained-message cleaner
    does) has every one of them handled before the connection's session ends."""
    keeper = harness.client(level)
    keeper.connect("keeper")
    for topic in ("x/a", "x/b", "x/c"):
        keeper.send(Publish(topic, b"v", 1, True, packet_id=1))
    watcher = harness.client(level)
    watcher.connect("watcher")
    watcher.send(Subscribe(1, (Subscription("x/#", 0),)))
    watcher.received()
    cleaner = harness.client(level)
    cleaner.connect("cleaner")
    cleaner.send(*(Publish(t, b"", 0, True) for t in ("x/a", "x/b", "x/c")), Publish("x/d", b"last"), Disconnect())
    assert [(p.topic, p.payload) for p in watcher.received()] == [("x/a", b""), ("x/b", b""), ("x/c", b""), ("x/d", b"last")]
    assert not harness.broker.store.retained  # type: ignore[attr-defined]


def test_unsubscribe(harness: Harness) -> None:
    sub = harness.client()
    sub.connect("s")
    sub.send(Subscribe(1, (Subscription("a", 0),)), Unsubscribe(2, ("a", "b")))
    assert sub.received() == [SubAck(1, (0,)), UnsubAck(2, (0, ReasonCode.NO_SUBSCRIPTION_EXISTED))]


def test_keep_alive_expiry_publishes_the_will(harness: Harness) -> None:
    watcher = harness.client()
    watcher.connect("w")
    watcher.send(Subscribe(1, (Subscription("status/#", 0),)))
    watcher.received()
    dev = harness.client()
    dev.connect("dev", keep_alive=10, will=Will("status/dev", b"offline"))
    harness.advance(14)
    dev.send(PingReq())
    assert dev.received() == [PingResp()]
    harness.advance(14)
    assert not dev.closed
    harness.advance(2)  # 1.5 x 10 s after the PINGREQ
    assert dev.received() == [Disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT)]
    assert dev.closed
    assert watcher.received() == [Publish("status/dev", b"offline")]


def test_takeover_sends_0x8e_and_resumes_the_session(harness: Harness) -> None:
    first = harness.client()
    first.connect("dev", clean_start=False, properties=Properties(session_expiry_interval=60))
    first.send(Subscribe(1, (Subscription("t", 1),)))
    first.received()
    second = harness.client()
    assert connack(second.connect("dev", clean_start=False, properties=Properties(session_expiry_interval=60))) == (True, 0)
    assert first.received() == [Disconnect(ReasonCode.SESSION_TAKEN_OVER)] and first.closed
    pub = harness.client()
    pub.connect("p")
    pub.send(Publish("t", b"x", 1, packet_id=1))
    assert [p.payload for p in second.received()] == [b"x"]


def test_unacknowledged_messages_are_resent_on_resume(harness: Harness) -> None:
    dev = harness.client(level=4)
    dev.connect("dev", clean_start=False)
    dev.send(Subscribe(1, (Subscription("t", 1),)))
    dev.received()
    pub = harness.client()
    pub.connect("p")
    pub.send(Publish("t", b"inflight", 1, packet_id=1))
    (delivered,) = dev.received()
    dev.lose()  # never acknowledged
    pub.send(Publish("t", b"queued", 1, packet_id=2))
    again = harness.client(level=4)
    packets = again.connect("dev", clean_start=False)
    assert connack(packets[:1]) == (True, 0)
    resent = packets[1:]
    assert [(p.payload, p.dup) for p in resent] == [(b"inflight", True), (b"queued", False)]
    assert resent[0].packet_id == delivered.packet_id


def test_shutdown_sends_0x8b(harness: Harness) -> None:
    client = harness.client()
    client.connect("c")
    client.protocol.shutdown()
    assert client.received() == [Disconnect(ReasonCode.SERVER_SHUTTING_DOWN)]
    assert client.closed


def test_oversize_packet_is_refused() -> None:
    harness = Harness(options=ServerOptions(max_packet_size=100))
    try:
        client = harness.client()
        client.connect("c")
        client.send(Publish("t", b"x" * 200))
        assert client.received() == [Disconnect(ReasonCode.PACKET_TOO_LARGE)]
        assert client.closed
    finally:
        harness.close()


def test_payload_format_indicator_is_checked(harness: Harness) -> None:
    client = harness.client()
    client.connect("c")
    client.send(Publish("t", b"\xff\xfe", 1, packet_id=3, properties=Properties(payload_format_indicator=1)))
    assert client.received() == [PubAck(3, ReasonCode.PAYLOAD_FORMAT_INVALID)]
    client.send(Publish("t", b"\xff", properties=Properties(payload_format_indicator=1)))
    assert client.received() == [Disconnect(ReasonCode.PAYLOAD_FORMAT_INVALID)]


def test_credentials_and_access_rules() -> None:
    auth = Authenticator(
        {"alice": hash_password("pw", "pbkdf2_sha256", iterations=1000)}, allow_anonymous=False,
        rules=[AccessRule(("alice",), publish=("mine/#",), subscribe=("mine/#",))],
    )
    harness = Harness(auth=auth)
    try:
        bad = harness.client(level=4)
        bad.send(Connect("x", 4, username="alice", password=b"wrong"))
        assert connack(bad.wait_received()) == (False, 4) and bad.closed  # 3.1.1 return code 4
        anonymous = harness.client()
        anonymous.send(Connect("y", 5))
        assert connack(anonymous.wait_received()) == (False, ReasonCode.BAD_USER_NAME_OR_PASSWORD)
        good = harness.client()
        good.send(Connect("z", 5, username="alice", password=b"pw"))
        assert connack(good.wait_received()) == (False, 0)
        good.send(Subscribe(1, (Subscription("mine/x", 1), Subscription("other", 1))),
                  Publish("other", b"no", 1, packet_id=2), Publish("mine/x", b"yes", 1, packet_id=3))
        got = good.received()
        acks = [p for p in got if not isinstance(p, Publish)]
        assert acks == [SubAck(1, (1, ReasonCode.NOT_AUTHORIZED)), PubAck(2, ReasonCode.NOT_AUTHORIZED), PubAck(3)]
        assert [p.payload for p in got if isinstance(p, Publish)] == [b"yes"]
    finally:
        harness.close()


def test_enhanced_authentication_needs_an_application(harness: Harness) -> None:
    client = harness.client()
    assert connack(client.connect("c", properties=Properties(authentication_method="SCRAM"))) == (
        False, ReasonCode.BAD_AUTHENTICATION_METHOD)


def test_empty_client_id_gets_one_assigned(harness: Harness) -> None:
    client = harness.client()
    (connack,) = client.connect("")
    assert connack.reason_code == 0
    assert connack.properties.assigned_client_identifier.startswith("auto-")


def test_retained_store_failure_means_no_ack(harness: Harness) -> None:
    async def broken(topic: str, data: bytes | None, ttl: float | None = None) -> None:
        raise OSError("store down")

    harness.broker.store.set_retained = broken  # type: ignore[method-assign]
    client = harness.client()
    client.connect("c")
    client.send(Publish("t", b"x", 1, retain=True, packet_id=4))
    assert client.received() == [Disconnect(ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR)]
    harness.log.clear()  # the failure is logged on purpose


def test_acks_wait_for_a_slow_store_and_keep_their_order(harness: Harness) -> None:
    """[MQTT-4.6.0-2]: a retained publish waiting for the store holds back later acks."""
    release = harness.loop.create_future()
    original = harness.broker.store.set_retained

    async def slow(topic: str, data: bytes | None, ttl: float | None = None) -> None:
        await release
        await original(topic, data, ttl)

    harness.broker.store.set_retained = slow  # type: ignore[method-assign]
    client = harness.client()
    client.connect("c")
    client.send(Publish("r", b"kept", 1, retain=True, packet_id=1), Publish("t", b"x", 1, packet_id=2))
    assert client.received() == []  # neither: the first is not stored yet
    release.set_result(None)
    harness.run()
    assert client.received() == [PubAck(1), PubAck(2)]
