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

    # -- what a cluster needs (a node that dies must not take its clients' state with it) ------

    async def set_record(self, client_id: str, data: bytes | None, ttl: float | None = None) -> None:
        """Keep (None: forget) the live record of a persistent session (:meth:`.Session.dump`)."""
        raise NotImplementedError

    async def get_record(self, client_id: str) -> bytes | None:
        """The live record of ``client_id``'s session, if any."""
        raise NotImplementedError

    async def push_queued(self, client_id: str, data: bytes, limit: int, ttl: float | None) -> bool:
        """Append a message for an absent session (False: ``limit`` reached, not kept)."""
        raise NotImplementedError

    async def take_queued(self, client_id: str) -> list[bytes]:
        """The messages queued for ``client_id``, oldest first (and forget them)."""
        raise NotImplementedError

    async def delete_queued(self, client_id: str) -> None:
        """Forget the messages queued for ``client_id``."""
        raise NotImplementedError

    async def node_clients(self, node: str) -> list[str]:
        """The clients whose sessions ``node`` took (some may have moved on since)."""
        raise NotImplementedError

    async def heartbeat(self, node: str, ttl: float) -> None:
        """``node`` is alive for ``ttl`` more seconds."""
        raise NotImplementedError

    async def node_gone(self, node: str) -> None:
        """``node`` stopped: its heartbeat ends now."""
        raise NotImplementedError

    async def nodes(self) -> dict[str, bool]:
        """Every node known, and whether its heartbeat is current."""
        raise NotImplementedError

    async def alive(self, node: str) -> bool:
        """Whether ``node``'s heartbeat is current."""
        raise NotImplementedError

    async def lock(self, name: str, holder: str, ttl: float) -> bool:
        """Take the lock ``name`` for ``ttl`` seconds unless someone holds it."""
        raise NotImplementedError

    async def forget_node(self, node: str) -> None:
        """Drop a dead node's entries (its client list and wills)."""
        raise NotImplementedError

    async def set_will(self, node: str, client_id: str, data: bytes | None) -> None:
        """Keep (None: forget) the will of a client connected to ``node``."""
        raise NotImplementedError

    async def wills(self, node: str) -> dict[str, bytes]:
        """The wills of the clients connected to ``node``."""
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
        self.records: dict[str, bytes] = {}
        self.queues: dict[str, list[bytes]] = {}
        self.clients: dict[str, set[str]] = {}
        self.heartbeats: dict[str, float] = {}
        self.locks: dict[str, float] = {}
        self.node_wills: dict[str, dict[str, bytes]] = {}

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
        self.clients.setdefault(node, set()).add(client_id)

    async def release_owner(self, client_id: str, node: str) -> None:
        if self.owners.get(client_id) == node:
            del self.owners[client_id]
            self.clients.get(node, set()).discard(client_id)

    async def set_record(self, client_id: str, data: bytes | None, ttl: float | None = None) -> None:
        if data is None:
            self.records.pop(client_id, None)
        else:
            self.records[client_id] = data

    async def get_record(self, client_id: str) -> bytes | None:
        return self.records.get(client_id)

    async def push_queued(self, client_id: str, data: bytes, limit: int, ttl: float | None) -> bool:
        queue = self.queues.setdefault(client_id, [])
        if len(queue) >= limit:
            return False
        queue.append(data)
        return True

    async def take_queued(self, client_id: str) -> list[bytes]:
        return self.queues.pop(client_id, [])

    async def delete_queued(self, client_id: str) -> None:
        self.queues.pop(client_id, None)

    async def node_clients(self, node: str) -> list[str]:
        return sorted(self.clients.get(node, ()))

    async def heartbeat(self, node: str, ttl: float) -> None:
        self.heartbeats[node] = self._clock() + ttl

    async def node_gone(self, node: str) -> None:
        self.heartbeats[node] = 0.0

    async def nodes(self) -> dict[str, bool]:
        now = self._clock()
        return {node: until > now for node, until in self.heartbeats.items()}

    async def alive(self, node: str) -> bool:
        return self.heartbeats.get(node, 0.0) > self._clock()

    async def lock(self, name: str, holder: str, ttl: float) -> bool:
        now = self._clock()
        if self.locks.get(name, 0.0) > now:
            return False
        self.locks[name] = now + ttl
        return True

    async def forget_node(self, node: str) -> None:
        self.heartbeats.pop(node, None)
        self.clients.pop(node, None)
        self.node_wills.pop(node, None)

    async def set_will(self, node: str, client_id: str, data: bytes | None) -> None:
        if data is None:
            self.node_wills.get(node, {}).pop(client_id, None)
        else:
            self.node_wills.setdefault(node, {})[client_id] = data

    async def wills(self, node: str) -> dict[str, bytes]:
        return dict(self.node_wills.get(node, {}))
