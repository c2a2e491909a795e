"""The Redis layer against real redis-servers: outages, idle readers, counters, and the
group_send script's wire output. (Logins, sockets, TLS and Sentinel: test_redis_connect.py.)"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.layers.redis import RedisChannelLayer, RedisLayerUnavailable, consistent_hash
from tests.unit.layers.conftest import recv, until
from tests.unit.layers.redis_server import RedisServer, free_port

pytestmark = pytest.mark.redis

FAST = {"reconnect_max_delay": 0.2, "connect_timeout": 2.0}


# -- outages ----------------------------------------------------------------------------------


def test_outage_errors_are_quick_and_clear_and_delivery_resumes(server: RedisServer, run: Any) -> None:
    async def main() -> None:
        sender = RedisChannelLayer(hosts=[server.url], **FAST)
        receiver = RedisChannelLayer(hosts=[server.url], **FAST)
        own, remote = await sender.new_channel(), await receiver.new_channel()
        await receiver.group_add("g", remote)
        waiting = asyncio.ensure_future(receiver.receive(remote))  # blocked in Redis across the outage
        await sender.send(remote, {"type": "m", "n": 0})
        assert (await asyncio.wait_for(waiting, 5))["n"] == 0
        waiting = asyncio.ensure_future(receiver.receive(remote))
        server.kill()
        await until(lambda: sender.stats()["shards_down"] == 1)
        started = time.monotonic()
        with pytest.raises(RedisLayerUnavailable, match=f"127.0.0.1:{server.port}.*unavailable"):
            await sender.send(remote, {"type": "m", "n": 1})
        assert time.monotonic() - started < 0.5
        await sender.group_send("g", {"type": "m"})  # never raises: counted
        await sender.send(own, {"type": "m", "local": True})  # a local channel needs no Redis
        assert (await recv(sender, own))["local"] is True
        server.start()
        await until(lambda: sender.stats()["shards_down"] == 0 and receiver.stats()["connections_down"] == 0)
        await sender.send(remote, {"type": "m", "n": 2})
        assert (await asyncio.wait_for(waiting, 5))["n"] == 2
        # the membership Redis forgot was re-added by the receiver when it reconnected
        await until(lambda: receiver.stats()["memberships_restored"] == 1)
        await sender.group_send("g", {"type": "m", "n": 3})
        assert (await recv(receiver, remote))["n"] == 3
        stats = sender.stats()
        assert (stats["send_failed"], stats["group_send_failed"], stats["disconnects"] >= 1) == (1, 1, True)
        assert receiver.stats()["reconnects"] >= 2  # command and reader connections
        await sender.close()
        await receiver.flush()
        await receiver.close()

    run(main)


def test_group_stream_across_a_redis_crash_loses_nothing_sent_after_the_restart(server: RedisServer, run: Any) -> None:
    """A 200 msg/s group stream to five consumers in another process while redis-server (no
    persistence) is SIGKILLed and restarted empty. Every group_send accepted after the restart
    reaches every consumer: the sender holds its group_sends until every process had the time to
    re-add its memberships. Lost: at most what was in Redis at the crash."""
    options = {"reconnect_max_delay": 0.5, "connect_timeout": 2.0}

    async def main() -> None:
        consumers = RedisChannelLayer(hosts=[server.url], **options)
        sender = RedisChannelLayer(hosts=[server.url], **options)
        channels = [await consumers.new_channel() for _ in range(5)]
        for channel in channels:
            await consumers.group_add("stream", channel)
        got: dict[str, list[int]] = {channel: [] for channel in channels}

        async def consume(channel: str) -> None:
            while True:
                message = await consumers.receive(channel)
                if message.get("end"):
                    return
                got[channel].append(message["seq"])

        tasks = [asyncio.ensure_future(consume(channel)) for channel in channels]
        accepted: list[tuple[int, str]] = []  # (seq, phase)
        phase, seq = "before", 0
        started = time.monotonic()
        killed_at = restarted_at = None
        while time.monotonic() - started < 4.5:
            elapsed = time.monotonic() - started
            if killed_at is None and elapsed >= 1.0:
                server.kill()
                killed_at, phase = elapsed, "outage"
            elif restarted_at is None and elapsed >= 1.6:
                server.start()
                restarted_at, phase = elapsed, "after"
            failed = sender.counters["group_send_failed"]
            await sender.group_send("stream", {"type": "m", "seq": seq})
            if sender.counters["group_send_failed"] == failed:
                accepted.append((seq, phase))
            seq += 1
            await asyncio.sleep(max(0.0, started + seq / 200 - time.monotonic()))
        await sender.group_send("stream", {"type": "m", "end": True})
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
        after = [n for n, p in accepted if p == "after"]
        before = [n for n, p in accepted if p == "before"]
        assert len(after) > 300 and len(before) > 150
        assert sender.stats()["group_sends_held"] >= 1  # it waited for the memberships
        for channel, seqs in got.items():
            assert seqs == sorted(seqs)
            assert not set(after) - set(seqs), f"{channel}: lost after the restart"
            lost_before = sorted(set(before) - set(seqs))
            # at 200 msg/s a consumer keeps up: what Redis held when it died is a few messages
            assert len(lost_before) <= 5 and all(n > before[-1] - 20 for n in lost_before), lost_before
        assert not [n for n, p in accepted if p == "outage"]  # refused while Redis was down
        await sender.close()
        await consumers.flush()
        await consumers.close()

    run(main)


def _passes(loop: asyncio.AbstractEventLoop) -> list[int]:
    """A counter of event-loop passes (a callback that re-schedules itself each pass)."""
    passes = [0]

    def tick() -> None:
        passes[0] += 1
        if passes[0] < 10_000:
            loop.call_soon(tick)

    loop.call_soon(tick)
    return passes


def test_sends_in_a_loop_do_not_wait_for_replies_and_stop_at_capacity(server: RedisServer, run: Any) -> None:
    """After a reply that left room, sends return at once (several in flight, in order); the
    send beyond the channel's capacity still waits for its reply and raises ChannelFull."""
    from gateway.exceptions import ChannelFull

    async def main() -> None:
        sender = RedisChannelLayer(hosts=[server.url], capacity=20, send_window=8)
        target = "specific.nobody!x"  # another process's channel that nobody reads
        await sender.send(target, {"type": "m", "n": 0})  # waits: no reply seen yet
        passes = _passes(asyncio.get_running_loop())
        for n in range(1, 9):  # the window: returned without a loop pass
            await sender.send(target, {"type": "m", "n": n})
        assert passes[0] == 0
        for n in range(9, 20):
            await sender.send(target, {"type": "m", "n": n})
        with pytest.raises(ChannelFull):
            await sender.send(target, {"type": "m", "n": 20})
        stats = sender.stats()
        assert (stats["sent"], stats["send_full"], stats["send_unconfirmed_lost"]) == (20, 1, 0)
        key = sender._started().channel_key("specific.nobody!")
        members = server.command("ZRANGE", key, "0", "-1")
        assert sorted(sender.deserialize(m)["n"] for m in members) == list(range(20))
        await sender.flush()
        await sender.close()

    run(main)


def test_send_waits_for_every_reply_by_default(server: RedisServer, run: Any) -> None:
    async def main() -> None:
        sender = RedisChannelLayer(hosts=[server.url])
        await sender.send("specific.nobody!x", {"type": "m"})
        for _ in range(3):
            passes = _passes(asyncio.get_running_loop())
            await sender.send("specific.nobody!x", {"type": "m"})
            assert passes[0] > 0
        await sender.flush()
        await sender.close()

    run(main)
    with pytest.raises(Exception, match="send_window"):
        RedisChannelLayer(hosts=[server.url], send_window=-1)


def test_unconfirmed_sends_lost_with_the_connection_are_counted(server: RedisServer, run: Any) -> None:
    async def main() -> None:
        sender = RedisChannelLayer(hosts=[server.url], send_window=32, **FAST)
        await sender.send("specific.nobody!x", {"type": "m"})
        for _ in range(5):  # queued, not written yet (the write is at the end of this loop pass)
            await sender.send("specific.nobody!x", {"type": "m"})
        server.kill()
        await until(lambda: sender.stats()["send_unconfirmed_lost"] == 5)
        await until(lambda: sender.stats()["shards_down"] == 1)
        with pytest.raises(RedisLayerUnavailable):  # the next send waits for a reply again
            await sender.send("specific.nobody!x", {"type": "m"})
        assert sender.stats()["send_failed"] == 1
        await sender.close()

    run(main)


def test_first_use_without_a_server_fails_within_connect_timeout(tmp_path: Path, run: Any) -> None:
    async def main() -> None:
        layer = RedisChannelLayer(hosts=[f"redis://127.0.0.1:{free_port()}/0"], connect_timeout=1.0)
        started = time.monotonic()
        with pytest.raises(RedisLayerUnavailable, match="refused"):
            await layer.send("x", {"type": "m"})
        assert time.monotonic() - started < 1.5
        await layer.close()

    run(main)


def test_idle_receive_outlives_many_block_timeouts(server: RedisServer, run: Any) -> None:
    """channels_redis#422: an idle receive() must simply keep waiting."""

    async def main() -> None:
        layer = RedisChannelLayer(hosts=[server.url], block_timeout=0.1)
        other = RedisChannelLayer(hosts=[server.url])
        channel = await layer.new_channel()
        waiting = asyncio.ensure_future(layer.receive(channel))
        waiting_normal = asyncio.ensure_future(layer.receive("idle.normal"))
        await asyncio.sleep(1.0)  # ~10 blocking reads timed out and were re-issued
        assert not waiting.done() and not waiting_normal.done()
        await other.send(channel, {"type": "m", "late": True})
        await other.send("idle.normal", {"type": "m", "late": 2})
        assert (await asyncio.wait_for(waiting, 5))["late"] is True
        assert (await asyncio.wait_for(waiting_normal, 5))["late"] == 2
        assert layer.stats()["disconnects"] == 0
        await other.close()
        await layer.flush()
        await layer.close()

    run(main)


# -- counters ---------------------------------------------------------------------------------


def test_expired_and_over_capacity_messages_are_counted(server: RedisServer, run: Any) -> None:
    async def main() -> None:
        sender = RedisChannelLayer(hosts=[server.url], expiry=1.0, capacity=2)
        receiver = RedisChannelLayer(hosts=[server.url], expiry=1.0, capacity=1)
        # expired in a full channel before anyone popped it: purged (and counted) by the next send
        await sender.send("slow.worker", {"type": "m", "n": 1})
        await asyncio.sleep(0.6)
        await sender.send("slow.worker", {"type": "m", "n": 2})  # full now; refreshes the key's TTL
        await asyncio.sleep(0.6)
        await sender.send("slow.worker", {"type": "m", "n": 3})  # n=1 expired: room again
        assert (sender.stats()["expired"], sender.stats()["send_full"]) == (1, 0)
        assert (await recv(receiver, "slow.worker"))["n"] == 2
        sender.capacity = 3
        # over capacity: a full normal channel skips group members; a full local queue drops
        await sender.group_add("cap", "full.channel")
        for _ in range(3):
            await sender.send("full.channel", {"type": "m"})
        target = await receiver.new_channel()
        await sender.group_add("cap", target)
        await sender.group_send("cap", {"type": "m", "n": 1})
        await sender.group_send("cap", {"type": "m", "n": 2})  # the receiver's queue holds 1
        await until(lambda: receiver.stats()["over_capacity"] == 1)
        assert sender.stats()["group_dropped"] == 2 and sender.stats()["group_delivered"] == 2
        assert (await recv(receiver, target))["n"] == 1
        with pytest.raises(asyncio.TimeoutError):
            await recv(receiver, target, 0.2)
        await sender.flush()
        await sender.close()
        await receiver.close()

    run(main)


def test_messages_that_expire_on_the_way_are_dropped_at_pop(server: RedisServer, run: Any) -> None:
    async def main() -> None:
        sender = RedisChannelLayer(hosts=[server.url])
        receiver = RedisChannelLayer(hosts=[server.url], expiry=0.2)
        await sender.send("aging", {"type": "m"})
        await asyncio.sleep(0.3)
        with pytest.raises(asyncio.TimeoutError):
            await recv(receiver, "aging", 0.3)
        assert receiver.stats()["expired"] == 1
        await sender.flush()
        await sender.close()
        await receiver.close()

    run(main)


# -- the group_send script ------------------------------------------------------------------------


def test_group_send_script_shards_like_channels_redis(server: RedisServer, run: Any) -> None:
    """Members whose key is on another shard come back; the rest are written here."""
    hosts = [f"redis://127.0.0.1:{server.port}/{db}" for db in (6, 7, 8)]
    names = [f"p{i}.proc{i % 13}!x{i}" for i in range(120)] + [f"plain.{i}" for i in range(60)]

    async def main() -> None:
        layer = RedisChannelLayer(hosts=hosts)
        for name in names:
            await layer.group_add("sharded", name)
        await layer.group_send("sharded", {"type": "m"})
        for db in (6, 7, 8):
            server.command("SELECT", db)
        for shard, db in enumerate((6, 7, 8)):
            expected = {f"asgi{layer.non_local_name(n)}".encode() for n in names
                        if consistent_hash(layer.non_local_name(n), 3) == shard}
            keys = {k for k in _keys(server.port, db) if not k.startswith(b"asgi:group")}
            assert keys == expected
        assert layer.stats()["group_delivered"] == len(names)
        await layer.flush()
        await layer.close()

    run(main)


def _keys(port: int, db: int) -> list[bytes]:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"*2\r\n$6\r\nSELECT\r\n$%d\r\n%d\r\n*2\r\n$4\r\nKEYS\r\n$5\r\nasgi*\r\n" % (len(str(db)), db))
        f = sock.makefile("rb")
        f.readline()
        count = int(f.readline()[1:])
        result = []
        for _ in range(count):
            size = int(f.readline()[1:])
            result.append(f.read(size + 2)[:-2])
        return result


_leaf = st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text(max_size=40) | st.binary(max_size=40)
_message = st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k not in ("__asgi_channel__", "type")),
                           st.recursive(_leaf, lambda i: st.lists(i, max_size=3) | st.dictionaries(st.text(max_size=4), i, max_size=3),
                                        max_leaves=8), max_size=20)


@given(message=_message, members=st.integers(1, 40))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_group_send_script_builds_channels_redis_bodies(server: RedisServer, run: Any, message: dict, members: int) -> None:
    """Whatever the message and member count (fixmap/map16, fixarray/array16, str8 names), the
    body the script assembles is msgpack of the message plus ``__asgi_channel__``."""
    names = [f"specific.remoteproc!{i:0{40}d}" for i in range(members)]

    async def main() -> None:
        layer = RedisChannelLayer(hosts=[server.url])
        for name in names:
            await layer.group_add("prop", name)
        await layer.group_send("prop", {"type": "t", **message})
        await layer.close()

    server.command("FLUSHALL")
    run(main)
    (member,) = server.command("ZRANGE", "asgispecific.remoteproc!", 0, -1)
    assert msgpack.unpackb(member[12:]) == {"type": "t", **message, "__asgi_channel__": names}


# -- channels_redis' behaviour where code relies on it --------------------------------------------


def test_close_right_after_receive_returns_from_other_loops(server: RedisServer, reactor_loop: Any) -> None:
    """channels_redis' test_double_receive, repeated: send, receive and close_pools() each from
    a fresh event loop in another thread (async_to_sync), the layer reopening connections each
    time. Every close_pools() returns."""
    from asgiref.sync import async_to_sync

    for _ in range(10):
        layer = RedisChannelLayer(hosts=[server.url], capacity=3)
        sender = RedisChannelLayer(hosts=[server.url])

        async def send_and_close(channel: str, message: dict[str, Any]) -> None:
            await sender.send(channel, message)
            await sender.close_pools()

        async def listen(channel: str, kind: str) -> None:
            assert (await asyncio.wait_for(layer.receive(channel), 10))["type"] == kind
            await asyncio.wait_for(layer.close_pools(), 10)

        first, second = async_to_sync(layer.new_channel)(), async_to_sync(layer.new_channel)()
        async_to_sync(send_and_close)(first, {"type": "test.message.1"})
        async_to_sync(send_and_close)(second, {"type": "test.message.2"})
        async_to_sync(listen)(second, "test.message.2")
        async_to_sync(listen)(first, "test.message.1")
        async_to_sync(layer.flush)()
        async_to_sync(layer.close)()


def test_a_message_taken_by_this_process_is_delivered_after_its_expiry(server: RedisServer, run: Any) -> None:
    """Once the reader took a message out of Redis it is this process's: a consumer that comes
    late still gets it (channels_redis delivers what its receive buffer holds)."""

    async def main() -> None:
        sender = RedisChannelLayer(hosts=[server.url], expiry=0.5)
        receiver = RedisChannelLayer(hosts=[server.url], expiry=0.5)
        a, b = await receiver.new_channel(), await receiver.new_channel()
        waiting = asyncio.ensure_future(receiver.receive(a))  # the reader is blocked on the process key
        await sender.send(b, {"type": "m", "to": "b"})
        await sender.send(a, {"type": "m", "to": "a"})
        assert (await asyncio.wait_for(waiting, 5))["to"] == "a"  # b came in the same pop
        await until(lambda: receiver.stats()["local_queued"] == 1)
        await asyncio.sleep(0.8)  # b is older than expiry now, and still queued here
        assert (await recv(receiver, b))["to"] == "b"
        assert receiver.stats()["expired"] == 0
        await sender.close()
        await receiver.flush()
        await receiver.close()

    run(main)


def test_local_messages_expire_like_channels_redis_keys(server: RedisServer, run: Any) -> None:
    """A message sent to a channel of this process (never in Redis) is dropped as channels_redis
    drops it from its sorted set: when a newer message is put there after its expiry."""

    async def main() -> None:
        layer = RedisChannelLayer(hosts=[server.url], expiry=0.4)
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "m", "n": 1})
        await asyncio.sleep(0.5)
        await layer.send(channel, {"type": "m", "n": 2})
        assert (await recv(layer, channel))["n"] == 2
        assert layer.stats()["expired"] == 1
        await layer.send(channel, {"type": "m", "n": 3})
        await asyncio.sleep(0.5)  # nothing newer came: a receive still takes it (a BZPOPMIN would)
        assert (await recv(layer, channel))["n"] == 3
        await layer.close()

    run(main)


def test_channels_redis_names_and_errors(server: RedisServer, run: Any) -> None:
    async def main() -> None:
        layer = RedisChannelLayer(hosts=[server.url], prefix="test_prefix")
        assert layer._group_key("test_group") == b"test_prefix:group:test_group"
        with pytest.raises(AssertionError, match="another process"):  # channels_redis asserts here
            await layer.receive("not-client-prefix!local_part")
        with pytest.raises(ValueError, match="another process"):
            await layer.receive("not-client-prefix!local_part")
        member = layer.serialize({"a": True, "b": None, "c": {"d": []}})
        assert member[12:] == b"\x83\xa1a\xc3\xa1b\xc0\xa1c\x81\xa1d\x90"
        assert layer.deserialize(member) == {"a": True, "b": None, "c": {"d": []}}
        with pytest.warns(DeprecationWarning, match="require_valid_channel_name"):
            assert layer.valid_channel_name("ok.name") is True
        with pytest.warns(DeprecationWarning, match="require_valid_group_name"):
            with pytest.raises(TypeError, match="Group name must be"):
                layer.valid_group_name("bad name")
        buffer = layer.receive_buffer["buffered"]
        for i in range(150):
            buffer.put_nowait(i)
        assert buffer.full() and buffer.qsize() == 100
        assert [buffer.get_nowait() for _ in range(100)] == list(range(50, 150))
        await layer.close()

    run(main)


# -- shared marks (SMS de-duplication across processes) --------------------------------------------


def test_shared_dedup_across_two_layers_and_without_redis(server: RedisServer, run: Any) -> None:
    from gateway.layers import LayerRegistry
    from gateway.layers.marks import SharedMarks, shared_marks
    from gateway.protocols.sms.dedup import DedupCache, SharedDedup

    assert shared_marks(LayerRegistry({"default": {"backend": "memory"}}), "sms:x") is None

    async def main() -> None:
        one, two = (RedisChannelLayer(hosts=[server.url], prefix="p") for _ in range(2))
        registry = LayerRegistry({})
        registry.set("events", one)
        marks = shared_marks(registry, "sms:hooks")
        assert isinstance(marks, SharedMarks)
        first = SharedDedup(DedupCache(60, 10), marks)
        second = SharedDedup(DedupCache(60, 10), two.marks("sms:hooks"))
        assert not await first.check("tw:SM1", time.time())
        first.remember("tw:SM1", time.time())
        await until(lambda: server.command("EXISTS", "p:marks:sms:hooks:tw:SM1") == 1)
        assert 0 < server.command("PTTL", "p:marks:sms:hooks:tw:SM1") <= 60_000
        assert await second.check("tw:SM1", time.time())
        assert "tw:SM1" in second.local  # remembered here now: no round trip next time
        await one.close()
        await two.close()
        down = RedisChannelLayer(hosts=[f"redis://127.0.0.1:{free_port()}/0"], connect_timeout=1.0)
        alone = SharedDedup(DedupCache(60, 10), down.marks("sms:hooks"))
        assert not await alone.check("tw:SM2", time.time())  # unreachable: answered from memory
        alone.remember("tw:SM2", time.time())  # written in the background; the failure is logged
        assert await alone.check("tw:SM2", time.time())
        await down.marks("x").flush()
        await down.close()

    run(main)


def test_group_send_strict_raises_where_group_send_drops(server: RedisServer, run: Any) -> None:
    """The MQTT broker acknowledges a QoS 1/2 publish once ``group_send_strict`` returned: it
    must raise while the group's server is down, and deliver as ``group_send`` otherwise."""
    async def main() -> None:
        sender = RedisChannelLayer(hosts=[server.url], **FAST)
        receiver = RedisChannelLayer(hosts=[server.url], **FAST)
        remote = await receiver.new_channel()
        await receiver.group_add("g", remote)
        await sender.group_send_strict("g", {"type": "m", "n": 1})
        assert (await recv(receiver, remote))["n"] == 1
        server.kill()
        await until(lambda: sender.stats()["shards_down"] == 1)
        await sender.group_send("g", {"type": "m"})  # dropped, counted
        with pytest.raises(RedisLayerUnavailable):
            await sender.group_send_strict("g", {"type": "m"})
        assert sender.stats()["group_send_failed"] == 2
        await sender.close()
        await receiver.close()

    run(main)
