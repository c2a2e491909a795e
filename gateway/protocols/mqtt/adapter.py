# -*- test-case-name: tests.unit.mqtt.test_adapter -*-
"""The Twisted adapter of MQTT: one connection between a byte transport, the wire core
(:mod:`.core`), the built-in broker and the application.

* :class:`MqttConnection` is transport-neutral: TCP/TLS (:class:`MqttProtocol`, here) and
  WebSocket (:mod:`.websocket`) give it bytes and an *io* object (:class:`MqttIO`). It keeps
  the adapter contract of :mod:`.core`: one flush point (:meth:`MqttConnection.flush`)
  forwards the core's events to the connection's *driver*, writes ``data_to_send()``, closes
  once the core is closed, pauses or resumes reading, and re-arms one timer at
  ``next_deadline``.
* Reading pauses while the core asks for it (a CONNECT being decided, Receive Maximum
  publishes awaiting their acknowledgement), while the driver is behind, and while the
  transport's write buffer is full: a client that sends without reading its answers (PUBACK,
  PINGRESP, SUBACK...) is not read either, so what a connection holds stays within the
  configured limits whatever the client does.
* The driver (:class:`Driver`) decides, from the CONNECT on: the built-in broker
  (:class:`~.broker.driver.BrokerDriver`, ``consumer: broker``) or an application instance
  (:class:`MqttInstance`, ``consumer: application``: an ASGI ``mqtt`` scope per connection, on
  the one :class:`~gateway.asgi.instance.ApplicationInstance` core). Either way the broker
  delivers to subscribers directly through :meth:`MqttConnection.deliver`.
* When the connection ends, the references that point back (protocol ↔ connection ↔ driver,
  connection ↔ broker link) are dropped, so a closed connection is freed by reference
  counting, with no work left for the garbage collector.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field, replace
from time import perf_counter
from typing import Any, Protocol as TypingProtocol, cast

from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger, LogLevel
from zope.interface import implementer

from gateway.asgi.app import ASGIApp
from gateway.asgi.instance import ApplicationInstance, Clock, Ending, RETURNED
from gateway.logs import RejectionLog
from gateway.metrics.stats import MqttStats
from gateway.protocols.mqtt.asgi import (
    Accept, AuthStep, Close, Deliver, AckPublish, Refuse, ScopeState, AnswerSubscribe, AnswerUnsubscribe,
    connect_event, disconnect_event, mqtt_scope, properties_to_dict, publish_event, subscribe_event,
    unsubscribe_event,
)
from gateway.protocols.mqtt.broker.auth import Authenticator
from gateway.protocols.mqtt.broker.core import Broker
from gateway.protocols.mqtt.broker.driver import BrokerDriver
from gateway.protocols.mqtt.broker.link import BrokerLink
from gateway.protocols.mqtt.broker.session import Message
from gateway.protocols.mqtt.core import MqttServerConnection
from gateway.protocols.mqtt.events import (
    AuthReceived, ConnectionClosed, ConnectReceived, DisconnectReceived, Event, PublishReceived, PublishStatus,
    ServerOptions, SubscribeReceived, UnsubscribeReceived,
)
from gateway.protocols.mqtt.packets import Connect, Publish, Subscribe, Unsubscribe
from gateway.protocols.mqtt.properties import EMPTY_PROPERTIES, Properties
from gateway.protocols.mqtt.reasons import ReasonCode
from gateway._compat.tcp import write_through
from gateway.protocols.transport import address_tuple, is_tls, server_tuple, tls_extension

__all__ = ["Driver", "MqttConnection", "MqttIO", "MqttInstance", "MqttProtocol", "MqttSettings", "TransportSide"]

log = Logger(namespace="gateway.mqtt")


@dataclass(eq=False)
class MqttSettings:
    """Everything the connections of one MQTT listener share."""

    loop: asyncio.AbstractEventLoop
    reactor: Clock
    options: ServerOptions = field(default_factory=ServerOptions)
    #: "broker" (built-in broker, no app instance) or "application" (an ASGI mqtt scope).
    consumer: str = "broker"
    app: ASGIApp | None = None
    broker: Broker | None = None
    auth: Authenticator = field(default_factory=Authenticator)
    state: dict[str, Any] | None = None
    application_close_timeout: float = 10.0
    #: Events waiting for the application before reading from the client pauses.
    max_app_queue: int = 256
    #: Bytes buffered for a client that does not read before QoS 0 messages to it are dropped.
    max_write_buffer: int = 8 * 1024 * 1024
    #: Seconds the application has to answer ``mqtt.connect``.
    connect_answer_timeout: float = 30.0
    #: Lingering close of TCP connections the server ends: seconds (0: off) and bytes.
    lingering_timeout: float = 2.0
    lingering_size: int = 64 * 1024
    listener: str = "mqtt"
    #: The listener's counters (:mod:`gateway.metrics`).
    stats: MqttStats = field(default_factory=MqttStats)
    #: Rate-limits the lines about clients closed for a protocol error (made from the above
    #: when not given).
    rejections: RejectionLog | None = None

    def __post_init__(self) -> None:
        if self.rejections is None:
            self.rejections = RejectionLog(self.listener, self.reactor, log)


class MqttIO(TypingProtocol):
    """The transport side of a :class:`MqttConnection` (TCP/TLS or WebSocket)."""

    #: The transport's write buffer is full (the client does not read fast enough).
    writes_paused: bool
    #: Bytes written since it became full.
    buffered: int

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def tls_info(self) -> dict[str, Any] | None: ...


class Driver(TypingProtocol):
    """What answers a connection's client from its CONNECT on (the broker, or the application)."""

    def handle(self, events: list[Event]) -> None:
        """Act on the core's events (the flush point calls this)."""

    def wants_pause(self) -> bool:
        """Whether reading from the client should pause (the driver is behind)."""

    def writes_resumed(self) -> None:
        """The transport's write buffer drained."""

    def lost(self) -> None:
        """The transport closed (the ConnectionClosed event was handled already)."""


class WriteSignals(TypingProtocol):
    """What :class:`TransportSide` tells its connection (the broker's or a connector's)."""

    def write_buffer_full(self) -> None: ...

    def writes_resumed(self) -> None: ...


class TransportSide:
    """What MQTT over TCP and over WebSocket share on the transport side of a
    :class:`MqttConnection`: the ``IPushProducer`` half (the transport says when its write
    buffer is full, ``writes_paused``, with ``buffered`` counting the bytes written meanwhile,
    which the broker uses to drop QoS 0 for a client that does not read; and when it drained),
    and reading flow control and TLS details of the :class:`MqttIO` interface. Subclasses add
    ``write`` and ``close``."""

    conn: WriteSignals | None = None
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
        conn = self.conn
        if conn is not None:
            conn.write_buffer_full()

    def resumeProducing(self) -> None:
        self.writes_paused = False
        self.buffered = 0
        conn = self.conn
        if conn is not None:
            conn.writes_resumed()

    def stopProducing(self) -> None:
        pass


class MqttConnection:
    """The adapter of one connection (see the module documentation)."""

    def __init__(
        self, settings: MqttSettings, io: MqttIO, *, transport: str = "tcp",
        client: tuple[str, int] | None = None, server: tuple[str, int | None] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.stats = settings.stats
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
        #: Made when the CONNECT arrives (:meth:`_new_driver`).
        self.driver: Driver | None = None
        self.lost = False
        self.dropped = 0
        self._connect_started = 0.0
        self._accepted = False  # reading pauses before the CONNACK are not backpressure
        self._closing = False
        self._flushing = False
        self._reading_paused = False
        self._timer: Any = None
        self._disconnect_expiry: int | None = None

    # -- from the transport -------------------------------------------------------------------

    def start(self) -> None:
        """The transport is up: start the connect timeout."""
        self.flush()

    def data_received(self, data: bytes) -> None:
        """Bytes from the client."""
        self.core.receive_data(data)
        self.flush()

    def connection_lost(self) -> None:
        """The transport closed: the driver is told, then every reference back is dropped."""
        self.lost = True
        self.core.receive_data(b"")
        self.flush()
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        driver, self.driver = self.driver, None
        if driver is not None:
            driver.lost()

    def write_buffer_full(self) -> None:
        """The transport's write buffer is full: stop reading until it drains."""
        self.stats.write_pauses += 1
        if not self._reading_paused and not self.lost and not self.core.closed:
            self._reading_paused = True
            self.io.pause_reading()

    def writes_resumed(self) -> None:
        """The transport's write buffer drained: read again, wake waiting ``send()`` calls."""
        driver = self.driver
        if driver is not None:
            driver.writes_resumed()
        if not self.lost:
            self.flush()

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
                ended = None
                for event in events:
                    cls = event.__class__
                    if cls is PublishReceived:
                        stats.publish_in += 1
                    elif cls is SubscribeReceived:
                        stats.subscribe_in += 1
                    elif cls is DisconnectReceived:
                        self._disconnect_expiry = cast(DisconnectReceived, event).properties.session_expiry_interval
                    elif cls is ConnectionClosed:
                        ended = cast(ConnectionClosed, event)
                driver = self.driver
                if driver is None and events[0].__class__ is ConnectReceived:
                    driver = self.driver = self._new_driver(events[0].packet)
                if driver is not None:
                    driver.handle(events)
                if ended is not None:
                    # After the driver: publishes that came in the same read as the DISCONNECT
                    # (or just before the connection dropped) still go through the broker link.
                    self._ended(ended)
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
            driver = self.driver
            paused = core.paused or self.io.writes_paused or (driver is not None and driver.wants_pause())
            if paused != self._reading_paused and not self.lost:
                self._reading_paused = paused
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

    def _new_driver(self, connect: Connect) -> Driver:
        settings = self.settings
        if settings.consumer == "application":
            return MqttInstance(self, connect)
        return BrokerDriver(self, settings.broker, settings.loop, settings.options.receive_maximum)

    def _ended(self, event: ConnectionClosed) -> None:
        rejections = self.settings.rejections
        if event.error is not None and rejections is not None and rejections.allow("protocol error", LogLevel.debug):
            log.debug("MQTT client {client} ({id}): {error}", client=self.client, id=self.client_id, error=event.error.message)
        link, self.link = self.link, None
        if link is not None:
            link.closed(event.publish_will, self.core.session_state(), self._disconnect_expiry)

    def _arm_timer(self) -> None:
        reactor = self.settings.reactor
        now = reactor.seconds()
        deadline = self.core.next_deadline(now)
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
        self.core.handle_timeout(self.settings.reactor.seconds())
        self.flush()

    # -- decisions (shared by both drivers) ---------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the connection is over (answers are ignored from now on)."""
        return self.core.closed

    def open_link(self, connect: Connect) -> BrokerLink | None:
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
        return self.link

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
                properties = replace(properties, session_expiry_interval=link.expiry)
        if self.client_id_assigned and self.level == 5 and properties.assigned_client_identifier is None:
            properties = replace(properties, assigned_client_identifier=self.client_id)
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

    def ack_publish(self, packet_id: int, reason_code: int = ReasonCode.SUCCESS,
                    properties: Properties = EMPTY_PROPERTIES) -> None:
        """PUBACK/PUBREC for a client's QoS 1/2 publish (written at the next flush)."""
        self.core.ack_publish(packet_id, reason_code, properties)

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

    # -- from the broker (gateway.protocols.mqtt.broker.core.BrokerConnection) ----------------

    def deliver(self, topic: str, payload: bytes, qos: int, retain: bool, properties: Properties,
                wire: tuple[bytes, bytes] | None = None) -> bool:
        """Queue a message for the client (``wire``: pre-encoded, see the core's ``publish``);
        False if the connection cannot take it."""
        if qos == 0 and self.io.writes_paused and self.io.buffered > self.settings.max_write_buffer:
            self.dropped += 1
            self.stats.dropped += 1
            return True  # a client that does not read loses QoS 0 messages (never QoS 1/2)
        try:
            status = self.core.publish_checked(topic, payload, qos, retain, properties, wire)
        except Exception:  # closed meanwhile: the broker keeps QoS 1/2 for the session
            return False
        if status is PublishStatus.DROPPED:
            self.dropped += 1
            self.stats.dropped += 1
        else:
            self.stats.publish_out += 1
        return True

    def deliver_qos0(self, message: Message, retain: bool) -> bool:
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


class MqttInstance(ApplicationInstance):
    """``consumer: application``: the application instance of one connection, its driver.

    It starts when the CONNECT arrives; client packets become events, the application's
    messages are checked by :class:`~.asgi.ScopeState` and carried out here
    (:meth:`app_perform`). A QoS 1/2 publish is acknowledged once handled
    (:class:`~.asgi.HandlingRules`: when the application asks for the next event, or sends
    ``mqtt.puback``); if the application fails first, nothing is acknowledged and the client
    gets CONNACK 0x80 before ``mqtt.accept``, DISCONNECT 0x80 after (3.1.1: the connection
    closes), so it sends the message again. Keep-alive, PINGRESP, PUBREL/PUBCOMP, retries and
    flow control are the core's. Reading pauses while ``max_app_queue`` events wait.
    """

    __slots__ = ("conn", "rules", "state", "_connect_timer", "_disconnect", "_drain")

    log = log
    notify_receiving = True

    def __init__(self, conn: MqttConnection, connect: Connect) -> None:
        settings = conn.settings
        state: ScopeState[Subscribe | Unsubscribe] = ScopeState()
        super().__init__(
            cast(ASGIApp, settings.app), {}, state, settings.loop, settings.reactor, conn.stats.instances,
            settings.application_close_timeout, max(0, settings.max_app_queue - 1),
        )
        self.conn = conn
        self.state = state
        self.rules = state.rules
        self._connect_timer: Any = None
        self._disconnect: DisconnectReceived | None = None
        self._drain: list[asyncio.Future[None]] = []

    # -- the driver ---------------------------------------------------------------------------

    def handle(self, events: list[Event]) -> None:
        """Turn the core's events into application events."""
        rules = self.rules
        for event in events:
            cls = event.__class__
            if cls is PublishReceived:
                packet: Publish = event.packet  # type: ignore[union-attr,assignment]  # no cast() call here
                rules.put_publish(packet.packet_id if packet.qos else None)
                self.put(publish_event(packet))
            elif cls is SubscribeReceived:
                request = cast(SubscribeReceived, event).packet
                rules.put_subscribe(request.packet_id, request)
                self.put(subscribe_event(request))
            elif cls is UnsubscribeReceived:
                unsubscribe = cast(UnsubscribeReceived, event).packet
                rules.put_unsubscribe(unsubscribe.packet_id, unsubscribe)
                self.put(unsubscribe_event(unsubscribe))
            elif cls is ConnectReceived:
                self._start(cast(ConnectReceived, event).packet)
            elif cls is AuthReceived:
                auth = cast(AuthReceived, event)
                rules.put_other()
                self.put({"type": "mqtt.auth", "reason_code": int(auth.reason_code),
                          "properties": properties_to_dict(auth.properties)})
            elif cls is DisconnectReceived:
                self._disconnect = cast(DisconnectReceived, event)
            elif cls is ConnectionClosed:
                self._closed(cast(ConnectionClosed, event))

    def wants_pause(self) -> bool:
        return self.reading_paused

    def writes_resumed(self) -> None:
        self._release_drain()

    def lost(self) -> None:
        self._release_drain()

    def _start(self, connect: Connect) -> None:
        conn = self.conn
        link = conn.open_link(connect)
        settings = conn.settings
        scope: Any = mqtt_scope(  # an MqttScope, handed to the application as its scope
            connect, client_id=conn.client_id or "", assigned=conn.client_id_assigned,
            transport=conn.transport, client=conn.client, server=conn.server, tls=conn.io.tls_info(),
            state=settings.state, websocket=conn.extra.get("websocket"), link=link,
        )
        self.scope = scope
        self.rules.put_other()
        self.put(connect_event(connect))
        self.start()
        self._connect_timer = settings.reactor.callLater(settings.connect_answer_timeout, self._connect_overdue)

    def _closed(self, event: ConnectionClosed) -> None:
        disconnect = self._disconnect
        properties = disconnect.properties if disconnect is not None else EMPTY_PROPERTIES
        self.state.closed()
        self._cancel_connect_timer()
        self.client_left(disconnect_event(event.reason_code, disconnect is not None, event.publish_will, properties))
        self._release_drain()

    # -- the instance's hooks -----------------------------------------------------------------

    def app_receiving(self) -> None:
        answer = self.rules.next_asked()
        if answer is not None and not self.gone:
            if answer.__class__ is AnswerSubscribe:
                log.warn("MQTT application did not answer a SUBSCRIBE of {client}: refused", client=self.conn.client_id)
            self.app_perform(answer)

    def app_perform(self, action: Any) -> Any:
        conn = self.conn
        kind = action.__class__
        if kind is Deliver:
            conn.core.publish(action.topic, action.payload, qos=action.qos, retain=action.retain,
                              properties=action.properties)
            conn.stats.publish_out += 1
            conn.flush()
            if conn.io.writes_paused and not conn.lost:
                waiter: asyncio.Future[None] = self.loop.create_future()
                self._drain.append(waiter)
                return waiter
        elif kind is AckPublish:
            conn.ack_publish(action.packet_id, action.reason_code, action.properties)
            conn.flush()
        elif kind is AnswerSubscribe:
            conn.answer_subscribe(action.request, action.reason_codes, action.properties)
        elif kind is AnswerUnsubscribe:
            conn.answer_unsubscribe(action.request, action.reason_codes, action.properties)
        elif kind is Accept:
            self._cancel_connect_timer()
            conn.accept(action.session_present, action.properties)
        elif kind is Refuse:
            self._cancel_connect_timer()
            conn.reject(action.reason_code, action.properties)
        elif kind is Close:
            conn.disconnect(action.reason_code, action.properties)
        elif kind is AuthStep:
            conn.core.auth(action.reason_code, action.properties)
            conn.flush()
        return None

    def pause_reading(self) -> None:
        pass  # the flush point asks wants_pause() after handing events over

    def resume_reading(self) -> None:
        self.conn.flush()

    def app_ended(self, ending: Ending) -> None:
        self._cancel_connect_timer()
        conn = self.conn
        if conn.core.closed:
            return
        if not self.state.answered:
            if ending is RETURNED:
                log.error("ASGI application returned without answering mqtt.connect of {client}", client=conn.client_id)
            conn.reject(ReasonCode.UNSPECIFIED_ERROR)
        elif ending is RETURNED:
            conn.disconnect(ReasonCode.NORMAL_DISCONNECTION)
        else:
            # Unacknowledged publishes stay unacknowledged: the client sends them again.
            conn.disconnect(ReasonCode.UNSPECIFIED_ERROR)

    def describe(self) -> str:
        return f"MQTT client {self.conn.client_id}"

    # -- internals ----------------------------------------------------------------------------

    def _connect_overdue(self) -> None:
        self._connect_timer = None
        if not self.state.answered and not self.conn.core.closed:
            self.counters.timeouts += 1
            log.warn("ASGI application did not answer mqtt.connect of {client} in time", client=self.conn.client_id)
            self.state.closed()
            self.conn.reject(ReasonCode.SERVER_UNAVAILABLE)

    def _cancel_connect_timer(self) -> None:
        timer, self._connect_timer = self._connect_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _release_drain(self) -> None:
        waiters, self._drain = self._drain, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


@implementer(IPushProducer)
class MqttProtocol(TransportSide, Protocol):
    """An MQTT connection over TCP or TLS: the transport side of :class:`MqttConnection`."""

    def __init__(self, settings: MqttSettings) -> None:
        self.settings = settings
        self.conn: MqttConnection | None = None
        self.writes_paused = False
        self.buffered = 0  # bytes written while the transport's buffer was full
        self._lingering: int | None = None  # bytes still accepted while closing (lingering)
        self._linger_timer: Any = None

    def connectionMade(self) -> None:
        transport = self.transport
        try:
            # Small packets (acks, PINGRESP, QoS 0 messages) must not wait for Nagle's
            # algorithm and the peer's delayed ACK (40 ms a turn on a request/response flow).
            transport.setTcpNoDelay(True)
        except (AttributeError, OSError):  # UNIX sockets, test transports
            pass
        transport.registerProducer(self, True)
        conn = self.conn = MqttConnection(
            self.settings, self, transport="tcp", client=address_tuple(transport.getPeer()),
            server=server_tuple(transport.getHost()),
        )
        factory = self.factory
        if factory is not None:
            factory.connection_opened(self)
        conn.start()

    def dataReceived(self, data: bytes) -> None:
        lingering = self._lingering
        if lingering is not None:
            # Closing: what the client still sends is read and thrown away (see close()).
            self._lingering = lingering = lingering - len(data)
            if lingering < 0:
                self.transport.loseConnection()
            return
        conn = self.conn
        if conn is not None:
            conn.data_received(data)

    def connectionLost(self, reason: Any = None) -> None:
        timer, self._linger_timer = self._linger_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.connection_lost()
        factory = self.factory
        if factory is not None:
            factory.connection_closed(self)

    # -- the io interface of MqttConnection -------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.writes_paused:
            self.buffered += len(data)
        write_through(self.transport, data)

    def close(self) -> None:
        """Close after the last packet (a DISCONNECT, a refusing CONNACK). A close with unread
        bytes from the client makes the kernel reset the connection, and the client could lose
        that packet (and gets EPIPE writing the PUBRELs, acks... it sends meanwhile). So: FIN
        once the output is out, read and throw away what still comes (at most
        ``lingering_size`` bytes, for at most ``lingering_timeout`` seconds, as HTTP's lingering
        close), and close once the client closed its side or a bound is reached. TLS has no
        half-close: closed at once."""
        transport = self.transport
        settings = self.settings
        lose_write = getattr(transport, "loseWriteConnection", None)
        if (
            lose_write is None or settings.lingering_timeout <= 0 or self._lingering is not None
            or is_tls(transport)
        ):
            transport.loseConnection()
            return
        self._lingering = settings.lingering_size
        transport.resumeProducing()  # reading may be paused: the client's bytes must drain
        lose_write()
        self._linger_timer = settings.reactor.callLater(settings.lingering_timeout, self._linger_over)

    def _linger_over(self) -> None:
        self._linger_timer = None
        self.transport.loseConnection()

    # -- the listener -----------------------------------------------------------------------

    def shutdown(self) -> None:
        """DISCONNECT 0x8B Server shutting down (5.0), then close."""
        if self.conn is not None:
            self.conn.shutdown()

    def abort(self) -> None:
        """Close now."""
        self.transport.abortConnection()
