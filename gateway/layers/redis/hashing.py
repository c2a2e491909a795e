"""Where a name lives: channels_redis' shard ring hash and Redis Cluster's key slot (pure)."""

from __future__ import annotations

import binascii

__all__ = ["SLOTS", "consistent_hash", "key_slot"]

#: Hash slots of a Redis Cluster.
SLOTS = 16384


def consistent_hash(value: str | bytes, ring_size: int) -> int:
    """The shard of a name: ``crc32(name) & 0xFFF`` scaled onto the ring (channels_redis)."""
    if ring_size == 1:
        return 0
    if isinstance(value, str):
        value = value.encode("utf-8")
    return int((binascii.crc32(value) & 0xFFF) / (4096 / float(ring_size)))


def key_slot(key: bytes) -> int:
    """The cluster hash slot of ``key``: CRC16 (XMODEM) mod 16384 of the key, or of its hash tag
    (the part between the first ``{`` and the next ``}``, when that part is not empty)."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    return binascii.crc_hqx(key, 0) & 0x3FFF
