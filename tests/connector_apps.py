"""ASGI applications the MQTT connector tests run in real daemons (``tests.connector_apps:...``).

* ``app``: ``mqtt`` scopes go to a ``TopicRouter``: ``in/#`` to :class:`Recorder` (each message it
  handled is a JSON line in the file named by ``CONNECTOR_LOG``; a payload ``fail-once:...``
  makes it raise the first time it sees it; ``in/echo/X`` is published back as ``out/X`` with
  the same QoS). ``http``: ``POST /publish`` with a JSON ``mqtt.publish`` message (``payload`` as
  text) sends it to the channel ``mqtt-out`` of the default channel layer (a connector's
  ``publish_channel``); ``GET /scopes`` lists the connector scopes seen (JSON).
* ``http_only``: no ``mqtt`` route (a connector refuses to start with it).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from gateway.consumers.mqtt import AsyncMqttConsumer
from gateway.layers import get_channel_layer
from gateway.routing import ProtocolTypeRouter, TopicRouter, topic

FAILED: set[str] = set()
SCOPES: list[dict[str, Any]] = []


def record(entry: dict[str, Any]) -> None:
    """Append one line to the file ``CONNECTOR_LOG`` names."""
    path = os.environ.get("CONNECTOR_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")


class Recorder(AsyncMqttConsumer):
    """Records what it handled; fails once on ``fail-once:`` payloads; echoes ``in/echo/X``."""

    async def connect(self) -> None:
        connector = self.scope.get("connector")
        SCOPES.append({key: self.scope[key] for key in ("client_id", "client", "protocol_version", "clean_start",
                                                         "transport", "username", "connector")})
        record({"event": "connect", "session_present": connector["session_present"] if connector else None})
        await self.accept()

    async def mqtt_publish(self, message: dict[str, Any]) -> None:
        delay = float(os.environ.get("CONNECTOR_DELAY", "0"))
        if delay:
            await asyncio.sleep(delay)  # a slow consumer: messages wait in the broker
        text = message["payload"].decode()
        if text.startswith("fail-once:") and text not in FAILED:
            FAILED.add(text)
            raise RuntimeError("the consumer failed on purpose")
        record({"event": "publish", "topic": message["topic"], "payload": text, "qos": message["qos"],
                "dup": message["dup"], "client_id": self.scope["client_id"]})
        if message["topic"].startswith("in/echo/"):
            await self.publish("out/" + message["topic"][len("in/echo/"):], message["payload"], message["qos"])


async def http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b""
    while True:
        event = await receive()
        body += event.get("body", b"")
        if not event.get("more_body"):
            break
    if scope["path"] == "/publish":
        message = json.loads(body)
        message["payload"] = message["payload"].encode()
        layer = get_channel_layer()
        assert layer is not None
        await layer.send("mqtt-out", message)
        answer = b"sent"
    else:
        answer = json.dumps(SCOPES).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": answer})


app = ProtocolTypeRouter({"http": http, "mqtt": TopicRouter([topic("in/#", Recorder.as_asgi())])})

http_only = ProtocolTypeRouter({"http": http})
