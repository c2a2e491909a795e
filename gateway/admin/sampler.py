# -*- test-case-name: tests.unit.metrics.test_sampler -*-
"""Once a second, while a status page is open: read the counters, turn them into rates.

The sampler runs only while it has subscribers (the status pages' WebSockets): the first one
starts a one-second reactor timer, the last one to leave stops it. Each sample is a small dict::

    {"t": 1700000000000, "ready": true,
     "protocols": {"http": {"open": 3, "connections": 120, "received": 950, "sent": 950,
                            "cps": 2.0, "rps": 14.0, "sps": 14.0}, ...}}

(``cps``/``rps``/``sps``: connections, messages received and messages sent per second since the
previous sample; totals since start). The last ``history`` samples are kept for a page that
connects later (its chart starts with them); gaps while no page was open stay gaps.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["Sampler"]

Subscriber = Callable[[dict[str, Any]], None]


class Sampler:
    """Samples :meth:`~gateway.metrics.hub.MetricsHub.summary` every ``interval`` seconds.

    Args:
        summary: returns ``{protocol: {"open", "connections", "received", "sent"}}``.
        reactor: for ``callLater`` and ``seconds`` (tests pass a fake clock).
        history: samples kept.
        interval: seconds between samples.
        ready: returns whether the daemon is ready (shown on the page).
        clock: wall-clock time for the timestamps shown.
    """

    def __init__(self, summary: Callable[[], dict[str, dict[str, int]]], reactor: Any, *, history: int = 300,
                 interval: float = 1.0, ready: Callable[[], bool] = lambda: True,
                 clock: Callable[[], float] = time.time) -> None:
        self.summary = summary
        self.reactor = reactor
        self.interval = interval
        self.ready = ready
        self.clock = clock
        self.history: deque[dict[str, Any]] = deque(maxlen=max(1, history))
        self.subscribers: list[Subscriber] = []
        self._timer: Any = None
        self._last: tuple[float, dict[str, dict[str, int]]] | None = None

    @property
    def running(self) -> bool:
        """Whether the timer is armed (some page is open)."""
        return self._timer is not None

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber(sample)`` once a second from now on (starts sampling)."""
        self.subscribers.append(subscriber)
        if self._timer is None:
            self._tick()

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop calling ``subscriber``; sampling stops with the last one."""
        try:
            self.subscribers.remove(subscriber)
        except ValueError:
            return
        if not self.subscribers:
            self.stop()

    def stop(self) -> None:
        """Stop sampling (the next subscriber starts it again)."""
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        self._last = None  # rates restart after a gap, not averaged over it

    def sample(self) -> dict[str, Any]:
        """Take one sample now (and keep it in the history)."""
        now = self.reactor.seconds()
        totals = self.summary()
        last = self._last
        protocols: dict[str, dict[str, Any]] = {}
        for protocol, numbers in sorted(totals.items()):
            item: dict[str, Any] = dict(numbers)
            if last is not None and now > last[0]:
                elapsed = now - last[0]
                before = last[1].get(protocol, {})
                item["cps"] = _rate(numbers["connections"], before.get("connections"), elapsed)
                item["rps"] = _rate(numbers["received"], before.get("received"), elapsed)
                item["sps"] = _rate(numbers["sent"], before.get("sent"), elapsed)
            else:
                item["cps"] = item["rps"] = item["sps"] = None
            protocols[protocol] = item
        self._last = (now, totals)
        point = {"t": int(self.clock() * 1000), "ready": bool(self.ready()), "protocols": protocols}
        self.history.append(point)
        return point

    def _tick(self) -> None:
        self._timer = self.reactor.callLater(self.interval, self._tick)
        point = self.sample()
        for subscriber in list(self.subscribers):
            subscriber(point)


def _rate(now: int, before: int | None, elapsed: float) -> float | None:
    if before is None:
        return None
    return round(max(0, now - before) / elapsed, 2)
