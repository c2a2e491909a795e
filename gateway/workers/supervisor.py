# -*- test-case-name: tests.integration.test_workers -*-
"""The supervisor of several worker processes (``workers`` above 1).

It is a :class:`~gateway.service.GatewayService` that serves only the admin listeners and never
imports an application. Start-up: bind the admin listeners and every other listener's sockets
(:mod:`gateway.workers.sockets`) → start the workers, fresh ``gateway run`` interpreters that
adopt the sockets → once every worker serves, accept admin connections and send ``READY=1``.

* A worker that exits or is killed is restarted after a delay that doubles from 0.1s while it
  keeps dying (``supervisor.max_restart_delay``); the others are not touched. One whose event
  loop stops answering for ``supervisor.heartbeat_timeout`` is killed and restarted.
* SIGHUP (``systemctl reload``): the file is read again; listeners added, removed or moved
  get their sockets; then each worker slot in turn gets a new worker, with freshly imported
  application code, and only once it serves is the old one told to drain (``retire``). A new
  worker that fails to start ends the reload; the running workers keep serving.
* SIGTERM/SIGINT: every worker drains as one process does; a second signal forces them.
* Metrics, readiness and the status page: the workers report once a second; the admin
  listeners show their sum and a row per worker (:class:`SupervisorHub`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
from types import MappingProxyType
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway import systemd
from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.metrics.families import FAMILIES
from gateway.metrics.hub import MetricsHub
from gateway.metrics.stats import Histogram
from gateway.reload import plan_reload
from gateway.service import GatewayService
from gateway.workers import WORKER_ENV
from gateway.workers.inherit import InheritedSocket, WorkerSettings
from gateway.workers.sockets import BindError, ListenerSockets, bind_listener

__all__ = ["Supervisor", "SupervisorHub", "WorkerProcess"]

log = Logger(namespace="gateway.supervisor")
reload_log = Logger(namespace="gateway.reload")

#: The worker's descriptors: reports to the supervisor, commands from it, then the sockets.
REPORT_FD, CONTROL_FD, FIRST_SOCKET_FD = 3, 4, 5
#: A worker silent this long (a heartbeat a second) is not ready (``/readyz``), before the
#: heartbeat timeout kills it.
UNANSWERED = 3.0
#: A worker that served this long before it died starts its restart delays over.
STABLE_AFTER = 30.0
#: systemd's variables a worker must not act on: the supervisor speaks for the daemon.
_SUPERVISOR_ONLY = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


class WorkerProcess(ProcessProtocol):
    """One worker process, as the supervisor sees it.

    ``state`` is ``starting``, ``serving``, ``retiring`` (replaced by a reload, draining),
    ``stopping`` (the daemon stops) or ``exited``.
    """

    def __init__(self, supervisor: Supervisor, slot: int) -> None:
        self.supervisor = supervisor
        self.slot = slot
        self.pid = 0
        self.state = "starting"
        reactor = supervisor.reactor
        self.started_at = reactor.seconds()
        self.ready_at: float | None = None
        self.last_beat = self.started_at
        self.stop_sent_at: float | None = None
        #: The last heartbeat (readiness, metrics samples, summary).
        self.report: dict[str, Any] = {}
        self.exit_code: int | None = None
        self.exit_signal: int | None = None
        #: Fires True once the worker serves, False if it exits first.
        self.readied: defer.Deferred[bool] = defer.Deferred()
        #: Fires when the process has exited.
        self.exited: defer.Deferred[None] = defer.Deferred()
        #: Waiting for the next heartbeat (a scrape asked for fresh numbers).
        self.beat_waiters: list[defer.Deferred[None]] = []
        self._buffer = b""

    # -- from the process --------------------------------------------------------------------

    def connectionMade(self) -> None:
        transport: Any = self.transport
        self.pid = int(transport.pid)

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD != REPORT_FD:
            return
        self._buffer += data
        while b"\n" in self._buffer:
            line, _, self._buffer = self._buffer.partition(b"\n")
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                self.supervisor.worker_message(self, message)

    def processEnded(self, reason: Failure) -> None:
        self.exit_code = getattr(reason.value, "exitCode", None)
        self.exit_signal = getattr(reason.value, "signal", None)
        self.supervisor.worker_exited(self)

    # -- to the process ----------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.state != "exited"

    def command(self, text: str) -> None:
        """Send ``stop``, ``retire`` or ``force``."""
        if self.alive and self.transport is not None:
            try:
                self.transport.writeToChild(CONTROL_FD, text.encode("ascii") + b"\n")
            except (KeyError, OSError):
                pass
        if text in ("stop", "retire") and self.stop_sent_at is None:
            self.stop_sent_at = self.supervisor.reactor.seconds()

    def kill(self) -> None:
        """SIGKILL (a worker that does not answer)."""
        if self.alive and self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def describe_exit(self) -> str:
        if self.exit_signal is not None:
            return f"was killed by {_signal_name(self.exit_signal)}"
        return f"exited with status {self.exit_code}"

    def open_connections(self) -> int:
        return sum(int(value) for key, _, value in self.report.get("samples", ()) if key == "connections_open")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class Supervisor(GatewayService):
    """Binds the sockets, runs ``count`` workers on them and serves the admin listeners.

    Args:
        config: the whole configuration (the supervisor itself runs its admin listeners only).
        reactor: the asyncio reactor.
        config_path: the file workers read, and SIGHUP reads again.
        count: how many workers (``workers`` resolved, or ``--workers``).
    """

    def __init__(self, config: GatewayConfig, reactor: Any, config_path: str, count: int) -> None:
        #: The whole configuration the workers run (the service's own ``config`` has the admin
        #: listeners only).
        self.full_config = config
        self.count = count
        self.sockets: dict[str, ListenerSockets] = {}
        self.slots: list[WorkerProcess | None] = [None] * count
        #: Every worker process alive (serving, starting, retiring or stopping).
        self.processes: set[WorkerProcess] = set()
        self.restarts = [0] * count
        self._failures = [0] * count
        self._restart_timers: dict[int, Any] = {}
        self._bind_errors: list[tuple[str, str, str]] = []
        self._checker: LoopingCall | None = None
        self._reloading = False
        self._reload_again = False
        super().__init__(_admin_only(config), reactor=reactor, config_path=config_path)

    def make_layers(self) -> Any:
        # The workers have the channel layers; the supervisor has none to ping or export (and
        # does not read a Django project's settings for them).
        from gateway.layers import LayerRegistry

        return LayerRegistry({})

    def make_hub(self) -> Any:
        return SupervisorHub(self)

    def _application(self, reference: str | None) -> tuple[Any, Any]:
        # The admin listeners serve their own application: the supervisor imports none.
        from gateway.service import _no_application

        return _no_application, None

    # -- start -------------------------------------------------------------------------------

    def privilegedStartService(self) -> None:
        for listener in _worker_listeners(self.full_config):
            try:
                self.sockets[listener.name] = bind_listener(listener.name, listener.endpoint, self.reactor, self.count,
                                                            self.full_config.supervisor.balance)
            except BindError as exc:
                self._bind_errors.append((listener.name, listener.endpoint, str(exc)))
        super().privilegedStartService()

    async def _startup(self) -> None:
        results = await defer.DeferredList(self._binding, consumeErrors=True).asFuture(self.loop)
        from gateway.service import bind_error

        failed = [(listener, result) for listener, (ok, result) in zip(self.listeners, results) if not ok]
        for listener, failure in failed:
            log.critical("Cannot listen on {name} ({endpoint}): {error}", name=listener.name,
                         endpoint=getattr(listener, "endpoint_description", "-"), error=bind_error(listener, failure))
        for name, endpoint, error in self._bind_errors:
            log.critical("Cannot listen on {name} ({endpoint}): {error}", name=name, endpoint=endpoint, error=error)
        if failed or self._bind_errors:
            self.fail(1)
            return
        self._checker = LoopingCall(self._check_workers)
        self._checker.clock = self.reactor
        self._checker.start(1.0, now=False)
        log.info("Starting {count} workers (pid {pid} supervises)", count=self.count, pid=os.getpid())
        started = [self._spawn(slot) for slot in range(self.count)]
        ready = await defer.gatherResults([worker.readied for worker in started]).asFuture(self.loop)
        if self.stopping:
            return
        if not all(ready):
            for worker in started:
                if worker.exit_code is not None or worker.exit_signal is not None:
                    log.critical("Worker {slot} (pid {pid}) {how} before it served; stopping", slot=worker.slot,
                                 pid=worker.pid, how=worker.describe_exit())
                    break
            self.fail(1)
            return
        for listener in self.listeners:
            listener.start_accepting()
        for name, sockets in self.sockets.items():
            log.info("Listening: {name} ({protocol}) on {address} ({count} workers{how})", name=name,
                     protocol=_protocol_of(self.full_config, name), address=sockets.address(), count=self.count,
                     how=", one socket each" if len(sockets.fds) > 1 else ", one shared socket")
        for listener in self.listeners:
            for address in listener.addresses():
                log.info("Listening: {name} (admin) on {address} (supervisor)", name=listener.name, address=address)
        self.ready = True
        systemd.notify("READY=1\nSTATUS=" + self.status_line())
        self._watchdog = systemd.start_watchdog(self.reactor)

    def status_line(self) -> str:
        addresses = [f"{name}={sockets.address()}" for name, sockets in self.sockets.items() if sockets.sockets]
        addresses += [f"{listener.name}={address}" for listener in self.listeners for address in listener.addresses()]
        return "listening " + " ".join(addresses)

    def _spawn(self, slot: int) -> WorkerProcess:
        """Start a worker for ``slot`` on the current sockets."""
        env = {key: value for key, value in os.environ.items() if key not in _SUPERVISOR_ONLY}
        child_fds: dict[int, Any] = {1: 1, 2: 2, REPORT_FD: "r", CONTROL_FD: "w"}
        inherited: dict[str, InheritedSocket] = {}
        number = FIRST_SOCKET_FD
        for name, sockets in self.sockets.items():
            child_fds[number] = sockets.fd_for(slot)
            inherited[name] = InheritedSocket(number, sockets.family)
            number += 1
        env[WORKER_ENV] = WorkerSettings(slot, REPORT_FD, CONTROL_FD, inherited).encode()
        worker = WorkerProcess(self, slot)
        assert self.config_path is not None
        args = [sys.executable, "-m", "gateway", "run", "-c", self.config_path]
        self.reactor.spawnProcess(worker, sys.executable, args, env=env, path=os.getcwd(), childFDs=child_fds)
        self.processes.add(worker)
        if self.slots[slot] is None:
            self.slots[slot] = worker
        log.debug("Worker {slot} started (pid {pid})", slot=slot, pid=worker.pid)
        return worker

    # -- what the workers say ----------------------------------------------------------------

    def worker_message(self, worker: WorkerProcess, message: dict[str, Any]) -> None:
        kind = message.get("type")
        worker.last_beat = self.reactor.seconds()
        if kind == "ready":
            if worker.state == "starting":
                worker.state = "serving"
                worker.ready_at = worker.last_beat
                log.info("Worker {slot} (pid {pid}) serving", slot=worker.slot, pid=worker.pid)
                worker.readied.callback(True)
        elif kind == "beat":
            worker.report = message
            waiters, worker.beat_waiters = worker.beat_waiters, []
            for waiter in waiters:
                if not waiter.called:  # a scrape that gave up waiting cancelled it
                    waiter.callback(None)

    def worker_exited(self, worker: WorkerProcess) -> None:
        previous = worker.state
        worker.state = "exited"
        self.processes.discard(worker)
        self.metrics.retire(worker)
        if not worker.readied.called:
            worker.readied.callback(False)
        worker.exited.callback(None)
        if worker.exit_code == 3 and self.stopping:
            self.exit_code = 3  # a forced stop cut its connections short
        if previous == "retiring":
            log.info("Worker {slot} (pid {pid}) replaced by the reload has stopped", slot=worker.slot, pid=worker.pid)
            return
        if self.slots[worker.slot] is not worker:
            return  # a new worker that a reload was starting: the reload reports it
        if self.stopping or not self.ready:
            return
        self.slots[worker.slot] = None
        self._schedule_restart(worker)

    def _schedule_restart(self, worker: WorkerProcess) -> None:
        slot = worker.slot
        now = self.reactor.seconds()
        if worker.ready_at is not None and now - worker.ready_at >= STABLE_AFTER:
            self._failures[slot] = 0
        self._failures[slot] += 1
        delay = min(0.1 * 2 ** (self._failures[slot] - 1), float(self.full_config.supervisor.max_restart_delay))
        self.restarts[slot] += 1
        log.error("Worker {slot} (pid {pid}) {how}; its connections are lost, the other workers are untouched; "
                  "restarting it in {delay:.1f}s", slot=slot, pid=worker.pid, how=worker.describe_exit(), delay=delay)
        self._restart_timers[slot] = self.reactor.callLater(delay, self._restart, slot)

    def _restart(self, slot: int) -> None:
        self._restart_timers.pop(slot, None)
        if self.stopping or self.slots[slot] is not None:
            return
        self._spawn(slot)

    def _check_workers(self) -> None:
        """Kill a worker that does not start in time, or whose loop stopped answering; collect
        the exit of any that Twisted's SIGCHLD handling missed."""
        from twisted.internet.process import reapAllProcesses

        reapAllProcesses()
        now = self.reactor.seconds()
        settings = self.full_config.supervisor
        for worker in list(self.processes):
            if worker.state == "starting" and now - worker.started_at > float(settings.start_timeout):
                log.error("Worker {slot} (pid {pid}) did not start serving within {timeout}s; killing it",
                          slot=worker.slot, pid=worker.pid, timeout=float(settings.start_timeout))
                worker.kill()
            elif worker.state == "serving" and now - worker.last_beat > float(settings.heartbeat_timeout):
                log.error("Worker {slot} (pid {pid}) has not answered for {seconds:.0f}s (its event loop is "
                          "blocked); killing it", slot=worker.slot, pid=worker.pid, seconds=now - worker.last_beat)
                worker.kill()
            elif worker.stop_sent_at is not None and now - worker.stop_sent_at > self._stop_allowance():
                log.error("Worker {slot} (pid {pid}) did not finish draining in time; killing it",
                          slot=worker.slot, pid=worker.pid)
                worker.kill()

    def _stop_allowance(self) -> float:
        """How long a draining worker may take before it is killed: its drain, lifespan shutdown
        and a heartbeat timeout."""
        timeouts = self.full_config.timeouts
        return float(timeouts.drain) + float(timeouts.lifespan_shutdown) + float(self.full_config.supervisor.heartbeat_timeout)

    # -- readiness ---------------------------------------------------------------------------

    def worker_problems(self) -> list[str]:
        """Why the workers are not all ready (``/readyz``)."""
        reasons: list[str] = []
        now = self.reactor.seconds()
        for slot, worker in enumerate(self.slots):
            if worker is None or worker.state != "serving":
                state = "restarting" if worker is None else worker.state
                reasons.append(f"worker {slot} is not serving ({state})")
                continue
            silent = now - worker.last_beat
            if silent > UNANSWERED:
                reasons.append(f"worker {slot} has not answered for {silent:.0f}s")
                continue
            for reason in worker.report.get("reasons", ()):
                if reason != "starting":
                    reasons.append(f"worker {slot}: {reason}")
        return reasons

    def all_ready(self) -> bool:
        return self.ready and not self.stopping and not self.worker_problems()

    # -- stop --------------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        for timer in self._restart_timers.values():
            if timer.active():
                timer.cancel()
        self._restart_timers.clear()
        workers = list(self.processes)
        if workers:
            log.info("Stopping: {count} worker(s) finish started requests (up to {drain}s)", count=len(workers),
                     drain=self.full_config.timeouts.drain)
        for worker in workers:
            worker.state = "stopping" if worker.state != "retiring" else worker.state
            worker.command("stop")
        await defer.DeferredList([worker.exited for worker in workers]).asFuture(self.loop)
        if self._checker is not None and self._checker.running:
            self._checker.stop()  # it ran until now: it also collects the exits of stopping workers
        await super()._shutdown()
        for sockets in self.sockets.values():
            sockets.close()

    def force_stop(self) -> int:
        cut = 0
        for worker in list(self.processes):
            cut += worker.open_connections()
            worker.command("force")
        return cut + super().force_stop()

    # -- reload ------------------------------------------------------------------------------

    async def _reload(self) -> bool:
        if self._reloading:
            reload_log.info("A reload is in progress; reloading again once it is done")
            self._reload_again = True
            return False
        self._reloading = True
        try:
            while True:
                self._reload_again = False
                applied = await self._reload_once()
                if not self._reload_again or self.stopping:
                    return applied
        finally:
            self._reloading = False

    async def _reload_once(self) -> bool:
        path = self.config_path
        assert path is not None
        systemd.notify("RELOADING=1")
        try:
            new = load_config(path, import_applications=False)
        except ConfigError as exc:
            for problem in exc.problems:
                reload_log.error("{problem}", problem=str(problem))
            reload_log.error("Reload refused: {count} problem(s) in {path}; the running configuration is kept",
                             count=len(exc.problems), path=path)
            systemd.notify(f"READY=1\nSTATUS={self.status_line()} (reload refused: {len(exc.problems)} problem(s) in {path})")
            return False
        if new.worker_count() != self.full_config.worker_count() or new.supervisor != self.full_config.supervisor:
            reload_log.warn("Reload: changing 'workers' or 'supervisor' needs a restart; keeping {count} workers",
                            count=self.count)
        new = dataclasses.replace(new, workers=self.full_config.workers, supervisor=self.full_config.supervisor)
        previous = self.sockets
        wanted: dict[str, ListenerSockets] = {}
        added: list[ListenerSockets] = []
        for listener in _worker_listeners(new):
            current = previous.get(listener.name)
            if current is not None and current.endpoint == listener.endpoint:
                wanted[listener.name] = current
                continue
            try:
                sockets = bind_listener(listener.name, listener.endpoint, self.reactor, self.count,
                                        self.full_config.supervisor.balance, replacing=current)
            except BindError as exc:
                reload_log.error("Reload: cannot start listener {name}: {error}", name=listener.name, error=str(exc))
                if current is not None:
                    wanted[listener.name] = current
                continue
            wanted[listener.name] = sockets
            added.append(sockets)
            reload_log.info("Reload: listener {name} on {address}", name=listener.name, address=sockets.address())
        self.sockets = wanted
        admin = dataclasses.replace(_admin_only(new), loop=self.config.loop, lifespan=self.config.lifespan)
        await self.apply_reload(plan_reload(self.config, admin), path)
        reload_log.info("Reload: replacing {count} workers one at a time", count=self.count)
        replaced = await self._roll()
        if replaced:
            for name, sockets in previous.items():
                if wanted.get(name) is not sockets:
                    reload_log.info("Reload: listener {name} removed; its workers drain", name=name)
                    sockets.close()
            self.full_config = new
            reload_log.info("Reloaded {path}: {count} new workers serve", path=path, count=self.count)
        else:
            self.sockets = previous
            for sockets in added:
                sockets.close()
        systemd.notify("READY=1\nSTATUS=" + self.status_line())
        return replaced

    async def _roll(self) -> bool:
        """Replace each worker in turn: the new one serves before the old one drains."""
        for slot in range(self.count):
            if self.stopping:
                return False
            worker = self._spawn_replacement(slot)
            if not await worker.readied.asFuture(self.loop):
                reload_log.error("Reload: the new worker {slot} {how} before it served; the running workers keep "
                                 "serving the previous code and configuration", slot=slot, how=worker.describe_exit())
                return False
            old = self.slots[slot]
            timer = self._restart_timers.pop(slot, None)
            if timer is not None and timer.active():
                timer.cancel()
            self.slots[slot] = worker
            if old is not None and old.alive:
                old.state = "retiring"
                old.command("retire")
                reload_log.info("Reload: worker {slot} replaced (pid {old} -> {new}); the old one drains",
                                slot=slot, old=old.pid, new=worker.pid)
        return True

    def _spawn_replacement(self, slot: int) -> WorkerProcess:
        current = self.slots[slot]
        worker = self._spawn(slot)
        self.slots[slot] = current  # it takes the slot once it serves
        return worker


class SupervisorHub(MetricsHub):
    """The metrics of the whole daemon: the supervisor's admin listeners, the sum of what the
    workers report (counters of workers that exited are kept, so totals never go back), and a
    few series per worker."""

    service: Supervisor

    def __init__(self, service: Supervisor) -> None:
        super().__init__(service)
        self._retired: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
        self._retired_summary: dict[str, dict[str, int]] = {}

    def retire(self, worker: WorkerProcess) -> None:
        """Keep the counters of a worker that exited."""
        for key, labels, value in _decode(worker.report.get("samples", ())):
            family = FAMILIES.get(key)
            if family is None or family.kind == "gauge" or key == "info":
                continue
            _add(self._retired, key, labels, value, family.kind)
        for protocol, numbers in (worker.report.get("summary") or {}).items():
            entry = self._retired_summary.setdefault(protocol, {})
            for name in ("connections", "received", "sent"):
                entry[name] = entry.get(name, 0) + int(numbers.get(name, 0))
        worker.report = {}

    async def refresh(self, timeout: float = 1.0) -> None:
        """Ask every serving worker for a heartbeat now and wait for them (at most ``timeout``
        seconds), so that a scrape or ``/readyz`` sees current numbers."""
        import asyncio

        service = self.service
        waiting = []
        for worker in list(service.processes):
            if worker.state in ("serving", "retiring", "stopping"):
                waiter: defer.Deferred[None] = defer.Deferred()
                worker.beat_waiters.append(waiter)
                worker.command("beat")
                waiting.append(waiter.asFuture(service.loop))
        if waiting:
            try:
                await asyncio.wait_for(asyncio.gather(*waiting), timeout)
            except (TimeoutError, asyncio.TimeoutError):
                pass

    def _workers(self) -> list[WorkerProcess]:
        return [worker for worker in self.service.processes if worker.report]

    def samples(self) -> Any:
        service = self.service
        for key, labels, value in super().samples():
            if key == "ready":
                value = 1 if service.all_ready() else 0
            yield key, labels, value
        merged: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
        for (key, labels), value in self._retired.items():
            _add(merged, key, labels, value, FAMILIES[key].kind)
        for worker in self._workers():
            for key, labels, value in _decode(worker.report.get("samples", ())):
                known = FAMILIES.get(key)
                if known is None or key in ("info", "ready"):
                    continue
                if key == "listener_up":
                    merged[(key, labels)] = min(value, merged.get((key, labels), value))
                else:
                    _add(merged, key, labels, value, known.kind)
        for (key, labels), value in merged.items():
            yield key, labels, value
        yield "workers", (), service.count
        for slot, current in enumerate(service.slots):
            label = (("worker", str(slot)),)
            serving = current is not None and current.state == "serving" and bool(current.report.get("ready"))
            yield "worker_up", label, 1 if serving else 0
            yield "worker_restarts", label, service.restarts[slot]
            yield "worker_connections_open", label, current.open_connections() if current is not None else 0

    def summary(self) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = {}
        for protocol, numbers in self._retired_summary.items():
            entry = result.setdefault(protocol, {"open": 0, "connections": 0, "received": 0, "sent": 0})
            for name, value in numbers.items():
                entry[name] += value
        for worker in self._workers():
            for protocol, numbers in (worker.report.get("summary") or {}).items():
                entry = result.setdefault(protocol, {"open": 0, "connections": 0, "received": 0, "sent": 0})
                for name in entry:
                    entry[name] += int(numbers.get(name, 0))
        return result

    def connectors(self) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = {}
        for worker in self._workers():
            result.update(worker.report.get("connectors") or {})
        return result

    def workers(self) -> list[dict[str, Any]]:
        """The status page's rows, one per worker slot."""
        rows = []
        now = self.service.reactor.seconds()
        for slot, worker in enumerate(self.service.slots):
            summary = (worker.report.get("summary") or {}) if worker is not None else {}
            rows.append({
                "worker": slot,
                "pid": worker.pid if worker is not None else None,
                "state": worker.state if worker is not None else "restarting",
                "open": sum(int(item.get("open", 0)) for item in summary.values()),
                "connections": sum(int(item.get("connections", 0)) for item in summary.values()),
                "messages": sum(int(item.get("received", 0)) + int(item.get("sent", 0)) for item in summary.values()),
                "restarts": self.service.restarts[slot],
                "uptime": round(now - worker.started_at) if worker is not None else 0,
            })
        return rows


def _decode(samples: Any) -> Any:
    for key, labels, value in samples:
        if isinstance(value, dict):
            histogram = Histogram()
            histogram.counts = [int(count) for count in value["c"]]
            histogram.sum = float(value["s"])
            value = histogram
        yield key, tuple((str(name), str(label)) for name, label in labels), value


def _add(into: dict[Any, Any], key: str, labels: tuple[tuple[str, str], ...], value: Any, kind: str) -> None:
    current = into.get((key, labels))
    if kind == "histogram":
        total = Histogram()
        if current is not None:
            total.counts = list(current.counts)
            total.sum = current.sum
        if len(total.counts) == len(value.counts):
            total.counts = [a + b for a, b in zip(total.counts, value.counts)]
            total.sum += value.sum
        into[(key, labels)] = total
    else:
        into[(key, labels)] = value if current is None else current + value


def _admin_only(config: GatewayConfig) -> GatewayConfig:
    """The supervisor's own part: the admin listeners, no channel layers."""
    return dataclasses.replace(config, listeners=tuple(item for item in config.listeners if item.protocol == "admin"),
                               layers=MappingProxyType({}))


def _worker_listeners(config: GatewayConfig) -> list[Any]:
    """The listeners the workers serve on sockets the supervisor binds."""
    return [item for item in config.listeners if item.protocol != "admin" and getattr(item, "endpoint", None)]


def _protocol_of(config: GatewayConfig, name: str) -> str:
    for listener in config.listeners:
        if listener.name == name:
            return str(listener.protocol)
    return "?"
