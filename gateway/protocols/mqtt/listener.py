"""Building MQTT listeners: configuration → listener service (TCP and TLS; WebSocket through
:mod:`.websocket`).

Every MQTT listener has a broker: listeners of one service naming the same ``broker.name``
share one :class:`~.broker.core.Broker`, so TCP, TLS and WebSocket clients see each other. The
brokers belong to the service that made them (:class:`Brokers`, kept in the listener context's
``shared`` objects): two services in one process do not share them, and a listener rebuilt by a
reload shares the broker (sessions, subscriptions, retained messages) of the connections still
open. ``consumer: auto`` is resolved when the listener starts accepting: the application
answers ``mqtt`` scopes if ``await matches(app, {"type": "mqtt"})`` (a ``ProtocolTypeRouter``
without an ``"mqtt"`` route does not), else the built-in broker does.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from twisted.internet import defer
from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.logger import Logger
from zope.interface import implementer

from gateway.asgi.instance import failure_of
from gateway.listener import EndpointListener, ListenerContext, TrackingFactory
from gateway.metrics.stats import MqttStats
from gateway.protocols.mqtt.adapter import MqttProtocol, MqttSettings
from gateway.protocols.mqtt.broker.auth import AccessRule, Authenticator
from gateway.protocols.mqtt.broker.core import Broker
from gateway.protocols.mqtt.config import MqttBrokerConfig, MqttLimitsConfig, MqttListenerConfig

__all__ = [
    "BrokerEntry", "Brokers", "MqttFactory", "MqttListener", "brokers_of", "build_listener", "mount_on_http",
    "mqtt_settings",
]

log = Logger(namespace="gateway.mqtt")

#: The key of the service's :class:`Brokers` in ``ListenerContext.shared``.
SHARED_KEY = "mqtt.brokers"


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


# -- brokers shared by a service's listeners ------------------------------------------------------

class BrokerEntry:
    """One broker of a service, with the number of listeners (and mounts) that use it."""

    def __init__(self, broker: Broker, config: MqttBrokerConfig) -> None:
        self.broker = broker
        self.config = config
        self.users = 0
        self.started: asyncio.Future[None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """Start the broker (once; later calls give the same future)."""
        if self.started is None:
            self.started = asyncio.ensure_future(self.broker.start(), loop=loop)
        return self.started


class Brokers:
    """The MQTT brokers of one service, by name (made on first use by a listener)."""

    def __init__(self) -> None:
        self.entries: dict[str, BrokerEntry] = {}

    def get(self, config: MqttBrokerConfig, context: ListenerContext, limits: MqttLimitsConfig | None = None) -> BrokerEntry:
        """The broker named ``config.name`` (made from ``config`` on first use)."""
        entry = self.entries.get(config.name)
        if entry is None:
            entry = self.entries[config.name] = BrokerEntry(_make_broker(config, context, limits), config)
        elif _shared_settings(entry.config) != _shared_settings(config):
            log.warn("MQTT listeners name broker {name} with different store/layer/cluster settings; "
                     "the first one's apply", name=config.name)
        return entry


def brokers_of(context: ListenerContext) -> Brokers:
    """The brokers of the service ``context`` belongs to."""
    brokers = context.shared.get(SHARED_KEY)
    if brokers is None:
        brokers = context.shared[SHARED_KEY] = Brokers()
    return cast(Brokers, brokers)


def _make_broker(config: MqttBrokerConfig, context: ListenerContext, limits: MqttLimitsConfig | None) -> Broker:
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
    return broker


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
    rules = [AccessRule(r.users, r.publish, r.subscribe, r.effect) for r in broker_config.access]
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
        lingering_timeout=float(config.timeouts.lingering),
        lingering_size=int(config.limits.lingering_size),
        listener=config.name,
    )


class MqttListener(EndpointListener):
    """An MQTT listener: resolves ``consumer: auto``, starts and stops its broker."""

    def __init__(self, name: str, endpoint: str, factory: Any, reactor: Any, *, config: MqttListenerConfig,
                 settings: MqttSettings, entry: BrokerEntry) -> None:
        super().__init__(name, endpoint, factory, reactor)
        self.config = config
        self.settings = settings
        self.entry = entry
        entry.users += 1

    def start_accepting(self) -> None:
        task = asyncio.ensure_future(self.prepare(), loop=self.settings.loop)
        task.add_done_callback(self._prepared)

    async def prepare(self) -> None:
        """Resolve ``consumer: auto`` and start the broker (before the first accept)."""
        if self.config.consumer == "auto":
            from gateway.routing.base import matches

            handles = await matches(self.settings.app, {"type": "mqtt"})
            self.settings.consumer = "application" if handles else "broker"
            log.info("{name}: MQTT clients are answered by the {who}", name=self.name,
                     who="application" if handles else "built-in broker")
        await asyncio.shield(self.entry.start(self.settings.loop))

    def _prepared(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.failure("{name}: cannot start the MQTT broker", failure=failure_of(exc), name=self.name)
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

    The mount shares the service's broker named ``config.broker.name`` (TCP/TLS clients of MQTT
    listeners see WebSocket clients of the mount) and chains in front of the previous
    ``http_settings.websocket`` hook. ``consumer: auto`` is resolved right away. Call
    ``await mount.close()`` when the HTTP listener stops (it stops the broker when no MQTT
    listener uses it any more).
    """
    from gateway.protocols.mqtt.broker.eager import run_eager
    from gateway.protocols.mqtt.websocket import mount_websocket
    from gateway.routing.base import matches

    entry = brokers_of(context).get(config.broker, context, config.limits)
    settings = mqtt_settings(config, context, entry.broker)
    if config.consumer == "auto":

        def decided(exc: BaseException | None, handles: Any) -> None:
            settings.consumer = "application" if exc is None and handles else "broker"

        run_eager(matches(context.app, {"type": "mqtt"}), decided, context.loop)
    entry.users += 1
    entry.start(context.loop)
    mount = mount_websocket(http_settings, settings, path or config.websocket.path, config.websocket.allowed_origins)

    async def close() -> None:
        entry.users -= 1
        if not entry.users:
            await entry.broker.stop()

    mount.close = close  # type: ignore[attr-defined]
    return mount


def build_listener(config: MqttListenerConfig, context: ListenerContext) -> MqttListener:
    """Build the listener service for an MQTT listener configuration."""
    entry = brokers_of(context).get(config.broker, context, config.limits)
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

