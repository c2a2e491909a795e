"""The status page's sampler: only while a page is open, rates between samples."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from gateway.admin.sampler import Sampler


class Totals:
    def __init__(self) -> None:
        self.http = {"open": 1, "connections": 10, "received": 100, "sent": 100}
        self.calls = 0

    def __call__(self) -> dict[str, dict[str, int]]:
        self.calls += 1
        return {"http": dict(self.http)}


def test_samples_only_while_subscribed_and_computes_rates() -> None:
    clock, totals = Clock(), Totals()
    sampler = Sampler(totals, clock, history=3, clock=lambda: 1000.0)
    assert not sampler.running and totals.calls == 0
    seen: list[dict[str, Any]] = []
    sampler.subscribe(seen.append)
    assert sampler.running and len(seen) == 1
    assert seen[0]["protocols"]["http"]["rps"] is None  # no previous sample yet
    totals.http.update(connections=14, received=130, sent=120)
    clock.advance(1.0)
    http = seen[1]["protocols"]["http"]
    assert (http["cps"], http["rps"], http["sps"], http["open"]) == (4.0, 30.0, 20.0, 1)
    clock.advance(1.0)
    clock.advance(1.0)
    assert len(seen) == 4 and len(sampler.history) == 3  # the history is bounded
    sampler.unsubscribe(seen.append)
    assert not sampler.running
    calls = totals.calls
    clock.advance(10.0)
    assert totals.calls == calls  # nothing is read while no page is open
    assert clock.getDelayedCalls() == []


def test_a_gap_restarts_the_rates() -> None:
    clock, totals = Clock(), Totals()
    sampler = Sampler(totals, clock)
    first: list[dict[str, Any]] = []
    sampler.subscribe(first.append)
    sampler.unsubscribe(first.append)
    clock.advance(60.0)
    totals.http["received"] = 10_000
    again: list[dict[str, Any]] = []
    sampler.subscribe(again.append)
    assert again[0]["protocols"]["http"]["rps"] is None  # not averaged over the minute without a page
    assert len(sampler.history) == 2  # the older sample stays for the chart


def test_counters_that_went_down_give_no_negative_rate() -> None:
    clock, totals = Clock(), Totals()
    sampler = Sampler(totals, clock)
    seen: list[dict[str, Any]] = []
    sampler.subscribe(seen.append)
    totals.http["received"] = 50  # a removed listener's numbers left the sum
    clock.advance(1.0)
    assert seen[-1]["protocols"]["http"]["rps"] == 0
    sampler.stop()
