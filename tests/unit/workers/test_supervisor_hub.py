"""The supervisor's metrics: the workers' reports added up, counters of exited workers kept."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from gateway.layers import LayerRegistry
from gateway.metrics.stats import Histogram
from gateway.workers.link import encode_samples
from gateway.workers.supervisor import SupervisorHub


class FakeWorker:
    def __init__(self, slot: int, samples: list[Any], summary: dict[str, dict[str, int]]) -> None:
        self.slot = slot
        self.pid = 1000 + slot
        self.state = "serving"
        self.started_at = 0.0
        self.report = {"ready": True, "samples": encode_samples(samples), "summary": summary, "connectors": {}}

    def open_connections(self) -> int:
        return sum(int(value) for key, _, value in self.report.get("samples", ()) if key == "connections_open")


def histogram(*seconds: float) -> Histogram:
    value = Histogram()
    for item in seconds:
        value.observe(item)
    return value


def service(*workers: FakeWorker) -> Any:
    return SimpleNamespace(
        processes=set(workers), slots=list(workers), restarts=[0] * len(workers), count=len(workers),
        listeners=[], retiring=set(), layers=LayerRegistry({}), ready=True, stopping=False,
        reactor=SimpleNamespace(seconds=lambda: 10.0), all_ready=lambda: True,
    )


WEB = (("listener", "web"), ("protocol", "http"))


def samples_of(hub: SupervisorHub) -> dict[tuple[str, tuple[tuple[str, str], ...]], Any]:
    return {(key, labels): value for key, labels, value in hub.samples()}


def test_counters_and_gauges_are_summed_and_listener_up_is_the_lowest() -> None:
    one = FakeWorker(0, [("connections_total", WEB, 5), ("connections_open", WEB, 2), ("listener_up", WEB, 1),
                         ("request_latency", (("listener", "web"),), histogram(0.001, 0.2))],
                     {"http": {"open": 2, "connections": 5, "received": 7, "sent": 7}})
    two = FakeWorker(1, [("connections_total", WEB, 3), ("connections_open", WEB, 1), ("listener_up", WEB, 0),
                         ("request_latency", (("listener", "web"),), histogram(0.001))],
                     {"http": {"open": 1, "connections": 3, "received": 4, "sent": 4}})
    hub = SupervisorHub(service(one, two))
    found = samples_of(hub)
    assert found[("connections_total", WEB)] == 8
    assert found[("connections_open", WEB)] == 3
    assert found[("listener_up", WEB)] == 0
    assert found[("request_latency", (("listener", "web"),))].count == 3
    assert found[("workers", ())] == 2
    assert found[("worker_connections_open", (("worker", "0"),))] == 2
    assert found[("worker_up", (("worker", "1"),))] == 1
    assert hub.summary()["http"] == {"open": 3, "connections": 8, "received": 11, "sent": 11}
    assert [row["worker"] for row in hub.workers()] == [0, 1]


def test_an_exited_worker_leaves_its_counters_not_its_gauges() -> None:
    one = FakeWorker(0, [("connections_total", WEB, 5), ("connections_open", WEB, 2)],
                     {"http": {"open": 2, "connections": 5, "received": 7, "sent": 7}})
    two = FakeWorker(1, [("connections_total", WEB, 3), ("connections_open", WEB, 1)],
                     {"http": {"open": 1, "connections": 3, "received": 4, "sent": 4}})
    supervisor = service(one, two)
    hub = SupervisorHub(supervisor)
    hub.retire(two)
    supervisor.processes.discard(two)
    found = samples_of(hub)
    assert found[("connections_total", WEB)] == 8  # the total does not go back
    assert found[("connections_open", WEB)] == 2
    assert hub.summary()["http"] == {"open": 2, "connections": 8, "received": 11, "sent": 11}
