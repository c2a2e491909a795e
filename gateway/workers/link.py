"""A worker's end of its pipes to the supervisor: reports out, commands in.

Reports are JSON lines: ``{"type": "ready"}`` once the worker serves, then a heartbeat every
second from the event loop (so a loop that stops turning stops them) carrying the worker's
readiness problems, its metrics samples and its status page summary. Commands are lines:
``stop`` (drain, as SIGTERM does), ``retire`` (drain for a reload: idle keep-alive connections
get ``Connection: close`` on their next request instead of a close that could race it),
``force`` (close everything now). End of file on the command pipe (the supervisor is gone)
is a ``stop``.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import os
from typing import Any, Protocol

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from gateway.workers.inherit import WorkerSettings

__all__ = ["WorkerLink", "encode_samples"]

log = Logger(namespace="gateway.worker")


class LinkedService(Protocol):
    """What the link needs from the worker's daemon (:class:`gateway.service.GatewayService`)."""

    ready: bool
    stopping: bool
    metrics: Any
    loop: asyncio.AbstractEventLoop
    reactor: Any

    def worker_command(self, command: str) -> None:
        """Carry out ``stop``, ``retire`` or ``force``."""


def encode_samples(samples: Any) -> list[list[Any]]:
    """Metrics samples as JSON-ready lists: ``[key, labels, value]``, a histogram's value as
    ``{"c": counts, "s": sum}``."""
    result: list[list[Any]] = []
    for key, labels, value in samples:
        if hasattr(value, "counts"):
            value = {"c": list(value.counts), "s": value.sum}
        result.append([key, [list(pair) for pair in labels], value])
    return result


class WorkerLink:
    """Talks to the supervisor for one worker process."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.service: LinkedService | None = None
        self._beat: LoopingCall | None = None
        self._buffer = b""
        self._pending = b""
        self._beating = False
        self._again = False
        fcntl.fcntl(settings.report_fd, fcntl.F_SETFL, fcntl.fcntl(settings.report_fd, fcntl.F_GETFL) | os.O_NONBLOCK)

    def attach(self, service: LinkedService) -> None:
        """Listen for commands (from the moment the reactor runs)."""
        self.service = service
        fd = self.settings.control_fd
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        service.loop.add_reader(fd, self._readable)

    def ready(self) -> None:
        """The worker serves: say so, and start the heartbeats."""
        self.send({"type": "ready", "pid": os.getpid()})
        service = self.service
        if service is not None and self._beat is None:
            self._beat = LoopingCall(self.beat)
            self._beat.clock = service.reactor
            self._beat.start(self.settings.heartbeat, now=True)

    def beat(self) -> None:
        """Send one heartbeat (readiness needs the layers pinged: done on the loop)."""
        if self.service is None:
            return
        if self._beating:
            self._again = True  # asked while one is on its way: another right after it
            return
        self._beating = True
        asyncio.ensure_future(self._beat_once(), loop=self.service.loop)

    async def _beat_once(self) -> None:
        service = self.service
        assert service is not None
        try:
            from gateway.admin.app import readiness

            try:
                reasons = await asyncio.wait_for(readiness(service, 2.0), 3.0)
            except Exception as exc:  # a check that fails must not stop the heartbeats
                reasons = [f"readiness check failed: {type(exc).__name__}: {exc}"]
            hub = service.metrics
            self.send({
                "type": "beat",
                "ready": bool(service.ready and not service.stopping),
                "stopping": bool(service.stopping),
                "reasons": reasons,
                "samples": encode_samples(hub.samples()),
                "summary": hub.summary(),
                "connectors": hub.connectors(),
            })
        finally:
            self._beating = False
            if self._again:
                self._again = False
                self.beat()

    def send(self, message: dict[str, Any]) -> None:
        """Write one report; what the pipe cannot take now waits for the next one (a heartbeat
        that does not fit is dropped rather than block the loop)."""
        data = self._pending + json.dumps(message, separators=(",", ":")).encode() + b"\n"
        try:
            written = os.write(self.settings.report_fd, data)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                return
            raise
        if written:
            self._pending = data[written:]
        # Nothing written: a partly written line waits to be completed; this report is dropped.

    def _readable(self) -> None:
        try:
            data = os.read(self.settings.control_fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        service = self.service
        if not data:
            if self.service is not None:
                self.service.loop.remove_reader(self.settings.control_fd)
            log.warn("The supervisor is gone: stopping")
            if service is not None:
                service.worker_command("stop")
            return
        self._buffer += data
        while b"\n" in self._buffer:
            line, _, self._buffer = self._buffer.partition(b"\n")
            command = line.decode("ascii", "replace").strip()
            if command and service is not None:
                service.worker_command(command)
