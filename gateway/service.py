# -*- test-case-name: tests.integration.test_daemon, tests.integration.test_reload -*-
"""The daemon as one Twisted service: listeners, lifespan, signals, systemd.

Start-up order: bind every listener (``privilegedStartService``, before twistd drops
privileges) → run lifespan startup → accept connections → ``READY=1``. Stop order (SIGTERM,
SIGINT or ``reactor.stop()``): ``STOPPING=1`` → stop accepting and let started requests finish
(up to ``timeouts.drain``) → lifespan shutdown. A second SIGTERM/SIGINT closes everything at once.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.logger import Logger

from gateway import systemd
from gateway.asgi.app import ASGIApp, load_application
from gateway.asgi.lifespan import Lifespan, LifespanFailure
from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.listener import GatewayListener, ListenerBuilder, ListenerContext
from gateway.protocols.registry import listener_builder
from gateway.reactor import reactor_loop
from gateway.reload import ListenerStep, ReloadPlan, plan_reload

log = Logger(namespace="gateway")
reload_log = Logger(namespace="gateway.reload")


class GatewayService(MultiService):
    """Everything one configuration describes.

    Args:
        config: the validated configuration.
        reactor: the asyncio reactor (the global one by default).
        loop: the asyncio loop (the reactor's by default).
        install_signal_handlers: handle SIGTERM/SIGINT (graceful, then forced).
    """

    def __init__(self, config: GatewayConfig, reactor: Any = None, loop: asyncio.AbstractEventLoop | None = None,
                 install_signal_handlers: bool = True, config_path: str | None = None, worker: Any = None) -> None:
        super().__init__()
        #: The link to the supervisor when this daemon is one of several workers
        #: (:class:`gateway.workers.link.WorkerLink`), else None.
        self.worker = worker
        #: Seconds idle keep-alive connections wait for a last request while draining (a
        #: worker retired by a reload, see :attr:`GatewayListener.idle_grace`).
        self.idle_grace = 0.0
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self.config = config
        self.reactor = reactor
        self.loop = loop or reactor_loop(reactor)
        self.install_signal_handlers = install_signal_handlers
        #: The file SIGHUP re-reads (None: reload is not available).
        self.config_path = config_path
        #: Exit status for the process: 0, 1 when start-up failed, 3 when a forced stop (a
        #: second SIGTERM/SIGINT) cut connections short.
        self.exit_code = 0
        self.ready = False
        self.stopping = False
        self._signals = 0
        self._stop_begun = False
        self._watchdog: Any = None
        self._executor = ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="gateway-sync")
        self.apps: dict[str, ASGIApp] = {}
        self.lifespans: dict[str, Lifespan] = {}
        self.listeners: list[GatewayListener] = []
        #: Listeners taken out by a reload whose connections are still open.
        self.retiring: set[GatewayListener] = set()
        #: Counters by listener, exported by admin listeners (docs/operations.md).
        self.metrics = self.make_hub()
        from gateway.consumers import configure_sync_threads
        from gateway.logs import configure_rejections

        configure_sync_threads(config.threads)
        configure_rejections(config.logging.rejections.lines, config.logging.rejections.period)
        #: The channel layers by alias: this service's own; its applications see them through
        #: get_channel_layer() (gateway/layers/registry.py), another service's do not.
        self.layers = self.make_layers()
        #: What this service's listeners share (``ListenerContext.shared``: the MQTT brokers).
        self.shared: dict[str, Any] = {}
        with self.layers.using():
            for listener_config in config.listeners:
                listener = self.build_listener(listener_config, config)
                listener.setServiceParent(self)
                self.listeners.append(listener)

    def make_layers(self) -> Any:
        """The channel layers of this daemon (the supervisor of several workers has none)."""
        from gateway.layers import LayerRegistry

        return LayerRegistry(self.config.layers_mapping())

    def make_hub(self) -> Any:
        """The metrics hub (the supervisor of several workers has one that adds theirs up)."""
        from gateway.metrics.hub import MetricsHub

        return MetricsHub(self)

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
            shared=self.shared,
        )

    def build_listener(self, listener_config: Any, config: GatewayConfig) -> GatewayListener:
        """Build (but neither bind nor start) the listener for one listener configuration."""
        context = self.listener_context(listener_config, config)
        builder: ListenerBuilder = listener_builder(listener_config.protocol)
        listener = builder(listener_config, context)
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
        if self.worker is not None:
            self.worker.attach(self)
        self.loop.set_default_executor(self._executor)
        defer.Deferred.fromFuture(asyncio.ensure_future(self._startup(), loop=self.loop))

    async def _startup(self) -> None:
        results = await defer.DeferredList(self._binding, consumeErrors=True).asFuture(self.loop)
        failed = [(listener, result) for listener, (ok, result) in zip(self.listeners, results) if not ok]
        for listener, failure in failed:
            log.critical("Cannot listen on {name} ({endpoint}): {error}", name=listener.name,
                         endpoint=getattr(listener, "endpoint_description", "-"), error=bind_error(listener, failure))
        if failed:
            self.fail(1)
            return
        check_file_limit(self.listeners)
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
        if self.worker is not None:
            self.worker.ready()
            return
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
        if self.worker is None:  # a worker keeps reporting while it drains
            systemd.notify("STOPPING=1")
        if self._watchdog is not None and self._watchdog.running:
            self._watchdog.stop()
        return defer.Deferred.fromFuture(asyncio.ensure_future(self._shutdown(), loop=self.loop))

    async def _shutdown(self) -> None:
        drain = self.config.timeouts.drain
        if self.ready:
            log.info("Stopping: finishing started requests (up to {drain}s)", drain=drain)
        for listener in [*self.listeners, *self.retiring]:
            listener.idle_grace = self.idle_grace
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

    def force_stop(self) -> int:
        """Close every connection now (a second signal during a drain); returns how many were open."""
        listeners = [*self.listeners, *self.retiring]
        cut = sum(listener.connection_count() for listener in listeners)
        for listener in listeners:
            listener.force_close()
        return cut

    # -- signals -------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            try:
                signal.signal(signum, self._signal_handler)
            except ValueError:  # not the main thread
                return

    def _signal_handler(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self._signal_received, signum)

    def worker_command(self, command: str) -> None:
        """A command from the supervisor (this daemon is a worker): ``stop`` drains as SIGTERM
        does, ``retire`` drains for a reload (idle keep-alive connections get a last answer with
        ``Connection: close``), ``force`` closes everything now, ``beat`` reports at once.

        A SIGTERM/SIGINT sent to every process of the daemon at once (a terminal's Ctrl-C,
        systemd's ``KillMode=control-group``) and the supervisor's ``stop`` are one request to
        stop: only a second signal, or ``force``, cuts connections."""
        if command in ("stop", "retire"):
            if command == "retire" and not self.stopping:
                self.idle_grace = RETIRE_IDLE_GRACE
            self._graceful("the supervisor asked")
        elif command == "force":
            self._force("the supervisor asked again")
        elif command == "beat":
            if self.worker is not None:
                self.worker.beat()
        else:
            log.warn("Unknown command from the supervisor: {command!r}", command=command)

    def _signal_received(self, signum: int) -> None:
        if signum == signal.SIGHUP and self.worker is not None:
            log.warn("Received SIGHUP in a worker: send it to the supervisor (pid {pid}) to reload", pid=os.getppid())
            return
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
            self._graceful(f"Received {name}")
        else:
            self._force(f"Received {name} again")

    def _graceful(self, why: str) -> None:
        if self._stop_begun:
            return
        self._stop_begun = True
        log.info("{why}: shutting down gracefully (send it again to force)", why=why)
        if self.reactor.running:
            self.reactor.stop()

    def _force(self, why: str) -> None:
        self._stop_begun = True
        log.warn("{why}: closing all connections now", why=why)
        cut = self.force_stop()
        if cut:
            log.error("Forced stop: {count} connection(s) were cut before they finished; exiting with status {code}",
                      count=cut, code=EXIT_FORCED)
            if not self.exit_code:
                self.exit_code = EXIT_FORCED
        if self.reactor.running and not self.stopping:
            self.reactor.stop()

    # -- reload --------------------------------------------------------------------------

    def reload(self) -> defer.Deferred[bool]:
        """Re-read the configuration file and apply it (SIGHUP, ``systemctl reload``); fires
        with whether it was applied (see :mod:`gateway.reload`)."""
        return defer.Deferred.fromFuture(asyncio.ensure_future(self._reload(), loop=self.loop))

    async def _reload(self) -> bool:
        path = self.config_path
        if path is None:
            return False
        systemd.notify("RELOADING=1")
        try:
            new = load_config(path)
        except ConfigError as exc:
            for problem in exc.problems:
                reload_log.error("{problem}", problem=str(problem))
            reload_log.error("Reload refused: {count} problem(s) in {path}; the running configuration is kept",
                             count=len(exc.problems), path=path)
            systemd.notify(f"READY=1\nSTATUS={self.status_line()} (reload refused: {len(exc.problems)} problem(s) in {path})")
            return False
        try:
            return await self.apply_reload(plan_reload(self.config, new), path)
        finally:
            systemd.notify("READY=1\nSTATUS=" + self.status_line())

    async def apply_reload(self, plan: ReloadPlan, path: str = "the configuration") -> bool:
        """Carry out a reload plan; returns whether every step succeeded."""
        for key in plan.kept:
            reload_log.warn("Reload: changing '{key}' needs a restart; keeping the running value", key=key)
        if plan.log_level is not None:
            from gateway.logs import set_level

            set_level(plan.log_level)
        if plan.rejections is not None:
            from gateway.logs import configure_rejections

            configure_rejections(plan.rejections.lines, plan.rejections.period)
        if plan.threads is not None:
            from gateway.consumers import configure_sync_threads

            configure_sync_threads(plan.threads)
        try:
            for step in plan.listeners:
                await self._apply_step(step, plan.config)
        except Exception:
            reload_log.failure("Reload failed part way; listeners may be partly updated")
            return False
        self.config = plan.config
        reload_log.info("Reloaded {path}", path=path)
        return True

    async def _apply_step(self, step: ListenerStep, config: GatewayConfig) -> None:
        current = next((listener for listener in self.listeners if listener.name == step.name), None)
        if step.action == "remove":
            if current is not None:
                reload_log.info("Reload: removing listener {name}; it drains its connections", name=step.name)
                self.listeners.remove(current)
                self._retire(current, drain=True)
            return
        assert step.config is not None
        if current is None:
            await self._start_new(config, step.config)
            return
        if step.action == "update" and current.reconfigure(step.config, self.listener_context(step.config, config)):
            current.config = step.config
            reload_log.info("Reload: listener {name} updated in place", name=current.name)
            return
        reload_log.info("Reload: replacing listener {name}; its open connections carry on", name=current.name)
        await defer.maybeDeferred(current.stop_listening).asFuture(self.loop)
        index = self.listeners.index(current)
        self.listeners.remove(current)
        self._retire(current, drain=False)
        if await self._start_new(config, step.config, index) is None:
            reload_log.error("Reload: listener {name} could not be replaced; restoring the old one", name=current.name)
            if await self._start_new(self.config, current.config, index) is None:
                reload_log.critical("Reload: listener {name} is not listening any more", name=current.name)

    async def _start_new(self, config: GatewayConfig, listener_config: Any, index: int | None = None) -> GatewayListener | None:
        reference = config.application_for(listener_config)
        try:
            is_new_app = reference is not None and reference not in self.apps
            listener = self.build_listener(listener_config, config)
            if is_new_app and reference is not None:
                await self.lifespans[reference].startup()
            await listener.bind().asFuture(self.loop)
        except Exception as exc:
            reload_log.error("Reload: cannot start listener {name}: {error}", name=listener_config.name,
                             error=f"{type(exc).__name__}: {exc}")
            return None
        listener.setServiceParent(self)
        self.listeners.insert(len(self.listeners) if index is None else index, listener)
        listener.start_accepting()
        for address in listener.addresses():
            log.info("Listening: {name} ({protocol}) on {address}", name=listener.name,
                     protocol=listener_config.protocol, address=address)
        return listener

    def _retire(self, listener: GatewayListener, *, drain: bool) -> None:
        """Stop a listener that is no longer configured: drain it, or let its connections end.

        It leaves the service tree at once (so a replacement can take its name) and stays in
        ``retiring`` until its connections are gone, so the daemon's own stop drains it too.
        """
        self.retiring.add(listener)
        if listener.parent is not None:
            listener.disownServiceParent()

        def finished(_: object) -> None:
            self.retiring.discard(listener)

        if drain:
            listener.drain(self.config.timeouts.drain, self.reactor).addBoth(finished)
        else:
            factory = getattr(listener, "factory", None)
            waiter = factory.when_empty() if factory is not None else defer.succeed(None)
            waiter.addBoth(finished)


#: The exit status after a second SIGTERM/SIGINT cut connections short (README, exit statuses).
EXIT_FORCED = 3
#: Seconds an idle keep-alive connection of a worker replaced by a reload waits for a last
#: request (answered with ``Connection: close``) before it is closed.
RETIRE_IDLE_GRACE = 1.0
#: File descriptors the daemon needs besides its connections: its listening sockets, logs,
#: the loop's epoll, Redis and smarthost connections, files served with pathsend.
FD_MARGIN = 128


def bind_error(listener: GatewayListener, failure: Any) -> str:
    """Why ``listener`` could not bind, in words that say how to fix it."""
    error = str(failure.getErrorMessage())
    endpoint = getattr(listener, "endpoint_description", "")
    if failure.check(IndexError) and "systemd:" in endpoint:
        return "no socket was passed by systemd (is the .socket unit enabled and LISTEN_FDS set?)"
    from twisted.internet.error import CannotListenError

    config = listener.config
    variables = getattr(config, "environment", {}).get("endpoint", ()) if config is not None else ()
    if failure.check(CannotListenError) and variables:
        names = " or ".join(variables)
        error += f"; this endpoint reads {names}: set {variables[0]}=... to choose another port"
    return error


def check_file_limit(listeners: list[GatewayListener]) -> None:
    """Raise the soft limit of open files to what the listeners need (their ``max_connections``
    plus :data:`FD_MARGIN`) when the hard limit allows, as systemd advises daemons to; warn when
    it does not."""
    import resource

    limits = {listener.name: listener.max_connections() for listener in listeners}
    wanted = sum(limit for limit in limits.values() if limit is not None)
    if not wanted:
        return
    needed = wanted + FD_MARGIN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard == resource.RLIM_INFINITY or hard >= needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        except (ValueError, OSError):
            pass
        else:
            log.info("Raised the open file limit from {soft} to {needed} for the listeners' max_connections",
                     soft=soft, needed=needed)
            return
    detail = ", ".join(f"{name} {limit}" for name, limit in limits.items() if limit is not None)
    log.warn("ulimit -n is {soft} (hard limit {hard}), below the {wanted} connections the listeners allow ({detail}) "
             "plus {margin} for the daemon itself: new connections fail once about {usable} are open; raise "
             "LimitNOFILE= in the systemd unit (or ulimit -n), or lower max_connections",
             soft=soft, hard="unlimited" if hard == resource.RLIM_INFINITY else hard, wanted=wanted, detail=detail,
             margin=FD_MARGIN, usable=max(0, soft - FD_MARGIN))


def _protocol_of(config: GatewayConfig, name: str) -> str:
    for listener in config.listeners:
        if listener.name == name:
            return listener.protocol
    return "?"


async def _no_application(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover
    raise RuntimeError("this listener has no application")
