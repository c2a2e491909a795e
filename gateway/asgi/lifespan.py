# -*- test-case-name: tests.unit.asgi.test_lifespan -*-
"""ASGI lifespan 2.0: startup before listeners accept, shutdown when the daemon stops.

Modes: ``on`` (the application must support lifespan), ``auto`` (used when supported: an
application that raises on the ``lifespan`` scope before answering is taken not to support it),
``off``. ``lifespan.startup.failed`` stops the daemon with the application's message.
"""

from __future__ import annotations

import asyncio
from typing import Any

from twisted.logger import Logger

from gateway.asgi.app import ASGIApp, Message, Scope

log = Logger(namespace="gateway.lifespan")


class LifespanFailure(Exception):
    """Lifespan startup or shutdown failed; the message says why (the application's own)."""


class Lifespan:
    """Runs the lifespan protocol for one application.

    Args:
        app: the application.
        loop: the loop to run it on.
        mode: ``auto``, ``on`` or ``off``.
        startup_timeout: seconds startup may take.
        shutdown_timeout: seconds shutdown may take.
    """

    def __init__(self, app: ASGIApp, loop: asyncio.AbstractEventLoop, mode: str = "auto",
                 startup_timeout: float = 60.0, shutdown_timeout: float = 30.0) -> None:
        self.app = app
        self.loop = loop
        self.mode = mode
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout
        #: The lifespan state; a shallow copy goes into every scope of this application.
        self.state: dict[str, Any] = {}
        self.supported = mode != "off"
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._answer: asyncio.Future[dict[str, Any]] | None = None
        self._phase = "startup"
        self._started = False

    async def startup(self) -> None:
        """Send ``lifespan.startup`` and wait for the answer.

        Raises:
            LifespanFailure: the application answered ``lifespan.startup.failed``, raised (in
                ``on`` mode, or after it began answering), or took too long.
        """
        if not self.supported:
            return
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        self._answer = self.loop.create_future()
        self._task = self.loop.create_task(self._run(scope))
        await self._queue.put({"type": "lifespan.startup"})
        try:
            message = await asyncio.wait_for(asyncio.shield(self._answer), self.startup_timeout)
        except asyncio.TimeoutError:
            raise LifespanFailure(f"lifespan startup did not finish within {self.startup_timeout:g}s") from None
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self._started = True
            return
        if kind == "unsupported":
            self.supported = False
            return
        raise LifespanFailure(message.get("message") or "the application reported lifespan.startup.failed")

    async def shutdown(self) -> None:
        """Send ``lifespan.shutdown`` and wait for the answer (failures are logged, not raised)."""
        if not self.supported or not self._started or self._task is None:
            return
        self._phase = "shutdown"
        self._answer = self.loop.create_future()
        await self._queue.put({"type": "lifespan.shutdown"})
        try:
            message = await asyncio.wait_for(asyncio.shield(self._answer), self.shutdown_timeout)
        except asyncio.TimeoutError:
            log.error("Lifespan shutdown did not finish within {timeout}s", timeout=self.shutdown_timeout)
            self._task.cancel()
            return
        if message["type"] == "lifespan.shutdown.failed":
            log.error("Lifespan shutdown failed: {message}", message=message.get("message", ""))

    async def _receive(self) -> dict[str, Any]:
        return await self._queue.get()

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        expected = (
            ("lifespan.startup.complete", "lifespan.startup.failed")
            if self._phase == "startup"
            else ("lifespan.shutdown.complete", "lifespan.shutdown.failed")
        )
        if kind not in expected:
            raise RuntimeError(f"Expected ASGI message {' or '.join(repr(e) for e in expected)}, but got {kind!r}.")
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_result(dict(message))

    async def _run(self, scope: Scope) -> None:
        try:
            await self.app(scope, self._receive, self._send)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            answer = self._answer
            if answer is None or answer.done():
                log.failure("Exception in lifespan after it finished", failure=_failure(exc))
                return
            if self.mode == "auto" and self._phase == "startup":
                log.info("The application does not support lifespan ({error}); continuing without it",
                         error=f"{type(exc).__name__}: {exc}")
                answer.set_result({"type": "unsupported"})
            else:
                log.failure("Exception in lifespan {phase}", failure=_failure(exc), phase=self._phase)
                answer.set_result({"type": f"lifespan.{self._phase}.failed", "message": f"{type(exc).__name__}: {exc}"})
        else:
            answer = self._answer
            if answer is not None and not answer.done():
                if self.mode == "auto" and self._phase == "startup":
                    answer.set_result({"type": "unsupported"})
                else:
                    answer.set_result({"type": f"lifespan.{self._phase}.failed",
                                       "message": "the application returned without answering lifespan." + self._phase})


def _failure(exc: BaseException) -> Any:
    from twisted.python.failure import Failure

    return Failure(exc, type(exc), exc.__traceback__)
