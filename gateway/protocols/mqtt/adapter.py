# -*- test-case-name: tests.unit.mqtt.test_adapter -*-
"""One MQTT connection between a byte transport and the wire core, the broker and the app.

:class:`MqttConnection` is transport-neutral: TCP/TLS (:mod:`.listener`) and WebSocket
(:mod:`.websocket`) give it bytes and an *io* object (``write``, ``close``, ``abort``,
``pause_reading``, ``resume_reading``, ``writes_paused``, ``buffered``). It keeps the adapter
contract of :mod:`.connection`: one flush point (:meth:`MqttConnection.flush`) forwards the
core's events to the *driver*, writes ``data_to_send()``, closes once the core is closed, pauses
reading on ``paused`` and re-arms one timer at ``next_deadline``.

Two drivers decide what happens: :class:`~.native.BrokerDriver` (``consumer: broker``: the
built-in broker answers everything, no application instance) and
:class:`~.asgi.ApplicationDriver` (``consumer: application``: an ASGI ``mqtt`` scope per
connection). Either way the broker delivers to subscribers directly through :meth:`deliver`.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, cast

from twisted.logger import Logger, LogLevel

from gateway.logs import RejectionLog
from gateway.metrics.stats import MqttStats
from gateway.protocols.mqtt.broker.auth import Authenticator
from gateway.protocols.mqtt.broker.link import BrokerLink
from gateway.protocols.mqtt.connection import MqttServerConnection
from gateway.protocols.mqtt.events import (
    ConnectionClosed, DisconnectReceived, PublishReceived, PublishStatus, ServerOptions, SubscribeReceived,
)
from gateway.protocols.mqtt.packets import Connect, Subscribe, Unsubscribe
from gateway.protocols.mqtt.properties import EMPTY_PROPERTIES, Properties
from gateway.protocols.mqtt.reasons import ReasonCode
from gateway.protocols.transport import is_tls, tls_extension

__all__ = ["MqttConnection", "MqttSettings"]

log = Logger(namespace="gateway.mqtt")


@dataclass(eq=False)
class MqttSettings:
    """Everything the connections of one MQTT listener share."""

    loop: asyncio.AbstractEventLoop
    reactor: Any
    options: ServerOptions = field(default_factory=ServerOptions)
    #: "broker" (built-in broker, no app instance) or "application" (an ASGI mqtt scope).
    consumer: str = "broker"
    app: Any = None
    broker: Any = None
    auth: Authenticator = field(default_factory=Authenticator)
    state: dict[str, Any] | None = None
    application_close_timeout: float = 10.0
    #: Events waiting for the application before reading from the client pauses.
    max_app_queue: int = 256
    #: Bytes buffered for a client that does not read before QoS 0 messages to it are dropped.
    max_write_buffer: int = 8 * 1024 * 1024
    #: Seconds the application has to answer ``mqtt.connect``.
    connect_answer_timeout: float = 30.0
    listener: str = "mqtt"
    #: The listener's counters (:mod:`gateway.metrics`).
    stats: MqttStats = field(default_factory=MqttStats)
    #: Rate-limits the lines about clients closed for a protocol error.
    rejections: RejectionLog = None  # type: ignore[assignment]  # made in __post_init__

    def __post_init__(self) -> None:
        if self.rejections is None:
            self.rejections = RejectionLog(self.listener, self.reactor, log)


class TransportSide:
    """What MQTT over TCP and over WebSocket share on the transport side of a
    :class:`MqttConnection`: the ``IPushProducer`` half (the transport says when its write
    buffer is full, ``writes_paused``, with ``buffered`` counting the bytes written meanwhile,
    which the broker uses to drop QoS 0 for a client that does not read; and when it drained,
    which wakes the connection's waiting ``send()`` calls), and reading flow control and TLS
    details of the ``io`` interface. Subclasses add ``write`` and ``close``."""

    conn: MqttConnection | None = None
    transport: Any = None
    writes_paused = False
    buffered = 0

    def pause_reading(self) -> None:
        self.transport.pauseProducing()

    def resume_reading(self) -> None:
        self.transport.resumeProducing()

    def tls_info(self) -> dict[str, Any] | None:
        return tls_extension(self.transport) if is_tls(self.transport) else None

    def pauseProducing(self) -> None:
        self.writes_paused = True
        self.buffered = 0
        if self.conn is not None:
            self.conn.stats.write_pauses += 1

    def resumeProducing(self) -> None:
        self.writes_paused = False
        self.buffered = 0
        if self.conn is not None:
            self.conn.writes_resumed()

    def stopProducing(self) -> None:
        pass


class MqttConnection:
    """The adapter of one connection (see the module documentation)."""

    def __init__(
        self, settings: MqttSettings, io: Any, *, transport: str = "tcp",
        client: tuple[str, int] | None = None, server: tuple[str, int | None] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.stats = settings.stats
        self._connect_started = 0.0
        self._accepted = False  # reading pauses before the CONNACK are not backpressure
        self.io = io
        self.core = MqttServerConnection(settings.options)
        self.transport = transport
        self.client = client
        self.server = server
        self.extra = extra or {}
        self.link: BrokerLink | None = None
        self.client_id: str | None = None
        self.client_id_assigned = False
        self.level = 4
        self.connect_packet: Connect | None = None
        if settings.consumer == "application":
            from gateway.protocols.mqtt.appdriver import ApplicationDriver

            self.driver: Any = ApplicationDriver(self)
        else:
            from gateway.protocols.mqtt.native import BrokerDriver

            self.driver = BrokerDriver(self)
        self.lost = False
        self._closing = False
        self._flushing = False
        self._paused = False
        self._timer: Any = None
        self._deadline: float | None = None
        self._disconnect_expiry: int | None = None
        self.dropped = 0

    # -- from the transport -------------------------------------------------------------------

    def start(self) -> None:
        """The transport is up: start the connect timeout."""
        self.flush()

    def data_received(self, data: bytes) -> None:
        """Bytes from the client."""
        self.core.receive_data(data)
        self.flush()

    def connection_lost(self) -> None:
        """The transport closed."""
        self.lost = True
        self.core.receive_data(b"")
        self.flush()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.driver.lost()

    def writes_resumed(self) -> None:
        """The transport's write buffer drained."""
        self.driver.writes_resumed()

    # -- the flush point ----------------------------------------------------------------------

    def flush(self) -> None:
        """Forward events, write output, close, pause or resume reading, re-arm the timer."""
        if self._flushing:
            return  # the running flush loops until the core has nothing more
        self._flushing = True
        core = self.core
        try:
            while True:
                events = core.events_received()
                if not events:
                    break
                stats = self.stats
                for event in events:
                    cls = event.__class__
                    if cls is PublishReceived:
                        stats.publish_in += 1
                    elif cls is SubscribeReceived:
                        stats.subscribe_in += 1
                    elif cls is DisconnectReceived:
                        self._disconnect_expiry = cast(DisconnectReceived, event).properties.session_expiry_interval
                    elif cls is ConnectionClosed:
                        self._ended(cast(ConnectionClosed, event))
                self.driver.handle(events)
            data = core.data_to_send()
            if data and not self.lost:
                self.io.write(data)
        finally:
            self._flushing = False
        if core.closed:
            if not self._closing:
                self._closing = True
                if not self.lost:
                    self.io.close()
        else:
            paused = core.paused or self.driver.wants_pause()
            if paused != self._paused and not self.lost:
                self._paused = paused
                if paused:
                    if self._accepted:
                        self.stats.read_pauses += 1
                    self.io.pause_reading()
                else:
                    self.io.resume_reading()
            self._arm_timer()
        broker = self.settings.broker
        if broker is not None and broker.dirty:
            broker.flush()

    def _ended(self, event: ConnectionClosed) -> None:
        if event.error is not None and self.settings.rejections.allow("protocol error", LogLevel.debug):
            log.debug("MQTT client {client} ({id}): {error}", client=self.client, id=self.client_id, error=event.error.message)
        link = self.link
        if link is not None:
            link.closed(event.publish_will, self.core.session_state(), self._disconnect_expiry)

    def _arm_timer(self) -> None:
        reactor = self.settings.reactor
        now = reactor.seconds()
        deadline = self.core.next_deadline(now)
        self._deadline = deadline
        if deadline is None:
            return
        timer = self._timer
        if timer is None:
            self._timer = reactor.callLater(max(0.0, deadline - now), self._timer_fired)
        elif timer.getTime() > deadline:
            timer.reset(max(0.0, deadline - now))

    def _timer_fired(self) -> None:
        self._timer = None
        if self.lost or self.core.closed:
            return
        now = self.settings.reactor.seconds()
        self.core.handle_timeout(now)
        self.flush()

    # -- decisions (shared by both drivers) ---------------------------------------------------

    def make_link(self, connect: Connect) -> None:
        """Remember the CONNECT, pick the client id, and make the broker link if there is one."""
        self.connect_packet = connect
        self.stats.connects += 1
        self._connect_started = perf_counter()
        self.level = connect.protocol_level
        client_id = connect.client_id
        if not client_id:
            client_id = f"auto-{uuid.uuid4().hex}"  # [MQTT-3.1.3-6]
            self.client_id_assigned = True
        self.client_id = client_id
        settings = self.settings
        if settings.broker is not None:
            self.link = BrokerLink(
                settings.broker, settings.auth, self, connect, client_id, settings.options.maximum_qos,
                settings.options.retain_available,
            )

    def accept(self, session_present: bool | None = None, properties: Properties = EMPTY_PROPERTIES) -> None:
        """CONNACK success; resume the broker session's protocol state if there is one."""
        core = self.core
        if core.closed:
            return
        link = self.link
        state = None
        if link is not None and link.session is not None:
            if session_present is None:
                session_present = link.session.present
            state = link.resume_state() if session_present else None
            if link.expiry_changed and properties.session_expiry_interval is None:
                properties = _with(properties, session_expiry_interval=link.expiry)
        if self.client_id_assigned and self.level == 5 and properties.assigned_client_identifier is None:
            properties = _with(properties, assigned_client_identifier=self.client_id)
        if self.connect_packet is not None and self.connect_packet.clean_start:
            session_present = False  # [MQTT-3.2.2-2]
        core.accept(session_present=bool(session_present), properties=properties, session=state)
        self._accepted = True
        if self._connect_started:
            self.stats.connect_latency.observe(perf_counter() - self._connect_started)
        if link is not None and not core.closed:
            link.accepted()
        self.flush()

    def reject(self, reason_code: int, properties: Properties = EMPTY_PROPERTIES) -> None:
        """CONNACK failure, then close."""
        if not self.core.closed:
            self.core.reject(reason_code, properties)
            self.flush()

    def answer_subscribe(self, packet: Subscribe, codes: list[int], properties: Properties = EMPTY_PROPERTIES) -> None:
        """SUBACK; the broker session (if any) follows the grants."""
        if self.core.closed:
            return
        self.core.suback(packet.packet_id, codes, properties)
        if self.link is not None:
            self.link.subscribed(packet, codes if self.level == 5 else [c if c < 0x80 else 0x80 for c in codes])
        self.flush()

    def answer_unsubscribe(self, packet: Unsubscribe, codes: list[int] | None, properties: Properties = EMPTY_PROPERTIES) -> None:
        """UNSUBACK; the broker session (if any) drops the confirmed subscriptions."""
        if self.core.closed:
            return
        self.core.unsuback(packet.packet_id, codes, properties)
        if self.link is not None:
            self.link.unsubscribed(packet.topic_filters, codes)
        self.flush()

    def disconnect(self, reason_code: int = ReasonCode.NORMAL_DISCONNECTION, properties: Properties = EMPTY_PROPERTIES) -> None:
        """Close from the server side (5.0: DISCONNECT with the reason)."""
        if not self.core.closed:
            self.core.disconnect(reason_code, properties)
            self.flush()

    # -- from the broker ----------------------------------------------------------------------

    def deliver(self, topic: str, payload: bytes, qos: int, retain: bool, properties: Properties,
                wire: tuple[bytes, bytes] | None = None) -> bool:
        """Queue a message for the client (``wire``: pre-encoded, see the core's ``publish``);
        False if the connection cannot take it."""
        if qos == 0 and self.io.writes_paused and self.io.buffered > self.settings.max_write_buffer:
            self.dropped += 1
            self.stats.dropped += 1
            return True  # a client that does not read loses QoS 0 messages (never QoS 1/2)
        try:
            status = self.core.publish(topic, payload, qos=qos, retain=retain, properties=properties, wire=wire)
        except Exception:  # closed meanwhile: the broker keeps QoS 1/2 for the session
            return False
        if status is PublishStatus.DROPPED:
            self.dropped += 1
            self.stats.dropped += 1
        else:
            self.stats.publish_out += 1
        return True

    def deliver_qos0(self, message: Any, retain: bool) -> bool:
        """Queue a QoS 0 message, encoded once per protocol level for all its subscribers."""
        io = self.io
        if io.writes_paused and io.buffered > self.settings.max_write_buffer:
            self.dropped += 1
            self.stats.dropped += 1
            return True
        if self.core.send_qos0_bytes(message.wire(self.level, retain)):
            self.stats.publish_out += 1
            return True
        return self.deliver(message.topic, message.payload, 0, retain, message.properties)

    def flush_output(self) -> None:
        """Write what deliveries queued (called by the broker once per batch)."""
        data = self.core.data_to_send()
        if data and not self.lost:
            self.io.write(data)

    def take_over(self) -> None:
        """Another connection took the session: DISCONNECT 0x8E, close (§3.1.4)."""
        self.disconnect(ReasonCode.SESSION_TAKEN_OVER)

    # -- from the listener --------------------------------------------------------------------

    def shutdown(self) -> None:
        """Server shutting down: DISCONNECT 0x8B (5.0), then close."""
        if self.core.closed:
            if not self.lost:
                self.io.close()
            return
        self.disconnect(ReasonCode.SERVER_SHUTTING_DOWN)


def _with(properties: Properties, **changes: Any) -> Properties:
    from dataclasses import replace

    return replace(properties, **changes)
