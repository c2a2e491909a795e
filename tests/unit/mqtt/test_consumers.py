"""``AsyncMqttConsumer`` / ``MqttConsumer`` / ``BrokerApplication`` with ``MqttCommunicator``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.consumers.mqtt import AsyncMqttConsumer, MqttConsumer
from gateway.exceptions import DenyConnection
from gateway.protocols.mqtt.broker import AccessRule, Authenticator, Broker, BrokerApplication, hash_password
from gateway.protocols.errors import LocalProtocolError
from gateway.testing.mqtt import MqttCommunicator
from tests.unit.mqtt.broker_helpers import make_broker


class Store(AsyncMqttConsumer):
    """Keeps readings; refuses the "forbidden" topic; pushes a welcome message."""

    stored: list[tuple[str, bytes, int]] = []

    async def connect(self) -> None:
        if self.scope["username"] == "mallory":
            raise DenyConnection()
        await self.accept()
        await self.publish("welcome", f"hi {self.scope['client_id']}", qos=1)

    async def receive(self, topic: str, payload: bytes, qos: int, retain: bool, properties: dict[str, Any]) -> None:
        if topic == "forbidden":
            await self.send({"type": "mqtt.puback", "reason_code": 0x87})
            return
        self.stored.append((topic, payload, qos))

    async def subscribe(self, subscriptions: list[dict[str, Any]]) -> list[int]:
        return [0 if s["topic_filter"].startswith("slow/") else s["qos"] for s in subscriptions]


class SyncStore(MqttConsumer):
    stored: list[bytes] = []

    def receive(self, topic: str, payload: bytes, qos: int, retain: bool, properties: dict[str, Any]) -> None:
        self.stored.append(payload)


def test_async_consumer_hooks() -> None:
    async def scenario() -> None:
        Store.stored = []
        comm = MqttCommunicator(Store.as_asgi(), client_id="dev-1", username="alice")
        assert await comm.connect() == (True, False)
        welcome = await comm.receive_publish()
        assert (welcome["topic"], welcome["payload"], welcome["qos"]) == ("welcome", b"hi dev-1", 1)
        assert await comm.publish("readings/1", b"20", qos=1) == 0
        assert await comm.publish("forbidden", b"x", qos=1) == 0x87
        assert await comm.publish("readings/2", b"21") is None
        assert Store.stored == [("readings/1", b"20", 1), ("readings/2", b"21", 0)]
        assert await comm.subscribe([("slow/x", 2), ("fast/x", 2)]) == [0, 2]
        assert await comm.unsubscribe(["fast/x"]) == [0]
        await comm.disconnect()

    asyncio.run(scenario())


def test_deny_connection() -> None:
    async def scenario() -> None:
        comm = MqttCommunicator(Store.as_asgi(), username="mallory")
        assert await comm.connect() == (False, 0x87)
        await comm.disconnect()

    asyncio.run(scenario())


def test_sync_consumer() -> None:
    async def scenario() -> None:
        SyncStore.stored = []
        comm = MqttCommunicator(SyncStore.as_asgi())
        assert await comm.connect() == (True, False)
        assert await comm.publish("t", b"sync", qos=2, timeout=10) == 0
        assert SyncStore.stored == [b"sync"]
        assert await comm.subscribe(["a/#"], timeout=10) == [0]
        await comm.disconnect()

    asyncio.run(scenario())


def test_unhandled_publish_times_out_in_the_communicator() -> None:
    async def stuck(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "mqtt.accept"})
        await receive()
        await asyncio.sleep(10)

    async def scenario() -> None:
        comm = MqttCommunicator(stuck)
        await comm.connect()
        with pytest.raises(TimeoutError):
            await comm.publish("t", b"x", qos=1, timeout=0.1)
        comm.stop(exceptions=False)

    asyncio.run(scenario())


def broker_on_running_loop() -> Broker:
    return make_broker(asyncio.get_running_loop())


@pytest.mark.parametrize("app", [Store.as_asgi, lambda: BrokerApplication(), AsyncMqttConsumer.as_asgi])
def test_consumers_use_the_broker(app: Any) -> None:
    """With a broker, subscriptions are the broker's and the consumer's forwards reach them."""

    async def scenario() -> None:
        broker = broker_on_running_loop()
        listener = MqttCommunicator(AsyncMqttConsumer.as_asgi(), client_id="listener", broker=broker)
        await listener.connect()
        assert await listener.subscribe([("news/#", 1)]) == [1]
        talker = MqttCommunicator(AsyncMqttConsumer.as_asgi(), client_id="talker", broker=broker)
        await talker.connect()
        await talker.publish("news/today", b"sunny", qos=1)
        message = await listener.receive_publish()
        assert (message["topic"], message["payload"], message["qos"]) == ("news/today", b"sunny", 1)
        subject = MqttCommunicator(app(), client_id="subject", broker=broker)
        await subject.connect()
        await subject.disconnect()
        await listener.disconnect()
        await talker.disconnect()

    asyncio.run(scenario())


def test_broker_application_applies_users_and_rules() -> None:
    auth = Authenticator({"alice": hash_password("pw", "pbkdf2_sha256", iterations=1000)}, allow_anonymous=False,
                         rules=[AccessRule(("alice",), publish=("alice/#",), subscribe=("alice/#",))])

    async def scenario() -> None:
        broker = broker_on_running_loop()
        refused = MqttCommunicator(BrokerApplication(), username="alice", password=b"no", broker=broker, auth=auth)
        assert await refused.connect() == (False, 0x86)
        await refused.disconnect()
        alice = MqttCommunicator(BrokerApplication(), username="alice", password=b"pw", broker=broker, auth=auth)
        assert await alice.connect() == (True, False)
        assert await alice.subscribe([("alice/#", 2), ("bob/#", 0)]) == [2, 0x87]
        assert await alice.publish("bob/x", b"", qos=1) == 0x87
        assert await alice.publish("alice/x", b"mine", qos=1) == 0
        message = await alice.receive_publish()
        assert message["payload"] == b"mine"
        await alice.disconnect()

    asyncio.run(scenario())


def test_broker_application_refuses_other_scopes() -> None:
    async def scenario() -> None:
        with pytest.raises(ValueError):
            await BrokerApplication()({"type": "http"}, None, None)
        with pytest.raises(RuntimeError):
            await BrokerApplication()({"type": "mqtt", "extensions": {}}, None, None)
        assert await BrokerApplication().matches({"type": "mqtt"})

    asyncio.run(scenario())


def test_out_of_order_message_fails_as_in_the_daemon() -> None:
    async def publishes_first(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "mqtt.publish", "topic": "x", "payload": b""})

    async def scenario() -> None:
        comm = MqttCommunicator(publishes_first)
        with pytest.raises(LocalProtocolError, match="mqtt.publish before mqtt.accept"):
            await comm.connect()

    asyncio.run(scenario())
