"""What the adapter harnesses share: a real asyncio loop, a fake Twisted clock, and the log."""

from __future__ import annotations

import asyncio
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher


class LoopHarness:
    """A loop driven a few passes at a time (``run``), a clock moved by hand (``advance``), and the
    log events of the test (``errors()`` for the error-level ones). Call ``close()`` at the end."""

    #: Loop passes per ``run()`` unless the caller says otherwise.
    rounds = 20

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = MemoryReactorClock()
        self.log: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.log.append)

    def run(self, rounds: int | None = None) -> None:
        for _ in range(self.rounds if rounds is None else rounds):
            self.loop.run_until_complete(asyncio.sleep(0))

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.run()

    def errors(self) -> list[str]:
        return [formatEvent(e) for e in self.log if e.get("log_level") in (LogLevel.error, LogLevel.critical)]

    def close(self) -> None:
        globalLogPublisher.removeObserver(self.log.append)
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.run(3)
        self.loop.close()
