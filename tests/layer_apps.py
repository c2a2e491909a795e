"""Applications for the Redis layer's integration tests (real daemons, ``gateway worker``).

``tests.layer_apps:app`` routes:

* ``GET /stream?group=G[&group=H]`` — an :class:`AsyncHttpConsumer` that joins the groups with
  its channel and streams every layer message it gets as one JSON line (chunked). The first line
  is ``{"channel": <its channel name>, "groups": [...]}``. A message with ``"end": true`` ends the
  response. Leaving (client gone) discards the groups.
* ``POST /send?channel=C`` / ``POST /send?group=G`` — sends the JSON body through the layer from
  a consumer: ``200 {"ok": true}``, or ``503 {"error": ...}`` when the layer raised (Redis down),
  ``429`` for ``ChannelFull``.
* ``GET /stats`` — the layer's counters (``layer.stats()``) as JSON.
* WebSocket ``/ws?group=G`` — an ``AsyncJsonWebsocketConsumer`` that joins the groups (the
  consumer's ``groups`` machinery), sends ``{"channel": name, "groups": [...]}`` first, relays
  ``stream.message`` layer events as JSON, and sends ``{"to": C, "message": M}`` from the client
  through the layer (answering ``{"sent": true}``).
* worker channel ``jobs`` (``gateway worker jobs``): each ``job.run`` message is answered by a
  ``group_send`` of ``{"type": "stream.message", "from": "worker", "job": ...}`` to the message's
  ``reply_group``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from gateway.consumers import AsyncConsumer, AsyncHttpConsumer, AsyncJsonWebsocketConsumer
from gateway.exceptions import ChannelFull, StopConsumer
from gateway.layers import get_channel_layer
from gateway.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter, path


def _query(scope: dict[str, Any]) -> dict[str, list[str]]:
    return parse_qs(scope.get("query_string", b"").decode())


def _line(data: Any) -> bytes:
    return json.dumps(data, default=lambda v: v.decode("latin-1") if isinstance(v, bytes) else str(v)).encode() + b"\n"


class StreamConsumer(AsyncHttpConsumer):
    """Joins groups and streams layer messages to the client, one JSON line each."""

    groups_joined: list[str]

    async def handle(self, body: bytes) -> None:
        self.groups_joined = _query(self.scope).get("group", [])
        await self.send_headers(status=200, headers=[(b"content-type", b"application/x-ndjson")])
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.send_body(_line({"channel": self.channel_name, "groups": self.groups_joined}), more_body=True)

    async def http_request(self, message: dict[str, Any]) -> None:
        """Unlike the base class, keep the instance (and its channel) after ``handle()``."""
        if "body" in message:
            self.body.append(message["body"])
        if not message.get("more_body"):
            await self.handle(b"".join(self.body))

    async def stream_message(self, event: dict[str, Any]) -> None:
        await self.send_body(_line(event), more_body=not event.get("end"))
        if event.get("end"):
            await self.disconnect()
            raise StopConsumer()

    async def disconnect(self) -> None:
        for group in getattr(self, "groups_joined", []):
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception:  # noqa: BLE001 - Redis may be down; the membership then expires
                pass
        self.groups_joined = []


class SendConsumer(AsyncHttpConsumer):
    """Sends the request body (a JSON message) to ``?channel=`` or ``?group=``."""

    async def handle(self, body: bytes) -> None:
        query = _query(self.scope)
        message = json.loads(body)
        try:
            if "channel" in query:
                await self.channel_layer.send(query["channel"][0], message)
            else:
                await self.channel_layer.group_send(query["group"][0], message)
        except ChannelFull:
            await self.send_response(429, _line({"error": "channel full"}))
            return
        except ConnectionError as exc:  # RedisLayerUnavailable
            await self.send_response(503, _line({"error": str(exc), "kind": type(exc).__name__}))
            return
        await self.send_response(200, _line({"ok": True}))


async def stats(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The default layer's counters."""
    layer = get_channel_layer()
    body = _line(layer.stats() if layer is not None and hasattr(layer, "stats") else {})
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


class RoomSocket(AsyncJsonWebsocketConsumer):
    """A WebSocket in the groups of its ``?group=`` query."""

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        self.groups = _query(self.scope).get("group", [])
        await super().websocket_connect(message)

    async def connect(self) -> None:
        await self.accept()
        await self.send_json({"channel": self.channel_name, "groups": self.groups})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.channel_layer.send(content["to"], content["message"])
        await self.send_json({"sent": True})

    async def stream_message(self, event: dict[str, Any]) -> None:
        await self.send_json(event)


class RelayWorker(AsyncConsumer):
    """``gateway worker jobs``: answers each job with a group message."""

    async def job_run(self, event: dict[str, Any]) -> None:
        await self.channel_layer.group_send(
            event["reply_group"], {"type": "stream.message", "from": "worker", "job": event.get("job")})


urls = URLRouter([
    path("stream", StreamConsumer.as_asgi()),
    path("send", SendConsumer.as_asgi()),
    path("stats", stats),
    path("ws", RoomSocket.as_asgi()),
])

app = ProtocolTypeRouter({
    "http": urls,
    "websocket": urls,
    "channel": ChannelNameRouter({"jobs": RelayWorker.as_asgi()}),
})
