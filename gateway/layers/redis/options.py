"""The options ``backend: redis`` accepts, and their checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.exceptions import InvalidChannelLayerError

__all__ = ["RedisLayerOptions", "check_positive"]


@dataclass(frozen=True)
class RedisLayerOptions:
    """The options of :class:`~gateway.layers.redis.RedisChannelLayer` (the YAML keys beside
    ``backend: redis``; the ones channels_redis has mean the same there).

    Attributes:
        hosts: Redis URLs (``redis://``, ``rediss://``, ``unix://``), one per shard; channels_redis
            entries (``(host, port)``, ``{"address": url}``, Sentinel dicts) are accepted too.
        prefix: key prefix (channels_redis: ``asgi``); both layers must use the same one.
        expiry: seconds a message may wait (default 60).
        group_expiry: seconds a membership lives after its last ``group_add`` (default 1 day).
        capacity: messages per channel before ``send`` raises ``ChannelFull`` (default 100).
        channel_capacity: per-channel capacities, ``{glob | "re:regex": int}``.
        symmetric_encryption_keys: Fernet keys for message bodies (first encrypts, all decrypt).
        sentinels: Sentinel ``host:port`` addresses; then each host URL names a service.
        sentinel_password: password of the sentinels themselves.
        random_prefix_length: random bytes before each body (channels_redis: 12).
        serializer_format: ``msgpack`` (default) or ``json``, as channels_redis.
        batch: most messages the reader pops in one round trip (default 500).
        block_timeout: seconds a blocking read waits before it is re-issued (default 5).
        send_window: most sends per Redis key that may return before Redis' reply (default 0:
            every send waits for its reply; an acknowledgement then means the message is in Redis).
        connect_timeout: seconds to connect and log in (default 5).
        command_timeout: seconds a reply may take before the connection counts as dead (10).
        reconnect_max_delay: longest wait between reconnection attempts (default 5).
    """

    hosts: Sequence[Any] | None = None
    prefix: str = "asgi"
    expiry: float = 60
    group_expiry: float = 86400
    capacity: int = 100
    channel_capacity: Mapping[str, int] | None = None
    symmetric_encryption_keys: Sequence[str] | None = None
    sentinels: Sequence[str] = ()
    sentinel_password: str | None = None
    random_prefix_length: int = 12
    serializer_format: str = "msgpack"
    batch: int = 500
    block_timeout: float = 5.0
    send_window: int = 0
    connect_timeout: float = 5.0
    command_timeout: float = 10.0
    reconnect_max_delay: float = 5.0


def check_positive(name: str, value: Any, integer: bool = False) -> None:
    """Raise ``InvalidChannelLayerError`` unless ``value`` is a positive number (integer)."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
        kind = "integer" if integer else "number"
        raise InvalidChannelLayerError(f"{name} must be a positive {kind}, got {value!r}")
