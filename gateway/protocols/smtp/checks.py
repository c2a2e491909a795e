# -*- test-case-name: tests.unit.smtp.test_checks -*-
"""The listener's own decisions: is a recipient routed (at ``RCPT``), are AUTH credentials valid.

Both may be asynchronous (a router's ``matches``, an application's auth hook) but usually are not:
``EmailToRouter.matches`` never waits. :func:`settle` therefore runs a coroutine eagerly, as far as
it goes without waiting, and only hands the rest to an asyncio task when it really suspends. A
pipelined ``MAIL``/``RCPT``/``DATA`` group is then answered in one pass, with no task and no extra
loop iteration per recipient.
"""

from __future__ import annotations

import asyncio
import inspect
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from typing import Any, cast

from twisted.logger import Logger

from gateway.asgi.app import import_application
from gateway.asgi.types import EmailConnection, EmailProbe
from gateway.passwords import DUMMY_HASH, verify_password
from gateway.routing.base import matches

__all__ = ["settle", "RecipientCheck", "Authenticator"]

log = Logger(namespace="gateway.smtp")

#: ``callback(value, error)``: exactly one of them is meaningful.
Callback = Callable[[Any, BaseException | None], None]


@types.coroutine
def _rest(coro: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, Any, Any]:
    """Continue a coroutine that suspended once, passing its awaits through to the task."""
    while True:
        try:
            value = yield yielded
        except BaseException as exc:  # thrown in by the task (cancellation)
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(value)
            except StopIteration as stop:
                return stop.value


async def _finish(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    return await _rest(coro, yielded)


def settle(
    awaitable: Any, loop: asyncio.AbstractEventLoop, reactor: Any, timeout: float, callback: Callback
) -> None:
    """Call ``callback(value, None)`` or ``callback(None, error)`` once ``awaitable`` is done.

    A coroutine that finishes without suspending calls back before this returns; one that suspends
    continues as a task, cancelled after ``timeout`` seconds (``callback(None, TimeoutError())``).
    A plain value (a sync hook's result) calls back at once.
    """
    if not inspect.iscoroutine(awaitable):
        if inspect.isawaitable(awaitable):
            awaitable = _await(awaitable)
        else:
            callback(awaitable, None)
            return
    try:
        yielded = awaitable.send(None)
    except StopIteration as stop:
        callback(stop.value, None)
        return
    except Exception as exc:
        callback(None, exc)
        return
    task = loop.create_task(_finish(awaitable, yielded))
    timer = reactor.callLater(timeout, task.cancel)

    def done(finished: asyncio.Task[Any]) -> None:
        if timer.active():
            timer.cancel()
        if finished.cancelled():
            callback(None, TimeoutError(f"no answer within {timeout:g}s"))
        elif finished.exception() is not None:
            callback(None, finished.exception())
        else:
            callback(finished.result(), None)

    task.add_done_callback(done)


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class RecipientCheck:
    """``await matches(app, probe)`` for each ``RCPT TO`` (``docs/routing.md``).

    ``check(probe, callback)`` calls ``callback(True)`` (routed), ``callback(False)`` (no route)
    or ``callback(None)`` (the check raised or timed out: a temporary failure).
    """

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop, reactor: Any, timeout: float) -> None:
        self.app = app
        self.loop = loop
        self.reactor = reactor
        self.timeout = timeout
        # An application without ``matches`` counts as matching every recipient: skip the call.
        self.trivial = getattr(app, "matches", None) is None

    def check(self, probe: EmailProbe, callback: Callable[[bool | None], None]) -> None:
        if self.trivial:
            callback(True)
            return

        def checked(value: Any, error: BaseException | None) -> None:
            if error is not None:
                log.warn("Recipient check for {rcpt} failed: {error!r}", rcpt=probe["recipients"], error=error)
                callback(None)
            else:
                callback(bool(value))

        try:
            coro = matches(self.app, cast(dict[str, Any], probe))
        except Exception as exc:  # pragma: no cover - matches() itself only builds a coroutine
            checked(None, exc)
            return
        settle(coro, self.loop, self.reactor, self.timeout, checked)


class Authenticator:
    """Checks AUTH credentials: configured users (password hashes) first, then the hook.

    ``check(username, password, scope, callback)`` calls ``callback(True)``, ``callback(False)`` or
    ``callback(None)`` (the hook failed or timed out: ``454 4.7.0``, try again later). Hash checks
    run in the loop's default executor (they take tens of milliseconds on purpose); a sync hook
    runs there too, an async hook on the loop.
    """

    def __init__(self, users: Mapping[str, str], hook: str | Callable[..., Any] | None,
                 loop: asyncio.AbstractEventLoop, reactor: Any, timeout: float) -> None:
        self.users = dict(users)
        self.hook: Any = import_application(hook) if isinstance(hook, str) else hook
        self.loop = loop
        self.reactor = reactor
        self.timeout = timeout

    def check(self, username: str, password: str, scope: EmailConnection,
              callback: Callable[[bool | None], None]) -> None:
        def checked(value: Any, error: BaseException | None) -> None:
            if error is not None:
                log.warn("AUTH check for {user!r} failed: {error!r}", user=username, error=error)
                callback(None)
            else:
                callback(value is True)

        encoded = self.users.get(username)
        if encoded is None and self.hook is not None:
            if inspect.iscoroutinefunction(self.hook):
                try:
                    awaitable = self.hook(username, password, scope)
                except Exception as exc:
                    checked(None, exc)
                    return
                settle(awaitable, self.loop, self.reactor, self.timeout, checked)
            else:
                self._in_thread(lambda: self.hook(username, password, scope), checked)
            return
        self._in_thread(lambda: verify_password(password, encoded or DUMMY_HASH) and encoded is not None, checked)

    def _in_thread(self, work: Callable[[], Any], checked: Callback) -> None:
        future = self.loop.run_in_executor(None, work)

        def done(finished: asyncio.Future[Any]) -> None:
            if finished.cancelled():
                checked(None, asyncio.CancelledError())
            elif finished.exception() is not None:
                checked(None, finished.exception())
            else:
                checked(finished.result(), None)

        future.add_done_callback(done)
