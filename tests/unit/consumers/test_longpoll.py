"""An AsyncHttpConsumer whose response is still open when handle() returns keeps receiving
layer messages until the body is complete or the client leaves (long polling, server-sent
events). Channels stops such a consumer when handle() returns (django/channels#1747)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from gateway.layers import InMemoryChannelLayer
from gateway.testing import HttpCommunicator
from tests.longpoll_apps import DISCONNECTS, EventStream, GroupLongPoll, LongPollConsumer


async def _wait_until(condition: Callable[[], object], timeout: float = 5) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


async def _wait_for_member(layer: InMemoryChannelLayer, group: str) -> None:
    await _wait_until(lambda: layer.groups.get(group))


def test_documented_long_poll_answers_with_the_layer_message(fresh_layer: InMemoryChannelLayer) -> None:
    async def main() -> None:
        before = DISCONNECTS["poll"]
        comm = HttpCommunicator(GroupLongPoll.as_asgi(), "GET", "/poll/")
        await comm.send_input({"type": "http.request", "body": b"", "more_body": False})
        start = await comm.expect("http.response.start")
        assert start["headers"] == [(b"Content-Type", b"application/json")]
        assert (await comm.expect("http.response.body")) == {"type": "http.response.body", "body": b"", "more_body": True}
        await _wait_for_member(fresh_layer, "poll")
        assert await comm.receive_nothing()  # handle() returned; the consumer waits for the layer
        await fresh_layer.group_send("poll", {"type": "chat.message", "text": "hello"})
        final = await comm.expect("http.response.body")
        assert json.loads(final["body"]) == {"type": "chat.message", "text": "hello"}
        assert not final["more_body"]
        await comm.wait()  # the consumer ended by itself once the body was complete
        assert DISCONNECTS["poll"] == before + 1
        assert "poll" not in fresh_layer.groups

    asyncio.run(main())


def test_client_leaving_ends_an_open_response(fresh_layer: InMemoryChannelLayer) -> None:
    async def main() -> None:
        before = DISCONNECTS["events"]
        comm = HttpCommunicator(EventStream.as_asgi(), "GET", "/events/")
        await comm.send_input({"type": "http.request", "body": b"", "more_body": False})
        await comm.expect("http.response.start")
        assert (await comm.expect("http.response.body"))["body"] == b": connected\n\n"
        await _wait_for_member(fresh_layer, "events")
        for n in range(3):
            await fresh_layer.group_send("events", {"type": "event.message", "data": {"n": n}})
            chunk = await comm.expect("http.response.body")
            assert chunk == {"type": "http.response.body", "body": f'data: {{"n": {n}}}\n\n'.encode(), "more_body": True}
        await comm.send_input({"type": "http.disconnect"})
        await comm.wait()
        assert DISCONNECTS["events"] == before + 1
        assert "events" not in fresh_layer.groups

    asyncio.run(main())


def test_plain_documented_consumer_receives_on_its_own_channel(fresh_layer: InMemoryChannelLayer) -> None:
    async def main() -> None:
        comm = HttpCommunicator(LongPollConsumer.as_asgi(), "GET", "/")
        await comm.send_input({"type": "http.request", "body": b"", "more_body": False})
        await comm.expect("http.response.start")
        await comm.expect("http.response.body")
        await _wait_until(lambda: len(fresh_layer.channels))  # the consumer's channel, waiting
        (channel,) = list(fresh_layer.channels)
        await fresh_layer.send(channel, {"type": "chat.message", "n": 1})
        assert json.loads((await comm.expect("http.response.body"))["body"]) == {"type": "chat.message", "n": 1}
        await comm.wait()

    asyncio.run(main())


def test_a_complete_response_still_stops_at_handle_return() -> None:
    from gateway.consumers import AsyncHttpConsumer

    class Hello(AsyncHttpConsumer):
        async def handle(self, body: bytes) -> None:
            await self.send_response(200, b"hi")

    async def main() -> None:
        comm = HttpCommunicator(Hello.as_asgi(), "GET", "/")
        assert (await comm.get_response())["body"] == b"hi"
        await comm.wait()

    asyncio.run(main())
