"""Long polling and server-sent events with ``AsyncHttpConsumer`` (tests of both kinds).

``LongPollConsumer`` is the example of Channels' documentation ("Generic Consumers",
AsyncHttpConsumer), unchanged; ``GroupLongPoll`` only adds it to a group so that a test can
reach it. ``application`` serves them on a daemon, with ``/send/<group>/`` to ``group_send`` a
JSON message and ``/stats/`` to read how many consumers have run ``disconnect()``.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.consumers import AsyncHttpConsumer
from gateway.routing import ProtocolTypeRouter, URLRouter, path
from tests.apps import plain_lifespan


class LongPollConsumer(AsyncHttpConsumer):
    async def handle(self, body):  # type: ignore[no-untyped-def]
        await self.send_headers(headers=[
            (b"Content-Type", b"application/json"),
        ])
        # Headers are only sent after the first body event.
        # Set "more_body" to tell the interface server to not
        # finish the response yet:
        await self.send_body(b"", more_body=True)

    async def chat_message(self, event):  # type: ignore[no-untyped-def]
        # Send JSON and finish the response:
        await self.send_body(json.dumps(event).encode("utf-8"))


DISCONNECTS: dict[str, int] = {"poll": 0, "events": 0}


class GroupLongPoll(LongPollConsumer):
    """The documentation's consumer, in group ``poll``."""

    async def handle(self, body: bytes) -> None:
        await self.channel_layer.group_add("poll", self.channel_name)
        await super().handle(body)

    async def disconnect(self) -> None:
        await self.channel_layer.group_discard("poll", self.channel_name)
        DISCONNECTS["poll"] += 1


class EventStream(AsyncHttpConsumer):
    """Server-sent events: every ``event.message`` in group ``events`` is one event; an
    ``event.end`` ends the stream."""

    async def handle(self, body: bytes) -> None:
        await self.channel_layer.group_add("events", self.channel_name)
        await self.send_headers(headers=[(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")])
        await self.send_body(b": connected\n\n", more_body=True)

    async def event_message(self, event: dict[str, Any]) -> None:
        await self.send_body(f"data: {json.dumps(event['data'])}\n\n".encode(), more_body=True)

    async def event_end(self, event: dict[str, Any]) -> None:
        await self.send_body(b"event: end\ndata: {}\n\n")

    async def disconnect(self) -> None:
        await self.channel_layer.group_discard("events", self.channel_name)
        DISCONNECTS["events"] += 1


class GroupSend(AsyncHttpConsumer):
    """POST /send/<group>/ with a JSON message: ``group_send`` it; answers 202."""

    async def handle(self, body: bytes) -> None:
        group = self.scope["url_route"]["kwargs"]["group"]
        await self.channel_layer.group_send(group, json.loads(body))
        await self.send_response(202, b"", headers=[(b"content-type", b"text/plain")])


class Stats(AsyncHttpConsumer):
    async def handle(self, body: bytes) -> None:
        await self.send_response(200, json.dumps(DISCONNECTS).encode(), headers=[(b"content-type", b"application/json")])


async def lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await plain_lifespan(receive, send)


application = ProtocolTypeRouter({
    "http": URLRouter([
        path("poll/", GroupLongPoll.as_asgi()),
        path("events/", EventStream.as_asgi()),
        path("send/<slug:group>/", GroupSend.as_asgi()),
        path("stats/", Stats.as_asgi()),
    ]),
    "lifespan": lifespan,
})
