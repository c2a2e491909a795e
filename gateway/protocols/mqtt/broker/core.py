# -*- test-case-name: tests.unit.mqtt.test_broker -*-
"""The built-in MQTT broker: sessions, subscriptions, routing, retained messages and wills.

One :class:`Broker` serves every MQTT listener of a process that names it. Connections talk to
it through a :class:`~.link.BrokerLink`; the broker talks back to a connection through a small
interface (``level``, ``deliver()``, ``deliver_qos0()``, ``flush_output()``, ``take_over()``),
so routing writes straight into each subscriber's wire core, and the subscribers touched by a
batch of publishes are flushed once (:meth:`Broker.flush`).

Rules implemented here (MQTT 5.0 numbering; 3.1.1 where it applies):

* matching with ``+``/``#``, ``$`` topics not matched by a leading wildcard (§4.7.2);
* overlapping subscriptions of one client: one copy at the highest granted QoS, with every
  matching Subscription Identifier (§3.3.4 [MQTT-3.3.4-2..5]); No Local (§3.8.3.1
  [MQTT-3.8.3-3]) and Retain As Published (§3.3.1.3 [MQTT-3.3.1-12/13]);
* shared subscriptions: one member per message, round robin (§4.8.2);
* retained messages set, replaced and cleared by a zero-length payload (§3.3.1.3), sent on
  subscribe per Retain Handling with RETAIN set, never for shared subscriptions;
* persistent sessions (§4.1): subscriptions and QoS 1/2 messages kept while the client is away,
  until the Session Expiry Interval runs out; the protocol state of the last connection resumed;
* Will Messages published when a connection ends without a normal DISCONNECT, after the Will
  Delay Interval or at session end, whichever comes first, unless the client came back (§3.1.3.2);
* message expiry: the Message Expiry Interval counts down while a message waits (§3.3.2.3.3).

With a :class:`~.cluster.Cluster`, several processes form one broker (see that module).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from twisted.logger import Logger

from gateway.asgi.instance import failure_of

from gateway.protocols.mqtt.broker.auth import denied_topic
from gateway.protocols.mqtt.broker.eager import run_eager
from gateway.protocols.mqtt.broker.index import TopicTree
from gateway.protocols.mqtt.broker.session import (
    NEVER_EXPIRES, BrokerConnection, Message, Session, ShareGroup, Sub, dump_message, load_message,
)
from gateway.protocols.mqtt.broker.store import BrokerStore, MemoryStore
from gateway.protocols.mqtt.packets import Subscription, Will
from gateway.protocols.mqtt.topics import parse_shared_subscription

__all__ = ["Broker", "BrokerConnection", "Subscribed"]

log = Logger(namespace="gateway.mqtt.broker")


class Broker:
    """The broker's state on this node.

    Args:
        reactor: for the will-delay and session-expiry timers (``callLater``).
        loop: the asyncio loop (store calls that really wait run as tasks on it).
        name: the broker's name; listeners naming the same broker share it.
        store: retained messages and saved sessions (default: a new :class:`MemoryStore`).
        max_queued_messages: QoS 1/2 messages kept per absent client (beyond: dropped).
        max_session_expiry: cap on Session Expiry Intervals in seconds (None: no cap).
        clock: wall-clock time (message expiry is compared across processes).
    """

    def __init__(
        self, reactor: Any, loop: asyncio.AbstractEventLoop, *, name: str = "default",
        store: BrokerStore | None = None, max_queued_messages: int = 1000,
        max_session_expiry: int | None = None, clock: Callable[[], float] = time.time,
    ) -> None:
        self.reactor = reactor
        self.loop = loop
        self.name = name
        self.store = store if store is not None else MemoryStore(clock)
        self.max_queued_messages = max_queued_messages
        self.max_session_expiry = max_session_expiry
        self.clock = clock
        self.sessions: dict[str, Session] = {}
        self.subs: TopicTree[Sub] = TopicTree()
        self.shares: TopicTree[ShareGroup] = TopicTree()
        #: Connections written to since the last :meth:`flush`.
        self.dirty: set[BrokerConnection] = set()
        #: Set by :class:`~.cluster.Cluster` when this broker is one node of several.
        self.cluster: Any = None
        self.stats = {"dropped": 0}
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Join the cluster, if any."""
        if self.cluster is not None:
            await self.cluster.start()

    async def stop(self) -> None:
        """Save absent clients' sessions (when the store outlives us), leave the cluster."""
        now = self.clock()
        for session in list(self.sessions.values()):
            for timer in (session.will_timer, session.expiry_timer):
                if timer is not None and timer.active():
                    timer.cancel()
            if session.conn is None and session.expiry and (self.store.shared or self.cluster):
                ttl = None if session.expiry == NEVER_EXPIRES else session.expiry
                await self.store.save_session(session.client_id, session.dump(now), ttl)
                if self.cluster is not None:
                    await self.store.release_owner(session.client_id, self.cluster.node)
        if self.cluster is not None:
            await self.cluster.stop()
        await self.store.close()

    def run(self, coro: Coroutine[Any, Any, Any], what: str = "broker operation") -> None:
        """Run a coroutine eagerly, logging its failure."""

        def done(exc: BaseException | None, result: Any) -> None:
            if exc is not None and not isinstance(exc, asyncio.CancelledError):
                log.failure("MQTT {what} failed", failure=failure_of(exc), what=what)

        task = run_eager(coro, done, self.loop)
        if task is not None:  # the loop only keeps weak references to tasks
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- sessions -----------------------------------------------------------------------------

    def session_expiry(self, requested: int) -> int:
        """The Session Expiry Interval granted for ``requested`` seconds."""
        cap = self.max_session_expiry
        return requested if cap is None or requested <= cap else cap

    async def open_session(
        self, conn: BrokerConnection, client_id: str, *, clean_start: bool, expiry: int, level: int,
        username: str | None = None,
    ) -> Session:
        """Attach ``conn`` to ``client_id``'s session, taking it over from an older connection.

        ``session.present`` tells whether an earlier session continues (§3.2.2.1.1). Messages
        are queued for it until :meth:`attach` (after the CONNACK).
        """
        session = self._take_over(client_id)
        if session is None:
            blob = None
            if self.cluster is not None:
                blob = await self.cluster.claim(client_id, clean_start)
            elif self.store.shared:
                blob = await self.store.load_session(client_id)
            session = self._take_over(client_id)  # another connection may have won meanwhile
            if session is None and blob is not None:
                session = self._restore(blob)
        if session is not None:
            if clean_start:
                self._end_session(session)  # a pending will goes out: its session ends
                session = None
            else:
                self._cancel_timers(session, will=True)
        present = session is not None
        if session is None:
            session = Session(client_id)
            self.sessions[client_id] = session
        session.present = present
        session.conn = conn
        session.online = False
        session.expiry = expiry
        session.level = level
        session.username = username
        if self.cluster is not None:
            await self.cluster.owned(client_id)
        return session

    def _take_over(self, client_id: str) -> Session | None:
        session = self.sessions.get(client_id)
        if session is not None and session.conn is not None:
            session.conn.take_over()  # §3.1.4: DISCONNECT 0x8E to the older connection
            session = self.sessions.get(client_id)  # gone if it expired with that connection
        return session

    def _restore(self, blob: bytes) -> Session:
        session, subs, _saved = Session.load(blob)
        self.sessions[session.client_id] = session
        for topic_filter, qos, no_local, rap, rh, sub_id in subs:
            self.subscribe(session, Subscription(topic_filter, qos, no_local, rap, rh), qos, sub_id)
        return session

    def attach(self, session: Session) -> None:
        """The session's connection was accepted: deliver what waited for it."""
        if session.conn is None:
            return
        session.online = True
        queue = session.queue
        now = self.clock()
        while queue and session.online:
            message, qos, retain, ids = queue.popleft()
            self._send(session, message, qos, retain, ids, now)
        self.flush()

    def connection_closed(
        self, session: Session, conn: BrokerConnection, *, will: Will | None, publish_will: bool,
        state: Any, expiry: int | None = None,
    ) -> None:
        """``conn`` ended: keep the session (with the protocol ``state``) or end it; the will."""
        if session.conn is not conn:
            return  # taken over already
        attached = session.online
        session.conn = None
        session.online = False
        if expiry is not None:
            session.expiry = self.session_expiry(expiry)  # changed by a 5.0 DISCONNECT
        if session.expiry and attached:
            session.state = state  # (refused before the CONNACK: the older state stays)
        if publish_will and will is not None:
            delay = will.properties.will_delay_interval or 0
            if delay and session.expiry:
                session.will = will
                session.will_timer = self.reactor.callLater(
                    min(delay, session.expiry), self._will_due, session
                )
            else:
                self.publish_will(session.client_id, will)
        if not session.expiry:
            self._end_session(session)
        elif session.expiry != NEVER_EXPIRES:
            session.expiry_timer = self.reactor.callLater(session.expiry, self._expired, session)
        self.flush()

    def publish_will(self, client_id: str, will: Will) -> None:
        """Publish a client's Will Message (as if the client had published it)."""
        props = will.properties
        if props.will_delay_interval is not None:
            props = replace(props, will_delay_interval=None)
        message = Message.from_publish(will.topic, will.payload, will.qos, will.retain, props, client_id, self.clock())
        result = self.publish(message)
        if result is not None:
            self.run(result, "retained will")

    def _will_due(self, session: Session) -> None:
        session.will_timer = None
        will, session.will = session.will, None
        if will is not None and session.conn is None:
            self.publish_will(session.client_id, will)
            self.flush()

    def _expired(self, session: Session) -> None:
        session.expiry_timer = None
        if session.conn is None and self.sessions.get(session.client_id) is session:
            self._end_session(session)
            self.flush()

    def _cancel_timers(self, session: Session, will: bool) -> None:
        if session.expiry_timer is not None:
            if session.expiry_timer.active():
                session.expiry_timer.cancel()
            session.expiry_timer = None
        if will and session.will_timer is not None:
            if session.will_timer.active():
                session.will_timer.cancel()
            session.will_timer = None
            session.will = None  # §3.1.3.2.2: the client came back before the delay passed

    def _end_session(self, session: Session, publish_will: bool = True) -> None:
        """The session is over: drop its subscriptions; a pending will goes out now."""
        will, session.will = session.will, None
        self._cancel_timers(session, will=True)
        for topic_filter in list(session.subscriptions):
            self.unsubscribe(session, topic_filter)
        session.queue.clear()
        session.state = None
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
            if self.cluster is not None:
                self.run(self.store.release_owner(session.client_id, self.cluster.node), "owner release")
        if publish_will and will is not None:
            self.publish_will(session.client_id, will)

    def release(self, client_id: str, publish_will: bool) -> bytes | None:
        """Hand ``client_id``'s session to another node: close its connection, serialise it,
        forget it here. A pending will is published first when ``publish_will``."""
        session = self._take_over(client_id)
        if session is None:
            return None
        if publish_will and session.will is not None:
            self.publish_will(client_id, session.will)
        session.will = None
        blob = session.dump(self.clock())
        self._cancel_timers(session, will=True)
        for topic_filter in list(session.subscriptions):
            self.unsubscribe(session, topic_filter)
        del self.sessions[client_id]
        self.flush()
        return blob

    # -- subscriptions ------------------------------------------------------------------------

    def subscribe(
        self, session: Session, request: Subscription, qos: int, sub_id: int | None,
        deny: tuple[str, ...] | None = None,
    ) -> Subscribed:
        """Add or replace a subscription (§3.8.4); ``sub.existed`` tells if it replaced one.
        ``deny``: denied filters overlapping it (topics they match are not delivered)."""
        share, inner = parse_shared_subscription(request.topic_filter)
        sub = Sub(
            session, request.topic_filter, inner, share, qos, request.no_local,
            request.retain_as_published, request.retain_handling, sub_id, deny,
        )
        existed = request.topic_filter in session.subscriptions
        session.subscriptions[request.topic_filter] = sub
        if share is None:
            self.subs.add(inner, session.client_id, sub)
        else:
            group = self.shares.get(inner, share)
            if group is None:
                group = ShareGroup(share, inner)
                self.shares.add(inner, share, group)
                if self.cluster is not None:
                    self.cluster.share_added(share, inner)
            group.members[session.client_id] = sub
        return Subscribed(sub, existed)

    def unsubscribe(self, session: Session, topic_filter: str) -> bool:
        """Remove a subscription; False if there was none (§3.10.4)."""
        sub = session.subscriptions.pop(topic_filter, None)
        if sub is None:
            return False
        if sub.share is None:
            self.subs.remove(sub.inner, session.client_id)
        else:
            group = self.shares.get(sub.inner, sub.share)
            if group is not None:
                group.members.pop(session.client_id, None)
                if not group.members:
                    self.shares.remove(sub.inner, sub.share)
                    if self.cluster is not None:
                        self.cluster.share_removed(sub.share, sub.inner)
        return True

    async def send_retained(self, session: Session, subs: list[Subscribed]) -> None:
        """Send the retained messages new subscriptions ask for (after their SUBACK)."""
        now = self.clock()
        for entry in subs:
            sub, existed = entry.sub, entry.existed
            if sub.share is not None or sub.rh == 2 or (sub.rh == 1 and existed):
                continue  # §3.8.3.1 Retain Handling; none for shared subscriptions (§4.8.2)
            for data in await self.store.match_retained(sub.inner):
                message = load_message(data)
                if session.subscriptions.get(sub.filter) is not sub:
                    break  # unsubscribed meanwhile
                if sub.deny is not None and denied_topic(sub.deny, message.topic):
                    continue
                ids = (sub.sub_id,) if sub.sub_id else ()
                self._send(session, message, min(message.qos, sub.qos), True, ids, now)
        self.flush()

    # -- routing (runs for every publish: kept lean, see the fast path in route()) ----------

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
            qos = message.qos
            # The fast path: online clients, no expiry to count down, no identifiers: the bytes
            # are encoded once per (protocol level, QoS, RETAIN) and shared by the subscribers.
            direct = message.expires_at is None
            dirty = self.dirty
            for sub in tables[0].values():
                session = sub.session
                if sub.no_local and origin == session.client_id:
                    continue
                if sub.deny is not None and denied_topic(sub.deny, message.topic):
                    continue  # a deny rule covers this topic for this client
                if direct and session.online and not sub.sub_id:
                    conn = session.conn
                    if conn is not None:
                        granted = sub.qos if sub.qos < qos else qos
                        flag = retained and sub.rap
                        if not granted:
                            if conn.deliver_qos0(message, flag):
                                dirty.add(conn)
                                continue
                        elif conn.deliver(message.topic, message.payload, granted, flag, message.properties,
                                          message.parts(conn.level, granted, flag)):
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
                if sub.deny is not None and denied_topic(sub.deny, message.topic):
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
                if sub.deny is not None and denied_topic(sub.deny, message.topic):
                    continue
                ids = (sub.sub_id,) if sub.sub_id else ()
                self._send(sub.session, message, min(message.qos, sub.qos), message.retain and sub.rap, ids, now)
                delivered = True
        return delivered

    def _send(
        self, session: Session, message: Message, qos: int, retain: bool, ids: tuple[int, ...], now: float,
    ) -> None:
        conn = session.conn
        if session.online and conn is not None:
            props = message.properties_at(now)
            if props is None:
                return  # expired
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
        if qos and (session.expiry or conn is not None):
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


class Subscribed:
    """What :meth:`Broker.subscribe` returns: the subscription and whether it replaced one."""

    __slots__ = ("sub", "existed")

    def __init__(self, sub: Sub, existed: bool) -> None:
        self.sub = sub
        self.existed = existed

