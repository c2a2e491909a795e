"""The Redis channel layer (``backend: redis``), on txredisapi and the Twisted reactor.

Wire-compatible with channels_redis 4.x's ``RedisChannelLayer``; see ``docs/redis-layer.md``.
Importing this package does not import Twisted's reactor or txredisapi; connections open at
first use, on the installed asyncio reactor.
"""

from __future__ import annotations

from gateway.layers.redis.bridge import start_reactor_thread
from gateway.layers.redis.errors import RedisLayerError, RedisLayerUnavailable
from gateway.layers.redis.hosts import RedisAddress, decode_hosts
from gateway.layers.redis.layer import RedisChannelLayer, consistent_hash
from gateway.layers.redis.options import RedisLayerOptions
from gateway.layers.redis.serializer import Serializer

__all__ = [
    "RedisAddress",
    "RedisChannelLayer",
    "RedisLayerError",
    "RedisLayerOptions",
    "RedisLayerUnavailable",
    "Serializer",
    "consistent_hash",
    "decode_hosts",
    "start_reactor_thread",
]
