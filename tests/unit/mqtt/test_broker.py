"""The built-in broker: routing, retained messages, sessions, wills, expiry, shared groups."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from gateway.protocols.mqtt import Properties, Publish, SessionState, Subscription, Will
from gateway.protocols.mqtt.broker import AccessRule, Authenticator, Broker
from gateway.protocols.mqtt.broker.session import Message, Session, dump_message, load_message
from gateway.protocols.mqtt.events import OutboundMessage
from tests.unit.mqtt.broker_helpers import EPOCH, FakeConn, make_broker


@pytest.fixture
def broker() -> Iterator[Broker]:
    loop = asyncio.new_event_loop()
    try:
        yield make_broker(loop)
    finally:
        loop.close()


def connected(broker: Broker, client_id: str, **options: object) -> FakeConn:
    conn = FakeConn(broker, client_id, **options)  # type: ignore[arg-type]
    conn.connect()
    return conn


# -- routing -----------------------------------------------------------------------------------


def test_wildcards_and_dollar_topics(broker: Broker) -> None:
    a = connected(broker, "a")
    a.subscribe("sensors/+/temp", "#")
    b = connected(broker, "b")
    b.subscribe("$SYS/#")
    pub = connected(broker, "p")
    pub.publish("sensors/1/temp", b"21")
    pub.publish("$SYS/uptime", b"5")
    # "#" and "sensors/+/temp" overlap: one copy; "$SYS/..." is not matched by "#" (§4.7.2).
    assert a.topics() == [("sensors/1/temp", b"21")]
    assert b.topics() == [("$SYS/uptime", b"5")]


def test_overlapping_subscriptions_one_copy_at_max_qos_with_all_ids(broker: Broker) -> None:
    sub = connected(broker, "s")
    sub.subscribe(Subscription("a/+", 0), sub_id=7)
    sub.subscribe(Subscription("a/#", 2), sub_id=9)
    sub.subscribe(Subscription("a/b", 1))
    connected(broker, "p").publish("a/b", b"m", qos=2)
    (message,) = sub.received
    assert message["qos"] == 2  # §3.3.4: the maximum QoS of the matching subscriptions
    assert sorted(message["properties"].subscription_identifiers) == [7, 9]


def test_delivery_qos_is_the_lower_of_publish_and_grant(broker: Broker) -> None:
    sub = connected(broker, "s")
    sub.subscribe(Subscription("t", 1))
    pub = connected(broker, "p")
    pub.publish("t", b"0", qos=0)
    pub.publish("t", b"2", qos=2)
    assert [m["qos"] for m in sub.received] == [0, 1]


def test_no_local_and_retain_as_published(broker: Broker) -> None:
    me = connected(broker, "me")
    me.subscribe(Subscription("t/nl", 0, no_local=True), Subscription("t/rap", 0, retain_as_published=True),
                 Subscription("t/plain", 0))
    me.publish("t/nl", b"own")
    connected(broker, "other").publish("t/nl", b"theirs")
    me.publish("t/rap", b"r", retain=True)
    me.publish("t/plain", b"p", retain=True)
    assert me.topics() == [("t/nl", b"theirs"), ("t/rap", b"r"), ("t/plain", b"p")]
    assert [m["retain"] for m in me.received[1:]] == [True, False]  # §3.3.1.3


def test_unsubscribe_stops_delivery_and_reports_missing_filters(broker: Broker) -> None:
    sub = connected(broker, "s")
    sub.subscribe("t")
    assert sub.unsubscribe("t", "never") == [0, 0x11]
    connected(broker, "p").publish("t")
    assert sub.received == []


# -- retained messages -------------------------------------------------------------------------


def test_retained_set_replace_clear_and_retain_handling(broker: Broker) -> None:
    pub = connected(broker, "p")
    pub.publish("r/1", b"old", qos=1, retain=True)
    pub.publish("r/1", b"new", qos=1, retain=True)
    pub.publish("r/2", b"gone", retain=True)
    pub.publish("r/2", b"", retain=True)  # a zero-length payload clears it
    sub = connected(broker, "s")
    sub.subscribe(Subscription("r/#", 2))
    assert sub.topics() == [("r/1", b"new")]
    assert sub.received[0]["retain"] is True and sub.received[0]["qos"] == 1
    sub.subscribe(Subscription("r/#", 2, retain_handling=1))  # exists already: nothing
    sub.subscribe(Subscription("r/+", 2, retain_handling=2))  # never
    assert len(sub.received) == 1
    sub.subscribe(Subscription("r/1", 0, retain_handling=1))  # new: sent
    assert sub.topics()[-1] == ("r/1", b"new") and len(sub.received) == 2


def test_retained_message_expires(broker: Broker) -> None:
    connected(broker, "p").publish("r", b"short", retain=True, properties=Properties(message_expiry_interval=5))
    broker.reactor.advance(6)
    sub = connected(broker, "s")
    sub.subscribe("r")
    assert sub.received == []


# -- sessions ----------------------------------------------------------------------------------


def test_persistent_session_queues_and_resumes(broker: Broker) -> None:
    sub = FakeConn(broker, "dev", clean_start=False, expiry=3600)
    assert sub.connect() is False
    sub.subscribe(Subscription("cmd/#", 1))
    sub.close()
    pub = connected(broker, "p")
    pub.publish("cmd/a", b"q1", qos=1)
    pub.publish("cmd/b", b"q0", qos=0)  # QoS 0 is not kept for an absent client
    again = FakeConn(broker, "dev", clean_start=False, expiry=3600)
    assert again.connect() is True
    assert again.topics() == [("cmd/a", b"q1")]
    pub.publish("cmd/c", b"live", qos=1)  # the subscription survived
    assert again.topics()[-1] == ("cmd/c", b"live")


def test_protocol_state_is_resumed(broker: Broker) -> None:
    sub = FakeConn(broker, "dev", clean_start=False, expiry=60)
    sub.connect()
    inflight = OutboundMessage(Publish("t", b"x", 1, packet_id=3))
    sub.open_state = SessionState(outbound=(inflight,), next_packet_id=4)
    sub.close()
    again = FakeConn(broker, "dev", clean_start=False, expiry=60)
    again.connect()
    assert again.resumed is not None and again.resumed.outbound == (inflight,)


def test_clean_start_discards_the_session(broker: Broker) -> None:
    sub = FakeConn(broker, "dev", clean_start=False, expiry=60)
    sub.connect()
    sub.subscribe("t")
    sub.close()
    fresh = FakeConn(broker, "dev", clean_start=True)
    assert fresh.connect() is False
    connected(broker, "p").publish("t")
    assert fresh.received == [] and sub.received == []


def test_session_expires(broker: Broker) -> None:
    sub = FakeConn(broker, "dev", clean_start=False, expiry=10)
    sub.connect()
    sub.subscribe("t")
    sub.close()
    broker.reactor.advance(11)
    assert "dev" not in broker.sessions
    assert FakeConn(broker, "dev", clean_start=False, expiry=10).connect() is False


def test_disconnect_can_shorten_expiry_to_zero(broker: Broker) -> None:
    sub = FakeConn(broker, "dev", clean_start=False, expiry=100)
    sub.connect()
    sub.close(expiry=0)
    assert "dev" not in broker.sessions


def test_session_expiry_is_capped(broker: Broker) -> None:
    broker.max_session_expiry = 30
    conn = FakeConn(broker, "dev", clean_start=False, expiry=3600)
    assert conn.link.expiry == 30 and conn.link.expiry_changed


def test_takeover_disconnects_the_older_connection(broker: Broker) -> None:
    first = FakeConn(broker, "dev", clean_start=False, expiry=60)
    first.connect()
    first.subscribe("t")
    second = FakeConn(broker, "dev", clean_start=False, expiry=60)
    assert second.connect() is True
    assert first.taken_over
    connected(broker, "p").publish("t", b"to-second")
    assert first.received == [] and second.topics() == [("t", b"to-second")]


def test_queue_limit_drops_new_messages(broker: Broker) -> None:
    broker.max_queued_messages = 2
    sub = FakeConn(broker, "dev", clean_start=False, expiry=60)
    sub.connect()
    sub.subscribe(Subscription("t", 1))
    sub.close()
    pub = connected(broker, "p")
    for n in range(4):
        pub.publish("t", str(n).encode(), qos=1)
    again = FakeConn(broker, "dev", clean_start=False, expiry=60)
    again.connect()
    assert [m["payload"] for m in again.received] == [b"0", b"1"]
    assert broker.stats["dropped"] == 2


def test_queued_message_expiry_counts_down(broker: Broker) -> None:
    sub = FakeConn(broker, "dev", clean_start=False, expiry=600)
    sub.connect()
    sub.subscribe(Subscription("t", 1))
    sub.close()
    pub = connected(broker, "p")
    pub.publish("t", b"long", qos=1, properties=Properties(message_expiry_interval=100))
    pub.publish("t", b"short", qos=1, properties=Properties(message_expiry_interval=5))
    broker.reactor.advance(30)
    again = FakeConn(broker, "dev", clean_start=False, expiry=600)
    again.connect()
    (message,) = again.received
    assert message["payload"] == b"long"
    assert message["properties"].message_expiry_interval == 70  # §3.3.2.3.3


# -- wills -------------------------------------------------------------------------------------


def test_will_published_on_abnormal_close_only(broker: Broker) -> None:
    watcher = connected(broker, "w")
    watcher.subscribe("status/#")
    normal = FakeConn(broker, "a", will=Will("status/a", b"gone"))
    normal.connect()
    normal.close(publish_will=False)
    abrupt = FakeConn(broker, "b", will=Will("status/b", b"gone", retain=True))
    abrupt.connect()
    abrupt.close(publish_will=True)
    assert watcher.topics() == [("status/b", b"gone")]
    late = connected(broker, "late")
    late.subscribe("status/#")
    assert late.topics() == [("status/b", b"gone")]  # a retained will


def test_will_delay_and_reconnect_cancels_it(broker: Broker) -> None:
    watcher = connected(broker, "w")
    watcher.subscribe("status/#")
    will = Will("status/d", b"gone", properties=Properties(will_delay_interval=10))
    conn = FakeConn(broker, "d", clean_start=False, expiry=100, will=will)
    conn.connect()
    conn.close(publish_will=True)
    broker.reactor.advance(5)
    FakeConn(broker, "d", clean_start=False, expiry=100).connect()  # back before the delay
    broker.reactor.advance(10)
    assert watcher.received == []
    conn2 = FakeConn(broker, "e", clean_start=False, expiry=100, will=Will("status/e", b"x", properties=Properties(will_delay_interval=10)))
    conn2.connect()
    conn2.close(publish_will=True)
    broker.reactor.advance(9)
    assert watcher.received == []
    broker.reactor.advance(2)
    assert watcher.topics() == [("status/e", b"x")]
    assert watcher.received[0]["properties"].will_delay_interval is None


def test_will_goes_out_when_the_session_ends_first(broker: Broker) -> None:
    watcher = connected(broker, "w")
    watcher.subscribe("status/#")
    will = Will("status/x", b"bye", properties=Properties(will_delay_interval=100))
    conn = FakeConn(broker, "x", clean_start=False, expiry=3, will=will)
    conn.connect()
    conn.close(publish_will=True)
    broker.reactor.advance(4)
    assert watcher.topics() == [("status/x", b"bye")]


def test_will_is_subject_to_access_rules(broker: Broker) -> None:
    auth = Authenticator(rules=[AccessRule(("*",), publish=("allowed/#",), subscribe=("#",))])
    watcher = connected(broker, "w", auth=auth)
    watcher.subscribe("#")
    conn = FakeConn(broker, "x", will=Will("forbidden/x", b"bye"), auth=auth)
    conn.connect()
    conn.close(publish_will=True)
    assert watcher.received == []


# -- shared subscriptions ----------------------------------------------------------------------


def test_shared_subscription_round_robin(broker: Broker) -> None:
    members = [connected(broker, f"m{n}") for n in range(3)]
    for member in members:
        member.subscribe(Subscription("$share/g/jobs/+", 1))
    plain = connected(broker, "plain")
    plain.subscribe("jobs/#")
    pub = connected(broker, "p")
    for n in range(9):
        pub.publish("jobs/x", str(n).encode(), qos=1)
    assert [len(m.received) for m in members] == [3, 3, 3]
    assert len(plain.received) == 9
    got = sorted(int(msg["payload"]) for m in members for msg in m.received)
    assert got == list(range(9))  # each message to exactly one member


def test_shared_subscription_skips_absent_members_and_gets_no_retained(broker: Broker) -> None:
    connected(broker, "p").publish("jobs/r", b"retained", retain=True)
    away = FakeConn(broker, "away", clean_start=False, expiry=60)
    away.connect()
    away.subscribe(Subscription("$share/g/jobs/#", 1))
    away.close()
    here = connected(broker, "here")
    here.subscribe(Subscription("$share/g/jobs/#", 1))
    assert here.received == []  # no retained messages for shared subscriptions
    connected(broker, "p2").publish("jobs/1", b"a", qos=1)
    connected(broker, "p3").publish("jobs/2", b"b", qos=1)
    assert here.topics() == [("jobs/1", b"a"), ("jobs/2", b"b")]


# -- access rules ------------------------------------------------------------------------------


def test_access_rules_on_publish_and_subscribe(broker: Broker) -> None:
    auth = Authenticator(rules=[
        AccessRule(("alice",), publish=("sensors/%u/#",), subscribe=("sensors/#",)),
        AccessRule(("*",), subscribe=("public/+",)),
    ])
    alice = connected(broker, "a1", username="alice", auth=auth)
    assert alice.subscribe("sensors/+/temp", "#", "public/news", "public/#") == [2, 0x87, 2, 0x87]
    assert alice.publish("sensors/alice/t", qos=1) == 0
    assert alice.publish("sensors/bob/t", qos=1) == 0x87
    assert [m["topic"] for m in alice.received] == []  # subscribed to sensors/+/temp only


def test_deny_rule_stops_delivery_to_wider_subscriptions(broker: Broker) -> None:
    auth = Authenticator(rules=[
        AccessRule(("*",), publish=("#",), subscribe=("#",)),
        AccessRule(("*",), subscribe=("secret/#",), effect="deny"),
    ])
    connected(broker, "p0").publish("secret/old", b"r", retain=True)
    connected(broker, "p1").publish("open/old", b"r", retain=True)
    wide = connected(broker, "wide", auth=auth)
    assert wide.subscribe("#", "secret/+/x", Subscription("$share/g/+/a", 1)) == [2, 0x87, 1]
    assert wide.topics() == [("open/old", b"r")]  # the denied retained message is not sent
    two = connected(broker, "two", auth=auth)
    two.subscribe("+/a", "open/+")  # overlapping subscriptions of one client
    pub = connected(broker, "pub", auth=auth)
    for topic in ("secret/a", "open/a", "secret", "secret/b/x"):
        assert pub.publish(topic, b"m", qos=1) == 0  # publishing there is not denied
    assert [t for t, _ in wide.topics()[1:]] == ["open/a", "open/a"]  # "#" and the share group
    assert two.topics() == [("open/old", b"r"), ("open/a", b"m")]  # retained, then one copy
    free = connected(broker, "free")  # no rules for this client
    free.subscribe("#")
    pub.publish("secret/z")
    assert free.topics()[-1] == ("secret/z", b"x")


def test_deny_rule_applies_to_a_resumed_session(broker: Broker) -> None:
    away = FakeConn(broker, "s", clean_start=False, expiry=60)
    away.connect()
    away.subscribe("#")
    away.close()
    connected(broker, "p").publish("secret/a", b"1", qos=1)
    connected(broker, "p").publish("open/a", b"2", qos=1)
    auth = Authenticator(rules=[
        AccessRule(("*",), publish=("#",), subscribe=("#",)),
        AccessRule(("*",), subscribe=("secret/#",), effect="deny"),
    ])
    back = FakeConn(broker, "s", clean_start=False, expiry=60, auth=auth)
    assert back.connect()
    assert back.topics() == [("open/a", b"2")]  # what waited on a denied topic is dropped
    connected(broker, "p").publish("secret/b", b"3", qos=1)
    assert back.topics() == [("open/a", b"2")]


# -- serialisation -----------------------------------------------------------------------------


def test_message_and_session_round_trip() -> None:
    message = Message("t/1", b"\x00\xff", 2, True, Properties(content_type="x", user_properties=(("a", "b"),)),
                      expires_at=EPOCH + 5, origin="me", received_at=EPOCH)
    again = load_message(dump_message(message))
    assert (again.topic, again.payload, again.qos, again.retain, again.properties, again.expires_at,
            again.origin, again.received_at) == (message.topic, message.payload, 2, True, message.properties,
                                                 EPOCH + 5, "me", EPOCH)
    session = Session("dev", expiry=60, level=4)
    session.state = SessionState(
        outbound=(OutboundMessage(Publish("o", b"1", 1, packet_id=9), released=True),),
        queued=(Publish("q", b"2", 2),), inbound_qos2=frozenset({4}), next_packet_id=10,
    )
    session.queue.append((message, 1, False, (3,)))
    restored, subs, saved = Session.load(session.dump(EPOCH))
    assert restored.state == session.state and restored.expiry == 60 and restored.level == 4
    assert saved == EPOCH and subs == []
    (queued,) = restored.queue
    assert queued[0].payload == b"\x00\xff" and queued[1:] == (1, False, (3,))
