"""Redis Cluster: :class:`ClusterClient`, a :class:`~gateway.layers.redis.client.RedisClient`
that sends each command to the primary serving its key's hash slot.

* **Slots.** A key's slot is ``CRC16(key) mod 16384`` (:func:`key_slot`), or of the part between
  the first ``{`` and the next ``}`` when that part is not empty (a *hash tag*: keys with the same
  tag share a slot, which is what lets one script or one blocking read use several keys).
* **The slot map** comes from ``CLUSTER SLOTS``, asked of a node that answers (the connected
  primaries first, then every node and seed known, concurrently). It is refreshed at first use,
  after every ``MOVED``, whenever a primary's connection drops or cannot be opened, and every
  ``refresh_interval`` seconds while a primary stays unreachable (a failover: the replica that
  takes over appears in the map as soon as the cluster has promoted it). Connections to nodes
  that no longer serve slots are closed.
* **Connections**: one pipelined command connection per primary, opened when first needed.
  Commands issued during one loop pass to the same primary go out in one write.
* **Redirections**: ``MOVED`` updates the slot at once (and refreshes the whole map in the
  background) and the command is retried on the new owner; ``ASK`` (a slot being migrated) sends
  ``ASKING`` and the command to the named node once; ``TRYAGAIN`` (a multi-key command during a
  migration) is retried after a short pause. At most :data:`MAX_REDIRECTS` hops per command.
* **Failures**: a command to a primary that cannot be reached raises
  :class:`~gateway.layers.redis.errors.RedisLayerUnavailable` at once, as with one server. During
  a failover that lasts from the primary's death until its replica is promoted
  (``cluster-node-timeout`` plus an election, typically one to two node timeouts).

Blocking readers (the channel layer's) get their own connection per slot through
:meth:`ClusterClient.slot_connection`, which reconnects to whichever node serves the slot.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from gateway.layers.redis.commands import RedisArg, RedisCommands
from gateway.layers.redis.connection import ConnectionSettings, RedisConnection
from gateway.layers.redis.errors import RedisLayerError, RedisLayerUnavailable, RedisRedirect
from gateway.layers.redis.hashing import SLOTS, key_slot
from gateway.layers.redis.hosts import RedisAddress
from gateway.layers.redis.scripts import Script

__all__ = ["MAX_REDIRECTS", "SLOTS", "ClusterClient", "SlotRoute", "key_slot"]

logger = logging.getLogger("gateway.layers.redis")

#: Redirections (``MOVED``/``ASK``) and ``TRYAGAIN`` retries one command may take.
MAX_REDIRECTS = 5

Address = tuple[str, int]


class SlotRoute:
    """:class:`~gateway.layers.redis.client.RedisCommands` for one slot: its current owner."""

    __slots__ = ("client", "slot")

    def __init__(self, client: ClusterClient, slot: int) -> None:
        self.client = client
        self.slot = slot

    async def call(self, *args: RedisArg) -> Any:
        return await self.client.run(self.slot, _Command(args))

    async def evalsha(self, script: Script, keys: Sequence[bytes], args: Sequence[RedisArg]) -> Any:
        return await self.client.run(self.slot, _Script(script, keys, args))

    def __repr__(self) -> str:
        return f"<SlotRoute {self.slot} -> {self.client.slots[self.slot]}>"


class _Command:
    __slots__ = ("args",)

    def __init__(self, args: tuple[Any, ...]) -> None:
        self.args = args

    async def __call__(self, connection: RedisConnection, asking: bool) -> Any:
        if asking:
            return await connection.call_asking(*self.args)
        return await connection.call(*self.args)


class _Script:
    __slots__ = ("script", "keys", "args")

    def __init__(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> None:
        self.script = script
        self.keys = keys
        self.args = args

    async def __call__(self, connection: RedisConnection, asking: bool) -> Any:
        if not asking:
            return await connection.evalsha(self.script, self.keys, self.args)
        script, keys, args = self.script, self.keys, self.args
        try:
            return await connection.call_asking("EVALSHA", script.sha, len(keys), *keys, *args)
        except RedisLayerError as exc:
            if isinstance(exc, (RedisLayerUnavailable, RedisRedirect)) or "NOSCRIPT" not in str(exc):
                raise
        return await connection.call_asking("EVAL", script.source, len(keys), *keys, *args)


class ClusterClient:
    """A Redis Cluster as one keyspace (see the module documentation).

    Args:
        seeds: cluster nodes to start from (``redis+cluster://`` addresses); their credentials
            and TLS settings are used for every node.
        reactor, loop: the Twisted asyncio reactor and its loop.
        settings: timeouts and reconnection backoff.
        scripts: Lua scripts loaded on every connection.
        on_node_ready: ``await on_node_ready(address, commands, first)`` after each (re)connection
            to a primary, before commands use it (the channel layer re-adds memberships there);
            ``commands`` run on the new connection.
        refresh_interval: seconds between map refreshes while a primary is unreachable.
    """

    cluster = True

    def __init__(self, seeds: Sequence[RedisAddress], reactor: Any, loop: asyncio.AbstractEventLoop,
                 settings: ConnectionSettings | None = None, scripts: Sequence[Script] = (),
                 on_node_ready: Callable[[Address, RedisCommands, bool], Awaitable[None]] | None = None,
                 refresh_interval: float = 0.25) -> None:
        if not seeds or not all(seed.cluster for seed in seeds):
            raise ValueError("ClusterClient needs redis+cluster:// seed addresses")
        self.seeds = list(seeds)
        self.template = seeds[0]
        self.reactor = reactor
        self.loop = loop
        self.settings = settings or ConnectionSettings()
        self.scripts = tuple(scripts)
        self.on_node_ready = on_node_ready
        self.refresh_interval = min(refresh_interval, self.settings.reconnect_max_delay)
        #: The primary serving each slot (``None``: unknown or not served).
        self.slots: list[Address | None] = [None] * SLOTS
        #: Command connections by node address (the primaries of the last map).
        self.nodes: dict[Address, RedisConnection] = {}
        self.closed = False
        #: Map refreshes done, redirections followed, slot-map changes seen.
        self.refreshes = 0
        self.redirects = 0
        self.topology_changes = 0
        self._refresh_task: asyncio.Task[None] | None = None
        self._refresh_failures = 0
        self._again = False
        self._last_refresh = 0.0
        self._watch_task: asyncio.Task[None] | None = None
        self._routes = [SlotRoute(self, slot) for slot in range(SLOTS)]
        self._slot_connections: weakref.WeakSet[RedisConnection] = weakref.WeakSet()
        self._closing: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"<ClusterClient {len(self.primaries())} primaries via {self.template.describe()}>"

    # -- routing ----------------------------------------------------------------------------

    def route(self, key: bytes) -> RedisCommands:
        return self._routes[key_slot(key)]

    def slot_route(self, slot: int) -> SlotRoute:
        return self._routes[slot]

    async def execute(self, key: bytes, *args: RedisArg) -> Any:
        return await self.run(key_slot(key), _Command(args))

    async def evalsha(self, script: Script, keys: Sequence[bytes], args: Sequence[RedisArg]) -> Any:
        return await self.run(key_slot(keys[0]), _Script(script, keys, args))

    async def owner(self, slot: int) -> Address:
        """The primary serving ``slot`` (refreshing the map when it is not known).

        Raises:
            RedisLayerUnavailable: no node answers, or no node serves the slot.
        """
        address = self.slots[slot]
        if address is None:
            await self.refresh()
            address = self.slots[slot]
            if address is None:
                raise RedisLayerUnavailable(f"Redis Cluster {self.template.describe()}: no node serves slot {slot}")
        return address

    async def run(self, slot: int, operation: Callable[[RedisConnection, bool], Awaitable[Any]]) -> Any:
        """Run ``operation(connection, asking)`` on the owner of ``slot``, following redirections."""
        asking: Address | None = None
        for _ in range(MAX_REDIRECTS):
            if asking is not None:
                connection, ask = self.node(asking), True
            else:
                connection, ask = self.node(self.slots[slot] or await self.owner(slot)), False
            try:
                return await operation(connection, ask)
            except RedisRedirect as redirect:
                self.redirects += 1
                target = (redirect.host or connection.address.host, redirect.port)
                if redirect.kind == "ASK":
                    asking = target
                    continue
                asking = None
                self._moved(redirect.slot, target)
            except RedisLayerUnavailable:
                self.request_refresh()
                raise
            except RedisLayerError as exc:
                if not str(exc).split(": ", 1)[-1].startswith("TRYAGAIN"):
                    raise
                asking = None
                await asyncio.sleep(0.05)
        raise RedisLayerError(f"Redis Cluster {self.template.describe()}: slot {slot} keeps being redirected")

    # -- nodes --------------------------------------------------------------------------------

    def address_of(self, node: Address) -> RedisAddress:
        return dataclasses.replace(self.template, host=node[0], port=node[1])

    def node(self, node: Address) -> RedisConnection:
        """The command connection to ``node`` (created, and connected in the background, if new)."""
        connection = self.nodes.get(node)
        if connection is None:
            on_ready = None
            if self.on_node_ready is not None:
                callback = self.on_node_ready

                async def on_ready(commands: RedisCommands, first: bool, node: Address = node) -> None:
                    await callback(node, commands, first)

            connection = self.nodes[node] = RedisConnection(
                self.address_of(node), "command", self.reactor, self.loop, self.settings, self.scripts,
                on_ready=on_ready, on_down=self._down,
            )
            if self.closed:
                connection.closed = True
            else:
                connection.start()
        return connection

    def slot_connection(self, slot: int, role: str, reply_timeout: float | None = None,
                        scripts: Sequence[Script] = ()) -> RedisConnection:
        """A connection of its own (blocking reads) to whichever node serves ``slot``."""
        async def locate() -> Address:
            return await self.owner(slot)

        connection = RedisConnection(self.template, role, self.reactor, self.loop, self.settings, scripts,
                                     reply_timeout=reply_timeout, locate=locate, on_down=self._down)
        self._slot_connections.add(connection)
        return connection

    def primaries(self) -> set[Address]:
        return {node for node in self.slots if node is not None}

    def connections(self) -> list[RedisConnection]:
        return list(self.nodes.values())

    async def close(self) -> None:
        self.closed = True
        for task in (self._refresh_task, self._watch_task):
            if task is not None and not task.done():
                task.cancel()
        tasks = [t for t in (self._refresh_task, self._watch_task) if t is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        await asyncio.gather(*(c.close() for c in list(self.nodes.values())), *self._closing, return_exceptions=True)

    # -- the slot map -------------------------------------------------------------------------

    def redirected(self, redirect: RedisRedirect) -> None:
        """A connection of this client's (a reader's) was told the slot moved (``MOVED``)."""
        if redirect.kind == "MOVED":
            self._moved(redirect.slot, (redirect.host or self.template.host, redirect.port))

    def _moved(self, slot: int, node: Address) -> None:
        if self.slots[slot] != node:
            self.slots[slot] = node
            self.topology_changes += 1
        self.request_refresh()

    def _down(self, connection: RedisConnection) -> None:
        """A connection dropped or could not open: the topology may have changed."""
        if self.closed:
            return
        self.request_refresh()
        if self._watch_task is None or self._watch_task.done():
            self._watch_task = self.loop.create_task(self._watch())

    async def _watch(self) -> None:
        """While a primary is unreachable, refresh the map every ``refresh_interval``."""
        while not self.closed:
            await asyncio.sleep(self.refresh_interval)
            down = [n for n in self.primaries() if n in self.nodes and not self.nodes[n].up]
            if not down:
                return
            try:
                await self.refresh()
            except RedisLayerError:
                pass

    def request_refresh(self) -> None:
        """Refresh the map in the background soon (at most ten times a second)."""
        if self.closed:
            return
        if self._refresh_task is not None and not self._refresh_task.done():
            self._again = True
            return
        wait = self._last_refresh + 0.1 - time.monotonic()
        self._refresh_task = self.loop.create_task(self._refresh(max(0.0, wait)))

    async def refresh(self) -> None:
        """Ask the cluster for its slot map now (joining a refresh in progress).

        Raises:
            RedisLayerUnavailable: no node answered.
        """
        if self._refresh_task is None or self._refresh_task.done():
            self._refresh_task = self.loop.create_task(self._refresh(0.0))
        task = self._refresh_task
        await asyncio.shield(task)
        if self.primaries():
            return
        raise RedisLayerUnavailable(f"Redis Cluster {self.template.describe()}: no node answered CLUSTER SLOTS")

    async def _refresh(self, wait: float) -> None:
        if wait:
            await asyncio.sleep(wait)
        while True:
            self._again = False
            self._last_refresh = time.monotonic()
            try:
                reply, asked = await self._ask_slots()
            except RedisLayerError as exc:
                self._refresh_failures += 1
                level = logging.WARNING if self._refresh_failures % 50 == 1 else logging.DEBUG
                logger.log(level, "Redis Cluster %s: cannot read the slot map (attempt %d): %s",
                           self.template.describe(), self._refresh_failures, exc)
                return
            self._refresh_failures = 0
            self.refreshes += 1
            self._apply(reply, asked)
            if not self._again or self.closed:
                return

    async def _ask_slots(self) -> tuple[Any, Address]:
        up = [node for node, c in self.nodes.items() if c.up and node in self.primaries()]
        for node in up:
            try:
                return await self.nodes[node].call("CLUSTER", "SLOTS"), node
            except RedisLayerError:
                continue
        candidates = list(dict.fromkeys([*self.nodes, *((s.host, s.port) for s in self.seeds)]))
        probes = [self.loop.create_task(self._probe(node)) for node in candidates]
        try:
            errors = []
            for next_done in asyncio.as_completed(probes):
                try:
                    return await next_done
                except RedisLayerError as exc:
                    errors.append(str(exc))
            raise RedisLayerUnavailable("; ".join(errors) or "no node known")
        finally:
            for probe in probes:
                probe.cancel()

    async def _probe(self, node: Address) -> tuple[Any, Address]:
        connection = self.node(node)
        reply = await asyncio.wait_for(connection.call("CLUSTER", "SLOTS"), self.settings.connect_timeout)
        return reply, node

    def _apply(self, reply: Any, asked: Address) -> None:
        slots: list[Address | None] = [None] * SLOTS
        for entry in reply or ():
            start, end, primary = int(entry[0]), int(entry[1]), entry[2]
            host = primary[0].decode() if isinstance(primary[0], bytes) else str(primary[0])
            node = (host or asked[0], int(primary[1]))
            for slot in range(start, end + 1):
                slots[slot] = node
        changed = slots != self.slots
        if changed:
            before = self.primaries()
            self.slots = slots
            self.topology_changes += 1
            after = self.primaries()
            if before and before != after:
                logger.warning("Redis Cluster %s: primaries now %s", self.template.describe(),
                               ", ".join(f"{h}:{p}" for h, p in sorted(after)))
        primaries = self.primaries()
        for node in [n for n in self.nodes if n not in primaries]:
            task = self.loop.create_task(self.nodes.pop(node).close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        for node in primaries:
            self.node(node)  # connect to every primary now
        if changed:  # readers waiting out a backoff to a node that is gone: follow their slot now
            for connection in list(self._slot_connections):
                if not connection.up:
                    connection.retry_now()
