# -*- test-case-name: tests.integration.test_daemon -*-
"""Listeners: a bound endpoint, its open connections, and a graceful drain.

A listener binds early (in ``privilegedStartService``, before twistd drops privileges), does
not accept connections until the application's lifespan startup has finished, and on stop
stops accepting, lets its connections finish what they started, then closes the stragglers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any, Protocol as TypingProtocol, cast

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import ILogObserver, Logger
from twisted.python.failure import Failure

from gateway.asgi.app import ASGIApp
from gateway.config.schema import SslEndpointConfig
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
        shared: objects the service's listeners share, by key, owned by the service (made by
            the first listener that needs one: the MQTT brokers). Two services do not share
            them.
    """

    reactor: Any
    loop: asyncio.AbstractEventLoop
    app: ASGIApp
    state: dict[str, Any]
    daemon: Any
    layers: Any = None
    extras: dict[str, Any] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)


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
    queue) until a connection closes; the listener's :class:`AcceptGate` makes the limit exact.
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
        #: The gate of the port serving this factory (set by the listener once bound).
        self.gate: AcceptGate | None = None
        self._empty: list[defer.Deferred[None]] = []
        self.stats = self.stats_class()

    def room(self) -> int | None:
        """How many more connections may open (``None``: no limit)."""
        limit = self.max_connections
        return None if limit is None else max(0, limit - len(self.connections))

    def connection_opened(self, protocol: Any) -> None:
        """Register a new connection."""
        self.connections.add(protocol)
        self.stats.connections += 1
        gate = self.gate
        if gate is not None:
            gate.update()

    def connection_closed(self, protocol: Any) -> None:
        """Forget a closed connection."""
        self.connections.discard(protocol)
        gate = self.gate
        if gate is not None:
            gate.update()
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


#: Seconds between two log lines about the same limit of one listener (the first is at once).
LIMIT_LOG_INTERVAL = 10.0
#: How long a port stops accepting after running out of file descriptors (nginx waits 500 ms).
EMFILE_PAUSE = 0.5


class AcceptGate:
    """Lets a listening port accept only what its listener may take.

    The port reads (accepts) while the listener accepts and has room: fewer open connections
    than ``max_connections`` and fewer TLS handshakes in progress than ``tls.max_handshakes``.
    Twisted accepts up to ``port.numberAccepts`` connections each time the socket is readable
    and only then looks at anything else, so the gate also keeps ``numberAccepts`` within the
    room, again after every batch: no batch can take more than the room, the limits hold
    exactly, and clients beyond them wait in the kernel's accept queue instead.

    It also reports, at ERROR and at most every :data:`LIMIT_LOG_INTERVAL` seconds, when the
    process runs out of file descriptors, and stops accepting for :data:`EMFILE_PAUSE` then.
    """

    def __init__(self, name: str, port: Any, factory: TrackingFactory, reactor: Any,
                 handshakes: HandshakeGuard | None = None) -> None:
        self.name = name
        self.port = port
        self.factory = factory
        self.reactor = reactor
        self.handshakes = handshakes
        self.accepting = False
        #: Whether the port is reading; the listener stopped it when it bound.
        self.reading = False
        self._pause: Any = None
        self._logged: dict[str, float] = {}
        self._missed: dict[str, int] = {}
        self._closed_for_fds = 0
        original: Callable[[], Any] | None = getattr(port, "doRead", None)
        self._batched = original is not None and hasattr(port, "numberAccepts")
        if original is not None and self._batched:
            accept = original

            def doRead() -> Any:
                try:
                    return accept()
                finally:
                    self.update()

            port.doRead = doRead
        from gateway._compat.twisted_ports import set_port_logger

        set_port_logger(port, Logger(namespace=log.namespace, observer=cast(ILogObserver, self._accept_event)))
        factory.gate = self

    def room(self) -> int | None:
        """How many connections may be accepted now (``None``: no limit)."""
        room = self.factory.room()
        if self.handshakes is not None:
            pending = self.handshakes.room()
            room = pending if room is None else min(room, pending)
        return room

    def update(self) -> None:
        """Start or stop reading, and size the next accept batch, after any change."""
        port = self.port
        if port is None:
            return
        room = self.room()
        if not self.accepting or room == 0 or self._pause is not None:
            if self.reading:
                self.reading = False
                port.stopReading()
                if self.accepting and room == 0:
                    self._limit_reached()
            return
        if room is not None and self._batched and port.numberAccepts > room:
            port.numberAccepts = room
        if not self.reading:
            self.reading = True
            port.startReading()

    def start(self) -> None:
        """Start accepting (after lifespan startup)."""
        self.accepting = True
        self.update()

    def stop(self) -> None:
        """Stop accepting for good (the port is closing)."""
        self.accepting = False
        self.update()
        self.port = None
        if self._pause is not None and self._pause.active():
            self._pause.cancel()
        self._pause = None
        if self.factory.gate is self:
            self.factory.gate = None

    def _limit_reached(self) -> None:
        factory = self.factory
        limit = factory.max_connections
        if limit is not None and len(factory.connections) >= limit:
            self.report("max_connections", "{name}: max_connections={limit} reached; new connections wait in the "
                        "kernel's accept queue", limit=limit)
        elif self.handshakes is not None and self.handshakes.room() == 0:
            self.report("max_handshakes", "{name}: tls.max_handshakes={limit} TLS handshakes in progress; new "
                        "connections wait in the kernel's accept queue", limit=self.handshakes.limit)

    def report(self, key: str, message: str, level: str = "warn", **fields: Any) -> None:
        """Log ``message`` for limit ``key``, at most once per :data:`LIMIT_LOG_INTERVAL`
        seconds; the next line says how often it happened meanwhile."""
        now = self.reactor.seconds()
        last = self._logged.get(key)
        if last is not None and now - last < LIMIT_LOG_INTERVAL:
            self._missed[key] = self._missed.get(key, 0) + 1
            return
        self._logged[key] = now
        missed = self._missed.pop(key, 0)
        if missed:
            message += f" ({missed} more time(s) in the last {LIMIT_LOG_INTERVAL:.0f}s)"
        getattr(log, level)(message, name=self.name, **fields)

    def _accept_event(self, event: dict[str, Any]) -> None:
        """The port's own log events about accept(): running out of descriptors is an error."""
        text = str(event.get("log_format") or "")
        if text.startswith("EMFILE recovery: Closed"):
            self._closed_for_fds += 1
            return
        if text.startswith("EMFILE encountered"):
            return
        if text.startswith("Re-reserving EMFILE"):
            self._out_of_descriptors(self._closed_for_fds)
            self._closed_for_fds = 0
            return
        error = str(event.get("acceptError", ""))
        if text.startswith("Could not accept") and error != "ECONNABORTED":
            if error == "EMFILE":
                self._out_of_descriptors(0)
            else:
                self.report(error, "{name}: cannot accept a connection: {error} ({why})", level="error",
                            error=error, why=_ACCEPT_ERROR_WHY.get(error, "a resource of the system ran out"))
            return
        if text.startswith("Could not accept"):
            return
        from twisted.logger import globalLogPublisher

        globalLogPublisher(event)

    def _out_of_descriptors(self, closed: int) -> None:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        what = f"{closed} new connection(s) were closed at once" if closed else "new connections wait"
        self.report("EMFILE", "{name}: out of file descriptors (ulimit -n is {soft}, {open} connections open on "
                    "this listener): {what}; raise LimitNOFILE= (systemd) or ulimit -n, or lower max_connections",
                    level="error", soft=soft, open=len(self.factory.connections), what=what)
        if self._pause is None and self.port is not None:
            self._pause = self.reactor.callLater(EMFILE_PAUSE, self._resume)
            self.update()

    def _resume(self) -> None:
        self._pause = None
        self.update()


_ACCEPT_ERROR_WHY = {
    "ENFILE": "the system-wide limit of open files is reached: fs.file-max",
    "ENOBUFS": "out of socket buffer memory",
    "ENOMEM": "out of memory",
}


class HandshakeGuard:
    """Counts the TLS handshakes in progress on one listener and ends those that take too long.

    A pending handshake holds about 50 KB of OpenSSL state; the guard keeps at most ``limit`` of
    them (the :class:`AcceptGate` stops accepting at the limit) and disconnects a client that has
    not finished its handshake within ``timeout`` seconds.
    """

    def __init__(self, name: str, limit: int, timeout: float, reactor: Any) -> None:
        self.name = name
        self.limit = limit
        self.timeout = timeout
        self.reactor = reactor
        self.pending: dict[Any, Any] = {}
        self.timeouts = 0
        self.on_change: Any = None

    def room(self) -> int:
        """How many more handshakes may start."""
        return max(0, self.limit - len(self.pending))

    def started(self, protocol: Any) -> None:
        """A TLS connection was accepted; its handshake starts."""
        self.pending[protocol] = self.reactor.callLater(self.timeout, self._expired, protocol)
        if self.on_change is not None:
            self.on_change()

    def finished(self, protocol: Any) -> None:
        """The handshake of ``protocol`` completed, or its connection closed."""
        timer = self.pending.pop(protocol, None)
        if timer is None:
            return
        if timer.active():
            timer.cancel()
        if self.on_change is not None:
            self.on_change()

    def _expired(self, protocol: Any) -> None:
        if self.pending.pop(protocol, None) is None:
            return
        self.timeouts += 1
        log.debug("{name}: a TLS handshake took longer than {timeout}s; closing the connection",
                  name=self.name, timeout=self.timeout)
        transport = getattr(protocol, "transport", None)
        if transport is not None:
            transport.abortConnection()
        if self.on_change is not None:
            self.on_change()


def _guarded_tls_protocol() -> type:
    """``TLSMemoryBIOProtocol`` that reports its handshake to its factory's :class:`HandshakeGuard`."""
    from twisted.protocols.tls import TLSMemoryBIOProtocol

    from gateway._compat.twisted_ports import tls_handshake_done

    class GuardedTLSProtocol(TLSMemoryBIOProtocol):
        _guard: HandshakeGuard | None = None

        def makeConnection(self, transport: Any) -> None:
            guard = getattr(self.factory, "handshake_guard", None)
            if guard is not None:
                self._guard = guard
                guard.started(self)
            super().makeConnection(transport)

        def dataReceived(self, data: bytes) -> None:
            super().dataReceived(data)
            guard = self._guard
            if guard is not None and tls_handshake_done(self):
                self._guard = None
                guard.finished(self)

        def connectionLost(self, reason: Failure = connectionDone) -> None:
            guard = self._guard
            if guard is not None:
                self._guard = None
                guard.finished(self)
            super().connectionLost(reason)

    return GuardedTLSProtocol


class GatewayListener(Service):
    """Base of everything the daemon runs as a listener.

    Subclasses bind in :meth:`bind`, start serving in :meth:`start_accepting` and wind down in
    :meth:`drain`. Listeners without a socket (an IMAP reader) override what they need.
    """

    #: The configuration this listener was built from (set by the daemon).
    config: Any = None
    #: This listener's counters (:mod:`gateway.metrics`), set by :meth:`attach_stats`.
    stats: ListenerStats | None = None

    #: The listener's name (the configuration's; Twisted's Service allows ``None``).
    name: str
    #: Seconds an idle HTTP/1 keep-alive connection may stay open during :meth:`drain` waiting
    #: for its next request, answered with ``Connection: close`` (0: close idle ones at once).
    #: A worker replaced by a reload drains this way, so clients never race a close.
    idle_grace: float = 0.0

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

    def readiness_problem(self) -> str | None:
        """Why this listener cannot serve now (for ``/readyz`` and ``gateway_listener_up``), or
        None. A listener with an endpoint is ready once bound; one without a socket says for
        itself (an MQTT connector: while it is not connected to its broker)."""
        config = self.config
        if config is not None and config.endpoint is not None and not self.addresses():
            return "is not bound"
        return None

    def max_connections(self) -> int | None:
        """The most connections this listener opens at once (``None``: no socket, or no limit)."""
        return None


class EndpointListener(GatewayListener):
    """A listener on a Twisted server endpoint string, serving ``factory``."""

    def __init__(self, name: str, endpoint: str, factory: TrackingFactory, reactor: Any) -> None:
        super().__init__(name)
        self.endpoint_description = endpoint
        self.factory = factory
        self.reactor = reactor
        self.port: Any = None
        self.gate: AcceptGate | None = None
        self.handshakes: HandshakeGuard | None = None
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

    def ssl_config(self) -> SslEndpointConfig | None:
        """The ``ssl:`` section of this listener's configuration (``None``: the defaults)."""
        return getattr(self.config, "ssl", None)

    def _listen(self) -> defer.Deferred[Any]:
        from gateway.workers.inherit import inherited_socket

        inherited = inherited_socket(self.name)
        if inherited is not None:
            # A worker: the supervisor bound the socket; adopt it instead of binding.
            return defer.succeed(self._adopt(inherited.fd, inherited.family))
        endpoint = serverFromString(self.reactor, with_default_backlog(self.endpoint_description))
        from gateway._compat.twisted_ports import server_context_factory

        context_factory = server_context_factory(endpoint)
        if context_factory is not None:
            from gateway.tls import apply_policy

            apply_policy(context_factory.getContext(), self.ssl_config())
        return endpoint.listen(self.factory)

    def _adopt(self, fd: int, family: int) -> Any:
        """Serve a listening socket the supervisor bound (a worker process)."""
        factory: Any = self.factory
        if self.endpoint_description.startswith("ssl:"):
            from twisted.protocols.tls import TLSMemoryBIOFactory

            from gateway._compat.twisted_ports import server_context_factory
            from gateway.tls import apply_policy

            context_factory = server_context_factory(serverFromString(self.reactor, self.endpoint_description))
            assert context_factory is not None
            apply_policy(context_factory.getContext(), self.ssl_config())
            factory = TLSMemoryBIOFactory(context_factory, False, self.factory)
        from gateway._compat.twisted_ports import adopt_stream_port

        return adopt_stream_port(self.reactor, fd, family, factory)

    def _listening(self, port: Any) -> None:
        self.port = port
        # Connections wait in the kernel's accept queue until start_accepting().
        if not hasattr(port, "stopReading"):
            return
        port.stopReading()
        from twisted.protocols.tls import TLSMemoryBIOFactory

        if isinstance(getattr(port, "factory", None), TLSMemoryBIOFactory):
            tls = self.ssl_config() or SslEndpointConfig()
            self.handshakes = HandshakeGuard(self.name, tls.max_handshakes, float(tls.handshake_timeout), self.reactor)
            port.factory.handshake_guard = self.handshakes
            port.factory.protocol = _guarded_tls_protocol()
        self.gate = AcceptGate(self.name, port, self.factory, self.reactor, self.handshakes)
        if self.handshakes is not None:
            self.handshakes.on_change = self.gate.update

    def start_accepting(self) -> None:
        if self.gate is not None:
            self.gate.start()
        elif self.port is not None and hasattr(self.port, "startReading"):
            self.port.startReading()

    def max_connections(self) -> int | None:
        return self.factory.max_connections

    def addresses(self) -> list[str]:
        return [describe_port(self.port)] if self.port is not None else []

    @defer.inlineCallbacks
    def stop_listening(self) -> Any:
        if self.gate is not None:
            gate, self.gate = self.gate, None
            gate.stop()
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
        grace = self.idle_grace
        for connection in connections:
            retire = getattr(connection, "retire", None) if grace > 0 else None
            if retire is not None:
                retire(grace)
            else:
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


class ListenerBuilder(TypingProtocol):
    """Builds one listener service from its configuration and what the daemon provides (each
    protocol's ``build_listener``, found through :mod:`gateway.protocols.registry`)."""

    def __call__(self, config: Any, context: ListenerContext, /) -> GatewayListener: ...
