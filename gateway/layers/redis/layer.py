"""``RedisChannelLayer``: the Channels layer API on Redis, wire-compatible with channels_redis 4.x.

See ``docs/redis-layer.md`` for the wire format, the consistency and loss model and the costs.
This module holds the API and the routing (local or Redis); where keys live is the topology's
(``topology.py``: a ring of servers or a Redis Cluster), the group fan-out is in ``groups.py``,
the readers in ``reader.py``, the connections in ``connection.py`` and ``cluster.py``.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from gateway.exceptions import ChannelFull, InvalidChannelLayerError
from gateway.layers.base import BaseChannelLayer
from gateway.layers.redis.bridge import home, run_on
from gateway.layers.redis.errors import ForeignChannelError, RedisLayerError
from gateway.layers.redis.groups import GroupSettings, Groups
from gateway.layers.redis.hashing import consistent_hash
from gateway.layers.redis.hosts import decode_hosts
from gateway.layers.redis.local import DEEP, FLAT, OWNED, LocalChannels, ReceiveBuffer, snapshot
from gateway.layers.redis.options import RedisLayerOptions, check_positive
from gateway.layers.redis.scripts import SEND
from gateway.layers.redis.sending import SendWindow
from gateway.layers.redis.serializer import CHANNEL_KEY, Serializer

if TYPE_CHECKING:  # (importing them imports txredisapi: done at first use, on the installed reactor)
    from gateway.layers.redis.commands import RedisCommands
    from gateway.layers.redis.marks import RedisMarks
    from gateway.layers.redis.topology import Topology

__all__ = ["RedisChannelLayer", "consistent_hash"]

logger = logging.getLogger("gateway.layers.redis")

_COUNTERS = (
    "sent", "send_full", "send_failed", "send_unconfirmed_lost", "received", "local_deliveries", "remote_deliveries",
    "group_sends", "group_send_failed", "group_delivered", "group_dropped", "group_sends_held", "over_capacity",
    "expired", "undecodable", "reader_batches", "reader_messages", "memberships_restored",
)
_IMMUTABLE = frozenset({str, bytes, int, float, bool, type(None)})


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
        send_window: int = 0,
    ) -> None:
        super().__init__(expiry=expiry, capacity=capacity, channel_capacity=channel_capacity)
        check_positive("group_expiry", group_expiry)
        check_positive("batch", batch, integer=True)
        for name, value in (("block_timeout", block_timeout), ("connect_timeout", connect_timeout),
                            ("command_timeout", command_timeout), ("reconnect_max_delay", reconnect_max_delay)):
            check_positive(name, value)
        if isinstance(send_window, bool) or not isinstance(send_window, int) or send_window < 0:
            raise InvalidChannelLayerError(f"send_window must be an integer >= 0, got {send_window!r}")
        if not isinstance(prefix, str):
            raise InvalidChannelLayerError(f"prefix must be a string, got {prefix!r}")
        try:
            self.hosts = decode_hosts(hosts, sentinels or (), sentinel_password)
            self.serializer = Serializer(symmetric_encryption_keys, expiry, random_prefix_length, serializer_format)
        except ValueError as exc:
            raise InvalidChannelLayerError(str(exc)) from None
        self.prefix = prefix
        self.group_expiry = group_expiry
        #: Whether the hosts are seeds of a Redis Cluster (``redis+cluster://``).
        self.cluster = self.hosts[0].cluster
        self.ring_size = 1 if self.cluster else len(self.hosts)
        self.batch = batch
        self.block_timeout = block_timeout
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.reconnect_max_delay = reconnect_max_delay
        #: Most sends per Redis key in flight unconfirmed (``send()`` returned before the reply;
        #: sending.py); 0: every send waits for its reply.
        self.send_window = send_window
        self._windows: dict[bytes, SendWindow] = {}
        #: Seconds group_sends wait after a server came back without its data (every process
        #: reconnects and re-adds its memberships within it; docs/redis-layer.md).
        self.restore_window = 1.25 * reconnect_max_delay + 0.5
        self.client_prefix = uuid.uuid4().hex
        self._suffix = f".{self.client_prefix}!"
        self.counters: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        self.local = LocalChannels(expiry, self.get_capacity, self.counters, self._on_wait)
        self._groups: Groups | None = None
        self._process_keys: dict[bytes, None] = {}
        self._normal_keys: dict[bytes, str] = {}
        self._normal_waiting: dict[str, bytes] = {}
        self._registered: set[str] = set()
        self._reactor: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._topology: Topology | None = None

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

    def _started(self) -> Topology:
        topology = self._topology
        if topology is None:
            from gateway.layers.redis.connection import ConnectionSettings
            from gateway.layers.redis.topology import ClusterKeyspace, ShardRing

            kind = ClusterKeyspace if self.cluster else ShardRing
            topology = self._topology = kind(
                self, self.hosts, prefix=self.prefix, client_prefix=self.client_prefix, reactor=self._reactor,
                loop=self._home_loop(), settings=ConnectionSettings(self.connect_timeout, self.command_timeout,
                                                             self.reconnect_max_delay),
                counters=self.counters, batch=self.batch, block_timeout=self.block_timeout,
            )
            memberships = self._groups.memberships if self._groups is not None else {}
            self._groups = Groups(GroupSettings(
                prefix=self.prefix, expiry=self.expiry, group_expiry=self.group_expiry, capacity=self.capacity,
                suffix=self._suffix, patchable=self.serializer.patchable and not self.channel_capacity,
                restore_window=self.restore_window,
            ), topology, self.local, self.serializer, self.counters, self.get_capacity)
            self._groups.memberships.update(memberships)
        return topology

    def _group_ops(self) -> Groups:
        self._started()
        assert self._groups is not None
        return self._groups

    @property
    def memberships(self) -> dict[str, dict[str, float]]:
        """Groups this process's channels joined: ``{group: {channel: join time}}`` (re-added
        when Redis lost them)."""
        return self._groups.memberships if self._groups is not None else {}

    def group_key(self, group: str) -> bytes:
        """The Redis key of ``group``."""
        if self.cluster:
            return f"{self.prefix}:group:{{{group}}}".encode()
        return f"{self.prefix}:group:{group}".encode()

    _group_key = group_key  # channels_redis' name

    def is_local(self, channel: str) -> bool:
        """Whether ``channel`` is a specific channel of this layer instance."""
        bang = channel.find("!")
        return bang >= 0 and channel[: bang + 1].endswith(self._suffix)

    # -- what the readers call (LayerSide) ------------------------------------------------------

    def reader_keys(self, kind: str) -> list[tuple[bytes, int]]:
        """The keys a reader of ``kind`` pops now: ``[(key, count), ...]``."""
        if kind == "process":
            batch = self.batch
            return [(key, batch) for key in self._process_keys]
        keys = []
        for name, key in list(self._normal_waiting.items()):
            want = self.local.waiting(name)
            if want > 0:
                keys.append((key, want))
            else:
                del self._normal_waiting[name]
        return keys

    async def connected(self, commands: RedisCommands, owns_group: Callable[[str], bool], shard: int | None,
                        first: bool) -> None:
        """A command connection (re)opened (see :meth:`Groups.connected`)."""
        if self._groups is not None:
            await self._groups.connected(commands, owns_group, shard, first)

    def _register(self, non_local: str) -> None:
        if non_local in self._registered:
            return
        self._registered.add(non_local)
        topology = self._started()
        key = topology.channel_key(non_local)
        if key not in self._process_keys:
            self._process_keys[key] = None
            topology.notify("process", key)

    def _on_wait(self, name: str) -> None:
        if "!" in name:
            return
        topology = self._started()
        key = self._normal_waiting.get(name)
        if key is None:
            key = self._normal_waiting[name] = topology.channel_key(name)
            self._normal_keys[key] = name
        topology.notify("normal", key)

    def dispatch(self, key: bytes, pairs: list[tuple[bytes, bytes]]) -> None:
        """Hand popped ``(member, score)`` pairs of ``key`` to local channels."""
        counters = self.counters
        cutoff = time.time() - self.expiry
        channel = None if key in self._process_keys else self._normal_keys.get(key)
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
                self.local.put(channel, message, sent_at, OWNED, bounded=False, expires=False)
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
            counters["over_capacity"] += self.local.put_many(names, message, sent_at, mode, expires=False)

    # -- the channel layer API ----------------------------------------------------------------

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Send ``message`` to ``channel``: one script round trip, or none for a local channel.

        Raises:
            TypeError: a bad channel name or message (or one carrying ``__asgi_channel__``).
            ChannelFull: the channel holds its capacity.
            RedisLayerUnavailable: the channel's Redis server is down.
        """
        self.require_message(message)
        self.require_valid_channel_name(channel)
        if CHANNEL_KEY in message:
            raise TypeError(f"message must not contain the reserved key {CHANNEL_KEY!r}")
        if not self._at_home():
            return await run_on(self._home_loop(), self._send(channel, message))
        return await self._send(channel, message)

    def _home_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        assert loop is not None  # _at_home() found it
        return loop

    async def _send(self, channel: str, message: dict[str, Any]) -> None:
        now = time.time()
        topology = self._started()
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
            key = topology.channel_key(non_local)
            commands = topology.for_key(non_local, key)
        else:  # as channels_redis: a ring cycles over its servers (every reader reads them all)
            key = topology.channel_key(channel)
            commands = topology.for_normal_send(channel, key)
        member = self.serializer.encode(message)
        capacity = self.get_capacity(channel)
        if self.send_window:
            return await self._send_windowed(channel, key, commands, member, now, capacity)
        try:
            queued, expired, _ = await commands.evalsha(
                SEND, [key], [member, now, now - self.expiry, capacity, int(self.expiry * 1000) + 1])
        except RedisLayerError:
            self.counters["send_failed"] += 1
            raise
        self.counters["expired"] += expired
        if not queued:
            self.counters["send_full"] += 1
            self.counters["over_capacity"] += 1
            raise ChannelFull(channel)
        self.counters["sent"] += 1

    async def _send_windowed(self, channel: str, key: bytes, commands: Any, member: bytes, now: float,
                             capacity: int) -> None:
        """:meth:`_send` with ``send_window``: return before the reply while the key has room."""
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = SendWindow(self.send_window, self.counters)
        proto = getattr(commands, "protocol", None)  # a RedisConnection (one server) can queue
        if (window.in_flight < window.room and proto is not None and proto is window.proto
                and window.capacity == capacity):
            # the last reply left room: queue it and return (one write per loop pass; sending.py)
            try:
                commands.evalsha_nowait(proto, SEND, [key], [
                    member, now, now - self.expiry, capacity + window.limit, int(self.expiry * 1000) + 1],
                    window.reply)
            except RedisLayerError:
                self.counters["send_failed"] += 1
                window.room = 0
                raise
            window.in_flight += 1
            self.counters["sent"] += 1
            return
        window.in_flight += 1
        try:
            queued, expired, size = await commands.evalsha(
                SEND, [key], [member, now, now - self.expiry, capacity, int(self.expiry * 1000) + 1])
        except RedisLayerError:
            self.counters["send_failed"] += 1
            window.room = 0
            raise
        finally:
            window.in_flight -= 1
        window.confirmed(capacity, size, getattr(commands, "protocol", None))
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
            ForeignChannelError: a specific channel of another process (a ``ValueError``, and an
                ``AssertionError`` as channels_redis raises).
        """
        local = self.local
        state = local.channels.get(channel)
        if state is not None and state.ready:
            loop = asyncio.get_running_loop()
            if loop is self._loop:
                # checked and registered before: local.get() and take() inlined (one coroutine
                # and one loop look-up less per message)
                queue = state.queue
                if queue:
                    entry = queue.popleft()
                else:
                    future = loop.create_future()
                    state.waiters.append(future)
                    if state.normal:
                        local.on_wait(channel)
                    try:
                        entry = await future
                    except asyncio.CancelledError:
                        local.cancelled(state, future)
                        raise
                self.counters["received"] += 1
                mode = entry[2]
                if mode == OWNED:
                    return entry[1]
                if mode == FLAT:
                    return entry[1].copy()
                return copy.deepcopy(entry[1])
        self.require_valid_channel_name(channel)
        if "!" in channel and not self.is_local(channel):
            raise ForeignChannelError(
                f"{channel!r} is a specific channel of another process; only its owner receives from it")
        if not self._at_home():
            return await run_on(self._home_loop(), self._receive(channel))
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
            await run_on(self._home_loop(), self._new_channel(name))
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
            return await run_on(self._home_loop(), self._group_ops().add(group, channel))
        return await self._group_ops().add(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; a non-member is a no-op."""
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        if not self._at_home():
            return await run_on(self._home_loop(), self._group_ops().discard(group, channel))
        return await self._group_ops().discard(group, channel)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send ``message`` to every member; never raises for full channels or a down server
        (both are counted: ``group_dropped``, ``group_send_failed``)."""
        self.require_message(message)
        self.require_valid_group_name(group)
        if CHANNEL_KEY in message:
            raise TypeError(f"message must not contain the reserved key {CHANNEL_KEY!r}")
        if not self._at_home():
            return await run_on(self._home_loop(), self._group_ops().send(group, message))
        return await self._group_ops().send(group, message)

    async def group_send_strict(self, group: str, message: dict[str, Any]) -> None:
        """:meth:`group_send` that raises when the group's server cannot be reached, instead of
        dropping the message: the caller knows whether the group got it (the MQTT broker
        acknowledges a QoS 1/2 publish only then).

        Raises:
            RedisLayerError: the message was not written (``RedisLayerUnavailable`` for a server
                that is down).
        """
        self.require_message(message)
        self.require_valid_group_name(group)
        if CHANNEL_KEY in message:
            raise TypeError(f"message must not contain the reserved key {CHANNEL_KEY!r}")
        if not self._at_home():
            return await run_on(self._home_loop(), self._group_ops().send(group, message, True))
        return await self._group_ops().send(group, message, True)

    # -- flush, close, stats -------------------------------------------------------------------

    async def flush(self) -> None:
        """Delete every key under the prefix on every server, and this process's queues."""
        if not self._at_home():
            return await run_on(self._home_loop(), self._flush())
        return await self._flush()

    async def _flush(self) -> None:
        self.local.clear()
        groups = self._group_ops()
        groups.clear()
        await groups.topology.flush(_glob_escape(self.prefix) + "*")

    async def close(self) -> None:
        """Close the connections (queued normal-channel messages go back to Redis first).

        The layer stays usable: connections open again at the next use.
        """
        if self._topology is None:
            return
        if not self._at_home():
            return await run_on(self._home_loop(), self._close())
        return await self._close()

    async def _close(self) -> None:
        topology, self._topology = self._topology, None
        if topology is None:
            return
        try:
            await self._give_back(topology)
        finally:
            await topology.close()
            self._process_keys.clear()
            self._normal_keys.clear()
            self._normal_waiting.clear()
            self._registered.clear()
            for state in self.local.channels.values():
                state.ready = False  # the next receive() registers its key again

    async def _give_back(self, topology: Topology) -> None:
        """Put normal-channel messages popped for receivers that left back into Redis."""
        pending = []
        for name in [n for n in self.local.channels if "!" not in n]:
            for expires, message, _mode in self.local.drain_queued(name):
                key = topology.channel_key(name)
                pending.append(topology.for_normal_send(name, key).evalsha(SEND, [key], [
                    self.serializer.encode(message), time.time(), time.time() - self.expiry,
                    self.get_capacity(name) + 1, int(self.expiry * 1000) + 1]))
        if pending:
            await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), self.command_timeout)

    async def close_pools(self) -> None:
        """channels_redis' name for :meth:`close`."""
        await self.close()

    # -- other uses of the same Redis --------------------------------------------------------

    async def execute(self, key: bytes, *args: bytes | str | int | float) -> Any:
        """Run one Redis command on the server holding ``key`` (a ring hashes the key; a cluster
        routes it to the key's slot), from any loop or thread.

        Raises:
            RedisLayerUnavailable: that server is down.
            RedisLayerError: Redis answered with an error.
        """
        if not self._at_home():
            return await run_on(self._home_loop(), self._execute(key, args))
        return await self._execute(key, args)

    async def _execute(self, key: bytes, args: tuple[bytes | str | int | float, ...]) -> Any:
        return await self._started().for_key(key.decode("utf-8", "replace"), key).call(*args)

    def marks(self, namespace: str) -> RedisMarks:
        """:class:`~gateway.layers.marks.SharedMarks` on this layer's Redis (e.g. webhook
        de-duplication across processes)."""
        from gateway.layers.redis.marks import RedisMarks

        return RedisMarks(self, namespace)

    # -- channels_redis' helpers -------------------------------------------------------------

    def serialize(self, message: dict[str, Any]) -> bytes:
        """A sorted-set member for ``message`` (channels_redis' ``serialize``)."""
        return self.serializer.encode(message, fresh=True)

    def deserialize(self, member: bytes) -> dict[str, Any]:
        """The message in a sorted-set member (channels_redis' ``deserialize``).

        Raises:
            ValueError: the member does not decode.
        """
        return self.serializer.decode(member)

    def consistent_hash(self, value: str | bytes) -> int:
        """The ring index of a name (channels_redis' method)."""
        return consistent_hash(value, self.ring_size)

    @property
    def receive_buffer(self) -> ReceiveBuffer:
        """channels_redis' per-channel buffers of taken messages, as a view of the local queues."""
        return ReceiveBuffer(self.local, self.capacity)

    def stats(self) -> dict[str, int]:
        """Counters since start (see docs/redis-layer.md) and gauges of the connections."""
        result = dict(self.counters)
        topology = self._topology
        conns = topology.connections() if topology is not None else []
        result["connections_up"] = sum(1 for c in conns if c.up)
        result["connections_down"] = sum(1 for c in conns if not c.up)
        result["shards_down"] = topology.servers_down() if topology is not None else 0
        result["reconnects"] = sum(max(0, c.connects - 1) for c in conns)
        result["disconnects"] = sum(c.disconnects for c in conns)
        result["connect_failures"] = sum(c.total_failures for c in conns)
        result["local_channels"] = len(self.local.channels)
        result["local_queued"] = self.local.queued()
        if topology is not None:
            result.update(topology.topology_counters())
        return result
