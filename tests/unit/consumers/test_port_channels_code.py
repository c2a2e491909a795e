"""Port-your-Channels-code: the tutorial chat app, through WebsocketCommunicator.

(The lead's integration test runs the same ``application`` over a real WebSocket.)
"""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from asgiref.sync import async_to_sync

from gateway.layers import InMemoryChannelLayer
from gateway.testing import WebsocketCommunicator
from tests.unit.consumers.chat_tutorial import application

ORIGIN = [(b"origin", b"http://localhost:8000")]


@pytest.mark.parametrize("prefix", ["ws/chat", "ws/achat"])
def test_chat_room_broadcast(prefix: str) -> None:
    async def main() -> None:
        alice = WebsocketCommunicator(application, f"/{prefix}/lobby/", headers=ORIGIN)
        bob = WebsocketCommunicator(application, f"/{prefix}/lobby/", headers=ORIGIN)
        eve = WebsocketCommunicator(application, f"/{prefix}/other/", headers=ORIGIN)
        for comm in (alice, bob, eve):
            assert (await comm.connect())[0]
        await alice.send_to(text_data=json.dumps({"message": "hello"}))
        assert json.loads(await alice.receive_from()) == {"message": "hello"}
        assert json.loads(await bob.receive_from()) == {"message": "hello"}
        assert await eve.receive_nothing()
        await bob.disconnect()
        await alice.send_json_to({"message": "again"})
        assert await alice.receive_json_from() == {"message": "again"}
        await alice.disconnect()
        await eve.disconnect()

    asyncio.run(main())


def test_foreign_origin_and_unknown_path_are_rejected() -> None:
    async def main() -> None:
        evil = WebsocketCommunicator(application, "/ws/chat/lobby/", headers=[(b"origin", b"http://evil.example")])
        assert await evil.connect() == (False, 1000)
        lost = WebsocketCommunicator(application, "/ws/nowhere/", headers=ORIGIN)
        assert await lost.connect() == (False, 1000)

    asyncio.run(main())


def test_group_send_from_plain_thread_reaches_the_room(fresh_layer: InMemoryChannelLayer) -> None:
    async def main() -> None:
        comm = WebsocketCommunicator(application, "/ws/chat/lobby/", headers=ORIGIN)
        await comm.connect()
        errors: list[BaseException] = []

        def announce() -> None:
            try:
                async_to_sync(fresh_layer.group_send)("chat_lobby", {"type": "chat.message", "message": "from a thread"})
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=announce)
        thread.start()
        assert json.loads(await comm.receive_from(timeout=5)) == {"message": "from a thread"}
        thread.join(5)
        assert not errors
        await comm.disconnect()

    asyncio.run(main())
