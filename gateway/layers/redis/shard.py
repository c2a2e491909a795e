"""One shard: its command connection and its readers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.layers.redis.connection import ConnectionSettings, RedisConnection
from gateway.layers.redis.hosts import RedisAddress
from gateway.layers.redis.reader import Reader
from gateway.layers.redis.scripts import DELIVER, DRAIN, FLUSH, GROUP_ADD, GROUP_READ, GROUP_SEND, SEND

if TYPE_CHECKING:
    from gateway.layers.redis.layer import RedisChannelLayer

__all__ = ["Shard"]

COMMAND_SCRIPTS = (SEND, GROUP_ADD, GROUP_READ, GROUP_SEND, DELIVER, FLUSH)


class Shard:
    """The connections of one layer instance to one Redis host (or Sentinel service).

    The command connection (every send, group operation and flush; pipelined) opens at first
    use; a reader (``process`` or ``normal``) opens with its own connection when first needed.
    """

    def __init__(self, layer: RedisChannelLayer, index: int, address: RedisAddress) -> None:
        from gateway.layers.redis import groups

        self.layer = layer
        self.index = index
        self.address = address
        connect, command, max_delay = layer._timeouts
        self.settings = ConnectionSettings(connect, command, max_delay)
        self.command = RedisConnection(
            address, "command", layer._reactor, layer._loop, self.settings, COMMAND_SCRIPTS,
            on_ready=lambda first: groups.restore_memberships(layer, index, first),
        )
        self.readers: dict[str, Reader] = {}

    def reader(self, kind: str) -> Reader:
        """This shard's reader of ``kind``, created and started at first use."""
        reader = self.readers.get(kind)
        if reader is None:
            layer = self.layer
            connection = RedisConnection(
                self.address, f"{kind} reader", layer._reactor, layer._loop, self.settings, (DRAIN,),
                reply_timeout=layer.block_timeout + self.settings.command_timeout,
            )
            wake = f"{layer.prefix}specific.{layer.client_prefix}!wake.{kind}".encode()
            reader = self.readers[kind] = Reader(
                kind, connection, self.command, wake, lambda: layer.reader_keys(self.index, kind),
                layer.dispatch, layer.counters, layer.batch, layer.block_timeout,
            )
            reader.start()
        return reader

    def connections(self) -> list[RedisConnection]:
        return [self.command, *(r.connection for r in self.readers.values())]

    async def close(self) -> None:
        import asyncio

        await asyncio.gather(*(r.close() for r in self.readers.values()), return_exceptions=True)
        await self.command.close()

    def __repr__(self) -> str:
        return f"<Shard {self.index} {self.address.describe()}>"

    def describe(self) -> dict[str, Any]:
        """The state of each connection (for status pages)."""
        return {c.role: {"up": c.up, "last_error": c.last_error, "connects": c.connects} for c in self.connections()}
