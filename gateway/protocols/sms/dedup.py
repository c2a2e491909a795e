"""Bounded memory for webhooks: which deliveries were handled, and parts of split messages.

Both are sans-IO: the caller passes ``now`` (seconds), nothing here reads a clock or starts a
timer, and both forget their oldest entries first when full, so memory stays bounded whatever
the providers send.

* :class:`DedupCache`: the keys (:attr:`InboundMessage.dedup_key`, :attr:`StatusUpdate.dedup_key`)
  of deliveries an application has handled, each remembered for ``window`` seconds. A provider's
  retry of a handled delivery is acknowledged without handing it over again.
* :class:`SharedDedup`: the same, shared by every process on a Redis layer (a redelivery that a
  load balancer sends to another daemon is recognised there too), with a :class:`DedupCache` in
  front. The webhook bridge uses either through :class:`DedupStore`.
* :class:`ConcatBuffer`: the parts of concatenated messages that providers deliver one by one
  (Vonage), until all parts are in and :func:`~gateway.protocols.sms.core.join_parts` can join them.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

from gateway.layers.marks import SharedMarks
from gateway.protocols.sms.core import InboundMessage, join_parts

__all__ = ["ConcatBuffer", "ConcatSet", "DedupCache", "DedupStore", "SharedDedup"]

logger = logging.getLogger("gateway.sms")


class DedupStore(Protocol):
    """Where the keys of handled deliveries are remembered."""

    async def check(self, key: str, now: float) -> bool:
        """Whether ``key`` was handled less than the window ago."""
        ...

    def remember(self, key: str, now: float) -> None:
        """Record that ``key`` was handled at ``now``."""
        ...


class DedupCache:
    """Keys of handled deliveries, each kept for ``window`` seconds, at most ``max_entries``.

    Args:
        window: seconds a key is remembered.
        max_entries: most keys kept; past it the oldest is forgotten (a later redelivery of that
            one would be handed over again: at-least-once, never lost).

    Raises:
        ValueError: ``window`` or ``max_entries`` is not positive.
    """

    def __init__(self, window: float, max_entries: int) -> None:
        if window <= 0 or max_entries <= 0:
            raise ValueError("DedupCache needs a positive window and max_entries")
        self.window = float(window)
        self.max_entries = int(max_entries)
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: object) -> bool:
        return key in self._seen

    def seen(self, key: str, now: float) -> bool:
        """Whether ``key`` was handled less than ``window`` seconds ago."""
        self._expire(now)
        stamp = self._seen.get(key)
        return stamp is not None and now - stamp < self.window

    def remember(self, key: str, now: float) -> None:
        """Record that ``key`` was handled at ``now``."""
        self._seen.pop(key, None)
        self._seen[key] = now
        self._expire(now)
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)

    def forget(self, key: str) -> None:
        """Drop ``key`` (it was not handled after all)."""
        self._seen.pop(key, None)

    async def check(self, key: str, now: float) -> bool:
        """:meth:`seen` (the :class:`DedupStore` interface)."""
        return self.seen(key, now)

    def _expire(self, now: float) -> None:
        seen = self._seen
        while seen:
            key, stamp = next(iter(seen.items()))
            if now - stamp < self.window:
                return
            seen.popitem(last=False)


class SharedDedup:
    """A :class:`DedupStore` shared by every process on a Redis layer, through its marks.

    Keys this process handled or saw marked are answered from ``local``; the others are asked
    of the shared marks (one round trip). If the shared store cannot be reached, the answer is
    the local one: a redelivery may then be handed over twice (at least once, never lost).

    Args:
        local: this process's memory (also bounds what is kept here).
        marks: the shared marks (:func:`gateway.layers.marks.shared_marks`).
    """

    def __init__(self, local: DedupCache, marks: SharedMarks) -> None:
        self.local = local
        self.marks = marks

    async def check(self, key: str, now: float) -> bool:
        if self.local.seen(key, now):
            return True
        try:
            marked = await self.marks.marked(key)
        except ConnectionError as exc:
            logger.warning("SMS de-duplication: the shared store is unreachable (%s); answering from memory", exc)
            return False
        if marked:
            self.local.remember(key, now)
        return marked

    def remember(self, key: str, now: float) -> None:
        self.local.remember(key, now)
        self.marks.mark(key, self.local.window)


@dataclass
class ConcatSet:
    """The parts received so far of one concatenated message."""

    started: float
    total: int
    parts: dict[int, InboundMessage] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Whether every part is in."""
        return len(self.parts) == self.total


class ConcatBuffer:
    """Parts of concatenated messages by ``(provider, account, sender, reference)``.

    Args:
        window: seconds a set may wait for its missing parts before it is given up.
        max_sets: most incomplete sets kept; past it the oldest is given up.

    Raises:
        ValueError: a limit is not positive.
    """

    def __init__(self, window: float, max_sets: int = 1000) -> None:
        if window <= 0 or max_sets <= 0:
            raise ValueError("ConcatBuffer needs a positive window and max_sets")
        self.window = float(window)
        self.max_sets = int(max_sets)
        self._sets: OrderedDict[tuple[str, ...], ConcatSet] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sets)

    @staticmethod
    def key(account: str, part: InboundMessage) -> tuple[str, ...]:
        """The set a part belongs to."""
        reference = part.concat.reference if part.concat is not None else ""
        return (part.provider, account, part.from_.value, reference)

    def add(self, account: str, part: InboundMessage, now: float) -> tuple[tuple[str, ...], InboundMessage | None,
                                                                          list[ConcatSet]]:
        """Store one part.

        Returns:
            ``(key, joined, given_up)``: the set's key; the whole message when this part
            completed the set (the set stays stored until :meth:`discard`, so that a failed
            hand-over can be retried with the parts still here), else ``None``; and the sets
            given up to make room or because they waited longer than ``window``.

        Raises:
            ValueError: ``part`` is not a part of a concatenated message, or its numbering does
                not agree with the parts already in (the set is dropped).
        """
        if part.concat is None:
            raise ValueError("not a part of a concatenated message")
        given_up = self._expire(now)
        key = self.key(account, part)
        entry = self._sets.get(key)
        if entry is None:
            entry = self._sets[key] = ConcatSet(now, part.concat.total)
            while len(self._sets) > self.max_sets:
                given_up.append(self._sets.popitem(last=False)[1])
        if part.concat.total != entry.total or part.concat.part > entry.total:
            del self._sets[key]
            raise ValueError(f"part {part.concat.part}/{part.concat.total} does not fit a message of {entry.total} parts")
        entry.parts[part.concat.part] = part
        if not entry.complete:
            return key, None, given_up
        ordered = [entry.parts[index] for index in sorted(entry.parts)]
        return key, join_parts(ordered), given_up

    def discard(self, key: tuple[str, ...]) -> None:
        """Forget a set (its joined message was handed over)."""
        self._sets.pop(key, None)

    def _expire(self, now: float) -> list[ConcatSet]:
        expired = []
        while self._sets:
            key, entry = next(iter(self._sets.items()))
            if now - entry.started < self.window:
                break
            expired.append(self._sets.popitem(last=False)[1])
        return expired
