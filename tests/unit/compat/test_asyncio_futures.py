"""The asyncio internal behind ``run_eager``: a future a coroutine yielded is marked blocking."""

from __future__ import annotations

import asyncio

from gateway._compat.asyncio_futures import release_blocking


def test_a_yielded_future_is_marked_blocking_and_can_be_released() -> None:
    loop = asyncio.new_event_loop()
    try:
        future = loop.create_future()

        async def waits() -> None:
            await future

        coro = waits()
        yielded = coro.send(None)
        assert yielded is future and future._asyncio_future_blocking is True
        release_blocking(future)
        assert future._asyncio_future_blocking is False
        coro.close()
    finally:
        loop.close()
