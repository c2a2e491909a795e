"""Interoperation with the real channels_redis 4.x ``RedisChannelLayer`` on one redis-server.

channels_redis runs on this test's own event loop (as a Django process would); the gateway layer
runs on the Twisted reactor's loop in another thread. They share only Redis, so every message
here crossed the wire in one layer's format and was read by the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
import pytest

from gateway.layers.redis import RedisChannelLayer, consistent_hash
from tests.unit.layers.redis_server import RedisServer

channels_redis_core = pytest.importorskip("channels_redis.core")
pytestmark = pytest.mark.redis

TIMEOUT = 5.0


@pytest.fixture(autouse=True)
def _reactor(reactor_loop: asyncio.AbstractEventLoop) -> None:
    """The gateway layer needs the reactor running (in its thread)."""


def run(redis_server: RedisServer, scenario: Callable[[Any, Any], Awaitable[None]], hosts: list[str] | None = None,
        **options: Any) -> None:
    hosts = hosts or [redis_server.url]

    async def main() -> None:
        theirs = channels_redis_core.RedisChannelLayer(hosts=hosts, **options)
        ours = RedisChannelLayer(hosts=hosts, **options)
        try:
            await scenario(ours, theirs)
        finally:
            await ours.flush()
            await ours.close()
            await theirs.close_pools()

    asyncio.run(main())


async def recv(layer: Any, channel: str) -> dict[str, Any]:
    return await asyncio.wait_for(layer.receive(channel), TIMEOUT)


def test_their_group_send_reaches_our_consumer(redis_server: RedisServer) -> None:
    async def scenario(ours: RedisChannelLayer, theirs: Any) -> None:
        mine = await ours.new_channel()
        await ours.group_add("chat", mine)
        await theirs.group_send("chat", {"type": "chat.message", "text": "from django", "raw": b"\x00\xff"})
        assert await recv(ours, mine) == {"type": "chat.message", "text": "from django", "raw": b"\x00\xff"}

    run(redis_server, scenario)


def test_our_group_send_reaches_their_consumer(redis_server: RedisServer) -> None:
    async def scenario(ours: RedisChannelLayer, theirs: Any) -> None:
        a, b = await theirs.new_channel(), await theirs.new_channel()
        mine = await ours.new_channel()
        for name in (a, b):
            await theirs.group_add("room", name)
        await ours.group_add("room", mine)
        await ours.group_send("room", {"type": "chat.message", "n": [1, {"x": None}]})
        expected = {"type": "chat.message", "n": [1, {"x": None}]}
        assert await recv(theirs, a) == expected
        assert await recv(theirs, b) == expected
        assert await recv(ours, mine) == expected
        assert ours.stats()["group_delivered"] == 3

    run(redis_server, scenario)


def test_specific_channels_both_ways(redis_server: RedisServer) -> None:
    async def scenario(ours: RedisChannelLayer, theirs: Any) -> None:
        mine, their_channel = await ours.new_channel(), await theirs.new_channel()
        await theirs.send(mine, {"type": "to.gateway", "v": 1})
        await ours.send(their_channel, {"type": "to.django", "v": 2})
        assert await recv(ours, mine) == {"type": "to.gateway", "v": 1}
        assert await recv(theirs, their_channel) == {"type": "to.django", "v": 2}

    run(redis_server, scenario)


def test_normal_channels_both_ways(redis_server: RedisServer) -> None:
    async def scenario(ours: RedisChannelLayer, theirs: Any) -> None:
        for i in range(3):
            await theirs.send("worker.jobs", {"type": "job", "i": i})
        assert [(await recv(ours, "worker.jobs"))["i"] for _ in range(3)] == [0, 1, 2]
        for i in range(3):
            await ours.send("worker.results", {"type": "result", "i": i})
        assert [(await recv(theirs, "worker.results"))["i"] for _ in range(3)] == [0, 1, 2]

    run(redis_server, scenario)


def test_mixed_group_from_both_sides_with_encryption(redis_server: RedisServer) -> None:
    async def scenario(ours: RedisChannelLayer, theirs: Any) -> None:
        mine, their_channel = await ours.new_channel(), await theirs.new_channel()
        await ours.group_add("secret", their_channel)
        await theirs.group_add("secret", mine)
        await ours.group_send("secret", {"type": "m", "from": "gateway"})
        stored = redis_server.command("ZRANGE", f"asgispecific.{theirs.client_prefix}!", 0, -1)
        assert len(stored) == 1 and b"gateway" not in stored[0] and stored[0][12:].startswith(b"gAAAAA")
        await theirs.group_send("secret", {"type": "m", "from": "django"})
        assert [(await recv(ours, mine))["from"] for _ in range(2)] == ["gateway", "django"]
        assert [(await recv(theirs, their_channel))["from"] for _ in range(2)] == ["gateway", "django"]

    run(redis_server, scenario, symmetric_encryption_keys=["new-key", "old-key"])


def test_key_rotation_ours_decrypts_their_old_key(redis_server: RedisServer) -> None:
    async def main() -> None:
        old = channels_redis_core.RedisChannelLayer(hosts=[redis_server.url], symmetric_encryption_keys=["old-key"])
        ours = RedisChannelLayer(hosts=[redis_server.url], symmetric_encryption_keys=["new-key", "old-key"])
        try:
            mine = await ours.new_channel()
            await old.send(mine, {"type": "m", "v": "rotated"})
            assert (await recv(ours, mine))["v"] == "rotated"
        finally:
            await ours.flush()
            await ours.close()
            await old.close_pools()

    asyncio.run(main())


def test_sharded_group_send_both_ways(redis_server: RedisServer) -> None:
    """Two shards: our Lua consistent hash must pick the shards channels_redis reads from."""
    hosts = [f"redis://127.0.0.1:{redis_server.port}/{db}" for db in (3, 4, 5)]

    async def scenario(ours: RedisChannelLayer, theirs: Any) -> None:
        their_channels = [await theirs.new_channel(f"p{i}") for i in range(8)]
        my_channels = [await ours.new_channel(f"q{i}") for i in range(8)]
        for name in their_channels + my_channels:
            await theirs.group_add("wide", name)
        await ours.group_send("wide", {"type": "m", "from": "gateway"})
        await theirs.group_send("wide", {"type": "m", "from": "django"})
        for name in their_channels:
            assert [(await recv(theirs, name))["from"] for _ in range(2)] == ["gateway", "django"]
        for name in my_channels:
            assert [(await recv(ours, name))["from"] for _ in range(2)] == ["gateway", "django"]
        assert any(consistent_hash(n, 3) != consistent_hash(ours.non_local_name(n), 3) for n in my_channels)
        for name in my_channels:  # channels_redis hashes the full name here (its bug): any shard
            await theirs.send(name, {"type": "m", "from": "their send"})
        for name in my_channels:
            assert (await recv(ours, name))["from"] == "their send"
        shards = {consistent_hash(ours.non_local_name(n), 3) for n in their_channels + my_channels}
        assert shards == {0, 1, 2}  # the names really spread over the three shards

    run(redis_server, scenario, hosts=hosts)


def test_wire_format_matches_channels_redis(redis_server: RedisServer) -> None:
    """Our members decode the way channels_redis decodes them, under the keys it reads."""

    async def scenario(ours: RedisChannelLayer, theirs: Any) -> None:
        target = f"specific.{theirs.client_prefix}!abc"
        await ours.send(target, {"type": "m", "k": "v"})
        await ours.send("plain", {"type": "p"})
        await ours.group_add("g", "plain")
        key = f"asgispecific.{theirs.client_prefix}!"
        assert redis_server.command("TYPE", key) == "zset"
        member, score = redis_server.command("ZRANGE", key, 0, -1, "WITHSCORES")
        assert msgpack.unpackb(member[12:]) == {"type": "m", "k": "v", "__asgi_channel__": target}
        assert theirs.deserialize(member) == {"type": "m", "k": "v", "__asgi_channel__": target}
        assert abs(float(score) - __import__("time").time()) < 5
        assert redis_server.command("TYPE", "asgiplain") == "zset"
        assert redis_server.command("ZRANGE", "asgi:group:g", 0, -1) == [b"plain"]
        # 60 s, as channels_redis sets it; Redis' cached clock can make PTTL read a millisecond over.
        assert 50_000 < redis_server.command("PTTL", key) <= 60_001
        await ours.group_send("g", {"type": "grouped"})
        members = redis_server.command("ZRANGE", "asgiplain", 0, -1)
        assert theirs.deserialize(members[-1]) == {"type": "grouped", "__asgi_channel__": ["plain"]}

    run(redis_server, scenario)


def test_json_serializer_interop(redis_server: RedisServer) -> None:
    async def scenario(ours: RedisChannelLayer, theirs: Any) -> None:
        mine, their_channel = await ours.new_channel(), await theirs.new_channel()
        await theirs.group_add("j", mine)
        await theirs.group_add("j", their_channel)
        await ours.group_send("j", {"type": "m", "list": [1, "a"]})
        assert await recv(ours, mine) == {"type": "m", "list": [1, "a"]}
        assert await recv(theirs, their_channel) == {"type": "m", "list": [1, "a"]}

    run(redis_server, scenario, serializer_format="json")


def test_flush_removes_what_both_wrote(redis_server: RedisServer) -> None:
    async def scenario(ours: RedisChannelLayer, theirs: Any) -> None:
        await theirs.send("left.over", {"type": "m"})
        await theirs.group_add("gone", "left.over")
        await ours.flush()
        assert redis_server.command("KEYS", "asgi*") == []

    run(redis_server, scenario)


def test_two_hosts_our_normal_send_is_found_by_their_first_receive(redis_server: RedisServer) -> None:
    """channels_redis' workers read normal channels host by host, one host per receive(),
    starting at the first; its senders write them the same way. Ours too: a worker's first
    receive() finds our first send, its second our second, and so on."""
    hosts = [f"redis://127.0.0.1:{redis_server.port}/{db}" for db in (10, 11)]

    async def scenario(ours: RedisChannelLayer, theirs: Any) -> None:
        for i in range(4):
            await ours.send("two.hosts.jobs", {"type": "job", "i": i})
            assert (await asyncio.wait_for(theirs.receive("two.hosts.jobs"), 3))["i"] == i

    run(redis_server, scenario, hosts=hosts)
