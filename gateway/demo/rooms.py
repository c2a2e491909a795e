# -*- test-case-name: tests.integration.test_demo -*-
"""One room, five protocols: the consumers of the demo (``docs/demo.md``).

Every message, whatever it came in by, becomes one channel-layer event::

    {"type": "room.message", "room": "lobby", "source": "web" | "mqtt" | "email" | "sms",
     "user": "...", "text": "...", "time": 1700000000.0}

sent to the group ``room.<room>`` (the room's web pages) and, unless it came from MQTT, to the
group ``demo.mqtt`` (MQTT clients, which get it as a publish to ``rooms/<room>/<source>`` when
one of their subscriptions matches; MQTT's own messages reach them through the broker).
The in-memory layer is enough: everything runs in the one daemon.
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from email.message import EmailMessage
from typing import Any

from gateway.consumers import (
    AsyncEmailConsumer,
    AsyncJsonWebsocketConsumer,
    AsyncMqttConsumer,
    AsyncSmsConsumer,
)
from gateway.layers import get_channel_layer
from gateway.routing import topic_matches

__all__ = [
    "ROOM",
    "MqttRoomClient",
    "MqttToRoom",
    "RoomConsumer",
    "RoomMail",
    "RoomSms",
    "announce",
    "recent",
    "valid_room",
]

#: Room names: what fits a group name, a topic level and an email local part alike.
ROOM = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
#: The group every MQTT connection of the demo joins.
MQTT_GROUP = "demo.mqtt"
_MAX_TEXT = 500
_RECENT = 50
_recent: dict[str, deque[dict[str, Any]]] = {}


def valid_room(name: str) -> bool:
    """Whether ``name`` can be a room."""
    return bool(ROOM.match(name))


def recent(room: str) -> list[dict[str, Any]]:
    """The room's last messages in this process (a page that joins starts with them)."""
    return list(_recent.get(room, ()))


async def announce(room: str, source: str, user: str, text: str) -> dict[str, Any]:
    """Post a message to a room: its web pages, and MQTT clients subscribed to it."""
    event = {"type": "room.message", "room": room, "source": source, "user": user[:80],
             "text": text[:_MAX_TEXT], "time": time.time()}
    log = _recent.get(room)
    if log is None:
        log = _recent[room] = deque(maxlen=_RECENT)
    log.append(event)
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(f"room.{room}", event)
        if source != "mqtt":
            await layer.group_send(MQTT_GROUP, event)
    return event


# -- the web: a chat page's WebSocket -------------------------------------------------------

class RoomConsumer(AsyncJsonWebsocketConsumer):
    """``/ws/rooms/<room>/``: sends ``{"name", "text"}`` to post; receives every room message."""

    async def connect(self) -> None:
        self.room = self.scope["url_route"]["kwargs"]["room"]
        if not valid_room(self.room):
            await self.close()
            return
        assert self.channel_layer is not None and self.channel_name is not None  # the demo's layer is configured
        await self.channel_layer.group_add(f"room.{self.room}", self.channel_name)
        await self.accept()
        for event in recent(self.room):
            await self.send_json(_public(event))

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            return
        text = str(content.get("text", "")).strip()
        name = str(content.get("name") or "web").strip() or "web"
        if text:
            await announce(self.room, "web", name, text)

    async def room_message(self, event: dict[str, Any]) -> None:
        """A message of this room, from any protocol."""
        await self.send_json(_public(event))

    async def disconnect(self, code: int) -> None:
        if valid_room(self.room) and self.channel_layer is not None and self.channel_name is not None:
            await self.channel_layer.group_discard(f"room.{self.room}", self.channel_name)


def _public(event: dict[str, Any]) -> dict[str, Any]:
    return {key: event[key] for key in ("room", "source", "user", "text", "time")}


# -- MQTT: publishes to rooms/<room>/... and the clients' subscriptions ----------------------

class MqttToRoom(AsyncMqttConsumer):
    """``TopicRouter`` route ``rooms/+/#``: a publish there is posted to the room, then
    forwarded into the broker as usual (MQTT subscribers get it from the broker)."""

    async def receive(self, topic: str, payload: bytes, qos: int, retain: bool, properties: dict[str, Any]) -> None:
        room = topic.split("/")[1]
        if valid_room(room) and payload:
            user = self.scope.get("username") or self.scope.get("client_id") or "mqtt"
            await announce(room, "mqtt", user, payload.decode("utf-8", "replace"))
        await self.forward(topic, payload, qos, retain, properties)


class MqttRoomClient(AsyncMqttConsumer):
    """The connection's application (``TopicRouter``'s ``#`` route): the broker's defaults for
    CONNECT, SUBSCRIBE and other topics, plus the rooms' messages from other protocols published
    to this client under ``rooms/<room>/<source>`` when a subscription of it matches."""

    filters: list[str]

    async def accept(self, session_present: bool | None = None, properties: dict[str, Any] | None = None) -> None:
        self.filters = []
        await super().accept(session_present, properties)
        if self.channel_layer is not None and self.channel_name is not None:
            await self.channel_layer.group_add(MQTT_GROUP, self.channel_name)

    async def subscribe(self, subscriptions: list[dict[str, Any]]) -> list[int]:
        codes = await super().subscribe(subscriptions)
        for item, code in zip(subscriptions, codes):
            if code < 0x80 and item.get("share_name") is None and item["filter"] not in self.filters:
                self.filters.append(item["filter"])
        return codes

    async def unsubscribe(self, topic_filters: list[str]) -> list[int]:
        self.filters = [f for f in getattr(self, "filters", []) if f not in topic_filters]
        return await super().unsubscribe(topic_filters)

    async def room_message(self, event: dict[str, Any]) -> None:
        """A room message from the web, mail or SMS: publish it to this client if it listens."""
        topic = f"rooms/{event['room']}/{event['source']}"
        if any(topic_matches(f, topic) for f in getattr(self, "filters", [])):
            payload = json.dumps({"user": event["user"], "text": event["text"], "source": event["source"]})
            await self.publish(topic, payload)

    async def disconnect(self, reason_code: int | None) -> None:
        if self.channel_layer is not None and self.channel_name is not None:
            await self.channel_layer.group_discard(MQTT_GROUP, self.channel_name)


# -- email: <room>@localhost -----------------------------------------------------------------

class RoomMail(AsyncEmailConsumer):
    """``EmailToRouter`` route ``<room>@localhost``: the subject and the start of the text."""

    async def receive(self, message: EmailMessage, raw: bytes) -> None:
        subject = str(message.get("Subject") or "").strip()
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content().strip() if body is not None else ""
        sender = str(message.get("From") or self.scope.get("sender") or "mail")
        line = f"{subject}: {text}" if subject and text else subject or text or "(empty message)"
        for recipient in self.scope["recipients"]:
            room = recipient.split("@", 1)[0].lower()
            if valid_room(room):
                await announce(room, "email", sender, line)
        await self.accept()


# -- SMS: "#room text" to the demo number ----------------------------------------------------

class RoomSms(AsyncSmsConsumer):
    """``SMSToRouter`` route for the demo number: ``#room text`` posts to that room, any other
    text to ``lobby``; the answer travels inline in the webhook reply."""

    async def receive(self, text: str, message: dict[str, Any]) -> None:
        room = "lobby"
        words = text.strip().split(None, 1)
        if words and words[0].startswith("#") and valid_room(words[0][1:].lower()):
            room = words[0][1:].lower()
            text = words[1] if len(words) > 1 else ""
        await announce(room, "sms", self.scope.get("from") or "sms", text.strip() or "(empty text)")
        await self.reply(f"Posted to #{room}")
