"""``gateway._compat.asyncio_reactor``: the Twisted internals it relies on, then the reactor
``gateway run`` installs at work.

The first tests check each assumption on a reactor object that is never installed (Twisted's
class and ours); if a Twisted release renames or changes one, the test naming it fails. The last
ones install the reactor and run it, each in a fresh interpreter (a process installs one reactor).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.internet.base import DelayedCall
from twisted.python.failure import Failure

from gateway._compat.asyncio_reactor import GatewayReactor, reactor_loop


@pytest.fixture(params=[AsyncioSelectorReactor, GatewayReactor], ids=["twisted", "gateway"])
def reactor(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A reactor on a fresh loop, not installed (so not run); its waker is closed afterwards."""
    loop = asyncio.new_event_loop()
    instance = request.param(loop)
    try:
        yield instance
    finally:
        for selectable in list(instance.getReaders()) + list(instance.getWriters()):
            instance.removeReader(selectable)
            instance.removeWriter(selectable)
        instance.waker.connectionLost(None)
        loop.close()


class Pipe:
    """A selectable over one end of a pipe that records what the reactor did with it."""

    def __init__(self, fd: int, fail: bool = False) -> None:
        self.fd = fd
        self.fail = fail
        self.events: list[Any] = []

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "pipe"

    def doRead(self) -> None:
        self.events.append(("read", os.read(self.fd, 100)))
        if self.fail:
            raise ValueError("broken reader")

    def doWrite(self) -> None:
        self.events.append(("write",))

    def connectionLost(self, reason: Failure) -> None:
        self.events.append(("lost", reason.type))


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    os.close(r)
    os.close(w)


def test_the_loop_is_kept_in_asyncio_eventloop(reactor: Any) -> None:
    loop = reactor._asyncioEventloop
    assert isinstance(loop, asyncio.AbstractEventLoop)
    assert reactor_loop(reactor) is loop


def test_registration_bookkeeping_is_where_add_reader_and_add_writer_keep_it(reactor: Any) -> None:
    # GatewayReactor.addReader/addWriter fill these, and Twisted's removeReader/removeWriter,
    # getReaders/getWriters and removeAll read them.
    assert isinstance(reactor._readers, dict) and isinstance(reactor._writers, dict)
    polling = reactor._continuousPolling
    assert isinstance(polling._readers, set) and isinstance(polling._writers, set)
    assert callable(polling.addReader) and callable(polling.addWriter)
    assert reactor.waker in reactor._readers  # Twisted's own registration went through them


def test_registered_pipes_reach_the_loop_and_leave_it(reactor: Any, pipe: tuple[int, int]) -> None:
    r, w = pipe
    reader, writer = Pipe(r), Pipe(w)
    loop = reactor._asyncioEventloop
    reactor.addReader(reader)
    reactor.addWriter(writer)
    assert reactor._readers[reader] == r and reactor._writers[writer] == w
    assert reader in reactor.getReaders() and writer in reactor.getWriters()
    reactor.removeReader(reader)
    reactor.removeWriter(writer)
    assert reader not in reactor._readers and writer not in reactor._writers
    # Twisted's removal unregistered the fds from the loop: nothing is left to remove.
    assert loop.remove_reader(r) is False and loop.remove_writer(w) is False


def test_read_or_write_runs_the_event_and_disconnects_a_failing_selectable(reactor: Any, pipe: tuple[int, int]) -> None:
    r, w = pipe
    good, bad = Pipe(r), Pipe(r, fail=True)
    os.write(w, b"ab")
    reactor.addReader(good)
    reactor._readOrWrite(good, True)
    assert good.events == [("read", b"ab")]
    assert good in reactor.getReaders()
    reactor.removeReader(good)
    os.write(w, b"c")
    reactor.addReader(bad)
    reactor._readOrWrite(bad, True)
    assert bad.events == [("read", b"c"), ("lost", ValueError)]
    assert bad not in reactor.getReaders()
    writer = Pipe(w)
    reactor._readOrWrite(writer, False)
    assert writer.events == [("write",)]


def test_unregister_fd_in_asyncio_forgets_the_fd(reactor: Any, pipe: tuple[int, int]) -> None:
    r, _ = pipe
    loop = reactor._asyncioEventloop
    loop.add_reader(r, lambda: None)
    reactor._unregisterFDInAsyncio(r)
    assert loop.remove_reader(r) is False


def test_cancelling_a_timed_call_goes_through_cancel_call_later(reactor: Any) -> None:
    seen: list[DelayedCall] = []
    original = reactor._cancelCallLater

    def spy(call: DelayedCall) -> None:
        seen.append(call)
        original(call)

    reactor._cancelCallLater = spy
    call = reactor.callLater(60, lambda: None)
    assert call in reactor._pendingTimedCalls or call in reactor._newTimedCalls
    before = reactor._cancellations
    call.cancel()
    assert seen == [call] and call.cancelled
    assert reactor._cancellations == before + 1


def test_timer_lists_are_a_heap_and_a_list_of_delayed_calls(reactor: Any) -> None:
    calls = [reactor.callLater(delay, lambda: None) for delay in (30, 10, 20)]
    pending = reactor._pendingTimedCalls
    assert isinstance(pending, list) and isinstance(reactor._newTimedCalls, list)
    held = pending + reactor._newTimedCalls
    assert all(isinstance(call, DelayedCall) for call in held) and set(map(id, calls)) <= set(map(id, held))
    assert pending[0] is min(pending, key=lambda call: call.time)  # heapq order on DelayedCall
    for call in calls:
        call.cancel()


def test_the_gateway_reactor_sweeps_cancelled_calls_in_place() -> None:
    loop = asyncio.new_event_loop()
    reactor = GatewayReactor(loop)
    try:
        keep = [reactor.callLater(30 + i, lambda: None) for i in range(10)]
        for _ in range(1000):
            reactor.callLater(60, lambda: None).cancel()
        held = reactor._pendingTimedCalls + reactor._newTimedCalls
        assert len(held) < 10 + 130
        assert all(call in held for call in keep)
        pending = reactor._pendingTimedCalls
        assert pending[0] is min(pending, key=lambda call: call.time)
    finally:
        reactor.waker.connectionLost(None)
        loop.close()


def run_isolated(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_readers_and_writers_get_their_events_and_failures_disconnect_them() -> None:
    out = run_isolated(
        """
        import os
        from gateway.reactor import install_reactor, is_asyncio_reactor
        from twisted.logger import globalLogPublisher

        reactor = install_reactor("asyncio")
        assert is_asyncio_reactor(reactor)
        errors = []
        globalLogPublisher.addObserver(lambda e: errors.append(e) if e.get("log_failure") else None)
        events = []

        class Pipe:
            def __init__(self, fd, fail):
                self.fd, self.fail = fd, fail
            def fileno(self):
                return self.fd
            def logPrefix(self):
                return "pipe"
            def doRead(self):
                events.append(("read", os.read(self.fd, 100)))
                if self.fail:
                    raise ValueError("broken reader")
            def doWrite(self):
                events.append(("write",))
                reactor.removeWriter(self)
            def connectionLost(self, reason):
                events.append(("lost", reason.type.__name__))

        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        good, bad = Pipe(r1, False), Pipe(r2, True)
        reactor.addReader(good)
        reactor.addReader(good)  # twice: still one registration
        reactor.addReader(bad)
        reactor.addWriter(Pipe(w1, False))
        os.write(w1, b"a")
        os.write(w2, b"b")
        def check():
            print(sorted(map(repr, events)))
            readers = reactor.getReaders()
            print(good in readers and bad not in readers, len(errors))
            reactor.stop()

        reactor.callLater(0.3, check)
        reactor.run()
        """
    )
    lines = out.strip().splitlines()
    assert lines[0] == repr(sorted(map(repr, [("read", b"a"), ("read", b"b"), ("write",), ("lost", "ValueError")])))
    # The failing reader was disconnected (and logged); the good one is still watched.
    assert lines[1] == "True 1"


def test_cancelled_timed_calls_do_not_pile_up_until_a_timer_is_due() -> None:
    out = run_isolated(
        """
        from gateway.reactor import install_reactor

        reactor = install_reactor("asyncio")
        fired = []
        keep = [reactor.callLater(0.05 + i / 1000, fired.append, i) for i in range(10)]
        # Per-connection timeouts far in the future, cancelled when their connections close.
        for _ in range(10000):
            reactor.callLater(60, fired.append, "never").cancel()
        held = len(reactor._pendingTimedCalls) + len(reactor._newTimedCalls)
        keep[3].cancel()
        reactor.callLater(0.3, reactor.stop)
        reactor.run()
        print(held)
        print(fired)
        """
    )
    held, fired = out.strip().splitlines()
    # Twisted alone keeps all 10,000 cancelled calls until the first timer is due.
    assert int(held) <= 2 * 10 + 130
    assert fired == repr([0, 1, 2, 4, 5, 6, 7, 8, 9])
