"""The Redis layer and the cluster client on a real Redis Cluster (3 primaries, 3 replicas,
started on free ports by the tests): the layer contract, hash-tagged keys, MOVED and ASK, a
primary SIGKILLed under traffic, and the client contract other Redis users (the MQTT store) use."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.layers.redis import RedisChannelLayer, RedisLayerUnavailable, key_slot
from tests.unit.layers.conftest import on_reactor, recv, until
from tests.unit.layers.redis_server import REDIS_SERVER, RedisCluster, RedisServer, command
from tests.unit.layers.test_redis_contract import RedisContract

pytestmark = pytest.mark.redis


def _start_cluster(tmp: Path) -> RedisCluster:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    return RedisCluster(tmp).start()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A 3-primary/3-replica cluster shared by the tests that do not break it."""
    started = _start_cluster(tmp_path_factory.mktemp("cluster"))
    yield started
    started.stop()


@pytest.fixture()
def own_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """A cluster of the test's own (one it may kill nodes of)."""
    started = _start_cluster(tmp_path)
    yield started
    started.stop()


class TestClusterRedisLayerContract(RedisContract):
    @pytest.fixture(autouse=True)
    def _setup(self, cluster: RedisCluster, reactor_loop: asyncio.AbstractEventLoop) -> None:  # type: ignore[override]
        self.loop = reactor_loop
        self.hosts = cluster.urls[:2]


def _run(loop: asyncio.AbstractEventLoop, factory: Callable[[], Awaitable[Any]], timeout: float = 120) -> Any:
    return on_reactor(loop, factory, timeout)


def _keys(cluster: RedisCluster, pattern: str = "asgi*") -> dict[bytes, int]:
    """Every key matching ``pattern`` with the port of the primary holding it."""
    found = {}
    for node in cluster.primaries():
        for key in node.command("KEYS", pattern):
            found[key] = node.port
    return found


def test_keys_are_hash_tagged_and_spread_over_the_primaries(cluster: RedisCluster, reactor_loop: Any) -> None:
    async def main() -> None:
        sender = RedisChannelLayer(hosts=cluster.urls)
        # channels of twelve other processes (nobody reads them: their keys stay)
        processes = [f"proc{i:02d}x" for i in range(12)]
        for process in processes:
            await sender.send(f"specific.{process}!a", {"type": "m"})
            await sender.send(f"thumbnails.{process}!b", {"type": "m"})
            await sender.group_add("room", f"specific.{process}!a")
        await sender.send("jobs.normal", {"type": "m"})
        await sender.group_send("room", {"type": "m", "grouped": True})
        keys = _keys(cluster)
        for process in processes:  # a process's channel keys (any new_channel prefix) share one slot
            own = sorted(k for k in keys if f"{{{process}}}".encode() in k)
            assert own == [f"asgi{{{process}}}specific.{process}!".encode(),
                           f"asgi{{{process}}}thumbnails.{process}!".encode()]
            assert len({key_slot(k) for k in own}) == 1
        bucket = __import__("zlib").crc32(b"jobs.normal") % 16
        assert b"asgi:group:{room}" in keys and f"asgi{{n{bucket}}}jobs.normal".encode() in keys
        assert len({keys[k] for k in keys if b"specific" in k}) == 3  # spread over the three primaries
        # and real processes read theirs
        receivers = [RedisChannelLayer(hosts=cluster.urls) for _ in range(6)]
        channels = [await layer.new_channel() for layer in receivers]
        for channel in channels:
            await sender.group_add("room2", channel)
        await sender.group_send("room2", {"type": "m", "n": 2})
        for layer, channel in zip(receivers, channels):
            assert (await recv(layer, channel))["n"] == 2
        assert (await recv(receivers[0], "jobs.normal"))["type"] == "m"
        await sender.flush()
        assert _keys(cluster) == {}
        for layer in [sender, *receivers]:
            await layer.close()

    _run(reactor_loop, main)


def _migrate(cluster: RedisCluster, slot: int, source: RedisServer, target: RedisServer, keys: list[bytes],
             finish: bool) -> None:
    """Move ``keys`` of ``slot`` from ``source`` to ``target``; ``finish`` hands the slot over."""
    target_id = target.command("CLUSTER", "MYID").decode()
    source_id = source.command("CLUSTER", "MYID").decode()
    assert target.command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id) == "OK"
    assert source.command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id) == "OK"
    for key in keys:
        assert source.command("MIGRATE", "127.0.0.1", target.port, key, 0, 5000) == "OK"
    if finish:
        for node in cluster.primaries():
            node.command("CLUSTER", "SETSLOT", slot, "NODE", target_id)


def test_moved_and_ask_are_followed(own_cluster: RedisCluster, reactor_loop: Any) -> None:
    """ASK while a slot migrates (the key already moved: the source sends us to the target for
    this one command), then MOVED once the slot was handed over."""
    cluster = own_cluster

    async def main() -> None:
        sender = RedisChannelLayer(hosts=cluster.urls[:1])
        await sender.send("migrating.channel", {"type": "m", "n": 0})  # the map is known now
        key = f"asgi{{n{__import__('zlib').crc32(b'migrating.channel') % 16}}}migrating.channel".encode()
        slot = key_slot(key)
        source = cluster.owner(slot)
        target = next(node for node in cluster.primaries() if node is not source)
        _migrate(cluster, slot, source, target, [key], finish=False)
        await sender.send("migrating.channel", {"type": "m", "n": 1})  # ASK -> target
        assert sender.stats()["cluster_redirects"] == 1
        for node in cluster.primaries():
            node.command("CLUSTER", "SETSLOT", slot, "NODE", target.command("CLUSTER", "MYID").decode())
        changes = sender.stats()["cluster_topology_changes"]
        await sender.send("migrating.channel", {"type": "m", "n": 2})  # MOVED -> the map follows
        assert sender.stats()["cluster_redirects"] == 2
        assert sender.stats()["cluster_topology_changes"] > changes
        await sender.send("migrating.channel", {"type": "m", "n": 3})  # straight to the new owner
        assert sender.stats()["cluster_redirects"] == 2
        receiver = RedisChannelLayer(hosts=cluster.urls[3:4])
        assert [(await recv(receiver, "migrating.channel"))["n"] for _ in range(4)] == [0, 1, 2, 3]
        await sender.close()
        await receiver.close()

    _run(reactor_loop, main)


def test_a_primary_killed_under_traffic_fails_over_and_the_stream_resumes(own_cluster: RedisCluster,
                                                                          reactor_loop: Any) -> None:
    """SIGKILL the primary holding a consumer's channels while a 200 msg/s stream flows to them:
    sends fail fast (RedisLayerUnavailable: nothing accepted is dropped silently) until the
    replica is promoted, then resume by themselves; the consumer's reader follows its slot to
    the new primary. A second stream goes to a key of the same slot that nobody reads, to see
    what the promoted replica holds. Lost: only messages accepted just before the kill (the
    primary acknowledged them before they reached its replica, or they were unread there)."""
    cluster = own_cluster
    options = {"reconnect_max_delay": 0.5, "connect_timeout": 2.0, "command_timeout": 3.0, "capacity": 10_000}

    async def main() -> None:
        consumer = RedisChannelLayer(hosts=cluster.urls, **options)
        sender = RedisChannelLayer(hosts=cluster.urls, **options)
        channel = await consumer.new_channel()
        parked = f"parked.{consumer.client_prefix}!p"  # the consumer's slot; never read
        parked_key = f"asgi{{{consumer.client_prefix}}}parked.{consumer.client_prefix}!".encode()
        slot = key_slot(parked_key)
        victim = cluster.owner(slot)
        got: list[int] = []

        async def consume() -> None:
            while True:
                message = await consumer.receive(channel)
                if message.get("end"):
                    return
                got.append(message["seq"])

        task = asyncio.ensure_future(consume())
        accepted: list[tuple[int, float]] = []
        parked_accepted = 0
        refused: list[float] = []
        started = time.monotonic()
        killed_at = None
        seq = 0
        while time.monotonic() - started < 30:
            now = time.monotonic() - started
            if killed_at is None and now >= 1.0:
                victim.kill()
                killed_at = now
            try:
                await sender.send(channel, {"type": "m", "seq": seq})
                accepted.append((seq, now))
                await sender.send(parked, {"type": "m", "seq": seq})
                parked_accepted += 1
            except RedisLayerUnavailable:
                refused.append(now)
            seq += 1
            if killed_at is not None and refused and now - refused[-1] > 1.0:
                break  # sending resumed a second ago
            await asyncio.sleep(max(0.0, started + seq / 200 - time.monotonic()))
        assert killed_at is not None and refused, "the kill did not interrupt sending"
        await sender.send(channel, {"type": "m", "end": True})
        await asyncio.wait_for(task, 30)
        window = refused[-1] - refused[0]
        sent = [n for n, _ in accepted]
        after = [n for n, t in accepted if t > refused[-1]]
        lost = sorted(set(sent) - set(got))
        assert got == sorted(got) and set(got) <= set(sent)
        assert not set(lost) & set(after), "lost after the failover"
        assert all(t <= killed_at for n, t in accepted if n in lost)  # only what was sent before the kill
        assert len(lost) <= 20, lost
        new_owner = cluster.owner(slot)
        assert new_owner is not victim
        parked_lost = parked_accepted - new_owner.command("ZCARD", parked_key)
        assert 0 <= parked_lost <= 20
        print(f"failover: sends refused for {window:.2f} s ({len(refused)} sends); stream: {len(lost)} of "
              f"{len(sent)} accepted lost; unread key: {parked_lost} of {parked_accepted} accepted missing "
              f"on the promoted replica")
        await sender.close()
        await consumer.flush()
        await consumer.close()

    _run(reactor_loop, main, timeout=180)


def test_cluster_client_for_other_redis_users(cluster: RedisCluster, reactor_loop: Any) -> None:
    """The RedisClient contract (what the MQTT broker's store can use): commands and scripts
    routed by key, hash-tagged keys together."""
    from gateway.layers.redis.client import RedisClient, hash_tagged, open_client
    from gateway.layers.redis.connection import ConnectionSettings
    from gateway.layers.redis.scripts import Script

    swap = Script("swap", "local v = redis.call('GET', KEYS[1]); redis.call('SET', KEYS[2], v); return v")

    async def main() -> None:
        client = open_client(cluster.urls[:1], settings=ConnectionSettings(reconnect_max_delay=0.5), scripts=(swap,))
        assert isinstance(client, RedisClient) and client.cluster
        keys = [hash_tagged("gateway-mqtt", "default", f"k{i}") for i in range(50)]
        assert keys[0] == b"gateway-mqtt:{default}:k0" and len({key_slot(k) for k in keys}) == 1
        spread = [f"spread-{i}".encode() for i in range(50)]
        await asyncio.gather(*(client.execute(k, "SET", k, k) for k in spread))
        assert await asyncio.gather(*(client.execute(k, "GET", k) for k in spread)) == spread
        assert len({command(cluster.owner(key_slot(k)).port, "CLUSTER", "MYID") for k in spread}) == 3
        await client.execute(keys[0], "SET", keys[0], b"value")
        assert await client.evalsha(swap, [keys[0], keys[1]], []) == b"value"
        assert await client.execute(keys[1], "GET", keys[1]) == b"value"
        await asyncio.gather(*(client.execute(k, "DEL", k) for k in [*spread, *keys[:2]]))
        await client.close()

    _run(reactor_loop, main)


def test_server_client_is_the_same_contract(reactor_loop: Any, server: RedisServer) -> None:
    from gateway.layers.redis.client import RedisClient, open_client

    async def main() -> None:
        client = open_client([server.url])
        assert isinstance(client, RedisClient) and not client.cluster
        await client.execute(b"k", "SET", b"k", 7)
        assert await client.execute(b"k", "GET", b"k") == b"7"
        await client.close()
        with pytest.raises(ValueError, match="one server URL"):
            open_client([server.url, server.url])

    _run(reactor_loop, main)


def test_memberships_survive_a_failover(own_cluster: RedisCluster, reactor_loop: Any) -> None:
    """The group lives on a primary that is killed; after the failover, a group_send reaches
    the member (replicated, or re-added by its process when it connected to the new primary)."""
    cluster = own_cluster

    async def main() -> None:
        consumer = RedisChannelLayer(hosts=cluster.urls, reconnect_max_delay=0.5, connect_timeout=2.0)
        sender = RedisChannelLayer(hosts=cluster.urls, reconnect_max_delay=0.5, connect_timeout=2.0)
        channel = await consumer.new_channel()
        await consumer.group_add("survivors", channel)
        victim = cluster.owner(key_slot(b"asgi:group:{survivors}"))
        victim.kill()
        await asyncio.get_running_loop().run_in_executor(None, cluster.wait_ok, 30.0)
        deadline = time.monotonic() + 20
        while True:
            before = sender.counters["group_delivered"]
            await sender.group_send("survivors", {"type": "m", "after": "failover"})
            if sender.counters["group_delivered"] > before:
                break
            assert time.monotonic() < deadline, "group_send never reached the member again"
            await asyncio.sleep(0.1)
        assert (await recv(consumer, channel, 10))["after"] == "failover"
        await until(lambda: consumer.stats()["connections_down"] == 0, 20)
        await sender.close()
        await consumer.close()

    _run(reactor_loop, main)
