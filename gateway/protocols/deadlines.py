# -*- test-case-name: tests.unit.email.test_deadlines -*-
"""Many deadlines of one length on the reactor's clock, for the price of one timer.

Every message a listener hands over gets the same time to be answered (SMTP's and IMAP's
``timeouts.consumer``, an SMS account's consumer timeout), so the deadlines fall due in the order
they were set. :class:`Deadlines` keeps them in a queue and arms one reactor timer for the first
one still pending: setting a deadline is a list append, clearing one a field store, and the reactor
only hears of a timer once per period instead of once per message (its ``callLater`` and
``cancel`` cost several times the rest of a deadline's life). Cleared deadlines drop their
callback at once (so what it refers to is freed) and are swept from the queue as they come due, or
all at once when they outnumber the pending ones.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Deadline", "Deadlines", "Timer", "TimerClock"]


class Timer(Protocol):
    """A timer of the reactor's (what ``callLater`` returns, ``IDelayedCall``), as adapters use it."""

    def active(self) -> bool: ...

    def cancel(self) -> None: ...


class TimerClock(Protocol):
    """The part of the reactor :class:`Deadlines` needs (``MemoryReactorClock`` in tests)."""

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any) -> Any: ...

    def seconds(self) -> float: ...


class _Firing:
    """The timer while due deadlines are being called: :meth:`Deadlines.add` arms none meanwhile."""

    def active(self) -> bool:
        return False

    def cancel(self) -> None:
        pass


_FIRING = _Firing()


class Deadline:
    """One deadline: ``callback`` is called when it is due, unless :meth:`clear` ed first."""

    __slots__ = ("callback", "due", "owner")

    def __init__(self, owner: Deadlines, due: float, callback: Callable[[], None]) -> None:
        self.owner = owner
        self.due = due
        self.callback: Callable[[], None] | None = callback

    @property
    def pending(self) -> bool:
        """Whether the deadline is still set (neither due nor cleared)."""
        return self.callback is not None

    def clear(self) -> None:
        """Forget the deadline (nothing is called)."""
        if self.callback is not None:
            self.callback = None
            self.owner.cleared()


class Deadlines:
    """Deadlines ``seconds`` after they are set, in the order set (see the module documentation).

    Args:
        clock: the reactor.
        seconds: how long after :meth:`add` each deadline is due.
    """

    __slots__ = ("clock", "queue", "seconds", "stale", "_timer")

    def __init__(self, clock: TimerClock, seconds: float) -> None:
        self.clock = clock
        self.seconds = seconds
        self.queue: deque[Deadline] = deque()
        #: Cleared deadlines still in the queue.
        self.stale = 0
        self._timer: Timer | None = None

    def add(self, callback: Callable[[], None]) -> Deadline:
        """Call ``callback`` ``seconds`` from now (unless the returned deadline is cleared)."""
        deadline = Deadline(self, self.clock.seconds() + self.seconds, callback)
        self.queue.append(deadline)
        if self._timer is None:
            self._timer = self.clock.callLater(self.seconds, self._fire)
        return deadline

    def cleared(self) -> None:
        """A deadline was cleared: sweep the queue once most of it is stale (amortised O(1))."""
        stale = self.stale = self.stale + 1
        if stale > 64 and stale > len(self.queue) >> 1 and self._timer is not _FIRING:
            self.queue = deque(deadline for deadline in self.queue if deadline.callback is not None)
            self.stale = 0

    def __len__(self) -> int:
        """Deadlines still pending."""
        return len(self.queue) - self.stale

    def _fire(self) -> None:
        self._timer = _FIRING
        queue = self.queue
        now = self.clock.seconds()
        try:
            while queue:
                head = queue[0]
                callback = head.callback
                if callback is None:
                    queue.popleft()
                    self.stale -= 1
                elif head.due <= now:
                    queue.popleft()
                    head.callback = None
                    callback()
                else:
                    break
        finally:
            self._timer = None
            if queue:
                self._timer = self.clock.callLater(max(0.0, queue[0].due - now), self._fire)

    def stop(self) -> None:
        """Forget every deadline and the timer (the listener stopped)."""
        for deadline in self.queue:
            deadline.callback = None
        self.queue.clear()
        self.stale = 0
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
