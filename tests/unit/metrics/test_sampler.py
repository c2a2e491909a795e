"""The status page's sampler: from start, whether or not a page is open; a bounded ring buffer;
rates between samples; one sampler per daemon, kept across admin listeners."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.task import Clock

from gateway.admin.sampler import Sampler, sampler_for


class Totals:
    def __init__(self) -> None:
        self.http = {"open": 1, "connections": 10, "received": 100, "sent": 100}
        self.calls = 0

    def __call__(self) -> dict[str, dict[str, int]]:
        self.calls += 1
        return {"http": dict(self.http)}


def test_samples_from_start_without_any_page_and_computes_rates() -> None:
    clock, totals = Clock(), Totals()
    sampler = Sampler(totals, clock, history=3, clock=lambda: 1000.0)
    assert not sampler.running and totals.calls == 0
    sampler.start()
    assert sampler.running and totals.calls == 1
    first = sampler.samples()[0]
    assert first == {"t": 1000000, "ready": True, "protocols": {"http": {
        "open": 1, "connections": 10, "received": 100, "sent": 100, "cps": None, "rps": None, "sps": None}}}
    totals.http.update(connections=14, received=130, sent=120)
    clock.advance(1.0)
    http = sampler.samples()[-1]["protocols"]["http"]
    assert (http["cps"], http["rps"], http["sps"], http["open"]) == (4.0, 30.0, 20.0, 1)
    clock.advance(1.0)
    clock.advance(1.0)
    assert totals.calls == 4 and len(sampler.history) == 3  # the ring buffer is bounded
    sampler.release()
    assert not sampler.running and clock.getDelayedCalls() == []
    clock.advance(10.0)
    assert totals.calls == 4


def test_a_page_gets_the_history_then_each_sample() -> None:
    clock, totals = Clock(), Totals()
    sampler = Sampler(totals, clock, history=60)
    sampler.start()
    clock.pump([1.0] * 5)
    history = json.loads(sampler.history_json())
    assert len(history) == 6 and history[-1]["protocols"]["http"]["rps"] == 0.0  # rates from the 2nd sample on
    seen: list[dict[str, Any]] = []
    sampler.subscribe(lambda text: seen.append(json.loads(text)))
    clock.advance(1.0)
    assert len(seen) == 1 and seen[0] == sampler.samples()[-1]
    sampler.subscribers.clear()
    sampler.stop()


def test_users_share_one_timer_and_a_gap_restarts_the_rates() -> None:
    clock, totals = Clock(), Totals()
    sampler = Sampler(totals, clock)
    sampler.start()
    sampler.start()  # a second admin listener
    assert len(clock.getDelayedCalls()) == 1
    sampler.release()
    assert sampler.running
    sampler.release()
    assert not sampler.running
    clock.advance(60.0)
    totals.http["received"] = 10_000
    sampler.start()
    assert sampler.samples()[-1]["protocols"]["http"]["rps"] is None  # not averaged over the minute stopped
    assert len(sampler.history) == 2  # the older sample stays for the chart
    sampler.release()


def test_counters_that_went_down_give_no_negative_rate() -> None:
    clock, totals = Clock(), Totals()
    sampler = Sampler(totals, clock)
    sampler.start()
    totals.http["received"] = 50  # a removed listener's numbers left the sum
    clock.advance(1.0)
    assert sampler.samples()[-1]["protocols"]["http"]["rps"] == 0
    sampler.stop()


class Hub:
    def __init__(self) -> None:
        self.summary = Totals()


def test_one_sampler_per_hub_resized_by_a_later_listener() -> None:
    clock, hub = Clock(), Hub()
    first = sampler_for(hub, clock, history=10, ready=lambda: True)
    first.start()
    clock.pump([1.0] * 20)
    assert len(first.history) == 10
    again = sampler_for(hub, clock, history=5, ready=lambda: False)
    assert again is first and len(again.history) == 5 and again.keep == 5
    assert sampler_for(Hub(), clock, history=5, ready=lambda: True) is not first
    clock.advance(1.0)
    assert again.samples()[-1]["ready"] is False
    first.release()
