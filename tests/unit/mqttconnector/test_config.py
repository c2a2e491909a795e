"""The ``mqtt-connector`` configuration: broker URLs, versions, subscriptions, TLS, credentials;
and the pure ASGI side (the scope, the checks of what the application sends)."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from hypothesis import given, strategies as st

from gateway.config import load_config_text
from gateway.config.errors import ConfigError, InvalidValue
from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.mqtt import ConnAck, Connect, Properties, Subscription
from gateway.protocols.mqtt.asgi import AuthStep, Deliver
from gateway.protocols.mqttconnector.asgi import ConnectorOutbox, connector_scope, disconnect_reason, perform_check
from gateway.protocols.mqttconnector.config import MqttConnectorConfig, parse_broker_url


def load(body: str, environ: dict[str, str] | None = None) -> MqttConnectorConfig:
    text = "application: tests.connector_apps:app\nlisteners:\n  - name: c\n    protocol: mqtt-connector\n" + body
    listener: MqttConnectorConfig = load_config_text(text, "gw.yaml", environ=environ or {}).listeners[0]
    return listener


def problems(body: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(body)
    return [str(problem) for problem in caught.value.problems]


@pytest.mark.parametrize("url, expected", [
    ("mqtt://broker.example", ("mqtt", "broker.example", 1883, False, False, "mqtt://broker.example:1883")),
    ("mqtts://broker.example:8884", ("mqtts", "broker.example", 8884, True, False, "mqtts://broker.example:8884")),
    ("ws://10.0.0.1:8083", ("ws", "10.0.0.1", 8083, False, True, "ws://10.0.0.1:8083/mqtt")),
    ("wss://b.example/ws/mqtt", ("wss", "b.example", 443, True, True, "wss://b.example:443/ws/mqtt")),
    ("MQTT://[::1]:1884", ("mqtt", "::1", 1884, False, False, "mqtt://[::1]:1884")),
])
def test_broker_urls(url: str, expected: tuple[Any, ...]) -> None:
    address = parse_broker_url(url)
    assert (address.scheme, address.host, address.port, address.tls, address.websocket, address.url) == expected


@pytest.mark.parametrize("url, message", [
    ("http://b.example", "scheme must be mqtt, mqtts, ws or wss"),
    ("mqtt://user:pw@b.example", "no credentials in the broker URL"),
    ("mqtt://b.example:99999", "not a number in 1-65535"),
    ("mqtt:///x", "names no host"),
    ("mqtt://b.example/path", "has no path"),
    ("mqtt://b.example?x=1", "no query"),
    ("", "expected a broker URL"),
])
def test_bad_broker_urls(url: str, message: str) -> None:
    with pytest.raises(InvalidValue, match=message):
        parse_broker_url(url)


@given(st.text(max_size=40))
def test_any_text_is_a_url_or_a_clear_error(text: str) -> None:
    try:
        address = parse_broker_url(text)
    except InvalidValue:
        return
    assert address.scheme in ("mqtt", "mqtts", "ws", "wss") and 1 <= address.port <= 65535 and address.host


def test_defaults_and_credentials_from_the_environment() -> None:
    config = load("    broker: mqtts://b.example\n    username: gw\n    password: ${PW}\n", {"PW": "s3cret"})
    assert config.password == "s3cret" and "s3cret" not in repr(config)
    assert config.environment["password"] == ("PW",)
    assert config.version == "5.0" and config.protocol_level == 5 and config.clean_start is False
    assert config.session_expiry == 86400 and config.keep_alive == 60
    assert config.client_id_for_broker() == f"gateway-{socket.gethostname()}-c"


def test_versions_and_client_ids() -> None:
    assert load("    broker: mqtt://b\n    version: 5.0\n").version == "5.0"
    assert load("    broker: mqtt://b\n    version: 3.1.1\n").protocol_level == 4
    assert load("    broker: mqtt://b\n    client_id: worker-%h\n").client_id_for_broker() == f"worker-{socket.gethostname()}"
    assert "listeners[0].version: expected 5.0 or 3.1.1, got '3.1'" in problems("    broker: mqtt://b\n    version: \"3.1\"\n")[0]


def test_rules_across_keys() -> None:
    text = "\n".join(problems("""    broker: mqtt://b
    endpoint: tcp:1883
    version: 3.1.1
    client_id: ""
    tls: {server_name: b.example}
    subscriptions:
      - {filter: "a/#", qos: 1, no_local: true}
    reconnect_initial: 10s
    reconnect_max: 1s
"""))
    assert "endpoint: an mqtt-connector connects out" in text
    assert "tls: applies to mqtts:// and wss:// brokers" in text
    assert "subscriptions[0]: no_local and retain_handling need MQTT 5.0" in text
    assert "client_id: MQTT 3.1.1 needs a client id for a persistent session" in text
    assert "reconnect_max: must not be shorter than reconnect_initial" in text
    text = "\n".join(problems("""    broker: mqtt://b
    subscriptions: [{filter: "a/#", qos: 3}, {filter: "a/#/b"}, {filter: "$share/g/a/#", no_local: true}]
    tls: {key_file: /etc/hostname}
"""))
    assert "subscriptions[2].no_local: cannot be set on a shared subscription" in text
    assert "subscriptions[0].qos: QoS is 0, 1 or 2, got 3" in text
    assert "subscriptions[1].filter: topic filter 'a/#/b'" in text
    assert "tls.key_file: a key without cert_file" in text


def test_a_publish_channel_needs_its_layer() -> None:
    from gateway.listener import ListenerContext
    from gateway.protocols.mqttconnector.listener import build_listener

    config = load("    broker: mqtt://b\n    publish_channel: out\n")
    context = ListenerContext(reactor=None, loop=None, app=None, state={}, daemon=None, layers=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="publish_channel needs the channel layer 'default'"):
        build_listener(config, context)


# -- the ASGI side ------------------------------------------------------------------------------------

def test_the_scope_is_the_listener_scope_plus_connector() -> None:
    connect = Connect("gw-1", 5, False, 30, "user", b"password", None, Properties(session_expiry_interval=60))
    connack = ConnAck(True, 0, Properties(receive_maximum=20))
    scope = connector_scope(connect, connack, name="c", broker="mqtt://b:1883",
                            subscriptions=(Subscription("a/#", 1),), websocket_path=None,
                            client=("10.0.0.1", 1883), server=("10.0.0.2", 40000), tls=None, state={"x": 1})
    assert scope["type"] == "mqtt" and scope["client_id"] == "gw-1" and scope["username"] == "user"
    assert scope["client"] == ["10.0.0.1", 1883] and scope["transport"] == "tcp"
    assert scope["properties"] == {"session_expiry_interval": 60}
    assert scope["connector"] == {"name": "c", "broker": "mqtt://b:1883", "session_present": True,
                                  "properties": {"receive_maximum": 20},
                                  "subscriptions": [{"topic_filter": "a/#", "qos": 1, "granted": None}]}
    assert "password" not in repr(scope)
    ws = connector_scope(connect, ConnAck(False, 0, Properties(assigned_client_identifier="given")), name="c",
                         broker="ws://b:80/mqtt", subscriptions=(), websocket_path="/mqtt", client=None, server=None,
                         tls=None, state=None)
    assert ws["transport"] == "websocket" and ws["websocket"]["path"] == "/mqtt"
    assert ws["client_id"] == "given" and ws["client_id_assigned"] is True


def test_what_the_application_sends() -> None:
    outbox = ConnectorOutbox()
    action = outbox.check({"type": "mqtt.publish", "topic": "a", "payload": "text", "qos": 1})
    assert isinstance(action, Deliver) and action.payload == b"text" and action.qos == 1
    for bad in ({"type": "mqtt.publish", "topic": "", "payload": b""}, {"type": "mqtt.publish", "topic": "a", "qos": 3},
                {"type": "chat.message"}, "text"):
        with pytest.raises(LocalProtocolError):
            outbox.check(bad)
    assert disconnect_reason(0x87, 5) == 0x80 and disconnect_reason(0x04, 5) == 0x04 and disconnect_reason(0x87, 4) == 0x87
    with pytest.raises(LocalProtocolError, match="no enhanced authentication"):
        perform_check(AuthStep(0x18, Properties()))
