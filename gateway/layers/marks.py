"""Shared marks: short-lived "this was done" flags every process behind a Redis layer sees.

A protocol that must act once per event across several daemons (the SMS listener answering a
provider's redelivery of a webhook it already handled) marks the event's key when it handled it
and asks, before handling the next delivery, whether the key is marked. :func:`shared_marks`
finds the marks of the configured layers: a Redis layer provides them (``SET key PX ttl`` /
``EXISTS key`` under ``{prefix}:marks:{namespace}:``, on whichever server or cluster slot the key
hashes to); with only process-local layers there are none, and the caller remembers in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from gateway.layers.registry import DEFAULT_CHANNEL_LAYER

__all__ = ["SharedMarks", "shared_marks"]


@runtime_checkable
class SharedMarks(Protocol):
    """Marks with a time to live, shared by every process on the same layer."""

    async def marked(self, key: str) -> bool:
        """Whether ``key`` is marked.

        Raises:
            ConnectionError: the shared store cannot be reached now (``RedisLayerUnavailable``).
        """
        ...

    def mark(self, key: str, ttl: float) -> None:
        """Mark ``key`` for ``ttl`` seconds (written in the background; a failure is logged)."""
        ...


def shared_marks(layers: Any, namespace: str) -> SharedMarks | None:
    """The marks of the configured layers under ``namespace`` (alias ``default`` first, else
    the first layer that has them), or ``None`` when no layer is shared (memory only).

    ``layers`` is a :class:`~gateway.layers.LayerRegistry` (or a mapping of aliases to layers).
    """
    if layers is None:
        return None
    if isinstance(layers, Mapping):
        candidates = dict(layers)
    else:
        candidates = {alias: layers.get(alias) for alias in getattr(layers, "aliases", [])}
    ordered = [candidates.pop(DEFAULT_CHANNEL_LAYER, None), *candidates.values()]
    for layer in ordered:
        factory = getattr(layer, "marks", None)
        if layer is not None and callable(factory) and not getattr(layer, "process_local", True):
            marks: SharedMarks = factory(namespace)
            return marks
    return None
