"""The blocking reader: one loop per shard and kind that pops messages and hands them out.

Two kinds per shard, each on its own connection:

* ``process``: the sorted sets of this process's specific channels (``{prefix}specific.<client
  prefix>!``, one per ``new_channel`` prefix). Everything in them is ours, so the reader drains
  them in batches: ``BZMPOP timeout keys MIN COUNT batch`` returns up to ``batch`` messages per
  round trip (Redis < 7: ``BZPOPMIN``, then the drain script).
* ``normal``: the keys of normal channels (``http.request``, worker channels) that a ``receive()``
  in this process waits on. These are shared with other processes, so the reader pops only as
  many messages per key as receivers wait (the drain script), and blocks with a count of 1.

The blocking call has a timeout (``block_timeout``, 5 s by default) that simply loops: an idle
reader never errors (channels_redis#422), and a connection that stops answering is detected by the
reply timeout and reconnected. A reader blocked on keys that changed is woken by a member pushed
on its own wake key, which it pops and ignores. Popped messages are passed to ``dispatch(key,
[(member, score), ...])``. A connection lost with a reply in flight loses that reply (at most
``batch`` messages); the reader reconnects with backoff and re-issues its read. On a Redis
Cluster a reader's keys share one hash slot (with its wake key); when the slot moves (``MOVED``,
a failover) the reader reconnects to the slot's new owner.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.layers.redis.connection import RedisConnection
from gateway.layers.redis.errors import RedisLayerError, RedisLayerUnavailable, RedisRedirect
from gateway.layers.redis.scripts import DRAIN

__all__ = ["Reader"]

logger = logging.getLogger("gateway.layers.redis")

_Pairs = list[tuple[bytes, bytes]]


def _pairs(flat: list[Any]) -> _Pairs:
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


class Reader:
    """One blocking read loop.

    Args:
        kind: ``process`` or ``normal``.
        connection: this reader's own connection (blocking commands hold it).
        wake: ``await wake(wake_key)`` pushes a member on the wake key (through a command
            connection to the same server).
        wake_key: this reader's wake key (bytes).
        keys: ``keys()`` -> ``[(key, count), ...]`` to read now (empty: nothing to wait for).
        dispatch: ``dispatch(key, pairs)`` for popped messages.
        batch: most messages per pop.
        block_timeout: seconds a blocking pop waits before it is re-issued.
    """

    def __init__(self, kind: str, connection: RedisConnection, wake: Callable[[bytes], Awaitable[object]],
                 wake_key: bytes, keys: Callable[[], list[tuple[bytes, int]]], dispatch: Callable[[bytes, _Pairs], None],
                 stats: dict[str, int], batch: int, block_timeout: float) -> None:
        self.kind = kind
        self.connection = connection
        self.wake = wake
        self.wake_key = wake_key
        self.keys = keys
        self.dispatch = dispatch
        self.stats = stats
        self.batch = batch
        self.block_timeout = block_timeout
        self.loop = connection.loop
        self.closed = False
        self.bzmpop = True
        self._blocked_on: frozenset[bytes] | None = None
        self._woken = False
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._wakes: set[asyncio.Task[None]] = set()  # referenced until done

    def start(self) -> None:
        if self._task is None and not self.closed:
            self.connection.start()
            self._task = self.loop.create_task(self._run())

    async def close(self) -> None:
        self.closed = True
        self._idle.set()
        await self.connection.close()
        tasks = [t for t in (self._task, *self._wakes) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def notify(self, key: bytes) -> None:
        """``key`` has new demand: make sure the next (or current) pop covers it."""
        if self._task is None:
            self.start()
        blocked = self._blocked_on
        if blocked is None:
            self._idle.set()
        elif key not in blocked and not self._woken:
            self._woken = True
            task = self.loop.create_task(self._wake())
            self._wakes.add(task)
            task.add_done_callback(self._wakes.discard)

    async def _wake(self) -> None:
        try:
            await self.wake(self.wake_key)
        except RedisLayerError as exc:  # the reader re-issues on its own after block_timeout
            logger.debug("Redis reader wake-up failed: %s", exc)

    async def _run(self) -> None:
        need_drain = True
        while not self.closed:
            try:
                await self.connection.wait_ready()
            except RedisLayerUnavailable:
                return  # closed
            keys = self.keys()
            if not keys:
                self._idle.clear()
                await self._idle.wait()
                need_drain = True
                continue
            try:
                if need_drain:
                    reply = await self.connection.evalsha(DRAIN, [k for k, _ in keys], [c for _, c in keys])
                    if reply:
                        for i in range(0, len(reply), 2):
                            self._deliver(reply[i], _pairs(reply[i + 1]))
                        continue
                need_drain = await self._block(keys)
            except RedisLayerUnavailable:
                self._blocked_on = None
                need_drain = True
                await asyncio.sleep(0.01)  # wait_ready() then waits through the outage
                continue
            except RedisRedirect as exc:  # the slot moved: reconnect to its new owner
                self._blocked_on = None
                need_drain = True
                self.connection.drop(f"slot moved ({exc})")
                await asyncio.sleep(0.01)
                continue
            except RedisLayerError as exc:
                self._blocked_on = None
                if self.bzmpop and "BZMPOP" in str(exc).upper():
                    self.bzmpop = False
                    continue
                logger.error("Redis %s reader: %s", self.kind, exc)
                await asyncio.sleep(1.0)
            except Exception:  # noqa: BLE001 - a bug in dispatch must not stop the reader
                self._blocked_on = None
                logger.exception("Redis %s reader: dispatch failed", self.kind)

    async def _block(self, keys: list[tuple[bytes, int]]) -> bool:
        """One blocking pop; returns whether more may be waiting (drain next)."""
        names = [k for k, _ in keys]
        count = self.batch if self.kind == "process" else 1
        self._blocked_on = frozenset(names)
        self._woken = False
        try:
            if self.bzmpop:
                reply = await self.connection.call("BZMPOP", self.block_timeout, len(names) + 1, self.wake_key,
                                                   *names, "MIN", "COUNT", count)
                if reply is None:
                    return False
                key, items = reply[0], reply[1]
                pairs = [(m, s) for m, s in items]
            else:
                reply = await self.connection.call("BZPOPMIN", self.wake_key, *names, self.block_timeout)
                if reply is None:
                    return False
                key, pairs = reply[0], [(reply[1], reply[2])]
        finally:
            self._blocked_on = None
        if key == self.wake_key:
            return True
        self._deliver(key, pairs)
        return len(names) > 1 or len(pairs) >= count

    def _deliver(self, key: bytes, pairs: _Pairs) -> None:
        self.stats["reader_batches"] += 1
        self.stats["reader_messages"] += len(pairs)
        self.dispatch(key, pairs)
