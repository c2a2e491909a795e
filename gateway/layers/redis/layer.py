"""``RedisChannelLayer``: the Channels layer API on Redis, wire-compatible with channels_redis 4.x.

See ``docs/redis-layer.md`` for the wire format, the consistency and loss model and the costs.
This module holds the API and the routing (local or Redis, which shard); the group fan-out is in
``groups.py``, the reader in ``reader.py``, the connections in ``connection.py``.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from gateway.exceptions import ChannelFull, InvalidChannelLayerError
from gateway.layers.base import BaseChannelLayer
from gateway.layers.redis import groups
from gateway.layers.redis.bridge import home, run_on
from gateway.layers.redis.errors import RedisLayerError
from gateway.layers.redis.hosts import decode_hosts
from gateway.layers.redis.local import DEEP, FLAT, OWNED, LocalChannels, snapshot
from gateway.layers.redis.options import RedisLayerOptions, check_positive
from gateway.layers.redis.serializer import CHANNEL_KEY, Serializer

__all__ = ["RedisChannelLayer", "consistent_hash"]

logger = logging.getLogger("gateway.layers.redis")

_COUNTERS = (
    "sent", "send_full", "send_failed", "received", "local_deliveries", "remote_deliveries",
    "group_sends", "group_send_failed", "group_delivered", "group_dropped", "over_capacity",
    "expired", "undecodable", "reader_batches", "reader_messages", "memberships_restored",
)
_IMMUTABLE = frozenset({str, bytes, int, float, bool, type(None)})


def consistent_hash(value: str | bytes, ring_size: int) -> int:
    """The shard of a name: ``crc32(name) & 0xFFF`` scaled onto the ring (channels_redis)."""
    if ring_size == 1:
        return 0
    if isinstance(value, str):
        value = value.encode("utf-8")
    return int((binascii.crc32(value) & 0xFFF) / (4096 / float(ring_size)))


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisChannelLayer(BaseChannelLayer):
    """A channel layer on Redis, shared by processes and machines, on the Twisted reactor.

    Takes the options of :class:`RedisLayerOptions`. Construction does no I/O; connections open
    at first use. Use from any loop or thread (calls are run on the reactor's loop).
    """

    extensions: ClassVar[list[str]] = ["groups", "flush"]
    process_local: ClassVar[bool] = False
    options_class: ClassVar[type] = RedisLayerOptions

    def __init__(
        self,
        hosts: Sequence[Any] | None = None,
        prefix: str = "asgi",
        expiry: float = 60,
        group_expiry: float = 86400,
        capacity: int = 100,
        channel_capacity: Mapping[Any, int] | None = None,
        symmetric_encryption_keys: Sequence[str | bytes] | None = None,
        sentinels: Sequence[Any] = (),
        sentinel_password: str | None = None,
        random_prefix_length: int = 12,
        serializer_format: str = "msgpack",
        batch: int = 500,
        block_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        command_timeout: float = 10.0,
        reconnect_max_delay: float = 5.0,
    ) -> None:
        super().__init__(expiry=expiry, capacity=capacity, channel_capacity=channel_capacity)
        check_positive("group_expiry", group_expiry)
        check_positive("batch", batch, integer=True)
        for name, value in (("block_timeout", block_timeout), ("connect_timeout", connect_timeout),
                            ("command_timeout", command_timeout), ("reconnect_max_delay", reconnect_max_delay)):
            check_positive(name, value)
        if not isinstance(prefix, str):
            raise InvalidChannelLayerError(f"prefix must be a string, got {prefix!r}")
        try:
            self.hosts = decode_hosts(hosts, sentinels or (), sentinel_password)
            self.serializer = Serializer(symmetric_encryption_keys, expiry, random_prefix_length, serializer_format)
        except ValueError as exc:
            raise InvalidChannelLayerError(str(exc)) from None
        self.prefix = prefix
        self.group_expiry = group_expiry
        self.ring_size = len(self.hosts)
        self.batch = batch
        self.block_timeout = block_timeout
        self._timeouts = (connect_timeout, command_timeout, reconnect_max_delay)
        self.client_prefix = uuid.uuid4().hex
        self._suffix = f".{self.client_prefix}!"
        self.counters: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        self.local = LocalChannels(expiry, self.get_capacity, self.counters, self._on_wait)
        #: Groups this process's channels joined: {group: {channel: join time}} (re-added after
        #: a Redis restart lost them).
        self.memberships: dict[str, dict[str, float]] = {}
        self._process_keys: dict[int, dict[bytes, None]] = {}
        self._normal_waiting: set[str] = set()
        self._registered: set[str] = set()
        self._reactor: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shards: list[Any] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(hosts={[h.describe() for h in self.hosts]}, prefix={self.prefix!r})"

    # -- where we run -----------------------------------------------------------------------

    def _at_home(self) -> bool:
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return True
        if self._loop is None:
            self._reactor, self._loop = home()
        return loop is self._loop

    def _started(self) -> list[Any]:
        shards = self._shards
        if shards is None:
            from gateway.layers.redis.shard import Shard

            shards = self._shards = [Shard(self, i, address) for i, address in enumerate(self.hosts)]
            for shard in shards:
                shard.command.start()
        return shards

    def _command(self, index: int) -> Any:
        return self._started()[index].command

    def group_key(self, group: str) -> bytes:
        return f"{self.prefix}:group:{group}".encode()

    def is_local(self, channel: str) -> bool:
        """Whether ``channel`` is a specific channel of this layer instance."""
        bang = channel.find("!")
        return bang >= 0 and channel[: bang + 1].endswith(self._suffix)

    # -- the reader's side ------------------------------------------------------------------

    def reader_keys(self, index: int, kind: str) -> list[tuple[bytes, int]]:
        """What shard ``index``'s reader of ``kind`` pops now: ``[(key, count), ...]``."""
        if kind == "process":  # every shard: channels_redis' send() may pick any (see docs)
            return [(key, self.batch) for keys in self._process_keys.values() for key in keys]
        keys = []
        for name in list(self._normal_waiting):
            want = self.local.waiting(name)
            if want > 0:
                keys.append(((self.prefix + name).encode(), want))
            else:
                self._normal_waiting.discard(name)
        return keys

    def _register(self, non_local: str) -> None:
        if non_local in self._registered:
            return
        self._registered.add(non_local)
        key = (self.prefix + non_local).encode()
        index = consistent_hash(non_local, self.ring_size)
        keys = self._process_keys.setdefault(index, {})
        if key not in keys:
            keys[key] = None
            for shard in self._started():
                shard.reader("process").notify(key)

    def _on_wait(self, name: str) -> None:
        if "!" in name:
            return
        self._normal_waiting.add(name)
        key = (self.prefix + name).encode()
        for shard in self._started():
            shard.reader("normal").notify(key)

    def dispatch(self, key: bytes, pairs: list[tuple[bytes, bytes]]) -> None:
        """Hand popped ``(member, score)`` pairs of ``key`` to local channels."""
        counters = self.counters
        cutoff = time.time() - self.expiry
        process = any(key in keys for keys in self._process_keys.values())
        channel = None if process else key[len(self.prefix.encode()):].decode("utf-8", "replace")
        for member, score in pairs:
            sent_at = float(score)
            if sent_at <= cutoff:
                counters["expired"] += 1
                continue
            try:
                message = self.serializer.decode(member)
            except ValueError as exc:
                counters["undecodable"] += 1
                logger.warning("Redis layer: dropped a message on %r: %s", key, exc)
                continue
            target = message.pop(CHANNEL_KEY, None)
            counters["remote_deliveries"] += 1
            if channel is not None:
                self.local.put(channel, message, sent_at, OWNED, bounded=False)
                continue
            if isinstance(target, str):
                names, mode = [target], OWNED
            elif isinstance(target, list) and target:
                names = target
                mode = OWNED if len(names) == 1 else (
                    FLAT if all(type(v) in _IMMUTABLE for v in message.values()) else DEEP)
            else:
                counters["undecodable"] += 1
                continue
            counters["over_capacity"] += self.local.put_many(names, message, sent_at, mode)

    # -- the channel layer API ----------------------------------------------------------------

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Send ``message`` to ``channel``: one script round trip, or none for a local channel.

        Raises:
            TypeError: a bad channel name or message (or one carrying ``__asgi_channel__``).
            ChannelFull: the channel holds its capacity.
            RedisLayerUnavailable: the channel's Redis shard is down.
        """
        self.require_message(message)
        self.require_valid_channel_name(channel)
        if CHANNEL_KEY in message:
            raise TypeError(f"message must not contain the reserved key {CHANNEL_KEY!r}")
        if not self._at_home():
            return await run_on(self._loop, self._send(channel, message))  # type: ignore[arg-type]
        return await self._send(channel, message)

    async def _send(self, channel: str, message: dict[str, Any]) -> None:
        now = time.time()
        bang = channel.find("!")
        if bang >= 0:
            non_local = channel[: bang + 1]
            if non_local.endswith(self._suffix):
                copy_, _ = snapshot(message)
                if not self.local.put(channel, copy_, now, OWNED):
                    self.counters["send_full"] += 1
                    self.counters["over_capacity"] += 1
                    raise ChannelFull(channel)
                self.counters["sent"] += 1
                self.counters["local_deliveries"] += 1
                return
            message = dict(message)
            message[CHANNEL_KEY] = channel
            index = consistent_hash(non_local, self.ring_size)
        else:  # channels_redis cycles through hosts; one shard per name keeps capacity and order exact
            non_local = channel
            index = consistent_hash(channel, self.ring_size)
        member = self.serializer.encode(message)
        from gateway.layers.redis.scripts import SEND

        try:
            queued, expired = await self._command(index).evalsha(
                SEND, [(self.prefix + non_local).encode()],
                [member, now, now - self.expiry, self.get_capacity(channel), int(self.expiry * 1000) + 1])
        except RedisLayerError:
            self.counters["send_failed"] += 1
            raise
        self.counters["expired"] += expired
        if not queued:
            self.counters["send_full"] += 1
            self.counters["over_capacity"] += 1
            raise ChannelFull(channel)
        self.counters["sent"] += 1

    async def receive(self, channel: str) -> dict[str, Any]:
        """The next message on ``channel`` (FIFO; cancellation-safe).

        Raises:
            TypeError: a bad channel name.
            ValueError: a specific channel of another process.
        """
        state = self.local.channels.get(channel)
        if state is not None and state.ready and asyncio.get_running_loop() is self._loop:
            return await self.local.get(state)  # checked and registered before
        self.require_valid_channel_name(channel)
        if "!" in channel and not self.is_local(channel):
            raise ValueError(f"{channel!r} is a specific channel of another process; only its owner receives from it")
        if not self._at_home():
            return await run_on(self._loop, self._receive(channel))  # type: ignore[arg-type]
        return await self._receive(channel)

    async def _receive(self, channel: str) -> dict[str, Any]:
        if "!" in channel:
            self._register(self.non_local_name(channel))
        state = self.local.state(channel)
        state.ready = True
        return await self.local.get(state)

    async def new_channel(self, prefix: str = "specific") -> str:
        """A new channel of this process: ``<prefix>.<client prefix>!<uuid4 hex>`` (channels_redis)."""
        name = f"{prefix}.{self.client_prefix}!{uuid.uuid4().hex}"
        self.require_valid_channel_name(name)
        if not self._at_home():
            await run_on(self._loop, self._new_channel(name))  # type: ignore[arg-type]
        else:
            await self._new_channel(name)
        return name

    async def _new_channel(self, name: str) -> None:
        self._register(self.non_local_name(name))

    # -- groups --------------------------------------------------------------------------------

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group`` (refreshing its ``group_expiry``): one round trip."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        if not self._at_home():
            return await run_on(self._loop, groups.group_add(self, group, channel))  # type: ignore[arg-type]
        return await groups.group_add(self, group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; a non-member is a no-op."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        if not self._at_home():
            return await run_on(self._loop, groups.group_discard(self, group, channel))  # type: ignore[arg-type]
        return await groups.group_discard(self, group, channel)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send ``message`` to every member; never raises for full channels or a down shard
        (both are counted: ``group_dropped``, ``group_send_failed``)."""
        self.require_message(message)
        self.require_valid_group_name(group)
        if CHANNEL_KEY in message:
            raise TypeError(f"message must not contain the reserved key {CHANNEL_KEY!r}")
        if not self._at_home():
            return await run_on(self._loop, groups.group_send(self, group, message))  # type: ignore[arg-type]
        return await groups.group_send(self, group, message)

    # -- flush, close, stats -------------------------------------------------------------------

    async def flush(self) -> None:
        """Delete every key under the prefix on every shard, and this process's queues."""
        if not self._at_home():
            return await run_on(self._loop, self._flush())  # type: ignore[arg-type]
        return await self._flush()

    async def _flush(self) -> None:
        from gateway.layers.redis.scripts import FLUSH

        self.local.clear()
        self.memberships.clear()
        pattern = _glob_escape(self.prefix) + "*"
        await asyncio.gather(*(self._command(i).evalsha(FLUSH, [], [pattern]) for i in range(self.ring_size)))

    async def close(self) -> None:
        """Close the connections (queued normal-channel messages go back to Redis first)."""
        if self._shards is None:
            return
        if not self._at_home():
            return await run_on(self._loop, self._close())  # type: ignore[arg-type]
        return await self._close()

    async def _close(self) -> None:
        shards, self._shards = self._shards, None
        if shards is None:
            return
        await groups.give_back(self, shards)
        await asyncio.gather(*(shard.close() for shard in shards), return_exceptions=True)
        self._process_keys.clear()
        self._registered.clear()

    async def close_pools(self) -> None:
        """channels_redis' name for :meth:`close`."""
        await self.close()

    def stats(self) -> dict[str, int]:
        """Counters since start (see docs/redis-layer.md) and gauges of the connections."""
        result = dict(self.counters)
        shards = self._shards or []
        conns = [c for shard in shards for c in shard.connections()]
        result["connections_up"] = sum(1 for c in conns if c.up)
        result["connections_down"] = sum(1 for c in conns if not c.up)
        result["shards_down"] = sum(1 for shard in shards if not shard.command.up)
        result["reconnects"] = sum(max(0, c.connects - 1) for c in conns)
        result["disconnects"] = sum(c.disconnects for c in conns)
        result["connect_failures"] = sum(c.total_failures for c in conns)
        result["local_channels"] = len(self.local.channels)
        result["local_queued"] = self.local.queued()
        return result
