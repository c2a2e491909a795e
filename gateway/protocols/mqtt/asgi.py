# -*- test-case-name: tests.unit.mqtt.test_asgi -*-
"""The ASGI ``mqtt`` mapping: the connection scope and the event dictionaries.

See ``docs/asgi-mqtt.md`` for the specification (version :data:`SPEC_VERSION`). MQTT 5.0
properties travel as dictionaries keyed by :class:`~.properties.Properties` field names
(``{"content_type": "text/plain", "user_properties": [["k", "v"]]}``); absent properties are
left out. These helpers are shared by the gateway side (:mod:`.appdriver`), the consumers and
the test communicator.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from gateway.protocols.mqtt.packets import Connect, Publish, Subscribe, Unsubscribe, Will
from gateway.protocols.mqtt.properties import EMPTY_PROPERTIES, Properties
from gateway.protocols.mqtt.topics import parse_shared_subscription

__all__ = [
    "SPEC_VERSION",
    "broker_link",
    "connect_event",
    "disconnect_event",
    "mqtt_scope",
    "properties_from_dict",
    "properties_to_dict",
    "publish_event",
    "subscribe_event",
    "unsubscribe_event",
]

#: Version of the ``mqtt`` ASGI mapping (``scope["asgi"]["spec_version"]``).
SPEC_VERSION = "1.0"

_FIELDS = {f.name for f in fields(Properties)}
_PAIRS = "user_properties"
_TUPLES = ("subscription_identifiers",)
_PROTOCOL_VERSIONS = {4: "3.1.1", 5: "5.0"}


def properties_to_dict(properties: Properties) -> dict[str, Any]:
    """The set properties as a dict (``user_properties`` as a list of ``[name, value]``)."""
    if properties is EMPTY_PROPERTIES:
        return {}
    result: dict[str, Any] = {}
    for name in _FIELDS:
        value = getattr(properties, name)
        if value is None or value == ():
            continue
        if name == _PAIRS:
            value = [[key, text] for key, text in value]
        elif name in _TUPLES:
            value = list(value)
        result[name] = value
    return result


def properties_from_dict(values: dict[str, Any] | Properties | None) -> Properties:
    """A :class:`Properties` from an application's dict (unknown names raise ValueError)."""
    if values is None or values == {}:
        return EMPTY_PROPERTIES
    if isinstance(values, Properties):
        return values
    if not isinstance(values, dict):
        raise TypeError(f"MQTT properties must be a dict, got {type(values).__name__}")
    unknown = set(values) - _FIELDS
    if unknown:
        raise ValueError(f"unknown MQTT properties: {', '.join(sorted(unknown))}")
    converted: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        if name == _PAIRS:
            value = tuple((str(key), str(text)) for key, text in value)
        elif name in _TUPLES:
            value = tuple(int(item) for item in value)
        converted[name] = value
    return Properties(**converted) if converted else EMPTY_PROPERTIES


def _will(will: Will | None) -> dict[str, Any] | None:
    if will is None:
        return None
    return {
        "topic": will.topic,
        "payload": will.payload,
        "qos": will.qos,
        "retain": will.retain,
        "properties": properties_to_dict(will.properties),
    }


def mqtt_scope(
    connect: Connect, *, client_id: str, assigned: bool, transport: str,
    client: Any, server: Any, tls: dict[str, Any] | None, state: dict[str, Any] | None,
    websocket: dict[str, Any] | None = None, link: Any = None,
) -> dict[str, Any]:
    """The scope of one MQTT connection (never the password, nor authentication data)."""
    properties = properties_to_dict(connect.properties)
    properties.pop("authentication_data", None)
    extensions: dict[str, Any] = {}
    if link is not None:
        extensions["mqtt.broker"] = {"link": link}
    if tls is not None:
        extensions["tls"] = tls
    return {
        "type": "mqtt",
        "asgi": {"version": "3.0", "spec_version": SPEC_VERSION},
        "transport": transport,
        "protocol_level": connect.protocol_level,
        "protocol_version": _PROTOCOL_VERSIONS.get(connect.protocol_level, str(connect.protocol_level)),
        "client_id": client_id,
        "client_id_assigned": assigned,
        "clean_start": connect.clean_start,
        "keep_alive": connect.keep_alive,
        "username": connect.username,
        "will": _will(connect.will),
        "properties": properties,
        "client": list(client) if client is not None else None,
        "server": list(server) if server is not None else None,
        "tls": tls,
        "websocket": websocket,
        "state": dict(state) if state else {},
        "extensions": extensions,
    }


def broker_link(scope: dict[str, Any]) -> Any:
    """The :class:`~.broker.link.BrokerLink` of a scope, or None without a broker."""
    extension = scope.get("extensions", {}).get("mqtt.broker")
    return extension.get("link") if extension else None


def connect_event(connect: Connect) -> dict[str, Any]:
    """``mqtt.connect``: the credentials for the application to check."""
    props = connect.properties
    return {
        "type": "mqtt.connect",
        "password": connect.password,
        "authentication_method": props.authentication_method,
        "authentication_data": props.authentication_data,
    }


def publish_event(packet: Publish) -> dict[str, Any]:
    """``mqtt.publish`` from the client."""
    return {
        "type": "mqtt.publish",
        "topic": packet.topic,
        "payload": packet.payload,
        "qos": packet.qos,
        "retain": packet.retain,
        "dup": packet.dup,
        "packet_id": packet.packet_id,
        "properties": properties_to_dict(packet.properties),
    }


def subscribe_event(packet: Subscribe) -> dict[str, Any]:
    """``mqtt.subscribe``: one entry per requested filter."""
    subscriptions = []
    for sub in packet.subscriptions:
        share, inner = parse_shared_subscription(sub.topic_filter)
        subscriptions.append({
            "topic_filter": sub.topic_filter,
            "filter": inner,
            "share_name": share,
            "qos": sub.qos,
            "no_local": sub.no_local,
            "retain_as_published": sub.retain_as_published,
            "retain_handling": int(sub.retain_handling),
        })
    return {
        "type": "mqtt.subscribe",
        "packet_id": packet.packet_id,
        "subscriptions": subscriptions,
        "properties": properties_to_dict(packet.properties),
    }


def unsubscribe_event(packet: Unsubscribe) -> dict[str, Any]:
    """``mqtt.unsubscribe``."""
    return {
        "type": "mqtt.unsubscribe",
        "packet_id": packet.packet_id,
        "topic_filters": list(packet.topic_filters),
        "properties": properties_to_dict(packet.properties),
    }


def disconnect_event(reason_code: int | None, by_client: bool, will: bool, properties: Properties) -> dict[str, Any]:
    """``mqtt.disconnect``: the connection is over."""
    return {
        "type": "mqtt.disconnect",
        "reason_code": reason_code,
        "by_client": by_client,
        "publish_will": will,
        "properties": properties_to_dict(properties),
    }
