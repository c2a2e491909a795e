"""The outbound flow: topic aliases (§3.3.2.3.4, assigned per connection, least recently used
replaced) and the two-byte PUBACK fast path."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from gateway.protocols.mqtt import Connect, PubAck, PubAckReceived, PubComp, PubRel, Publish, PublishStatus, PubRec, ServerOptions
from gateway.protocols.mqtt.broker.session import Message
from tests.unit.mqtt.helpers import Harness, props

ALIASES = ServerOptions(outbound_topic_aliases=True)


def connected(alias_maximum: int | None, options: ServerOptions = ALIASES, level: int = 5) -> Harness:
    harness = Harness(level, options)
    fields = {"properties": props(topic_alias_maximum=alias_maximum)} if alias_maximum is not None else {}
    harness.connect(**fields)
    return harness


class AliasingClient:
    """What a client does with the aliases it receives: the topic of every PUBLISH."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.mapping: dict[int, str] = {}

    def topic_of(self, packet: Publish) -> str:
        alias = packet.properties.topic_alias
        if alias is None:
            assert packet.topic
            return packet.topic
        assert 1 <= alias <= self.maximum  # [MQTT-3.3.2-9]: never above the client's maximum
        if packet.topic:
            self.mapping[alias] = packet.topic
            return packet.topic
        return self.mapping[alias]  # KeyError: an alias the client was never told about


def test_repeated_topic_goes_as_alias_only() -> None:
    harness = connected(5)
    for payload in (b"1", b"2"):
        harness.conn.publish("sensors/kitchen/temperature", payload, qos=1)
    first, second = harness.received()
    assert (first.topic, first.properties.topic_alias) == ("sensors/kitchen/temperature", 1)
    assert (second.topic, second.properties.topic_alias) == ("", 1)


def test_least_recently_used_alias_is_replaced() -> None:
    harness = connected(2)
    conn = harness.conn
    for topic in ("a/1", "a/2", "a/1", "a/3", "a/1", "a/2"):
        conn.publish(topic, b"", qos=0)
    sent = [(p.topic, p.properties.topic_alias) for p in harness.received()]
    # Uses: a/1, a/2, a/1 (hit), a/3 (a/2 is the least recently used: its alias 2 goes to a/3),
    # a/1 (hit), a/2 (now a/3 is the least recently used: alias 2 again).
    assert sent == [("a/1", 1), ("a/2", 2), ("", 1), ("a/3", 2), ("", 1), ("a/2", 2)]


def test_no_aliases_without_the_clients_maximum_or_when_off() -> None:
    for harness in (connected(None), connected(0), connected(5, ServerOptions()), connected(None, level=4)):
        harness.conn.publish("x/y", b"", qos=0)
        harness.conn.publish("x/y", b"", qos=0)
        packets = harness.received()
        assert [p.topic for p in packets] == ["x/y", "x/y"]
        assert all(p.properties.topic_alias is None for p in packets)


def test_our_cap_applies() -> None:
    harness = connected(100, ServerOptions(outbound_topic_aliases=True, outbound_topic_alias_maximum=1))
    for topic in ("a", "b", "b"):
        harness.conn.publish(topic, b"", qos=0)
    assert [(p.topic, p.properties.topic_alias) for p in harness.received()] == [("a", 1), ("b", 1), ("", 1)]


def test_shared_wire_bytes_are_not_used_with_aliases() -> None:
    harness = connected(3)
    message = Message("fan/out", b"p", 1)
    for _ in range(2):
        assert harness.conn.publish("fan/out", b"p", qos=1, wire=message.parts(5, 1, False)) is PublishStatus.SENT
    assert not harness.conn.send_qos0_bytes(message.wire(5, False))  # the caller falls back to publish()
    assert [(p.topic, p.properties.topic_alias) for p in harness.received()] == [("fan/out", 1), ("", 1)]


def test_a_packet_too_large_for_the_client_does_not_take_an_alias() -> None:
    harness = Harness(5, ALIASES)
    harness.connect(properties=props(topic_alias_maximum=1, maximum_packet_size=64))
    conn = harness.conn
    conn.publish("small", b"", qos=0)
    conn.publish("big", b"x" * 100, qos=0)  # dropped [MQTT-3.1.2-25]: the mapping stays
    conn.publish("small", b"", qos=0)
    assert [(p.topic, p.properties.topic_alias) for p in harness.received()] == [("small", 1), ("", 1)]


def test_resent_messages_carry_their_full_topic_on_a_new_connection() -> None:
    harness = connected(4)
    harness.conn.publish("a/b", b"1", qos=1)
    harness.conn.publish("a/b", b"2", qos=1)
    harness.received()
    state = harness.conn.session_state()
    again = Harness(5, ALIASES)
    again.send(Connect(
        "c", 5, False, properties=props(topic_alias_maximum=4)))
    again.conn.accept(session_present=True, session=state)
    client = AliasingClient(4)
    topics = [client.topic_of(p) for p in again.received()[1:]]
    assert topics == ["a/b", "a/b"]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(1, 8),
    st.lists(st.tuples(st.integers(0, 9), st.integers(0, 2)), min_size=1, max_size=60),
)
def test_a_client_following_the_aliases_always_gets_the_right_topic(
    client_maximum: int, our_maximum: int, sends: list[tuple[int, int]]
) -> None:
    options = ServerOptions(outbound_topic_aliases=True, outbound_topic_alias_maximum=our_maximum)
    harness = connected(client_maximum, options)
    client = AliasingClient(min(client_maximum, our_maximum))
    expected: list[str] = []
    got: list[str] = []
    for index, qos in sends:
        topic = f"topic/{index}/" + "x" * index
        harness.conn.publish(topic, b"", qos=qos)
        expected.append(topic)
        for packet in harness.received():
            if isinstance(packet, PubRel):
                harness.send(PubComp(packet.packet_id))
                continue
            assert isinstance(packet, Publish)
            got.append(client.topic_of(packet))
            if packet.qos == 1:
                harness.send(PubAck(packet.packet_id))
            elif packet.qos == 2:
                harness.send(PubRec(packet.packet_id))
    assert got == expected


# -- the two-byte PUBACK fast path --------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 12),
    st.lists(st.integers(0, 14), max_size=20),
    st.lists(st.integers(1, 7), min_size=1, max_size=5),
    st.sampled_from([4, 5]),
)
def test_pipelined_pubacks_complete_exactly_their_messages(
    count: int, acked: list[int], chunks: list[int], level: int
) -> None:
    """PUBACKs split anywhere across reads, for known, unknown, repeated and zero identifiers:
    the known ones complete their message once, the others change nothing (id 0 is a protocol
    error, as the full decoder says)."""
    harness = Harness(level, ServerOptions(max_outbound_inflight=5))
    harness.connect()
    for n in range(count):
        harness.conn.publish(f"t/{n}", b"", qos=1)
    harness.received()
    data = b"".join(b"\x40\x02" + pid.to_bytes(2, "big") for pid in acked)
    events = []
    pos = 0
    step = 0
    while pos < len(data):
        size = chunks[step % len(chunks)]
        harness.conn.receive_data(data[pos : pos + size])
        events += harness.conn.events_received()
        pos += size
        step += 1
    expected: list[int] = []
    sent = set(range(1, min(count, 5) + 1))
    following = 6
    for pid in acked:
        if pid == 0:
            break
        if pid in sent:
            sent.discard(pid)
            expected.append(pid)
            if following <= count:  # the window opened: the next queued message goes out
                sent.add(following)
                following += 1
    assert [e.packet_id for e in events if isinstance(e, PubAckReceived)] == expected
    if 0 in acked:
        assert harness.conn.closed
    else:
        state = harness.conn.session_state()
        assert len(state.outbound) + len(state.queued) == count - len(expected)
        assert not {m.publish.packet_id for m in state.outbound} & set(expected)
