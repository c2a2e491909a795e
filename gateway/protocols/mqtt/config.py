"""Configuration of MQTT listeners (``protocol: mqtt``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from gateway.config.errors import InvalidValue
from gateway.config.schema import ListenerConfig, positive
from gateway.config.units import Duration, Size
from gateway.protocols.mqtt.codec import MAX_PACKET_SIZE
from gateway.protocols.mqtt.events import ServerOptions

__all__ = [
    "MqttAccessRuleConfig",
    "MqttBrokerConfig",
    "MqttLimitsConfig",
    "MqttListenerConfig",
    "MqttTimeoutsConfig",
    "MqttWebSocketConfig",
]

_VERSIONS = {"3.1.1": 4, "5.0": 5, "5": 5}


def _check_users(users: Mapping[str, str]) -> None:
    from gateway.protocols.mqtt.broker.auth import check_password_hash

    for name, encoded in users.items():
        try:
            check_password_hash(encoded)
        except ValueError as exc:
            raise InvalidValue(f"user {name!r}: {exc}") from None


def _check_filters(filters: tuple[str, ...]) -> None:
    from gateway.protocols.mqtt.topics import InvalidTopicError, validate_topic_filter

    for topic_filter in filters:
        try:
            validate_topic_filter(topic_filter.replace("%u", "u").replace("%c", "c"))
        except InvalidTopicError as exc:
            raise InvalidValue(str(exc)) from None


def _parse_switch(value: object) -> str:
    # YAML 1.1 reads a bare on/off as a boolean.
    if value is True:
        return "on"
    if value is False:
        return "off"
    if value in ("auto", "on", "off"):
        return str(value)
    raise InvalidValue(f"expected auto, on or off, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class MqttLimitsConfig:
    """Sizes and counts, with safe defaults."""

    max_packet_size: Size = field(default=Size(1024 * 1024), metadata={"doc": "Largest packet a client may send (larger: DISCONNECT 0x95 Packet too large)."})
    receive_maximum: int = field(default=64, metadata={"doc": "QoS 1/2 publishes a client may have unacknowledged (5.0 Receive Maximum); reading pauses at it.", "check": positive})
    max_inflight: int = field(default=256, metadata={"doc": "QoS 1/2 messages sent to a client and not yet acknowledged (also capped by its Receive Maximum).", "check": positive})
    max_queued_messages: int = field(default=1000, metadata={"doc": "QoS 1/2 messages held per client beyond max_inflight or while it is away; more are dropped.", "check": positive})
    topic_alias_maximum: int = field(default=10, metadata={"doc": "Topic aliases a 5.0 client may use (0: none)."})
    outbound_topic_alias_maximum: int = field(default=64, metadata={"doc": "Topic aliases the server uses towards a 5.0 client that allows them (its Topic Alias Maximum caps it), least recently used replaced: a repeated topic goes as a 2-byte alias (0: off)."})
    max_keep_alive: Duration | None = field(default=None, metadata={"doc": "Cap on the client's keep-alive (5.0 Server Keep Alive); null: no cap."})
    max_connections: int = field(default=100000, metadata={"doc": "Open connections on this listener; beyond it, new ones wait in the kernel's accept queue.", "check": positive})
    max_app_queue: int = field(default=256, metadata={"doc": "Events waiting for the application before reading from the client pauses.", "check": positive})
    max_write_buffer: Size = field(default=Size(8 * 1024 * 1024), metadata={"doc": "Bytes buffered for a client that does not read before QoS 0 messages to it are dropped."})
    lingering_size: Size = field(default=Size(64 * 1024), metadata={"doc": "Bytes read and thrown away during a lingering close (timeouts.lingering) before the connection is closed anyway."})

    def check(self) -> Iterable[tuple[str, str]]:
        if not 2 <= self.max_packet_size <= MAX_PACKET_SIZE:
            yield "max_packet_size", f"must be between 2 bytes and {MAX_PACKET_SIZE} bytes"
        if self.receive_maximum > 65535:
            yield "receive_maximum", "must be at most 65535"
        if self.max_inflight > 65535:
            yield "max_inflight", "must be at most 65535"
        if not 0 <= self.topic_alias_maximum <= 65535:
            yield "topic_alias_maximum", "must be in 0..65535"
        if not 0 <= self.outbound_topic_alias_maximum <= 65535:
            yield "outbound_topic_alias_maximum", "must be in 0..65535"
        if self.max_keep_alive is not None and not 1 <= self.max_keep_alive <= 65535:
            yield "max_keep_alive", "must be between 1s and 65535s"


@dataclass(frozen=True, kw_only=True)
class MqttTimeoutsConfig:
    """Per-connection timers (keep-alive is the client's: 1.5 x its Keep Alive)."""

    connect: Duration = field(default=Duration(10.0), metadata={"doc": "Time from accepting a connection to its CONNECT packet.", "check": positive})
    connect_answer: Duration = field(default=Duration(30.0), metadata={"doc": "Time the application has to answer mqtt.connect; then CONNACK 0x88 Server unavailable.", "check": positive})
    lingering: Duration = field(default=Duration(2.0), metadata={"doc": "After the server closes a TCP connection (a DISCONNECT with an error, a refused CONNECT), the time the client has to read the last packet and close its side, its further bytes read and thrown away (lingering close: a close with unread bytes resets the connection, and the client could lose that packet); 0: close at once."})


@dataclass(frozen=True, kw_only=True)
class MqttWebSocketConfig:
    """MQTT over WebSocket (``transport: websocket``)."""

    path: str = field(default="/mqtt", metadata={"doc": "URL path of the WebSocket endpoint (other paths get 404)."})
    allowed_origins: tuple[str, ...] = field(default=("*",), metadata={"doc": "Origin patterns accepted in the handshake (* = any)."})

    def check(self) -> Iterable[tuple[str, str]]:
        if not self.path.startswith("/"):
            yield "path", "starts with / (like /mqtt)"


@dataclass(frozen=True, kw_only=True)
class MqttAccessRuleConfig:
    """Who may (allow) or may not (deny) publish and subscribe where (%u = username, %c =
    client id in filters). A deny wins over any allow."""

    users: tuple[str, ...] = field(default=("*",), metadata={"doc": "Usernames the rule is about; * = everyone, $anonymous = clients without a username."})
    effect: Literal["allow", "deny"] = field(default="allow", metadata={"doc": "allow: they may; deny: they may not, whatever other rules allow (deny subscribe also stops delivery of matching topics to wider subscriptions such as #)."})
    publish: tuple[str, ...] = field(default=(), metadata={"doc": "Topic filters they may (deny: may not) publish to.", "check": _check_filters})
    subscribe: tuple[str, ...] = field(default=(), metadata={"doc": "Topic filters they may subscribe to, or to narrower filters (deny: may not subscribe to, nor to narrower filters, nor receive messages on).", "check": _check_filters})

    def check(self) -> Iterable[tuple[str, str]]:
        if not self.publish and not self.subscribe:
            yield "publish", f"{'an allow' if self.effect == 'allow' else 'a deny'} rule needs publish or subscribe filters (it would do nothing)"
        if not self.users:
            yield "users", "a rule needs at least one user (* = everyone)"


@dataclass(frozen=True, kw_only=True)
class MqttBrokerConfig:
    """The built-in broker: users, access rules, where state lives, clustering.

    Users and access rules apply to this listener's clients; the other settings belong to the
    broker, which every listener naming it shares (the first listener's apply).
    """

    name: str = field(default="default", metadata={"doc": "Broker name; MQTT listeners naming the same broker (TCP, TLS, WebSocket) share subscriptions and sessions."})
    allow_anonymous: bool = field(default=True, metadata={"doc": "Accept clients without a username (refused with 0x86 / return code 4 otherwise)."})
    users: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}),
        metadata={"doc": "username: password hash (scrypt$... or pbkdf2_sha256$..., Django's formats; make one with gateway hash-password).", "check": _check_users},
    )
    access: tuple[MqttAccessRuleConfig, ...] = field(default=(), metadata={"doc": "Access rules (effect allow or deny); none = everything allowed; with rules, what no allow rule allows is denied (0x87), and a deny wins over any allow."})
    max_session_expiry: Duration | None = field(default=None, metadata={"doc": "Cap on Session Expiry Intervals (3.1.1 persistent sessions never expire otherwise)."})
    store: Literal["memory", "redis"] = field(default="memory", metadata={"doc": "Where retained messages and absent clients' sessions live: memory (this process) or redis (shared)."})
    redis: str = field(default="redis://127.0.0.1:6379/0", metadata={"doc": "Redis URL of the redis store (redis://host:port/db or unix:///path?db=0)."})
    redis_prefix: str = field(default="gateway-mqtt", metadata={"doc": "Key prefix in Redis."})
    layer: str = field(default="default", metadata={"doc": "Channel layer alias the broker nodes talk over."})
    cluster: Literal["auto", "on", "off"] = field(default="auto", metadata={"doc": "One broker across processes over the channel layer: auto = on when the layer is not process-local (Redis).", "parse": _parse_switch})
    takeover_timeout: Duration = field(default=Duration(2.0), metadata={"doc": "How long a node waits for another to hand over a session.", "check": positive})

    def check(self) -> Iterable[tuple[str, str]]:
        if not self.allow_anonymous and not self.users:
            yield "users", "allow_anonymous is false but no users are configured: nobody could connect"
        if self.access and all(rule.effect == "deny" for rule in self.access):
            yield "access", (
                "only deny rules: with rules, what no allow rule allows is denied, so nothing would be allowed;"
                " add an allow rule such as {users: ['*'], publish: ['#'], subscribe: ['#']}"
            )


@dataclass(frozen=True, kw_only=True)
class MqttListenerConfig(ListenerConfig):
    """An MQTT 3.1.1 / 5.0 listener: TCP, TLS (ssl: endpoint) or WebSocket."""

    transport: Literal["tcp", "websocket"] = field(default="tcp", metadata={"doc": "tcp (TLS with an ssl: endpoint) or websocket (subprotocol mqtt, at websocket.path)."})
    websocket: MqttWebSocketConfig = field(default_factory=MqttWebSocketConfig, metadata={"doc": "WebSocket settings (transport: websocket)."})
    consumer: Literal["auto", "broker", "application"] = field(
        default="auto",
        metadata={"doc": "Who answers clients: broker (the built-in broker, no app instance), application (an ASGI mqtt scope per connection), auto (application if it routes mqtt scopes, else broker)."},
    )
    versions: tuple[str, ...] = field(default=("3.1.1", "5.0"), metadata={"doc": "Protocol versions accepted: 3.1.1 and/or 5.0."})
    maximum_qos: int = field(default=2, metadata={"doc": "Highest QoS granted and accepted (5.0 Maximum QoS)."})
    retain: bool = field(default=True, metadata={"doc": "Whether retained messages are supported (5.0 Retain Available)."})
    limits: MqttLimitsConfig = field(default_factory=MqttLimitsConfig, metadata={"doc": "Limits."})
    timeouts: MqttTimeoutsConfig = field(default_factory=MqttTimeoutsConfig, metadata={"doc": "Timeouts."})
    broker: MqttBrokerConfig = field(default_factory=MqttBrokerConfig, metadata={"doc": "The built-in broker."})

    def check(self) -> Iterable[tuple[str, str]]:
        yield from super().check()
        for version in self.versions:
            if version not in _VERSIONS:
                yield "versions", f"{version!r} is not one of 3.1.1, 5.0"
        if not self.versions:
            yield "versions", "at least one protocol version is needed"
        if self.maximum_qos not in (0, 1, 2):
            yield "maximum_qos", "must be 0, 1 or 2"

    def server_options(self) -> ServerOptions:
        """The wire core's limits and capabilities for this listener."""
        limits = self.limits
        return ServerOptions(
            max_packet_size=int(limits.max_packet_size),
            receive_maximum=limits.receive_maximum,
            topic_alias_maximum=limits.topic_alias_maximum,
            maximum_qos=self.maximum_qos,
            retain_available=self.retain,
            max_keep_alive=int(limits.max_keep_alive) if limits.max_keep_alive is not None else None,
            connect_timeout=float(self.timeouts.connect),
            protocol_levels=frozenset(_VERSIONS[v] for v in self.versions if v in _VERSIONS),
            max_outbound_inflight=limits.max_inflight,
            max_queued_messages=limits.max_queued_messages,
            outbound_topic_aliases=limits.outbound_topic_alias_maximum > 0,
            outbound_topic_alias_maximum=limits.outbound_topic_alias_maximum,
            acknowledgement_events=False,  # neither the broker nor the ASGI mapping uses them
        )
