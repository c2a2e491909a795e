"""The connector's adapter on a fake network (StringTransport) and a fake clock, with a real loop:
connecting, the application instance of each connection, acknowledgement after handling,
reconnecting with backoff and jitter, the outgoing queue, the channel layer, stopping."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent
from twisted.python.failure import Failure

from gateway.config import load_config_text
from gateway.layers.memory import InMemoryChannelLayer
from gateway.protocols.mqtt import (
    ConnAck, Connect, Disconnect, PingReq, PubAck, Publish, ReasonCode, SubAck, Subscribe, decode, encode,
)
from gateway.protocols.mqttconnector.adapter import Connector
from gateway.protocols.mqttconnector.config import MqttConnectorConfig
from tests.unit.loop_harness import LoopHarness

R = ReasonCode

CONFIG = """
application: tests.connector_apps:app
listeners:
  - name: sensors
    protocol: mqtt-connector
    broker: mqtt://broker.example:1883
    client_id: gw-1
    username: gw
    password: hunter2-secret
    subscriptions: [{filter: "in/#", qos: 1}]
    reconnect_initial: 1s
    reconnect_max: 8s
    limits: {max_queued_messages: 3, max_app_queue: 4}
"""


def connector_config(extra: str = "") -> MqttConnectorConfig:
    config = load_config_text(CONFIG + extra, "test.yaml", environ={})
    listener: MqttConnectorConfig = config.listeners[0]
    return listener


class Net:
    """The fake network: every connection attempt gets a StringTransport (or is refused)."""

    def __init__(self, level: int = 5) -> None:
        self.level = level
        self.transports: list[StringTransport] = []
        self.protocols: list[Any] = []
        self.refuse = False
        self.hold: list[tuple[defer.Deferred[Any], Any]] = []  # attempts left connecting
        self.holding = False
        self._pending = b""

    def connect(self, protocol: Any) -> defer.Deferred[Any]:
        if self.holding:
            waiting: defer.Deferred[Any] = defer.Deferred()
            self.hold.append((waiting, protocol))
            return waiting
        if self.refuse:
            return defer.fail(Failure(ConnectionRefusedError("refused")))
        transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 50000),
                                    peerAddress=IPv4Address("TCP", "192.0.2.7", 1883))
        self.transports.append(transport)
        self.protocols.append(protocol)
        protocol.makeConnection(transport)
        return defer.succeed(protocol)

    @property
    def transport(self) -> StringTransport:
        return self.transports[-1]

    def received(self) -> list[Any]:
        """What the connector wrote on the current connection since the last call."""
        data = memoryview(self._pending + self.transport.value())
        self.transport.clear()
        found = []
        while data:
            packet, used = decode(data, protocol_level=self.level)
            if packet is None:
                break
            found.append(packet)
            data = data[used:]
        self._pending = bytes(data)
        return found

    def send(self, *packets: Any) -> None:
        self.protocols[-1].dataReceived(b"".join(encode(p, self.level) for p in packets))

    def drop(self) -> None:
        transport = self.transport
        transport.unregisterProducer()
        self.protocols[-1].connectionLost(Failure(ConnectionRefusedError("gone")))
        self._pending = b""


class App:
    """An application that records its events; ``fail_on`` payloads make it raise."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.scopes: list[dict[str, Any]] = []
        self.fail_on: set[bytes] = set()
        self.hold: asyncio.Event | None = None
        self.send: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        self.send = send
        while True:
            event = await receive()
            self.events.append(event)
            kind = event["type"]
            if kind == "mqtt.connect":
                await send({"type": "mqtt.accept"})
            elif kind == "mqtt.publish":
                if self.hold is not None:
                    await self.hold.wait()
                if event["payload"] in self.fail_on:
                    raise RuntimeError("failing on purpose")
            elif kind == "mqtt.disconnect":
                return


class Harness(LoopHarness):
    def __init__(self, extra: str = "", layer: Any = None, level: int = 5) -> None:
        super().__init__()
        self.net = Net(level)
        self.app = App()
        self.connector = Connector(connector_config(extra), app=self.app, loop=self.loop, reactor=self.clock,
                                   close_timeout=5, layer=layer, connect=self.net.connect, rand=lambda: 1.0)

    def start(self) -> None:
        self.connector.start()
        self.run()

    def accept(self, session_present: bool = False) -> list[Any]:
        """Answer the CONNECT; return what the connector sent after the CONNACK."""
        (connect,) = self.net.received()
        assert isinstance(connect, Connect)
        self.net.send(ConnAck(session_present))
        self.run()
        return self.net.received()


@pytest.fixture
def harness() -> Any:
    made: list[Harness] = []

    def make(extra: str = "", **kwargs: Any) -> Harness:
        made.append(Harness(extra, **kwargs))
        return made[-1]

    yield make
    for h in made:
        h.close()


def test_connects_subscribes_and_starts_the_application(harness: Any) -> None:
    h = harness()
    h.start()
    (connect,) = h.net.received()
    assert connect.client_id == "gw-1" and connect.username == "gw" and connect.password == b"hunter2-secret"
    assert connect.clean_start is False and connect.properties.session_expiry_interval == 86400
    h.net.send(ConnAck(False))
    h.run()
    (subscribe,) = h.net.received()
    assert isinstance(subscribe, Subscribe) and subscribe.subscriptions[0].topic_filter == "in/#"
    assert h.app.events == [{"type": "mqtt.connect", "password": None, "authentication_method": None,
                             "authentication_data": None}]
    scope = h.app.scopes[0]
    assert scope["client"] == ["192.0.2.7", 1883] and scope["client_id"] == "gw-1"
    assert scope["connector"]["broker"] == "mqtt://broker.example:1883"
    assert "hunter2" not in repr(scope)
    assert h.connector.problem() is None and h.connector.stats.connected == 1
    h.net.send(SubAck(subscribe.packet_id, (1,)))
    h.run()
    assert scope["connector"]["subscriptions"][0]["granted"] == 1


def test_a_message_is_acknowledged_once_handled(harness: Any) -> None:
    h = harness()
    h.start()
    h.accept()
    h.app.hold = asyncio.Event()
    h.net.send(Publish("in/a", b"1", 1, packet_id=4))
    h.run()
    assert h.app.events[-1]["payload"] == b"1"
    assert h.net.received() == []  # still being handled
    h.app.hold.set()
    h.run()
    assert h.net.received() == [PubAck(4)]
    assert h.connector.stats.publish_in == 1


def test_a_failing_application_leaves_the_message_for_the_broker(harness: Any) -> None:
    h = harness()
    h.start()
    h.accept()
    h.app.fail_on.add(b"bad")
    h.net.send(Publish("in/a", b"bad", 1, packet_id=4))
    h.run()
    assert h.net.received() == [Disconnect(R.UNSPECIFIED_ERROR)]  # no PUBACK
    assert h.net.transport.disconnecting
    assert any("Exception in ASGI application for MQTT connector sensors" in line for line in h.errors())
    h.net.drop()
    h.run()
    assert h.connector.stats.connected == 0 and "is not connected" in (h.connector.problem() or "")
    h.advance(1)  # the first delay: reconnect_initial (jitter drawn at its top here)
    assert len(h.net.transports) == 2
    assert [type(p) for p in h.accept(session_present=True)] == [Subscribe]
    h.net.send(Publish("in/a", b"bad-no-more", 1, dup=True, packet_id=4))
    h.run()
    assert PubAck(4) in h.net.received()
    assert [e["type"] for e in h.app.events].count("mqtt.connect") == 2


def test_backoff_doubles_with_jitter_and_resets_after_a_good_connection(harness: Any) -> None:
    h = harness()
    draws = iter([0.0, 1.0, 0.5, 1.0, 1.0, 1.0])
    h.connector.rand = lambda: next(draws, 1.0)
    h.net.refuse = True
    h.start()
    delays = []
    for _ in range(5):
        (call,) = h.clock.getDelayedCalls()
        delays.append(call.getTime() - h.clock.seconds())
        h.advance(call.getTime() - h.clock.seconds())
    # 1s drawn at half, 2s at full, 4s at three quarters, then 8s (the maximum) twice.
    assert delays == [0.5, 2.0, 3.0, 8.0, 8.0]
    assert h.connector.stats.connect_failures == 6 and "refused" in (h.connector.problem() or "")
    h.net.refuse = False
    h.advance(8)
    h.accept()
    h.net.drop()
    h.run()
    (call,) = h.clock.getDelayedCalls()
    assert call.getTime() - h.clock.seconds() == 1.0  # reset: the connection was good


def test_outgoing_messages_wait_for_room_and_cross_reconnections(harness: Any) -> None:
    h = harness()
    h.start()
    h.net.received()
    h.net.send(ConnAck(False, properties=_props(receive_maximum=1)))
    h.run()
    h.net.received()
    sent: list[str] = []

    async def publish_many() -> None:
        for n in range(5):
            await h.app.send({"type": "mqtt.publish", "topic": f"out/{n}", "payload": b"x", "qos": 1})
            sent.append(f"out/{n}")

    task = h.loop.create_task(publish_many())
    h.run()
    # The broker's Receive Maximum is 1; max_queued_messages 3: three are taken, send() waits.
    assert sent == ["out/0", "out/1", "out/2"]
    (first,) = h.net.received()
    assert first.topic == "out/0"
    assert h.connector.outstanding() == 3
    h.net.send(PubAck(first.packet_id))
    h.run()
    assert sent == ["out/0", "out/1", "out/2", "out/3"]
    assert [p.topic for p in h.net.received()] == ["out/1"]
    # The connection drops with out/1 unacknowledged and out/2, out/3 queued: they are sent
    # again on the next connection (the broker kept the session: DUP and the same identifier).
    h.net.drop()
    h.run()
    assert task.done() and isinstance(task.exception(), OSError)  # send() after the connection ended
    h.advance(1)
    again = h.accept(session_present=True)
    assert [(type(p).__name__, getattr(p, "topic", None), getattr(p, "dup", None)) for p in again] == [
        ("Subscribe", None, None), ("Publish", "out/1", True), ("Publish", "out/2", False), ("Publish", "out/3", False)]
    assert again[1].packet_id == first.packet_id + 1
    h.net.send(*[PubAck(p.packet_id) for p in again[1:]])
    h.run()
    assert h.connector.outstanding() == 0


def test_the_channel_layer_publishes_and_is_held_while_disconnected(harness: Any) -> None:
    layer = InMemoryChannelLayer()
    h = harness("    publish_channel: mqtt-out\n", layer=layer)
    h.net.refuse = True
    h.start()
    for n, qos in enumerate([1, 0, 1]):
        h.loop.run_until_complete(layer.send("mqtt-out", {"type": "mqtt.publish", "topic": f"out/{n}",
                                                          "payload": b"x", "qos": qos}))
    h.loop.run_until_complete(layer.send("mqtt-out", {"type": "chat.message"}))  # not a publish: ignored
    h.run()
    assert h.connector.outstanding() == 2 and h.connector.stats.dropped == 1  # QoS 0 is not held
    h.net.refuse = False
    h.advance(1)
    assert [getattr(p, "topic", None) for p in h.accept()] == [None, "out/0", "out/2"]
    assert any("sensors: ignored a message on mqtt-out: expected an mqtt.publish message, got 'chat.message'"
               in formatEvent(e) for e in h.log)


def test_keep_alive_pings_the_broker(harness: Any) -> None:
    h = harness("    keep_alive: 10s\n")
    h.start()
    h.accept()
    h.advance(10)
    assert h.net.received() == [PingReq()]


def test_stop_lets_the_application_finish_then_disconnects(harness: Any) -> None:
    h = harness()
    h.start()
    h.accept()
    h.app.hold = asyncio.Event()
    h.net.send(Publish("in/a", b"1", 1, packet_id=4))
    h.run()
    stopping = h.loop.create_task(h.connector.stop())
    h.run()
    assert not stopping.done() and h.net.transport.producerState == "paused"  # takes nothing new
    h.app.hold.set()
    h.run()
    assert h.net.received() == [PubAck(4), Disconnect()]
    h.net.drop()
    h.run()
    assert stopping.done() and stopping.exception() is None
    assert h.clock.getDelayedCalls() == [] or all(not c.active() for c in h.clock.getDelayedCalls())


def test_reconnection_waits_for_the_previous_instance(harness: Any) -> None:
    h = harness()
    h.start()
    h.accept()
    h.app.hold = asyncio.Event()
    h.net.send(Publish("in/a", b"1", 1, packet_id=4))
    h.run()
    h.net.drop()
    h.run()
    h.advance(1)
    assert len(h.net.transports) == 1  # the application still handles a message of the last connection
    h.app.hold.set()
    h.run()
    assert len(h.net.transports) == 2


def test_a_refused_connection_is_reported(harness: Any) -> None:
    h = harness()
    h.start()
    h.net.received()
    h.net.send(ConnAck(False, R.NOT_AUTHORIZED))
    h.run()
    assert "the broker refused the connection: 0x87 not authorized" in (h.connector.problem() or "")
    assert h.app.scopes == []
    assert any("0x87 not authorized" in line for line in h.errors())


def test_an_application_without_mqtt_does_not_connect(harness: Any) -> None:
    h = harness()

    async def http_only(scope: Any, receive: Any, send: Any) -> None:
        pass

    http_only.matches = _never  # type: ignore[attr-defined]
    h.connector.app = http_only
    h.start()
    assert h.net.transports == []
    assert "does not handle mqtt scopes" in (h.connector.problem() or "")


async def _never(scope: Any) -> bool:
    return False


def _props(**values: Any) -> Any:
    from gateway.protocols.mqtt import Properties

    return Properties(**values)


def test_stop_while_connecting_cancels_the_attempt(harness: Any) -> None:
    h = harness()
    h.net.holding = True
    h.start()
    (waiting, protocol), = h.net.hold
    h.loop.run_until_complete(h.connector.stop())
    assert waiting.called  # cancelled
    assert h.clock.getDelayedCalls() == []  # no new attempt
    assert not any("cannot connect" in formatEvent(e) for e in h.log)
    # A connection that completes after the stop closes at once, without a CONNECT.
    transport = StringTransport()
    protocol.makeConnection(transport)
    assert transport.value() == b"" and transport.disconnecting
