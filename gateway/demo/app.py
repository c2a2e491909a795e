"""The bundled example application (``gateway.demo:application``): "one room, five protocols".

Written with the project's own routers and consumers, as an application would be::

    http       /                       the index page
               /rooms/<room>/          a chat room's page (RoomPage, an AsyncHttpConsumer)
               /hello, /state, /echo   plain text, lifespan state, a streaming echo
    websocket  /ws/rooms/<room>/       the room (RoomConsumer, an AsyncJsonWebsocketConsumer)
    mqtt       rooms/+/#               posted to the room, then into the broker (MqttToRoom)
               #                       the built-in broker's behaviour, plus room messages
                                       published to subscribed clients (MqttRoomClient)
    email      <room>@localhost        posted to the room (RoomMail)
    sms        to DEMO_NUMBER          "#room text" posted to the room (RoomSms)

Rooms meet in the channel layer (``docs/demo.md`` walks through it).
"""

from __future__ import annotations

import json
import time
from typing import Any

from gateway.asgi.app import Receive, Scope, Send
from gateway.consumers import AsyncHttpConsumer
from gateway.demo.page import INDEX, room_page
from gateway.demo.rooms import (
    MqttRoomClient,
    MqttToRoom,
    RoomConsumer,
    RoomMail,
    RoomSms,
    valid_room,
)
from gateway.middleware import AllowedHostsOriginValidator
from gateway.routing import (
    EmailToRouter,
    ProtocolTypeRouter,
    SMSToRouter,
    TopicRouter,
    URLRouter,
    path,
    phone,
    regex,
    topic,
)

__all__ = ["DEMO_NUMBER", "application"]

#: The number the demo's SMS account receives at (the test webhook's default recipient).
DEMO_NUMBER = "+441134960000"


async def _respond(send: Any, status: int, body: bytes, content_type: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


async def index(scope: Scope, receive: Receive, send: Send) -> None:
    """``GET /``: the index page."""
    await _respond(send, 200, INDEX, b"text/html; charset=utf-8")


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    """``GET /hello``: plain text."""
    await _respond(send, 200, b"Hello, world!", b"text/plain")


async def state(scope: Scope, receive: Receive, send: Send) -> None:
    """``GET /state``: the time the application started (lifespan state)."""
    body = json.dumps({"started": scope.get("state", {}).get("started")}).encode()
    await _respond(send, 200, body, b"application/json")


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /echo``: the request body back, streamed."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/octet-stream")]})
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        await send({"type": "http.response.body", "body": message.get("body", b""), "more_body": True})
        if not message.get("more_body"):
            break
    await send({"type": "http.response.body", "body": b""})


class RoomPage(AsyncHttpConsumer):
    """``GET /rooms/<room>/``: the chat page."""

    async def handle(self, body: bytes) -> None:
        room = self.scope["url_route"]["kwargs"]["room"]
        if not valid_room(room):
            await self.send_response(404, b"Rooms are named a-z, 0-9, - and _ (at most 40).\n",
                                     headers=[(b"content-type", b"text/plain")])
            return
        await self.send_response(200, room_page(room), headers=[(b"content-type", b"text/html; charset=utf-8")])


async def lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    """Lifespan: remember when the application started (``/state``)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["started"] = time.time()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


application = ProtocolTypeRouter({
    "lifespan": lifespan,
    "http": URLRouter([
        path("", index),
        path("rooms/<str:room>/", RoomPage.as_asgi()),
        path("hello", hello),
        path("state", state),
        path("echo", echo),
    ]),
    # Pages of other sites may not open the room's WebSocket (default hosts: localhost, 127.0.0.1).
    "websocket": AllowedHostsOriginValidator(URLRouter([
        path("ws/rooms/<str:room>/", RoomConsumer.as_asgi()),
    ])),
    "mqtt": TopicRouter([
        topic("rooms/+/#", MqttToRoom.as_asgi()),
        topic("#", MqttRoomClient.as_asgi()),
    ]),
    "email": EmailToRouter([regex(r"^[a-z0-9][a-z0-9_-]{0,39}@localhost$", RoomMail.as_asgi())]),
    "sms": SMSToRouter([phone(DEMO_NUMBER, RoomSms.as_asgi())]),
})
