"""The shared channel layer contract: one test suite every backend must pass.

Use it from a backend's tests by subclassing and providing a factory::

    from gateway.layers.contract import ChannelLayerContract

    class TestRedisLayer(ChannelLayerContract):
        short_expiry = 1.0          # the backend's expiry granularity, in seconds
        def make_layer(self, **options):
            return RedisChannelLayer(hosts=[...], **options)
        # optional: async def cleanup(self, layer): await layer.flush(); await layer.close_pools()

Every test is a plain (sync) pytest method that runs its scenario with ``asyncio.run``; no
pytest-asyncio needed. ``make_layer`` gets the options under test (``capacity``, ``expiry``,
``group_expiry``, ``channel_capacity``), with the Channels layer API semantics.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import pytest
from asgiref.sync import async_to_sync

from gateway.exceptions import ChannelFull
from gateway.layers.base import ChannelLayer

__all__ = ["ChannelLayerContract"]


class ChannelLayerContract:
    """Mixin of contract tests; subclasses implement :meth:`make_layer`."""

    #: An expiry short enough to wait for in tests, long enough for the backend to honour it.
    short_expiry: ClassVar[float] = 0.2
    #: Seconds to wait for a message that must arrive.
    timeout: ClassVar[float] = 2.0

    def make_layer(self, **options: Any) -> ChannelLayer:
        """Build a fresh, empty layer with ``options``."""
        raise NotImplementedError

    async def cleanup(self, layer: ChannelLayer) -> None:
        """Release the layer after a test (default: ``flush`` then ``close``)."""
        await layer.flush()
        await layer.close()

    def run(self, scenario: Callable[[ChannelLayer], Awaitable[None]], **options: Any) -> None:
        """Build a layer with ``options`` and run ``scenario(layer)`` on a fresh event loop."""

        async def main() -> None:
            layer = self.make_layer(**options)
            try:
                await scenario(layer)
            finally:
                await self.cleanup(layer)

        asyncio.run(main())

    async def recv(self, layer: ChannelLayer, channel: str) -> dict[str, Any]:
        return await asyncio.wait_for(layer.receive(channel), self.timeout)

    async def assert_empty(self, layer: ChannelLayer, channel: str, wait: float = 0.05) -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive(channel), wait)

    # -- basics ---------------------------------------------------------------------------

    def test_extensions(self) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            assert "groups" in layer.extensions and "flush" in layer.extensions

        self.run(scenario)

    def test_send_receive(self) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            await layer.send("test-channel-1", {"type": "test.message", "text": "Ahoy-hoy!"})
            assert await self.recv(layer, "test-channel-1") == {"type": "test.message", "text": "Ahoy-hoy!"}

        self.run(scenario)

    def test_fifo_order(self) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            for i in range(20):
                await layer.send("ordered", {"type": "m", "n": i})
            assert [(await self.recv(layer, "ordered"))["n"] for _ in range(20)] == list(range(20))

        self.run(scenario, capacity=50)

    def test_receive_waits_for_send(self) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            waiting = asyncio.ensure_future(layer.receive("later"))
            await asyncio.sleep(0.01)
            assert not waiting.done()
            await layer.send("later", {"type": "m", "x": 1})
            assert (await asyncio.wait_for(waiting, self.timeout))["x"] == 1

        self.run(scenario)

    def test_nested_values_round_trip(self) -> None:
        message = {"type": "m", "list": [1, "a", None, True, 1.5], "dict": {"b": b"\x00\xff"}, "n": -2**40}

        async def scenario(layer: ChannelLayer) -> None:
            await layer.send("nested", message)
            assert await self.recv(layer, "nested") == message

        self.run(scenario)

    def test_sender_mutation_does_not_leak(self) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            items = [1]
            message: dict[str, Any] = {"type": "m", "items": items}
            await layer.send("mut", message)
            items.append(2)
            message["type"] = "changed"
            assert await self.recv(layer, "mut") == {"type": "m", "items": [1]}

        self.run(scenario)

    def test_group_receivers_do_not_share_messages(self) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            a, b = await layer.new_channel(), await layer.new_channel()
            await layer.group_add("share", a)
            await layer.group_add("share", b)
            for payload in ({"type": "m", "v": 1}, {"type": "m", "v": [1]}):
                await layer.group_send("share", payload)
                first = await self.recv(layer, a)
                first["v"] = "mutated"
                second = await self.recv(layer, b)
                assert second == payload

        self.run(scenario)

    # -- validation -----------------------------------------------------------------------

    @pytest.mark.parametrize("name", ["", "a" * 100, "has space", "ünïcode", "semi;colon", "a!b!c", 5, None, b"bytes"])
    def test_invalid_channel_names(self, name: Any) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            with pytest.raises(TypeError, match="Channel name must be a valid unicode string"):
                await layer.send(name, {"type": "m"})
            with pytest.raises(TypeError):
                await layer.group_add("ok-group", name)

        self.run(scenario)

    @pytest.mark.parametrize("name", ["", "g" * 100, "with space", "bang!", "ü", 3])
    def test_invalid_group_names(self, name: Any) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            with pytest.raises(TypeError, match="Group name must be a valid unicode string"):
                await layer.group_add(name, "fine.channel")
            with pytest.raises(TypeError):
                await layer.group_send(name, {"type": "m"})
            with pytest.raises(TypeError):
                await layer.group_discard(name, "fine.channel")

        self.run(scenario)

    def test_valid_names_up_to_the_limit(self) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            name = "a-Z_0." + "x" * 93  # 99 characters
            await layer.send(name, {"type": "m"})
            assert await self.recv(layer, name) == {"type": "m"}
            await layer.group_add("g" * 99, name)

        self.run(scenario)

    @pytest.mark.parametrize("message", [None, "text", ["type"], {"no": "type"}, {"type": 5}])
    def test_invalid_messages(self, message: Any) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            with pytest.raises(TypeError):
                await layer.send("ch", message)
            with pytest.raises(TypeError):
                await layer.group_send("grp", message)

        self.run(scenario)

    # -- new_channel and process-local channels --------------------------------------------

    def test_new_channel_unique_and_valid(self) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            names = [await layer.new_channel() for _ in range(2000)]
            assert len(set(names)) == 2000
            for name in names[:50]:
                assert "!" in name and layer.require_valid_channel_name(name)
            custom = await layer.new_channel("thumbnails")
            assert custom.startswith("thumbnails.")

        self.run(scenario)

    def test_process_local_channels_are_isolated(self) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            a, b = await layer.new_channel(), await layer.new_channel()
            await layer.send(a, {"type": "m", "to": "a"})
            await layer.send(b, {"type": "m", "to": "b"})
            assert (await self.recv(layer, b))["to"] == "b"
            assert (await self.recv(layer, a))["to"] == "a"
            await self.assert_empty(layer, a)

        self.run(scenario)

    # -- capacity -------------------------------------------------------------------------

    def test_capacity(self) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            for i in range(3):
                await layer.send("cap", {"type": "m", "n": i})
            with pytest.raises(ChannelFull):
                await layer.send("cap", {"type": "m", "n": 3})
            assert (await self.recv(layer, "cap"))["n"] == 0
            await layer.send("cap", {"type": "m", "n": 4})
            assert [(await self.recv(layer, "cap"))["n"] for _ in range(3)] == [1, 2, 4]

        self.run(scenario, capacity=3)

    def test_channel_capacity_patterns(self) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            async def fill(channel: str) -> int:
                for count in range(50):
                    try:
                        await layer.send(channel, {"type": "m"})
                    except ChannelFull:
                        return count
                return 50

            assert await fill("http.request") == 2      # exact glob
            assert await fill("websocket.abc") == 4     # glob with *
            assert await fill("mqtt-7") == 5            # compiled regex
            assert await fill("other") == 3             # default capacity

        self.run(scenario, capacity=3, channel_capacity={
            "http.request": 2, "websocket.*": 4, re.compile(r"^mqtt-\d+$"): 5, "mqtt-7": 9,
        })

    def test_group_send_skips_full_members_without_raising(self) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            full, free = await layer.new_channel(), await layer.new_channel()
            await layer.group_add("cap-group", full)
            await layer.group_add("cap-group", free)
            await layer.send(full, {"type": "m", "n": 0})
            await layer.group_send("cap-group", {"type": "m", "n": 1})
            assert (await self.recv(layer, free))["n"] == 1
            assert (await self.recv(layer, full))["n"] == 0
            await self.assert_empty(layer, full)

        self.run(scenario, capacity=1)

    # -- expiry ---------------------------------------------------------------------------

    def test_message_expiry(self) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            await layer.send("exp", {"type": "m", "n": 1})
            await asyncio.sleep(self.short_expiry * 1.5)
            await layer.send("exp", {"type": "m", "n": 2})
            assert (await self.recv(layer, "exp"))["n"] == 2
            await self.assert_empty(layer, "exp")

        self.run(scenario, expiry=self.short_expiry)

    def test_expired_messages_free_capacity(self) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            await layer.send("exp-cap", {"type": "m", "n": 1})
            with pytest.raises(ChannelFull):
                await layer.send("exp-cap", {"type": "m", "n": 2})
            await asyncio.sleep(self.short_expiry * 1.5)
            await layer.send("exp-cap", {"type": "m", "n": 3})
            assert (await self.recv(layer, "exp-cap"))["n"] == 3

        self.run(scenario, expiry=self.short_expiry, capacity=1)

    def test_group_expiry(self) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            old, fresh = await layer.new_channel(), await layer.new_channel()
            await layer.group_add("gexp", old)
            await asyncio.sleep(self.short_expiry * 1.5)
            await layer.group_add("gexp", fresh)
            await layer.group_send("gexp", {"type": "m"})
            assert await self.recv(layer, fresh) == {"type": "m"}
            await self.assert_empty(layer, old)

        self.run(scenario, group_expiry=self.short_expiry)

    # -- groups ---------------------------------------------------------------------------

    def test_groups(self) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            a, b, c = [await layer.new_channel() for _ in range(3)]
            await layer.group_add("room", a)
            await layer.group_add("room", b)
            await layer.group_add("room", b)  # idempotent
            await layer.group_add("other", c)
            await layer.group_send("room", {"type": "m", "n": 1})
            assert (await self.recv(layer, a))["n"] == 1
            assert (await self.recv(layer, b))["n"] == 1
            await self.assert_empty(layer, b)  # one copy despite the double add
            await self.assert_empty(layer, c)
            await layer.group_discard("room", b)
            await layer.group_discard("room", c)  # not a member: no-op
            await layer.group_discard("nobody-here", a)
            await layer.group_send("room", {"type": "m", "n": 2})
            assert (await self.recv(layer, a))["n"] == 2
            await self.assert_empty(layer, b)
            await layer.group_send("empty-group", {"type": "m"})  # no members: no error

        self.run(scenario)

    def test_flush(self) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            member = await layer.new_channel()
            await layer.group_add("flushed", member)
            await layer.send("plain", {"type": "m"})
            await layer.flush()
            await self.assert_empty(layer, "plain")
            await layer.group_send("flushed", {"type": "m"})
            await self.assert_empty(layer, member)
            await layer.send("plain", {"type": "m", "after": True})
            assert (await self.recv(layer, "plain"))["after"] is True

        self.run(scenario)

    # -- cancellation and concurrency ------------------------------------------------------

    def test_cancelled_receive_loses_nothing(self) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            for i in range(50):
                waiting = asyncio.ensure_future(layer.receive("cancel"))
                await asyncio.sleep(0)
                if i % 2:
                    await layer.send("cancel", {"type": "m", "n": i})  # delivered, then cancelled
                waiting.cancel()
                try:
                    got = await waiting
                except asyncio.CancelledError:
                    if i % 2:
                        assert (await self.recv(layer, "cancel"))["n"] == i
                else:
                    assert got["n"] == i
            await self.assert_empty(layer, "cancel")

        self.run(scenario)

    def test_wait_for_timeout_loses_nothing(self) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            received: list[int] = []

            async def consumer() -> None:
                while len(received) < 200:
                    try:
                        received.append((await asyncio.wait_for(layer.receive("tmo"), 0.0005))["n"])
                    except asyncio.TimeoutError:
                        pass

            task = asyncio.ensure_future(consumer())
            for i in range(200):
                await layer.send("tmo", {"type": "m", "n": i})
                if i % 7 == 0:
                    await asyncio.sleep(0.001)
            await asyncio.wait_for(task, 10)
            assert received == list(range(200))

        self.run(scenario, capacity=500)

    def test_concurrent_senders_and_receivers(self) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            received: list[tuple[int, int]] = []
            done = asyncio.Event()

            async def sender(sid: int) -> None:
                for n in range(100):
                    await layer.send("busy", {"type": "m", "s": sid, "n": n})
                    if n % 10 == 0:
                        await asyncio.sleep(0)

            async def receiver() -> None:
                while True:
                    message = await layer.receive("busy")
                    received.append((message["s"], message["n"]))
                    if len(received) == 1000:
                        done.set()

            receivers = [asyncio.ensure_future(receiver()) for _ in range(5)]
            await asyncio.gather(*(sender(s) for s in range(10)))
            await asyncio.wait_for(done.wait(), 10)
            for task in receivers:
                task.cancel()
            await asyncio.gather(*receivers, return_exceptions=True)
            # Every message exactly once (which receiver gets which is unspecified).
            assert sorted(received) == [(s, n) for s in range(10) for n in range(100)]

        self.run(scenario, capacity=2000)

    def test_concurrent_senders_one_receiver_keeps_each_senders_order(self) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            async def sender(sid: int) -> None:
                for n in range(50):
                    await layer.send("interleaved", {"type": "m", "s": sid, "n": n})
                    await asyncio.sleep(0)

            senders = asyncio.gather(*(sender(s) for s in range(8)))
            received = [await self.recv(layer, "interleaved") for _ in range(400)]
            await senders
            for sid in range(8):
                assert [m["n"] for m in received if m["s"] == sid] == list(range(50))

        self.run(scenario, capacity=1000)

    def test_many_channels(self) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            names = [f"many-{i}" for i in range(1000)]
            for i, name in enumerate(names):
                await layer.send(name, {"type": "m", "i": i})
            results = await asyncio.gather(*(self.recv(layer, n) for n in names))
            assert [r["i"] for r in results] == list(range(1000))

        self.run(scenario)

    def test_large_group_fan_out(self) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            members = [await layer.new_channel() for _ in range(500)]
            for name in members:
                await layer.group_add("big", name)
            await layer.group_send("big", {"type": "m", "k": "v"})
            results = await asyncio.gather(*(self.recv(layer, n) for n in members))
            assert all(r == {"type": "m", "k": "v"} for r in results)

        self.run(scenario)

    def test_group_send_from_plain_thread(self) -> None:
        async def scenario(layer: ChannelLayer) -> None:
            member = await layer.new_channel()
            await layer.group_add("threaded", member)
            waiting = asyncio.ensure_future(layer.receive(member))
            await asyncio.sleep(0.01)
            errors: list[BaseException] = []

            def from_thread() -> None:
                try:
                    async_to_sync(layer.group_send)("threaded", {"type": "m", "from": "thread"})
                    async_to_sync(layer.send)(member, {"type": "m", "from": "thread-send"})
                except BaseException as exc:  # reported below
                    errors.append(exc)

            thread = threading.Thread(target=from_thread)
            thread.start()
            first = await asyncio.wait_for(waiting, self.timeout)
            second = await self.recv(layer, member)
            await asyncio.get_running_loop().run_in_executor(None, thread.join)
            assert not errors
            assert (first["from"], second["from"]) == ("thread", "thread-send")

        self.run(scenario)
