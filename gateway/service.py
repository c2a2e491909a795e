# -*- test-case-name: tests.integration.test_daemon -*-
"""The daemon as one Twisted service: listeners, lifespan, signals, systemd.

Start-up order: bind every listener (``privilegedStartService``, before twistd drops
privileges) → run lifespan startup → accept connections → ``READY=1``. Stop order (SIGTERM,
SIGINT or ``reactor.stop()``): ``STOPPING=1`` → stop accepting and let started requests finish
(up to ``timeouts.drain``) → lifespan shutdown. A second SIGTERM/SIGINT closes everything at once.
"""

from __future__ import annotations

import asyncio
import gc
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.logger import Logger

from gateway import systemd
from gateway.asgi.app import ASGIApp, load_application
from gateway.asgi.lifespan import Lifespan, LifespanFailure
from gateway.config import GatewayConfig
from gateway.listener import GatewayListener, ListenerContext
from gateway.protocols.registry import listener_builder
from gateway.reactor import reactor_loop

log = Logger(namespace="gateway")


class GatewayService(MultiService):
    """Everything one configuration describes.

    Args:
        config: the validated configuration.
        reactor: the asyncio reactor (the global one by default).
        loop: the asyncio loop (the reactor's by default).
        install_signal_handlers: handle SIGTERM/SIGINT (graceful, then forced).
    """

    def __init__(self, config: GatewayConfig, reactor: Any = None, loop: asyncio.AbstractEventLoop | None = None,
                 install_signal_handlers: bool = True, config_path: str | None = None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self.config = config
        self.reactor = reactor
        self.loop = loop or reactor_loop(reactor)
        self.install_signal_handlers = install_signal_handlers
        #: The file SIGHUP re-reads (None: reload is not available).
        self.config_path = config_path
        #: Exit status for the process: 0, or 1 when start-up failed.
        self.exit_code = 0
        self.ready = False
        self.stopping = False
        self._signals = 0
        self._watchdog: Any = None
        self._executor = ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="gateway-sync")
        self.apps: dict[str, ASGIApp] = {}
        self.lifespans: dict[str, Lifespan] = {}
        self.listeners: list[GatewayListener] = []
        #: Listeners taken out by a reload whose connections are still open.
        self.retiring: set[GatewayListener] = set()
        from gateway.metrics.hub import MetricsHub

        #: Counters by listener, exported by admin listeners (docs/operations.md).
        self.metrics = MetricsHub(self)
        from gateway.consumers import configure_sync_threads
        from gateway.layers import LayerRegistry

        configure_sync_threads(config.threads)
        #: The channel layers by alias: this service's own; its applications see them through
        #: get_channel_layer() (gateway/layers/registry.py), another service's do not.
        self.layers = LayerRegistry(config.layers_mapping())
        with self.layers.using():
            for listener_config in config.listeners:
                listener = self.build_listener(listener_config, config)
                listener.setServiceParent(self)
                self.listeners.append(listener)

    def listener_context(self, listener_config: Any, config: GatewayConfig) -> ListenerContext:
        """The context a listener of ``config`` is built with."""
        app, lifespan = self._application(config.application_for(listener_config))
        return ListenerContext(
            reactor=self.reactor,
            loop=self.loop,
            app=app,
            state=lifespan.state if lifespan is not None else {},
            daemon=config,
            layers=self.layers,
            extras={"service": self, "metrics": self.metrics},
        )

    def build_listener(self, listener_config: Any, config: GatewayConfig) -> GatewayListener:
        """Build (but neither bind nor start) the listener for one listener configuration."""
        context = self.listener_context(listener_config, config)
        listener: GatewayListener = listener_builder(listener_config.protocol)(listener_config, context)
        listener.config = listener_config
        self.metrics.attach(listener)
        return listener

    def _application(self, reference: str | None) -> tuple[ASGIApp, Lifespan | None]:
        if reference is None:
            return _no_application, None
        app = self.apps.get(reference)
        if app is None:
            app = self.apps[reference] = self.layers.bind_application(load_application(reference))
            timeouts = self.config.timeouts
            self.lifespans[reference] = Lifespan(
                app, self.loop, self.config.lifespan, timeouts.lifespan_startup, timeouts.lifespan_shutdown
            )
        return app, self.lifespans[reference]

    # -- start ---------------------------------------------------------------------------

    def privilegedStartService(self) -> None:
        self._binding = [listener.bind() for listener in self.listeners]
        super().privilegedStartService()

    def startService(self) -> None:
        super().startService()
        self.layers.activate()
        self.reactor.callWhenRunning(self._start)

    def _start(self) -> None:
        if self.install_signal_handlers:
            self._install_signal_handlers()
        self.loop.set_default_executor(self._executor)
        defer.Deferred.fromFuture(asyncio.ensure_future(self._startup(), loop=self.loop))

    async def _startup(self) -> None:
        results = await defer.DeferredList(self._binding, consumeErrors=True).asFuture(self.loop)
        failed = [(listener, result) for listener, (ok, result) in zip(self.listeners, results) if not ok]
        for listener, failure in failed:
            error = failure.getErrorMessage()
            if failure.check(IndexError) and "systemd:" in getattr(listener, "endpoint_description", ""):
                error = "no socket was passed by systemd (is the .socket unit enabled and LISTEN_FDS set?)"
            log.critical("Cannot listen on {name} ({endpoint}): {error}", name=listener.name,
                         endpoint=getattr(listener, "endpoint_description", "-"), error=error)
        if failed:
            self.fail(1)
            return
        try:
            for reference, lifespan in self.lifespans.items():
                await lifespan.startup()
        except LifespanFailure as exc:
            log.critical("Application startup failed: {message}", message=str(exc))
            self.fail(1)
            return
        if self.stopping:
            return
        for listener in self.listeners:
            listener.start_accepting()
            for address in listener.addresses():
                log.info("Listening: {name} ({protocol}) on {address}", name=listener.name,
                         protocol=_protocol_of(self.config, listener.name), address=address)
        self.ready = True
        # Everything built so far (modules, applications, configuration) lives as long as the
        # process: keep it out of the garbage collector's scans.
        gc.freeze()
        systemd.notify("READY=1\nSTATUS=" + self.status_line())
        self._watchdog = systemd.start_watchdog(self.reactor)

    def status_line(self) -> str:
        """``listening name=address ...`` for systemd's STATUS (tests read it too)."""
        addresses = [f"{listener.name}={address}" for listener in self.listeners for address in listener.addresses()]
        return "listening " + " ".join(addresses)

    def fail(self, code: int) -> None:
        """Stop the daemon with exit status ``code`` (start-up failed)."""
        self.exit_code = code
        if not self.stopping:
            self.reactor.stop()

    # -- stop ----------------------------------------------------------------------------

    def stopService(self) -> defer.Deferred[None]:
        self.stopping = True
        systemd.notify("STOPPING=1")
        if self._watchdog is not None and self._watchdog.running:
            self._watchdog.stop()
        return defer.Deferred.fromFuture(asyncio.ensure_future(self._shutdown(), loop=self.loop))

    async def _shutdown(self) -> None:
        drain = self.config.timeouts.drain
        if self.ready:
            log.info("Stopping: finishing started requests (up to {drain}s)", drain=drain)
        await defer.DeferredList(
            [listener.drain(drain, self.reactor) for listener in [*self.listeners, *self.retiring]], consumeErrors=True
        ).asFuture(self.loop)
        await defer.maybeDeferred(super().stopService).asFuture(self.loop)
        if self.ready:
            for lifespan in self.lifespans.values():
                await lifespan.shutdown()
        try:
            await self.layers.close_all()
        except Exception as exc:  # a layer that cannot close cleanly must not block the stop
            log.error("Closing the channel layers failed: {error}", error=exc)
        self.layers.deactivate()
        self._executor.shutdown(wait=False, cancel_futures=True)
        log.info("Stopped")

    def force_stop(self) -> None:
        """Close every connection now (a second signal during a drain)."""
        for listener in [*self.listeners, *self.retiring]:
            listener.force_close()

    # -- signals -------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            try:
                signal.signal(signum, self._signal_handler)
            except ValueError:  # not the main thread
                return

    def _signal_handler(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self._signal_received, signum)

    def reload(self) -> defer.Deferred[bool]:
        """Re-read the configuration file and apply it (SIGHUP, ``systemctl reload``)."""
        from gateway.reload import reload

        return defer.Deferred.fromFuture(asyncio.ensure_future(reload(self), loop=self.loop))

    def _signal_received(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            if self.config_path is None:
                log.warn("Received SIGHUP, but this daemon was not started from a configuration file")
            elif self.ready and not self.stopping:
                log.info("Received SIGHUP: reloading {path}", path=self.config_path)
                self.reload()
            return
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            log.info("Received {signal}: shutting down gracefully (send it again to force)", signal=name)
            if self.reactor.running:
                self.reactor.stop()
        else:
            log.warn("Received {signal} again: closing all connections now", signal=name)
            self.force_stop()


def _protocol_of(config: GatewayConfig, name: str) -> str:
    for listener in config.listeners:
        if listener.name == name:
            return listener.protocol
    return "?"


async def _no_application(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
    raise RuntimeError("this listener has no application")
