"""AsyncConsumer / SyncConsumer: dispatch, as_asgi, layer channel, StopConsumer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.consumers import AsyncConsumer, SyncConsumer, get_handler_name
from gateway.exceptions import StopConsumer
from gateway.layers import InMemoryChannelLayer, LayerRegistry
from gateway.testing import ApplicationCommunicator


class Echo(AsyncConsumer):
    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    async def test_ping(self, message: dict[str, Any]) -> None:
        await self.send({"type": "test.pong", "text": self.prefix + message["text"]})

    async def test_whoami(self, message: dict[str, Any]) -> None:
        await self.send({"type": "test.me", "channel": self.channel_name})

    async def test_stop(self, message: dict[str, Any]) -> None:
        raise StopConsumer()


def test_handler_names() -> None:
    assert get_handler_name({"type": "chat.message"}) == "chat_message"
    with pytest.raises(ValueError, match="leading underscore"):
        get_handler_name({"type": "_private"})
    with pytest.raises(ValueError, match="no 'type'"):
        get_handler_name({})


def test_dispatch_and_initkwargs() -> None:
    app = Echo.as_asgi(prefix="> ")
    assert app.consumer_class is Echo and app.consumer_initkwargs == {"prefix": "> "}
    assert app.__name__ == "Echo"

    async def main() -> None:
        comm = ApplicationCommunicator(app, {"type": "test"})
        await comm.send_input({"type": "test.ping", "text": "hi"})
        assert await comm.receive_output() == {"type": "test.pong", "text": "> hi"}
        await comm.send_input({"type": "test.stop"})
        await comm.wait()  # StopConsumer ends the instance without an error

    asyncio.run(main())


def test_unknown_type_raises() -> None:
    async def main() -> None:
        comm = ApplicationCommunicator(Echo.as_asgi(), {"type": "test"})
        await comm.send_input({"type": "test.unknown"})
        with pytest.raises(ValueError, match="No handler for message type test.unknown"):
            await comm.wait()

    asyncio.run(main())


def test_layer_messages_reach_the_consumer(fresh_layer: InMemoryChannelLayer) -> None:
    async def main() -> None:
        comm = ApplicationCommunicator(Echo.as_asgi(), {"type": "test"})
        await comm.send_input({"type": "test.whoami"})
        channel = (await comm.receive_output())["channel"]
        assert "!" in channel
        await fresh_layer.send(channel, {"type": "test.ping", "text": "from layer"})
        assert (await comm.receive_output())["text"] == "from layer"
        await comm.send_input({"type": "test.stop"})
        await comm.wait()

    asyncio.run(main())


def test_without_layer_no_channel(registry: LayerRegistry) -> None:
    registry.set("default", None)

    async def main() -> None:
        comm = ApplicationCommunicator(Echo.as_asgi(), {"type": "test"})
        await comm.send_input({"type": "test.whoami"})
        assert (await comm.receive_output())["channel"] is None
        await comm.send_input({"type": "test.stop"})
        await comm.wait()

    asyncio.run(main())


def test_layer_alias_per_consumer_class(registry: LayerRegistry) -> None:
    other = InMemoryChannelLayer()
    registry.set("events", other)

    class OnEvents(Echo):
        channel_layer_alias = "events"

        async def test_which(self, message: dict[str, Any]) -> None:
            await self.send({"type": "x", "same": self.channel_layer is other})

    async def main() -> None:
        comm = ApplicationCommunicator(OnEvents.as_asgi(), {"type": "test"})
        await comm.send_input({"type": "test.which"})
        assert (await comm.receive_output())["same"] is True
        comm.stop(exceptions=False)

    asyncio.run(main())


class SyncEcho(SyncConsumer):
    def test_ping(self, message: dict[str, Any]) -> None:
        self.send({"type": "test.pong", "text": message["text"]})

    def test_stop(self, message: dict[str, Any]) -> None:
        raise StopConsumer()


def test_sync_consumer_dispatch(fresh_layer: InMemoryChannelLayer) -> None:
    async def main() -> None:
        comm = ApplicationCommunicator(SyncEcho.as_asgi(), {"type": "test"})
        await comm.send_input({"type": "test.ping", "text": "a"})
        assert await comm.receive_output() == {"type": "test.pong", "text": "a"}
        await comm.send_input({"type": "test.nothing"})
        with pytest.raises(ValueError, match="No handler"):
            await comm.wait()

    asyncio.run(main())


def test_client_and_layer_events_never_overlap(fresh_layer: InMemoryChannelLayer) -> None:
    active = {"now": 0, "max": 0}

    class Slow(AsyncConsumer):
        async def work(self, message: dict[str, Any]) -> None:
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
            await asyncio.sleep(0.002)
            active["now"] -= 1
            await self.send({"type": "done", "n": message["n"]})

        async def hello(self, message: dict[str, Any]) -> None:
            await self.send({"type": "me", "channel": self.channel_name})

    async def main() -> None:
        comm = ApplicationCommunicator(Slow.as_asgi(), {"type": "test"})
        await comm.send_input({"type": "hello"})
        channel = (await comm.receive_output())["channel"]
        for n in range(10):
            await comm.send_input({"type": "work", "n": n})
            await fresh_layer.send(channel, {"type": "work", "n": 100 + n})
        got = [(await comm.receive_output())["n"] for _ in range(20)]
        assert sorted(got) == sorted(list(range(10)) + list(range(100, 110)))
        assert [n for n in got if n < 100] == list(range(10))
        assert active["max"] == 1
        comm.stop(exceptions=False)

    asyncio.run(main())
