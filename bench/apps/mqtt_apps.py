"""MQTT workload apps for the gateway (bench/conf/mqtt-app.yaml).

consumer - the generic ``AsyncMqttConsumer``: accepts every client, grants what the broker's
           access rules allow, forwards each publish into the built-in broker.
"""

from gateway.consumers.mqtt import AsyncMqttConsumer

consumer = AsyncMqttConsumer.as_asgi()
