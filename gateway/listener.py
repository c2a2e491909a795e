# -*- test-case-name: tests.integration.test_daemon -*-
"""Listeners: a bound endpoint, its open connections, and a graceful drain.

A listener binds early (in ``privilegedStartService``, before twistd drops privileges), does
not accept connections until the application's lifespan startup has finished, and on stop
stops accepting, lets its connections finish what they started, then closes the stragglers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol as TypingProtocol

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from gateway.asgi.app import ASGIApp
from gateway.endpoints import describe_port
from gateway.metrics.stats import HTTPStats, ListenerStats

log = Logger(namespace="gateway.listener")


@dataclass(eq=False)
class ListenerContext:
    """What a listener builder gets from the daemon.

    Attributes:
        reactor: the Twisted reactor (tests pass a fake one).
        loop: the asyncio loop application instances run on.
        app: the ASGI application this listener serves.
        state: the lifespan state of that application (copied into every scope).
        daemon: the whole daemon configuration (:class:`gateway.config.GatewayConfig`).
        layers: the channel layers by alias, when configured.
        extras: room for cross-cutting services (metrics, a router's ``matches``).
    """

    reactor: Any
    loop: asyncio.AbstractEventLoop
    app: ASGIApp
    state: dict[str, Any]
    daemon: Any
    layers: Any = None
    extras: dict[str, Any] = field(default_factory=dict)


#: Listen backlog when the endpoint string sets none (Twisted's own default, 50, overflows
#: under a burst of new connections and makes clients wait for SYN retries).
DEFAULT_BACKLOG = 1024


def with_default_backlog(description: str) -> str:
    """``description`` with ``:backlog=1024`` added to tcp/ssl/unix endpoints that set none."""
    kind = description.split(":", 1)[0]
    if kind in ("tcp", "tcp6", "ssl", "unix") and "backlog=" not in description:
        return f"{description}:backlog={DEFAULT_BACKLOG}"
    return description


class GatewayConnection(TypingProtocol):
    """What a listener needs from each of its connections."""

    def shutdown(self) -> None:
        """Finish what was started, take nothing new, then close."""

    def abort(self) -> None:
        """Close now."""


class TrackingFactory(Factory):
    """A factory that knows its open connections and caps their number.

    Protocols call :meth:`connection_opened` and :meth:`connection_closed`. At
    ``max_connections`` the listening port stops accepting (new clients wait in the kernel's
    queue) until a connection closes.
    """

    noisy = False
    #: Counters (replaced by the daemon's shared object for this listener, see
    #: :meth:`GatewayListener.attach_stats`); a private one of ``stats_class`` until then.
    stats: ListenerStats
    #: The class of that private object (HTTP's, the most common, unless a subclass says).
    stats_class: type[ListenerStats] = HTTPStats

    def __init__(self, max_connections: int | None = None) -> None:
        self.connections: set[Any] = set()
        self.max_connections = max_connections
        self.port: Any = None
        self.accepting = False
        self._paused_for_limit = False
        self._empty: list[defer.Deferred[None]] = []
        self.stats = self.stats_class()

    def connection_opened(self, protocol: Any) -> None:
        """Register a new connection."""
        self.connections.add(protocol)
        self.stats.connections += 1
        limit = self.max_connections
        if limit is not None and len(self.connections) >= limit and not self._paused_for_limit:
            self._paused_for_limit = True
            if self.port is not None and hasattr(self.port, "stopReading"):
                log.warn("Listener reached max_connections={limit}; new connections wait", limit=limit)
                self.port.stopReading()

    def connection_closed(self, protocol: Any) -> None:
        """Forget a closed connection."""
        self.connections.discard(protocol)
        if self._paused_for_limit and (self.max_connections is None or len(self.connections) < self.max_connections):
            self._paused_for_limit = False
            if self.accepting and self.port is not None and hasattr(self.port, "startReading"):
                self.port.startReading()
        if not self.connections:
            waiters, self._empty = self._empty, []
            for waiter in waiters:
                waiter.callback(None)

    def when_empty(self) -> defer.Deferred[None]:
        """A Deferred that fires once no connection is open."""
        if not self.connections:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._empty.append(waiter)
        return waiter


class GatewayListener(Service):
    """Base of everything the daemon runs as a listener.

    Subclasses bind in :meth:`bind`, start serving in :meth:`start_accepting` and wind down in
    :meth:`drain`. Listeners without a socket (an IMAP reader) override what they need.
    """

    #: The configuration this listener was built from (set by the daemon).
    config: Any = None
    #: This listener's counters (:mod:`gateway.metrics`), set by :meth:`attach_stats`.
    stats: ListenerStats | None = None

    def __init__(self, name: str) -> None:
        self.setName(name)

    def attach_stats(self, stats: ListenerStats) -> None:
        """Count into ``stats`` from now on (the daemon's object for this listener's name, shared
        with the listener it replaces on reload). Subclasses hand it to their settings."""
        self.stats = stats

    def reconfigure(self, config: Any, context: ListenerContext) -> bool:
        """Apply a changed configuration in place (on reload); return False if it cannot be.

        A listener that returns False is replaced: the old one stops listening while its open
        connections carry on with the old settings, and a new one is bound.
        """
        return False

    def stop_listening(self) -> defer.Deferred[None]:
        """Release the socket but leave open connections alone (a replacement on reload)."""
        return defer.succeed(None)

    def bind(self) -> defer.Deferred[None]:
        """Bind the socket (called before privileges are dropped)."""
        return defer.succeed(None)

    def start_accepting(self) -> None:
        """Start serving (called after lifespan startup)."""

    def drain(self, timeout: float, reactor: Any) -> defer.Deferred[None]:
        """Stop taking new work; finish what was started within ``timeout`` seconds."""
        return defer.succeed(None)

    def force_close(self) -> None:
        """Close everything now."""

    def addresses(self) -> list[str]:
        """Where this listener is reachable, for logs and status."""
        return []

    def connection_count(self) -> int:
        """How many connections are open."""
        return 0


class EndpointListener(GatewayListener):
    """A listener on a Twisted server endpoint string, serving ``factory``."""

    def __init__(self, name: str, endpoint: str, factory: TrackingFactory, reactor: Any) -> None:
        super().__init__(name)
        self.endpoint_description = endpoint
        self.factory = factory
        self.reactor = reactor
        self.port: Any = None
        self._bound: defer.Deferred[None] | None = None

    def attach_stats(self, stats: ListenerStats) -> None:
        super().attach_stats(stats)
        self.factory.stats = stats
        settings = getattr(self.factory, "settings", None)
        # The connections' shared settings, and an HTTP listener's WebSocket upgrade hook, count
        # into the same object (when it is of their kind: a hook could be another protocol's).
        for holder in (settings, getattr(getattr(settings, "websocket", None), "settings", None)):
            current = getattr(holder, "stats", None)
            if holder is not None and current is not None and isinstance(stats, type(current)):
                holder.stats = stats

    def bind(self) -> defer.Deferred[None]:
        if self._bound is None:
            # maybeDeferred: a parse error (no inherited systemd socket, an unreadable key)
            # becomes a failed bind, reported with the listener's name like a port in use.
            self._bound = defer.maybeDeferred(self._listen).addCallback(self._listening)
        return self._bound

    def _listen(self) -> defer.Deferred[Any]:
        endpoint = serverFromString(self.reactor, with_default_backlog(self.endpoint_description))
        return endpoint.listen(self.factory)  # type: ignore[no-any-return]

    def _listening(self, port: Any) -> None:
        self.port = port
        self.factory.port = port
        # Connections wait in the kernel's accept queue until start_accepting().
        if hasattr(port, "stopReading"):
            port.stopReading()

    def start_accepting(self) -> None:
        self.factory.accepting = True
        if self.port is not None and hasattr(self.port, "startReading") and not self.factory._paused_for_limit:
            self.port.startReading()

    def addresses(self) -> list[str]:
        return [describe_port(self.port)] if self.port is not None else []

    @defer.inlineCallbacks
    def stop_listening(self) -> Any:
        self.factory.accepting = False
        if self.port is not None:
            port, self.port = self.port, None
            yield defer.maybeDeferred(port.stopListening)

    def connection_count(self) -> int:
        return len(self.factory.connections)

    @defer.inlineCallbacks
    def drain(self, timeout: float, reactor: Any) -> Any:
        yield self.stop_listening()
        connections = list(self.factory.connections)
        if connections:
            log.info("{name}: waiting up to {timeout}s for {count} connection(s) to finish",
                     name=self.name, timeout=timeout, count=len(connections))
        for connection in connections:
            connection.shutdown()
        empty = self.factory.when_empty()
        if not empty.called:
            timer = reactor.callLater(timeout, self.force_close)
            yield empty
            if timer.active():
                timer.cancel()

    def force_close(self) -> None:
        remaining = list(self.factory.connections)
        if remaining:
            log.warn("{name}: closing {count} connection(s) that did not finish in time", name=self.name, count=len(remaining))
        for connection in remaining:
            connection.abort()
