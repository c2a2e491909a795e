"""The reactor ``gateway run`` installs: Twisted's asyncio reactor without the legacy log context
per socket event. Each test runs in a fresh interpreter (a process can install one reactor)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


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
