# -*- test-case-name: tests.unit.mqtt.test_broker_store -*-
"""Where a broker keeps what outlives a connection: retained messages, sessions, session owners.

:class:`BrokerStore` is the interface; :class:`MemoryStore` keeps everything in this process (one
process = one broker), :class:`~.redis_store.RedisStore` in Redis (several processes = one broker).
Values are opaque bytes (serialised by :mod:`.session`), so every store holds the same data.

Every method is a coroutine. The memory store never suspends, so the broker's eager runner
(:func:`~gateway.protocols.mqtt.broker.eager.run_eager`) completes its calls synchronously.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.protocols.mqtt.topics import topic_matches

__all__ = ["BrokerStore", "MemoryStore"]


class BrokerStore:
    """The storage a broker needs (override every method)."""

    #: True when the data is visible to other processes (Redis), False for this process only.
    shared = False

    async def set_retained(self, topic: str, data: bytes | None, ttl: float | None = None) -> None:
        """Keep ``data`` as the retained message of ``topic``; None (or b"") clears it (§3.3.1.3).

        ``ttl`` is the message's remaining lifetime in seconds (its Message Expiry Interval).
        """
        raise NotImplementedError

    async def match_retained(self, topic_filter: str) -> list[bytes]:
        """The retained messages whose topics match the (non-shared) ``topic_filter``."""
        raise NotImplementedError

    async def save_session(self, client_id: str, data: bytes, ttl: float | None) -> None:
        """Keep a session for ``ttl`` seconds (None: forever)."""
        raise NotImplementedError

    async def load_session(self, client_id: str) -> bytes | None:
        """The saved session of ``client_id`` (and forget it: the caller owns it now)."""
        raise NotImplementedError

    async def delete_session(self, client_id: str) -> None:
        """Forget the saved session of ``client_id``."""
        raise NotImplementedError

    async def get_owner(self, client_id: str) -> str | None:
        """The broker node that holds ``client_id``'s live session, if any."""
        raise NotImplementedError

    async def set_owner(self, client_id: str, node: str) -> None:
        """Record that ``node`` holds ``client_id``'s session."""
        raise NotImplementedError

    async def release_owner(self, client_id: str, node: str) -> None:
        """Forget the owner of ``client_id`` if it is still ``node``."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release connections."""


class MemoryStore(BrokerStore):
    """Everything in dictionaries of this process. Share one instance between brokers of one
    process to make them one broker (what the tests do)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.retained: dict[str, tuple[bytes, float | None]] = {}
        self.sessions: dict[str, tuple[bytes, float | None]] = {}
        self.owners: dict[str, str] = {}

    async def set_retained(self, topic: str, data: bytes | None, ttl: float | None = None) -> None:
        if not data:
            self.retained.pop(topic, None)
        else:
            self.retained[topic] = (data, None if ttl is None else self._clock() + ttl)

    async def match_retained(self, topic_filter: str) -> list[bytes]:
        now = self._clock()
        if "+" not in topic_filter and "#" not in topic_filter:
            entry = self.retained.get(topic_filter)
            entries = [(topic_filter, entry)] if entry is not None else []
        else:
            entries = [(t, e) for t, e in self.retained.items() if topic_matches(topic_filter, t)]
        found = []
        for topic, (data, deadline) in entries:
            if deadline is not None and deadline <= now:
                del self.retained[topic]  # expired (§3.3.2.3.3)
            else:
                found.append(data)
        return found

    async def save_session(self, client_id: str, data: bytes, ttl: float | None) -> None:
        self.sessions[client_id] = (data, None if ttl is None else self._clock() + ttl)

    async def load_session(self, client_id: str) -> bytes | None:
        entry = self.sessions.pop(client_id, None)
        if entry is None:
            return None
        data, deadline = entry
        if deadline is not None and deadline <= self._clock():
            return None
        return data

    async def delete_session(self, client_id: str) -> None:
        self.sessions.pop(client_id, None)

    async def get_owner(self, client_id: str) -> str | None:
        return self.owners.get(client_id)

    async def set_owner(self, client_id: str, node: str) -> None:
        self.owners[client_id] = node

    async def release_owner(self, client_id: str, node: str) -> None:
        if self.owners.get(client_id) == node:
            del self.owners[client_id]
