"""The sync thread model: parallel across consumers, ordered within one, bounded pool."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gateway.consumers import SerialExecutor, WebsocketConsumer, configure_sync_threads, sync_threads
from gateway.testing import WebsocketCommunicator


def test_four_sync_consumers_blocking_at_once_run_in_parallel(sync_pool: None) -> None:
    configure_sync_threads(8)
    meeting = threading.Barrier(4)
    threads: list[int] = []

    class Blocker(WebsocketConsumer):
        def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
            threads.append(threading.get_ident())
            # Returns only once all four handlers block here at the same time (in series, the
            # first would wait alone until the barrier breaks: BrokenBarrierError, no "done").
            meeting.wait(timeout=10)
            self.send(text_data="done")

    async def main() -> None:
        comms = [WebsocketCommunicator(Blocker.as_asgi(), "/") for _ in range(4)]
        for comm in comms:
            assert (await comm.connect())[0]
        for comm in comms:
            await comm.send_to(text_data="block")
        for comm in comms:
            assert await comm.receive_from(timeout=15) == "done"
        for comm in comms:
            await comm.disconnect()

    asyncio.run(main())
    assert len(set(threads)) == 4  # four different threads


def test_one_consumers_handlers_stay_ordered_and_never_overlap(sync_pool: None) -> None:
    configure_sync_threads(4)
    events: list[tuple[str, int]] = []
    lock = threading.Lock()

    class Ordered(WebsocketConsumer):
        def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
            with lock:
                events.append(("start", int(text_data or 0)))
            time.sleep(random.uniform(0, 0.003))
            with lock:
                events.append(("end", int(text_data or 0)))
            self.send(text_data=text_data)

    async def main() -> None:
        comm = WebsocketCommunicator(Ordered.as_asgi(), "/")
        await comm.connect()
        for n in range(30):
            await comm.send_to(text_data=str(n))
        assert [await comm.receive_from() for _ in range(30)] == [str(n) for n in range(30)]
        await comm.disconnect()

    asyncio.run(main())
    assert events == [(kind, n) for n in range(30) for kind in ("start", "end")]


def test_pool_is_bounded(sync_pool: None) -> None:
    configure_sync_threads(2)
    assert sync_threads() == 2
    state = {"now": 0, "max": 0, "left": 5}
    changed = threading.Condition()

    class Busy(WebsocketConsumer):
        def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
            with changed:
                state["now"] += 1
                state["max"] = max(state["max"], state["now"])
                changed.notify_all()
                # Hold the thread until a second handler runs beside it (the last one alone).
                changed.wait_for(lambda: state["now"] >= 2 or state["left"] == 1, timeout=10)
                state["now"] -= 1
                state["left"] -= 1
                changed.notify_all()
            self.send(text_data="ok")

    async def main() -> None:
        comms = [WebsocketCommunicator(Busy.as_asgi(), "/") for _ in range(5)]
        for comm in comms:
            await comm.connect()
        for comm in comms:
            await comm.send_to(text_data="go")
        for comm in comms:
            assert await comm.receive_from(timeout=5) == "ok"
            await comm.disconnect()

    asyncio.run(main())
    assert state["max"] == 2


def test_serial_executor_orders_work_on_a_shared_pool() -> None:
    pool = ThreadPoolExecutor(4)
    lanes = [SerialExecutor(pool) for _ in range(3)]
    seen: dict[int, list[int]] = {0: [], 1: [], 2: []}
    futures = []
    for n in range(50):
        for index, lane in enumerate(lanes):
            futures.append(lane.submit(lambda i=index, n=n: (time.sleep(0.0002), seen[i].append(n))))
    for future in futures:
        future.result(5)
    assert all(values == list(range(50)) for values in seen.values())
    failing = lanes[0].submit(lambda: 1 / 0)
    assert isinstance(failing.exception(5), ZeroDivisionError)
    assert lanes[0].submit(lambda: 42).result(5) == 42  # a failure does not break the lane
    lanes[0].shutdown()
    try:
        lanes[0].submit(lambda: 1)
    except RuntimeError:
        pass
    else:
        raise AssertionError("submit after shutdown must raise")
    pool.shutdown()


def test_reconfiguring_pool_keeps_existing_lanes_working(sync_pool: None) -> None:
    configure_sync_threads(2)
    lane = SerialExecutor()
    assert lane.submit(lambda: "before").result(5) == "before"
    configure_sync_threads(3)
    assert lane.submit(lambda: "after").result(5) == "after"


def test_invalid_pool_size() -> None:
    for bad in (0, -1, "4", True):
        try:
            configure_sync_threads(bad)  # type: ignore[arg-type]
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} accepted")


def test_handler_can_call_back_into_async_code(sync_pool: None) -> None:
    """async_to_sync inside a handler, whose coroutine calls sync_to_async again, returns to the
    same (waiting) thread rather than needing another pool thread."""
    from asgiref.sync import async_to_sync, sync_to_async

    configure_sync_threads(1)
    threads: list[int] = []

    class Nested(WebsocketConsumer):
        def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
            threads.append(threading.get_ident())

            async def inner() -> Any:
                return await sync_to_async(threading.get_ident)()

            threads.append(async_to_sync(inner)())
            self.send(text_data="ok")

    async def main() -> None:
        comm = WebsocketCommunicator(Nested.as_asgi(), "/")
        await comm.connect()
        await comm.send_to(text_data="x")
        assert await comm.receive_from(timeout=5) == "ok"
        await comm.disconnect()

    asyncio.run(main())
    assert threads[0] == threads[1]
