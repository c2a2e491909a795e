"""Queues for the channels of this process, fed by local sends and by the Redis reader.

Everything here runs on the reactor's event loop (the layer moves calls from other loops and
threads there), so there is no lock. The rules are the in-memory layer's: FIFO per channel,
capacity counts queued messages, a waiting receiver is handed a message directly, a receiver
cancelled after being handed one gives it back to the head of the queue (nothing is lost by
``asyncio.wait_for(receive(), t)``).

Expiry follows channels_redis, where these messages would wait in a sorted set: a message older
than ``expiry`` is dropped when a newer one is put on its channel (channels_redis purges a key on
every send to it), and a channel nothing was put on for ``expiry`` seconds is emptied by a sweep
(channels_redis' key TTL); ``receive()`` takes what is queued whatever its age, as a
``BZPOPMIN`` does. Messages the reader took out of Redis never expire here (channels_redis' receive
buffer keeps what it popped): once this process has taken a message, it is delivered; only the
capacity bounds the queue.

Normal channels (no ``!``) get a queue here too, but only for messages the reader popped for a
receiver that was cancelled meanwhile; the reader pops from Redis only as many as receivers wait.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

__all__ = ["DEEP", "FLAT", "OWNED", "LocalChannels", "ReceiveBuffer", "snapshot"]

_NEVER = float("inf")

_IMMUTABLE = frozenset({str, bytes, int, float, bool, type(None)})

#: How a queued message is handed out: OWNED is the receiver's alone; FLAT / DEEP are shared by
#: several channels (one group message) and copied at receive time.
OWNED, FLAT, DEEP = 0, 1, 2

_Entry = tuple[float, dict[str, Any], int]  # (expires at, message, mode)


def snapshot(message: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """A private copy of ``message`` and the mode for sharing it (FLAT or DEEP)."""
    for value in message.values():
        if type(value) not in _IMMUTABLE:
            return copy.deepcopy(message), DEEP
    return dict(message), FLAT


class _Channel:
    __slots__ = ("name", "capacity", "queue", "waiters", "normal", "ready")

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.capacity = capacity
        self.queue: deque[_Entry] = deque()
        self.waiters: deque[asyncio.Future[_Entry]] = deque()
        #: A normal channel (no ``!``): waiting on it asks the reader for messages.
        self.normal = "!" not in name
        #: Set by the layer once the name was validated and its process key registered.
        self.ready = False


class LocalChannels:
    """This process's channel queues and waiting receivers.

    Args:
        expiry: seconds a queued message lives (from its send time).
        get_capacity: capacity of a channel by name.
        stats: the layer's counters (``expired``, ``received`` are updated here).
        on_wait: called with a channel name whenever a receiver starts waiting on it.
        clock: wall-clock time (send times come from other machines' clocks too).
    """

    def __init__(self, expiry: float, get_capacity: Callable[[str], int], stats: dict[str, int],
                 on_wait: Callable[[str], None], clock: Callable[[], float] = time.time) -> None:
        self.expiry = expiry
        self.get_capacity = get_capacity
        self.stats = stats
        self.on_wait = on_wait
        self.clock = clock
        self.channels: dict[str, _Channel] = {}
        self._next_sweep = clock() + expiry

    # -- bookkeeping ----------------------------------------------------------------------

    def _purge(self, state: _Channel, now: float) -> None:
        queue = state.queue
        while queue and queue[0][0] <= now:
            queue.popleft()
            self.stats["expired"] += 1

    def _forget_if_idle(self, state: _Channel) -> None:
        """Drop an idle channel's state (only the sweep does, so a busy receiver keeps its own)."""
        if not state.queue and not state.waiters and self.channels.get(state.name) is state:
            del self.channels[state.name]

    def sweep(self, now: float) -> None:
        """Empty channels nothing was put on for ``expiry`` (their newest message expired), drop
        idle channels' state."""
        self._next_sweep = now + self.expiry
        for state in list(self.channels.values()):
            queue = state.queue
            if queue and queue[-1][0] <= now:
                self._purge(state, now)
            state.waiters = deque(w for w in state.waiters if not w.done())
            self._forget_if_idle(state)

    def waiting(self, name: str) -> int:
        """Receivers waiting on ``name`` minus messages already queued for them."""
        state = self.channels.get(name)
        if state is None:
            return 0
        return sum(1 for w in state.waiters if not w.done()) - len(state.queue)

    def queued(self) -> int:
        return sum(len(s.queue) for s in self.channels.values())

    def clear(self) -> None:
        """Drop every queued message (receivers keep waiting)."""
        for name, state in list(self.channels.items()):
            state.queue.clear()
            if not state.waiters:
                del self.channels[name]

    def drain_queued(self, name: str) -> list[_Entry]:
        """Take every queued message of ``name`` (to give them back to Redis at close)."""
        state = self.channels.get(name)
        if state is None:
            return []
        entries = list(state.queue)
        state.queue.clear()
        self._forget_if_idle(state)
        return entries

    # -- putting ---------------------------------------------------------------------------

    def put(self, name: str, message: dict[str, Any], sent_at: float, mode: int, *, bounded: bool = True,
            expires: bool = True) -> bool:
        """Queue ``message`` on ``name`` (or hand it to a waiting receiver).

        Returns False, without queueing, when the channel holds its capacity (``bounded``).
        ``expires=False``: the message stays until received (it was taken out of Redis).
        """
        return self.put_many((name,), message, sent_at, mode, bounded=bounded, expires=expires) == 0

    def put_many(self, names: Iterable[str], message: dict[str, Any], sent_at: float, mode: int, *,
                 bounded: bool = True, expires: bool = True) -> int:
        """:meth:`put` one message on several channels; returns how many were full."""
        now = self.clock()
        if now >= self._next_sweep:
            self.sweep(now)
        entry = (sent_at + self.expiry if expires else _NEVER, message, mode)
        channels = self.channels
        full = 0
        for name in names:
            state = channels.get(name)
            if state is None:
                state = channels[name] = _Channel(name, self.get_capacity(name))
            waiters = state.waiters
            while waiters:  # the queue is empty while there are waiters
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_result(entry)
                    break
            else:
                queue = state.queue
                if queue and queue[0][0] <= now:
                    self._purge(state, now)
                if bounded and len(queue) >= state.capacity:
                    full += 1
                else:
                    queue.append(entry)
        return full

    def _give_back(self, name: str, entry: _Entry) -> None:
        state = self.channels.get(name)
        if state is None:
            state = self.channels[name] = _Channel(name, self.get_capacity(name))
        while state.waiters:
            waiter = state.waiters.popleft()
            if not waiter.done():
                waiter.set_result(entry)
                return
        state.queue.appendleft(entry)

    # -- getting ---------------------------------------------------------------------------

    def state(self, name: str) -> _Channel:
        """The state of ``name``, created if needed (kept while in use; swept when idle)."""
        state = self.channels.get(name)
        if state is None:
            state = self.channels[name] = _Channel(name, self.get_capacity(name))
        return state

    def take(self, state: _Channel) -> _Entry | asyncio.Future[_Entry]:
        """The next queued entry of ``state``'s channel, or a future for it (a waiting receiver:
        on cancellation, pass it to :meth:`cancelled`)."""
        queue = state.queue
        if queue:
            return queue.popleft()
        future: asyncio.Future[_Entry] = asyncio.get_running_loop().create_future()
        state.waiters.append(future)
        if state.normal:
            self.on_wait(state.name)
        return future

    def cancelled(self, state: _Channel, future: asyncio.Future[_Entry]) -> None:
        """A receiver waiting on ``future`` was cancelled: an entry it was handed goes back."""
        if future.done() and not future.cancelled():
            self._give_back(state.name, future.result())
        else:
            try:
                state.waiters.remove(future)
            except ValueError:
                pass

    def unpack(self, entry: _Entry) -> dict[str, Any]:
        """The message of a taken entry, the receiver's own (copied when shared)."""
        self.stats["received"] += 1
        mode = entry[2]
        if mode == OWNED:
            return entry[1]
        if mode == FLAT:
            return dict(entry[1])
        return copy.deepcopy(entry[1])

    async def get(self, state: _Channel) -> dict[str, Any]:
        """Wait for the next message on ``state``'s channel (cancellation-safe)."""
        got = self.take(state)
        if isinstance(got, tuple):
            return self.unpack(got)
        try:
            entry = await got
        except asyncio.CancelledError:
            self.cancelled(state, got)
            raise
        return self.unpack(entry)


class _BufferView:
    """One local queue seen as channels_redis' ``BoundedQueue`` (``put_nowait`` drops the oldest
    message when the queue holds the layer's capacity)."""

    __slots__ = ("local", "name", "capacity")

    def __init__(self, local: LocalChannels, name: str, capacity: int) -> None:
        self.local = local
        self.name = name
        self.capacity = capacity

    def qsize(self) -> int:
        state = self.local.channels.get(self.name)
        return len(state.queue) if state is not None else 0

    def empty(self) -> bool:
        return self.qsize() == 0

    def full(self) -> bool:
        return self.qsize() >= self.capacity

    def put_nowait(self, item: Any) -> None:
        state = self.local.state(self.name)
        if not state.waiters and len(state.queue) >= self.capacity:
            state.queue.popleft()
        self.local.put(self.name, item, self.local.clock(), OWNED, bounded=False, expires=False)

    def get_nowait(self) -> Any:
        state = self.local.channels.get(self.name)
        if state is None or not state.queue:
            raise asyncio.QueueEmpty
        return state.queue.popleft()[1]


class ReceiveBuffer(Mapping[str, _BufferView]):
    """channels_redis' ``receive_buffer`` (messages taken for this process's channels, by
    channel), as a view of the local queues, for code that inspects it."""

    def __init__(self, local: LocalChannels, capacity: int) -> None:
        self.local = local
        self.capacity = capacity

    def __getitem__(self, name: str) -> _BufferView:
        return _BufferView(self.local, name, self.capacity)

    def __iter__(self) -> Iterator[str]:
        return iter([name for name, state in self.local.channels.items() if state.queue])

    def __len__(self) -> int:
        return sum(1 for state in self.local.channels.values() if state.queue)
