"""The blocking reader: one loop per shard and kind that pops messages and hands them out.

Two kinds per shard, each on its own connection:

* ``process``: the sorted sets of this process's specific channels (``{prefix}specific.<client
  prefix>!``, one per ``new_channel`` prefix). Everything in them is ours, so the reader drains
  them in batches: ``BZMPOP timeout keys MIN COUNT batch`` returns up to ``batch`` messages per
  round trip (Redis < 7: ``BZPOPMIN``, then the drain script). It keeps ``depth`` such pops in
  flight on its connection (Redis runs them one after the other as messages arrive) and sends
  the next ones when half have returned, so a steady stream costs one write per ``depth / 2``
  messages instead of one per message.
* ``normal``: the keys of normal channels (``http.request``, worker channels) that a ``receive()``
  in this process waits on. These are shared with other processes, so the reader pops only as
  many messages per key as receivers wait (the drain script), and blocks with a count of 1.

The blocking call has a timeout (``block_timeout``, 5 s by default) that simply loops: an idle
reader never errors (channels_redis#422), and a connection that stops answering is detected by the
reply timeout and reconnected. A reader blocked on keys that changed is woken by a member pushed
on its wake keys (one per pop in flight, each named first in its pop), which it pops and ignores. Popped messages are passed to ``dispatch(key,
[(member, score), ...])``. A connection lost with a reply in flight loses that reply (at most
``depth × batch`` messages); the reader reconnects with backoff and re-issues its read. On a Redis
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
        wake: ``await wake(keys)`` pushes a member on each wake key (through a command
            connection to the same server).
        wake_key: this reader's wake key (bytes); with ``depth > 1``, the prefix of its wake keys.
        keys: ``keys()`` -> ``[(key, count), ...]`` to read now (empty: nothing to wait for).
        dispatch: ``dispatch(key, pairs)`` for popped messages.
        batch: most messages per pop.
        block_timeout: seconds a blocking pop waits before it is re-issued.
        depth: blocking pops kept in flight (``process`` readers; 1 for ``normal``).
        on_redirect: told about a ``MOVED``/``ASK`` the reader got (a cluster client updates its
            slot map), before the reader reconnects to the slot's owner.
    """

    def __init__(self, kind: str, connection: RedisConnection, wake: Callable[[list[bytes]], Awaitable[object]],
                 wake_key: bytes, keys: Callable[[], list[tuple[bytes, int]]], dispatch: Callable[[bytes, _Pairs], None],
                 stats: dict[str, int], batch: int, block_timeout: float, depth: int = 1,
                 on_redirect: Callable[[RedisRedirect], None] | None = None) -> None:
        self.kind = kind
        self.connection = connection
        self.wake = wake
        self.wake_key = wake_key
        self.depth = depth
        self.on_redirect = on_redirect
        self.wake_keys = [wake_key] if depth == 1 else [wake_key + b".%d" % j for j in range(depth)]
        self._wake_set = frozenset(self.wake_keys)
        self._next_wake = 0
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
        self._changed = False  # keys() changed while no pop was in flight (during a drain)
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
            self._changed = True
            self._idle.set()
        elif key not in blocked and not self._woken:
            self._woken = True
            task = self.loop.create_task(self._wake())
            self._wakes.add(task)
            task.add_done_callback(self._wakes.discard)

    async def _wake(self) -> None:
        try:
            await self.wake(self.wake_keys)
        except RedisLayerError as exc:  # the reader re-issues on its own after block_timeout
            logger.debug("Redis reader wake-up failed: %s", exc)

    async def _run(self) -> None:
        need_drain = True
        while not self.closed:
            try:
                await self.connection.wait_ready()
            except RedisLayerUnavailable:
                return  # closed
            self._changed = False
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
                    if self._changed:  # a key added while the drain ran: drain again with it
                        continue
                if self.depth > 1 and self.bzmpop:
                    need_drain = await self._pipelined(keys)
                else:
                    need_drain = await self._block(keys)
            except RedisLayerUnavailable:
                self._blocked_on = None
                need_drain = True
                await asyncio.sleep(0.01)  # wait_ready() then waits through the outage
                continue
            except RedisRedirect as exc:  # the slot moved: reconnect to its new owner
                self._blocked_on = None
                need_drain = True
                if self.on_redirect is not None:
                    self.on_redirect(exc)
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

    async def _pipelined(self, keys: list[tuple[bytes, int]]) -> bool:
        """Blocking pops, ``depth`` in flight, until the keys change; returns True (drain next).

        Replies are handled as they are parsed (a callback, not a task per reply)."""
        names = [k for k, _ in keys]
        connection = self.connection
        self._blocked_on = frozenset(names)
        self._woken = False
        count = len(names) + 1
        block, batch, depth = self.block_timeout, self.batch, self.depth
        wake_keys, wake_set = self.wake_keys, self._wake_set
        wait = block + connection.settings.command_timeout
        finished: asyncio.Future[None] = self.loop.create_future()
        state = {"in_flight": 0, "changed": False}

        def issue(n: int) -> None:
            commands = []
            in_flight = state["in_flight"]
            for i in range(n):
                self._next_wake = j = (self._next_wake + 1) % depth
                # the k-th pop in line starts blocking once those before it returned
                commands.append((("BZMPOP", block, count, wake_keys[j], *names, "MIN", "COUNT", batch),
                                 (in_flight + i + 1) * block + wait))
            connection.queue(commands, on_reply)
            state["in_flight"] = in_flight + n

        def on_reply(reply: Any) -> None:
            state["in_flight"] -= 1
            if finished.done():
                return
            if isinstance(reply, Exception):
                finished.set_exception(reply)
                return
            try:
                if reply is not None:
                    key = reply[0]
                    if key in wake_set:
                        state["changed"] = True
                    else:
                        self._deliver(key, [(m, s) for m, s in reply[1]])
                if state["changed"] or self._woken:  # let the pops in flight return, then start over
                    if not state["in_flight"]:
                        finished.set_result(None)
                elif state["in_flight"] <= depth // 2:
                    issue(depth - state["in_flight"])
            except RedisLayerUnavailable as exc:  # issuing more failed: the connection is gone
                finished.set_exception(exc)
            except Exception as exc:  # noqa: BLE001 - a bug in dispatch must not stop the reader
                logger.exception("Redis %s reader: dispatch failed", self.kind)
                finished.set_exception(exc)

        try:
            issue(depth)
            await finished
        finally:
            self._blocked_on = None
            if not finished.done():  # cancelled: later replies are ignored
                finished.cancel()
        return True

    def _deliver(self, key: bytes, pairs: _Pairs) -> None:
        self.stats["reader_batches"] += 1
        self.stats["reader_messages"] += len(pairs)
        self.dispatch(key, pairs)
