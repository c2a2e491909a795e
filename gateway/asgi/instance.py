"""Running one application instance per scope.

Each instance is an asyncio task on the daemon's loop, watched by a done-callback (there is no
loop that polls all connections). The protocol adapter supplies ``receive``/``send`` and is told
when the instance ends and how.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from gateway.asgi.app import ASGIApp, Receive, Scope, Send

log = Logger(namespace="gateway.asgi")

#: Called with (exception or None, result) when an instance ends; ``exception`` is
#: ``asyncio.CancelledError()`` when it was cancelled.
DoneCallback = Callable[[BaseException | None, Any], None]


class ClientDisconnected(OSError):
    """Raised by ``send()`` once the peer has gone (ASGI www 2.4 asks for an ``OSError``)."""


def start_instance(
    loop: asyncio.AbstractEventLoop, app: ASGIApp, scope: Scope, receive: Receive, send: Send, on_done: DoneCallback
) -> asyncio.Task[Any]:
    """Start ``app(scope, receive, send)`` as a task and call ``on_done`` when it ends.

    Returns:
        The task, so the caller can cancel it (for instance after ``application_close``).
    """
    task = loop.create_task(app(scope, receive, send))

    def done(finished: asyncio.Task[Any]) -> None:
        if finished.cancelled():
            on_done(asyncio.CancelledError(), None)
            return
        exc = finished.exception()
        on_done(exc, None if exc is not None else finished.result())

    task.add_done_callback(done)
    return task


def describe_failure(exc: BaseException | None, result: Any) -> str | None:
    """A log-friendly reason when an instance ended badly, else ``None``."""
    if exc is not None:
        if isinstance(exc, asyncio.CancelledError):
            return None
        return f"{type(exc).__name__}: {exc}"
    if result is not None:
        return f"the application returned {result!r}; an ASGI application must return None"
    return None
