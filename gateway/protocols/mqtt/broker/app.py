# -*- test-case-name: tests.unit.mqtt.test_broker_app -*-
"""The built-in broker as an ASGI application for ``mqtt`` scopes.

With ``consumer: application`` the gateway runs the configured application for every MQTT
connection. To keep broker behaviour in such a project, route to :data:`application` (or an
instance of a :class:`BrokerApplication` subclass), for instance as the connection application
of a ``TopicRouter``::

    application = ProtocolTypeRouter({
        "http": django_asgi_app,
        "mqtt": TopicRouter([
            topic("sensors/+/temperature", Temperatures.as_asgi()),   # store readings
            topic("#", BrokerApplication()),                           # everything else
        ]),
    })

Override :meth:`BrokerApplication.authenticate`, :meth:`~BrokerApplication.may_publish` or
:meth:`~BrokerApplication.may_subscribe` to replace the configured users and access rules.
It needs a listener with a broker (every MQTT listener has one).
"""

from __future__ import annotations

from typing import Any

from gateway.protocols.mqtt.asgi import broker_link
from gateway.protocols.mqtt.reasons import ReasonCode

__all__ = ["BrokerApplication", "application"]


class BrokerApplication:
    """An ASGI application that hands an MQTT connection to the built-in broker."""

    async def authenticate(self, scope: dict[str, Any], link: Any, event: dict[str, Any]) -> bool:
        """Whether the client may connect (default: the listener's users)."""
        if event.get("authentication_method") is not None:
            return False  # enhanced authentication needs an application of its own
        return bool(await link.authenticate(scope.get("username"), event.get("password")))

    def may_publish(self, scope: dict[str, Any], link: Any, topic: str) -> bool:
        """Whether the client may publish to ``topic`` (default: the access rules)."""
        return bool(link.may_publish(topic))

    def may_subscribe(self, scope: dict[str, Any], link: Any, topic_filter: str) -> bool:
        """Whether the client may subscribe to ``topic_filter`` (default: the access rules)."""
        return bool(link.may_subscribe(topic_filter))

    async def matches(self, scope: dict[str, Any]) -> bool:
        """Every MQTT scope (and every probe) is handled."""
        return scope.get("type") == "mqtt"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "mqtt":
            raise ValueError(f"BrokerApplication serves mqtt scopes, not {scope.get('type')!r}")
        link = broker_link(scope)
        if link is None:
            raise RuntimeError("this MQTT scope has no broker (scope['extensions']['mqtt.broker'])")
        while True:
            event = await receive()
            kind = event["type"]
            if kind == "mqtt.publish":
                await self._publish(scope, link, event, send)
            elif kind == "mqtt.subscribe":
                codes = []
                for sub in event["subscriptions"]:
                    if self.may_subscribe(scope, link, sub["topic_filter"]):
                        codes.append(min(sub["qos"], link.maximum_qos))
                    else:
                        codes.append(ReasonCode.NOT_AUTHORIZED)
                await send({"type": "mqtt.suback", "packet_id": event["packet_id"], "reason_codes": codes})
            elif kind == "mqtt.unsubscribe":
                codes = link.unsubscribe_codes(event["topic_filters"])
                await send({"type": "mqtt.unsuback", "packet_id": event["packet_id"], "reason_codes": codes})
            elif kind == "mqtt.connect":
                if not await self.authenticate(scope, link, event):
                    await send({"type": "mqtt.close", "reason_code": ReasonCode.BAD_USER_NAME_OR_PASSWORD})
                else:
                    present = await link.open_session()
                    await send({"type": "mqtt.accept", "session_present": present})
            elif kind == "mqtt.auth":
                await send({"type": "mqtt.close", "reason_code": ReasonCode.BAD_AUTHENTICATION_METHOD})
            elif kind == "mqtt.disconnect":
                return

    async def _publish(self, scope: dict[str, Any], link: Any, event: dict[str, Any], send: Any) -> None:
        topic = event["topic"]
        if not self.may_publish(scope, link, topic):
            reason = ReasonCode.NOT_AUTHORIZED
        else:
            reason = await link.publish(
                topic, event["payload"], event["qos"], event["retain"], event.get("properties"), check=False
            )
        if reason >= 0x80 and event["qos"]:
            await send({"type": "mqtt.puback", "packet_id": event["packet_id"], "reason_code": reason})


#: The ready-made broker application (``application: gateway.protocols.mqtt.broker:application``).
application = BrokerApplication()
