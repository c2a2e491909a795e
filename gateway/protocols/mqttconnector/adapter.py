# -*- test-case-name: tests.unit.mqttconnector.test_adapter -*-
"""The connector's Twisted side: one connection at a time to the broker, the application
instance of each, and what outlives a connection (the session, the outgoing queue).

* :class:`Connector` keeps the connector going: it connects (TCP, TLS with the broker's
  certificate verified through service-identity, or WebSocket), and when a connection fails or
  ends it connects again after a delay that starts at ``reconnect_initial``, doubles up to
  ``reconnect_max`` and is drawn between half and all of that (jitter, so that daemons that lost
  their broker together do not come back together). It keeps the protocol state of the session
  between connections (our unacknowledged messages are sent again, §4.4) and holds the QoS 1/2
  messages published while it is away (``limits.max_queued_messages``; beyond it ``send()``
  and the channel reader wait).
* :class:`ConnectorConnection` is one connection, transport-neutral (:class:`ConnectorProtocol`
  over TCP/TLS here, :mod:`.websocket` over WebSocket). It keeps the adapter contract of the
  client core: one flush point (:meth:`ConnectorConnection.flush`) hands the core's events on,
  writes ``data_to_send()``, closes once the core is closed, pauses or resumes reading, and
  re-arms one timer at ``next_deadline``. On the CONNACK it subscribes (again: the broker may
  have lost the session) and starts the connection's application instance.
* :class:`ConnectorInstance` is that instance (the one
  :class:`~gateway.asgi.instance.ApplicationInstance` core): the broker's messages become
  ``mqtt.publish`` events, acknowledged once handled (:class:`~gateway.protocols.mqtt.asgi.HandlingRules`);
  an application that raises leaves them unacknowledged, the connection is closed (DISCONNECT
  0x80) and the broker sends them again on the next one.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from time import perf_counter
from typing import Any, Protocol as TypingProtocol, cast

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gateway._compat.tcp import write_through
from gateway.asgi.app import ASGIApp
from gateway.asgi.instance import CLIENT_LEFT, RETURNED, ApplicationInstance, Clock, Ending
from gateway.logs import RejectionLog
from gateway.metrics.stats import ConnectorStats
from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.mqtt.adapter import MqttIO, TransportSide
from gateway.protocols.mqtt.asgi import (
    Accept, AckPublish, Close, Deliver, Refuse, ScopeState, disconnect_event, publish_event,
)
from gateway.protocols.mqtt.events import (
    ConnectionClosed, DisconnectReceived, PubAckReceived, PubCompReceived, PublishReceived, PublishStatus,
    PubRecReceived, SessionState,
)
from gateway.protocols.mqtt.packets import ConnAck, Connect, Publish, Subscription, new_publish
from gateway.protocols.mqtt.properties import EMPTY_PROPERTIES, Properties
from gateway.protocols.mqtt.reasons import ReasonCode
from gateway.protocols.mqtt.topics import InvalidTopicError, validate_topic_name
from gateway.protocols.mqttconnector.asgi import (
    ConnectorOutbox, connect_event, connector_scope, disconnect_reason, perform_check,
)
from gateway.protocols.mqttconnector.config import MqttConnectorConfig
from gateway.protocols.mqttconnector.core import (
    ClientOptions, ConnAckReceived, MqttClientConnection, SubAckReceived,
)
from gateway.protocols.transport import Drain, address_tuple, server_tuple

__all__ = [
    "Connector", "ConnectorConnection", "ConnectorIO", "ConnectorInstance", "ConnectorProtocol", "describe_reason",
    "failure_text",
]

log = Logger(namespace="gateway.mqtt.connector")

#: Seconds the channel reader waits after the channel layer failed before it reads again.
LAYER_RETRY = 1.0


def describe_reason(code: int | None) -> str:
    """``0x86 bad user name or password`` for a reason code (3.1.1 return codes by name)."""
    if code is None:
        return "no reason given"
    name = getattr(code, "name", None)
    if name is None:
        try:
            name = ReasonCode(code).name
        except ValueError:
            name = "unknown"
    return f"0x{int(code):02X} {name.replace('_', ' ').lower()}"


class ConnectorIO(MqttIO, TypingProtocol):
    """The transport side of a :class:`ConnectorConnection`: the listener's :class:`MqttIO`,
    and ``abort`` (close now)."""

    def abort(self) -> None: ...


class Connector:
    """One configured connector: connecting, reconnecting, the session between connections,
    the outgoing queue and the channel reader (see the module documentation).

    Args:
        config: the connector's configuration.
        app: the ASGI application (its ``mqtt`` scopes).
        loop: the asyncio loop instances run on.
        reactor: connections and timers (tests pass a fake clock).
        state: the lifespan state copied into each scope.
        close_timeout: seconds an instance may run on after its connection ended.
        layer: the channel layer of ``publish_channel`` (None without one).
        connect: ``connect(protocol) -> Deferred`` connecting a protocol to the broker (tests
            replace the network); by default from the broker URL.
        make_protocol: ``make_protocol(connector)``, the transport side of one connection
            (default :class:`ConnectorProtocol`, TCP/TLS; :func:`.websocket.client_protocol`
            for ``ws://`` and ``wss://``).
        rand: the jitter's source of numbers in [0, 1).
    """

    def __init__(self, config: MqttConnectorConfig, *, app: ASGIApp, loop: asyncio.AbstractEventLoop, reactor: Any,
                 state: dict[str, Any] | None = None, close_timeout: float = 10.0, layer: Any = None,
                 connect: Callable[[Any], defer.Deferred[Any]] | None = None,
                 make_protocol: Callable[[Connector], Any] | None = None,
                 rand: Callable[[], float] = random.random) -> None:
        self.config = config
        self.name = config.name
        self.app = app
        self.loop = loop
        self.reactor: Clock = reactor
        self.state = state
        self.close_timeout = close_timeout
        self.layer = layer
        self.connect = connect or self._connect
        self.make_protocol: Callable[[Connector], Any] = make_protocol or ConnectorProtocol
        self.rand = rand
        self.address = config.address
        limits = config.limits
        self.options = ClientOptions(
            receive_maximum=limits.receive_maximum, max_packet_size=int(limits.max_packet_size),
            topic_alias_maximum=limits.topic_alias_maximum, connack_timeout=float(config.timeouts.connect),
        )
        self.max_app_queue = limits.max_app_queue
        self.max_queued = limits.max_queued_messages
        self.subscriptions = tuple(
            Subscription(sub.filter, sub.qos, sub.no_local, False, sub.retain_handling) for sub in config.subscriptions
        )
        level = config.protocol_level
        properties = EMPTY_PROPERTIES
        if level == 5 and config.session_expiry:
            properties = Properties(session_expiry_interval=int(config.session_expiry))
        password = config.password.encode("utf-8") if config.password is not None else None
        # Never logged: it holds the password.
        self.connect_packet = Connect(
            config.client_id_for_broker(), level, config.clean_start, int(config.keep_alive),
            config.username, password, None, properties,
        )
        #: The counters (:mod:`gateway.metrics`; the daemon replaces this object).
        self.stats = ConnectorStats()
        self.stats.queued_source = self.outstanding
        self.rejections = RejectionLog(config.name, reactor, log)
        #: The protocol state of the session between connections.
        self.session: SessionState | None = None
        #: QoS 1/2 messages published while no connection was accepted (sent on the next one).
        self.pending: deque[Publish] = deque()
        #: The current connection (from the transport's connection to its end) and the instance
        #: of the last accepted one (until it ended).
        self.conn: ConnectorConnection | None = None
        self.instance: ConnectorInstance | None = None
        self.connected = False
        self.routed: bool | None = None
        self.last_error: str | None = None
        self.backoff = float(config.reconnect_initial)
        self.attempts = 0
        self.stopping = False
        self._started = False
        self._timer: Any = None
        self._attempt_after_instance = False
        self._app_failed = False
        #: Waiting in stop() for the connection to become quiet (see is_quiet).
        self.waiting_quiet = False
        self._room: list[asyncio.Future[None]] = []
        self._quiet: list[asyncio.Future[None]] = []
        self._ended: list[asyncio.Future[None]] = []
        self._outbox = ConnectorOutbox()
        self._reader: asyncio.Task[None] | None = None
        self._tls_options: Any = None
        self._prepare: asyncio.Task[None] | None = None
        self._connecting: defer.Deferred[Any] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start connecting (the listener calls this after lifespan startup)."""
        if self._started:
            return
        self._started = True
        self._prepare = self.loop.create_task(self._start())

    async def _start(self) -> None:
        from gateway.routing.base import matches

        try:
            self.routed = bool(await matches(self.app, {"type": "mqtt"}))
        except Exception as exc:
            self.routed = False
            self.last_error = f"the application's route check failed: {exc!r}"
        else:
            if not self.routed:
                self.last_error = "the application does not handle mqtt scopes"
        if not self.routed:
            log.error("{name}: not connecting to {url}: {error}", name=self.name, url=self.address.url,
                      error=self.last_error)
            return
        if self.stopping:
            return
        channel = self.config.publish_channel
        if channel is not None and self.layer is not None:
            self._reader = self.loop.create_task(self._read_channel(channel))
        self._attempt()

    async def stop(self) -> None:
        """Stop gracefully: read nothing new from the broker, let the application finish what it
        holds and the broker complete our messages in flight, DISCONNECT (the session stays),
        and wait for the instance to end. The listener bounds this with its drain timeout
        (then :meth:`abort`)."""
        self.stopping = True
        self._cancel_timer()
        self._stop_reader()
        self._release(self._room)
        conn = self.conn
        if conn is not None and not conn.core.closed:
            if conn.accepted:
                conn.flush()  # stops reading (see ConnectorConnection.paused_now)
                if not self.is_quiet():
                    waiter = self.loop.create_future()
                    self._quiet.append(waiter)
                    self.waiting_quiet = True
                    await waiter
                    self.waiting_quiet = False
            conn.disconnect(ReasonCode.NORMAL_DISCONNECTION)
        if self.conn is not None or (self.instance is not None and self.instance.running):
            waiter = self.loop.create_future()
            self._ended.append(waiter)
            await waiter

    def abort(self) -> None:
        """Stop now: drop the connection and cancel the application."""
        self.stopping = True
        self._cancel_timer()
        self._stop_reader()
        conn = self.conn
        if conn is not None:
            conn.io.abort()
        instance = self.instance
        if instance is not None:
            instance.cancel()

    def problem(self) -> str | None:
        """Why the connector is not ready (None: connected), for ``/readyz``: ``is not connected
        to mqtt://... (last error: ...)``."""
        if self.connected:
            return None
        if self.routed is False:
            return f"is not connecting to {self.address.url}: {self.last_error}"
        error = f" (last error: {self.last_error})" if self.last_error else " (connecting)"
        return f"is not connected to {self.address.url}{error}"

    # -- connecting ------------------------------------------------------------------------------

    def _attempt(self) -> None:
        self._timer = None
        if self.stopping or self.conn is not None:
            return
        if self.instance is not None and self.instance.running:
            # One instance at a time: the broker sends the old one's unacknowledged messages
            # again, and they should not be handled twice at once.
            self._attempt_after_instance = True
            return
        self.attempts += 1
        protocol = self.make_protocol(self)
        try:
            connecting = self.connect(protocol)
        except Exception as exc:  # the TLS files could not be read, say
            self._failed(f"{type(exc).__name__}: {exc}")
            return
        self._connecting = connecting
        connecting.addBoth(self._connect_done)

    def _connect_done(self, result: Any) -> None:
        self._connecting = None
        if isinstance(result, Failure):
            if not self.stopping:
                self._failed(result.getErrorMessage() or type(result.value).__name__)

    def _connect(self, protocol: Any) -> defer.Deferred[Any]:
        from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

        address = self.address
        endpoint: Any = HostnameEndpoint(self.reactor, address.host, address.port,
                                         timeout=float(self.config.timeouts.connect))
        if address.tls:
            endpoint = wrapClientTLS(self._tls(), endpoint)
        return cast("defer.Deferred[Any]", endpoint.connect(_OneProtocol(protocol)))

    def _tls(self) -> Any:
        if self._tls_options is None:
            from gateway.tls import client_tls_options

            tls = self.config.tls
            self._tls_options = client_tls_options(tls.server_name or self.address.host, tls.ca_file,
                                                   tls.cert_file, tls.key_file)
        return self._tls_options

    def _failed(self, error: str) -> None:
        """An attempt that never made a connection."""
        self.last_error = error
        self.stats.connect_failures += 1
        log.warn("{name}: cannot connect to {url}: {error}", name=self.name, url=self.address.url, error=error)
        self._schedule()

    def _schedule(self) -> None:
        if self.stopping or self._timer is not None:
            return
        delay = self.backoff
        self.backoff = min(delay * 2, float(self.config.reconnect_max))
        delay *= 0.5 + 0.5 * self.rand()
        self.stats.reconnects += 1
        log.info("{name}: connecting to {url} again in {delay:.2f}s", name=self.name, url=self.address.url, delay=delay)
        self._timer = self.reactor.callLater(delay, self._attempt)

    def _cancel_timer(self) -> None:
        """Stop the reconnection timer and an attempt still connecting (stop, abort)."""
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()

    # -- from the connection ---------------------------------------------------------------------

    def opened(self, conn: ConnectorConnection) -> SessionState | None:
        """A transport connection is up: it is the current one; returns the session to resume."""
        self.conn = conn
        session = self.session
        self.session = None
        if self.pending:
            base = session if session is not None else SessionState()
            session = replace(base, queued=base.queued + tuple(self.pending))
            self.pending.clear()
        return session

    def accepted(self, conn: ConnectorConnection, connack: ConnAck) -> None:
        """The broker accepted the connection: it serves the application from now on."""
        self.connected = True
        self.last_error = None
        self._app_failed = False
        stats = self.stats
        stats.connected = 1
        stats.connections += 1
        log.info("{name}: connected to {url} as {client_id} (session {present})", name=self.name,
                 url=self.address.url, client_id=conn.scope_client_id(connack),
                 present="resumed" if connack.session_present else "new")

    def closed(self, conn: ConnectorConnection, event: ConnectionClosed, connack: ConnAck | None) -> None:
        """The connection ended: keep the session, connect again later."""
        if self.conn is conn:
            self.conn = None
        self.session = conn.core.session_state()
        accepted = connack is not None and not connack.reason_code
        if accepted:
            self.connected = False
            self.stats.connected = 0
            if not self._app_failed:
                self.backoff = float(self.config.reconnect_initial)
        else:
            self.stats.connect_failures += 1
        if event.error is not None:
            self.last_error = event.error.message
        elif connack is not None and connack.reason_code:
            self.last_error = f"the broker refused the connection: {describe_reason(connack.reason_code)}"
        elif conn.disconnect_received is not None:
            self.last_error = f"the broker disconnected: {describe_reason(conn.disconnect_received.reason_code)}"
        elif conn.lost_reason is not None:
            self.last_error = conn.lost_reason
        if not self.stopping:
            if accepted:
                log.warn("{name}: connection to {url} ended: {error}", name=self.name, url=self.address.url,
                         error=self.last_error or "closed")
            elif connack is not None and connack.reason_code:
                log.error("{name}: {url}: {error}", name=self.name, url=self.address.url, error=self.last_error)
            else:
                log.warn("{name}: cannot connect to {url}: {error}", name=self.name, url=self.address.url,
                         error=self.last_error or "closed")
            self._schedule()
        self._release(self._room)
        self._release(self._quiet)
        self._check_ended()

    def instance_ended(self, instance: ConnectorInstance, ending: Ending) -> None:
        """The application instance of a connection ended."""
        if ending is not RETURNED and ending is not CLIENT_LEFT:
            self._app_failed = True
        if self.instance is instance:
            self.instance = None
        if self._attempt_after_instance:
            self._attempt_after_instance = False
            self._attempt()
        self._check_ended()
        self.check_quiet()

    def _check_ended(self) -> None:
        if self.conn is None and (self.instance is None or not self.instance.running):
            self._release(self._ended)

    def is_quiet(self) -> bool:
        """Whether a stopping connector may DISCONNECT: the application handled what it was
        given and the broker completed our messages in flight."""
        conn = self.conn
        if conn is None or conn.core.closed:
            return True
        instance = self.instance
        if instance is not None and instance.running and not instance.idle:
            return False
        return conn.core.outbound_pending == 0

    def check_quiet(self) -> None:
        """Wake :meth:`stop` once the connection is quiet."""
        if self._quiet and self.is_quiet():
            self._release(self._quiet)

    # -- publishing to the broker ----------------------------------------------------------------

    def outstanding(self) -> int:
        """Our QoS 1/2 messages the broker has not completed (in flight, queued, held)."""
        conn = self.conn
        if conn is not None:
            count = conn.outstanding()
        else:
            session = self.session
            count = len(session.outbound) + len(session.queued) if session is not None else 0
        return count + len(self.pending)

    def has_room(self) -> bool:
        """Whether another QoS 1/2 message may be taken (``limits.max_queued_messages``)."""
        return self.stopping or self.outstanding() < self.max_queued

    def room_changed(self) -> asyncio.Future[None]:
        """A future that completes when the broker completed a message, or a connection ended."""
        waiter: asyncio.Future[None] = self.loop.create_future()
        self._room.append(waiter)
        return waiter

    async def room(self) -> None:
        """Wait until another QoS 1/2 message may be taken."""
        while not self.has_room():
            await self.room_changed()

    def publish(self, action: Deliver) -> None:
        """Publish to the broker now (QoS 1/2: hold it while no connection is accepted).

        Raises:
            LocalProtocolError: an invalid topic name, or what the broker said it does not
                take (RETAIN without Retain Available).
        """
        try:
            validate_topic_name(action.topic)
        except InvalidTopicError as exc:
            raise LocalProtocolError(f"topic name {action.topic!r}: {exc}") from None
        conn = self.conn
        if conn is not None and conn.accepted and not conn.core.closed:
            conn.publish(action.topic, action.payload, action.qos, action.retain, action.properties)
        elif action.qos:
            self.pending.append(new_publish(action.topic, action.payload, action.qos, action.retain, False, None,
                                            action.properties))
        else:
            self.stats.dropped += 1  # QoS 0 is at most once: nothing holds it while disconnected

    def completed(self) -> None:
        """The broker completed one of our messages: room for another."""
        if self._room:
            self._release(self._room)
        if self.waiting_quiet:
            self.check_quiet()

    async def _read_channel(self, channel: str) -> None:
        """Publish the ``mqtt.publish`` messages of ``publish_channel`` to the broker."""
        layer = self.layer
        while not self.stopping:
            try:
                message = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.rejections.allow("channel layer error"):
                    log.warn("{name}: reading {channel} failed: {error}", name=self.name, channel=channel,
                             error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(LAYER_RETRY)
                continue
            try:
                action = self._outbox.check(message)
            except LocalProtocolError as exc:
                if self.rejections.allow("bad channel message"):
                    log.warn("{name}: ignored a message on {channel}: {error}", name=self.name, channel=channel,
                             error=str(exc))
                continue
            if action.qos and not self.has_room():
                await self.room()
            try:
                self.publish(action)
            except LocalProtocolError as exc:
                if self.rejections.allow("bad channel message"):
                    log.warn("{name}: ignored a message on {channel}: {error}", name=self.name, channel=channel,
                             error=str(exc))

    def _stop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()

    def _release(self, waiters: list[asyncio.Future[None]]) -> None:
        taken = waiters[:]
        waiters.clear()
        for waiter in taken:
            if not waiter.done():
                waiter.set_result(None)


class ConnectorConnection:
    """One connection to the broker (see the module documentation).

    Args:
        connector: the connector it belongs to.
        io: its transport side (TCP/TLS or WebSocket).
        client: the broker's address; server: the local one.
        websocket_path: the WebSocket path (None over TCP).
    """

    def __init__(self, connector: Connector, io: Any, *, client: tuple[str, int] | None = None,
                 server: tuple[str, int | None] | None = None, websocket_path: str | None = None) -> None:
        self.connector = connector
        self.stats = connector.stats
        self.io: ConnectorIO = io
        self.client = client
        self.server = server
        self.websocket_path = websocket_path
        self.core = MqttClientConnection(connector.options)
        self.session: SessionState | None = None
        self.connack: ConnAck | None = None
        self.instance: ConnectorInstance | None = None
        self.accepted = False
        #: The CONNECT went out: this connection is the connector's current one.
        self.started = False
        self.lost = False
        self.lost_reason: str | None = None
        self.disconnect_received: DisconnectReceived | None = None
        self._subscribe_id: int | None = None
        self._started = 0.0
        self._closing = False
        self._flushing = False
        self._reading_paused = False
        self._timer: Any = None

    # -- from the transport -------------------------------------------------------------------

    def start(self) -> None:
        """The transport is up: send the CONNECT (or close, if the connector is stopping)."""
        if self.connector.stopping:
            self.io.abort()
            return
        self.started = True
        self.session = self.connector.opened(self)
        self._started = perf_counter()
        self.core.connect(self.connector.connect_packet, self.session, self.connector.subscriptions)
        self.flush()

    def data_received(self, data: bytes) -> None:
        """Bytes from the broker."""
        self.core.receive_data(data)
        self.flush()

    def connection_lost(self, reason: str | None = None) -> None:
        """The transport closed."""
        self.lost = True
        if reason and self.lost_reason is None:
            self.lost_reason = reason
        self.core.receive_data(b"")
        self.flush()
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def write_buffer_full(self) -> None:
        """The transport's write buffer is full: stop reading until it drains."""
        self.stats.write_pauses += 1
        self.flush()

    def writes_resumed(self) -> None:
        """The transport's write buffer drained."""
        instance = self.instance
        if instance is not None:
            instance.drain.release()
        if not self.lost:
            self.flush()

    # -- the flush point ----------------------------------------------------------------------

    def flush(self) -> None:
        """Hand events on, write output, close, pause or resume reading, re-arm the timer."""
        if self._flushing:
            return
        self._flushing = True
        core = self.core
        connector = self.connector
        try:
            while True:
                events = core.events_received()
                if not events:
                    break
                for event in events:
                    cls = event.__class__
                    if cls is PublishReceived:
                        self.stats.publish_in += 1
                        instance = self.instance
                        if instance is not None:
                            instance.publish(cast(PublishReceived, event).packet)
                    elif cls is PubAckReceived or cls is PubCompReceived or cls is PubRecReceived:
                        connector.completed()
                    elif cls is ConnAckReceived:
                        self._connack(cast(ConnAckReceived, event).packet)
                    elif cls is SubAckReceived:
                        self._suback(cast(SubAckReceived, event))
                    elif cls is DisconnectReceived:
                        self.disconnect_received = cast(DisconnectReceived, event)
                    elif cls is ConnectionClosed:
                        self._closed(cast(ConnectionClosed, event))
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
            return
        paused = self.paused_now()
        if paused != self._reading_paused and not self.lost:
            self._reading_paused = paused
            if paused:
                if self.accepted and not connector.stopping:
                    self.stats.read_pauses += 1
                self.io.pause_reading()
            else:
                self.io.resume_reading()
        self._arm_timer()
        if connector.waiting_quiet:
            connector.check_quiet()

    def paused_now(self) -> bool:
        """Whether reading from the broker should pause: our Receive Maximum of messages await
        their acknowledgement, the application is ``max_app_queue`` behind, the transport's
        write buffer is full, or the connector is stopping (it takes nothing new). Before the
        CONNACK the write buffer does not count: over TLS the CONNECT waits in it for the
        handshake, which needs the reading to go on."""
        if self.core.paused:
            return True
        if self.accepted and (self.io.writes_paused or self.connector.stopping):
            return True
        instance = self.instance
        return instance is not None and instance.reading_paused

    def _arm_timer(self) -> None:
        reactor = self.connector.reactor
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
        self.core.handle_timeout(self.connector.reactor.seconds())
        self.flush()

    # -- what the broker said -----------------------------------------------------------------

    def _connack(self, connack: ConnAck) -> None:
        self.connack = connack
        if connack.reason_code:
            return  # ConnectionClosed follows
        connector = self.connector
        self.accepted = True
        self.stats.connect_latency.observe(perf_counter() - self._started)
        connector.accepted(self, connack)
        scope: Any = connector_scope(  # an MqttScope, handed to the application as its scope
            connector.connect_packet, connack, name=connector.name, broker=connector.address.url,
            subscriptions=connector.subscriptions, websocket_path=self.websocket_path, client=self.client,
            server=self.server, tls=self.io.tls_info(), state=connector.state,
        )
        instance = self.instance = connector.instance = ConnectorInstance(self, scope)
        instance.rules.put_other()
        instance.put(connect_event())
        instance.start()
        self._subscribe_id = self.core.subscribe_packet_id
        pending = connector.pending
        while pending and not self.core.closed:
            packet = pending.popleft()
            try:
                self.publish(packet.topic, packet.payload, packet.qos, packet.retain, packet.properties)
            except LocalProtocolError as exc:  # RETAIN to a broker without retained messages
                self.stats.dropped += 1
                log.warn("{name}: a message to {topic} was dropped: {error}", name=connector.name,
                         topic=packet.topic, error=str(exc))

    def _suback(self, event: SubAckReceived) -> None:
        if event.packet_id != self._subscribe_id:
            return
        connector = self.connector
        instance = self.instance
        entries = instance.scope["connector"]["subscriptions"] if instance is not None else []
        for index, (sub, code) in enumerate(zip(connector.subscriptions, event.reason_codes)):
            if index < len(entries):
                entries[index]["granted"] = int(code)
            if code >= 0x80:
                log.error("{name}: the broker refused the subscription {filter}: {reason}", name=connector.name,
                          filter=sub.topic_filter, reason=describe_reason(code))
            elif code < sub.qos:
                log.info("{name}: the broker granted QoS {granted} for {filter} (asked: {qos})", name=connector.name,
                         granted=int(code), filter=sub.topic_filter, qos=sub.qos)

    def _closed(self, event: ConnectionClosed) -> None:
        instance = self.instance
        if instance is not None:
            self.instance = None
            disconnect = self.disconnect_received
            properties = disconnect.properties if disconnect is not None else EMPTY_PROPERTIES
            instance.closed(disconnect_event(event.reason_code, disconnect is not None, False, properties))
        if self.started:
            self.connector.closed(self, event, self.connack)

    # -- decisions ------------------------------------------------------------------------------

    def outstanding(self) -> int:
        """Our QoS 1/2 messages on this connection not completed by the broker."""
        if self.accepted:
            return self.core.outbound_pending
        session = self.session
        return len(session.outbound) + len(session.queued) if session is not None else 0

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool, properties: Properties) -> None:
        """Publish on this (accepted) connection."""
        status = self.core.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if status is PublishStatus.DROPPED:
            self.stats.dropped += 1
            if self.connector.rejections.allow("message too large"):
                log.warn("{name}: a message to {topic} is larger than the broker accepts; dropped",
                         name=self.connector.name, topic=topic)
        else:
            self.stats.publish_out += 1
        self.flush()

    def ack_publish(self, packet_id: int, reason_code: int, properties: Properties) -> None:
        """PUBACK/PUBREC for the broker's message, once handled.

        The hot path writes the acknowledgement and nothing else: an acknowledgement makes no
        event, and the keep-alive timer is armed already (the core stamps the time it fires).
        Only when reading was paused (it may resume now) does the whole flush run."""
        core = self.core
        core.ack_publish(packet_id, reason_code, properties)
        if self._reading_paused or self._flushing or core.closed:
            self.flush()
            return
        data = core.data_to_send()
        if data and not self.lost:
            self.io.write(data)

    def disconnect(self, reason_code: int = ReasonCode.NORMAL_DISCONNECTION) -> None:
        """End the connection from our side (DISCONNECT, then close)."""
        if not self.core.closed:
            self.core.disconnect(reason_code)
            self.flush()

    def scope_client_id(self, connack: ConnAck) -> str:
        """The client identifier the broker knows us by."""
        return connack.properties.assigned_client_identifier or self.connector.connect_packet.client_id


class ConnectorInstance(ApplicationInstance):
    """The application instance of one connector connection (see the module documentation).

    It starts when the broker accepted the connection, with ``mqtt.connect``; the broker's
    messages become ``mqtt.publish`` events, acknowledged when the application asks for the next
    event (or sends ``mqtt.puback``). Its ``mqtt.publish`` messages go to the broker (waiting
    while ``limits.max_queued_messages`` of our QoS 1/2 messages are outstanding, and QoS 0
    while the transport's buffer is full). If it fails, what it did not handle stays
    unacknowledged and the connection closes (DISCONNECT 0x80), so the broker sends it again.
    """

    __slots__ = ("conn", "rules", "mqtt_state", "drain")

    log = log
    notify_receiving = True

    def __init__(self, conn: ConnectorConnection, scope: dict[str, Any]) -> None:
        connector = conn.connector
        state: ScopeState[Any] = ScopeState()
        super().__init__(connector.app, scope, state, connector.loop, connector.reactor, conn.stats.instances,
                         connector.close_timeout, max(0, connector.max_app_queue - 1))
        self.conn = conn
        self.mqtt_state = state
        self.rules = state.rules
        self.drain = Drain()

    @property
    def idle(self) -> bool:
        """Whether the application waits for an event with nothing queued (it handled all)."""
        waiter = self.waiter
        return not self.queue and waiter is not None and not waiter.done()

    # -- from the connection --------------------------------------------------------------------

    def publish(self, packet: Publish) -> None:
        """A message from the broker."""
        self.rules.put_publish(packet.packet_id if packet.qos else None)
        self.put(publish_event(packet))

    def closed(self, final: dict[str, Any]) -> None:
        """The connection ended: ``receive()`` ends with ``final`` (``mqtt.disconnect``)."""
        self.mqtt_state.closed()
        self.client_left(final)
        self.drain.release()

    # -- the instance's hooks -------------------------------------------------------------------

    def app_receiving(self) -> None:
        answer = self.rules.next_asked()
        if answer is not None and not self.gone:
            self.app_perform(answer)
        connector = self.conn.connector
        if connector.waiting_quiet:
            self.loop.call_soon(connector.check_quiet)  # once receive() waits

    def app_perform(self, action: Any) -> Awaitable[None] | None:
        kind = action.__class__
        conn = self.conn
        if kind is AckPublish:
            conn.ack_publish(action.packet_id, action.reason_code, action.properties)
        elif kind is Deliver:
            connector = conn.connector
            if action.qos and not connector.has_room():
                return self._publish_later(action)
            connector.publish(action)
            if conn.io.writes_paused and not conn.lost:
                return self.drain.wait()
        elif kind is Accept:
            pass  # the broker accepted the connection already
        elif kind is Refuse or kind is Close:
            conn.disconnect(disconnect_reason(action.reason_code, conn.core.protocol_level))
        else:
            perform_check(action)
        return None

    async def _publish_later(self, action: Deliver) -> None:
        connector = self.conn.connector
        while not connector.has_room() and not self.gone:
            await connector.room_changed()
        if not self.gone:  # else send() raises ClientDisconnected: the message was not taken
            connector.publish(action)

    def pause_reading(self) -> None:
        pass  # the flush point asks reading_paused after handing events over

    def resume_reading(self) -> None:
        self.conn.flush()

    def app_ended(self, ending: Ending) -> None:
        conn = self.conn
        connector = conn.connector
        connector.instance_ended(self, ending)
        if not conn.core.closed:
            if ending is RETURNED:
                if not connector.stopping:
                    log.warn("The application of connector {name} returned; the connection is closed and opened again",
                             name=connector.name)
                conn.disconnect(ReasonCode.NORMAL_DISCONNECTION)
            else:
                # Unacknowledged messages stay unacknowledged: the broker sends them again.
                conn.disconnect(ReasonCode.UNSPECIFIED_ERROR)

    def describe(self) -> str:
        return f"MQTT connector {self.conn.connector.name}"


class _OneProtocol(Factory):
    """Hands one protocol to an endpoint (Twisted's ``connectProtocol`` logs every connection)."""

    noisy = False

    def __init__(self, protocol: Any) -> None:
        self.protocol_instance = protocol

    def buildProtocol(self, addr: Any) -> Any:
        return self.protocol_instance


@implementer(IPushProducer)
class ConnectorProtocol(TransportSide, Protocol):
    """A connector connection over TCP or TLS: the transport side of :class:`ConnectorConnection`
    (flow control and TLS details from :class:`TransportSide`, shared with the broker's listeners)."""

    conn: ConnectorConnection | None

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self.conn = None

    def connectionMade(self) -> None:
        transport = self.transport
        try:
            transport.setTcpNoDelay(True)  # acknowledgements must not wait for Nagle
        except (AttributeError, OSError):
            pass
        transport.registerProducer(self, True)
        conn = self.conn = ConnectorConnection(
            self.connector, self, client=address_tuple(transport.getPeer()), server=server_tuple(transport.getHost()),
        )
        conn.start()

    def dataReceived(self, data: bytes) -> None:
        conn = self.conn
        if conn is not None:
            conn.data_received(data)

    def connectionLost(self, reason: Any = None) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.connection_lost(failure_text(reason))

    # -- the io interface (the rest is TransportSide's) ------------------------------------------

    def write(self, data: bytes) -> None:
        if self.writes_paused:
            self.buffered += len(data)
        write_through(self.transport, data)

    def close(self) -> None:
        self.transport.loseConnection()

    def abort(self) -> None:
        self.transport.abortConnection()


def failure_text(reason: Any) -> str | None:
    """A connection's end in words (``connection refused``, a TLS verification error...)."""
    if reason is None:
        return None
    value = getattr(reason, "value", reason)
    from twisted.internet.error import ConnectionDone

    if isinstance(value, ConnectionDone):
        return "the broker closed the connection"
    text = reason.getErrorMessage() if hasattr(reason, "getErrorMessage") else str(value)
    return text or type(value).__name__
