"""Where the layer runs: the Twisted asyncio reactor's event loop.

All Redis I/O and all of the layer's state live on the loop under Twisted's asyncio reactor (in
the daemon, ``gateway worker`` and ``gateway send``, the loop every consumer runs on). A call made
on another event loop or thread (``async_to_sync`` from a plain thread, a second loop) is run on
the reactor's loop with ``run_coroutine_threadsafe`` and awaited from the caller's loop.

:func:`start_reactor_thread` installs the asyncio reactor and runs it in a daemon thread, for
programs that are not run by the gateway (a Django process, tests, scripts); the layer calls it
at first use when no reactor is installed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["home", "run_on", "start_reactor_thread"]

T = TypeVar("T")

_NO_REACTOR = (
    "RedisChannelLayer runs on Twisted's asyncio reactor: use it inside the gateway (gateway run, "
    "gateway worker, gateway send), or in a process where no other reactor is installed (it then "
    "runs one in a thread of its own)"
)


def home() -> tuple[Any, asyncio.AbstractEventLoop]:
    """The installed asyncio reactor and its loop; with no reactor installed (a Django process
    or script using the layer, not run by the gateway), one is started in a daemon thread.

    Raises:
        RuntimeError: another kind of reactor is installed.
    """
    from gateway.reactor import installed_reactor, is_asyncio_reactor, reactor_loop

    reactor = installed_reactor()
    if reactor is None:
        reactor = start_reactor_thread()
    if not is_asyncio_reactor(reactor):
        raise RuntimeError(_NO_REACTOR + f" (installed: {type(reactor).__name__})")
    return reactor, reactor_loop(reactor)


async def run_on(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on ``loop`` (running in another thread) and await its result here.

    Cancelling the caller cancels the coroutine on ``loop``.
    """
    if not loop.is_running() or loop.is_closed():
        coro.close()
        raise RuntimeError("the Twisted reactor's event loop is not running; " + _NO_REACTOR)
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


_thread_lock = threading.Lock()
_thread: threading.Thread | None = None


def start_reactor_thread() -> Any:
    """Install Twisted's asyncio reactor (if none is) and run it in a daemon thread; return it.

    Idempotent. If a reactor is already running in this process, it is returned as it is.

    Raises:
        RuntimeError: another kind of reactor is installed.
    """
    global _thread
    with _thread_lock:
        from gateway.reactor import installed_reactor, is_asyncio_reactor

        reactor = installed_reactor()
        if reactor is None:
            from twisted.internet import asyncioreactor

            loop = asyncio.new_event_loop()
            asyncioreactor.install(loop)
            from twisted.internet import reactor as installed
            reactor = installed
        elif not is_asyncio_reactor(reactor):
            raise RuntimeError(f"the {type(reactor).__name__} is installed; the Redis layer needs the asyncio reactor")
        if reactor.running or _thread is not None:
            return reactor
        started = threading.Event()
        reactor.callWhenRunning(started.set)
        running: Any = reactor  # Twisted's interface for run() does not name its keyword

        def run() -> None:
            from gateway.reactor import reactor_loop

            asyncio.set_event_loop(reactor_loop(running))
            running.run(installSignalHandlers=False)

        _thread = threading.Thread(target=run, name="gateway-reactor", daemon=True)
        _thread.start()
        started.wait(10)
        return reactor
