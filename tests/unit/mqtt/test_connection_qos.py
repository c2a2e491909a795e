"""MqttServerConnection: QoS 1/2 in both directions, flow control, topic aliases, sessions.

Tests are named after the section of MQTT 5.0 (or 3.1.1) whose rule they check.
"""

from __future__ import annotations

import pytest

from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.mqtt import (
    ConnectionClosed,
    Disconnect,
    OutboundMessage,
    PubAck,
    PubAckReceived,
    PubComp,
    PubCompReceived,
    Publish,
    PublishReceived,
    PublishStatus,
    PubRec,
    PubRecReceived,
    PubRel,
    ReasonCode,
    ServerOptions,
    SessionState,
    SubAck,
    Subscribe,
    SubscribeReceived,
    Subscription,
    UnsubAck,
    Unsubscribe,
    UnsubscribeReceived,
    encode,
)
from tests.unit.mqtt.helpers import Harness, props

R = ReasonCode


def connected(level: int = 5, **options: object) -> Harness:
    """A harness whose client is connected (CONNACK already read)."""
    harness = Harness(level, ServerOptions(**options))  # type: ignore[arg-type]
    harness.connect()
    return harness


# -- inbound QoS 1 / QoS 2: acknowledged only after the upper layer handled the message ----------


@pytest.mark.parametrize("level", [4, 5])
def test_4_3_2_qos1_puback_is_sent_only_after_ack_publish(level: int) -> None:
    """The consumer handles the message first; only then does the client get its PUBACK."""
    harness = connected(level)
    publish = Publish("sensors/1", b"21.5", 1, packet_id=7)
    assert harness.send(publish) == [PublishReceived(publish)]
    assert harness.received() == []  # nothing until the upper layer says it is handled
    harness.conn.ack_publish(7)
    assert harness.received() == [PubAck(7)]
    with pytest.raises(LocalProtocolError):
        harness.conn.ack_publish(7)  # already acknowledged


@pytest.mark.parametrize("level", [4, 5])
def test_4_3_3_qos2_pubrec_after_ack_publish_then_pubrel_pubcomp(level: int) -> None:
    """QoS 2, method B: deliver on PUBLISH, PUBREC when handled, PUBCOMP on PUBREL."""
    harness = connected(level)
    publish = Publish("t", b"x", 2, packet_id=3)
    assert harness.send(publish) == [PublishReceived(publish)]
    assert harness.received() == []
    harness.conn.ack_publish(3)
    assert harness.received() == [PubRec(3)]
    assert harness.send(PubRel(3)) == []
    assert harness.received() == [PubComp(3)]
    assert harness.conn.session_state().inbound_qos2 == frozenset()


def test_4_3_3_a_resent_qos2_publish_is_not_delivered_twice() -> None:
    """[MQTT-4.3.3-10]-like: a re-sent PUBLISH with the same id before PUBREL is not
    delivered again, whether the upper layer is still handling it or already acknowledged."""
    harness = connected()
    publish = Publish("t", b"once", 2, packet_id=9)
    resent = Publish("t", b"once", 2, dup=True, packet_id=9)
    assert harness.send(publish) == [PublishReceived(publish)]
    assert harness.send(resent) == []  # still being handled: the ack will answer
    assert harness.received() == []
    harness.conn.ack_publish(9)
    assert harness.received() == [PubRec(9)]
    assert harness.send(resent) == []  # PUBREC'd: answer PUBREC again, no new delivery
    assert harness.received() == [PubRec(9)]
    harness.send(PubRel(9))
    assert harness.received() == [PubComp(9)]
    fresh = Publish("t", b"new", 2, packet_id=9)  # the exchange is over: a new message
    assert harness.send(fresh) == [PublishReceived(fresh)]


def test_4_3_2_a_resent_qos1_publish_being_handled_is_not_delivered_twice() -> None:
    """A QoS 1 re-send while the first copy is still with the consumer is not delivered."""
    harness = connected(4)
    publish = Publish("t", b"x", 1, packet_id=2)
    harness.send(publish)
    assert harness.send(Publish("t", b"x", 1, dup=True, packet_id=2)) == []
    harness.conn.ack_publish(2)
    assert harness.received() == [PubAck(2)]


def test_3_4_2_1_acks_with_a_failure_reason_end_the_exchange() -> None:
    """5.0: PUBACK/PUBREC >= 0x80 tell the client the message was refused; after a failed
    PUBREC, a PUBREL finds no exchange (PUBCOMP 0x92)."""
    harness = connected()
    harness.send(Publish("t", b"", 1, packet_id=1), Publish("t", b"", 2, packet_id=2))
    harness.conn.ack_publish(1, R.NOT_AUTHORIZED, props(reason_string="denied"))
    harness.conn.ack_publish(2, R.QUOTA_EXCEEDED)
    assert harness.received() == [
        PubAck(1, R.NOT_AUTHORIZED, props(reason_string="denied")),
        PubRec(2, R.QUOTA_EXCEEDED),
    ]
    harness.send(PubRel(2))
    assert harness.received() == [PubComp(2, R.PACKET_IDENTIFIER_NOT_FOUND)]
    with pytest.raises(LocalProtocolError):
        harness.conn.ack_publish(1)


def test_ack_reasons_must_be_valid_and_3_1_1_acks_have_none() -> None:
    """A reason outside the PUBACK table is API misuse; 3.1.1 acks carry no reason at all."""
    harness = connected()
    harness.send(Publish("t", b"", 1, packet_id=1))
    with pytest.raises(LocalProtocolError):
        harness.conn.ack_publish(1, R.TOPIC_FILTER_INVALID)
    harness.conn.ack_publish(1)  # still pending after the refused call
    assert harness.received() == [PubAck(1)]
    harness = connected(4)
    harness.send(Publish("t", b"", 1, packet_id=1))
    harness.conn.ack_publish(1, R.NOT_AUTHORIZED, props(reason_string="no"))
    assert harness.received() == [PubAck(1)]


def test_ack_after_the_connection_closed_is_ignored() -> None:
    """A consumer finishing after the client left: no error, nothing sent."""
    harness = connected()
    harness.send(Publish("t", b"", 1, packet_id=1))
    harness.conn.receive_data(b"")
    harness.conn.ack_publish(1)
    harness.conn.suback(5, [0])
    assert harness.received() == []


@pytest.mark.parametrize("level, reason", [(5, R.PACKET_IDENTIFIER_NOT_FOUND), (4, R.SUCCESS)])
def test_4_3_3_pubrel_for_an_unknown_id_gets_pubcomp(level: int, reason: int) -> None:
    """A PUBREL without exchange (e.g. after a session was lost) is still completed."""
    harness = connected(level)
    harness.send(PubRel(40))
    assert harness.received() == [PubComp(40, reason)]


def test_4_3_3_pubrel_before_pubrec_is_a_protocol_error() -> None:
    """The client cannot release a message we have not PUBREC'd."""
    harness = connected()
    harness.send(Publish("t", b"", 2, packet_id=4))
    events = harness.send(PubRel(4))
    assert isinstance(events[-1], ConnectionClosed)
    assert harness.received() == [Disconnect(R.PROTOCOL_ERROR)]


def test_2_2_1_qos1_reusing_a_qos2_id_still_in_exchange() -> None:
    """5.0 answers PUBACK 0x91 Packet Identifier in use; 3.1.1 closes the connection."""
    harness = connected()
    harness.send(Publish("t", b"", 2, packet_id=4))
    harness.conn.ack_publish(4)
    harness.received()
    assert harness.send(Publish("t", b"", 1, packet_id=4)) == []
    assert harness.received() == [PubAck(4, R.PACKET_IDENTIFIER_IN_USE)]
    harness = connected(4)
    harness.send(Publish("t", b"", 2, packet_id=4))
    harness.conn.ack_publish(4)
    events = harness.send(Publish("t", b"", 1, packet_id=4))
    assert isinstance(events[-1], ConnectionClosed)


# -- §3.3.4 / §4.9 receive maximum, inbound ------------------------------------------------------


def test_3_3_4_receive_maximum_exceeded_disconnects_with_0x93() -> None:
    """[MQTT-3.3.4-9] more unacknowledged QoS > 0 PUBLISHes than our Receive Maximum."""
    harness = connected(receive_maximum=2)
    events = harness.send(*(Publish("t", b"", 1, packet_id=i) for i in (1, 2, 3)))
    assert [type(event) for event in events] == [PublishReceived, PublishReceived, ConnectionClosed]
    assert harness.received() == [Disconnect(R.RECEIVE_MAXIMUM_EXCEEDED)]


def test_4_9_qos2_counts_against_receive_maximum_until_pubcomp() -> None:
    """The quota comes back on PUBCOMP for QoS 2, not on PUBREC."""
    harness = connected(receive_maximum=1)
    harness.send(Publish("t", b"", 2, packet_id=1))
    harness.conn.ack_publish(1)
    assert harness.conn.paused is False  # the upper layer is done; the client is not
    events = harness.send(Publish("t", b"", 1, packet_id=2))
    assert isinstance(events[-1], ConnectionClosed)  # PUBREL not yet received


def test_4_9_quota_comes_back_after_the_ack() -> None:
    """Acknowledged messages free their slot: a long stream within the window is fine."""
    harness = connected(receive_maximum=2)
    for packet_id in range(1, 50):
        assert harness.send(Publish("t", b"", 1, packet_id=packet_id))
        harness.conn.ack_publish(packet_id)
    assert not harness.conn.closed


def test_3_1_1_has_no_receive_maximum_but_asks_the_adapter_to_pause() -> None:
    """3.1.1 cannot refuse a window overrun; `paused` tells the adapter to stop reading."""
    harness = connected(4, receive_maximum=2)
    harness.send(*(Publish("t", b"", 1, packet_id=i) for i in (1, 2, 3)))
    assert harness.conn.paused and not harness.conn.closed
    harness.conn.ack_publish(1)
    assert harness.conn.paused
    harness.conn.ack_publish(2)
    assert not harness.conn.paused


# -- §3.2.2.3 capabilities the client must respect ------------------------------------------------


def test_3_2_2_3_4_qos_above_the_maximum_is_0x9b() -> None:
    """[MQTT-3.2.2-11] a PUBLISH above the advertised Maximum QoS: DISCONNECT 0x9B."""
    harness = connected(maximum_qos=1)
    harness.send(Publish("t", b"", 2, packet_id=1))
    assert harness.received() == [Disconnect(R.QOS_NOT_SUPPORTED)]


def test_3_2_2_3_5_retain_when_not_available_is_0x9a() -> None:
    """[MQTT-3.2.2-14] retained PUBLISH with Retain Available 0: DISCONNECT 0x9A."""
    harness = connected(retain_available=False)
    harness.send(Publish("t", b"", retain=True))
    assert harness.received() == [Disconnect(R.RETAIN_NOT_SUPPORTED)]


def test_3_3_4_subscription_identifier_from_a_client_is_a_protocol_error() -> None:
    """[MQTT-3.3.4-6] a client PUBLISH carries no Subscription Identifier."""
    harness = connected()
    harness.send(Publish("t", b"", properties=props(subscription_identifiers=(1,))))
    assert harness.received() == [Disconnect(R.PROTOCOL_ERROR)]


@pytest.mark.parametrize(
    "option, subscribe, reason",
    [
        ("wildcard_subscription_available", Subscribe(1, (Subscription("a/+"),)),
         R.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED),
        ("shared_subscription_available", Subscribe(1, (Subscription("$share/g/a"),)),
         R.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED),
        ("subscription_identifier_available",
         Subscribe(1, (Subscription("a"),), props(subscription_identifiers=(3,))),
         R.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED),
    ],
)
def test_3_8_subscribe_using_an_unavailable_feature(
    option: str, subscribe: Subscribe, reason: int
) -> None:
    """Features advertised as unavailable end the connection with their reason code."""
    harness = connected(**{option: False})
    harness.send(subscribe)
    assert harness.received() == [Disconnect(reason)]


# -- §3.3.2.3.4 topic aliases, inbound ------------------------------------------------------------


def test_3_3_2_3_4_topic_alias_mapping_is_set_used_and_replaced() -> None:
    """A topic with an alias sets the mapping; an empty topic uses it; a new topic replaces it.
    The upper layer always sees the full topic and no alias."""
    harness = connected(topic_alias_maximum=2)
    events = harness.send(
        Publish("sensors/kitchen", b"1", properties=props(topic_alias=1)),
        Publish("", b"2", properties=props(topic_alias=1)),
        Publish("sensors/hall", b"3", properties=props(topic_alias=1, content_type="t")),
        Publish("", b"4", properties=props(topic_alias=1)),
    )
    assert events == [
        PublishReceived(Publish("sensors/kitchen", b"1")),
        PublishReceived(Publish("sensors/kitchen", b"2")),
        PublishReceived(Publish("sensors/hall", b"3", properties=props(content_type="t"))),
        PublishReceived(Publish("sensors/hall", b"4")),
    ]


def test_3_3_2_3_4_topic_alias_above_the_maximum_is_0x94() -> None:
    """An alias greater than our Topic Alias Maximum is refused with 0x94."""
    harness = connected(topic_alias_maximum=2)
    harness.send(Publish("t", b"", properties=props(topic_alias=3)))
    assert harness.received() == [Disconnect(R.TOPIC_ALIAS_INVALID)]
    harness = connected(topic_alias_maximum=0)
    harness.send(Publish("t", b"", properties=props(topic_alias=1)))
    assert harness.received() == [Disconnect(R.TOPIC_ALIAS_INVALID)]


def test_3_3_2_3_4_unknown_topic_alias_is_a_protocol_error() -> None:
    """An empty topic with an alias that was never set."""
    harness = connected()
    harness.send(Publish("", b"", properties=props(topic_alias=1)))
    assert harness.received() == [Disconnect(R.PROTOCOL_ERROR)]


# -- outbound QoS 1 / QoS 2 ----------------------------------------------------------------------


@pytest.mark.parametrize("level", [4, 5])
def test_4_3_2_outbound_qos1(level: int) -> None:
    """publish(qos=1) sends with a fresh packet id; the PUBACK completes it."""
    harness = connected(level)
    assert harness.conn.publish("t", b"hi", qos=1) is PublishStatus.SENT
    assert harness.received() == [Publish("t", b"hi", 1, packet_id=1)]
    assert harness.send(PubAck(1)) == [PubAckReceived(1, R.SUCCESS)]
    assert harness.conn.session_state().outbound == ()


def test_4_3_3_outbound_qos2() -> None:
    """PUBREC is answered with PUBREL inside the core; PUBCOMP completes the exchange."""
    harness = connected()
    harness.conn.publish("t", b"hi", qos=2)
    assert harness.received() == [Publish("t", b"hi", 2, packet_id=1)]
    assert harness.send(PubRec(1)) == [PubRecReceived(1, R.SUCCESS)]
    assert harness.received() == [PubRel(1)]
    assert harness.send(PubRec(1)) == [PubRecReceived(1, R.SUCCESS)]  # duplicate: PUBREL again
    assert harness.received() == [PubRel(1)]
    assert harness.send(PubComp(1)) == [PubCompReceived(1, R.SUCCESS)]
    assert harness.conn.session_state().outbound == ()


def test_4_3_3_outbound_pubrec_with_a_failure_ends_the_exchange() -> None:
    """A PUBREC >= 0x80 is the end: no PUBREL, the slot is free."""
    harness = connected()
    harness.conn.publish("t", b"", qos=2)
    harness.received()
    assert harness.send(PubRec(1, R.NOT_AUTHORIZED)) == [PubRecReceived(1, R.NOT_AUTHORIZED)]
    assert harness.received() == []
    assert harness.conn.session_state().outbound == ()


def test_4_3_3_pubrec_for_an_unknown_id_gets_pubrel_0x92() -> None:
    """5.0: PUBREL "Packet Identifier not found"; 3.1.1: a plain PUBREL."""
    harness = connected()
    assert harness.send(PubRec(12)) == []
    assert harness.received() == [PubRel(12, R.PACKET_IDENTIFIER_NOT_FOUND)]
    harness = connected(4)
    harness.send(PubRec(12))
    assert harness.received() == [PubRel(12)]


@pytest.mark.parametrize("qos, wrong", [(1, PubRec(1)), (2, PubAck(1)), (2, PubComp(1))])
def test_4_3_acknowledgement_of_the_wrong_kind_is_a_protocol_error(qos: int, wrong: object) -> None:
    """PUBACK for QoS 2, PUBREC for QoS 1, PUBCOMP before PUBREL."""
    harness = connected()
    harness.conn.publish("t", b"", qos=qos)
    harness.received()
    harness.send(wrong)  # type: ignore[arg-type]
    assert harness.received() == [Disconnect(R.PROTOCOL_ERROR)]


def test_stale_acknowledgements_are_ignored() -> None:
    """PUBACK/PUBCOMP for an id with nothing in flight: ignored (no event, no error)."""
    harness = connected()
    assert harness.send(PubAck(5), PubComp(6)) == []
    assert harness.received() == [] and not harness.conn.closed


def test_2_2_1_packet_ids_are_unique_among_messages_in_flight() -> None:
    """Identifiers wrap at 65535 and skip those still in use."""
    state = SessionState(
        outbound=(OutboundMessage(Publish("t", b"", 1, packet_id=65535)),
                  OutboundMessage(Publish("t", b"", 1, packet_id=1))),
        next_packet_id=65535,
    )
    resumed = Harness(4)
    resumed.connect(accept=False, clean_start=False)
    resumed.conn.accept(session_present=True, session=state)
    resumed.received()
    resumed.conn.publish("t", b"", qos=1)
    assert resumed.received() == [Publish("t", b"", 1, packet_id=2)]


def test_3_3_4_qos0_is_sent_without_packet_id_and_not_kept() -> None:
    """QoS 0 needs no identifier and leaves nothing in the session."""
    harness = connected()
    assert harness.conn.publish("t", b"x", retain=True) is PublishStatus.SENT
    assert harness.received() == [Publish("t", b"x", retain=True)]
    assert harness.conn.session_state() == SessionState(next_packet_id=1)


# -- §4.9 the client's receive maximum, queueing, packet size ------------------------------------


def test_4_9_client_receive_maximum_queues_messages_until_acks() -> None:
    """No more QoS > 0 in flight than the client's Receive Maximum; QoS 0 is not held."""
    harness = Harness(5, ServerOptions())
    harness.connect(properties=props(receive_maximum=2))
    statuses = [harness.conn.publish("t", bytes([i]), qos=1) for i in range(4)]
    assert statuses == [PublishStatus.SENT] * 2 + [PublishStatus.QUEUED] * 2
    assert harness.conn.publish("t", b"q0") is PublishStatus.SENT
    assert [p.packet_id for p in harness.received()] == [1, 2, None]  # type: ignore[union-attr]
    harness.send(PubAck(1))
    assert harness.received() == [Publish("t", b"\x02", 1, packet_id=3)]
    harness.send(PubAck(2), PubAck(3))
    assert harness.received() == [Publish("t", b"\x03", 1, packet_id=4)]


def test_4_9_max_queued_messages_drops_beyond_the_limit() -> None:
    """A full queue drops the message (the broker sees DROPPED)."""
    harness = Harness(5, ServerOptions(max_queued_messages=1))
    harness.connect(properties=props(receive_maximum=1))
    statuses = [harness.conn.publish("t", b"", qos=2) for _ in range(3)]
    assert statuses == [PublishStatus.SENT, PublishStatus.QUEUED, PublishStatus.DROPPED]


def test_3_1_2_11_4_publish_larger_than_the_clients_maximum_is_dropped() -> None:
    """[MQTT-3.1.2-25] discard it and behave as if it was sent (no id kept)."""
    harness = Harness()
    harness.connect(properties=props(maximum_packet_size=32))
    assert harness.conn.publish("t", b"x" * 64, qos=1) is PublishStatus.DROPPED
    assert harness.conn.publish("t", b"x" * 8, qos=1) is PublishStatus.SENT
    assert harness.received() == [Publish("t", b"x" * 8, 1, packet_id=1)]


def test_3_1_2_11_4_reason_strings_are_dropped_to_fit_the_clients_maximum() -> None:
    """An ack whose Reason String would exceed the limit is sent without it."""
    harness = Harness()
    harness.connect(properties=props(maximum_packet_size=20))
    harness.send(Publish("t", b"", 1, packet_id=1))
    harness.conn.ack_publish(1, R.NOT_AUTHORIZED, props(reason_string="x" * 40))
    assert harness.received() == [PubAck(1, R.NOT_AUTHORIZED)]


def test_publish_to_a_3_1_1_client_drops_5_0_properties() -> None:
    """A message from a 5.0 publisher reaches a 3.1.1 subscriber without its properties."""
    harness = connected(4)
    message_properties = props(content_type="json", user_properties=(("a", "b"),))
    harness.conn.publish("t", b"", properties=message_properties)
    assert harness.received() == [Publish("t", b"")]


def test_publish_arguments_are_checked() -> None:
    """QoS 3 and a caller-chosen topic alias are API misuse; so is publishing after close."""
    harness = connected()
    with pytest.raises(LocalProtocolError):
        harness.conn.publish("t", b"", qos=3)
    with pytest.raises(LocalProtocolError):
        harness.conn.publish("t", b"", properties=props(topic_alias=1))
    harness.conn.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        harness.conn.publish("t", b"")


def test_3_3_2_3_4_outbound_topic_aliases() -> None:
    """With outbound_topic_aliases, the first message carries topic and alias, later ones
    only the alias; once the client's Topic Alias Maximum is reached, a new topic takes the
    alias of the least recently used one."""
    harness = Harness(5, ServerOptions(outbound_topic_aliases=True))
    harness.connect(properties=props(topic_alias_maximum=1))
    for topic in ("a/long/topic", "a/long/topic", "other"):
        harness.conn.publish(topic, b"")
    assert harness.received() == [
        Publish("a/long/topic", b"", properties=props(topic_alias=1)),
        Publish("", b"", properties=props(topic_alias=1)),
        Publish("other", b"", properties=props(topic_alias=1)),
    ]
    plain = Harness(5)  # off by default
    plain.connect(properties=props(topic_alias_maximum=5))
    plain.conn.publish("t", b"")
    assert plain.received() == [Publish("t", b"")]


# -- §4.4 session resume ---------------------------------------------------------------------------


def test_4_4_session_resume_resends_with_dup_and_pubrel() -> None:
    """Unacknowledged PUBLISHes are re-sent with DUP and their ids, released QoS 2 with
    PUBREL, then the queued messages, as the new connection's window allows."""
    first = Harness()
    first.connect(clean_start=False, properties=props(receive_maximum=3))
    for topic, qos in (("a", 1), ("b", 2), ("c", 2), ("d", 1)):
        first.conn.publish(topic, b"", qos=qos)
    first.received()
    first.send(PubRec(2))  # "b" is released, awaiting PUBCOMP
    first.conn.receive_data(b"")
    state = first.conn.session_state()
    assert [(m.publish.topic, m.released) for m in state.outbound] == [
        ("a", False), ("b", True), ("c", False),
    ]
    assert [p.topic for p in state.queued] == ["d"] and state.next_packet_id == 4

    second = Harness()
    second.connect(accept=False, clean_start=False, properties=props(receive_maximum=2))
    second.conn.accept(session_present=True, session=state)
    connack, *resent = second.received()
    assert resent == [PubRel(2), Publish("a", b"", 1, dup=True, packet_id=1)]
    second.send(PubAck(1))  # frees a slot for "c"
    assert second.received() == [Publish("c", b"", 2, dup=True, packet_id=3)]
    second.send(PubComp(2))
    assert second.received() == [Publish("d", b"", 1, packet_id=4)]


def test_4_4_acks_for_messages_not_yet_resent_complete_them() -> None:
    """A PUBREC for a resumed message still waiting for its re-send moves it on to PUBREL."""
    state = SessionState(
        outbound=(OutboundMessage(Publish("a", b"", 1, packet_id=1)),
                  OutboundMessage(Publish("b", b"", 2, packet_id=2))),
        next_packet_id=3,
    )
    harness = Harness()
    harness.connect(accept=False, clean_start=False, properties=props(receive_maximum=1))
    harness.conn.accept(session_present=True, session=state)
    harness.received()
    assert harness.send(PubRec(2)) == [PubRecReceived(2, R.SUCCESS)]
    assert harness.received() == [PubRel(2)]
    harness.send(PubAck(1), PubComp(2))
    assert harness.conn.session_state().outbound == ()


def test_4_4_inbound_qos2_state_survives_a_resume() -> None:
    """A QoS 2 message PUBREC'd before the connection dropped is not delivered again."""
    first = connected()
    first.send(Publish("t", b"x", 2, packet_id=5))
    first.conn.ack_publish(5)
    first.conn.receive_data(b"")
    state = first.conn.session_state()
    assert state.inbound_qos2 == frozenset({5})
    second = Harness()
    second.connect(accept=False, clean_start=False)
    second.conn.accept(session_present=True, session=state)
    second.received()
    assert second.send(Publish("t", b"x", 2, dup=True, packet_id=5)) == []
    assert second.received() == [PubRec(5)]
    second.send(PubRel(5))
    assert second.received() == [PubComp(5)]


# -- §3.8-3.11 SUBSCRIBE / UNSUBSCRIBE -------------------------------------------------------------


def test_3_9_suback_carries_one_reason_per_filter() -> None:
    """The upper layer grants or refuses each filter; the count must match."""
    harness = connected()
    subscribe = Subscribe(3, (Subscription("a", 2), Subscription("b", 1), Subscription("c")))
    assert harness.send(subscribe) == [SubscribeReceived(subscribe)]
    with pytest.raises(LocalProtocolError):
        harness.conn.suback(3, [R.GRANTED_QOS_1])
    harness.conn.suback(3, [R.GRANTED_QOS_1, R.NOT_AUTHORIZED, R.GRANTED_QOS_0])
    assert harness.received() == [SubAck(3, (1, 0x87, 0))]


def test_3_9_3_failures_become_0x80_for_3_1_1() -> None:
    """3.1.1 knows only 0x80 Failure."""
    harness = connected(4)
    harness.send(Subscribe(3, (Subscription("a"), Subscription("b"))))
    harness.conn.suback(3, [R.NOT_AUTHORIZED, R.GRANTED_QOS_2])
    assert harness.received() == [SubAck(3, (0x80, 2))]


@pytest.mark.parametrize("level, reply", [(5, UnsubAck(8, (0, 0))), (4, UnsubAck(8))])
def test_3_11_unsuback_defaults_to_success(level: int, reply: UnsubAck) -> None:
    """5.0 UNSUBACK reasons default to Success per filter; 3.1.1 has none."""
    harness = connected(level)
    unsubscribe = Unsubscribe(8, ("a", "b"))
    assert harness.send(unsubscribe) == [UnsubscribeReceived(unsubscribe)]
    harness.conn.unsuback(8)
    assert harness.received() == [reply]


def test_2_2_1_subscribe_reusing_an_id_in_use_is_a_protocol_error() -> None:
    """A SUBSCRIBE with the id of a PUBLISH still in its exchange."""
    harness = connected()
    harness.send(Publish("t", b"", 1, packet_id=1))
    harness.send(Subscribe(1, (Subscription("a"),)))
    assert harness.received() == [Disconnect(R.PROTOCOL_ERROR)]


@pytest.mark.parametrize("level, reply", [(5, [Disconnect(R.PACKET_TOO_LARGE)]), (4, [])])
def test_3_1_2_11_4_oversized_packet_from_the_client_is_refused(
    level: int, reply: list[object]
) -> None:
    """A packet above our Maximum Packet Size: DISCONNECT 0x95 (5.0) or a plain close, as
    soon as its fixed header arrives."""
    harness = connected(level, max_packet_size=64)
    header = encode(Publish("t", b"x" * 100), level)[:3]
    harness.conn.receive_data(header)
    assert harness.received() == reply
    (event,) = harness.conn.events_received()
    assert isinstance(event, ConnectionClosed) and event.reason_code == R.PACKET_TOO_LARGE
