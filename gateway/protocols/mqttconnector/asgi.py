# -*- test-case-name: tests.unit.mqttconnector.test_config -*-
"""The ASGI side of a connector connection, pure: the listener's ``mqtt`` scope and events, seen
from the connector, and what the application's messages become.

A connector connection is one ``mqtt`` scope, as a client's connection to our listener is, so a
``TopicRouter`` and the consumers of ``gateway.consumers.mqtt`` serve both. What differs
(``docs/asgi-mqtt.md``, "Connecting to an existing broker"):

* the MQTT client is the gateway: ``client_id``, ``username``, ``clean_start``, ``keep_alive``,
  ``protocol_level`` and ``properties`` describe the connector's own CONNECT; ``client`` is the
  address of the far end, the broker, and ``server`` the local address;
* ``scope["connector"]`` says which connector and broker, whether the broker kept the session,
  its CONNACK properties, and the subscriptions with what the broker granted (filled in as the
  SUBACK arrives);
* ``mqtt.connect`` comes once the broker accepted the connection; it carries no password.
  ``mqtt.accept`` is taken note of; ``mqtt.close`` (before or after it) ends the connection and
  the connector connects again after its backoff;
* ``mqtt.publish`` events are the broker's messages for the subscriptions, acknowledged once
  handled (:class:`~gateway.protocols.mqtt.asgi.HandlingRules`, as for the listener);
  ``mqtt.publish`` messages from the application are published to the broker;
* ``mqtt.disconnect`` ends the connection (``by_client``: the broker sent DISCONNECT).

The message order is the listener's :class:`~gateway.protocols.mqtt.asgi.ScopeState`;
``mqtt.auth`` (the connector does no enhanced authentication) is refused by :func:`perform_check`.
"""

from __future__ import annotations

from typing import Any

from gateway.asgi.types import MqttScope
from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.mqtt.asgi import AuthStep, Deliver, ScopeState, mqtt_scope, properties_to_dict
from gateway.protocols.mqtt.packets import ConnAck, Connect, Subscription
from gateway.protocols.mqttconnector.core import CLIENT_DISCONNECT_CODES

__all__ = ["ConnectorOutbox", "connect_event", "connector_scope", "disconnect_reason", "perform_check"]

#: ``mqtt.connect`` of a connector connection: the broker accepted it; nothing to check.
CONNECT_EVENT: dict[str, Any] = {
    "type": "mqtt.connect", "password": None, "authentication_method": None, "authentication_data": None,
}


def connect_event() -> dict[str, Any]:
    """``mqtt.connect`` (a fresh dict each time: applications may keep or change it)."""
    return dict(CONNECT_EVENT)


def connector_scope(
    connect: Connect, connack: ConnAck, *, name: str, broker: str, subscriptions: tuple[Subscription, ...],
    websocket_path: str | None, client: Any, server: Any, tls: dict[str, Any] | None,
    state: dict[str, Any] | None,
) -> MqttScope:
    """The scope of one connector connection (see the module documentation). Never the
    password; ``properties`` are our CONNECT's, ``connector["properties"]`` the CONNACK's."""
    client_id = connack.properties.assigned_client_identifier or connect.client_id
    websocket = None
    if websocket_path is not None:
        websocket = {"path": websocket_path, "headers": [], "subprotocol": "mqtt"}
    scope = mqtt_scope(
        connect, client_id=client_id, assigned=connack.properties.assigned_client_identifier is not None,
        transport="websocket" if websocket is not None else "tcp", client=client, server=server, tls=tls,
        state=state, websocket=websocket,
    )
    scope["connector"] = {
        "name": name,
        "broker": broker,
        "session_present": bool(connack.session_present),
        "properties": properties_to_dict(connack.properties),
        "subscriptions": [
            {"topic_filter": sub.topic_filter, "qos": sub.qos, "granted": None} for sub in subscriptions
        ],
    }
    return scope


def disconnect_reason(code: int, level: int) -> int:
    """The DISCONNECT reason for an application's ``mqtt.close``: its code when a client may
    send it (5.0 §3.14.2.1), else 0x80 Unspecified error (3.1.1 DISCONNECTs carry none)."""
    if level == 4 or code in CLIENT_DISCONNECT_CODES:
        return code
    return 0x80


def perform_check(action: Any) -> None:
    """Refuse what a connector cannot do (``mqtt.auth``: no enhanced authentication)."""
    if action.__class__ is AuthStep:
        raise LocalProtocolError("mqtt.auth: the connector does no enhanced authentication")


class ConnectorOutbox:
    """Checks ``mqtt.publish`` messages that come from the channel layer (``publish_channel``)
    exactly as a consumer's ``send()`` is checked (the listener's rules for ``mqtt.publish``)."""

    def __init__(self) -> None:
        self._order: ScopeState[Any] = ScopeState()
        self._order.app_send({"type": "mqtt.accept"})  # publishing is what comes after accept

    def check(self, message: Any) -> Deliver:
        """The message as a :class:`Deliver` action.

        Raises:
            LocalProtocolError: not an ``mqtt.publish`` message, or a malformed one.
        """
        if not isinstance(message, dict) or message.get("type") != "mqtt.publish":
            kind = message.get("type") if isinstance(message, dict) else type(message).__name__
            raise LocalProtocolError(f"expected an mqtt.publish message, got {kind!r}")
        action = self._order.app_send(message)
        if not isinstance(action, Deliver):  # pragma: no cover - mqtt.publish gives Deliver
            raise LocalProtocolError("not a publish")
        return action
