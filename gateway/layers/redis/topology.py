"""Where the layer's keys live: a ring of independent Redis servers, or a Redis Cluster.

The layer asks its :class:`Topology` for a key's name and for the commands of the server that
holds it, and tells it which keys this process wants to read; the topology owns the connections
and the blocking readers.

* :class:`ShardRing` (``hosts: [redis://..., ...]``, channels_redis' scheme): a name's server is
  ``consistent_hash(name, len(hosts))``; keys are exactly channels_redis' keys. Per server, one
  command connection and up to two readers (``process``, ``normal``), each reading its kind of
  keys on every server (channels_redis may have written them to any).
* :class:`ClusterKeyspace` (``hosts: [redis+cluster://...]``): keys carry a hash tag (``{...}``)
  so that what is read together shares a slot: all of a process's specific channels (tag: its
  client prefix), the normal channels of one of 16 buckets (tag: ``n<crc32(name) mod 16>``), one
  group (tag: its name). Commands go
  through a :class:`~gateway.layers.redis.cluster.ClusterClient` (one connection per primary);
  readers are per slot: one for this process's channels, one per bucket of the normal channels it
  waits on (at most 16), each following its slot to whichever node serves it.
"""

from __future__ import annotations

import asyncio
import itertools
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from gateway.layers.redis.commands import RedisCommands
from gateway.layers.redis.cluster import ClusterClient
from gateway.layers.redis.connection import ConnectionSettings, RedisConnection
from gateway.layers.redis.hashing import consistent_hash, key_slot
from gateway.layers.redis.hosts import RedisAddress
from gateway.layers.redis.reader import Reader
from gateway.layers.redis.scripts import COMMAND_SCRIPTS, DRAIN

__all__ = ["ClusterKeyspace", "LayerSide", "Shard", "ShardRing", "Topology"]

Pairs = list[tuple[bytes, bytes]]


class LayerSide(Protocol):
    """What a topology's readers and connections call back into the layer."""

    def reader_keys(self, kind: str) -> list[tuple[bytes, int]]:
        """The keys of ``kind`` (``process`` / ``normal``) to pop now, with how many to pop."""
        ...

    def dispatch(self, key: bytes, pairs: Pairs) -> None:
        """Popped ``(member, score)`` pairs of ``key``."""
        ...

    async def connected(self, commands: RedisCommands, owns_group: Callable[[str], bool], shard: int | None,
                        first: bool) -> None:
        """A command connection (re)opened: ``commands`` serve the groups ``owns_group`` accepts;
        ``shard`` is its ring index (``None`` on a cluster)."""
        ...


class Topology(Protocol):
    """The layer's view of its Redis servers (see the module documentation)."""

    cluster: bool
    #: Servers of a ring (channels_redis' ``ring_size``); 1 on a cluster.
    ring_size: int

    def channel_key(self, non_local: str) -> bytes:
        """The key of a normal channel, or of a process's specific channels (``...!``)."""
        ...

    def group_key(self, group: str) -> bytes:
        ...

    def for_key(self, non_local: str, key: bytes) -> RedisCommands:
        """The server holding a channel's key (sends to specific channels, group deliveries)."""
        ...

    def for_normal_send(self, name: str, key: bytes) -> RedisCommands:
        """Where a send to a normal channel goes (a ring cycles over its servers, as
        channels_redis does, so that its workers' first ``receive()`` finds the message)."""
        ...

    def for_group(self, group: str, key: bytes) -> RedisCommands:
        ...

    def group_shard(self, group: str) -> int | None:
        """The ring index of a group's server (``None`` on a cluster)."""
        ...

    async def shard_ready(self, shard: int) -> None:
        """Return once ring server ``shard``'s command connection is ready (it waits for a
        connection being opened, and for its set-up).

        Raises:
            RedisLayerUnavailable: the server is down.
        """
        ...

    def bucket(self, non_local: str, key: bytes) -> int:
        """Keys with the same bucket can be written by one script (same server / same slot)."""
        ...

    def for_bucket(self, bucket: int) -> RedisCommands:
        ...

    def notify(self, kind: str, key: bytes) -> None:
        """This process now wants to read ``key`` (a reader of ``kind`` must cover it)."""
        ...

    async def flush(self, pattern: str) -> None:
        """Delete every key matching ``pattern`` on every server."""
        ...

    def connections(self) -> list[RedisConnection]:
        ...

    def servers_down(self) -> int:
        ...

    def topology_counters(self) -> dict[str, int]:
        """The topology's own counters (a cluster's redirections and map changes)."""
        ...

    async def close(self) -> None:
        ...


#: Blocking pops a process reader keeps in flight (see reader.py).
PROCESS_READER_DEPTH = 8
#: Hash tags normal channels are spread over on a Redis Cluster (each a slot of its own).
NORMAL_BUCKETS = 16


def _wake_members(commands: RedisCommands) -> Callable[[list[bytes]], Awaitable[object]]:
    async def wake(keys: list[bytes]) -> object:
        return await asyncio.gather(*(commands.call("ZADD", key, 0, b"w") for key in keys))

    return wake


class Shard:
    """The connections of one layer instance to one Redis server (or Sentinel service) of a ring.

    The command connection (every send, group operation and flush; pipelined) opens at first
    use; a reader (``process`` or ``normal``) opens with its own connection when first needed.
    """

    def __init__(self, ring: ShardRing, index: int, address: RedisAddress) -> None:
        self.ring = ring
        self.index = index
        self.address = address
        side = ring.side

        def owns(group: str) -> bool:
            return consistent_hash(group, ring.ring_size) == index

        async def on_ready(commands: RedisCommands, first: bool) -> None:
            await side.connected(commands, owns, index, first)

        self.command = RedisConnection(address, "command", ring.reactor, ring.loop, ring.settings, COMMAND_SCRIPTS,
                                       on_ready=on_ready)
        self.readers: dict[str, Reader] = {}

    def reader(self, kind: str) -> Reader:
        """This shard's reader of ``kind``, created and started at first use."""
        reader = self.readers.get(kind)
        if reader is None:
            ring = self.ring
            connection = RedisConnection(self.address, f"{kind} reader", ring.reactor, ring.loop, ring.settings,
                                         (DRAIN,), reply_timeout=ring.block_timeout + ring.settings.command_timeout)
            wake_key = f"{ring.prefix}specific.{ring.client_prefix}!wake.{kind}".encode()
            side = ring.side
            reader = self.readers[kind] = Reader(
                kind, connection, _wake_members(self.command), wake_key, lambda: side.reader_keys(kind),
                side.dispatch, ring.counters, ring.batch, ring.block_timeout,
                depth=PROCESS_READER_DEPTH if kind == "process" else 1,
            )
            reader.start()
        return reader

    def connections(self) -> list[RedisConnection]:
        return [self.command, *(r.connection for r in self.readers.values())]

    async def close(self) -> None:
        await asyncio.gather(*(r.close() for r in self.readers.values()), return_exceptions=True)
        await self.command.close()

    def __repr__(self) -> str:
        return f"<Shard {self.index} {self.address.describe()}>"


class ShardRing:
    """:class:`Topology` over independent servers, channels_redis' keys and shard choice."""

    cluster = False

    def __init__(self, side: LayerSide, hosts: Sequence[RedisAddress], *, prefix: str, client_prefix: str,
                 reactor: Any, loop: asyncio.AbstractEventLoop, settings: ConnectionSettings, counters: dict[str, int],
                 batch: int, block_timeout: float) -> None:
        self.side = side
        self.prefix = prefix
        self.client_prefix = client_prefix
        self.reactor = reactor
        self.loop = loop
        self.settings = settings
        self.counters = counters
        self.batch = batch
        self.block_timeout = block_timeout
        self.ring_size = len(hosts)
        self.shards = [Shard(self, index, address) for index, address in enumerate(hosts)]
        self._send_cycle = itertools.cycle(range(self.ring_size))
        for shard in self.shards:
            shard.command.start()

    def channel_key(self, non_local: str) -> bytes:
        return (self.prefix + non_local).encode()

    def group_key(self, group: str) -> bytes:
        return f"{self.prefix}:group:{group}".encode()

    def for_key(self, non_local: str, key: bytes) -> RedisCommands:
        return self.shards[consistent_hash(non_local, self.ring_size)].command

    def for_normal_send(self, name: str, key: bytes) -> RedisCommands:
        return self.shards[next(self._send_cycle)].command

    def for_group(self, group: str, key: bytes) -> RedisCommands:
        return self.shards[consistent_hash(group, self.ring_size)].command

    def group_shard(self, group: str) -> int | None:
        return consistent_hash(group, self.ring_size)

    async def shard_ready(self, shard: int) -> None:
        command = self.shards[shard].command
        if command.protocol is None:
            await command.get()

    def bucket(self, non_local: str, key: bytes) -> int:
        return consistent_hash(non_local, self.ring_size)

    def for_bucket(self, bucket: int) -> RedisCommands:
        return self.shards[bucket].command

    def notify(self, kind: str, key: bytes) -> None:
        for shard in self.shards:  # channels_redis may write either kind to any shard
            shard.reader(kind).notify(key)

    async def flush(self, pattern: str) -> None:
        from gateway.layers.redis.scripts import FLUSH

        await asyncio.gather(*(shard.command.evalsha(FLUSH, [], [pattern]) for shard in self.shards))

    def connections(self) -> list[RedisConnection]:
        return [c for shard in self.shards for c in shard.connections()]

    def servers_down(self) -> int:
        return sum(1 for shard in self.shards if not shard.command.up)

    def topology_counters(self) -> dict[str, int]:
        return {}

    async def close(self) -> None:
        await asyncio.gather(*(shard.close() for shard in self.shards), return_exceptions=True)


def _tag(key: bytes) -> bytes:
    start = key.find(b"{")
    end = key.find(b"}", start + 1)
    return key[start + 1:end]


class ClusterKeyspace:
    """:class:`Topology` on a Redis Cluster (hash-tagged keys, per-slot readers)."""

    cluster = True
    ring_size = 1

    def __init__(self, side: LayerSide, seeds: Sequence[RedisAddress], *, prefix: str, client_prefix: str,
                 reactor: Any, loop: asyncio.AbstractEventLoop, settings: ConnectionSettings, counters: dict[str, int],
                 batch: int, block_timeout: float) -> None:
        self.side = side
        self.prefix = prefix
        self.client_prefix = client_prefix
        self.settings = settings
        self.counters = counters
        self.batch = batch
        self.block_timeout = block_timeout
        self.client = ClusterClient(seeds, reactor, loop, settings, COMMAND_SCRIPTS, on_node_ready=self._node_ready)
        self.readers: dict[tuple[str, int], Reader] = {}

    async def _node_ready(self, node: tuple[str, int], commands: RedisCommands, first: bool) -> None:
        client = self.client

        def owns(group: str) -> bool:
            return client.slots[key_slot(self.group_key(group))] == node

        await self.side.connected(commands, owns, None, first)

    def channel_key(self, non_local: str) -> bytes:
        if non_local.endswith("!"):  # a process's channels share the client prefix's slot
            tag = non_local[:-1].rpartition(".")[2] or non_local[:-1]
            return f"{self.prefix}{{{tag}}}{non_local}".encode()
        # Normal channels go to one of NORMAL_BUCKETS slots by name: a process waiting on many of
        # them needs one blocking reader per bucket at most, not one per channel.
        bucket = zlib.crc32(non_local.encode()) % NORMAL_BUCKETS
        return f"{self.prefix}{{n{bucket}}}{non_local}".encode()

    def group_key(self, group: str) -> bytes:
        return f"{self.prefix}:group:{{{group}}}".encode()

    def for_key(self, non_local: str, key: bytes) -> RedisCommands:
        return self.client.route(key)

    def for_normal_send(self, name: str, key: bytes) -> RedisCommands:
        return self.client.route(key)

    def for_group(self, group: str, key: bytes) -> RedisCommands:
        return self.client.route(key)

    def group_shard(self, group: str) -> int | None:
        return None

    async def shard_ready(self, shard: int) -> None:
        return None

    def bucket(self, non_local: str, key: bytes) -> int:
        return key_slot(key)

    def for_bucket(self, bucket: int) -> RedisCommands:
        return self.client.slot_route(bucket)

    def notify(self, kind: str, key: bytes) -> None:
        slot = key_slot(key)
        reader = self.readers.get((kind, slot))
        if reader is None:
            connection = self.client.slot_connection(slot, f"{kind} reader (slot {slot})",
                                                     self.block_timeout + self.settings.command_timeout, (DRAIN,))
            wake_key = f"{self.prefix}{{{_tag(key).decode()}}}wake.{self.client_prefix}.{kind}".encode()
            side = self.side

            def keys() -> list[tuple[bytes, int]]:
                return [(k, n) for k, n in side.reader_keys(kind) if key_slot(k) == slot]

            reader = self.readers[(kind, slot)] = Reader(
                kind, connection, _wake_members(self.client.slot_route(slot)), wake_key, keys, side.dispatch,
                self.counters, self.batch, self.block_timeout, depth=PROCESS_READER_DEPTH if kind == "process" else 1,
                on_redirect=self.client.redirected,
            )
            reader.start()
        reader.notify(key)

    async def flush(self, pattern: str) -> None:
        client = self.client
        await client.refresh()

        async def flush_node(node: tuple[str, int]) -> None:
            connection = client.node(node)
            keys = await connection.call("KEYS", pattern)
            await asyncio.gather(*(connection.call("DEL", key) for key in keys))

        await asyncio.gather(*(flush_node(node) for node in client.primaries()))

    def connections(self) -> list[RedisConnection]:
        return [*self.client.connections(), *(r.connection for r in self.readers.values())]

    def servers_down(self) -> int:
        return sum(1 for c in self.client.connections() if not c.up)

    def topology_counters(self) -> dict[str, int]:
        client = self.client
        return {"cluster_primaries": len(client.primaries()), "cluster_redirects": client.redirects,
                "cluster_refreshes": client.refreshes, "cluster_topology_changes": client.topology_changes}

    async def close(self) -> None:
        await asyncio.gather(*(r.close() for r in self.readers.values()), return_exceptions=True)
        await self.client.close()
