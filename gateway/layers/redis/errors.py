"""Errors raised by the Redis channel layer and its Redis clients."""

from __future__ import annotations

__all__ = ["ForeignChannelError", "RedisLayerError", "RedisLayerUnavailable", "RedisRedirect"]


class RedisLayerError(Exception):
    """A Redis channel layer operation failed (Redis answered with an error)."""


class RedisLayerUnavailable(RedisLayerError, ConnectionError):
    """The Redis server behind a channel or group cannot be reached right now.

    Raised by ``send``, ``group_add``, ``group_discard`` and ``flush`` while the shard they need is
    down (the layer keeps reconnecting in the background); the message names the server and the
    last connection error. ``group_send`` never raises it: it counts what it could not deliver.
    """


class RedisRedirect(RedisLayerError):
    """A Redis Cluster node answered ``MOVED`` or ``ASK``: the key's slot is served elsewhere.

    Attributes:
        kind: ``MOVED`` (the slot moved for good) or ``ASK`` (ask there once, mid-migration).
        slot: the hash slot.
        host, port: the node to ask.
    """

    def __init__(self, kind: str, slot: int, host: str, port: int) -> None:
        super().__init__(f"{kind} {slot} {host}:{port}")
        self.kind = kind
        self.slot = slot
        self.host = host
        self.port = port

    @classmethod
    def parse(cls, text: str) -> RedisRedirect | None:
        """The redirection an error reply names (``MOVED 3999 127.0.0.1:6381``), else ``None``."""
        parts = text.split()
        if len(parts) != 3 or parts[0] not in ("MOVED", "ASK"):
            return None
        host, _, port = parts[2].rpartition(":")
        try:
            return cls(parts[0], int(parts[1]), host.strip("[]"), int(port))
        except ValueError:
            return None


class ForeignChannelError(ValueError, AssertionError):
    """``receive()`` on a process-specific channel that belongs to another process.

    A ``ValueError``; also an ``AssertionError``, which is what channels_redis raises there, so
    code (and tests) written for channels_redis keep catching it.
    """
