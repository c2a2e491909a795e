"""The configuration schema shared by every listener: the daemon, logging, layers, listeners.

Protocol-specific listener settings live beside each protocol (for instance
:mod:`gateway.protocols.http.config`) and are registered in :mod:`gateway.protocols.registry`;
a listener's ``protocol`` key chooses its class.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal

from gateway.config.errors import InvalidValue
from gateway.config.units import Duration, Size


def check_app_path(value: str) -> None:
    """Check that an application reference has the ``module:attribute`` form."""
    module, sep, attr = value.partition(":")
    if not sep or not module or not attr:
        raise InvalidValue(f"expected 'module:attribute' (like 'myproject.asgi:application'), got {value!r}")


def check_endpoint(value: str) -> None:
    """Check a Twisted server endpoint string (``tcp:8000:interface=127.0.0.1``).

    The string is parsed with Twisted's own parser against a memory reactor, so certificate
    files of ``ssl:`` endpoints are read and checked too. ``systemd:`` endpoints are only
    checked for syntax: the inherited sockets exist only under systemd.
    """
    from gateway.endpoints import EndpointError, validate_server_endpoint

    try:
        validate_server_endpoint(value)
    except EndpointError as exc:
        raise InvalidValue(str(exc)) from None


def positive(value: float) -> None:
    """Reject zero and negative numbers."""
    if value <= 0:
        raise InvalidValue(f"must be greater than zero, got {value}")


def check_ciphers(value: str) -> None:
    """A named policy or a cipher string the local OpenSSL accepts."""
    from gateway.tls import TLSPolicyError, cipher_string

    try:
        cipher_string(value)
    except TLSPolicyError as exc:
        raise InvalidValue(str(exc)) from None


def parse_tls_version(value: Any) -> str:
    """``1.2``/``"1.2"``/``TLSv1.2`` -> ``"1.2"`` (YAML reads an unquoted 1.2 as a number)."""
    text = str(value).strip().lower().removeprefix("tlsv").removeprefix("tls")
    if text not in ("1.2", "1.3"):
        raise InvalidValue(f"{value!r} is not a TLS version the gateway accepts: 1.2 or 1.3")
    return text


@dataclass(frozen=True, kw_only=True)
class TLSPolicy:
    """Which TLS versions and cipher suites a server accepts (see :mod:`gateway.tls`)."""

    ciphers: str = field(
        default="intermediate",
        metadata={"doc": "TLS 1.2 cipher suites: intermediate (Mozilla's policy: ECDHE/DHE key exchange with AES-GCM or ChaCha20 "
                         "only), or an OpenSSL cipher string. TLS 1.3 suites are OpenSSL's (all forward secret and AEAD).",
                  "check": check_ciphers},
    )
    min_version: Literal["1.2", "1.3"] = field(
        default="1.2", metadata={"doc": "Oldest TLS version accepted: 1.2, or 1.3 (Mozilla's modern policy).", "parse": parse_tls_version}
    )


@dataclass(frozen=True, kw_only=True)
class SslEndpointConfig(TLSPolicy):
    """TLS of a listener's ssl: endpoint: the policy, and how many handshakes (about 50 KB each) may be pending, for how long.

    A pending handshake holds OpenSSL's state until the client finishes it; the limit and the
    timeout bound that memory whatever clients do.
    """

    handshake_timeout: Duration = field(
        default=Duration(10.0), metadata={"doc": "A client that has not finished its TLS handshake in this time is disconnected.", "check": positive}
    )
    max_handshakes: int = field(
        default=1024,
        metadata={"doc": "TLS handshakes in progress at once on this listener; beyond it, new connections wait in the kernel's accept queue.",
                  "check": positive},
    )


@dataclass(frozen=True, kw_only=True)
class ListenerConfig:
    """Settings every listener has; each protocol adds its own (see the registry)."""

    discriminator: ClassVar[str] = "protocol"

    name: str = field(metadata={"doc": "Unique name of the listener, used in logs, metrics and status."})
    protocol: str = field(metadata={"doc": "Which protocol this listener speaks (http, ...)."})
    endpoint: str | None = field(
        default=None,
        metadata={
            "doc": "Twisted server endpoint: tcp:8000:interface=127.0.0.1, ssl:8443:privateKey=key.pem:certKey=cert.pem, unix:/run/gateway.sock, systemd:domain=INET:index=0. The listen backlog is 1024 unless the string sets backlog=N.",
            "check": check_endpoint,
        },
    )
    application: str | None = field(
        default=None,
        metadata={"doc": "module:attribute of an ASGI application for this listener only (default: the top-level application).", "check": check_app_path},
    )
    ssl: SslEndpointConfig | None = field(
        default=None,
        metadata={"doc": "TLS of an ssl: endpoint: cipher policy, oldest version, handshake limits (default: Mozilla's intermediate policy, TLS 1.2 and 1.3)."},
    )
    #: The environment variables each key's value was read from (``endpoint`` ->
    #: ``("GATEWAY_PORT",)`` for ``tcp:${GATEWAY_PORT:-8000}``), so errors can name them. Filled
    #: in by the loader; not a configuration key.
    environment: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({}), init=False, repr=False, compare=False
    )

    @classmethod
    def variants(cls) -> Mapping[str, type[ListenerConfig]]:
        """The listener classes by protocol name, from :mod:`gateway.protocols.registry`."""
        from gateway.protocols.registry import listener_config_classes

        return listener_config_classes()

    def check(self) -> Iterable[tuple[str, str]]:
        """Cross-field rules; protocols that need an endpoint say so here."""
        if self.needs_endpoint and not self.endpoint:
            yield "endpoint", f"a {self.protocol} listener needs an endpoint such as tcp:8000:interface=127.0.0.1"
        if self.ssl is not None and self.endpoint and not self.endpoint.lower().startswith("ssl:"):
            yield "ssl", "applies to ssl: endpoints only (like ssl:8443:privateKey=key.pem:certKey=cert.pem), and this endpoint is not one"

    #: Whether this kind of listener binds a socket (an IMAP reader, for one, does not).
    needs_endpoint: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class LayerConfig:
    """A channel layer; ``backend`` chooses the implementation."""

    discriminator: ClassVar[str] = "backend"

    backend: str = field(metadata={"doc": "Layer implementation: memory (one process) or redis (many processes)."})
    capacity: int = field(default=100, metadata={"doc": "Messages a channel holds before send() raises ChannelFull.", "check": positive})
    channel_capacity: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType({}),
        metadata={"doc": "Per-channel capacity by glob pattern, e.g. {\"http.request\": 200, \"websocket.send*\": 20}."},
    )
    expiry: Duration = field(default=Duration(60.0), metadata={"doc": "Seconds an undelivered message is kept.", "check": positive})
    group_expiry: Duration = field(default=Duration(86400.0), metadata={"doc": "Seconds a group membership lasts without being renewed.", "check": positive})

    @classmethod
    def variants(cls) -> Mapping[str, type[LayerConfig]]:
        """The layer classes by backend name."""
        return {"memory": MemoryLayerConfig, "redis": RedisLayerConfig}

    def layer_options(self) -> dict[str, Any]:
        """The mapping :func:`gateway.layers.configure_layers` takes for this alias."""
        options: dict[str, Any] = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, Mapping):
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            options[item.name] = value
        extra = options.pop("options", None) or {}
        options.update(extra)
        return options


@dataclass(frozen=True, kw_only=True)
class MemoryLayerConfig(LayerConfig):
    """The in-memory layer: fast, one process only."""


@dataclass(frozen=True, kw_only=True)
class RedisLayerConfig(LayerConfig):
    """The Redis layer: shares channels and groups between processes and machines (channels_redis-compatible, docs/redis-layer.md).

    Processes using channels_redis share its channels and groups when both sides use the same
    prefix, hosts, expiry and capacity.
    """

    prefix: str = field(default="asgi", metadata={"doc": "Prefix of channel and group keys in Redis (channels_redis' default)."})
    hosts: tuple[str, ...] = field(
        default=("redis://127.0.0.1:6379/0",),
        metadata={"doc": "Redis URLs redis://[user:password@]host[:port][/db], rediss://...?ssl_ca_certs=FILE (TLS, the "
                         "certificate is verified), unix:///path.sock?db=N; several hosts shard channels and groups "
                         "(changing the list moves keys: drain first, see docs/redis-layer.md). A Redis Cluster: "
                         "redis+cluster://host:port (or rediss+cluster://) seed nodes, one or more."},
    )
    symmetric_encryption_keys: tuple[str, ...] = field(
        default=(), metadata={"doc": "Keys for encrypting message bodies (the first encrypts, all decrypt; channels_redis-compatible Fernet)."}
    )
    sentinels: tuple[str, ...] = field(default=(), metadata={"doc": "Sentinel addresses host:port; with them, each host URL names a monitored service: redis://[:password@]SERVICE/db."})
    sentinel_password: str | None = field(default=None, metadata={"doc": "Password of the sentinels themselves (not of Redis)."})
    connect_timeout: Duration = field(default=Duration(5.0), metadata={"doc": "Time to connect and log in to Redis; sends fail with a clear error when it runs out.", "check": positive})
    command_timeout: Duration = field(default=Duration(10.0), metadata={"doc": "Time Redis has to answer; a connection that stays silent longer is dropped and re-opened.", "check": positive})
    reconnect_max_delay: Duration = field(default=Duration(5.0), metadata={"doc": "Longest wait between reconnection attempts (exponential backoff from 100ms).", "check": positive})
    options: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}),
        metadata={"doc": "Further layer options: batch (500), block_timeout (5), send_window (0), random_prefix_length (12), serializer_format (msgpack or json)."},
    )

    def check(self) -> Iterable[tuple[str, str]]:
        from gateway.layers.redis.hosts import decode_hosts

        if not self.hosts:
            yield "hosts", "at least one Redis host is needed"
        bad = False
        for host in self.hosts:
            try:
                decode_hosts([host], self.sentinels)
            except ValueError as exc:
                bad = True
                yield "hosts", str(exc)
        if self.hosts and not bad:
            try:
                decode_hosts(list(self.hosts), self.sentinels)
            except ValueError as exc:  # cluster seeds mixed with other hosts
                yield "hosts", str(exc)
        for sentinel in self.sentinels:
            try:
                decode_hosts(["redis://service"], [sentinel])
            except ValueError as exc:
                yield "sentinels", str(exc)
        known = {"batch", "block_timeout", "send_window", "random_prefix_length", "serializer_format"}
        for key in self.options:
            if key not in known:
                yield "options", f"unknown Redis layer option {key!r} (known: {', '.join(sorted(known))})"


LOG_LEVELS = ("debug", "info", "warn", "warning", "error", "critical")


def not_negative(value: float) -> None:
    """Reject negative numbers."""
    if value < 0:
        raise InvalidValue(f"must be zero or more, got {value}")


@dataclass(frozen=True, kw_only=True)
class RejectionsConfig:
    """How much rejected input (bad requests, refused webhooks, protocol errors) is logged: per listener and reason, `lines` lines in each `period`, then one line counting the rest."""

    lines: int = field(default=5, metadata={"doc": "Lines logged per listener and reason in each period (0: summaries only).", "check": not_negative})
    period: Duration = field(default=Duration(10.0), metadata={"doc": "Length of a period; at its end one line says how many more were rejected.", "check": positive})


@dataclass(frozen=True, kw_only=True)
class LoggingConfig:
    """Where and how the daemon logs (through twisted.logger)."""

    level: Literal["debug", "info", "warn", "warning", "error", "critical"] = field(
        default="info", metadata={"doc": "Lowest level logged."}
    )
    format: Literal["text", "json"] = field(default="text", metadata={"doc": "text (one line per event) or json (one JSON object per line)."})
    output: str = field(default="stderr", metadata={"doc": "stderr, stdout or a file path."})
    rejections: RejectionsConfig = field(default_factory=RejectionsConfig, metadata={"doc": "Rate limit on the lines about rejected input."})


@dataclass(frozen=True, kw_only=True)
class TimeoutsConfig:
    """Daemon-wide timeouts."""

    drain: Duration = field(
        default=Duration(30.0),
        metadata={"doc": "On SIGTERM/SIGINT: how long in-flight requests may take to finish before connections are closed."},
    )
    application_close: Duration = field(
        default=Duration(10.0),
        metadata={"doc": "How long an application may keep running after its client left before it is cancelled."},
    )
    lifespan_startup: Duration = field(default=Duration(60.0), metadata={"doc": "How long lifespan startup may take.", "check": positive})
    lifespan_shutdown: Duration = field(default=Duration(30.0), metadata={"doc": "How long lifespan shutdown may take.", "check": positive})


def parse_workers(value: object) -> int | str:
    """``workers``: a positive number, or ``auto`` (one per CPU)."""
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(f"expected a number of processes or auto, got {value!r}")
    if value < 1:
        raise InvalidValue(f"must be at least 1, got {value}")
    return value


@dataclass(frozen=True, kw_only=True)
class SupervisorConfig:
    """The supervisor that runs the worker processes when ``workers`` is more than 1."""

    balance: Literal["reuseport", "shared"] = field(
        default="reuseport",
        metadata={"doc": "How TCP and TLS connections are spread across workers: reuseport (one socket per worker with SO_REUSEPORT, the kernel spreads new connections evenly) or shared (one socket every worker accepts from; unix: and systemd: endpoints always share)."},
    )
    heartbeat_timeout: Duration = field(
        default=Duration(30.0),
        metadata={"doc": "A worker whose event loop has not answered for this long is killed and restarted (it reports once a second).", "check": positive},
    )
    start_timeout: Duration = field(
        default=Duration(90.0),
        metadata={"doc": "How long a worker may take to start serving (import, lifespan startup) before it counts as failed.", "check": positive},
    )
    max_restart_delay: Duration = field(
        default=Duration(10.0),
        metadata={"doc": "Longest wait before restarting a worker that keeps dying (the wait doubles from 0.1s).", "check": positive},
    )


def check_module_path(value: str) -> None:
    """Check a dotted Python module path (``mysite.settings``)."""
    if not value or not all(part.isidentifier() for part in value.split(".")):
        raise InvalidValue(f"expected a dotted module path (like 'mysite.settings'), got {value!r}")


@dataclass(frozen=True, kw_only=True)
class DjangoConfig:
    """A Django project: ASGI_APPLICATION is the default application, CHANNEL_LAYERS add layers (docs/django.md).
    """

    settings: str = field(metadata={"doc": "The settings module (what DJANGO_SETTINGS_MODULE names), e.g. mysite.settings.", "check": check_module_path})


#: The application reference that stands for Django's ``ASGI_APPLICATION``.
DJANGO_APPLICATION = "gateway.django.asgi:application"


@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    """The whole daemon."""

    application: str | None = field(
        default=None,
        metadata={"doc": "module:attribute of the ASGI application (ASGI 3, or an ASGI 2 double callable).", "check": check_app_path},
    )
    loop: Literal["asyncio", "uvloop"] = field(default="asyncio", metadata={"doc": "Event loop under the Twisted reactor: asyncio or uvloop (pip install gateway[uvloop])."})
    lifespan: Literal["auto", "on", "off"] = field(
        default="auto",
        metadata={"doc": "Lifespan protocol: auto (used if the application supports it), on (required), off."},
    )
    threads: int = field(default=32, metadata={"doc": "Size of the thread pool that runs sync consumers and sync_to_async code.", "check": positive})
    workers: int | str = field(
        default=1,
        metadata={"doc": "Worker processes serving the listeners: a number, or auto (one per CPU). Above 1 a supervisor binds the sockets and runs the workers; the channel layers must span processes (Redis).", "parse": parse_workers, "type": "int \\| `auto`"},
    )
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig, metadata={"doc": "The supervisor of the worker processes (workers above 1)."})
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig, metadata={"doc": "Daemon-wide timeouts."})
    listeners: tuple[ListenerConfig, ...] = field(default=(), metadata={"doc": "The listeners: one protocol and one endpoint each."})
    layers: Mapping[str, LayerConfig] = field(
        default_factory=lambda: MappingProxyType({}),
        metadata={"doc": "Channel layers by alias; 'default' is the one consumers use. Default: an in-memory layer."},
    )
    logging: LoggingConfig = field(default_factory=LoggingConfig, metadata={"doc": "Logging."})
    django: DjangoConfig | None = field(
        default=None,
        metadata={"doc": "A Django project whose settings give the default application (ASGI_APPLICATION) and channel layers (CHANNEL_LAYERS); without it, the DJANGO_SETTINGS_MODULE environment variable does the same."},
    )

    def django_settings(self) -> str | None:
        """The Django settings module: ``django.settings``, else ``$DJANGO_SETTINGS_MODULE``."""
        if self.django is not None:
            return self.django.settings
        return os.environ.get("DJANGO_SETTINGS_MODULE") or None

    def use_django_settings(self) -> bool:
        """Point Django at :meth:`django_settings` (sets ``DJANGO_SETTINGS_MODULE``; the YAML's
        module wins over the environment's). Returns whether a Django project is configured."""
        module = self.django_settings()
        if module is not None:
            os.environ["DJANGO_SETTINGS_MODULE"] = module
        return module is not None

    def layers_mapping(self) -> dict[str, dict[str, Any]]:
        """The ``layers`` section for :func:`gateway.layers.configure_layers`.

        With a Django project, ``CHANNEL_LAYERS`` adds its aliases; for an alias both name, the
        YAML's entry wins. With neither, alias ``default`` is an in-memory layer.
        """
        mapping = {alias: layer.layer_options() for alias, layer in self.layers.items()}
        if self.use_django_settings():
            from gateway.django.layers import merged_layers

            mapping = merged_layers(mapping)
        if not mapping:
            return {"default": {"backend": "memory"}}
        return mapping

    def check(self) -> Iterable[tuple[str, str]]:
        seen: set[str] = set()
        for listener in self.listeners:
            if listener.name in seen:
                yield "listeners", f"two listeners are named {listener.name!r}; names must be unique"
            seen.add(listener.name)
            if self.application_for(listener) is None and listener.protocol != "admin":
                yield "application", f"listener {listener.name!r} has no application; set the top-level application or the listener's own"
        if not self.listeners:
            yield "listeners", "at least one listener is needed"
        yield from self._check_workers()

    def worker_count(self) -> int:
        """How many worker processes ``workers`` asks for (``auto``: the CPUs this process may use)."""
        if self.workers == "auto":
            try:
                return max(1, len(os.sched_getaffinity(0)))
            except (AttributeError, OSError):
                return max(1, os.cpu_count() or 1)
        return int(self.workers)

    def _check_workers(self) -> Iterable[tuple[str, str]]:
        """Several workers act as one only through state they share: refuse process-local layers
        and MQTT brokers that would be one per worker."""
        count = self.worker_count()
        if count <= 1:
            return
        fix = ("configure a Redis layer, e.g. layers: {default: {backend: redis, hosts: ['redis://127.0.0.1:6379/0']}}, "
               "or set workers: 1")
        what = f"workers: {self.workers} runs {count} processes"
        if not self.layers and not self.django_settings():
            yield "layers", (f"{what}, but the default channel layer is the in-memory one, which one process "
                             f"cannot share with another (groups and gateway send would reach one worker): {fix}")
        for alias, layer in self.layers.items():
            if layer.backend == "memory":
                yield f"layers.{alias}", (f"{what}, but layer {alias!r} is in memory (backend: memory), which one "
                                          f"process cannot share with another: {fix}")
        for listener in self.listeners:
            broker = getattr(listener, "broker", None)
            if listener.protocol != "mqtt" or broker is None:
                continue
            if broker.store != "redis" or broker.cluster == "off":
                yield "listeners", (f"{what}, but the MQTT broker of listener {listener.name!r} would be one broker per "
                                    "worker (sessions and retained messages not shared): set broker.store: redis "
                                    "and keep broker.cluster: auto with a Redis layer, or set workers: 1")

    def application_for(self, listener: ListenerConfig) -> str | None:
        """The application reference a listener serves: its own, the top-level one, or with a
        Django project :data:`DJANGO_APPLICATION` (the settings' ``ASGI_APPLICATION``)."""
        if listener.application or self.application:
            return listener.application or self.application
        return DJANGO_APPLICATION if self.django_settings() else None


__all__ = [
    "DJANGO_APPLICATION",
    "DjangoConfig",
    "GatewayConfig",
    "SslEndpointConfig",
    "TLSPolicy",
    "LayerConfig",
    "ListenerConfig",
    "LoggingConfig",
    "MemoryLayerConfig",
    "RedisLayerConfig",
    "Size",
    "SupervisorConfig",
    "TimeoutsConfig",
]
