"""Run a coroutine eagerly: synchronously up to its first real suspension.

The broker's coroutines (the memory store, a session that is already local) usually finish
without waiting for anything; running them as tasks would cost a loop pass and a task per
CONNECT or retained PUBLISH. :func:`run_eager` steps the coroutine right away and only hands it
to a task when it actually waits (a Redis round trip, another process's answer).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from gateway._compat.asyncio_futures import release_blocking

__all__ = ["run_eager"]

Done = Callable[[BaseException | None, Any], None]


def run_eager(coro: Coroutine[Any, Any, Any], done: Done, loop: asyncio.AbstractEventLoop) -> asyncio.Task[Any] | None:
    """Run ``coro`` now; call ``done(exc, result)`` when it finishes.

    Returns None when it finished synchronously (``done`` was already called), else the task
    that runs the rest of it (cancel it to cancel the coroutine).
    """
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        done(None, stop.value)
        return None
    except BaseException as exc:  # the coroutine's own failure, handed to `done`
        done(exc, None)
        return None
    task = loop.create_task(_resume(coro, yielded))

    def finished(task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            done(asyncio.CancelledError(), None)
        else:
            exc = task.exception()
            done(exc, None if exc is not None else task.result())

    task.add_done_callback(finished)
    return task


async def _resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    """Continue a coroutine that suspended on ``yielded`` (a future, or None for a bare yield)."""
    while True:
        try:
            if yielded is None:
                await asyncio.sleep(0)
            else:
                # The coroutine's own ``await`` marked the future "blocking"; a Task would clear
                # that when taking it over, and so must we before awaiting it ourselves.
                release_blocking(yielded)
                await yielded
        except BaseException as exc:  # hand cancellation and the future's failure to the coroutine
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
            continue
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            return stop.value
