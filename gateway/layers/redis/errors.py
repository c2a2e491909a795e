"""Errors raised by the Redis channel layer."""

from __future__ import annotations

__all__ = ["RedisLayerError", "RedisLayerUnavailable"]


class RedisLayerError(Exception):
    """A Redis channel layer operation failed (Redis answered with an error)."""


class RedisLayerUnavailable(RedisLayerError, ConnectionError):
    """The Redis server behind a channel or group cannot be reached right now.

    Raised by ``send``, ``group_add``, ``group_discard`` and ``flush`` while the shard they need is
    down (the layer keeps reconnecting in the background); the message names the server and the
    last connection error. ``group_send`` never raises it: it counts what it could not deliver.
    """
