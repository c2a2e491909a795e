"""What a component needs from "a Redis": the :class:`RedisClient` contract (see
:mod:`gateway.layers.redis.client` for its implementations and :func:`~gateway.layers.redis.client.open_client`).

Kept apart from the implementations so that both (one server, a cluster) name it without
importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from gateway.layers.redis.connection import RedisConnection
from gateway.layers.redis.scripts import Script

__all__ = ["RedisArg", "RedisClient", "RedisCommands", "hash_tagged"]

#: A command argument: bytes as they are, str as UTF-8, numbers in full precision.
RedisArg = bytes | str | int | float


@runtime_checkable
class RedisCommands(Protocol):
    """Runs commands on one server: a connection, or the current owner of one cluster slot."""

    async def call(self, *args: RedisArg) -> Any:
        """Run one command and return its reply (bulk strings as ``bytes``).

        Raises:
            RedisLayerUnavailable: the server cannot be reached now.
            RedisLayerError: Redis answered with an error.
        """
        ...

    async def evalsha(self, script: Script, keys: Sequence[bytes], args: Sequence[RedisArg]) -> Any:
        """Run ``script`` (by SHA; its source once if the server does not know it)."""
        ...


@runtime_checkable
class RedisClient(Protocol):
    """A Redis deployment seen as one keyspace (see the module documentation)."""

    #: Whether keys are spread over a Redis Cluster (multi-key commands need one hash tag).
    cluster: bool

    def route(self, key: bytes) -> RedisCommands:
        """Where ``key`` lives (on a cluster: its slot's owner, followed as it moves)."""
        ...

    async def execute(self, key: bytes, *args: RedisArg) -> Any:
        """``route(key).call(*args)``: run a command on the server holding ``key``."""
        ...

    async def evalsha(self, script: Script, keys: Sequence[bytes], args: Sequence[RedisArg]) -> Any:
        """Run ``script`` where ``keys`` live (on a cluster they must share one slot)."""
        ...

    def connections(self) -> list[RedisConnection]:
        """The connections open now (for health counters)."""
        ...

    async def close(self) -> None:
        """Close every connection; the client is not used afterwards."""
        ...


def hash_tagged(prefix: str, tag: str, *rest: str) -> bytes:
    """``prefix:{tag}:rest...`` as bytes: keys with the same ``tag`` share a cluster slot."""
    return ":".join((prefix, "{" + tag + "}", *rest)).encode("utf-8")
