"""The AcceptGate and HandshakeGuard of gateway.listener on a fake port and a fake clock (the
integration tests in tests/integration/test_listener_limits.py drive them with real sockets)."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher

from gateway.listener import EMFILE_PAUSE, LIMIT_LOG_INTERVAL, AcceptGate, HandshakeGuard, TrackingFactory


class FakePort:
    """What the gate uses of a Twisted listening port."""

    def __init__(self) -> None:
        self.reading = False
        self.numberAccepts = 100
        self.batches: list[int] = []
        self.accept: Any = None

    def startReading(self) -> None:
        self.reading = True

    def stopReading(self) -> None:
        self.reading = False

    def doRead(self) -> None:
        """Twisted's batch: up to numberAccepts connections, then it grows the next batch."""
        batch = self.numberAccepts
        self.batches.append(batch)
        for _ in range(batch):
            self.accept()
        self.numberAccepts = batch + 20


@pytest.fixture
def events() -> Any:
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


def lines(events: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    from twisted.logger import formatEvent

    return [event for event in events if text in formatEvent(event)]


def test_batches_never_take_more_than_the_room(events: list[dict[str, Any]]) -> None:
    reactor = MemoryReactorClock()
    port, factory = FakePort(), TrackingFactory(max_connections=250)
    gate = AcceptGate("web", port, factory, reactor)
    port.accept = lambda: factory.connection_opened(object())
    assert not port.reading
    gate.start()
    assert port.reading
    while port.reading:
        port.doRead()
    assert len(factory.connections) == 250
    assert port.batches == [100, 120, 30]  # the third batch was cut to the room left
    assert len(lines(events, "web: max_connections=250 reached")) == 1
    # One connection closes: the port reads again, for exactly one.
    factory.connection_closed(next(iter(factory.connections)))
    assert port.reading and port.numberAccepts == 1
    port.doRead()
    assert len(factory.connections) == 250 and not port.reading
    # Limit lines are rate-limited; the next one counts the ones in between.
    assert len(lines(events, "max_connections=250 reached")) == 1
    reactor.advance(LIMIT_LOG_INTERVAL)
    factory.connection_closed(next(iter(factory.connections)))
    port.doRead()
    assert lines(events, "max_connections=250 reached")[-1]["log_format"].endswith("(1 more time(s) in the last 10s)")


def test_stop_detaches_the_gate() -> None:
    port, factory = FakePort(), TrackingFactory(max_connections=2)
    gate = AcceptGate("web", port, factory, MemoryReactorClock())
    gate.start()
    gate.stop()
    assert not port.reading and factory.gate is None
    factory.connection_opened(object())  # no error without a gate
    gate.update()
    assert not port.reading


def test_out_of_descriptors_is_an_error_and_pauses_accepting(events: list[dict[str, Any]]) -> None:
    reactor = MemoryReactorClock()
    port, factory = FakePort(), TrackingFactory(max_connections=None)
    gate = AcceptGate("web", port, factory, reactor)
    gate.start()
    # What Twisted's accept loop logs when accept() fails with EMFILE.
    gate._accept_event({"log_format": "EMFILE encountered; releasing reserved file descriptor."})
    for _ in range(3):
        gate._accept_event({"log_format": "EMFILE recovery: Closed socket from {address}", "address": None})
    gate._accept_event({"log_format": "Re-reserving EMFILE recovery file descriptor."})
    (error,) = lines(events, "out of file descriptors")
    assert error["log_level"] == LogLevel.error
    assert "3 new connection(s) were closed at once" in error["what"]
    assert not port.reading
    reactor.advance(EMFILE_PAUSE)
    assert port.reading
    gate._accept_event({"log_format": "Could not accept new connection ({acceptError})", "acceptError": "ECONNABORTED"})
    gate._accept_event({"log_format": "Could not accept new connection ({acceptError})", "acceptError": "ENFILE"})
    (enfile,) = lines(events, "cannot accept a connection: ENFILE")
    assert enfile["log_level"] == LogLevel.error


def test_handshakes_count_against_the_room_and_time_out() -> None:
    reactor = MemoryReactorClock()
    port, factory = FakePort(), TrackingFactory(max_connections=100)
    guard = HandshakeGuard("tls", limit=2, timeout=10.0, reactor=reactor)
    gate = AcceptGate("tls", port, factory, reactor, guard)
    guard.on_change = gate.update
    gate.start()

    class Transport:
        aborted = False

        def abortConnection(self) -> None:
            self.aborted = True

    class Protocol:
        def __init__(self) -> None:
            self.transport = Transport()

    first, second = Protocol(), Protocol()
    guard.started(first)
    assert port.reading and port.numberAccepts == 1
    guard.started(second)
    assert not port.reading
    guard.finished(first)
    assert port.reading
    reactor.advance(10.0)
    assert second.transport.aborted and not first.transport.aborted
    assert guard.timeouts == 1 and guard.room() == 2
    guard.finished(second)  # its connection closes afterwards: nothing more to do
    assert guard.room() == 2
