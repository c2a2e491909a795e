# -*- test-case-name: tests.unit.mqtt.test_broker -*-
"""Routing application messages to subscribers: the part of :class:`~.core.Broker` that runs
for every publish, kept lean (see the fast path in :meth:`Routing.route`).

* one copy per client for overlapping subscriptions, at the highest granted QoS and with every
  matching Subscription Identifier (§3.3.4 [MQTT-3.3.4-2..5]);
* No Local [MQTT-3.8.3-3] and Retain As Published [MQTT-3.3.1-12/13];
* shared subscriptions: one member per message (§4.8.2);
* QoS 1/2 messages for absent persistent sessions are queued (bounded), QoS 0 ones are not;
* the Message Expiry Interval counts down while a message waits (§3.3.2.3.3).
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

from gateway.protocols.mqtt.broker.session import Message, Session, Sub, dump_message

__all__ = ["Routing"]


class Routing:
    """Message routing; mixed into :class:`~.core.Broker` (which provides the state)."""

    subs: Any
    shares: Any
    dirty: set[Any]
    cluster: Any
    store: Any
    clock: Any
    max_queued_messages: int
    stats: dict[str, int]

    def publish(self, message: Message) -> Coroutine[Any, Any, None] | None:
        """Route ``message`` to every subscriber; return the retained-store update, if any.

        The caller runs the returned coroutine (eagerly) and acknowledges the publish once it
        finished, so a retained message is stored before the client hears it was received.
        """
        cluster = self.cluster
        self.route(message, shares=cluster is None)
        if cluster is not None:
            cluster.publish(message)
        if not message.retain:
            return None
        if not message.payload:
            return self.store.set_retained(message.topic, None)
        ttl = None if message.expires_at is None else max(0.0, message.expires_at - self.clock())
        return self.store.set_retained(message.topic, dump_message(message), ttl)

    def route(self, message: Message, shares: bool = True) -> None:
        """Deliver ``message`` to this node's matching subscriptions (``shares``: and groups)."""
        tables = self.subs.match(message.topic)
        now = self.clock()
        if len(tables) == 1:
            origin = message.origin
            retained = message.retain
            # The fast path: QoS 0 to online clients, bytes encoded once per protocol level.
            plain = not message.qos and message.expires_at is None
            dirty = self.dirty
            for sub in tables[0].values():
                session = sub.session
                if sub.no_local and origin == session.client_id:
                    continue
                if plain and session.online and not sub.sub_id:
                    conn = session.conn
                    if conn.deliver_qos0(message, retained and sub.rap):
                        dirty.add(conn)
                        continue
                ids = (sub.sub_id,) if sub.sub_id else ()
                self._send(session, message, min(message.qos, sub.qos), retained and sub.rap, ids, now)
        elif tables:
            self._route_overlapping(message, tables, now)
        if shares and (self.shares.exact or self.shares.wildcard_entries):
            self.route_shared(message, None, now)

    def _route_overlapping(self, message: Message, tables: list[dict[str, Sub]], now: float) -> None:
        merged: dict[str, list[Any]] = {}  # client id -> [session, qos, retain, ids]
        origin = message.origin
        for table in tables:
            for client_id, sub in table.items():
                if sub.no_local and origin == client_id:
                    continue
                entry = merged.get(client_id)
                if entry is None:
                    entry = merged[client_id] = [sub.session, 0, False, []]
                entry[1] = max(entry[1], sub.qos)
                entry[2] = entry[2] or (message.retain and sub.rap)
                if sub.sub_id:
                    entry[3].append(sub.sub_id)
        for session, qos, retain, ids in merged.values():
            self._send(session, message, min(message.qos, qos), retain, tuple(ids), now)

    def route_shared(self, message: Message, only: tuple[str, str] | None, now: float | None = None) -> bool:
        """Deliver to one member of each matching local share group (``only``: one group,
        given as ``(share name, filter)``). False if ``only`` has no member here."""
        now = self.clock() if now is None else now
        if only is not None:
            group = self.shares.get(only[1], only[0])
            groups = [group] if group is not None else []
        else:
            groups = [g for table in self.shares.match(message.topic) for g in table.values()]
        delivered = False
        for group in groups:
            sub = group.pick()
            if sub is not None:
                ids = (sub.sub_id,) if sub.sub_id else ()
                self._send(sub.session, message, min(message.qos, sub.qos), message.retain and sub.rap, ids, now)
                delivered = True
        return delivered

    def _send(
        self, session: Session, message: Message, qos: int, retain: bool, ids: tuple[int, ...], now: float,
    ) -> None:
        if session.online:
            props = message.properties_at(now)
            if props is None:
                return  # expired
            conn = session.conn
            if ids:
                props = replace(props, subscription_identifiers=ids)
            if props is not message.properties:
                sent = conn.deliver(message.topic, message.payload, qos, retain, props)
            elif not qos:
                sent = conn.deliver_qos0(message, retain)
            else:  # encoded once per level for every subscriber, the packet id put in by the core
                sent = conn.deliver(message.topic, message.payload, qos, retain, props,
                                    message.parts(conn.level, qos, retain))
            if sent:
                self.dirty.add(conn)
                return
        if qos and (session.expiry or session.conn is not None):
            if message.expires_at is not None and message.expires_at <= now:
                return
            if len(session.queue) >= self.max_queued_messages:
                session.dropped += 1
                self.stats["dropped"] += 1
                return
            session.queue.append((message, qos, retain, ids))

    def flush(self) -> None:
        """Write out every connection that was delivered to since the last flush."""
        dirty = self.dirty
        while dirty:
            dirty.pop().flush_output()
