"""ASGI applications the MQTT integration tests run in real daemons (``tests.mqtt_apps:...``).

* ``app``: a project with HTTP and MQTT: readings on ``sensors/+/temperature`` are stored (and
  re-published on ``stored/<sensor>``), everything else is the built-in broker; device
  ``blocked`` is refused, ``$private/#`` subscriptions are denied and ``downgrade/#`` ones are
  granted at QoS 0; a publish to ``fail/now`` makes the consumer raise (no acknowledgement).
  ``GET /readings`` lists the stored readings (JSON).
* ``http_only``: an application without an ``mqtt`` route (``consumer: auto`` picks the broker).
"""

from __future__ import annotations

import json
from typing import Any

from gateway.consumers.mqtt import AsyncMqttConsumer
from gateway.protocols.mqtt.broker import BrokerApplication
from gateway.routing import ProtocolTypeRouter, TopicRouter, topic
from tests.apps import plain_lifespan

READINGS: list[dict[str, Any]] = []
FAILURES: dict[str, int] = {}


class Temperatures(AsyncMqttConsumer):
    """Stores readings, then forwards them into the broker under ``stored/<sensor>``."""

    async def receive(self, topic: str, payload: bytes, qos: int, retain: bool, properties: dict[str, Any]) -> None:
        sensor = topic.split("/")[1]
        READINGS.append({"sensor": sensor, "value": payload.decode(), "client": self.scope["client_id"]})
        await self.forward(f"stored/{sensor}", payload, qos, False, properties)


class Device(BrokerApplication):
    """The broker, with the application's own rules on top of the configured ones."""

    async def authenticate(self, scope: dict[str, Any], link: Any, event: dict[str, Any]) -> bool:
        if scope["client_id"] == "blocked":
            return False
        return await super().authenticate(scope, link, event)

    def may_subscribe(self, scope: dict[str, Any], link: Any, topic_filter: str) -> bool:
        return not topic_filter.startswith("$private/") and super().may_subscribe(scope, link, topic_filter)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def downgrading_send(message: dict[str, Any]) -> None:
            if message["type"] == "mqtt.suback":
                codes = message["reason_codes"]
                message = dict(message, reason_codes=[
                    0 if sub["filter"].startswith("downgrade/") and code < 0x80 else code
                    for sub, code in zip(pending.pop(message["packet_id"], []), codes)
                ] or codes)
            await send(message)

        pending: dict[int, list[dict[str, Any]]] = {}

        async def recording_receive() -> dict[str, Any]:
            event = await receive()
            if event["type"] == "mqtt.subscribe":
                pending[event["packet_id"]] = event["subscriptions"]
            if event["type"] == "mqtt.publish" and event["topic"] == "fail/now":
                FAILURES[scope["client_id"]] = FAILURES.get(scope["client_id"], 0) + 1
                if FAILURES[scope["client_id"]] == 1:
                    raise RuntimeError("the consumer failed on purpose")
            return event

        await super().__call__(scope, recording_receive, downgrading_send)


async def http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = json.dumps(READINGS).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


app = ProtocolTypeRouter({
    "http": http,
    "mqtt": TopicRouter([topic("sensors/+/temperature", Temperatures.as_asgi()), topic("#", Device())]),
})


async def http_only(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await plain_lifespan(receive, send)
        return
    await http(scope, receive, send)


http_only_app = ProtocolTypeRouter({"http": http})
