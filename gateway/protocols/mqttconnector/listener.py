"""The MQTT connector as a daemon listener (``protocol: mqtt-connector``): no socket of its own;
it connects after lifespan startup, reports itself not ready while it is not connected, and on
stop lets the application finish what it holds before it DISCONNECTs (the session stays)."""

from __future__ import annotations

import asyncio
from typing import Any

from twisted.internet import defer

from gateway.listener import GatewayListener, ListenerContext
from gateway.metrics.stats import ConnectorStats, ListenerStats
from gateway.protocols.mqttconnector.adapter import Connector
from gateway.protocols.mqttconnector.config import MqttConnectorConfig

__all__ = ["ConnectorListener", "build_listener"]


class ConnectorListener(GatewayListener):
    """Runs one :class:`Connector`."""

    def __init__(self, name: str, connector: Connector, reactor: Any, drain_timeout: float = 10.0) -> None:
        super().__init__(name)
        self.connector = connector
        self.reactor = reactor
        self.drain_timeout = drain_timeout

    def attach_stats(self, stats: ListenerStats) -> None:
        super().attach_stats(stats)
        if isinstance(stats, ConnectorStats):
            stats.queued_source = self.connector.outstanding
            self.connector.stats = stats

    def start_accepting(self) -> None:
        self.connector.start()

    def drain(self, timeout: float, reactor: Any) -> defer.Deferred[None]:
        """Let the application finish the messages it holds (up to ``timeout``), then
        DISCONNECT; after the timeout, drop the connection."""
        connector = self.connector
        done: defer.Deferred[None] = defer.Deferred.fromFuture(asyncio.ensure_future(connector.stop(), loop=connector.loop))
        timer = reactor.callLater(timeout, self.force_close)

        def finished(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        return done.addBoth(finished)

    def stop_listening(self) -> defer.Deferred[None]:
        """Replaced on reload: stop (the replacement takes the broker session over)."""
        return self.drain(self.drain_timeout, self.reactor)

    def force_close(self) -> None:
        self.connector.abort()

    def readiness_problem(self) -> str | None:
        return self.connector.problem()

    def connection_count(self) -> int:
        return 1 if self.connector.connected else 0


def build_listener(config: MqttConnectorConfig, context: ListenerContext) -> ConnectorListener:
    """Build the listener service for an MQTT connector configuration."""
    layer = None
    if config.publish_channel is not None:
        layers = context.layers
        layer = layers.get(config.layer) if layers is not None else None
        if layer is None:
            raise ValueError(f"connector {config.name!r}: publish_channel needs the channel layer {config.layer!r}")
    make_protocol = None
    if config.address.websocket:
        from gateway.protocols.mqttconnector.websocket import client_protocol

        make_protocol = client_protocol
    connector = Connector(
        config, app=context.app, loop=context.loop, reactor=context.reactor, state=context.state,
        close_timeout=float(context.daemon.timeouts.application_close), layer=layer, make_protocol=make_protocol,
    )
    return ConnectorListener(config.name, connector, context.reactor, float(context.daemon.timeouts.drain))
