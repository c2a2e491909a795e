"""MQTT over WebSocket: on the listener's own endpoint, and mounted on an HTTP listener."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from gateway.protocols.mqtt import (
    ConnAck, Connect, Disconnect, Publish, ReasonCode, ServerOptions, SubAck, Subscribe, Subscription, decode, encode,
)
from gateway.protocols.mqtt.adapter import MqttSettings
from gateway.protocols.mqtt.broker import Broker
from gateway.protocols.mqtt.websocket import MqttWebSocketFactory, MqttWebSocketProtocol, mount_websocket
from tests.unit.http.harness import Harness as HttpHarness


def handshake(path: str = "/mqtt", protocols: str | None = "mqtt") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", "Host: localhost", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if protocols:
        lines.append(f"Sec-WebSocket-Protocol: {protocols}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def frame(payload: bytes, opcode: int = 0x2) -> bytes:
    """A masked client frame."""
    mask = os.urandom(4)
    size = len(payload)
    head = bytes([0x80 | opcode])
    head += bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + size.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def frames_payload(data: bytes) -> bytes:
    """The concatenated payloads of the server's (unmasked) binary frames."""
    out = b""
    while data:
        size = data[1] & 0x7F
        start = 2
        if size == 126:
            size, start = int.from_bytes(data[2:4], "big"), 4
        if data[0] & 0x0F == 0x2:
            out += data[start:start + size]
        data = data[start + size:]
    return out


def packets(data: bytes, level: int = 5) -> list[Any]:
    view = memoryview(frames_payload(data))
    result = []
    while view:
        packet, used = decode(view, protocol_level=level)
        result.append(packet)
        view = view[used:]
    return result


@pytest.fixture
def settings() -> Iterator[MqttSettings]:
    loop = asyncio.new_event_loop()
    clock = MemoryReactorClock()
    yield MqttSettings(loop=loop, reactor=clock, options=ServerOptions(), broker=Broker(clock, loop))
    loop.close()


class Transport(StringTransport):
    """Like a TCP transport, unregistering a producer that is not there is no error."""

    def unregisterProducer(self) -> None:
        if self.producer is not None:
            super().unregisterProducer()


def ws_client(factory: MqttWebSocketFactory) -> tuple[Any, StringTransport]:
    protocol = factory.buildProtocol(None)
    transport = Transport(hostAddress=IPv4Address("TCP", "127.0.0.1", 8883),
                                peerAddress=IPv4Address("TCP", "192.0.2.9", 5000))
    protocol.makeConnection(transport)
    return protocol, transport


def test_mqtt_over_websocket_endpoint(settings: MqttSettings) -> None:
    factory = MqttWebSocketFactory(settings, path="/mqtt")
    sub, sub_transport = ws_client(factory)
    sub.dataReceived(handshake())
    head = sub_transport.value()
    assert head.startswith(b"HTTP/1.1 101") and b"Sec-WebSocket-Protocol: mqtt" in head
    sub_transport.clear()
    # A packet split across two frames, and two packets in one frame.
    data = encode(Connect("ws-sub", 5), 5) + encode(Subscribe(1, (Subscription("t", 0),)), 5)
    sub.dataReceived(frame(data[:5]) + frame(data[5:]))
    connack, suback = packets(sub_transport.value())
    assert isinstance(connack, ConnAck) and connack.reason_code == 0 and suback == SubAck(1, (0,))
    sub_transport.clear()
    pub, pub_transport = ws_client(factory)
    pub.dataReceived(handshake(protocols="mqttv3.1"))
    pub.dataReceived(frame(encode(Connect("ws-pub", 4), 4) + encode(Publish("t", b"over ws"), 4)))
    assert packets(sub_transport.value()) == [Publish("t", b"over ws")]
    assert len(factory.connections) == 2
    pub.shutdown()  # 3.1.1: no DISCONNECT, just closed
    sub.shutdown()
    assert Disconnect(ReasonCode.SERVER_SHUTTING_DOWN) in packets(sub_transport.value())


@pytest.mark.parametrize("path,protocols,status", [("/other", "mqtt", b"404"), ("/mqtt", None, b"400"),
                                                   ("/mqtt", "chat", b"400")])
def test_handshake_refusals(settings: MqttSettings, path: str, protocols: str | None, status: bytes) -> None:
    factory = MqttWebSocketFactory(settings, path="/mqtt")
    protocol, transport = ws_client(factory)
    protocol.dataReceived(handshake(path, protocols))
    assert transport.value().split(b" ")[1] == status


def test_text_frames_close_the_connection(settings: MqttSettings) -> None:
    factory = MqttWebSocketFactory(settings, path="/mqtt")
    protocol, transport = ws_client(factory)
    protocol.dataReceived(handshake())
    protocol.dataReceived(frame(b"CONNECT", opcode=0x1))  # [MQTT-6.0.0-1]
    assert transport.disconnecting or transport.disconnected


def test_mount_on_an_http_listener(settings: MqttSettings) -> None:
    seen: list[str] = []

    def previous_hook(protocol: Any, request: Any, scope: dict[str, Any]) -> bool:
        seen.append(scope["path"])
        protocol.transport.loseConnection()
        return True

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise AssertionError("the HTTP application must not see the upgrade")

    http = HttpHarness(app, websocket=previous_hook)
    try:
        mount_websocket(http.settings, settings, "/mqtt")
        http.send(handshake("/chat"))
        assert seen == ["/chat"]  # other paths go to the hook installed before
        http2 = HttpHarness(app, websocket=http.settings.websocket)
        try:
            connect = encode(Connect("mounted", 5), 5)
            http2.send(handshake("/mqtt") + frame(connect))  # the CONNECT right behind the head
            raw = http2.transport.value()
            assert raw.startswith(b"HTTP/1.1 101")
            body = raw.split(b"\r\n\r\n", 1)[1]
            (connack,) = packets(body)
            assert isinstance(connack, ConnAck) and connack.reason_code == 0
            assert isinstance(http2.transport.protocol, MqttWebSocketProtocol)  # took the transport over
            assert "mounted" in settings.broker.sessions
        finally:
            http2.close()
    finally:
        http.close()


def test_mount_on_http_in_one_call() -> None:
    from gateway.config import load_config_text
    from gateway.listener import ListenerContext
    from gateway.protocols.mqtt.listener import mount_on_http
    from gateway.routing import ProtocolTypeRouter

    config = load_config_text(
        "application: tests.mqtt_apps:app\n"
        "listeners:\n  - {name: m, protocol: mqtt, endpoint: 'tcp:0', websocket: {path: /live/mqtt}}\n",
        "gw.yaml",
    )

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise AssertionError("not for HTTP")

    http = HttpHarness(app)
    try:
        context = ListenerContext(reactor=http.clock, loop=http.loop, app=ProtocolTypeRouter({"http": app}),
                                  state={}, daemon=config)
        mount = mount_on_http(http.settings, config.listeners[0], context)
        assert mount.path == "/live/mqtt"
        assert mount.factory.mqtt_settings.consumer == "broker"  # auto: the app has no mqtt route
        http.send(handshake("/live/mqtt") + frame(encode(Connect("via-http", 4), 4)))
        (connack,) = packets(http.transport.value().split(b"\r\n\r\n", 1)[1], level=4)
        assert isinstance(connack, ConnAck) and connack.reason_code == 0
        assert "via-http" in mount.factory.mqtt_settings.broker.sessions
        http.loop.run_until_complete(mount.close())
    finally:
        http.close()
