# -*- test-case-name: tests.unit.mqtt.test_broker_cluster -*-
"""Several broker processes acting as one, over the channel layer API.

Each broker process is a *node* with its own process-specific channel (``layer.new_channel``),
member of the group ``mqtt-broker.<name>``. The layer is the only transport, so the Redis layer
makes the processes one broker and the in-memory layer makes brokers of one process one broker
(what the unit tests use). Nothing here knows which layer it runs on.

* **Publishes.** A node routes a publish to its own subscribers at once, then broadcasts it to
  the group (batched: one ``group_send`` carries every publish made while the previous one was
  in flight, in order). The other nodes route it to theirs.
* **Shared subscriptions.** ``$share/{name}/{filter}`` has one *share channel* (a normal channel,
  not process-specific); every node with members of that group reads it, so each message is
  taken by exactly one node (competing consumers), which gives it to one local member. Nodes
  announce the groups they have members of (``share.add`` / ``share.remove``, and on request
  when a node starts), so a publishing node knows where to send.
* **Sessions.** The node where a client is connected owns its session; the store records owners.
  A client connecting elsewhere makes the new node ask the owner to hand the session over: the
  owner disconnects the old connection (0x8E), serialises the session (subscriptions, queued and
  unacknowledged messages) and replies. An owner that does not answer within the timeout is
  presumed gone; the session is then read from the store, where nodes save absent clients'
  sessions when they stop.
* **Retained messages** live in the shared store (Redis across processes).
* **Liveness.** Every node refreshes a heartbeat key in the store (TTL 1.5 x
  ``heartbeat_interval``) every half interval, and looks for nodes whose heartbeat ran out. A
  node that stops deletes its heartbeat and says ``mqtt.bye``. For a node gone either way,
  exactly one survivor (the one that takes the lock ``adopt:<node>``, ``SET NX PX``) takes
  over: it publishes the wills of the node's clients (each after its Will Delay, kept in the
  store while its client is connected), adopts the node's persistent sessions (from their
  records in the store) as absent sessions of its own, routes to them what was still waiting
  in the dead node's channel, and removes the node from the group. A death is noticed within
  2 x ``heartbeat_interval``.
* **Sessions live in the store.** A persistent session has a record in the store (its
  subscriptions, rewritten when a SUBACK/UNSUBACK goes out, and the unacknowledged messages of
  its last connection, written when the connection ends); messages for an absent persistent
  session are queued in the store (a list per client, bounded by ``max_queued_messages``,
  expiring with the session). Whichever node the client comes back to takes the queue.
* **Acknowledgements.** A QoS 1/2 publish made on this node yields a future that completes
  when the batch carrying it was written to the layer (a Redis layer is asked to raise, not to
  drop, when Redis is unreachable): the broker acknowledges the publish only then.

Layer capacity: a node's channel receives every batch of publishes; give ``mqtt-node*``
channels a larger ``channel_capacity`` for heavy traffic (a full channel drops batches, as
``group_send`` does for any member at capacity).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from typing import Any

from twisted.logger import Logger

from gateway.protocols.mqtt.broker.index import TopicTree
from gateway.protocols.mqtt.broker.session import Message, Session, dump_message, dump_will, load_message, load_will
from gateway.protocols.mqtt.packets import Will

__all__ = ["Cluster"]

log = Logger(namespace="gateway.mqtt.cluster")
_TIMEOUT = object()
#: How long the channel of a node taken over must stay empty before it is considered drained
#: (plus the layer's blocking-read timeout, a margin for a reader that joins a channel late).
_DRAIN_WAIT = 0.5


def _safe(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", name)[:40]


class Cluster:
    """Makes ``broker`` one node of the broker named after it, on ``layer``.

    Args:
        broker: the local :class:`~.core.Broker`; ``broker.cluster`` is set to this object.
        layer: a channel layer (``send``, ``receive``, ``new_channel``, groups).
        takeover_timeout: seconds to wait for a session owner's answer.
        heartbeat_interval: seconds; a node that died is noticed within twice this.
    """

    def __init__(self, broker: Any, layer: Any, *, takeover_timeout: float = 2.0,
                 heartbeat_interval: float = 5.0) -> None:
        self.broker = broker
        self.layer = layer
        self.takeover_timeout = takeover_timeout
        self.heartbeat_interval = heartbeat_interval
        strict = getattr(layer, "group_send_strict", None)
        self._group_send = strict if strict is not None else layer.group_send
        self._waiter: asyncio.Future[None] | None = None
        self._heartbeat: Any = None
        self._adopting: set[str] = set()
        self.stopping = False
        # A node judges others only after its own heartbeats went through for this long: the
        # heartbeat TTL plus the time any node needs to reconnect after a Redis outage.
        self._grace = 2 * heartbeat_interval + 1.25 * float(getattr(layer, "reconnect_max_delay", 0.0))
        self._good_since: float | None = None
        self.group = f"mqtt-broker.{_safe(broker.name)}"
        self.node = ""
        #: Share groups anywhere in the cluster: filter -> {share name: set of nodes}.
        self.known_shares: TopicTree[_Nodes] = TopicTree()
        self._outbox: list[tuple[str, Any, dict[str, Any], asyncio.Future[None] | None]] = []
        self._batch: list[bytes] = []
        self._sender: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._readers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._refresh: Any = None
        broker.cluster = self

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Get a node channel, join the group, learn the cluster's share groups."""
        # A normal channel, not a process-specific one: whoever takes over after this node
        # died can still read what was sent to it.
        self.node = f"mqtt-node.{_safe(self.broker.name)}.{uuid.uuid4().hex}"
        await self.broker.store.heartbeat(self.node, self.heartbeat_interval * 1.5)
        self._good_since = self.broker.loop.time() - self._grace  # (nodes dead before we came: at once)
        await self.layer.group_add(self.group, self.node)
        self._spawn(self._read())
        await self.layer.group_send(self.group, {"type": "mqtt.hello", "node": self.node})
        expiry = float(getattr(self.layer, "group_expiry", 86400))
        self._refresh = self.broker.loop.call_later(expiry / 2, self._renew, expiry / 2)
        self._heartbeat = self.broker.reactor.callLater(self.heartbeat_interval / 2, self._beat)

    def _beat(self) -> None:
        self._heartbeat = self.broker.reactor.callLater(self.heartbeat_interval / 2, self._beat)
        self._spawn(self._check())

    async def _check(self) -> None:
        """Refresh this node's heartbeat; take over nodes whose heartbeat ran out."""
        store = self.broker.store
        now = self.broker.loop.time()
        try:
            known = await store.nodes()
            await store.heartbeat(self.node, self.heartbeat_interval * 1.5)
            if self.node not in known:  # taken for dead (cut off from Redis for too long): rejoin
                if self._good_since is not None:
                    log.warn("MQTT cluster: this node was taken for dead; joining again")
                await self.layer.group_add(self.group, self.node)
            nodes = await store.nodes()
        except Exception as exc:  # Redis away: try again next time
            log.warn("MQTT cluster: heartbeat failed: {error}", error=exc)
            self._good_since = None
            return
        if self._good_since is None:
            self._good_since = now
        if now - self._good_since < self._grace:
            return  # after an outage, every node first gets the time to refresh its heartbeat
        for node, alive in nodes.items():
            if not alive and node != self.node:
                self._spawn(self.adopt(node))

    def _renew(self, interval: float) -> None:
        self._spawn(self.layer.group_add(self.group, self.node))
        self._refresh = self.broker.loop.call_later(interval, self._renew, interval)

    async def stop(self) -> None:
        """Say goodbye and leave the group."""
        self.stopping = True
        if self._refresh is not None:
            self._refresh.cancel()
        if self._heartbeat is not None and self._heartbeat.active():
            self._heartbeat.cancel()
        if self._sender is not None:
            await asyncio.gather(self._sender, return_exceptions=True)
        try:
            await self.broker.store.node_gone(self.node)
            await self.layer.group_send(self.group, {"type": "mqtt.bye", "node": self.node})
        finally:
            tasks = list(self._tasks) + list(self._readers.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = self.broker.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.failure("MQTT cluster task failed", failure=_failure(task.exception()))

    # -- publishes and share groups ------------------------------------------------------------

    def publish(self, message: Message) -> asyncio.Future[None] | None:
        """Send a publish made on this node to the other nodes and to share groups.

        For QoS 1/2, a future that completes once the batch carrying it was written (and fails
        if it could not be): acknowledge the publish then.
        """
        data = dump_message(message)
        self._batch.append(data)
        waiter = None
        if message.qos:
            waiter = self._waiter
            if waiter is None:
                waiter = self._waiter = self.broker.loop.create_future()
        for table in self.known_shares.match(message.topic):
            for share, nodes in table.items():
                channel = self._share_channel_for(share, nodes.filter)
                self._queue("send", channel, {"type": "mqtt.share", "message": data}, waiter)
        self._kick()
        return waiter

    def _seal(self) -> None:
        """Close the current batch of publishes (it goes out before what is queued next)."""
        if self._batch:
            message = {"type": "mqtt.publish", "node": self.node, "messages": self._batch}
            self._outbox.append(("group", self.group, message, self._waiter))
            self._batch = []
            self._waiter = None

    def _queue(self, kind: str, target: str, message: dict[str, Any],
               waiter: asyncio.Future[None] | None = None) -> None:
        self._seal()
        self._outbox.append((kind, target, message, waiter))

    def _kick(self) -> None:
        if self._sender is None or self._sender.done():
            self._sender = self._spawn(self._send_all())

    async def _send_all(self) -> None:
        layer = self.layer
        while True:
            self._seal()
            if not self._outbox:
                return
            outbox, self._outbox = self._outbox, []
            # A publish's future completes once every write it needs (its batch to the group,
            # its share groups' channels) went through: after this round, failed or not.
            outcome: dict[asyncio.Future[None], BaseException | None] = {}
            for kind, target, message, waiter in outbox:
                try:
                    if kind == "group":
                        await self._group_send(target, message)
                    else:
                        await layer.send(target, message)
                except Exception as exc:  # a full channel, a layer hiccup: log and carry on
                    log.warn("MQTT cluster: could not send {type}: {error}", type=message["type"], error=exc)
                    if waiter is not None:
                        outcome[waiter] = exc
                else:
                    if waiter is not None:
                        outcome.setdefault(waiter, None)
            for waiter, error in outcome.items():
                if waiter.done():
                    continue
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)
                    waiter.exception()  # (retrieved: publishers that went away do not care)

    def share_added(self, share: str, inner: str) -> None:
        """This node got its first member of a share group: read its channel, tell the others."""
        self._known(share, inner, self.node, True)
        self._readers[(share, inner)] = self.broker.loop.create_task(self._read_share(share, inner))
        self._queue("group", self.group, {"type": "mqtt.share.add", "node": self.node, "share": share, "filter": inner})
        self._kick()

    def share_removed(self, share: str, inner: str) -> None:
        """This node's last member of a share group left."""
        self._known(share, inner, self.node, False)
        reader = self._readers.pop((share, inner), None)
        if reader is not None:
            reader.cancel()
        self._queue("group", self.group, {"type": "mqtt.share.remove", "node": self.node, "share": share, "filter": inner})
        self._kick()

    def _known(self, share: str, inner: str, node: str, present: bool) -> None:
        nodes = self.known_shares.get(inner, share)
        if present:
            if nodes is None:
                nodes = _Nodes(inner)
                self.known_shares.add(inner, share, nodes)
            nodes.add(node)
        elif nodes is not None:
            nodes.discard(node)
            if not nodes:
                self.known_shares.remove(inner, share)

    async def _read_share(self, share: str, inner: str) -> None:
        channel = self._share_channel_for(share, inner)
        broker = self.broker
        while True:
            message = await self.layer.receive(channel)
            broker.route_shared(load_message(message["message"]), (share, inner))
            broker.flush()

    def _share_channel_for(self, share: str, inner: str) -> str:
        digest = hashlib.sha1(f"{share}\x00{inner}".encode()).hexdigest()[:24]
        return f"mqtt-share.{_safe(self.broker.name)}.{digest}"

    # -- sessions -----------------------------------------------------------------------------

    async def claim(self, client_id: str, clean_start: bool = False) -> bytes | None:
        """Get ``client_id``'s session from its owner (or the store) for this node."""
        store = self.broker.store
        owner = await store.get_owner(client_id)
        if owner and owner != self.node:
            if await store.alive(owner):  # (a stopped or dead node is not asked: it cannot answer)
                reply = await self.request(owner, {"type": "mqtt.takeover", "client_id": client_id,
                                                   "clean_start": clean_start})
                if reply is not _TIMEOUT:
                    if reply is not None:
                        await store.delete_session(client_id)
                    return reply
                log.warn("MQTT cluster: node {node} did not hand over {client}; using the stored session",
                         node=owner, client=client_id)
            saved = await store.load_session(client_id)
            return saved if saved is not None else await store.get_record(client_id)
        saved = await store.load_session(client_id)
        if saved is None and not owner:
            saved = await store.get_record(client_id)  # adopted by nobody yet, or its node died
        return saved

    async def owned(self, client_id: str) -> None:
        """Record this node as the owner of ``client_id``'s session."""
        await self.broker.store.set_owner(client_id, self.node)

    async def opened(self, session: Session, will: Will | None) -> None:
        """A connection was attached to ``session`` here: own it, take what was queued for it
        in the store, record it (persistent) and keep the connection's will in the store."""
        store = self.broker.store
        client_id = session.client_id
        await store.set_owner(client_id, self.node)
        if session.present:
            from gateway.protocols.mqtt.broker.session import load_queued

            waiting = [load_queued(data) for data in await store.take_queued(client_id)]
            if waiting:
                session.queue.extendleft(reversed(waiting))
        if session.expiry:
            await store.set_record(client_id, session.dump(self.broker.clock()))
            session.recorded = True
        elif session.recorded:
            await store.set_record(client_id, None)
            session.recorded = False
        if will is not None:
            await store.set_will(self.node, client_id, dump_will(will))
        elif session.present:
            await store.set_will(self.node, client_id, None)

    async def record(self, session: Session) -> None:
        """Write the record of a persistent session (its subscriptions changed)."""
        await self.broker.store.set_record(session.client_id, session.dump(self.broker.clock()))
        session.recorded = True

    def closed(self, session: Session, forget_will: bool) -> None:
        """``session``'s connection ended: update its record and the stored will."""
        broker = self.broker
        if forget_will:
            broker.run(self.forget_will(session.client_id), "will removal")
        if session.expiry and not self.stopping:
            from gateway.protocols.mqtt.broker.session import NEVER_EXPIRES

            ttl = None if session.expiry == NEVER_EXPIRES else float(session.expiry)
            session.recorded = True
            broker.run(broker.store.set_record(session.client_id, session.dump(broker.clock()), ttl), "session record")

    async def forget_will(self, client_id: str) -> None:
        await self.broker.store.set_will(self.node, client_id, None)

    async def ended(self, session: Session, had_will: bool) -> None:
        """``session`` ended on this node: forget its owner, record, queue and will."""
        store = self.broker.store
        client_id = session.client_id
        await store.release_owner(client_id, self.node)
        if session.recorded:
            session.recorded = False
            await store.set_record(client_id, None)
            await store.delete_queued(client_id)
        if had_will:
            await store.set_will(self.node, client_id, None)

    # -- taking over a node that stopped or died ----------------------------------------------

    async def adopt(self, node: str) -> None:
        """Take over ``node`` (stopped or dead), unless another survivor does (the lock)."""
        if node in self._adopting or self.stopping:
            return
        self._adopting.add(node)
        try:
            broker = self.broker
            store = broker.store
            if not await store.lock(f"adopt:{node}", self.node, max(30.0, 6 * self.heartbeat_interval)):
                return
            log.info("MQTT cluster: taking over node {node}", node=node)
            wills = await store.wills(node)
            adopted: set[str] = set()
            clients = await store.node_clients(node)
            for client_id in clients:
                owner = await store.get_owner(client_id)
                if owner == self.node and client_id in broker.sessions:
                    adopted.add(client_id)  # came back here first: gets what waited for it too
                    continue
                if owner not in (node, None):
                    continue  # the client is back elsewhere
                raw_will = wills.pop(client_id, None)
                will = load_will(raw_will) if raw_will is not None else None
                blob = await store.load_session(client_id) or await store.get_record(client_id)
                session = broker.adopt(blob, will) if blob is not None else None
                if session is not None:
                    adopted.add(client_id)
                    await store.set_owner(client_id, self.node)
                    if session.will is not None and raw_will is not None:
                        await store.set_will(self.node, client_id, raw_will)
                else:
                    if will is not None and client_id not in broker.sessions:
                        broker.publish_will(client_id, will)
                    await store.release_owner(client_id, node)
            for client_id, raw_will in wills.items():
                if client_id not in broker.sessions:
                    broker.publish_will(client_id, load_will(raw_will))
            broker.flush()
            # What was sent to the node and not read goes to its clients' sessions that are
            # here now (adopted, or claimed by a client that came back here first).
            adopted.update(client_id for client_id in clients if client_id in broker.sessions)
            # Only now that its sessions are here (publishes reach them) does the node leave
            # the group: what was sent before is in its channel, drained next.
            try:
                await self.layer.group_discard(self.group, node)
            except Exception as exc:
                log.warn("MQTT cluster: could not remove {node} from the group: {error}", node=node, error=exc)
            if adopted:
                await self._drain(node, adopted)
            await store.forget_node(node)
            self.known_shares_forget(node)
        finally:
            self._adopting.discard(node)

    async def _drain(self, node: str, adopted: set[str]) -> None:
        """Route what still waits in ``node``'s channel to the sessions adopted from it."""
        broker = self.broker
        count = 0
        wait = float(getattr(self.layer, "block_timeout", 0.0)) + _DRAIN_WAIT
        while True:
            try:
                message = await asyncio.wait_for(self.layer.receive(node), wait)
            except (asyncio.TimeoutError, TimeoutError):
                log.info("MQTT cluster: {count} batches left for {node} routed to {sessions} sessions",
                         count=count, node=node, sessions=len(adopted))
                return
            except Exception as exc:
                log.warn("MQTT cluster: cannot read what was left for {node}: {error}", node=node, error=exc)
                return
            count += 1
            if message.get("type") == "mqtt.publish" and message.get("node") != node:
                for data in message["messages"]:
                    broker.route_to(load_message(data), adopted)
                broker.run_writes()
                broker.flush()

    def known_shares_forget(self, node: str) -> None:
        for inner, share, nodes in list(self.known_shares.items()):
            if node in nodes:
                self._known(share, inner, node, False)

    async def request(self, node: str, message: dict[str, Any]) -> Any:
        """Send ``message`` to ``node`` and wait for its reply (``_TIMEOUT`` if none comes)."""
        request_id = uuid.uuid4().hex
        future = self.broker.loop.create_future()
        self._pending[request_id] = future
        try:
            await self.layer.send(node, dict(message, id=request_id, reply_to=self.node))
            return await asyncio.wait_for(future, self.takeover_timeout)
        except (asyncio.TimeoutError, Exception) as exc:
            if not isinstance(exc, asyncio.TimeoutError):
                log.warn("MQTT cluster: request to {node} failed: {error}", node=node, error=exc)
            return _TIMEOUT
        finally:
            self._pending.pop(request_id, None)

    # -- receiving ----------------------------------------------------------------------------

    async def _read(self) -> None:
        while True:
            message = await self.layer.receive(self.node)
            try:
                await self._handle(message)
            except Exception as exc:  # one bad message must not stop the node
                log.failure("MQTT cluster: cannot handle {type}", failure=_failure(exc), type=message.get("type"))

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        node = str(message.get("node", ""))
        broker = self.broker
        if kind == "mqtt.publish":
            if node != self.node:
                for data in message["messages"]:
                    broker.route(load_message(data), shares=False)
                if broker.writes:
                    broker.run_writes()
                broker.flush()
        elif kind in ("mqtt.share.add", "mqtt.share.remove"):
            if node != self.node:
                self._known(message["share"], message["filter"], node, kind == "mqtt.share.add")
        elif kind == "mqtt.hello":
            if node != self.node:
                shares = [[share, inner] for inner, share, nodes in self.known_shares.items() if self.node in nodes]
                await self.layer.send(node, {"type": "mqtt.shares", "node": self.node, "shares": shares})
        elif kind == "mqtt.shares":
            for share, inner in message["shares"]:
                self._known(share, inner, node, True)
        elif kind == "mqtt.bye":
            self.known_shares_forget(node)
            if node != self.node:
                self._spawn(self.adopt(node))
        elif kind == "mqtt.takeover":
            blob = broker.release(message["client_id"], bool(message.get("clean_start")))
            await self.layer.send(message["reply_to"], {"type": "mqtt.takeover.reply", "id": message["id"], "session": blob})
        elif kind == "mqtt.takeover.reply":
            future = self._pending.get(message["id"])
            if future is not None and not future.done():
                future.set_result(message["session"])


class _Nodes(set[str]):
    """The nodes that have members of one share group (remembers the group's filter)."""

    def __init__(self, inner: str) -> None:
        super().__init__()
        self.filter = inner


def _failure(exc: BaseException | None) -> Any:
    from twisted.python.failure import Failure

    return Failure(exc, type(exc), exc.__traceback__ if exc is not None else None)
