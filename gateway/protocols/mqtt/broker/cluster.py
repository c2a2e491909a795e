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
from gateway.protocols.mqtt.broker.session import Message, dump_message, load_message

__all__ = ["Cluster"]

log = Logger(namespace="gateway.mqtt.cluster")
_TIMEOUT = object()


def _safe(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", name)[:40]


class Cluster:
    """Makes ``broker`` one node of the broker named after it, on ``layer``.

    Args:
        broker: the local :class:`~.core.Broker`; ``broker.cluster`` is set to this object.
        layer: a channel layer (``send``, ``receive``, ``new_channel``, groups).
        takeover_timeout: seconds to wait for a session owner's answer.
    """

    def __init__(self, broker: Any, layer: Any, *, takeover_timeout: float = 2.0) -> None:
        self.broker = broker
        self.layer = layer
        self.takeover_timeout = takeover_timeout
        self.group = f"mqtt-broker.{_safe(broker.name)}"
        self.node = ""
        #: Share groups anywhere in the cluster: filter -> {share name: set of nodes}.
        self.known_shares: TopicTree[_Nodes] = TopicTree()
        self._outbox: list[tuple[str, Any, dict[str, Any]]] = []
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
        self.node = await self.layer.new_channel(f"mqtt-node.{_safe(self.broker.name)}")
        await self.layer.group_add(self.group, self.node)
        self._spawn(self._read())
        await self.layer.group_send(self.group, {"type": "mqtt.hello", "node": self.node})
        expiry = float(getattr(self.layer, "group_expiry", 86400))
        self._refresh = self.broker.loop.call_later(expiry / 2, self._renew, expiry / 2)

    def _renew(self, interval: float) -> None:
        self._spawn(self.layer.group_add(self.group, self.node))
        self._refresh = self.broker.loop.call_later(interval, self._renew, interval)

    async def stop(self) -> None:
        """Say goodbye and leave the group."""
        if self._refresh is not None:
            self._refresh.cancel()
        if self._sender is not None:
            await asyncio.gather(self._sender, return_exceptions=True)
        try:
            await self.layer.group_send(self.group, {"type": "mqtt.bye", "node": self.node})
            await self.layer.group_discard(self.group, self.node)
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

    def publish(self, message: Message) -> None:
        """Send a publish made on this node to the other nodes and to share groups."""
        data = dump_message(message)
        self._batch.append(data)
        for table in self.known_shares.match(message.topic):
            for share, nodes in table.items():
                channel = self._share_channel_for(share, nodes.filter)
                self._queue("send", channel, {"type": "mqtt.share", "message": data})
        self._kick()

    def _seal(self) -> None:
        """Close the current batch of publishes (it goes out before what is queued next)."""
        if self._batch:
            message = {"type": "mqtt.publish", "node": self.node, "messages": self._batch}
            self._outbox.append(("group", self.group, message))
            self._batch = []

    def _queue(self, kind: str, target: str, message: dict[str, Any]) -> None:
        self._seal()
        self._outbox.append((kind, target, message))

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
            for kind, target, message in outbox:
                try:
                    if kind == "group":
                        await layer.group_send(target, message)
                    else:
                        await layer.send(target, message)
                except Exception as exc:  # a full channel, a layer hiccup: log and carry on
                    log.warn("MQTT cluster: could not send {type}: {error}", type=message["type"], error=exc)

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
            reply = await self.request(owner, {"type": "mqtt.takeover", "client_id": client_id, "clean_start": clean_start})
            if reply is not _TIMEOUT:
                if reply is not None:
                    await store.delete_session(client_id)
                return reply
            log.warn("MQTT cluster: node {node} did not hand over {client}; using the stored session",
                     node=owner, client=client_id)
        return await store.load_session(client_id)

    async def owned(self, client_id: str) -> None:
        """Record this node as the owner of ``client_id``'s session."""
        await self.broker.store.set_owner(client_id, self.node)

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
            for inner, share, nodes in list(self.known_shares.items()):
                if node in nodes:
                    self._known(share, inner, node, False)
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
