"""MQTT listener configuration and building."""

from __future__ import annotations

import asyncio
import textwrap
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock

from gateway.config import ConfigError, load_config_text
from gateway.listener import ListenerContext
from gateway.protocols.mqtt.broker import hash_password
from gateway.protocols.mqtt.config import MqttListenerConfig
from gateway.protocols.mqtt.listener import MqttFactory, MqttListener, brokers_of, build_listener
from gateway.protocols.mqtt.websocket import MqttWebSocketFactory
from gateway.routing import ProtocolTypeRouter

HASH = hash_password("pw", "pbkdf2_sha256", iterations=1000)

CONFIG = f"""
application: tests.mqtt_apps:app
listeners:
  - name: mqtt
    protocol: mqtt
    endpoint: tcp:0:interface=127.0.0.1
    versions: ["5.0"]
    maximum_qos: 1
    limits: {{max_packet_size: 64KiB, receive_maximum: 10, max_inflight: 5, max_keep_alive: 60}}
    timeouts: {{connect: 3s}}
    broker:
      allow_anonymous: false
      users: {{alice: "{HASH}"}}
      access:
        - {{users: [alice], publish: ["a/%u/#"], subscribe: ["a/#"]}}
  - name: ws
    protocol: mqtt
    endpoint: tcp:0:interface=127.0.0.1
    transport: websocket
    websocket: {{path: /ws}}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(textwrap.dedent(text), "gw.yaml")
    return [str(p) for p in info.value.problems]


def test_configuration_loads() -> None:
    config = load_config_text(CONFIG, "gw.yaml")
    mqtt, ws = config.listeners
    assert isinstance(mqtt, MqttListenerConfig) and isinstance(ws, MqttListenerConfig)
    options = mqtt.server_options()
    assert (options.max_packet_size, options.receive_maximum, options.max_outbound_inflight) == (65536, 10, 5)
    assert (options.maximum_qos, options.max_keep_alive, options.connect_timeout) == (1, 60, 3.0)
    assert options.protocol_levels == frozenset({5})
    assert mqtt.broker.users == {"alice": HASH} and mqtt.broker.access[0].publish == ("a/%u/#",)
    assert ws.transport == "websocket" and ws.websocket.path == "/ws"
    assert ws.server_options().protocol_levels == frozenset({4, 5})


def test_configuration_errors() -> None:
    text = "\n".join(problems("""
        application: tests.mqtt_apps:app
        listeners:
          - {name: m, protocol: mqtt, endpoint: "tcp:0", versions: ["3.1"], maximum_qos: 3}
    """))
    assert "'3.1' is not one of 3.1.1, 5.0" in text and "maximum_qos" in text
    text = "\n".join(problems("""
        application: tests.mqtt_apps:app
        listeners:
          - name: m
            protocol: mqtt
            endpoint: tcp:0
            broker:
              users: {bob: "plaintext"}
              access: [{publish: ["a/#/b"]}]
    """))
    assert "user 'bob'" in text and "'#' must be the whole last level" in text


def test_no_users_and_no_anonymous_is_an_error() -> None:
    found = problems("""
        application: tests.mqtt_apps:app
        listeners:
          - {name: m, protocol: mqtt, endpoint: "tcp:0", broker: {allow_anonymous: false}}
    """)
    assert any("nobody could connect" in p for p in found)


def context(app: Any, daemon: Any, loop: asyncio.AbstractEventLoop, shared: dict[str, Any] | None = None) -> ListenerContext:
    return ListenerContext(reactor=MemoryReactorClock(), loop=loop, app=app, state={}, daemon=daemon,
                           shared=shared if shared is not None else {})


def test_build_listeners_sharing_one_broker() -> None:
    config = load_config_text(CONFIG, "gw.yaml")
    loop = asyncio.new_event_loop()
    shared: dict[str, Any] = {}  # what one service's listeners share
    try:
        mqtt = build_listener(config.listeners[0], context(None, config, loop, shared))
        ws = build_listener(config.listeners[1], context(None, config, loop, shared))
        assert isinstance(mqtt, MqttListener) and isinstance(mqtt.factory, MqttFactory)
        assert isinstance(ws.factory, MqttWebSocketFactory)
        assert mqtt.factory.acceptableProtocols() == [b"mqtt"]  # ALPN on TLS endpoints
        assert mqtt.settings.broker is ws.settings.broker  # one broker for the service
        assert build_listener(config.listeners[0], context(None, config, loop, {})).settings.broker is not mqtt.settings.broker
    finally:
        loop.close()


def test_two_services_in_one_process_have_their_own_brokers() -> None:
    from gateway.service import GatewayService

    config = load_config_text(CONFIG, "gw.yaml")
    loop = asyncio.new_event_loop()
    try:
        first, second = (GatewayService(config, reactor=MemoryReactorClock(), loop=loop, install_signal_handlers=False)
                         for _ in range(2))
        brokers = [{listener.settings.broker for listener in service.listeners} for service in (first, second)]
        assert len(brokers[0]) == 1 and len(brokers[1]) == 1  # the listeners of a service share one
        assert brokers[0] != brokers[1]
        assert brokers_of(first.listener_context(config.listeners[0], config)).entries["default"].broker in brokers[0]
    finally:
        loop.close()


@pytest.mark.parametrize("routes,expected", [({"http": object()}, "broker"), ({"mqtt": object()}, "application")])
def test_consumer_auto(routes: dict[str, Any], expected: str) -> None:
    config = load_config_text(CONFIG, "gw.yaml")

    async def scenario() -> str:
        listener = build_listener(config.listeners[1], context(ProtocolTypeRouter(routes), config, asyncio.get_running_loop()))
        await listener.prepare()
        await listener.entry.broker.stop()
        return listener.settings.consumer

    assert asyncio.run(scenario()) == expected


def test_deny_rules_load_and_are_checked() -> None:
    config = load_config_text(textwrap.dedent("""
        application: tests.mqtt_apps:app
        listeners:
          - name: m
            protocol: mqtt
            endpoint: tcp:0
            broker:
              access:
                - {publish: ["#"], subscribe: ["#"]}
                - {users: ["*"], effect: deny, subscribe: ["secret/#"]}
    """), "gw.yaml")
    rules = config.listeners[0].broker.access  # type: ignore[attr-defined]
    assert [r.effect for r in rules] == ["allow", "deny"]
    text = "\n".join(problems("""
        application: tests.mqtt_apps:app
        listeners:
          - name: m
            protocol: mqtt
            endpoint: tcp:0
            broker:
              access:
                - {effect: deny}
                - {effect: forbid, publish: ["#"]}
    """))
    assert "a deny rule needs publish or subscribe filters" in text
    assert "'forbid' is not one of: allow, deny" in text
    text = "\n".join(problems("""
        application: tests.mqtt_apps:app
        listeners:
          - {name: m, protocol: mqtt, endpoint: "tcp:0", broker: {access: [{effect: deny, subscribe: ["s/#"]}]}}
    """))
    assert "only deny rules" in text and "add an allow rule" in text
