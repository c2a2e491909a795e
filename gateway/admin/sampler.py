# -*- test-case-name: tests.unit.metrics.test_sampler -*-
"""The status page's recent history: the counters read once a second from start, turned into rates.

A :class:`Sampler` runs from the moment an admin listener starts, whether or not a status page is
open, and keeps the last ``history`` samples in a ring buffer, so that a page opened later shows
the recent past at once. Each sample is a small dict::

    {"t": 1700000000000, "ready": true,
     "protocols": {"http": {"open": 3, "connections": 120, "received": 950, "sent": 950,
                            "cps": 2.0, "rps": 14.0, "sps": 14.0}, ...}}

(``cps``/``rps``/``sps``: connections, messages received and messages sent per second since the
previous sample; totals since start), plus, when there are MQTT connectors, one entry each
(``"connectors": {"sensors": {"up": 1, "received": 950, "sent": 3, "reconnects": 0, "queued": 0,
"dropped": 0}}``), kept as its compact JSON text (about 700 bytes with six
protocols): the buffer is bounded by ``history`` times that, and a page's first message is the
texts joined, not serialised again.

One sampler serves every admin listener of a daemon and outlives a reload that replaces them
(:func:`sampler_for`).
"""

from __future__ import annotations

import json
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["Sampler", "sampler_for"]

#: What a subscriber gets: one sample, as its JSON text.
Subscriber = Callable[[str], None]
Summary = Callable[[], dict[str, dict[str, int]]]
#: Per-connector numbers (``MetricsHub.connectors``).
Details = Callable[[], dict[str, dict[str, int]]]


class Sampler:
    """Samples :meth:`~gateway.metrics.hub.MetricsHub.summary` every ``interval`` seconds while
    started.

    Args:
        summary: returns ``{protocol: {"open", "connections", "received", "sent"}}``.
        reactor: for ``callLater`` and ``seconds`` (tests pass a fake clock).
        history: samples kept (the ring buffer's size).
        interval: seconds between samples.
        ready: returns whether the daemon is ready (shown on the page).
        clock: wall-clock time for the timestamps shown.
        connectors: returns ``{name: {"up", "received", "sent", "reconnects", "queued",
            "dropped"}}`` for the MQTT connectors (none: no such entry).
        workers: returns one row per worker process (``worker``, ``pid``, ``state``, ``open``,
            ``connections``, ``messages``, ``restarts``, ``uptime``) when the daemon runs several.
    """

    def __init__(self, summary: Summary, reactor: Any, *, history: int = 300,
                 interval: float = 1.0, ready: Callable[[], bool] = lambda: True,
                 clock: Callable[[], float] = time.time, connectors: Details | None = None,
                 workers: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        self.summary = summary
        self.connectors = connectors
        self.workers = workers
        self.reactor = reactor
        self.interval = interval
        self.ready = ready
        self.clock = clock
        #: The last samples, oldest first, as JSON texts.
        self.history: deque[str] = deque(maxlen=max(1, history))
        self.subscribers: list[Subscriber] = []
        self._timer: Any = None
        self._users = 0
        self._last: tuple[float, dict[str, dict[str, int]]] | None = None

    @property
    def running(self) -> bool:
        """Whether the timer is armed."""
        return self._timer is not None

    @property
    def keep(self) -> int:
        """Samples kept."""
        return self.history.maxlen or 1

    def resize(self, history: int) -> None:
        """Keep ``history`` samples from now on (the newest ones stay)."""
        if history != self.keep:
            self.history = deque(self.history, maxlen=max(1, history))

    def start(self) -> None:
        """Start sampling (one more user: an admin listener); takes a first sample now."""
        self._users += 1
        if self._timer is None:
            self._tick()

    def release(self) -> None:
        """One user less; sampling stops with the last one."""
        self._users = max(0, self._users - 1)
        if not self._users:
            self.stop()

    def stop(self) -> None:
        """Stop sampling now (the history is kept; the next start continues it)."""
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        self._last = None  # rates restart after a gap, not averaged over it

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber(sample_json)`` with every sample from now on."""
        self.subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop calling ``subscriber``."""
        try:
            self.subscribers.remove(subscriber)
        except ValueError:
            pass

    def history_json(self) -> str:
        """The kept samples as one JSON array, oldest first."""
        return "[" + ",".join(self.history) + "]"

    def samples(self) -> list[dict[str, Any]]:
        """The kept samples, decoded (for tests and tools; the page gets :meth:`history_json`)."""
        return [json.loads(text) for text in self.history]

    def sample(self) -> dict[str, Any]:
        """Take one sample now, keep it in the history and return it."""
        return json.loads(self._take())

    def _take(self) -> str:
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
        point: dict[str, Any] = {"t": int(self.clock() * 1000), "ready": bool(self.ready()), "protocols": protocols}
        connectors = self.connectors() if self.connectors is not None else None
        if connectors:
            point["connectors"] = connectors
        if self.workers is not None:
            point["workers"] = self.workers()
        text = json.dumps(point, separators=(",", ":"))
        self.history.append(text)
        return text

    def _tick(self) -> None:
        self._timer = self.reactor.callLater(self.interval, self._tick)
        text = self._take()
        for subscriber in list(self.subscribers):
            subscriber(text)


def _rate(now: int, before: int | None, elapsed: float) -> float | None:
    if before is None:
        return None
    return round(max(0, now - before) / elapsed, 2)


#: The sampler of each daemon's metrics hub (one per daemon, shared by its admin listeners).
_samplers: weakref.WeakKeyDictionary[Any, Sampler] = weakref.WeakKeyDictionary()


def sampler_for(hub: Any, reactor: Any, *, history: int, ready: Callable[[], bool]) -> Sampler:
    """The sampler of ``hub`` (a :class:`~gateway.metrics.hub.MetricsHub`), made on first use;
    a later admin listener (say, after a reload) gets the same one, its history kept and
    resized to ``history`` samples."""
    sampler = _samplers.get(hub)
    if sampler is None or sampler.reactor is not reactor:
        sampler = _samplers[hub] = Sampler(hub.summary, reactor, history=history, ready=ready,
                                           connectors=getattr(hub, "connectors", None), workers=getattr(hub, "workers", None))
    else:
        sampler.resize(history)
        sampler.ready = ready
    return sampler
