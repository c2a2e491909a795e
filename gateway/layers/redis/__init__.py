"""The Redis channel layer (``backend: redis``), on txredisapi and the Twisted reactor.

Wire-compatible with channels_redis 4.x's ``RedisChannelLayer``; runs on Redis Cluster too
(``redis+cluster://`` hosts); see ``docs/redis-layer.md``. Importing this package does not import
Twisted's reactor or txredisapi; connections open at first use, on the installed asyncio reactor
(started in a thread of its own when none is installed).

For other Redis users (the MQTT broker's store), :mod:`gateway.layers.redis.client` has the
``RedisClient`` contract and :func:`~gateway.layers.redis.client.open_client` (one server or a
cluster), with the layer's reconnection backoff
(:class:`~gateway.layers.redis.connection.Backoff`); import those once the reactor is installed.
"""

from __future__ import annotations

from gateway.layers.redis.bridge import start_reactor_thread
from gateway.layers.redis.errors import ForeignChannelError, RedisLayerError, RedisLayerUnavailable, RedisRedirect
from gateway.layers.redis.hashing import consistent_hash, key_slot
from gateway.layers.redis.hosts import RedisAddress, decode_hosts
from gateway.layers.redis.layer import RedisChannelLayer
from gateway.layers.redis.options import RedisLayerOptions
from gateway.layers.redis.serializer import Serializer

__all__ = [
    "ForeignChannelError",
    "RedisAddress",
    "RedisChannelLayer",
    "RedisLayerError",
    "RedisLayerOptions",
    "RedisLayerUnavailable",
    "RedisRedirect",
    "Serializer",
    "consistent_hash",
    "decode_hosts",
    "key_slot",
    "start_reactor_thread",
]
