"""Trivial consumers for bench/connector_bench.py: each counts the messages it is given and, at the
``BENCH_N``-th, writes ``{"n": N, "first": t, "last": t}`` (monotonic seconds of the first and the
last message) to the file ``BENCH_RESULT`` names.

consumer   - the gateway's connector (bench/conf/connector.yaml): a generic AsyncMqttConsumer
             whose receive() only counts.
Bench      - mqttasgi's MqttConsumer (Channels), the same counting (``mqttasgi ... connector_apps:Bench``);
             it subscribes to BENCH_TOPIC at BENCH_QOS in connect(), as mqttasgi applications do.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

N = int(os.environ.get("BENCH_N", "0"))
RESULT = os.environ.get("BENCH_RESULT", "")
STATE = {"count": 0, "first": 0.0}


def count() -> None:
    STATE["count"] += 1
    if STATE["count"] == 1:
        STATE["first"] = time.monotonic()
    if STATE["count"] == N:
        with open(RESULT, "w") as handle:
            json.dump({"n": N, "first": STATE["first"], "last": time.monotonic()}, handle)


try:
    from gateway.consumers.mqtt import AsyncMqttConsumer
except ImportError:  # the mqttasgi venv has no gateway
    pass
else:
    class Counter(AsyncMqttConsumer):
        async def receive(self, topic: str, payload: bytes, qos: int, retain: bool, properties: dict[str, Any]) -> None:
            count()

    consumer = Counter.as_asgi()

try:
    from mqttasgi.consumers import MqttConsumer
except ImportError:  # the gateway's venv has no mqttasgi
    pass
else:
    from django.conf import settings

    if not settings.configured:  # Channels reads CHANNEL_LAYERS; no layer here
        settings.configure(CHANNEL_LAYERS={})

    class Bench(MqttConsumer):
        async def connect(self) -> None:
            await self.subscribe(os.environ.get("BENCH_TOPIC", "bench/#"), int(os.environ.get("BENCH_QOS", "1")))

        async def receive(self, mqtt_message: dict[str, Any]) -> None:
            count()

        async def disconnect(self) -> None:
            pass
