"""The private part of asyncio that ``gateway._compat.asyncio_loop`` relies on is still there and
means what it meant: this fails first when a Python upgrade changes it."""

from __future__ import annotations

import asyncio

from gateway._compat.asyncio_loop import loop_is_idle


def test_loop_is_idle_sees_the_callbacks_due_in_this_pass() -> None:
    loop = asyncio.new_event_loop()
    try:
        seen: list[bool] = []

        def first() -> None:
            seen.append(loop_is_idle(loop))  # second() is due in this pass too
            loop.call_soon(third)

        def second() -> None:
            seen.append(loop_is_idle(loop))  # third() was scheduled: due next pass

        def third() -> None:
            seen.append(loop_is_idle(loop))  # nothing else due
            loop.stop()

        loop.call_soon(first)
        loop.call_soon(second)
        loop.run_forever()
        assert seen == [False, False, True]
        assert isinstance(loop._ready, __import__("collections").deque)  # type: ignore[attr-defined]
    finally:
        loop.close()


def test_an_unknown_loop_is_never_idle() -> None:
    class Other:
        pass

    assert loop_is_idle(Other()) is False  # type: ignore[arg-type]
