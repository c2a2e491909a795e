"""``consumer: application``: the MQTT application instance, driven through the adapter."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.protocols.mqtt import (
    ConnAck, Connect, Disconnect, Properties, PubAck, Publish, PubRec, PubRel, ReasonCode, SubAck,
    Subscribe, Subscription, UnsubAck, Unsubscribe,
)
from gateway.routing import TopicRouter, topic
from tests.unit.mqtt.harness import Harness


class Recorder:
    """An application that records events and follows a script of answers."""

    def __init__(self, answers: dict[str, Any] | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.scopes: list[dict[str, Any]] = []
        self.answers = answers or {}
        self.gate: asyncio.Event | None = None
        self.send: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        self.send = send
        while True:
            event = await receive()
            self.events.append(event)
            kind = event["type"]
            answer = self.answers.get(kind)
            if callable(answer):
                answer = await answer(event)
            if answer is not None:
                await send(answer)
            elif kind == "mqtt.connect":
                await send({"type": "mqtt.accept"})
            if kind == "mqtt.disconnect":
                return
            if kind == "mqtt.publish" and self.gate is not None:
                await self.gate.wait()


def app_harness(app: Any, **settings: Any) -> Harness:
    return Harness(consumer="application", app=app, **settings)


@pytest.fixture
def recorder() -> Iterator[tuple[Harness, Recorder]]:
    app = Recorder()
    harness = app_harness(app)
    yield harness, app
    harness.close()


def test_scope_and_connect_event(recorder: tuple[Harness, Recorder]) -> None:
    harness, app = recorder
    client = harness.client()
    (connack,) = client.connect("dev-1", username="alice", password=b"secret", keep_alive=30,
                                properties=Properties(session_expiry_interval=10, user_properties=(("k", "v"),)))
    assert isinstance(connack, ConnAck) and connack.reason_code == 0
    (scope,) = app.scopes
    assert scope["type"] == "mqtt" and scope["asgi"]["spec_version"] == "1.0"
    assert (scope["client_id"], scope["username"], scope["keep_alive"], scope["protocol_version"]) == (
        "dev-1", "alice", 30, "5.0")
    assert scope["properties"] == {"session_expiry_interval": 10, "user_properties": [["k", "v"]]}
    assert scope["client"] == ["192.0.2.1", client.transport.getPeer().port]
    assert "secret" not in repr(scope).lower()
    assert app.events[0] == {"type": "mqtt.connect", "password": b"secret", "authentication_method": None,
                             "authentication_data": None}


def test_qos1_is_acknowledged_only_after_the_app_handled_it(recorder: tuple[Harness, Recorder]) -> None:
    harness, app = recorder
    app.gate = asyncio.Event()
    client = harness.client()
    client.connect("c")
    client.send(Publish("t", b"x", 1, packet_id=7))
    assert client.received() == []  # still being handled
    assert app.events[-1]["payload"] == b"x" and app.events[-1]["packet_id"] == 7
    app.gate.set()
    harness.run()
    assert client.received() == [PubAck(7)]


def test_qos2_exchange(recorder: tuple[Harness, Recorder]) -> None:
    harness, app = recorder
    client = harness.client()
    client.connect("c")
    client.send(Publish("t", b"x", 2, packet_id=3))
    assert client.received() == [PubRec(3)]
    client.send(PubRel(3))
    assert len([e for e in app.events if e["type"] == "mqtt.publish"]) == 1


def test_failing_app_loses_nothing() -> None:
    async def explode(event: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    app = Recorder({"mqtt.publish": explode})
    harness = app_harness(app)
    try:
        client = harness.client()
        client.connect("c")
        client.send(Publish("t", b"x", 1, packet_id=1))
        # No PUBACK: the client sends it again after reconnecting.
        assert client.received() == [Disconnect(ReasonCode.UNSPECIFIED_ERROR)]
        assert client.closed
        assert any("Exception in ASGI application" in line for line in harness.errors())
    finally:
        harness.close()


def test_refusals_and_grants() -> None:
    app = Recorder({
        "mqtt.subscribe": {"type": "mqtt.suback", "reason_codes": [1, 0x87]},
        "mqtt.publish": {"type": "mqtt.puback", "reason_code": 0x87},
    })
    harness = app_harness(app)
    try:
        client = harness.client()
        client.connect("c")
        client.send(Subscribe(1, (Subscription("a", 2), Subscription("b", 1))), Publish("t", b"x", 1, packet_id=2))
        assert client.received() == [SubAck(1, (1, 0x87)), PubAck(2, 0x87)]
    finally:
        harness.close()


def test_unanswered_subscribe_is_refused_and_unsubscribe_confirmed(recorder: tuple[Harness, Recorder]) -> None:
    harness, app = recorder
    client = harness.client()
    client.connect("c")
    client.send(Subscribe(1, (Subscription("a", 1),)), Unsubscribe(2, ("a",)))
    assert client.received() == [SubAck(1, (0x80,)), UnsubAck(2, (0,))]
    harness.log.clear()  # the warning about the unanswered SUBSCRIBE


def test_close_before_accept_rejects() -> None:
    app = Recorder({"mqtt.connect": {"type": "mqtt.close", "reason_code": ReasonCode.BANNED}})
    harness = app_harness(app)
    try:
        v5 = harness.client()
        (connack,) = v5.connect("c")
        assert connack.reason_code == ReasonCode.BANNED and v5.closed
        v4 = harness.client(level=4)
        (connack,) = v4.connect("d")
        assert connack.reason_code == 5  # 3.1.1 "not authorized"
    finally:
        harness.close()


def test_app_returning_without_answer_gets_connack_0x80() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()

    harness = app_harness(app)
    try:
        client = harness.client()
        (connack,) = client.connect("c")
        assert connack.reason_code == ReasonCode.UNSPECIFIED_ERROR
        assert any("returned without answering mqtt.connect" in line for line in harness.errors())
        harness.log.clear()
    finally:
        harness.close()


def test_app_publishes_to_the_client_and_sees_the_disconnect(recorder: tuple[Harness, Recorder]) -> None:
    harness, app = recorder
    client = harness.client()
    client.connect("c")
    harness.loop.run_until_complete(app.send({"type": "mqtt.publish", "topic": "down", "payload": b"cmd", "qos": 1,
                                              "properties": {"content_type": "text/plain"}}))
    (message,) = client.received()
    assert (message.topic, message.payload, message.qos, message.properties.content_type) == ("down", b"cmd", 1, "text/plain")
    client.send(Disconnect(ReasonCode.DISCONNECT_WITH_WILL_MESSAGE, Properties(reason_string="bye")))
    assert app.events[-1] == {"type": "mqtt.disconnect", "reason_code": 4, "by_client": True, "publish_will": False,
                              "properties": {"reason_string": "bye"}}
    with pytest.raises(OSError):
        harness.loop.run_until_complete(app.send({"type": "mqtt.publish", "topic": "t", "payload": b""}))


def test_reading_pauses_while_the_app_is_behind() -> None:
    app = Recorder()
    app.gate = asyncio.Event()
    harness = app_harness(app, max_app_queue=3)
    try:
        client = harness.client()
        client.connect("c")
        client.send(*(Publish("t", str(n).encode()) for n in range(6)))
        assert client.transport.producerState == "paused"
        app.gate.set()
        harness.run(50)
        assert client.transport.producerState == "producing"
        assert len([e for e in app.events if e["type"] == "mqtt.publish"]) == 6
    finally:
        harness.close()


def test_router_and_broker_application_through_the_gateway() -> None:
    from tests.mqtt_apps import READINGS, app

    READINGS.clear()
    harness = app_harness(app)
    try:
        watcher = harness.client()
        watcher.connect("watcher")
        watcher.send(Subscribe(1, (Subscription("stored/#", 1), Subscription("$private/x", 1),
                                   Subscription("downgrade/x", 2))))
        assert watcher.received() == [SubAck(1, (1, 0x87, 0))]
        sensor = harness.client(level=4)
        sensor.connect("sensor-9")
        sensor.send(Publish("sensors/s9/temperature", b"20.5", 1, packet_id=1))
        assert sensor.received() == [PubAck(1)]
        (stored,) = watcher.received()
        assert (stored.topic, stored.payload) == ("stored/s9", b"20.5")
        assert READINGS == [{"sensor": "s9", "value": "20.5", "client": "sensor-9"}]
        blocked = harness.client()
        (connack,) = blocked.connect("blocked")
        assert connack.reason_code == ReasonCode.BAD_USER_NAME_OR_PASSWORD
    finally:
        harness.close()


def test_topic_router_acks_after_the_routed_consumer() -> None:
    handled: list[bytes] = []
    gate = asyncio.Event()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            event = await receive()
            if event["type"] == "mqtt.disconnect":
                return
            await gate.wait()
            handled.append(event["payload"])

    connection = Recorder()
    harness = app_harness(TopicRouter([topic("slow/#", slow)], connection=connection))
    try:
        client = harness.client()
        client.connect("c")
        client.send(Publish("slow/1", b"a", 1, packet_id=1))
        assert client.received() == []
        gate.set()
        harness.run()
        assert client.received() == [PubAck(1)] and handled == [b"a"]
    finally:
        harness.close()


def test_connect_event_goes_first_even_when_pipelined() -> None:
    app = Recorder()
    harness = app_harness(app)
    try:
        client = harness.client()
        client.send(Connect("c", 5), Publish("t", b"early"))
        assert [e["type"] for e in app.events] == ["mqtt.connect", "mqtt.publish"]
    finally:
        harness.close()


def test_a_consumer_whose_client_left_ends_cleanly() -> None:
    from gateway.consumers.mqtt import AsyncMqttConsumer

    gate = asyncio.Event()
    seen: list[Any] = []

    class Answering(AsyncMqttConsumer):
        async def receive(self, topic: str, payload: bytes, qos: int, retain: bool, properties: dict[str, Any]) -> None:
            await gate.wait()
            await self.publish("answer", payload)  # the client is gone by now: ClientDisconnected
            seen.append("after publish")

        async def disconnect(self, reason_code: int | None) -> None:
            seen.append(("disconnect", reason_code))

    harness = app_harness(Answering.as_asgi())
    try:
        client = harness.client()
        client.connect("c")
        client.send(Publish("t", b"x", 0))
        client.lose()
        gate.set()
        harness.run()
        assert seen == [("disconnect", None)]  # the handler stopped at its send; disconnect() ran
        instances = harness.settings.stats.instances
        assert (instances.errors, instances.client_left) == (0, 0)  # the consumer returned
        assert harness.errors() == []
    finally:
        harness.close()


@pytest.mark.parametrize("consumer", ["broker", "application"])
def test_a_closed_connection_is_freed_by_reference_counting(consumer: str) -> None:
    import gc
    import weakref

    from gateway.consumers.mqtt import AsyncMqttConsumer

    harness = Harness(consumer=consumer, app=AsyncMqttConsumer.as_asgi())
    gc.collect()
    gc.disable()
    try:
        client = harness.client()
        client.connect("c", will=None)
        client.send(Subscribe(1, (Subscription("t", 1),)), Publish("t", b"x", 1, packet_id=2))
        client.received()
        protocol = weakref.ref(client.protocol)
        conn = weakref.ref(client.protocol.conn)
        client.send(Disconnect())
        client.lose()
        harness.run()
        assert harness.errors() == []
        del client
        assert protocol() is None and conn() is None
    finally:
        gc.enable()
        harness.close()


@pytest.mark.parametrize("level", [4, 5])
def test_a_dropped_connection_with_a_will_and_a_session_is_freed_by_reference_counting(level: int) -> None:
    """No DISCONNECT (the will goes out), a persistent session kept, QoS 2 half done: every
    object of the connection (protocol, connection, wire core, driver, link) is freed by
    reference counting alone, with the collector off."""
    import gc
    import weakref

    from gateway.protocols.mqtt import Will

    harness = Harness(consumer="broker")
    gc.collect()
    gc.disable()
    try:
        watcher = harness.client(level)
        watcher.connect("watcher")
        watcher.send(Subscribe(1, (Subscription("wills/#", 1),)))
        client = harness.client(level)
        client.connect("c", clean_start=False, will=Will("wills/c", b"gone", 1))
        client.send(Subscribe(1, (Subscription("t", 2),)), Publish("t", b"x", 2, packet_id=2))
        client.received()
        conn = client.protocol.conn
        refs = [weakref.ref(o) for o in (client.protocol, conn, conn.core, conn.driver, conn.link)]
        del conn
        client.lose()
        harness.run()
        assert any(getattr(p, "topic", None) == "wills/c" for p in watcher.received())
        assert harness.errors() == []
        del client
        assert [ref() is None for ref in refs] == [True] * len(refs)
    finally:
        gc.enable()
        harness.close()
