"""Client helpers for the MQTT integration tests (no tests here): paho, raw sockets, daemons."""

from __future__ import annotations

import queue
import socket
import threading
import time
from typing import Any

from gateway.protocols.mqtt import Connect, Packet, decode, encode

try:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.properties import Properties as PahoProperties
    from paho.mqtt.packettypes import PacketTypes
except ImportError:  # pragma: no cover - paho is a test dependency
    paho = None  # type: ignore[assignment]

V311 = 4
V5 = 5


def mqtt_listener(name: str, endpoint: str = "tcp:0:interface=127.0.0.1", extra: str = "") -> str:
    """A YAML list item for an MQTT listener."""
    lines = [f"  - name: {name}", "    protocol: mqtt", f'    endpoint: "{endpoint}"']
    lines += ["    " + line for line in extra.strip("\n").splitlines()] if extra.strip() else []
    return "\n".join(lines)


class Client:
    """A paho client running its network loop in a thread; messages land in ``messages``."""

    def __init__(self, address: str, client_id: str, version: int = V5, *, transport: str = "tcp",
                 clean: bool = True, expiry: int | None = None, username: str | None = None,
                 password: str | None = None, will: tuple[str, bytes, int, bool] | None = None,
                 tls_ca: str | None = None, ws_path: str = "/mqtt", keepalive: int = 30,
                 topic_alias_maximum: int | None = None) -> None:
        host, port = address.rsplit(":", 1)
        self.version = version
        self.messages: queue.Queue[Any] = queue.Queue()
        self.connected = threading.Event()
        self.connack: tuple[bool, int] | None = None
        self.subacks: queue.Queue[list[int]] = queue.Queue()
        protocol = paho.MQTTv5 if version == V5 else paho.MQTTv311
        kwargs: dict[str, Any] = {}
        if version == V311:
            kwargs["clean_session"] = clean
        self.paho = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                                transport=transport, reconnect_on_failure=False, **kwargs)
        if transport == "websockets":
            self.paho.ws_set_options(path=ws_path)
        if tls_ca is not None:
            self.paho.tls_set(ca_certs=tls_ca)
        if username is not None:
            self.paho.username_pw_set(username, password)
        if will is not None:
            self.paho.will_set(will[0], will[1], will[2], will[3])
        self.paho.on_connect = self._on_connect
        self.paho.on_message = lambda client, userdata, message: self.messages.put(message)
        self.paho.on_subscribe = self._on_subscribe
        props = None
        if version == V5 and (expiry is not None or topic_alias_maximum is not None):
            props = PahoProperties(PacketTypes.CONNECT)
            if expiry is not None:
                props.SessionExpiryInterval = expiry
            if topic_alias_maximum is not None:
                props.TopicAliasMaximum = topic_alias_maximum
        connect_kwargs: dict[str, Any] = {"keepalive": keepalive}
        if version == V5:
            connect_kwargs["clean_start"] = clean
            connect_kwargs["properties"] = props
        self.paho.connect(host, int(port), **connect_kwargs)
        self.paho.loop_start()
        if not self.connected.wait(10):
            raise TimeoutError("no CONNACK")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self.connack = (bool(flags.session_present), int(reason_code.value))
        self.connected.set()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        self.subacks.put([int(code.value) for code in reason_codes])

    def subscribe(self, *filters: tuple[str, int]) -> list[int]:
        self.paho.subscribe(list(filters))
        return self.subacks.get(timeout=10)

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        info = self.paho.publish(topic, payload, qos, retain)
        info.wait_for_publish(10)
        if not info.is_published():
            raise TimeoutError(f"publish to {topic} not acknowledged")

    def get(self, timeout: float = 5) -> Any:
        return self.messages.get(timeout=timeout)

    def collect(self, count: int, timeout: float = 10) -> list[Any]:
        deadline = time.monotonic() + timeout
        got = []
        while len(got) < count:
            got.append(self.messages.get(timeout=max(0.01, deadline - time.monotonic())))
        return got

    def nothing_before(self, marker_topic: str) -> bool:
        """Publish a marker to ``marker_topic`` (which this client subscribes to) and wait for it:
        True if it is the next message, i.e. nothing else arrived before it. Use it once whatever
        must not happen would already have happened (the broker delivers in order to one client)."""
        payload = f"marker-{time.monotonic_ns()}".encode()
        self.publish(marker_topic, payload, 1)
        message = self.get(timeout=10)
        return (message.topic, message.payload) == (marker_topic, payload)

    def close(self) -> None:
        """Disconnect, stop the network thread, close paho's sockets (its socket pair too)."""
        if self.connack is not None and self.connack[1] == 0:
            self.paho.disconnect()
        self.paho.loop_stop()
        self.paho._reset_sockets()  # else the garbage collector finds them open


class Raw:
    """A raw TCP MQTT client speaking through our codec (for abrupt and malformed cases)."""

    def __init__(self, address: str, level: int = V5) -> None:
        host, port = address.rsplit(":", 1)
        self.level = level
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.buffer = b""

    def send(self, *packets: Packet | bytes) -> None:
        self.sock.sendall(b"".join(p if isinstance(p, bytes) else encode(p, self.level) for p in packets))

    def connect(self, client_id: str, **fields: Any) -> Packet:
        self.send(Connect(client_id, self.level, **fields))
        return self.read()

    def read(self, timeout: float = 10) -> Packet:
        """The next packet; raises ConnectionError when the server closed first."""
        self.sock.settimeout(timeout)
        while True:
            if self.buffer:
                packet, used = decode(memoryview(self.buffer), protocol_level=self.level)
                if packet is not None:
                    self.buffer = self.buffer[used:]
                    return packet
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the server")
            self.buffer += data

    def closed_after(self, timeout: float = 10) -> list[Packet]:
        """Everything until the server closes the connection (then the socket is closed)."""
        packets = []
        try:
            while True:
                packets.append(self.read(timeout))
        except ConnectionError:
            return packets
        finally:
            self.sock.close()

    def close(self) -> None:
        self.sock.close()
