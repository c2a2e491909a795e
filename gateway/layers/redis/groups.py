"""Groups: membership, the group_send fan-out, and restoring memberships after Redis lost them.

``group_send`` on a ring, in the common configuration (msgpack, no encryption, no
``channel_capacity``), is one ``GROUP_SEND`` script on the group's shard: it reads the live
members, writes one message per Redis key (all members of one process share one entry whose
``__asgi_channel__`` lists them, as channels_redis does) and returns the members that live in
this process (delivered here, without Redis) and the members whose key is on another shard (one
``DELIVER`` script per such shard, concurrently). Otherwise (encrypted or JSON bodies, per-channel
capacities, or a Redis Cluster, where one script cannot write other slots' keys) the members are
read first (``GROUP_READ``) and the bodies built here: one more round trip, the deliveries of
each server (ring) or slot (cluster) in one script, all pipelined.

**Memberships after Redis lost its data.** This process remembers the memberships of its own
channels. When a command connection (re)opens, they are written again (with their join times)
on the server that holds their groups. And when a ring server comes back empty (its marker key
is gone), every process holds its ``group_send``\\ s to that server for the *restore window*
(``1.25 × reconnect_max_delay + 0.5 s`` after the first process noticed), the time every
process needs to reconnect and re-add its memberships, so that no message sent after the
restart goes to a group that is still being rebuilt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.layers.redis.errors import RedisLayerError
from gateway.layers.redis.local import OWNED, LocalChannels, snapshot
from gateway.layers.redis.scripts import DELIVER, EPOCH, GROUP_ADD, GROUP_READ, GROUP_SEND
from gateway.layers.redis.serializer import CHANNEL_KEY, Serializer, split_map

if TYPE_CHECKING:  # (importing them imports txredisapi, which the layer does at first use only)
    from gateway.layers.redis.commands import RedisCommands
    from gateway.layers.redis.topology import Topology

__all__ = ["GroupSettings", "Groups"]

logger = logging.getLogger("gateway.layers.redis")


def _ttl_ms(seconds: float) -> int:
    return int(seconds * 1000) + 1


@dataclass(frozen=True)
class GroupSettings:
    """The layer options groups need."""

    prefix: str
    expiry: float
    group_expiry: float
    capacity: int
    #: ``.<client prefix>!``: the end of the non-local part of this process's channel names.
    suffix: str
    #: One script may build the bodies (plain msgpack, one capacity for all channels).
    patchable: bool
    #: Seconds group_sends wait after a server came back empty (see the module documentation).
    restore_window: float


class Groups:
    """Group operations of one layer instance.

    Args:
        settings: the layer's options.
        topology: where keys live.
        local: this process's channel queues.
        serializer: message bodies.
        counters: the layer's counters.
        get_capacity: the capacity of a channel by name.
    """

    def __init__(self, settings: GroupSettings, topology: Topology, local: LocalChannels, serializer: Serializer,
                 counters: dict[str, int], get_capacity: Callable[[str], int]) -> None:
        self.settings = settings
        self.topology = topology
        self.local = local
        self.serializer = serializer
        self.counters = counters
        self.get_capacity = get_capacity
        #: Groups this process's channels joined: {group: {channel: join time}}.
        self.memberships: dict[str, dict[str, float]] = {}
        #: Ring index -> time until which group_sends to that server wait.
        self.held_until: dict[int, float] = {}
        self.marker_key = f"gateway-layer:{settings.prefix}:epoch".encode()

    def is_local(self, channel: str) -> bool:
        bang = channel.find("!")
        return bang >= 0 and channel[: bang + 1].endswith(self.settings.suffix)

    @staticmethod
    def non_local_name(name: str) -> str:
        index = name.find("!")
        return name if index < 0 else name[: index + 1]

    # -- membership -----------------------------------------------------------------------

    async def add(self, group: str, channel: str) -> None:
        now = time.time()
        key = self.topology.group_key(group)
        await self.topology.for_group(group, key).evalsha(
            GROUP_ADD, [key], [now, channel, _ttl_ms(self.settings.group_expiry)])
        if self.is_local(channel):
            self.memberships.setdefault(group, {})[channel] = now

    async def discard(self, group: str, channel: str) -> None:
        members = self.memberships.get(group)
        if members is not None:
            members.pop(channel, None)
            if not members:
                del self.memberships[group]
        key = self.topology.group_key(group)
        await self.topology.for_group(group, key).call("ZREM", key, channel)

    def clear(self) -> None:
        self.memberships.clear()

    # -- sending ---------------------------------------------------------------------------

    def _deliver_locally(self, names: list[str], message: dict[str, Any], now: float) -> int:
        """Queue ``message`` on local channels; returns how many were full."""
        if not names:
            return 0
        shared, mode = snapshot(message)
        if len(names) == 1:
            mode = OWNED
        full = self.local.put_many(names, shared, now, mode)
        self.counters["local_deliveries"] += len(names) - full
        return full

    def _buckets(self, names: list[str]) -> dict[int, dict[bytes, list[str]]]:
        """Members by bucket (server or slot), then by Redis key, in member order."""
        topology = self.topology
        result: dict[int, dict[bytes, list[str]]] = defaultdict(dict)
        keys: dict[str, tuple[int, bytes]] = {}
        for name in names:
            non_local = self.non_local_name(name)
            found = keys.get(non_local)
            if found is None:
                key = topology.channel_key(non_local)
                found = keys[non_local] = (topology.bucket(non_local, key), key)
            result[found[0]].setdefault(found[1], []).append(name)
        return result

    async def _deliver_remote(self, bucket: int, keys: dict[bytes, list[str]], message: dict[str, Any],
                              now: float) -> tuple[int, int]:
        """One DELIVER script for one bucket; returns (members queued, members dropped)."""
        members, capacities = [], []
        for names in keys.values():
            body = dict(message)
            body[CHANNEL_KEY] = names
            members.append(self.serializer.encode(body))
            capacities.append(self.get_capacity(names[0]))
        total = sum(len(names) for names in keys.values())
        expiry = self.settings.expiry
        try:
            out = await self.topology.for_bucket(bucket).evalsha(
                DELIVER, list(keys), [now, now - expiry, _ttl_ms(expiry), *members, *capacities])
        except RedisLayerError as exc:
            logger.warning("group_send: %d member(s) not reached: %s", total, exc)
            return 0, total
        self.counters["expired"] += out[0]
        names_by_index = list(keys.values())
        dropped = sum(len(names_by_index[i - 1]) for i in out[1:])
        return total - dropped, dropped

    async def send(self, group: str, message: dict[str, Any], strict: bool = False) -> None:
        counters = self.counters
        settings = self.settings
        topology = self.topology
        counters["group_sends"] += 1
        shard = topology.group_shard(group)
        gkey = topology.group_key(group)
        command = topology.for_group(group, gkey)
        try:
            if shard is not None:
                await topology.shard_ready(shard)  # a reconnection's set-up may start a hold
                if self.held_until:
                    await self._wait_for_restore(shard)
            now = time.time()
            if settings.patchable and shard is not None:
                entries_count, entries = split_map(self.serializer.dumps(message))
                queued, full, expired, local_text, others = await command.evalsha(GROUP_SEND, [gkey], [
                    now, now - settings.group_expiry, now - settings.expiry, _ttl_ms(settings.expiry), settings.prefix,
                    self.serializer.random_prefix(), entries_count, entries, settings.suffix, topology.ring_size,
                    shard, settings.capacity,
                ])
                counters["expired"] += expired
                local = b"\n".join(local_text).decode().split("\n") if local_text else []
                remote = b"\n".join(others).decode().split("\n") if others else []
                members = queued + full + len(local) + len(remote)
            else:
                names = [m.decode() for m in await command.evalsha(GROUP_READ, [gkey], [now - settings.group_expiry])]
                local = [n for n in names if self.is_local(n)]
                remote = [n for n in names if not self.is_local(n)]
                queued = full = 0
                members = len(names)
        except RedisLayerError as exc:
            counters["group_send_failed"] += 1
            if strict:
                raise
            logger.warning("group_send to %r dropped: %s", group, exc)
            return
        local_full = self._deliver_locally(local, message, now)
        queued += len(local) - local_full
        full += local_full
        if remote:
            results = await asyncio.gather(*(
                self._deliver_remote(bucket, keys, message, now) for bucket, keys in self._buckets(remote).items()))
            for ok, dropped in results:
                queued += ok
                full += dropped
        counters["group_delivered"] += queued
        if full:
            counters["group_dropped"] += full
            counters["over_capacity"] += full
            # channels_redis' message (it logs at INFO; here DEBUG, so a stuck consumer cannot
            # flood the log: the counters say it)
            logger.debug("%s of %s channels over capacity in group %s", full, members, group)

    async def _wait_for_restore(self, shard: int) -> None:
        until = self.held_until.get(shard)
        if until is None:
            return
        wait = until - time.time()
        if wait <= 0:
            del self.held_until[shard]
            return
        self.counters["group_sends_held"] += 1
        await asyncio.sleep(wait)

    # -- after a (re)connection ---------------------------------------------------------------

    async def connected(self, commands: RedisCommands, owns: Callable[[str], bool], shard: int | None,
                        first: bool) -> None:
        """A command connection (re)opened: notice a server that lost its data, then re-add this
        process's memberships of the groups it holds (one pipelined batch)."""
        if shard is not None:
            await self._check_marker(commands, shard, first)
        cutoff = time.time() - self.settings.group_expiry
        pending = []
        for group, members in list(self.memberships.items()):
            if not owns(group):
                continue
            key = self.topology.group_key(group)
            for channel, joined in list(members.items()):
                if joined <= cutoff:
                    del members[channel]
                    continue
                ttl = _ttl_ms(joined + self.settings.group_expiry - time.time())
                pending.append(commands.evalsha(GROUP_ADD, [key], [joined, channel, ttl]))
            if not members:
                del self.memberships[group]
        if pending:
            results = await asyncio.gather(*pending, return_exceptions=True)
            restored = sum(1 for r in results if not isinstance(r, BaseException))
            self.counters["memberships_restored"] += restored
            if not first:
                logger.warning("Redis: re-added %d group membership(s) of this process", restored)

    async def _check_marker(self, commands: RedisCommands, shard: int, first: bool) -> None:
        now = time.time()
        value = await commands.evalsha(EPOCH, [self.marker_key], [f"{'fresh' if first else 'lost'}:{now:.6f}"])
        text = value.decode() if isinstance(value, bytes) else str(value)
        kind, _, stamp = text.partition(":")
        try:
            since = float(stamp)
        except ValueError:
            return
        until = since + self.settings.restore_window
        if kind == "lost" and until > now:
            self.held_until[shard] = until
            logger.warning("Redis shard %d lost its data: group_send to it waits %.1f s for every process to "
                           "re-add its memberships", shard, until - now)
