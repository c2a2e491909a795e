"""Property tests of MqttServerConnection: chunking invariance and stateful models of the
QoS 1/2 flows in both directions (with receive maximum and session resume)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings, strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from gateway.protocols.mqtt import (
    EMPTY_PROPERTIES,
    Connect,
    ConnectionClosed,
    ConnectReceived,
    Event,
    MqttServerConnection,
    Packet,
    PingReq,
    PubAck,
    PubComp,
    Publish,
    PublishReceived,
    PublishStatus,
    PubRec,
    PubRel,
    ServerOptions,
    encode,
)
from tests.strategies.mqtt import client_packets, connects
from tests.unit.mqtt.helpers import Harness, props

OPTIONS = ServerOptions(receive_maximum=5, topic_alias_maximum=3)


def answer(conn: MqttServerConnection, events: list[Event]) -> list[Event]:
    """Accept a CONNECT as soon as it is seen (and what accept() then reports)."""
    seen = []
    queue = list(events)
    while queue:
        event = queue.pop(0)
        seen.append(event)
        if isinstance(event, ConnectReceived):
            connect = event.packet
            needs_id = connect.protocol_level == 5 and not connect.client_id
            assigned = props(assigned_client_identifier="auto")
            conn.accept(properties=assigned if needs_id else EMPTY_PROPERTIES)
            queue.extend(conn.events_received())
    return seen


def comparable(event: Event) -> object:
    """Events as comparable values (exceptions compare by identity, so by message/hint)."""
    if isinstance(event, ConnectionClosed) and event.error is not None:
        return (event.reason_code, event.publish_will, event.error.message, event.error.hint)
    return event


def run(chunks: list[bytes]) -> tuple[list[object], bytes]:
    """Feed ``chunks`` then EOF; return all events and all output."""
    conn = MqttServerConnection(OPTIONS)
    events: list[Event] = []
    output = []
    for chunk in [*chunks, b""]:
        conn.receive_data(chunk)
        events += answer(conn, conn.events_received())
        output.append(conn.data_to_send())
    return [comparable(event) for event in events], b"".join(output)


@st.composite
def client_streams(draw: st.DrawFn) -> bytes:
    """A CONNECT (without enhanced authentication) then client packets, maybe some junk."""
    level = draw(st.sampled_from([4, 5]))
    connect = draw(connects(level))
    connect = replace(
        connect,
        properties=replace(
            connect.properties, authentication_method=None, authentication_data=None
        ),
    )
    packets: list[Packet] = [connect, *draw(st.lists(client_packets(level), max_size=8))]
    return b"".join(encode(packet, level) for packet in packets) + draw(st.binary(max_size=3))


@given(client_streams(), st.data())
def test_any_chunking_yields_the_same_events_and_output(stream: bytes, data: st.DataObject) -> None:
    """However the byte stream is split into receive_data() calls, the connection reports
    the same events and writes the same bytes (including for invalid streams)."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    bounds = zip([0, *cuts], [*cuts, len(stream)])
    chunks = [stream[start:end] for start, end in bounds if end > start]  # b"" would be EOF
    assert run(chunks) == run([stream])


def test_byte_by_byte_delivery_yields_the_same_events() -> None:
    """The extreme chunking: one byte per receive_data() call."""
    packets: list[Packet] = [
        Connect("c", 5, keep_alive=30),
        Publish("a/b", b"payload", 1, packet_id=1),
        Publish("a/b", b"x" * 300, 2, packet_id=2),
        PingReq(),
        PubRel(2),
    ]
    stream = b"".join(encode(packet, 5) for packet in packets)
    events, output = run([stream[i : i + 1] for i in range(len(stream))])
    assert (events, output) == run([stream])
    assert [type(event) for event in events] == [
        ConnectReceived, PublishReceived, PublishReceived, tuple,
    ]
    assert events[-1] == (0x82, False, "PUBREL before PUBREC for packet id 2", 0x82)


class InboundFlows(RuleBasedStateMachine):
    """A client publishing QoS 0/1/2 (with re-sends) to a server whose upper layer acks in any
    order. Each message is delivered exactly once, never acknowledged before it was handled,
    and the client never exceeds the server's receive maximum."""

    RECEIVE_MAXIMUM = 4

    @initialize(level=st.sampled_from([4, 5]))
    def connect(self, level: int) -> None:
        self.harness = Harness(level, ServerOptions(receive_maximum=self.RECEIVE_MAXIMUM))
        self.harness.connect()
        self.counter = 0
        self.client: dict[int, tuple[int, bytes, str]] = {}  # id -> (qos, payload, stage)
        self.app_pending: dict[int, int] = {}  # packet id -> qos, handled by "the app"
        self.delivered: list[bytes] = []

    def _deliveries(self, events: list[Event]) -> list[bytes]:
        assert all(isinstance(event, PublishReceived) for event in events), events
        payloads = [event.packet.payload for event in events]  # type: ignore[union-attr]
        self.delivered += payloads
        return payloads

    @precondition(lambda self: len(self.client) < self.RECEIVE_MAXIMUM)
    @rule(qos=st.sampled_from([1, 2]), packet_id=st.integers(1, 8))
    def client_publishes(self, qos: int, packet_id: int) -> None:
        if packet_id in self.client:
            return
        self.counter += 1
        payload = self.counter.to_bytes(4, "big")
        events = self.harness.send(Publish("t", payload, qos, packet_id=packet_id))
        assert self._deliveries(events) == [payload]
        assert self.harness.received() == []  # no ack before the upper layer handled it
        self.client[packet_id] = (qos, payload, "sent")
        self.app_pending[packet_id] = qos

    @rule()
    def client_publishes_qos0(self) -> None:
        self.counter += 1
        payload = self.counter.to_bytes(4, "big")
        assert self._deliveries(self.harness.send(Publish("t", payload))) == [payload]

    @precondition(lambda self: self.client)
    @rule(data=st.data())
    def client_resends(self, data: st.DataObject) -> None:
        packet_id = data.draw(st.sampled_from(sorted(self.client)))
        qos, payload, stage = self.client[packet_id]
        if stage == "released":
            return  # the client sends PUBREL, never the PUBLISH, once PUBREC arrived
        events = self.harness.send(Publish("t", payload, qos, dup=True, packet_id=packet_id))
        assert self._deliveries(events) == []  # never delivered twice
        assert self.harness.received() == []

    @precondition(lambda self: self.app_pending)
    @rule(data=st.data())
    def app_acknowledges(self, data: st.DataObject) -> None:
        packet_id = data.draw(st.sampled_from(sorted(self.app_pending)))
        qos = self.app_pending.pop(packet_id)
        self.harness.conn.ack_publish(packet_id)
        if qos == 1:
            assert self.harness.received() == [PubAck(packet_id)]
            del self.client[packet_id]
        else:
            assert self.harness.received() == [PubRec(packet_id)]
            qos, payload, _ = self.client[packet_id]
            self.client[packet_id] = (qos, payload, "released")

    @precondition(lambda self: any(s == "released" for _, _, s in self.client.values()))
    @rule(data=st.data())
    def client_releases(self, data: st.DataObject) -> None:
        released = sorted(i for i, (_, _, s) in self.client.items() if s == "released")
        packet_id = data.draw(st.sampled_from(released))
        assert self.harness.send(PubRel(packet_id)) == []
        assert self.harness.received() == [PubComp(packet_id)]
        del self.client[packet_id]

    @invariant()
    def exactly_once_and_still_connected(self) -> None:
        assert not self.harness.conn.closed
        assert len(self.delivered) == len(set(self.delivered))


class OutboundFlows(RuleBasedStateMachine):
    """The server publishes QoS 0/1/2 to a client with a small receive maximum; the client
    acknowledges in any order and sometimes reconnects, resuming the session. The client never
    has more than its receive maximum in flight, identifiers in flight are unique, and every
    QoS > 0 message is delivered (first deliveries in publish order, QoS 2 exactly once)."""

    @initialize(level=st.sampled_from([4, 5]), window=st.integers(1, 3))
    def connect(self, level: int, window: int) -> None:
        self.level = level
        self.window = window
        self.published: list[bytes] = []  # QoS > 0 payloads accepted by publish()
        self.first_deliveries: list[bytes] = []
        self.inflight: dict[int, tuple[int, bytes, str]] = {}  # client view: id -> qos, stage
        self.qos2_received: set[int] = set()  # client's QoS 2 ids awaiting PUBREL
        self.counter = 0
        self.harness = self._connect(None)

    def _connect(self, session: object) -> Harness:
        options = ServerOptions(max_outbound_inflight=self.window if self.level == 4 else 65535)
        harness = Harness(self.level, options)
        client_props = props(receive_maximum=self.window) if self.level == 5 else EMPTY_PROPERTIES
        harness.connect(accept=False, clean_start=False, properties=client_props)
        if session is None:
            harness.conn.accept()
        else:
            harness.conn.accept(session_present=True, session=session)  # type: ignore[arg-type]
        harness.conn.next_deadline(0.0)
        self._client_reads(harness, skip_connack=True)
        return harness

    def _client_reads(self, harness: Harness | None = None, skip_connack: bool = False) -> None:
        harness = harness or self.harness
        packets = harness.received()
        if skip_connack:
            packets = packets[1:]
        for packet in packets:
            if isinstance(packet, Publish) and packet.qos:
                packet_id = packet.packet_id
                assert packet_id is not None
                if packet.dup:
                    # A re-send after resume: same message, same identifier.
                    assert packet_id in self.inflight or packet_id in self.qos2_received
                else:
                    assert packet_id not in self.inflight, "identifier reused while in flight"
                if packet_id not in self.inflight:
                    self.inflight[packet_id] = (packet.qos, packet.payload, "received")
                if packet.payload not in self.first_deliveries:
                    self.first_deliveries.append(packet.payload)
                if packet.qos == 2:
                    self.qos2_received.add(packet_id)
            elif isinstance(packet, PubRel):
                qos, payload, _ = self.inflight[packet.packet_id]
                self.inflight[packet.packet_id] = (qos, payload, "pubrel")
            else:
                assert isinstance(packet, Publish) and packet.qos == 0, packet
        assert len(self.inflight) <= self.window, "more in flight than the receive maximum"

    @rule(qos=st.sampled_from([0, 1, 2]))
    def server_publishes(self, qos: int) -> None:
        self.counter += 1
        payload = self.counter.to_bytes(4, "big")
        status = self.harness.conn.publish("t", payload, qos=qos)
        assert status is not PublishStatus.DROPPED
        if qos:
            self.published.append(payload)
        self._client_reads()

    @precondition(lambda self: any(s != "acked" for _, _, s in self.inflight.values()))
    @rule(data=st.data())
    def client_acknowledges(self, data: st.DataObject) -> None:
        packet_id = data.draw(st.sampled_from(sorted(self.inflight)))
        qos, payload, stage = self.inflight[packet_id]
        if qos == 1:
            self.harness.send(PubAck(packet_id))
            del self.inflight[packet_id]
        elif stage == "received":
            self.harness.send(PubRec(packet_id))
        else:  # PUBREL received: complete
            self.harness.send(PubComp(packet_id))
            del self.inflight[packet_id]
            self.qos2_received.discard(packet_id)
        self._client_reads()

    @rule()
    def client_reconnects(self) -> None:
        self.harness.conn.receive_data(b"")
        session = self.harness.conn.session_state()
        self.harness = self._connect(session)

    @invariant()
    def first_deliveries_follow_publish_order(self) -> None:
        assert self.first_deliveries == self.published[: len(self.first_deliveries)]
        assert not self.harness.conn.closed


TestInboundFlows = InboundFlows.TestCase
TestInboundFlows.settings = settings(TestInboundFlows.settings, stateful_step_count=20)
TestOutboundFlows = OutboundFlows.TestCase
TestOutboundFlows.settings = settings(TestOutboundFlows.settings, stateful_step_count=20)


def test_auth_without_a_method_is_judged_after_the_connect_however_it_arrives() -> None:
    """Found by the chunking property: an AUTH right behind a CONNECT without an authentication
    method waits for accept() (then DISCONNECT 0x82), instead of failing the CONNECT only when
    both came in one read."""
    stream = b"\x10\x0f\x00\x04MQTT\x05@\x00\x00\x00\x00\x00\x00\x00" + b"\xf0\x00"
    together, split = run([stream]), run([stream[:17], stream[17:]])
    assert together == split
    assert together[1].endswith(b"\xe0\x01\x82")  # DISCONNECT, Protocol Error
