"""Groups: membership, the group_send fan-out, and restoring memberships after a Redis restart.

``group_send`` in the common configuration (msgpack, no encryption, no ``channel_capacity``) is
one ``GROUP_SEND`` script on the group's shard: it reads the live members, writes one message per
Redis key (all members of one process share one entry whose ``__asgi_channel__`` lists them, as
channels_redis does) and returns the members that live in this process (delivered here, without
Redis) and the members whose key is on another shard (one ``DELIVER`` script per such shard,
concurrently). Otherwise (encrypted or JSON bodies, per-channel capacities) the members are read
first (``GROUP_READ``) and the bodies built here: two round trips on the group's shard.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from gateway.layers.redis.errors import RedisLayerError
from gateway.layers.redis.local import OWNED, snapshot
from gateway.layers.redis.scripts import DELIVER, GROUP_ADD, GROUP_READ, GROUP_SEND
from gateway.layers.redis.serializer import CHANNEL_KEY, split_map

if TYPE_CHECKING:
    from gateway.layers.redis.layer import RedisChannelLayer

__all__ = ["give_back", "group_add", "group_discard", "group_send", "restore_memberships"]

logger = logging.getLogger("gateway.layers.redis")


def _ttl_ms(seconds: float) -> int:
    return int(seconds * 1000) + 1


async def group_add(layer: RedisChannelLayer, group: str, channel: str) -> None:
    from gateway.layers.redis.layer import consistent_hash

    now = time.time()
    await layer._command(consistent_hash(group, layer.ring_size)).evalsha(
        GROUP_ADD, [layer.group_key(group)], [now, channel, _ttl_ms(layer.group_expiry)])
    if layer.is_local(channel):
        layer.memberships.setdefault(group, {})[channel] = now


async def group_discard(layer: RedisChannelLayer, group: str, channel: str) -> None:
    from gateway.layers.redis.layer import consistent_hash

    members = layer.memberships.get(group)
    if members is not None:
        members.pop(channel, None)
        if not members:
            del layer.memberships[group]
    await layer._command(consistent_hash(group, layer.ring_size)).call("ZREM", layer.group_key(group), channel)


def _deliver_locally(layer: RedisChannelLayer, names: list[str], message: dict[str, Any], now: float) -> int:
    """Queue ``message`` on local channels; returns how many were full."""
    if not names:
        return 0
    shared, mode = snapshot(message)
    if len(names) == 1:
        mode = OWNED
    full = layer.local.put_many(names, shared, now, mode)
    layer.counters["local_deliveries"] += len(names) - full
    return full


def _buckets(layer: RedisChannelLayer, names: list[str]) -> dict[int, dict[bytes, list[str]]]:
    """Members by shard, then by Redis key (``prefix + non-local name``), in member order."""
    from gateway.layers.redis.layer import consistent_hash

    result: dict[int, dict[bytes, list[str]]] = defaultdict(dict)
    for name in names:
        non_local = layer.non_local_name(name)
        key = (layer.prefix + non_local).encode()
        result[consistent_hash(non_local, layer.ring_size)].setdefault(key, []).append(name)
    return result


async def _deliver_remote(layer: RedisChannelLayer, index: int, keys: dict[bytes, list[str]],
                          message: dict[str, Any], now: float) -> tuple[int, int]:
    """One DELIVER script on shard ``index``; returns (members queued, members dropped)."""
    members, capacities = [], []
    for names in keys.values():
        body = dict(message)
        body[CHANNEL_KEY] = names
        members.append(layer.serializer.encode(body))
        capacities.append(layer.get_capacity(names[0]))
    total = sum(len(names) for names in keys.values())
    try:
        out = await layer._command(index).evalsha(
            DELIVER, list(keys), [now, now - layer.expiry, _ttl_ms(layer.expiry), *members, *capacities])
    except RedisLayerError as exc:
        logger.warning("group_send: %d member(s) on shard %d not reached: %s", total, index, exc)
        return 0, total
    layer.counters["expired"] += out[0]
    names_by_index = list(keys.values())
    dropped = sum(len(names_by_index[i - 1]) for i in out[1:])
    return total - dropped, dropped


async def group_send(layer: RedisChannelLayer, group: str, message: dict[str, Any]) -> None:
    from gateway.layers.redis.layer import consistent_hash

    counters = layer.counters
    counters["group_sends"] += 1
    index = consistent_hash(group, layer.ring_size)
    command = layer._command(index)
    gkey = layer.group_key(group)
    now = time.time()
    fast = layer.serializer.patchable and not layer.channel_capacity
    try:
        if fast:
            entries_count, entries = split_map(layer.serializer.dumps(message))
            queued, full, expired, local, others = await command.evalsha(GROUP_SEND, [gkey], [
                now, now - layer.group_expiry, now - layer.expiry, _ttl_ms(layer.expiry), layer.prefix,
                layer.serializer.random_prefix(), entries_count, entries, layer._suffix, layer.ring_size,
                index, layer.capacity,
            ])
            counters["expired"] += expired
            local = local.decode().split("\n") if local else []
            remote = others.decode().split("\n") if others else []
        else:
            names = [m.decode() for m in await command.evalsha(GROUP_READ, [gkey], [now - layer.group_expiry])]
            local = [n for n in names if layer.is_local(n)]
            remote = [n for n in names if not layer.is_local(n)]
            queued = full = 0
    except RedisLayerError as exc:
        counters["group_send_failed"] += 1
        logger.warning("group_send to %r dropped: %s", group, exc)
        return
    local_full = _deliver_locally(layer, local, message, now)
    queued += len(local) - local_full
    full += local_full
    if remote:
        results = await asyncio.gather(*(
            _deliver_remote(layer, shard, keys, message, now) for shard, keys in _buckets(layer, remote).items()))
        for ok, dropped in results:
            queued += ok
            full += dropped
    counters["group_delivered"] += queued
    if full:
        counters["group_dropped"] += full
        counters["over_capacity"] += full
        logger.debug("group_send to %r: %d member(s) skipped (at capacity or unreachable)", group, full)


async def restore_memberships(layer: RedisChannelLayer, index: int, first: bool) -> None:
    """After a reconnection, re-add this process's memberships of groups on shard ``index``.

    A Redis restart without persistence loses every group; the channels of this process that
    joined groups (and have not left or expired) join them again, with their original join times,
    so group messages reach them again. One pipelined batch.
    """
    if first:
        return
    from gateway.layers.redis.layer import consistent_hash

    cutoff = time.time() - layer.group_expiry
    command = layer._command(index)
    pending = []
    for group, members in list(layer.memberships.items()):
        if consistent_hash(group, layer.ring_size) != index:
            continue
        for channel, joined in list(members.items()):
            if joined <= cutoff:
                del members[channel]
                continue
            ttl = _ttl_ms(joined + layer.group_expiry - time.time())
            pending.append(command.evalsha(GROUP_ADD, [layer.group_key(group)], [joined, channel, ttl]))
        if not members:
            del layer.memberships[group]
    if pending:
        results = await asyncio.gather(*pending, return_exceptions=True)
        restored = sum(1 for r in results if not isinstance(r, BaseException))
        layer.counters["memberships_restored"] += restored
        logger.warning("Redis %s: re-added %d group membership(s) of this process", command.address.describe(), restored)


async def give_back(layer: RedisChannelLayer, shards: list[Any]) -> None:
    """At close: put normal-channel messages popped for cancelled receivers back into Redis."""
    from gateway.layers.redis.scripts import SEND

    pending = []
    for name in [n for n in layer.local.channels if "!" not in n]:
        for expires, message, _mode in layer.local.drain_queued(name):
            sent_at = expires - layer.expiry
            shard = shards[0]
            pending.append(shard.command.evalsha(SEND, [(layer.prefix + name).encode()], [
                layer.serializer.encode(message), sent_at, time.time() - layer.expiry,
                layer.get_capacity(name) + 1, _ttl_ms(layer.expiry)]))
    if pending:
        await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 5)
