"""Configuration of MQTT connectors (``protocol: mqtt-connector``): the gateway as a client of
an existing broker, its subscriptions handed to the application as ``mqtt`` scopes
(``docs/asgi-mqtt.md``, "Connecting to an existing broker")."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar, Literal
from urllib.parse import urlsplit

from gateway.config.errors import InvalidValue
from gateway.config.schema import ListenerConfig, positive
from gateway.config.units import Duration, Size
from gateway.protocols.email.config import check_readable
from gateway.protocols.mqtt.codec import MAX_PACKET_SIZE

__all__ = [
    "BrokerAddress", "ConnectorLimitsConfig", "ConnectorSubscriptionConfig", "ConnectorTimeoutsConfig",
    "ConnectorTlsConfig", "MqttConnectorConfig", "parse_broker_url",
]

#: URL scheme -> (TLS, WebSocket, default port).
SCHEMES: dict[str, tuple[bool, bool, int]] = {
    "mqtt": (False, False, 1883),
    "mqtts": (True, False, 8883),
    "ws": (False, True, 80),
    "wss": (True, True, 443),
}


@dataclass(frozen=True)
class BrokerAddress:
    """Where a broker is, from its URL (never with credentials in it)."""

    scheme: str
    host: str
    port: int
    #: The WebSocket path (``ws``/``wss``; ``/mqtt`` when the URL has none).
    path: str = "/mqtt"

    @property
    def tls(self) -> bool:
        """Whether the connection is encrypted (``mqtts``, ``wss``)."""
        return SCHEMES[self.scheme][0]

    @property
    def websocket(self) -> bool:
        """Whether MQTT goes over WebSocket (``ws``, ``wss``)."""
        return SCHEMES[self.scheme][1]

    @property
    def url(self) -> str:
        """The URL, for logs and the scope (``mqtts://broker.example.org:8883``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        path = self.path if self.websocket else ""
        return f"{self.scheme}://{host}:{self.port}{path}"


def parse_broker_url(value: object) -> BrokerAddress:
    """``mqtt://host[:port]``, ``mqtts://``, ``ws://host[:port][/path]`` or ``wss://``.

    Raises:
        InvalidValue: another scheme, no host, a bad port, or credentials in the URL.
    """
    if not isinstance(value, str) or not value:
        raise InvalidValue(f"expected a broker URL such as mqtts://broker.example.org:8883, got {value!r}")
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise InvalidValue(f"the broker URL scheme must be mqtt, mqtts, ws or wss, got {value!r}")
    if parts.username is not None or parts.password is not None:
        raise InvalidValue("no credentials in the broker URL: set username and password (from ${ENV_VARIABLES})")
    try:
        port = parts.port
    except ValueError:
        raise InvalidValue(f"the port of {value!r} is not a number in 1-65535") from None
    host = parts.hostname
    if not host:
        raise InvalidValue(f"the broker URL {value!r} names no host")
    if parts.query or parts.fragment:
        raise InvalidValue("the broker URL takes no query or fragment")
    websocket = SCHEMES[scheme][1]
    if parts.path and parts.path != "/" and not websocket:
        raise InvalidValue(f"an {scheme}:// URL has no path (only ws:// and wss:// do)")
    path = parts.path if websocket and parts.path else "/mqtt"
    return BrokerAddress(scheme, host, port or SCHEMES[scheme][2], path)


def _parse_version(value: object) -> str:
    # YAML reads a bare 5.0 as a float and 3.1.1 as a string.
    if value in (5, 5.0, "5", "5.0"):
        return "5.0"
    if value in ("3.1.1", "4"):
        return "3.1.1"
    raise InvalidValue(f"expected 5.0 or 3.1.1, got {value!r}")


def _check_filter(value: str) -> None:
    from gateway.protocols.mqtt.topics import InvalidTopicError, validate_topic_filter

    try:
        validate_topic_filter(value)
    except InvalidTopicError as exc:
        raise InvalidValue(str(exc)) from None


def _check_qos(value: int) -> None:
    if value not in (0, 1, 2):
        raise InvalidValue(f"QoS is 0, 1 or 2, got {value}")


@dataclass(frozen=True, kw_only=True)
class ConnectorSubscriptionConfig:
    """One subscription the connector makes on every connection."""

    filter: str = field(metadata={"doc": "Topic filter (+ and # wildcards); $share/GROUP/FILTER is a shared subscription: the daemons subscribing with one GROUP split the messages.", "check": _check_filter})
    qos: int = field(default=1, metadata={"doc": "Maximum QoS asked for: 1 or 2 for messages that must not be lost (acknowledged only once handled).", "check": _check_qos})
    no_local: bool = field(default=False, metadata={"doc": "5.0: do not receive what this connector publishes itself (not on shared subscriptions)."})
    retain_handling: int = field(default=0, metadata={"doc": "5.0: retained messages on subscribing: 0 always, 1 only for a new subscription, 2 never."})

    def check(self) -> Iterable[tuple[str, str]]:
        if self.retain_handling not in (0, 1, 2):
            yield "retain_handling", "must be 0, 1 or 2"
        if self.no_local and self.filter.startswith("$share/"):
            yield "no_local", "cannot be set on a shared subscription (MQTT 5.0 §3.8.3.1)"


@dataclass(frozen=True, kw_only=True)
class ConnectorTlsConfig:
    """TLS to the broker (``mqtts://``, ``wss://``): its certificate is always verified."""

    ca_file: str | None = field(default=None, metadata={"doc": "PEM file of the CAs to trust for the broker's certificate (default: the system's).", "check": check_readable})
    server_name: str | None = field(default=None, metadata={"doc": "Name to verify in the broker's certificate when it differs from the URL's host."})
    cert_file: str | None = field(default=None, metadata={"doc": "PEM file of a client certificate (and its key, unless key_file is given), for brokers that ask for one.", "check": check_readable})
    key_file: str | None = field(default=None, metadata={"doc": "PEM file of the client certificate's private key.", "check": check_readable})

    def check(self) -> Iterable[tuple[str, str]]:
        if self.key_file is not None and self.cert_file is None:
            yield "key_file", "a key without cert_file: give the client certificate too"


@dataclass(frozen=True, kw_only=True)
class ConnectorLimitsConfig:
    """Sizes and counts, with safe defaults."""

    receive_maximum: int = field(default=64, metadata={"doc": "QoS 1/2 messages the broker may send before the application handled them (5.0 Receive Maximum); reading pauses at it.", "check": positive})
    max_packet_size: Size = field(default=Size(1024 * 1024), metadata={"doc": "Largest packet accepted from the broker (advertised in 5.0)."})
    topic_alias_maximum: int = field(default=10, metadata={"doc": "Topic aliases the broker may use towards the connector (5.0; 0: none)."})
    max_queued_messages: int = field(default=1000, metadata={"doc": "Outgoing QoS 1/2 messages held while disconnected or beyond the broker's Receive Maximum; when full, publish_channel is not read and send() waits.", "check": positive})
    max_app_queue: int = field(default=256, metadata={"doc": "Messages waiting for the application before reading from the broker pauses.", "check": positive})

    def check(self) -> Iterable[tuple[str, str]]:
        if self.receive_maximum > 65535:
            yield "receive_maximum", "must be at most 65535"
        if not 2 <= self.max_packet_size <= MAX_PACKET_SIZE:
            yield "max_packet_size", f"must be between 2 bytes and {MAX_PACKET_SIZE} bytes"
        if not 0 <= self.topic_alias_maximum <= 65535:
            yield "topic_alias_maximum", "must be in 0..65535"


@dataclass(frozen=True, kw_only=True)
class ConnectorTimeoutsConfig:
    """Timers of a connector."""

    connect: Duration = field(default=Duration(10.0), metadata={"doc": "Time to connect: TCP, TLS, WebSocket handshake and the broker's CONNACK.", "check": positive})


@dataclass(frozen=True, kw_only=True)
class MqttConnectorConfig(ListenerConfig):
    """Connects to an MQTT broker: the messages of its subscriptions go to the application as an ``mqtt`` scope per connection, and what the application publishes goes to the broker."""

    needs_endpoint: ClassVar[bool] = False

    broker: str = field(metadata={"doc": "Broker URL: mqtt://host:1883, mqtts://host:8883 (TLS), ws://host:port/path or wss://... (MQTT over WebSocket; path default /mqtt).", "check": parse_broker_url})
    client_id: str | None = field(default=None, metadata={"doc": "Client identifier (%h: this host's name); one per daemon (default gateway-%h-NAME). Persistent sessions follow it."})
    username: str | None = field(default=None, metadata={"doc": "User name (use ${ENV_VAR})."})
    password: str | None = field(default=None, repr=False, metadata={"doc": "Password (use ${ENV_VAR}); never logged, never in a scope."})
    version: Literal["5.0", "3.1.1"] = field(default="5.0", metadata={"doc": "MQTT version: 5.0 or 3.1.1.", "parse": _parse_version})
    keep_alive: Duration = field(default=Duration(60.0), metadata={"doc": "Keep Alive: a PINGREQ after this long without sending; the broker's Server Keep Alive wins (5.0).", "check": positive})
    clean_start: bool = field(default=False, metadata={"doc": "Start a new session on every connection; false (default) keeps the session, so messages published while the daemon is away are delivered after."})
    session_expiry: Duration = field(default=Duration(86400.0), metadata={"doc": "5.0 Session Expiry Interval: how long the broker keeps the session (and queues its messages) while the connector is away."})
    subscriptions: tuple[ConnectorSubscriptionConfig, ...] = field(default=(), metadata={"doc": "Subscriptions made (again) on every connection."})
    tls: ConnectorTlsConfig = field(default_factory=ConnectorTlsConfig, metadata={"doc": "TLS to the broker (mqtts://, wss://)."})
    publish_channel: str | None = field(default=None, metadata={"doc": "Channel-layer channel whose mqtt.publish messages are published to the broker (gateway send --channel, channel_layer.send); null: none."})
    layer: str = field(default="default", metadata={"doc": "Channel layer alias of publish_channel."})
    reconnect_initial: Duration = field(default=Duration(0.5), metadata={"doc": "First delay before reconnecting; doubles after each failure (each delay is drawn between half and all of it).", "check": positive})
    reconnect_max: Duration = field(default=Duration(30.0), metadata={"doc": "Longest delay between connection attempts.", "check": positive})
    limits: ConnectorLimitsConfig = field(default_factory=ConnectorLimitsConfig, metadata={"doc": "Limits."})
    timeouts: ConnectorTimeoutsConfig = field(default_factory=ConnectorTimeoutsConfig, metadata={"doc": "Timeouts."})

    def check(self) -> Iterable[tuple[str, str]]:
        yield from super().check()
        if self.endpoint:
            yield "endpoint", "an mqtt-connector connects out; it takes broker: URL, not an endpoint"
        try:
            address = parse_broker_url(self.broker)
        except InvalidValue:
            return  # reported on the field
        tls = self.tls
        if not address.tls and (tls.ca_file or tls.cert_file or tls.server_name):
            yield "tls", f"applies to mqtts:// and wss:// brokers, and {address.url} is not one"
        if self.version == "3.1.1":
            for index, sub in enumerate(self.subscriptions):
                if sub.no_local or sub.retain_handling:
                    yield f"subscriptions[{index}]", "no_local and retain_handling need MQTT 5.0"
            if not self.client_id_for_broker() and not self.clean_start:
                yield "client_id", "MQTT 3.1.1 needs a client id for a persistent session"
        if self.keep_alive > 65535:
            yield "keep_alive", "must be at most 65535s"
        if self.session_expiry > 0xFFFFFFFF:
            yield "session_expiry", "must be at most 4294967295s"
        if self.reconnect_max < self.reconnect_initial:
            yield "reconnect_max", "must not be shorter than reconnect_initial"

    @property
    def address(self) -> BrokerAddress:
        """The broker's address."""
        return parse_broker_url(self.broker)

    def client_id_for_broker(self) -> str:
        """The client identifier, ``%h`` replaced by this host's name."""
        template = self.client_id if self.client_id is not None else f"gateway-%h-{self.name}"
        return template.replace("%h", socket.gethostname())

    @property
    def protocol_level(self) -> int:
        """4 (3.1.1) or 5 (5.0)."""
        return 5 if self.version == "5.0" else 4
