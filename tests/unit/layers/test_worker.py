"""``gateway worker`` / ``gateway send`` entry points."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.consumers import AsyncConsumer, SyncConsumer
from gateway.exceptions import StopConsumer
from gateway.layers import InMemoryChannelLayer, LayerRegistry
from gateway.layers.worker import Worker, run_worker, send_message
from gateway.routing import ChannelNameRouter, ProtocolTypeRouter


def test_worker_feeds_channel_name_router() -> None:
    layer = InMemoryChannelLayer()
    seen: list[tuple[str, Any]] = []
    state: dict[str, asyncio.Event] = {}

    def record(item: tuple[str, Any]) -> None:
        seen.append(item)
        if len(seen) == 4:
            state["loop"].call_soon_threadsafe(state["done"].set)

    class Thumbnailer(AsyncConsumer):
        async def thumbnail_make(self, message: dict[str, Any]) -> None:
            record((self.scope["channel"], message["id"]))
            if message["id"] == 2:
                raise StopConsumer()

    class Mailer(SyncConsumer):
        def mail_send(self, message: dict[str, Any]) -> None:
            record((self.scope["channel"], message["to"]))

    app = ProtocolTypeRouter({"channel": ChannelNameRouter({
        "thumbnails": Thumbnailer.as_asgi(), "mail": Mailer.as_asgi(),
    })})

    async def main() -> None:
        state["done"] = asyncio.Event()
        state["loop"] = asyncio.get_running_loop()  # type: ignore[assignment]
        task = asyncio.ensure_future(run_worker(app, ["thumbnails", "mail"], layer=layer))
        for i in (1, 2, 3):
            await send_message({"type": "thumbnail.make", "id": i}, channel="thumbnails", layer=layer,
                               allow_process_local=True)
        await layer.send("mail", {"type": "mail.send", "to": "a@example.org"})
        await asyncio.wait_for(state["done"].wait(), 5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert sorted(seen, key=str) == sorted(
        [("thumbnails", 1), ("thumbnails", 2), ("thumbnails", 3), ("mail", "a@example.org")], key=str
    )


def test_send_message_refuses_process_local_layer_by_default() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="lives inside one process"):
            await send_message({"type": "x"}, group="g", layer=InMemoryChannelLayer())
        with pytest.raises(ValueError, match="exactly one"):
            await send_message({"type": "x"}, layer=InMemoryChannelLayer())
        with pytest.raises(ValueError, match="exactly one"):
            await send_message({"type": "x"}, channel="a", group="b", layer=InMemoryChannelLayer())

    asyncio.run(main())


def test_send_message_group_through_registry_alias() -> None:
    registry = LayerRegistry({"default": {"backend": "memory"}})
    layer = registry["default"]

    async def main() -> None:
        await layer.group_add("room", "member")
        await send_message({"type": "chat.message", "text": "hi"}, group="room", layer=layer,
                           allow_process_local=True)
        assert await layer.receive("member") == {"type": "chat.message", "text": "hi"}

    asyncio.run(main())


def test_worker_validates_arguments() -> None:
    with pytest.raises(ValueError):
        Worker(lambda *a: None, [], InMemoryChannelLayer())
    with pytest.raises(TypeError):
        Worker(lambda *a: None, ["bad name"], InMemoryChannelLayer())
