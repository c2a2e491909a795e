"""The in-memory channel layer: one process, no server, the default.

Costs:

* ``send`` and ``receive`` are O(1). ``group_send`` is O(members): one pass over the group under
  one lock, one queue append and at most one wake-up per member. Nothing sleeps, nothing creates a
  task per member, nothing scans all channels on each call.
* Expiry is lazy. A queue is ordered by send time, so an expired message can only sit at its head:
  every ``send``/``receive``/``group_send`` that touches a channel drops expired messages from
  that head (O(expired)). Group memberships are checked against ``group_expiry`` as
  ``group_send`` walks the group. For channels and groups nobody touches any more, a sweep runs at
  most once per ``min(expiry, group_expiry)`` seconds, on a ``send``, ``receive`` or
  ``group_send`` (amortised O(1) per operation), so memory stays bounded without per-operation
  scans.
* As in Channels' in-memory layer, a channel on which a message expired is taken out of all its
  groups: nobody is reading it, so the consumer behind it is gone.

Message isolation: a receiver never sees the sender's dict, and two receivers of one
``group_send`` never share a dict. ``send`` copies the message once (``dict(message)`` when every
value is immutable — str, bytes, numbers, bool, None — else ``copy.deepcopy``) and hands that copy
to the one receiver. ``group_send`` makes that one snapshot for the whole group; each receiver gets
its own shallow (flat message) or deep (nested message) copy of it at ``receive()`` time, in its own
task, so the fan-out itself never copies.

Threads and loops: one layer object may be used from several event loops and threads (the daemon's
loop, ``async_to_sync`` calls from worker threads, a plain thread's ``asyncio.run``). State is
guarded by a ``threading.Lock`` held only for O(1)/O(members) bookkeeping, and a receiver waiting on
another loop is woken with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.exceptions import ChannelFull, InvalidChannelLayerError
from gateway.layers.base import BaseChannelLayer

__all__ = ["InMemoryChannelLayer", "InMemoryLayerOptions"]

logger = logging.getLogger(__name__)

_IMMUTABLE = frozenset({str, bytes, int, float, bool, type(None)})

# How a queued message is handed out: OWNED is the receiver's alone; SHARED_FLAT / SHARED_DEEP
# are one group_send snapshot shared by several queues, copied on receive.
_OWNED, _SHARED_FLAT, _SHARED_DEEP = 0, 1, 2


@dataclass(frozen=True)
class InMemoryLayerOptions:
    """The options ``backend: memory`` accepts (the YAML keys beside ``backend``).

    Attributes:
        expiry: seconds a message may wait in a channel (default 60).
        group_expiry: seconds a group membership lives after its last ``group_add`` (default 1 day).
        capacity: messages per channel before ``send`` raises ``ChannelFull`` (default 100).
        channel_capacity: per-channel capacities, ``{glob | "re:regex": int}``, first match wins.
    """

    expiry: float = 60
    group_expiry: float = 86400
    capacity: int = 100
    channel_capacity: Mapping[str, int] | None = None


def _snapshot(message: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Copy ``message`` cheaply: shallow when all values are immutable. Returns (copy, nested)."""
    for value in message.values():
        if type(value) not in _IMMUTABLE:
            return copy.deepcopy(message), True
    return dict(message), False


_Entry = tuple[float, dict[str, Any], int]
_Future = asyncio.Future


class _Channel:
    """One channel's queue of ``(expires_at, message, mode)`` and its waiting receivers."""

    __slots__ = ("name", "capacity", "queue", "waiters")

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.capacity = capacity
        self.queue: deque[_Entry] = deque()
        self.waiters: deque[asyncio.Future[_Entry]] = deque()


class InMemoryChannelLayer(BaseChannelLayer):
    """A channel layer that lives in this process's memory (the Channels layer API).

    Args:
        expiry: seconds a message may wait in a channel.
        group_expiry: seconds a membership lives after its last ``group_add``.
        capacity: default messages per channel.
        channel_capacity: per-channel capacities by pattern.
        clock: the monotonic clock used for expiry (tests pass a fake one).
    """

    extensions: ClassVar[list[str]] = ["groups", "flush"]
    process_local: ClassVar[bool] = True
    options_class: ClassVar[type] = InMemoryLayerOptions

    def __init__(
        self,
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: Mapping[Any, int] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(expiry=expiry, capacity=capacity, channel_capacity=channel_capacity)
        if isinstance(group_expiry, bool) or not isinstance(group_expiry, (int, float)) or group_expiry <= 0:
            raise InvalidChannelLayerError(
                f"group_expiry must be a positive number, got {group_expiry!r}"
            )
        self.group_expiry = group_expiry
        self._clock = clock
        self._lock = threading.Lock()
        self._channels: dict[str, _Channel] = {}
        self._groups: dict[str, dict[str, float]] = {}
        self._memberships: dict[str, set[str]] = {}
        self._client_prefix = "inmemory" + uuid.uuid4().hex[:8]
        self._counter = itertools.count(1)
        self._sweep_interval = min(self.expiry, self.group_expiry)
        self._next_sweep = clock() + self._sweep_interval
        #: Counters since start, named as the Redis layer's (for metrics; see :meth:`stats`).
        self.counters: dict[str, int] = dict.fromkeys(
            ("sent", "send_full", "received", "group_sends", "group_delivered", "group_dropped", "over_capacity", "expired"), 0
        )

    # -- internals (call with the lock held) ------------------------------------------------

    def _channel(self, name: str) -> _Channel:
        state = self._channels.get(name)
        if state is None:
            state = self._channels[name] = _Channel(name, self.get_capacity(name))
        return state

    def _forget_if_idle(self, state: _Channel) -> None:
        name = state.name
        if (
            not state.queue
            and not state.waiters
            and name not in self._memberships
            and self._channels.get(name) is state
        ):
            del self._channels[name]

    def _purge(self, state: _Channel, now: float) -> bool:
        """Drop expired messages from the head; on any, leave all groups. True if any dropped."""
        queue = state.queue
        dropped = False
        while queue and queue[0][0] <= now:
            queue.popleft()
            self.counters["expired"] += 1
            dropped = True
        if dropped:
            self._leave_all_groups(state.name)
        return dropped

    def _leave_all_groups(self, channel: str) -> None:
        for group in self._memberships.pop(channel, ()):
            members = self._groups.get(group)
            if members is not None:
                members.pop(channel, None)
                if not members:
                    del self._groups[group]

    def _discard_membership(self, group: str, channel: str) -> None:
        members = self._groups.get(group)
        if members is not None and members.pop(channel, None) is not None and not members:
            del self._groups[group]
        groups = self._memberships.get(channel)
        if groups is not None:
            groups.discard(group)
            if not groups:
                del self._memberships[channel]

    @staticmethod
    def _pop_waiter(state: _Channel) -> asyncio.Future[Any] | None:
        waiters = state.waiters
        while waiters:
            future = waiters.popleft()
            if not future.done():
                return future
        return None

    def _sweep(self, now: float) -> None:
        """Drop expired messages and memberships everywhere (at most once per interval)."""
        self._next_sweep = now + self._sweep_interval
        for state in list(self._channels.values()):
            if state.queue:
                self._purge(state, now)
            self._forget_if_idle(state)
        cutoff = now - self.group_expiry
        for group, members in list(self._groups.items()):
            for channel in [c for c, joined in members.items() if joined <= cutoff]:
                self._discard_membership(group, channel)

    # -- handing messages to waiting receivers ------------------------------------------------
    #
    # Invariant (under the lock): a channel has waiters only while its queue is empty. A sender
    # that finds a waiter hands it the entry directly (future result); a receiver cancelled after
    # that gives the entry back (head of the queue, or the next waiter), so nothing is lost.

    def _hand(self, channel: str, future: asyncio.Future[Any], entry: _Entry,
              running: asyncio.AbstractEventLoop | None) -> None:
        loop = future.get_loop()
        if loop is running:
            future.set_result(entry)  # same thread, no await since it was picked: still pending
            return
        try:
            loop.call_soon_threadsafe(self._deliver, channel, future, entry)
        except RuntimeError:  # that loop is closed: its receiver is gone
            self._give_back(channel, entry, running)

    def _deliver(self, channel: str, future: asyncio.Future[Any], entry: _Entry) -> None:
        if future.done():  # cancelled meanwhile
            self._give_back(channel, entry, future.get_loop())
        else:
            future.set_result(entry)

    def _give_back(self, channel: str, entry: _Entry, running: asyncio.AbstractEventLoop | None) -> None:
        with self._lock:
            state = self._channel(channel)
            waiter = self._pop_waiter(state)
            if waiter is None:
                state.queue.appendleft(entry)
        if waiter is not None:
            self._hand(channel, waiter, entry, running)

    # -- the channel layer API ----------------------------------------------------------------

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Queue ``message`` on ``channel``.

        Raises:
            TypeError: the channel name or the message is invalid.
            ChannelFull: the channel already holds its capacity of unexpired messages.
        """
        self.require_message(message)
        snapshot, _ = _snapshot(message)
        now = self._clock()
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            state = self._channels.get(channel)
            if state is None:  # a known state was validated when it was created
                self.require_valid_channel_name(channel)
                state = self._channels[channel] = _Channel(channel, self.get_capacity(channel))
            if state.queue and state.queue[0][0] <= now:
                self._purge(state, now)
            if len(state.queue) >= state.capacity:
                self.counters["send_full"] += 1
                self.counters["over_capacity"] += 1
                raise ChannelFull(channel)
            self.counters["sent"] += 1
            entry = (now + self.expiry, snapshot, _OWNED)
            waiter = self._pop_waiter(state) if state.waiters else None
            if waiter is None:
                state.queue.append(entry)
        if waiter is not None:
            self._hand(channel, waiter, entry, asyncio.get_running_loop())

    async def receive(self, channel: str) -> dict[str, Any]:
        """Wait for the next message on ``channel`` and return it.

        Cancellation-safe: a message handed to a receiver that is cancelled before it returns goes
        back to the head of the channel (or to the next waiting receiver), so cancelling a
        ``receive()`` never loses a message. Several receivers on one channel each get different
        messages; one receiver sees them in send order.
        """
        now = self._clock()
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            state = self._channels.get(channel)
            if state is None:  # a known state was validated when it was created
                self.require_valid_channel_name(channel)
                state = self._channels[channel] = _Channel(channel, self.get_capacity(channel))
            queue = state.queue
            if queue and queue[0][0] <= now:
                self._purge(state, now)
            future: asyncio.Future[_Entry] | None
            if queue:
                entry = queue.popleft()
                if not queue:
                    self._forget_if_idle(state)
                future = None
            else:
                loop = asyncio.get_running_loop()
                future = _Future(loop=loop)
                state.waiters.append(future)
        if future is not None:
            try:
                entry = await future
            except asyncio.CancelledError:
                with self._lock:
                    try:
                        state.waiters.remove(future)
                        picked = None
                    except ValueError:  # a sender picked us; it may have handed us an entry
                        picked = future.result() if future.done() and not future.cancelled() else None
                    self._forget_if_idle(state)
                if picked is not None:
                    self._give_back(channel, picked, loop)
                raise
        self.counters["received"] += 1
        mode = entry[2]
        if mode == _SHARED_FLAT:
            return dict(entry[1])
        if mode == _OWNED:
            return entry[1]
        return copy.deepcopy(entry[1])

    async def new_channel(self, prefix: str = "specific") -> str:
        """Return a new unique process-specific name, ``<prefix>.<layer id>!<unique>``."""
        name = f"{prefix}.{self._client_prefix}!{next(self._counter):x}{uuid.uuid4().hex[:12]}"
        self.require_valid_channel_name(name)
        return name

    # -- groups extension ---------------------------------------------------------------------

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group``, or refresh the membership's ``group_expiry``."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        now = self._clock()
        with self._lock:
            self._groups.setdefault(group, {})[channel] = now
            self._memberships.setdefault(channel, set()).add(group)

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; a non-member is a no-op."""
        self.require_valid_channel_name(channel)
        self.require_valid_group_name(group)
        with self._lock:
            self._discard_membership(group, channel)
            state = self._channels.get(channel)
            if state is not None:
                self._forget_if_idle(state)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Queue ``message`` on every member of ``group``; members at capacity are skipped."""
        self.require_message(message)
        self.require_valid_group_name(group)
        snapshot, nested = _snapshot(message)
        mode = _SHARED_DEEP if nested else _SHARED_FLAT
        now = self._clock()
        entry = (now + self.expiry, snapshot, mode)
        running = asyncio.get_running_loop()
        foreign: list[tuple[str, asyncio.Future[Any]]] = []
        full = 0
        with self._lock:
            self.counters["group_sends"] += 1
            if now >= self._next_sweep:
                self._sweep(now)
            members = self._groups.get(group)
            if not members:
                return
            cutoff = now - self.group_expiry
            stale: list[str] = []
            channels = self._channels
            for name, joined in members.items():
                if joined <= cutoff:
                    stale.append(name)
                    continue
                state = channels.get(name)
                if state is None:
                    state = channels[name] = _Channel(name, self.get_capacity(name))
                waiters = state.waiters
                while waiters:  # hand over directly (the queue is empty while there are waiters)
                    waiter = waiters.popleft()
                    if waiter.done():
                        continue
                    if waiter.get_loop() is running:
                        waiter.set_result(entry)
                    else:
                        foreign.append((name, waiter))
                    break
                else:
                    queue = state.queue
                    if queue and queue[0][0] <= now:
                        while queue and queue[0][0] <= now:
                            queue.popleft()
                            self.counters["expired"] += 1
                        stale.append(name)  # a message expired there: nobody reads it
                    elif len(queue) >= state.capacity:
                        full += 1
                    else:
                        queue.append(entry)
                        self.counters["group_delivered"] += 1
            if full:
                self.counters["group_dropped"] += full
                self.counters["over_capacity"] += full
            for name in stale:
                if members.get(name, now) <= cutoff:
                    self._discard_membership(group, name)
                else:
                    self._leave_all_groups(name)
        for name, waiter in foreign:
            self._hand(name, waiter, entry, running)
        if full:
            logger.debug("group_send to %r skipped %d member(s) at capacity", group, full)

    # -- flush extension ----------------------------------------------------------------------

    async def flush(self) -> None:
        """Drop all messages and groups. Receivers already waiting keep waiting."""
        with self._lock:
            self._groups.clear()
            self._memberships.clear()
            for name, state in list(self._channels.items()):
                state.queue.clear()
                if not state.waiters:
                    del self._channels[name]

    async def close(self) -> None:
        """Nothing to release; present for API compatibility."""

    # -- introspection (tests, metrics) -------------------------------------------------------

    @property
    def channels(self) -> _ChannelsView:
        """The live channels by name, each with its queued messages (Channels' ``channels``).

        A channel is listed while it has queued messages, waiting receivers or group
        memberships. ``del layer.channels[name]`` drops that channel's queued messages.
        """
        return _ChannelsView(self)

    @property
    def groups(self) -> dict[str, dict[str, float]]:
        """A snapshot of the groups: ``{group: {channel: joined_at}}`` (Channels' ``groups``)."""
        with self._lock:
            return {group: dict(members) for group, members in self._groups.items()}

    def stats(self) -> dict[str, int]:
        """Counts of live channel states, queued messages, groups and memberships, and the
        :attr:`counters` since start."""
        with self._lock:
            return {
                "channels": len(self._channels),
                "messages": sum(len(s.queue) for s in self._channels.values()),
                "groups": len(self._groups),
                "memberships": sum(len(m) for m in self._groups.values()),
                **self.counters,
            }


class _ChannelsView(MutableMapping[str, tuple[dict[str, Any], ...]]):
    """``InMemoryChannelLayer.channels``: channel name -> its queued messages (a copy)."""

    def __init__(self, layer: InMemoryChannelLayer) -> None:
        self._layer = layer

    def __getitem__(self, name: str) -> tuple[dict[str, Any], ...]:
        with self._layer._lock:
            return tuple(entry[1] for entry in self._layer._channels[name].queue)

    def __setitem__(self, name: str, value: Any) -> None:
        raise TypeError("channels are created by send() and receive(), not assigned")

    def __delitem__(self, name: str) -> None:
        """Drop the channel's queued messages. A message already handed to a waiting receiver
        stays that receiver's; a channel that is gone already is no error."""
        with self._layer._lock:
            self._layer._channels.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        with self._layer._lock:
            return iter(list(self._layer._channels))

    def __len__(self) -> int:
        return len(self._layer._channels)

    def __contains__(self, name: object) -> bool:
        return name in self._layer._channels
