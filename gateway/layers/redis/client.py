"""The Redis client contract shared by the channel layer and other Redis users (the MQTT store).

:class:`RedisClient` is what a component needs from "a Redis": run a command or a Lua script on
the server that holds a key. Two implementations:

* :class:`ServerClient`: one server (``redis://``, ``rediss://``, ``unix://``, or a Sentinel
  service); every key lives there. One pipelined, auto-reconnecting connection.
* :class:`~gateway.layers.redis.cluster.ClusterClient`: a Redis Cluster (``redis+cluster://``
  seeds): one connection per primary, each command sent to its key's slot owner, ``MOVED`` and
  ``ASK`` followed, the slot map refreshed when the topology changes.

:func:`open_client` builds the right one from URLs. Both reconnect on their own with
:class:`~gateway.layers.redis.connection.Backoff` (``reconnect_max_delay``); while a server is
down, calls raise :class:`~gateway.layers.redis.errors.RedisLayerUnavailable` at once.

Keys that a command or script uses together must share a hash tag (``{...}``) to work on a
cluster; :func:`hash_tagged` builds such keys. Everything runs on the Twisted asyncio reactor's
loop (import this module once the reactor is installed).

Example (the MQTT broker's store, say)::

    client = open_client(["redis+cluster://10.0.0.5:7000"], reactor=reactor, loop=loop,
                         settings=ConnectionSettings(reconnect_max_delay=2.0))
    key = hash_tagged("gateway-mqtt", "default", "retained")   # b"gateway-mqtt:{default}:retained"
    await client.execute(key, "HSET", key, topic, payload)
    await client.close()
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from gateway.layers.redis.commands import RedisArg, RedisClient, RedisCommands, hash_tagged
from gateway.layers.redis.connection import ConnectionSettings, RedisConnection
from gateway.layers.redis.hosts import RedisAddress, decode_hosts
from gateway.layers.redis.scripts import Script

__all__ = ["RedisArg", "RedisClient", "RedisCommands", "ServerClient", "hash_tagged", "open_client"]

class ServerClient:
    """:class:`RedisClient` on one server: one pipelined connection, opened at first use.

    Args:
        address: the server (``redis://``, ``rediss://``, ``unix://`` or a Sentinel service).
        reactor, loop: the Twisted asyncio reactor and its loop.
        settings: timeouts and reconnection backoff.
        scripts: Lua scripts loaded on every (re)connection.
        role: the connection's name in logs.
    """

    cluster = False

    def __init__(self, address: RedisAddress, reactor: Any, loop: asyncio.AbstractEventLoop,
                 settings: ConnectionSettings | None = None, scripts: Sequence[Script] = (),
                 role: str = "command") -> None:
        if address.cluster:
            raise ValueError(f"{address.describe()} is a cluster node: use ClusterClient")
        self.connection = RedisConnection(address, role, reactor, loop, settings or ConnectionSettings(), scripts)

    def route(self, key: bytes) -> RedisCommands:
        return self.connection

    async def execute(self, key: bytes, *args: RedisArg) -> Any:
        return await self.connection.call(*args)

    async def evalsha(self, script: Script, keys: Sequence[bytes], args: Sequence[RedisArg]) -> Any:
        return await self.connection.evalsha(script, keys, args)

    def connections(self) -> list[RedisConnection]:
        return [self.connection]

    async def close(self) -> None:
        await self.connection.close()


def open_client(hosts: Sequence[Any], *, reactor: Any = None, loop: asyncio.AbstractEventLoop | None = None,
                settings: ConnectionSettings | None = None, scripts: Sequence[Script] = ()) -> RedisClient:
    """A :class:`RedisClient` for ``hosts``: one server URL, or ``redis+cluster://`` seeds.

    ``reactor`` and ``loop`` default to the installed asyncio reactor and its loop.

    Raises:
        ValueError: a bad URL, or several hosts that are not cluster seeds (sharding over
            independent servers is the channel layer's own scheme).
    """
    addresses = decode_hosts(list(hosts))
    if reactor is None or loop is None:
        from gateway.layers.redis.bridge import home

        reactor, loop = home()
    settings = settings or ConnectionSettings()
    if addresses[0].cluster:
        from gateway.layers.redis.cluster import ClusterClient

        return ClusterClient(addresses, reactor, loop, settings, scripts)
    if len(addresses) != 1:
        raise ValueError("open_client() takes one server URL, or redis+cluster:// seeds of one cluster")
    return ServerClient(addresses[0], reactor, loop, settings, scripts)

