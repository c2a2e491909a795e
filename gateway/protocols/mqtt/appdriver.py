# -*- test-case-name: tests.unit.mqtt.test_appdriver -*-
"""``consumer: application``: one ASGI ``mqtt`` scope per connection (``docs/asgi-mqtt.md``).

The application instance starts when the CONNECT arrives. Client packets become events; the
application's messages become decisions on the wire core. Protocol duties stay here:

* a QoS 1/2 publish is acknowledged when the application *has handled it*: when it asks for
  the next event (calls ``receive()`` again), or earlier with ``mqtt.puback`` (which can carry a
  refusal reason). If the application fails first, nothing is acknowledged and the connection
  is closed, so the client sends the message again;
* a SUBSCRIBE the application moves past without ``mqtt.suback`` is refused (0x80) and an
  UNSUBSCRIBE without ``mqtt.unsuback`` is confirmed, so the client is never left waiting;
* keep-alive, PINGRESP, PUBREL/PUBCOMP, retries and flow control are the core's.

Reading pauses while too many events wait for the application (``max_app_queue``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from gateway.asgi.instance import ClientDisconnected, describe_failure, start_instance
from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.mqtt import asgi
from gateway.protocols.mqtt.events import (
    AuthReceived, ConnectionClosed, ConnectReceived, DisconnectReceived, PublishReceived,
    SubscribeReceived, UnsubscribeReceived,
)
from gateway.protocols.mqtt.native import payload_format_invalid
from gateway.protocols.mqtt.properties import EMPTY_PROPERTIES
from gateway.protocols.mqtt.reasons import ReasonCode

if TYPE_CHECKING:
    from gateway.protocols.mqtt.adapter import MqttConnection

__all__ = ["ApplicationDriver"]

log = Logger(namespace="gateway.mqtt")


class ApplicationDriver:
    """Runs one application instance for a connection (see the module documentation)."""

    def __init__(self, conn: MqttConnection) -> None:
        self.conn = conn
        self.queue: deque[tuple[dict[str, Any], Any]] = deque()
        self.current: tuple[dict[str, Any], Any] | None = None
        self.unacked: dict[int, Any] = {}
        self.subscribes: dict[int, Any] = {}
        self.unsubscribes: dict[int, Any] = {}
        self.task: asyncio.Task[Any] | None = None
        self.answered = False  # mqtt.accept or mqtt.close sent for the CONNECT
        self.accepted = False
        self.ended: dict[str, Any] | None = None  # the mqtt.disconnect event, once queued
        self._waiter: asyncio.Future[None] | None = None
        self._drain: list[asyncio.Future[None]] = []
        self._timers: list[Any] = []
        self._disconnect: Any = None

    # -- from the adapter ---------------------------------------------------------------------

    def wants_pause(self) -> bool:
        """Stop reading while the application is behind."""
        return len(self.queue) >= self.conn.settings.max_app_queue

    def handle(self, events: list[Any]) -> None:
        """Turn core events into application events."""
        for event in events:
            cls = event.__class__
            if cls is PublishReceived:
                packet = event.packet
                if payload_format_invalid(packet):
                    if packet.qos:
                        self.conn.core.ack_publish(packet.packet_id, ReasonCode.PAYLOAD_FORMAT_INVALID)
                    elif self.conn.level == 5:
                        self.conn.disconnect(ReasonCode.PAYLOAD_FORMAT_INVALID)
                    continue
                if packet.qos:
                    self.unacked[packet.packet_id] = packet
                self.queue.append((asgi.publish_event(packet), packet))
            elif cls is SubscribeReceived:
                self.subscribes[event.packet.packet_id] = event.packet
                self.queue.append((asgi.subscribe_event(event.packet), event.packet))
            elif cls is UnsubscribeReceived:
                self.unsubscribes[event.packet.packet_id] = event.packet
                self.queue.append((asgi.unsubscribe_event(event.packet), event.packet))
            elif cls is ConnectReceived:
                self._start(event.packet)
            elif cls is AuthReceived:
                message = {"type": "mqtt.auth", "reason_code": int(event.reason_code),
                           "properties": asgi.properties_to_dict(event.properties)}
                self.queue.append((message, None))
            elif cls is DisconnectReceived:
                self._disconnect = event
            elif cls is ConnectionClosed:
                self._closed(event)
        self._wake()

    def _start(self, connect: Any) -> None:
        conn = self.conn
        conn.make_link(connect)
        settings = conn.settings
        tls = conn.io.tls_info() if hasattr(conn.io, "tls_info") else None
        scope = asgi.mqtt_scope(
            connect, client_id=conn.client_id or "", assigned=conn.client_id_assigned,
            transport=conn.transport, client=conn.client, server=conn.server, tls=tls,
            state=settings.state, websocket=conn.extra.get("websocket"), link=conn.link,
        )
        self.queue.append((asgi.connect_event(connect), connect))
        self.task = start_instance(settings.loop, settings.app, scope, self.receive, self.send, self._app_done)  # type: ignore[arg-type]
        self._timers.append(settings.reactor.callLater(settings.connect_answer_timeout, self._connect_overdue))

    def _closed(self, event: ConnectionClosed) -> None:
        by_client = self._disconnect is not None
        properties = self._disconnect.properties if by_client else EMPTY_PROPERTIES
        self.ended = asgi.disconnect_event(event.reason_code, by_client, event.publish_will, properties)
        self.unacked.clear()
        if self.task is not None:
            self.queue.append((self.ended, None))
            settings = self.conn.settings
            self._timers.append(settings.reactor.callLater(settings.application_close_timeout, self._kill))
        self._release_drain()

    def lost(self) -> None:
        """The transport closed (the ConnectionClosed event was handled already)."""
        self._release_drain()

    def writes_resumed(self) -> None:
        """The write buffer drained: wake ``send()`` calls waiting for it."""
        self._release_drain()

    # -- the application's receive/send -------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        """ASGI ``receive``: asking again means the previous event was handled."""
        self._handled()
        while not self.queue:
            if self.ended is not None and self.current is None:
                return self.ended  # after mqtt.disconnect, it is all there is
            waiter = self._waiter = self.conn.settings.loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        self.current = entry = self.queue.popleft()
        if self.conn._paused and not self.wants_pause():
            self.conn.flush()  # resume reading
        return entry[0]

    def _handled(self) -> None:
        current, self.current = self.current, None
        if current is None:
            return
        event, packet = current
        kind = event["type"]
        conn = self.conn
        if kind == "mqtt.publish" and packet.packet_id in self.unacked:
            del self.unacked[packet.packet_id]
            conn.core.ack_publish(packet.packet_id, ReasonCode.SUCCESS)
            conn.flush()
        elif kind == "mqtt.subscribe" and packet.packet_id in self.subscribes:
            del self.subscribes[packet.packet_id]
            log.warn("MQTT application did not answer a SUBSCRIBE of {client}: refused", client=conn.client_id)
            conn.answer_subscribe(packet, [ReasonCode.UNSPECIFIED_ERROR] * len(packet.subscriptions))
        elif kind == "mqtt.unsubscribe" and packet.packet_id in self.unsubscribes:
            del self.unsubscribes[packet.packet_id]
            conn.answer_unsubscribe(packet, None)

    async def send(self, message: dict[str, Any]) -> None:
        """ASGI ``send``: the application's decisions and messages for the client."""
        kind = message.get("type")
        conn = self.conn
        if kind == "mqtt.publish":
            if conn.core.closed or self.ended is not None:
                raise ClientDisconnected("the MQTT client disconnected")
            if not self.accepted:
                raise LocalProtocolError("mqtt.publish before mqtt.accept")
            conn.core.publish(
                message["topic"], bytes(message.get("payload", b"")), qos=int(message.get("qos", 0)),
                retain=bool(message.get("retain", False)),
                properties=asgi.properties_from_dict(message.get("properties")),
            )
            conn.stats.publish_out += 1
            conn.flush()
            if conn.io.writes_paused and not conn.lost:
                waiter = conn.settings.loop.create_future()
                self._drain.append(waiter)
                await waiter
            return
        properties = asgi.properties_from_dict(message.get("properties"))
        if kind == "mqtt.accept":
            self._answer_connect()
            self.accepted = True
            conn.accept(message.get("session_present"), properties)
        elif kind == "mqtt.close":
            if not self.answered:
                self._answer_connect()
                conn.reject(int(message.get("reason_code", ReasonCode.NOT_AUTHORIZED)), properties)
            else:
                conn.disconnect(int(message.get("reason_code", ReasonCode.NORMAL_DISCONNECTION)), properties)
        elif kind == "mqtt.suback":
            packet = self._pending(self.subscribes, message, "mqtt.subscribe")
            if packet is not None:
                conn.answer_subscribe(packet, [int(c) for c in message["reason_codes"]], properties)
        elif kind == "mqtt.unsuback":
            packet = self._pending(self.unsubscribes, message, "mqtt.unsubscribe")
            if packet is not None:
                codes = message.get("reason_codes")
                conn.answer_unsubscribe(packet, [int(c) for c in codes] if codes is not None else None, properties)
        elif kind == "mqtt.puback":
            packet = self._pending(self.unacked, message, "mqtt.publish")
            if packet is not None:
                conn.core.ack_publish(packet.packet_id, int(message.get("reason_code", 0)), properties)
                conn.flush()
        elif kind == "mqtt.auth":
            conn.core.auth(int(message.get("reason_code", ReasonCode.CONTINUE_AUTHENTICATION)), properties)
            conn.flush()
        else:
            raise ValueError(f"unexpected message type {kind!r} for an mqtt scope")

    def _answer_connect(self) -> None:
        if self.answered:
            raise LocalProtocolError("mqtt.connect was answered already")
        self.answered = True

    def _pending(self, pending: dict[int, Any], message: dict[str, Any], what: str) -> Any:
        """The request a suback/unsuback/puback answers (by ``packet_id``, else the current)."""
        packet_id = message.get("packet_id")
        if packet_id is None:
            current = self.current
            if current is not None and current[0]["type"] == what:
                packet_id = current[1].packet_id
            elif len(pending) == 1:
                packet_id = next(iter(pending))
        packet = pending.pop(packet_id, None) if packet_id is not None else None
        if packet is None and not self.conn.core.closed and self.ended is None:
            raise LocalProtocolError(f"no {what} awaits an answer (packet_id={packet_id!r})")
        return packet

    # -- the instance's end -------------------------------------------------------------------

    def _app_done(self, exc: BaseException | None, result: Any) -> None:
        self.task = None
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._timers.clear()
        problem = describe_failure(exc, result)
        conn = self.conn
        if problem is not None:
            if exc is not None:
                conn.stats.instances.errors += 1
                log.failure("Exception in ASGI application for MQTT client {client}",
                            failure=_failure(exc), client=conn.client_id)
            else:
                log.error("{problem}", problem=problem)
        if conn.core.closed:
            return
        if not self.answered:
            if problem is None:
                log.error("ASGI application returned without answering mqtt.connect of {client}", client=conn.client_id)
            conn.reject(ReasonCode.SERVER_UNAVAILABLE)
        else:
            # Unacknowledged publishes stay unacknowledged: the client sends them again.
            conn.disconnect(ReasonCode.UNSPECIFIED_ERROR if problem else ReasonCode.NORMAL_DISCONNECTION)

    def _connect_overdue(self) -> None:
        if not self.answered and not self.conn.core.closed:
            self.conn.stats.instances.timeouts += 1
            log.warn("ASGI application did not answer mqtt.connect of {client} in time", client=self.conn.client_id)
            self.answered = True
            self.conn.reject(ReasonCode.SERVER_UNAVAILABLE)

    def _kill(self) -> None:
        task = self.task
        if task is not None and not task.done():
            self.conn.stats.instances.timeouts += 1
            log.warn("MQTT application for {client} still running {seconds}s after the client left; cancelled",
                     client=self.conn.client_id, seconds=self.conn.settings.application_close_timeout)
            task.cancel()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done() and (self.queue or self.ended is not None):
            waiter.set_result(None)

    def _release_drain(self) -> None:
        waiters, self._drain = self._drain, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


def _failure(exc: BaseException) -> Any:
    from twisted.python.failure import Failure

    return Failure(exc, type(exc), exc.__traceback__)
