# -*- test-case-name: tests.unit.mqtt.test_adapter -*-
"""``consumer: broker``: the built-in broker answers a connection by itself, with no ASGI
application instance (the fastest path, and what a plain MQTT broker deployment uses).

* CONNECT: the configured users (if any) are checked, the broker session is opened (taken over,
  resumed), then CONNACK. Enhanced authentication (a 5.0 Authentication Method) is refused with
  0x8C Bad authentication method: it needs an application.
* PUBLISH: access rules, routing to subscribers, the retained store; QoS 1/2 acknowledged once
  that is done, in the order received ([MQTT-4.6.0-2]). A payload that claims to be UTF-8
  (Payload Format Indicator 1) and is not is refused with 0x99 (§3.3.2.3.2).
* SUBSCRIBE / UNSUBSCRIBE: access rules, then SUBACK / UNSUBACK (the broker follows them).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from gateway.protocols.mqtt.broker.eager import run_eager
from gateway.protocols.mqtt.events import (
    ConnectReceived, PublishReceived, SubscribeReceived, UnsubscribeReceived,
)
from gateway.protocols.mqtt.packets import Connect, Publish
from gateway.protocols.mqtt.properties import EMPTY_PROPERTIES
from gateway.protocols.mqtt.reasons import ReasonCode

if TYPE_CHECKING:
    from gateway.protocols.mqtt.adapter import MqttConnection

__all__ = ["BrokerDriver", "payload_format_invalid"]

log = Logger(namespace="gateway.mqtt")


def payload_format_invalid(packet: Publish) -> bool:
    """True when the publish says its payload is UTF-8 (indicator 1) and it is not."""
    props = packet.properties
    if props is EMPTY_PROPERTIES or props.payload_format_indicator != 1:
        return False
    try:
        packet.payload.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


class BrokerDriver:
    """Drives one connection with the built-in broker (see the module documentation)."""

    def __init__(self, conn: MqttConnection) -> None:
        self.conn = conn
        self._acks: deque[list[Any]] = deque()  # [packet id, reason, done] in arrival order
        self._connecting: Any = None

    def wants_pause(self) -> bool:
        """Stop reading while acknowledgements wait for the store (bounded backlog)."""
        return len(self._acks) >= self.conn.settings.options.receive_maximum

    def writes_resumed(self) -> None:
        """Nothing waits on the write buffer here."""

    def lost(self) -> None:
        """The transport closed. A CONNECT being decided is left to finish: the link then sees
        the connection ended and gives the session back (cancelling could strand it)."""

    def handle(self, events: list[Any]) -> None:
        """Act on the core's events."""
        for event in events:
            cls = event.__class__
            if cls is PublishReceived:
                self._publish(event.packet)
            elif cls is SubscribeReceived:
                packet = event.packet
                link = self.conn.link
                codes = link.grant(packet.subscriptions) if link is not None else [0x80] * len(packet.subscriptions)
                self.conn.answer_subscribe(packet, codes)
            elif cls is UnsubscribeReceived:
                packet = event.packet
                link = self.conn.link
                done = link.unsubscribe_codes(packet.topic_filters) if link is not None else None
                self.conn.answer_unsubscribe(packet, done)
            elif cls is ConnectReceived:
                self._connect(event.packet)

    # -- CONNECT ------------------------------------------------------------------------------

    def _connect(self, packet: Connect) -> None:
        conn = self.conn
        if conn.settings.broker is None:
            conn.reject(ReasonCode.SERVER_UNAVAILABLE)
            return
        if packet.properties.authentication_method is not None:
            conn.reject(ReasonCode.BAD_AUTHENTICATION_METHOD)  # enhanced auth needs an application
            return
        conn.make_link(packet)
        self._connecting = run_eager(self._open(), self._opened, conn.settings.loop)

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
            if isinstance(exc, asyncio.CancelledError) or conn.core.closed:
                return
            log.failure("MQTT CONNECT of {client} failed", failure=_failure(exc), client=conn.client_id)
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
        if payload_format_invalid(packet):
            reason = ReasonCode.PAYLOAD_FORMAT_INVALID
        elif link is None:  # pragma: no cover - publishes only come after an accepted CONNECT
            reason = ReasonCode.UNSPECIFIED_ERROR
        else:
            reason, pending = link.publish_now(
                packet.topic, packet.payload, packet.qos, packet.retain, packet.properties
            )
        if not packet.qos:
            if reason == ReasonCode.PAYLOAD_FORMAT_INVALID and conn.level == 5:
                conn.disconnect(reason)  # a QoS 0 message can only be refused by closing
            elif pending is not None:
                conn.settings.broker.run(pending, "retained update")
            return
        packet_id = packet.packet_id
        if packet_id is None:  # pragma: no cover - the decoder requires one for QoS 1/2
            return
        if pending is None and not self._acks:
            conn.core.ack_publish(packet_id, reason)  # the common case: in order already
            return
        entry = [packet_id, reason, pending is None]
        self._acks.append(entry)
        if pending is not None:
            task = run_eager(pending, lambda exc, _result: self._stored(entry, exc), conn.settings.loop)
            if task is not None:
                entry.append(task)  # a strong reference: the loop only keeps weak ones
        self._drain_acks()

    def _stored(self, entry: list[Any], exc: BaseException | None) -> None:
        if exc is not None:
            # Not stored: do not acknowledge; the client re-sends after reconnecting.
            log.failure("MQTT retained message not stored", failure=_failure(exc))
            self._acks.clear()
            self.conn.disconnect(ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR)
            return
        entry[2] = True
        self._drain_acks()

    def _drain_acks(self) -> None:
        acks = self._acks
        core = self.conn.core
        sent = False
        while acks and acks[0][2]:
            entry = acks.popleft()
            core.ack_publish(entry[0], entry[1])
            sent = True
        if sent:
            self.conn.flush()


def _failure(exc: BaseException) -> Any:
    from twisted.python.failure import Failure

    return Failure(exc, type(exc), exc.__traceback__)
