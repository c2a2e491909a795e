# -*- test-case-name: tests.unit.mqtt.test_adapter -*-
"""``consumer: broker``: the built-in broker answers a connection by itself, with no ASGI
application instance (the fastest path, and what a plain MQTT broker deployment uses).

* CONNECT: the configured users (if any) are checked, the broker session is opened (taken over,
  resumed), then CONNACK. Enhanced authentication (a 5.0 Authentication Method) is refused with
  0x8C Bad authentication method: it needs an application.
* PUBLISH: access rules, routing to subscribers, the retained store; QoS 1/2 acknowledged once
  that is done, in the order received ([MQTT-4.6.0-2]). (A payload that claims to be UTF-8
  and is not was refused by the wire core already, §3.3.2.3.2.)
* SUBSCRIBE / UNSUBSCRIBE: access rules, then SUBACK / UNSUBACK (the broker follows them).

The driver reaches its connection through :class:`DrivenConnection` (the adapter's
``MqttConnection`` is one); the adapter makes the driver when the CONNECT arrives.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Protocol, cast

from twisted.logger import Logger

from gateway.asgi.instance import failure_of
from gateway.protocols.mqtt.broker.core import Broker
from gateway.protocols.mqtt.broker.eager import run_eager
from gateway.protocols.mqtt.broker.link import BrokerLink
from gateway.protocols.mqtt.events import (
    ConnectReceived, Event, PublishReceived, SubscribeReceived, UnsubscribeReceived,
)
from gateway.protocols.mqtt.packets import Connect, Publish, Subscribe, Unsubscribe
from gateway.protocols.mqtt.properties import EMPTY_PROPERTIES, Properties
from gateway.protocols.mqtt.reasons import ReasonCode

__all__ = ["BrokerDriver", "DrivenConnection"]

log = Logger(namespace="gateway.mqtt")


class DrivenConnection(Protocol):
    """What a driver needs of the connection it answers for."""

    level: int
    client_id: str | None
    link: BrokerLink | None

    @property
    def closed(self) -> bool: ...

    def open_link(self, connect: Connect) -> BrokerLink | None: ...

    def accept(self, session_present: bool | None = None, properties: Properties = EMPTY_PROPERTIES) -> None: ...

    def reject(self, reason_code: int, properties: Properties = EMPTY_PROPERTIES) -> None: ...

    def ack_publish(self, packet_id: int, reason_code: int = ReasonCode.SUCCESS,
                    properties: Properties = EMPTY_PROPERTIES) -> None: ...

    def answer_subscribe(self, packet: Subscribe, codes: list[int], properties: Properties = EMPTY_PROPERTIES) -> None: ...

    def answer_unsubscribe(self, packet: Unsubscribe, codes: list[int] | None,
                           properties: Properties = EMPTY_PROPERTIES) -> None: ...

    def disconnect(self, reason_code: int = ReasonCode.NORMAL_DISCONNECTION,
                   properties: Properties = EMPTY_PROPERTIES) -> None: ...

    def flush(self) -> None: ...


class BrokerDriver:
    """Drives one connection with the built-in broker (see the module documentation).

    Args:
        conn: the connection.
        broker: the listener's broker (None: every CONNECT is refused, 0x88).
        loop: where store operations that really wait run.
        max_pending: acknowledgements waiting for the store before reading pauses.
    """

    def __init__(self, conn: DrivenConnection, broker: Broker | None, loop: asyncio.AbstractEventLoop,
                 max_pending: int) -> None:
        self.conn = conn
        self.broker = broker
        self.loop = loop
        self.max_pending = max_pending
        self._acks: deque[list[Any]] = deque()  # [packet id, reason, done, task?] in arrival order
        self._connecting: asyncio.Task[Any] | None = None

    def wants_pause(self) -> bool:
        """Stop reading while acknowledgements wait for the store (bounded backlog)."""
        return len(self._acks) >= self.max_pending

    def writes_resumed(self) -> None:
        """Nothing waits on the write buffer here."""

    def lost(self) -> None:
        """The transport closed. A CONNECT being decided is left to finish: the link then sees
        the connection ended and gives the session back (cancelling could strand it)."""

    def handle(self, events: list[Event]) -> None:
        """Act on the core's events."""
        for event in events:
            cls = event.__class__
            if cls is PublishReceived:
                self._publish(event.packet)  # type: ignore[union-attr,arg-type]  # no cast() call here
            elif cls is SubscribeReceived:
                packet = cast(SubscribeReceived, event).packet
                link = self.conn.link
                codes = link.grant(packet.subscriptions) if link is not None else [0x80] * len(packet.subscriptions)
                self.conn.answer_subscribe(packet, codes)
            elif cls is UnsubscribeReceived:
                request = cast(UnsubscribeReceived, event).packet
                link = self.conn.link
                done = link.unsubscribe_codes(request.topic_filters) if link is not None else None
                self.conn.answer_unsubscribe(request, done)
            elif cls is ConnectReceived:
                self._connect(cast(ConnectReceived, event).packet)

    # -- CONNECT ------------------------------------------------------------------------------

    def _connect(self, packet: Connect) -> None:
        conn = self.conn
        if self.broker is None:
            conn.reject(ReasonCode.SERVER_UNAVAILABLE)
            return
        if packet.properties.authentication_method is not None:
            conn.reject(ReasonCode.BAD_AUTHENTICATION_METHOD)  # enhanced auth needs an application
            return
        conn.open_link(packet)
        self._connecting = run_eager(self._open(), self._opened, self.loop)

    async def _open(self) -> int:
        link = self.conn.link
        if link is None:  # pragma: no cover - make_link always sets it with a broker
            return ReasonCode.SERVER_UNAVAILABLE
        if not link.auth.open and not await link.authenticate():
            return ReasonCode.BAD_USER_NAME_OR_PASSWORD
        return -1 if await link.open_session() else -2

    def _opened(self, exc: BaseException | None, result: Any) -> None:
        self._connecting = None
        conn = self.conn
        if exc is not None:
            if isinstance(exc, asyncio.CancelledError) or conn.closed:
                return
            log.failure("MQTT CONNECT of {client} failed", failure=failure_of(exc), client=conn.client_id)
            conn.reject(ReasonCode.SERVER_UNAVAILABLE)
        elif result >= 0:
            conn.reject(result)
        else:
            conn.accept(session_present=result == -1)

    # -- PUBLISH ------------------------------------------------------------------------------

    def _publish(self, packet: Publish) -> None:
        conn = self.conn
        link = conn.link
        pending = None
        reason: int
        if link is None:  # pragma: no cover - publishes only come after an accepted CONNECT
            reason = ReasonCode.UNSPECIFIED_ERROR
        else:
            reason, pending = link.publish_now(
                packet.topic, packet.payload, packet.qos, packet.retain, packet.properties
            )
        if not packet.qos:
            if pending is not None and self.broker is not None:
                self.broker.run(pending, "retained update")
            return
        packet_id = packet.packet_id
        if packet_id is None:  # pragma: no cover - the decoder requires one for QoS 1/2
            return
        if pending is None and not self._acks:
            conn.ack_publish(packet_id, reason)  # the common case: in order already
            return
        entry: list[Any] = [packet_id, reason, pending is None]
        self._acks.append(entry)
        if pending is not None:
            task = run_eager(pending, lambda exc, _result: self._stored(entry, exc), self.loop)
            if task is not None:
                entry.append(task)  # a strong reference: the loop only keeps weak ones
        self._drain_acks()

    def _stored(self, entry: list[Any], exc: BaseException | None) -> None:
        if exc is not None:
            # Not stored or not broadcast (Redis unreachable): never acknowledged as received.
            if self.conn.level == 5:  # a 5.0 client hears it: 0x80 in its PUBACK / PUBREC
                log.warn("MQTT publish of {client} refused: {error}", client=self.conn.client_id, error=exc)
                entry[1] = ReasonCode.UNSPECIFIED_ERROR
            else:  # 3.1.1 has no negative acknowledgement: close, the client sends it again
                log.warn("MQTT publish of {client} not acknowledged (closing): {error}",
                         client=self.conn.client_id, error=exc)
                self._acks.clear()
                self.conn.disconnect(ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR)
                return
        entry[2] = True
        self._drain_acks()

    def _drain_acks(self) -> None:
        acks = self._acks
        conn = self.conn
        sent = False
        while acks and acks[0][2]:
            entry = acks.popleft()
            conn.ack_publish(entry[0], entry[1])
            sent = True
        if sent:
            conn.flush()

