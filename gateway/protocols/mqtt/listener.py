# -*- test-case-name: tests.unit.mqtt.test_listener -*-
"""Building MQTT listeners: TCP and TLS here, WebSocket in :mod:`.websocket`.

Every MQTT listener has a broker (:func:`broker_for`): listeners of one daemon naming the same
``broker.name`` share one :class:`~.broker.core.Broker`, so TCP, TLS and WebSocket clients see
each other. ``consumer: auto`` is resolved when the listener starts accepting: the application
answers ``mqtt`` scopes if ``await matches(app, {"type": "mqtt"})`` (a ``ProtocolTypeRouter``
without an ``"mqtt"`` route does not), else the built-in broker does.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IProtocolNegotiationFactory, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from zope.interface import implementer

from gateway._compat.tcp import write_through
from gateway.listener import EndpointListener, ListenerContext, TrackingFactory
from gateway.metrics.stats import MqttStats
from gateway.protocols.mqtt.adapter import MqttConnection, MqttSettings, TransportSide
from gateway.protocols.mqtt.broker.auth import AccessRule, Authenticator
from gateway.protocols.mqtt.broker.core import Broker
from gateway.protocols.mqtt.config import MqttBrokerConfig, MqttListenerConfig
from gateway.protocols.transport import address_tuple, server_tuple

__all__ = [
    "MqttFactory", "MqttListener", "MqttProtocol", "broker_for", "build_listener", "mount_on_http", "mqtt_settings",
]

log = Logger(namespace="gateway.mqtt")


@implementer(IPushProducer)
class MqttProtocol(TransportSide, Protocol):
    """An MQTT connection over TCP or TLS: the transport side of :class:`MqttConnection`."""

    def __init__(self, settings: MqttSettings) -> None:
        self.settings = settings
        self.conn: MqttConnection | None = None
        self.writes_paused = False
        self.buffered = 0  # bytes written while the transport's buffer was full

    def connectionMade(self) -> None:
        transport = self.transport
        try:
            # Small packets (acks, PINGRESP, QoS 0 messages) must not wait for Nagle's
            # algorithm and the peer's delayed ACK (40 ms a turn on a request/response flow).
            transport.setTcpNoDelay(True)
        except (AttributeError, OSError):  # UNIX sockets, test transports
            pass
        transport.registerProducer(self, True)
        self.conn = MqttConnection(
            self.settings, self, transport="tcp", client=address_tuple(transport.getPeer()),
            server=server_tuple(transport.getHost()),
        )
        factory = self.factory
        if factory is not None:
            factory.connection_opened(self)
        self.conn.start()

    def dataReceived(self, data: bytes) -> None:
        self.conn.data_received(data)  # type: ignore[union-attr]

    def connectionLost(self, reason: Any = None) -> None:
        if self.conn is not None:
            self.conn.connection_lost()
        factory = self.factory
        if factory is not None:
            factory.connection_closed(self)

    # -- the io interface of MqttConnection -------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.writes_paused:
            self.buffered += len(data)
        write_through(self.transport, data)

    def close(self) -> None:
        self.transport.loseConnection()

    # -- the listener -----------------------------------------------------------------------

    def shutdown(self) -> None:
        """DISCONNECT 0x8B Server shutting down (5.0), then close."""
        if self.conn is not None:
            self.conn.shutdown()

    def abort(self) -> None:
        """Close now."""
        self.transport.abortConnection()


@implementer(IProtocolNegotiationFactory)
class MqttFactory(TrackingFactory):
    """Builds :class:`MqttProtocol` connections; on TLS it advertises ``mqtt`` over ALPN
    (with no protocol of its own, Twisted's ALPN callback trips OpenSSL 3.5+/4)."""

    stats_class = MqttStats

    def __init__(self, settings: MqttSettings, max_connections: int | None = None) -> None:
        super().__init__(max_connections)
        self.settings = settings

    def acceptableProtocols(self) -> list[bytes]:
        """ALPN protocols, most preferred first."""
        return [b"mqtt"]

    def buildProtocol(self, addr: Any) -> MqttProtocol:
        protocol = MqttProtocol(self.settings)
        protocol.factory = self
        return protocol


# -- brokers shared by a daemon's listeners ------------------------------------------------------

class _BrokerEntry:
    def __init__(self, broker: Broker, config: MqttBrokerConfig) -> None:
        self.broker = broker
        self.config = config
        self.users = 0
        self.started: asyncio.Future[None] | None = None


_BROKERS: dict[int, dict[str, _BrokerEntry]] = {}


def broker_for(config: MqttBrokerConfig, context: ListenerContext, limits: Any = None) -> _BrokerEntry:
    """The broker named ``config.name`` for this daemon (made on first use).

    Brokers belong to the running service, not to one configuration object, so a listener
    rebuilt by a reload shares the broker (sessions, subscriptions, retained messages) of the
    connections that are still open.
    """
    owner = context.extras.get("service") or context.daemon
    key = id(owner)
    brokers = _BROKERS.get(key)
    if brokers is None:
        brokers = _BROKERS[key] = {}
        try:
            weakref.finalize(owner, _BROKERS.pop, key, None)
        except TypeError:  # pragma: no cover - an object without weak references (tests)
            pass
    entry = brokers.get(config.name)
    if entry is None:
        store = None
        if config.store == "redis":
            from gateway.protocols.mqtt.broker.redis_store import RedisStore

            store = RedisStore(config.redis, name=config.name, prefix=config.redis_prefix, loop=context.loop)
        broker = Broker(
            context.reactor, context.loop, name=config.name, store=store,
            max_queued_messages=limits.max_queued_messages if limits is not None else 1000,
            max_session_expiry=int(config.max_session_expiry) if config.max_session_expiry is not None else None,
        )
        layer = _layer(config.layer, context)
        if config.cluster == "on" or (config.cluster == "auto" and layer is not None and not getattr(layer, "process_local", True)):
            if layer is None:
                raise ValueError(f"broker {config.name!r}: cluster: on needs the channel layer {config.layer!r}")
            from gateway.protocols.mqtt.broker.cluster import Cluster

            Cluster(broker, layer, takeover_timeout=float(config.takeover_timeout))
        entry = brokers[config.name] = _BrokerEntry(broker, config)
    elif _shared_settings(entry.config) != _shared_settings(config):
        log.warn("MQTT listeners name broker {name} with different store/layer/cluster settings; "
                 "the first one's apply", name=config.name)
    return entry


def _shared_settings(config: MqttBrokerConfig) -> tuple[Any, ...]:
    """The settings of the broker itself (users and access rules are each listener's own)."""
    return (config.store, config.redis, config.redis_prefix, config.layer, config.cluster,
            config.max_session_expiry, config.takeover_timeout)


def _layer(alias: str, context: ListenerContext) -> Any:
    layers = context.layers
    if layers is not None:
        return layers.get(alias) if hasattr(layers, "get") else layers[alias]
    from gateway.layers.registry import get_channel_layer

    return get_channel_layer(alias)


def mqtt_settings(config: MqttListenerConfig, context: ListenerContext, broker: Broker | None) -> MqttSettings:
    """The settings shared by one MQTT listener's connections."""
    broker_config = config.broker
    rules = [AccessRule(r.users, r.publish, r.subscribe) for r in broker_config.access]
    return MqttSettings(
        loop=context.loop,
        reactor=context.reactor,
        options=config.server_options(),
        consumer="broker" if config.consumer == "auto" else config.consumer,
        app=context.app,
        broker=broker,
        auth=Authenticator(broker_config.users, broker_config.allow_anonymous, rules),
        state=context.state,
        application_close_timeout=float(context.daemon.timeouts.application_close),
        max_app_queue=config.limits.max_app_queue,
        max_write_buffer=int(config.limits.max_write_buffer),
        connect_answer_timeout=float(config.timeouts.connect_answer),
        listener=config.name,
    )


class MqttListener(EndpointListener):
    """An MQTT listener: resolves ``consumer: auto``, starts and stops its broker."""

    def __init__(self, name: str, endpoint: str, factory: Any, reactor: Any, *, config: MqttListenerConfig,
                 settings: MqttSettings, entry: _BrokerEntry) -> None:
        super().__init__(name, endpoint, factory, reactor)
        self.config = config
        self.settings = settings
        self.entry = entry
        entry.users += 1

    def start_accepting(self) -> None:
        task = asyncio.ensure_future(self._prepare(), loop=self.settings.loop)
        task.add_done_callback(self._prepared)

    async def _prepare(self) -> None:
        if self.config.consumer == "auto":
            from gateway.routing.base import matches

            handles = await matches(self.settings.app, {"type": "mqtt"})
            self.settings.consumer = "application" if handles else "broker"
            log.info("{name}: MQTT clients are answered by the {who}", name=self.name,
                     who="application" if handles else "built-in broker")
        entry = self.entry
        if entry.started is None:
            entry.started = asyncio.ensure_future(entry.broker.start(), loop=self.settings.loop)
        await asyncio.shield(entry.started)

    def _prepared(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        if task.exception() is not None:
            log.failure("{name}: cannot start the MQTT broker", failure=_failure(task.exception()), name=self.name)
        super().start_accepting()

    def stopService(self) -> Any:
        result = super().stopService()
        entry = self.entry
        entry.users -= 1
        if entry.users or entry.started is None:
            return result
        return defer.Deferred.fromFuture(asyncio.ensure_future(entry.broker.stop(), loop=self.settings.loop))


def mount_on_http(http_settings: Any, config: MqttListenerConfig, context: ListenerContext,
                  path: str | None = None) -> Any:
    """Serve MQTT over WebSocket at ``path`` (default ``config.websocket.path``) of an HTTP
    listener: the one call an HTTP listener builder makes, with the ``HTTPSettings`` it built,
    an MQTT listener configuration (its ``endpoint`` unused) and its own ``ListenerContext``.

    The mount shares the daemon's broker named ``config.broker.name`` (TCP/TLS clients of MQTT
    listeners see WebSocket clients of the mount) and chains in front of the previous
    ``http_settings.websocket`` hook. ``consumer: auto`` is resolved right away. Call
    ``await mount.close()`` when the HTTP listener stops (it stops the broker when no MQTT
    listener uses it any more).
    """
    from gateway.protocols.mqtt.broker.eager import run_eager
    from gateway.protocols.mqtt.websocket import mount_websocket
    from gateway.routing.base import matches

    entry = broker_for(config.broker, context, config.limits)
    settings = mqtt_settings(config, context, entry.broker)
    if config.consumer == "auto":

        def decided(exc: BaseException | None, handles: Any) -> None:
            settings.consumer = "application" if exc is None and handles else "broker"

        run_eager(matches(context.app, {"type": "mqtt"}), decided, context.loop)
    entry.users += 1
    if entry.started is None:
        entry.started = asyncio.ensure_future(entry.broker.start(), loop=context.loop)
    mount = mount_websocket(http_settings, settings, path or config.websocket.path, config.websocket.allowed_origins)

    async def close() -> None:
        entry.users -= 1
        if not entry.users:
            await entry.broker.stop()

    mount.close = close  # type: ignore[attr-defined]
    return mount


def build_listener(config: MqttListenerConfig, context: ListenerContext) -> MqttListener:
    """Build the listener service for an MQTT listener configuration."""
    entry = broker_for(config.broker, context, config.limits)
    settings = mqtt_settings(config, context, entry.broker)
    if config.endpoint is None:  # the configuration check rules this out
        raise ValueError(f"listener {config.name!r} has no endpoint")
    if config.transport == "websocket":
        from gateway.protocols.mqtt.websocket import MqttWebSocketFactory

        factory: Any = MqttWebSocketFactory(
            settings, path=config.websocket.path, allowed_origins=config.websocket.allowed_origins,
            max_connections=config.limits.max_connections,
        )
        factory.isSecure = config.endpoint.startswith("ssl:")
    else:
        factory = MqttFactory(settings, config.limits.max_connections)
    return MqttListener(config.name, config.endpoint, factory, context.reactor, config=config,
                        settings=settings, entry=entry)


def _failure(exc: BaseException | None) -> Any:
    from twisted.python.failure import Failure

    return Failure(exc, type(exc), exc.__traceback__ if exc is not None else None)
