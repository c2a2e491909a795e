"""In-memory layer behaviour beyond the shared contract: lazy expiry, sweeping, copies, loops."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from gateway.exceptions import ChannelFull, InvalidChannelLayerError
from gateway.layers.memory import InMemoryChannelLayer
from tests.unit.layers.conftest import until


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_expired_message_takes_the_channel_out_of_its_groups() -> None:
    clock = FakeClock()
    layer = InMemoryChannelLayer(expiry=10, clock=clock)

    async def main() -> None:
        dead, alive = "dead.channel", "alive.channel"
        for name in (dead, alive):
            await layer.group_add("room", name)
            await layer.group_add("lobby", name)
        await layer.group_send("room", {"type": "m"})
        await layer.receive(alive)  # only `alive` reads
        clock.now += 11
        await layer.group_send("room", {"type": "m", "n": 2})
        # `dead` had an expired message: it left every group and got nothing new.
        assert layer._groups["room"].keys() == {alive}
        assert layer._groups["lobby"].keys() == {alive}
        assert dead not in layer._channels or not layer._channels[dead].queue
        assert (await layer.receive(alive))["n"] == 2

    run(main())


def test_sweep_bounds_memory_of_untouched_channels() -> None:
    clock = FakeClock()
    layer = InMemoryChannelLayer(expiry=5, group_expiry=50, clock=clock)

    async def main() -> None:
        for i in range(100):
            await layer.send(f"idle-{i}", {"type": "m"})
        await layer.group_add("g", "member-x")
        assert layer.stats()["messages"] == 100
        clock.now += 6  # past expiry and past the sweep interval, min(5, 50)
        await layer.send("trigger", {"type": "m"})
        stats = layer.stats()
        assert stats["messages"] == 1 and stats["channels"] == 1  # only "trigger" is left
        clock.now += 60
        await layer.send("trigger2", {"type": "m"})
        assert layer.stats()["groups"] == 0 and layer.stats()["memberships"] == 0

    run(main())


def test_no_sweep_before_interval() -> None:
    clock = FakeClock()
    layer = InMemoryChannelLayer(expiry=5, clock=clock)

    async def main() -> None:
        await layer.send("a", {"type": "m"})
        clock.now += 4
        await layer.send("b", {"type": "m"})
        assert layer.stats()["messages"] == 2
        clock.now += 2  # "a" is expired, but nothing touched it and the sweep is not due yet
        assert layer.stats()["messages"] == 2
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive("a"), 0.01)  # lazy expiry on touch

    run(main())


def test_group_expiry_with_fake_clock() -> None:
    clock = FakeClock()
    layer = InMemoryChannelLayer(group_expiry=100, expiry=1000, clock=clock)

    async def main() -> None:
        await layer.group_add("g", "old")
        clock.now += 60
        await layer.group_add("g", "young")
        clock.now += 50  # "old" joined 110 s ago, "young" 50 s ago
        await layer.group_send("g", {"type": "m"})
        assert (await layer.receive("young")) == {"type": "m"}
        assert "old" not in layer._groups["g"]
        await layer.group_add("g", "young")  # refresh
        clock.now += 90
        await layer.group_send("g", {"type": "m", "n": 2})
        assert (await layer.receive("young"))["n"] == 2

    run(main())


def test_flat_messages_are_shallow_copied_nested_deep_copied() -> None:
    layer = InMemoryChannelLayer()

    async def main() -> None:
        for name in ("a", "b"):
            await layer.group_add("g", name)
        flat = {"type": "m", "text": "x"}
        await layer.group_send("g", flat)
        got_a, got_b = await layer.receive("a"), await layer.receive("b")
        assert got_a == got_b == flat and got_a is not got_b and got_a is not flat
        nested = {"type": "m", "data": {"list": [1, 2]}}
        await layer.group_send("g", nested)
        got_a, got_b = await layer.receive("a"), await layer.receive("b")
        got_a["data"]["list"].append(3)
        assert got_b["data"]["list"] == [1, 2] and nested["data"]["list"] == [1, 2]

    run(main())


def test_receive_waiting_on_another_loop_is_woken() -> None:
    layer = InMemoryChannelLayer()
    result: dict[str, Any] = {}
    ready = threading.Event()

    def other_loop() -> None:
        async def wait() -> None:
            task = asyncio.ensure_future(layer.receive("cross"))
            await until(lambda: layer.stats()["channels"] == 1, 5)  # the receive is waiting
            ready.set()
            result["message"] = await asyncio.wait_for(task, 5)

        asyncio.run(wait())

    thread = threading.Thread(target=other_loop)
    thread.start()
    assert ready.wait(5)

    async def main() -> None:
        await layer.send("cross", {"type": "m", "v": 1})

    run(main())
    thread.join(5)
    assert result["message"] == {"type": "m", "v": 1}


def test_cancelled_receiver_on_other_loop_gives_message_back() -> None:
    layer = InMemoryChannelLayer()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        state = layer._channel("x")
        state.waiters.append(future)
        future.cancel()
        # A cross-loop delivery that arrives after the cancellation must requeue.
        layer._deliver("x", future, (1e18, {"type": "m"}, 0))
        assert await layer.receive("x") == {"type": "m"}

    run(main())


def test_capacity_counts_only_queued_messages() -> None:
    layer = InMemoryChannelLayer(capacity=1)

    async def main() -> None:
        waiting = asyncio.ensure_future(layer.receive("c"))
        await asyncio.sleep(0)
        await layer.send("c", {"type": "m", "n": 1})  # handed straight to the waiter
        await layer.send("c", {"type": "m", "n": 2})  # queued
        with pytest.raises(ChannelFull):
            await layer.send("c", {"type": "m", "n": 3})
        assert (await waiting)["n"] == 1

    run(main())


@pytest.mark.parametrize("options", [
    {"capacity": 0}, {"capacity": "10"}, {"expiry": 0}, {"group_expiry": -1},
    {"channel_capacity": {"x": 0}}, {"channel_capacity": {"re:(": 1}}, {"channel_capacity": {5: 1}},
])
def test_bad_options(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidChannelLayerError):
        InMemoryChannelLayer(**options)


def test_regex_string_capacity() -> None:
    layer = InMemoryChannelLayer(capacity=5, channel_capacity={"re:^jobs\\.\\d+$": 1})
    assert layer.get_capacity("jobs.12") == 1
    assert layer.get_capacity("jobs.x") == 5


def test_flush_keeps_waiting_receivers() -> None:
    layer = InMemoryChannelLayer()

    async def main() -> None:
        waiting = asyncio.ensure_future(layer.receive("w"))
        await asyncio.sleep(0)
        await layer.flush()
        await layer.send("w", {"type": "m"})
        assert await asyncio.wait_for(waiting, 1) == {"type": "m"}

    run(main())


def test_idle_channels_are_forgotten() -> None:
    layer = InMemoryChannelLayer()

    async def main() -> None:
        for i in range(100):
            await layer.send(f"c{i}", {"type": "m"})
            await layer.receive(f"c{i}")
        task = asyncio.ensure_future(layer.receive("waiting"))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert layer.stats()["channels"] == 0

    run(main())
