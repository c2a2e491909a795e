"""The Redis layer's :class:`~gateway.layers.marks.SharedMarks`."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from gateway.layers.redis.errors import RedisLayerError

__all__ = ["RedisMarks"]

logger = logging.getLogger("gateway.layers.redis")


class _Executes(Protocol):
    prefix: str

    async def execute(self, key: bytes, *args: bytes | str | int | float) -> object:
        ...


class RedisMarks:
    """Marks under ``{prefix}:marks:{namespace}:`` through a Redis layer's servers.

    Args:
        layer: the Redis channel layer (its :meth:`execute` runs a command where a key lives).
        namespace: keeps different users' keys apart (``sms:<listener>``).
    """

    def __init__(self, layer: _Executes, namespace: str) -> None:
        self.layer = layer
        self.base = f"{layer.prefix}:marks:{namespace}:"
        self._writes: set[asyncio.Task[None]] = set()

    def key(self, key: str) -> bytes:
        return (self.base + key).encode("utf-8")

    async def marked(self, key: str) -> bool:
        name = self.key(key)
        return bool(await self.layer.execute(name, "EXISTS", name))

    def mark(self, key: str, ttl: float) -> None:
        task = asyncio.get_running_loop().create_task(self._write(self.key(key), max(1, int(ttl * 1000))))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, name: bytes, ttl_ms: int) -> None:
        try:
            await self.layer.execute(name, "SET", name, b"1", "PX", ttl_ms)
        except RedisLayerError as exc:  # the local memory still has it; other processes may not
            logger.warning("Redis layer: a shared mark was not written: %s", exc)

    async def flush(self) -> None:
        """Wait for the marks being written (tests, shutdown)."""
        if self._writes:
            await asyncio.wait(list(self._writes))
