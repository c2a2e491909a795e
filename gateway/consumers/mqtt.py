"""Generic MQTT consumers: ``AsyncMqttConsumer`` and ``MqttConsumer`` (sync).

One instance per client connection (an ``mqtt`` scope, see ``docs/asgi-mqtt.md``). Hooks:

* ``connect()`` - the client asked to connect (``self.scope["username"]``, ``self.password``);
  the default checks the listener's users and accepts. Call ``accept(session_present=None,
  properties=None)`` or ``close(reason_code)``; ``raise DenyConnection`` refuses with 0x87.
* ``receive(topic, payload, qos, retain, properties)`` - a publish from the client; the default
  forwards it into the built-in broker (``forward``). The client's QoS 1/2 acknowledgement goes
  out when this returns; raising means no acknowledgement (the client sends it again).
* ``subscribe(subscriptions) -> reason codes`` and ``unsubscribe(topic_filters) -> reason codes``
  - the defaults apply the broker's access rules; return a lower QoS to downgrade, 0x87 to deny.
* ``disconnect(reason_code)`` - the connection is over.

Actions: ``publish(topic, payload, qos=0, retain=False, properties=None)`` delivers a message to
this client; ``forward(...)`` publishes into the broker as this client (reaching every
subscriber); ``close(reason_code)``.

``self.broker`` is the connection's :class:`~gateway.protocols.mqtt.broker.link.BrokerLink`
(None without a broker). When it is there, ``accept()`` opens the broker session first, so the
client gets the messages of its subscriptions without further code.

Layer messages: handlers are named after the message type as usual; do not use ``mqtt.*``
types for your own layer messages (``mqtt.publish`` is the client's publish).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from asgiref.sync import async_to_sync

from gateway.consumers.base import AsyncConsumer, SyncConsumer
from gateway.exceptions import AcceptConnection, DenyConnection, StopConsumer
from gateway.protocols.mqtt.asgi import broker_link

if TYPE_CHECKING:
    from gateway.protocols.mqtt.broker.link import BrokerLink

__all__ = ["AsyncMqttConsumer", "MqttConsumer"]

NOT_AUTHORIZED = 0x87
BAD_CREDENTIALS = 0x86
BAD_AUTHENTICATION_METHOD = 0x8C


def _publish_message(topic: str, payload: bytes | str, qos: int, retain: bool, properties: dict[str, Any] | None) -> dict[str, Any]:
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    message: dict[str, Any] = {"type": "mqtt.publish", "topic": topic, "payload": payload, "qos": qos, "retain": retain}
    if properties:
        message["properties"] = properties
    return message


def _default_grants(link: BrokerLink | None, subscriptions: list[dict[str, Any]]) -> list[int]:
    if link is not None:
        return list(link.grant([(s["topic_filter"], s["qos"]) for s in subscriptions]))
    return [min(int(s["qos"]), 2) for s in subscriptions]


class AsyncMqttConsumer(AsyncConsumer):
    """Async MQTT consumer (see the module documentation)."""

    password: bytes | None = None
    connect_event: dict[str, Any] = {}

    @property
    def broker(self) -> BrokerLink | None:
        """The connection's broker link (None without a broker)."""
        link: BrokerLink | None = broker_link(cast("dict[str, Any]", self.scope))
        return link

    async def mqtt_connect(self, message: dict[str, Any]) -> None:
        """Remember the credentials, call :meth:`connect`; handles Accept/DenyConnection."""
        self.password = message.get("password")
        self.connect_event = message
        try:
            await self.connect()
        except AcceptConnection:
            await self.accept()
        except DenyConnection:
            await self.close(NOT_AUTHORIZED)

    async def connect(self) -> None:
        """Called on CONNECT; the default checks the listener's users, then accepts."""
        if self.connect_event.get("authentication_method") is not None:
            await self.close(BAD_AUTHENTICATION_METHOD)
        elif self.broker is not None and not await self.broker.authenticate():
            await self.close(BAD_CREDENTIALS)
        else:
            await self.accept()

    async def accept(self, session_present: bool | None = None, properties: dict[str, Any] | None = None) -> None:
        """CONNACK success; with a broker, the broker session is opened first."""
        if self.broker is not None:
            present = await self.broker.open_session()
            if session_present is None:
                session_present = present
        message: dict[str, Any] = {"type": "mqtt.accept", "session_present": bool(session_present)}
        if properties:
            message["properties"] = properties
        await self.send(message)

    async def close(self, reason_code: int | None = None, properties: dict[str, Any] | None = None) -> None:
        """Refuse the CONNECT (before accept) or disconnect the client (after)."""
        message: dict[str, Any] = {"type": "mqtt.close"}
        if reason_code is not None:
            message["reason_code"] = reason_code
        if properties:
            message["properties"] = properties
        await self.send(message)

    async def mqtt_publish(self, message: dict[str, Any]) -> None:
        """A publish from the client: call :meth:`receive`."""
        await self.receive(message["topic"], message["payload"], message["qos"], message["retain"], message.get("properties") or {})

    async def receive(self, topic: str, payload: bytes, qos: int, retain: bool, properties: dict[str, Any]) -> None:
        """Handle a publish; the default forwards it into the broker."""
        await self.forward(topic, payload, qos, retain, properties)

    async def forward(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False, properties: dict[str, Any] | None = None) -> int:
        """Publish into the broker as this client (access rules apply); return the reason code.

        A refusal (>= 0x80) of a QoS 1/2 message is told to the client in its PUBACK/PUBREC.
        """
        if self.broker is None:
            return 0
        reason = int(await self.broker.publish(topic, payload, qos, retain, properties))
        if reason >= 0x80 and qos:
            await self.send({"type": "mqtt.puback", "reason_code": reason})
        return reason

    async def mqtt_subscribe(self, message: dict[str, Any]) -> None:
        """Call :meth:`subscribe` and answer with its reason codes."""
        codes = await self.subscribe(message["subscriptions"])
        await self.send({"type": "mqtt.suback", "packet_id": message["packet_id"], "reason_codes": list(codes)})

    async def subscribe(self, subscriptions: list[dict[str, Any]]) -> list[int]:
        """Reason codes for a SUBSCRIBE (granted QoS or >= 0x80); default: the access rules."""
        return _default_grants(self.broker, subscriptions)

    async def mqtt_unsubscribe(self, message: dict[str, Any]) -> None:
        """Call :meth:`unsubscribe` and answer."""
        codes = await self.unsubscribe(message["topic_filters"])
        await self.send({"type": "mqtt.unsuback", "packet_id": message["packet_id"], "reason_codes": list(codes)})

    async def unsubscribe(self, topic_filters: list[str]) -> list[int]:
        """Reason codes for an UNSUBSCRIBE (0x00, or 0x11 when there was no subscription)."""
        if self.broker is not None:
            return list(self.broker.unsubscribe_codes(topic_filters))
        return [0] * len(topic_filters)

    async def mqtt_auth(self, message: dict[str, Any]) -> None:
        """Enhanced authentication step; the default refuses (override for your method)."""
        await self.close(BAD_AUTHENTICATION_METHOD)

    async def mqtt_disconnect(self, message: dict[str, Any]) -> None:
        """Call :meth:`disconnect`, then stop."""
        await self.disconnect(message.get("reason_code"))
        raise StopConsumer()

    async def disconnect(self, reason_code: int | None) -> None:
        """Called when the connection is over."""

    async def publish(self, topic: str, payload: bytes | str = b"", qos: int = 0, retain: bool = False,
                      properties: dict[str, Any] | None = None) -> None:
        """Deliver a message to this client (QoS 1/2 retries are the gateway's)."""
        await self.send(_publish_message(topic, payload, qos, retain, properties))


class MqttConsumer(SyncConsumer):
    """Sync MQTT consumer: the same hooks as :class:`AsyncMqttConsumer`, as plain methods
    running on the sync thread pool."""

    password: bytes | None = None
    connect_event: dict[str, Any] = {}

    @property
    def broker(self) -> BrokerLink | None:
        """The connection's broker link (None without a broker)."""
        link: BrokerLink | None = broker_link(cast("dict[str, Any]", self.scope))
        return link

    def mqtt_connect(self, message: dict[str, Any]) -> None:
        """Remember the credentials, call :meth:`connect`; handles Accept/DenyConnection."""
        self.password = message.get("password")
        self.connect_event = message
        try:
            self.connect()
        except AcceptConnection:
            self.accept()
        except DenyConnection:
            self.close(NOT_AUTHORIZED)

    def connect(self) -> None:
        """Called on CONNECT; the default checks the listener's users, then accepts."""
        if self.connect_event.get("authentication_method") is not None:
            self.close(BAD_AUTHENTICATION_METHOD)
        elif self.broker is not None and not async_to_sync(self.broker.authenticate)():
            self.close(BAD_CREDENTIALS)
        else:
            self.accept()

    def accept(self, session_present: bool | None = None, properties: dict[str, Any] | None = None) -> None:
        """CONNACK success; with a broker, the broker session is opened first."""
        if self.broker is not None:
            present = async_to_sync(self.broker.open_session)()
            if session_present is None:
                session_present = present
        message: dict[str, Any] = {"type": "mqtt.accept", "session_present": bool(session_present)}
        if properties:
            message["properties"] = properties
        self.send(message)

    def close(self, reason_code: int | None = None, properties: dict[str, Any] | None = None) -> None:
        """Refuse the CONNECT (before accept) or disconnect the client (after)."""
        message: dict[str, Any] = {"type": "mqtt.close"}
        if reason_code is not None:
            message["reason_code"] = reason_code
        if properties:
            message["properties"] = properties
        self.send(message)

    def mqtt_publish(self, message: dict[str, Any]) -> None:
        """A publish from the client: call :meth:`receive`."""
        self.receive(message["topic"], message["payload"], message["qos"], message["retain"], message.get("properties") or {})

    def receive(self, topic: str, payload: bytes, qos: int, retain: bool, properties: dict[str, Any]) -> None:
        """Handle a publish; the default forwards it into the broker."""
        self.forward(topic, payload, qos, retain, properties)

    def forward(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False, properties: dict[str, Any] | None = None) -> int:
        """Publish into the broker as this client; return the reason code."""
        if self.broker is None:
            return 0
        reason = int(async_to_sync(self.broker.publish)(topic, payload, qos, retain, properties))
        if reason >= 0x80 and qos:
            self.send({"type": "mqtt.puback", "reason_code": reason})
        return reason

    def mqtt_subscribe(self, message: dict[str, Any]) -> None:
        """Call :meth:`subscribe` and answer with its reason codes."""
        codes = self.subscribe(message["subscriptions"])
        self.send({"type": "mqtt.suback", "packet_id": message["packet_id"], "reason_codes": list(codes)})

    def subscribe(self, subscriptions: list[dict[str, Any]]) -> list[int]:
        """Reason codes for a SUBSCRIBE; default: the access rules."""
        return _default_grants(self.broker, subscriptions)

    def mqtt_unsubscribe(self, message: dict[str, Any]) -> None:
        """Call :meth:`unsubscribe` and answer."""
        codes = self.unsubscribe(message["topic_filters"])
        self.send({"type": "mqtt.unsuback", "packet_id": message["packet_id"], "reason_codes": list(codes)})

    def unsubscribe(self, topic_filters: list[str]) -> list[int]:
        """Reason codes for an UNSUBSCRIBE."""
        if self.broker is not None:
            return list(self.broker.unsubscribe_codes(topic_filters))
        return [0] * len(topic_filters)

    def mqtt_auth(self, message: dict[str, Any]) -> None:
        """Enhanced authentication step; the default refuses."""
        self.close(BAD_AUTHENTICATION_METHOD)

    def mqtt_disconnect(self, message: dict[str, Any]) -> None:
        """Call :meth:`disconnect`, then stop."""
        self.disconnect(message.get("reason_code"))
        raise StopConsumer()

    def disconnect(self, reason_code: int | None) -> None:
        """Called when the connection is over."""

    def publish(self, topic: str, payload: bytes | str = b"", qos: int = 0, retain: bool = False,
                properties: dict[str, Any] | None = None) -> None:
        """Deliver a message to this client."""
        self.send(_publish_message(topic, payload, qos, retain, properties))
