"""MqttClientConnection, the connector's wire core: the client side of MQTT 3.1.1 / 5.0.

Example tests are named after the section of MQTT 5.0 whose rule they check; the properties pair
the client core with the project's server core (the far side of a real connection) and with
arbitrary bytes."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given, strategies as st

from gateway.protocols.errors import LocalProtocolError, RemoteProtocolError
from gateway.protocols.mqtt import (
    ConnAck, Connect, ConnectionClosed, Disconnect, DisconnectReceived, MqttServerConnection, PingReq, PingResp,
    Properties, PubAck, PubAckReceived, PubComp, PubCompReceived, PubRec, PubRel, Publish, PublishReceived,
    PublishStatus, ReasonCode, ServerOptions, SessionState, SubAck, Subscribe, Subscription, UnsubAck,
    decode, encode,
)
from gateway.protocols.mqtt.events import ConnectReceived, OutboundMessage
from gateway.protocols.mqttconnector.core import (
    ClientOptions, ClientState, ConnAckReceived, MqttClientConnection, SubAckReceived, UnsubAckReceived,
)
from tests.strategies.mqtt import packets, publishes

R = ReasonCode


class Broker:
    """A fake broker: feeds packets to a client core and decodes what it writes."""

    def __init__(self, level: int = 5, options: ClientOptions | None = None, *, session: SessionState | None = None,
                 keep_alive: int = 60, properties: Properties | None = None) -> None:
        self.level = level
        self.client = MqttClientConnection(options)
        self.now = 0.0
        packet = Connect("gw", level, clean_start=False, keep_alive=keep_alive, properties=properties or Properties())
        self.client.connect(packet, session)
        self.client.next_deadline(self.now)

    def send(self, *packets: Any) -> list[Any]:
        data = b"".join(p if isinstance(p, bytes) else encode(p, self.level) for p in packets)
        self.client.receive_data(data)
        self.client.next_deadline(self.now)
        return self.client.events_received()

    def received(self) -> list[Any]:
        data = memoryview(self.client.data_to_send())
        self.client.next_deadline(self.now)
        found = []
        while data:
            packet, used = decode(data, protocol_level=self.level)
            assert packet is not None, "incomplete output"
            found.append(packet)
            data = data[used:]
        return found

    def accept(self, **fields: Any) -> list[Any]:
        (connect,) = self.received()
        assert isinstance(connect, Connect)
        self.connect = connect
        return self.send(ConnAck(**fields))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.client.handle_timeout(self.now)


def connected(level: int = 5, options: ClientOptions | None = None, **connack: Any) -> Broker:
    broker = Broker(level, options)
    events = broker.accept(**connack)
    assert [type(e) for e in events] == [ConnAckReceived]
    return broker


# -- CONNECT / CONNACK (§3.1, §3.2) -----------------------------------------------------------------

def test_3_1_2_11_connect_advertises_our_limits() -> None:
    broker = Broker(5, ClientOptions(receive_maximum=10, max_packet_size=4096, topic_alias_maximum=3),
                    properties=Properties(session_expiry_interval=600))
    (connect,) = broker.received()
    assert connect.properties == Properties(session_expiry_interval=600, receive_maximum=10,
                                            maximum_packet_size=4096, topic_alias_maximum=3)
    assert connect.clean_start is False
    with pytest.raises(LocalProtocolError, match="receive_maximum is set by the connection"):
        MqttClientConnection().connect(Connect("x", 5, properties=Properties(receive_maximum=5)))
    with pytest.raises(LocalProtocolError, match="connect\\(\\) in state AWAITING_CONNACK"):
        broker.client.connect(Connect("x", 5))


@pytest.mark.parametrize("level, code", [(5, R.BAD_USER_NAME_OR_PASSWORD), (4, 4)])
def test_3_2_2_2_a_refusing_connack_ends_the_connection(level: int, code: int) -> None:
    broker = Broker(level)
    broker.received()
    events = broker.send(ConnAck(False, code))
    assert [type(e) for e in events] == [ConnAckReceived, ConnectionClosed]
    assert events[1].reason_code == code and events[1].error is None
    assert broker.client.closed


def test_3_2_2_2_a_3_1_1_broker_answering_a_5_0_connect_is_a_refusal() -> None:
    broker = Broker(5)
    broker.received()
    events = broker.send(b"\x20\x02\x00\x01")  # 3.1.1: unacceptable protocol version
    assert events[0] == ConnAckReceived(ConnAck(False, R.UNSUPPORTED_PROTOCOL_VERSION))
    assert events[1].reason_code == R.UNSUPPORTED_PROTOCOL_VERSION


def test_3_2_2_3_connack_properties_set_the_limits() -> None:
    broker = Broker(5)
    broker.accept(properties=Properties(receive_maximum=2, maximum_qos=1, retain_available=False,
                                        server_keep_alive=5, maximum_packet_size=64))
    client = broker.client
    assert client.keep_alive == 5 and client.maximum_qos == 1
    # Maximum QoS 1: a QoS 2 message goes as QoS 1 ([MQTT-3.2.2-11]); Receive Maximum 2: the
    # third waits (§4.9); Maximum Packet Size: a larger one is dropped.
    statuses = [client.publish("t", b"x", qos=2) for _ in range(3)]
    assert statuses == [PublishStatus.SENT, PublishStatus.SENT, PublishStatus.QUEUED]
    assert [(p.qos, p.packet_id) for p in broker.received()] == [(1, 1), (1, 2)]
    assert client.publish("t", b"y" * 100, qos=0) is PublishStatus.DROPPED
    with pytest.raises(LocalProtocolError, match="Retain Available"):
        client.publish("t", b"", retain=True)
    assert client.outbound_pending == 3
    events = broker.send(PubAck(1))
    assert events == [PubAckReceived(1, R.SUCCESS)]
    assert [p.packet_id for p in broker.received()] == [3]
    assert client.outbound_pending == 2


def test_3_1_4_publish_before_the_connack_is_refused_locally() -> None:
    broker = Broker(5)
    with pytest.raises(LocalProtocolError, match="publish\\(\\) in state AWAITING_CONNACK"):
        broker.client.publish("t", b"x")
    with pytest.raises(LocalProtocolError, match="subscribe\\(\\) in state"):
        broker.client.subscribe([Subscription("t", 1)])


# -- what the broker must not do (§4.13) -----------------------------------------------------------

@pytest.mark.parametrize("packet, message", [
    (Publish("t", b"x"), "PUBLISH before the CONNACK"),
    (Subscribe(1, (Subscription("t"),)), "Subscribe sent to a client"),
    (PingReq(), "PingReq sent to a client"),
])
def test_4_13_protocol_errors_before_the_connack(packet: Any, message: str) -> None:
    broker = Broker(5)
    broker.received()
    (closed,) = broker.send(packet)
    assert isinstance(closed, ConnectionClosed) and closed.error is not None
    assert message in closed.error.message and closed.reason_code == R.PROTOCOL_ERROR
    assert broker.received() == []  # no DISCONNECT before the CONNACK


@pytest.mark.parametrize("level", [4, 5])
def test_4_13_1_a_broker_error_closes_with_a_client_reason(level: int) -> None:
    broker = connected(level)
    events = broker.send(ConnAck())
    assert isinstance(events[-1], ConnectionClosed) and "second CONNACK" in events[-1].error.message
    assert broker.received() == ([Disconnect(R.PROTOCOL_ERROR)] if level == 5 else [])
    broker = connected(5)
    events = broker.send(b"\x30\x05\x00\x01+ab")  # a wildcard in a topic name: 0x90 a client may send
    assert events[-1].reason_code == R.TOPIC_NAME_INVALID
    assert broker.received() == [Disconnect(R.TOPIC_NAME_INVALID)]
    broker = connected(5)
    events = broker.send(b"\x00\x00")  # packet type 0 is reserved: Malformed Packet
    assert events[-1].reason_code == R.MALFORMED_PACKET
    assert broker.received() == [Disconnect(R.MALFORMED_PACKET)]


def test_3_14_a_broker_disconnect_ends_the_connection() -> None:
    broker = connected(5)
    events = broker.send(Disconnect(R.SESSION_TAKEN_OVER))
    assert events == [DisconnectReceived(R.SESSION_TAKEN_OVER), ConnectionClosed(R.SESSION_TAKEN_OVER)]


def test_3_3_4_one_beyond_our_receive_maximum_is_tolerated_and_reading_pauses() -> None:
    broker = connected(5, ClientOptions(receive_maximum=2))
    events = broker.send(*[Publish("t", b"%d" % n, 1, packet_id=n) for n in (1, 2, 3)])
    assert [type(e) for e in events] == [PublishReceived] * 3
    assert broker.client.paused
    broker.client.ack_publish(1)
    broker.client.ack_publish(2)
    assert not broker.client.paused
    assert broker.received() == [PubAck(1), PubAck(2)]


# -- QoS flows (§4.3) --------------------------------------------------------------------------------

@pytest.mark.parametrize("level", [4, 5])
def test_4_3_acknowledged_only_after_handling(level: int) -> None:
    broker = connected(level)
    one = Publish("a", b"1", 1, packet_id=5)
    two = Publish("b", b"2", 2, packet_id=6)
    assert broker.send(one, two) == [PublishReceived(one), PublishReceived(two)]
    assert broker.received() == []
    broker.client.ack_publish(6)
    broker.client.ack_publish(5)
    assert broker.received() == [PubRec(6), PubAck(5)]
    assert broker.send(Publish("b", b"2", 2, dup=True, packet_id=6)) == []  # §4.3.3: not delivered twice
    assert broker.received() == [PubRec(6)]
    assert broker.send(PubRel(6)) == []
    assert broker.received() == [PubComp(6)]


def test_4_3_3_our_qos2_exchange() -> None:
    broker = connected(5)
    broker.client.publish("t", b"x", qos=2)
    (publish,) = broker.received()
    assert broker.send(PubRec(publish.packet_id))[0].packet_id == publish.packet_id
    assert broker.received() == [PubRel(publish.packet_id)]
    assert broker.client.outbound_pending == 1
    assert broker.send(PubComp(publish.packet_id)) == [PubCompReceived(publish.packet_id, R.SUCCESS)]
    assert broker.client.outbound_pending == 0


def test_2_2_1_subscribe_identifiers_never_collide_with_publishes() -> None:
    broker = connected(5)
    sub = broker.client.subscribe([Subscription("a/#", 1)])
    for _ in range(5):
        broker.client.publish("t", b"", qos=1)
    packets_out = broker.received()
    ids = [p.packet_id for p in packets_out]
    assert len(set(ids)) == 6 and ids[0] == sub
    assert broker.send(SubAck(sub, (1,))) == [SubAckReceived(sub, (R.GRANTED_QOS_1,))]
    unsub = broker.client.unsubscribe(["a/#"])
    assert broker.send(UnsubAck(unsub, (0,))) == [UnsubAckReceived(unsub, (R.SUCCESS,))]
    closed = broker.send(SubAck(sub, (1,)))[-1]  # answered already
    assert isinstance(closed, ConnectionClosed) and "awaits none" in closed.error.message


def test_3_8_subscriptions_given_to_connect_go_first() -> None:
    session = SessionState(queued=(Publish("own/1", b"x", 1),))
    client = MqttClientConnection()
    client.connect(Connect("gw", 5, clean_start=False), session, (Subscription("own/#", 1),))
    client.data_to_send()
    client.receive_data(encode(ConnAck(), 5))
    data = memoryview(client.data_to_send())
    first, used = decode(data, protocol_level=5)
    second, _ = decode(data[used:], protocol_level=5)
    assert isinstance(first, Subscribe) and first.packet_id == client.subscribe_packet_id
    assert isinstance(second, Publish) and second.topic == "own/1"


# -- sessions (§4.4) ---------------------------------------------------------------------------------

def _session() -> SessionState:
    return SessionState(
        outbound=(OutboundMessage(Publish("a", b"1", 1, packet_id=7)),
                  OutboundMessage(Publish("b", b"2", 2, packet_id=8), released=True),
                  OutboundMessage(Publish("c", b"3", 2, packet_id=9))),
        queued=(Publish("d", b"4", 1),), inbound_qos2=frozenset({3}), next_packet_id=10,
    )


def test_4_4_a_kept_session_is_resumed_with_the_same_identifiers() -> None:
    broker = Broker(5, session=_session())
    broker.received()
    broker.send(ConnAck(True))
    sent = broker.received()
    assert sent == [PubRel(8), Publish("a", b"1", 1, dup=True, packet_id=7), Publish("c", b"3", 2, dup=True, packet_id=9),
                    Publish("d", b"4", 1, packet_id=10)]
    assert broker.client.outbound_pending == 4
    assert broker.send(Publish("q", b"", 2, dup=True, packet_id=3)) == []  # PUBREC'd before: not again
    assert broker.received() == [PubRec(3)]


def test_3_2_2_5_a_new_session_gets_the_unacknowledged_messages_as_new_ones() -> None:
    broker = Broker(5, session=_session())
    broker.received()
    broker.send(ConnAck(False))
    sent = broker.received()
    assert [(p.topic, p.dup, p.packet_id) for p in sent] == [("a", False, 10), ("c", False, 11), ("d", False, 12)]
    assert broker.client.outbound_pending == 3
    assert [type(e) for e in broker.send(Publish("q", b"", 2, packet_id=3))] == [PublishReceived]


def test_a_session_before_the_connack_is_kept_whole() -> None:
    broker = Broker(5, session=_session())
    broker.client.receive_data(b"")
    assert broker.client.session_state() == _session()


# -- keep-alive (§3.1.2.10) and the CONNACK timeout -------------------------------------------------

def test_3_1_2_10_pingreq_when_idle_and_close_when_the_broker_is_gone() -> None:
    broker = Broker(5, keep_alive=10)
    broker.received()
    broker.send(ConnAck())
    assert broker.client.next_deadline(broker.now) == 10
    broker.advance(10)
    assert broker.received() == [PingReq()]
    broker.advance(5)
    broker.send(PingResp())
    broker.advance(5)
    assert broker.received() == [PingReq()]  # 10s after the last one
    broker.advance(9.5)
    assert not broker.client.closed
    broker.advance(0.5)  # nothing came back for a keep-alive after the PINGREQ
    (closed,) = broker.client.events_received()
    assert isinstance(closed, ConnectionClosed) and closed.reason_code == R.KEEP_ALIVE_TIMEOUT
    assert broker.received() == []


def test_3_1_2_10_no_timeout_while_we_do_not_read() -> None:
    broker = connected(5, ClientOptions(receive_maximum=1))
    broker.send(Publish("t", b"", 1, packet_id=1))
    assert broker.client.paused
    for _ in range(5):
        broker.advance(60)
    assert not broker.client.closed  # the slow side is ours
    broker.client.ack_publish(1)
    broker.client.next_deadline(broker.now)
    assert not broker.client.closed


def test_connack_timeout() -> None:
    broker = Broker(5, ClientOptions(connack_timeout=5))
    broker.advance(4.9)
    assert not broker.client.closed
    broker.advance(0.1)
    (closed,) = broker.client.events_received()
    assert closed.error is not None and "no CONNACK within 5s" in closed.error.message


def test_3_14_our_disconnect() -> None:
    broker = connected(5)
    with pytest.raises(LocalProtocolError, match="not a client DISCONNECT reason"):
        broker.client.disconnect(R.SERVER_SHUTTING_DOWN)
    broker.client.disconnect(R.UNSPECIFIED_ERROR)
    assert broker.received() == [Disconnect(R.UNSPECIFIED_ERROR)]
    assert broker.client.state is ClientState.CLOSED
    broker = connected(4)
    broker.client.disconnect()
    assert broker.received() == [Disconnect()]


# -- properties ----------------------------------------------------------------------------------------

def pump(client: MqttClientConnection, server: MqttServerConnection, cuts: list[int]) -> list[Any]:
    """Move bytes both ways until both are quiet, each write split at ``cuts``; server events."""
    events: list[Any] = []
    for _ in range(50):
        moved = False
        data = client.data_to_send()
        if data:
            moved = True
            for chunk in _split(data, cuts):
                server.receive_data(chunk)
        events += server.events_received()
        data = server.data_to_send()
        if data:
            moved = True
            for chunk in _split(data, cuts):
                client.receive_data(chunk)
        if not moved:
            return events
    raise AssertionError("no quiet")


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % len(data) for c in cuts if c % len(data)})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


@given(level=st.sampled_from([4, 5]), qos=st.lists(st.sampled_from([0, 1, 2]), max_size=30),
       inbound=st.lists(st.sampled_from([1, 2]), max_size=30), cuts=st.lists(st.integers(0, 400), max_size=6),
       window=st.integers(1, 5))
def test_paired_with_the_server_core_every_message_arrives_once(level: int, qos: list[int], inbound: list[int],
                                                              cuts: list[int], window: int) -> None:
    """A client core and the server core over a lossless pipe cut anywhere: each side's messages
    arrive once (QoS 1/2 in order), acknowledged only when handled, whatever the windows."""
    client = MqttClientConnection(ClientOptions(receive_maximum=window))
    server = MqttServerConnection(ServerOptions(receive_maximum=window, max_queued_messages=None))
    client.connect(Connect("gw", level, clean_start=True, keep_alive=0))
    (connect,) = pump(client, server, cuts)
    assert isinstance(connect, ConnectReceived)
    server.accept()
    pump(client, server, cuts)
    assert [type(e) for e in client.events_received()] == [ConnAckReceived]
    for n, q in enumerate(qos):
        client.publish(f"up/{n}", b"%d" % n, qos=q)
    for n, q in enumerate(inbound):
        server.publish(f"down/{n}", b"%d" % n, qos=q)
    got_up: list[str] = []
    got_down: list[str] = []
    for _ in range(200):
        for event in pump(client, server, cuts):
            if isinstance(event, PublishReceived):
                got_up.append(event.packet.topic)
                if event.packet.qos:
                    server.ack_publish(event.packet.packet_id)
        for event in client.events_received():
            if isinstance(event, PublishReceived):
                got_down.append(event.packet.topic)
                if event.packet.qos:
                    client.ack_publish(event.packet.packet_id)
        if len(got_up) == len(qos) and len(got_down) == len(inbound):
            break
    pump(client, server, cuts)
    # Once each; QoS 1/2 in order (QoS 0 is not held by the Receive Maximum and may pass them).
    assert sorted(got_up) == sorted(f"up/{n}" for n in range(len(qos)))
    assert [t for t in got_up if qos[int(t[3:])]] == [f"up/{n}" for n, q in enumerate(qos) if q]
    assert got_down == [f"down/{n}" for n in range(len(inbound))]
    assert client.outbound_pending == 0
    assert not client.closed and not server.closed


@given(level=st.sampled_from([4, 5]), qos=st.lists(st.sampled_from([1, 2]), min_size=1, max_size=20),
       drop_after=st.integers(0, 40), handled=st.lists(st.booleans(), max_size=40),
       cuts=st.lists(st.integers(0, 200), max_size=4))
def test_nothing_is_lost_across_a_dropped_connection(level: int, qos: list[int], drop_after: int,
                                                     handled: list[bool], cuts: list[int]) -> None:
    """The connection drops at any point (bytes in the pipe are lost) while the broker's
    application handles some messages and fails on others; the next connection resumes both
    sessions (ours from ``session_state()``, the broker's from the server core's): every message
    we published is handled, QoS 2 exactly once, and a QoS 1 message handled twice was re-sent
    (DUP)."""
    client = MqttClientConnection(ClientOptions(receive_maximum=3))
    server = MqttServerConnection(ServerOptions(receive_maximum=3, max_queued_messages=None))
    client.connect(Connect("gw", level, clean_start=False, keep_alive=0))
    pump(client, server, cuts)
    server.accept()
    pump(client, server, cuts)
    client.events_received()
    for n, q in enumerate(qos):
        client.publish(f"m/{n}", b"", qos=q)
    delivered: list[Publish] = []
    steps = 0
    flags = iter(handled)
    while steps < drop_after:  # one chunk at a time, the application acknowledging or not
        steps += 1
        data = client.data_to_send()
        if data:
            server.receive_data(data[: max(1, len(data) // 2)])
            rest = data[max(1, len(data) // 2):]
            if rest:
                server.receive_data(rest)
        for event in server.events_received():
            if isinstance(event, PublishReceived) and next(flags, True):  # else the application failed
                delivered.append(event.packet)
                server.ack_publish(event.packet.packet_id)
        data = server.data_to_send()
        if data and steps % 3:
            client.receive_data(data)  # else: lost in the pipe
    client.receive_data(b"")
    server.receive_data(b"")
    ours, theirs = client.session_state(), server.session_state()
    client = MqttClientConnection(ClientOptions(receive_maximum=3))
    server = MqttServerConnection(ServerOptions(receive_maximum=3, max_queued_messages=None))
    client.connect(Connect("gw", level, clean_start=False, keep_alive=0), ours)
    pump(client, server, cuts)
    server.accept(session_present=True, session=theirs)
    for _ in range(100):
        for event in pump(client, server, cuts):
            if isinstance(event, PublishReceived):
                delivered.append(event.packet)
                server.ack_publish(event.packet.packet_id)
        if client.outbound_pending == 0:
            break
    pump(client, server, cuts)
    counts = Counter(p.topic for p in delivered)
    assert set(counts) == {f"m/{n}" for n in range(len(qos))}
    for n, q in enumerate(qos):
        copies = [p for p in delivered if p.topic == f"m/{n}"]
        if q == 2:
            assert len(copies) == 1
        else:
            assert all(p.dup for p in copies[1:])
    assert client.outbound_pending == 0


@given(level=st.sampled_from([4, 5]), stream=st.lists(publishes(5), max_size=6), cuts=st.lists(st.integers(0, 300), max_size=5))
def test_any_chunking_of_the_broker_stream_gives_the_same_events(level: int, stream: list[Publish], cuts: list[int]) -> None:
    stream = [p for p in stream if level == 5 or (p.properties == Properties() and p.topic)]
    stream = [p for p in stream if p.properties.topic_alias is None and not p.topic == ""]
    data = encode(ConnAck(), level) + b"".join(encode(p, level) for p in stream)

    def events(chunks: list[bytes]) -> list[Any]:
        client = MqttClientConnection(ClientOptions(receive_maximum=65535))
        client.connect(Connect("gw", level))
        for chunk in chunks:
            client.receive_data(chunk)
        return [(e.reason_code, e.error.message if e.error else None) if isinstance(e, ConnectionClosed) else e
                for e in client.events_received()]

    assert events(_split(data, cuts)) == events([data])


@given(level=st.sampled_from([4, 5]), data=st.binary(max_size=200), cuts=st.lists(st.integers(0, 200), max_size=4))
def test_arbitrary_bytes_give_events_or_the_one_documented_close(level: int, data: bytes, cuts: list[int]) -> None:
    client = MqttClientConnection()
    client.connect(Connect("gw", level))
    for chunk in _split(data, cuts) if data else []:
        client.receive_data(chunk)  # never raises
        client.data_to_send()
    for event in client.events_received():
        if isinstance(event, ConnectionClosed):
            assert event.error is None or isinstance(event.error, RemoteProtocolError)


@given(level=st.sampled_from([4, 5]), packet=packets(5))
def test_any_valid_packet_after_the_connack_is_an_event_or_a_protocol_error(level: int, packet: Any) -> None:
    try:
        data = encode(packet, level)
    except LocalProtocolError:
        return
    broker = connected(level)
    broker.client.receive_data(data)
    for event in broker.client.events_received():
        if isinstance(event, ConnectionClosed):
            assert isinstance(event.error, RemoteProtocolError) or event.error is None
