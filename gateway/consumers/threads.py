"""The thread model of sync consumers: one serial lane per consumer on a bounded shared pool.

Django Channels runs every ``SyncConsumer`` handler of a process on one thread (asgiref's
thread-sensitive single-thread executor), so four consumers that each block for a second take four
seconds. Here:

* All sync handlers run on one process-wide ``ThreadPoolExecutor`` of ``max_workers`` threads
  (:func:`configure_sync_threads`; default ``min(32, cpu_count + 4)``, or the
  ``GATEWAY_SYNC_THREADS`` environment variable). Handlers of *different* consumers run in parallel,
  up to that bound; beyond it they wait their turn in FIFO order.
* Each consumer instance owns a :class:`SerialExecutor` (a "lane") over that pool: work submitted to
  a lane runs one item at a time, in submission order, so one consumer's handlers never overlap
  and never reorder. A lane holds no thread while idle, so 10,000 idle WebSockets cost no threads.
  Consecutive handlers of one consumer may run on different pool threads; keep per-connection state
  on ``self`` (or in the scope), not in thread-locals.
* Handlers are started with asgiref's ``sync_to_async(thread_sensitive=False, executor=lane)``, so
  inside them ``async_to_sync(...)`` (``self.send``, ``async_to_sync(layer.group_send)``) runs the
  coroutine on the daemon's event loop while the handler's thread waits, exactly as in Channels.
  Thread-sensitive ``sync_to_async`` calls made from such a coroutine come back to the waiting
  handler thread (asgiref's ``CurrentThreadExecutor``), so nesting does not need a second pool thread.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = [
    "SerialExecutor",
    "run_sync_handler",
    "sync_handler_hooks",
    "configure_sync_threads",
    "default_sync_threads",
    "get_sync_executor",
    "sync_threads",
]

_T = TypeVar("_T")


def default_sync_threads() -> int:
    """``GATEWAY_SYNC_THREADS`` if set, else ``min(32, os.cpu_count() + 4)``."""
    env = os.environ.get("GATEWAY_SYNC_THREADS")
    if env:
        try:
            value = int(env)
        except ValueError:
            raise ValueError(f"GATEWAY_SYNC_THREADS must be an integer, got {env!r}") from None
        if value < 1:
            raise ValueError(f"GATEWAY_SYNC_THREADS must be >= 1, got {value}")
        return value
    return min(32, (os.cpu_count() or 1) + 4)


#: Called with no arguments in the handler's thread before and after every sync consumer handler
#: (``gateway.django`` adds Django's ``close_old_connections``, as Channels runs each handler).
sync_handler_hooks: list[Callable[[], None]] = []


def run_sync_handler(handler: Callable[..., _T], *args: Any) -> _T:
    """``handler(*args)`` between the :data:`sync_handler_hooks` (call it in the pool thread)."""
    if not sync_handler_hooks:
        return handler(*args)
    hooks = list(sync_handler_hooks)
    for hook in hooks:
        hook()
    try:
        return handler(*args)
    finally:
        for hook in hooks:
            hook()


_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def get_sync_executor() -> ThreadPoolExecutor:
    """The process-wide bounded pool that runs sync consumer code (created on first use)."""
    global _pool, _pool_size
    pool = _pool
    if pool is None:
        with _pool_lock:
            if _pool is None:
                _pool_size = default_sync_threads()
                _pool = ThreadPoolExecutor(_pool_size, thread_name_prefix="gateway-sync")
            pool = _pool
    return pool


def sync_threads() -> int:
    """The current pool's thread bound."""
    get_sync_executor()
    return _pool_size


def configure_sync_threads(max_workers: int) -> None:
    """Set the bound of the sync-consumer thread pool (the daemon's config calls this).

    The old pool finishes the work it already started and is then shut down; lanes send new work
    to the new pool.

    Raises:
        ValueError: ``max_workers`` is not a positive integer.
    """
    global _pool, _pool_size
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise ValueError(f"max_workers must be a positive integer, got {max_workers!r}")
    with _pool_lock:
        old = _pool
        _pool = ThreadPoolExecutor(max_workers, thread_name_prefix="gateway-sync")
        _pool_size = max_workers
    if old is not None:
        old.shutdown(wait=False)


class SerialExecutor(Executor):
    """Runs submitted calls one at a time, in order, on threads of a shared pool.

    Args:
        pool: the executor to borrow threads from; by default the process-wide sync pool, looked up
            at each step (so :func:`configure_sync_threads` takes effect for existing lanes).
    """

    def __init__(self, pool: Executor | None = None) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self._pending: deque[tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = deque()
        self._running = False
        self._shutdown = False

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        """Queue ``fn(*args, **kwargs)`` behind earlier calls; return its future."""
        future: Future[_T] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._pending.append((future, fn, args, kwargs))
            if self._running:
                return future
            self._running = True
        self._schedule()
        return future

    def _schedule(self) -> None:
        pool = self._pool if self._pool is not None else get_sync_executor()
        try:
            pool.submit(self._step)
        except RuntimeError:  # the shared pool was replaced and shut down meanwhile
            get_sync_executor().submit(self._step)

    def _step(self) -> None:
        with self._lock:
            if not self._pending:  # cancelled by shutdown(cancel_futures=True)
                self._running = False
                return
            future, fn, args, kwargs = self._pending.popleft()
        if future.set_running_or_notify_cancel():
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)
        with self._lock:
            if not self._pending:
                self._running = False
                return
        # Yield the thread between items, so a busy lane cannot starve the others.
        self._schedule()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new work; optionally cancel queued calls. Never waits for the shared pool."""
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while self._pending:
                    self._pending.popleft()[0].cancel()
