# -*- test-case-name: tests.unit.http.test_adapter -*-
"""The Twisted side of an HTTP/1.1 connection: transport, timers, flow control.

The only code that touches the transport. Parsing and framing live in
:mod:`gateway.protocols.http.core`, the ASGI message rules in :mod:`gateway.protocols.http.asgi`;
each request's application instance is a :class:`~gateway.asgi.instance.ApplicationInstance`
whose adapter side is an :class:`Exchange`.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass
from email.utils import formatdate
from time import perf_counter
from typing import Any

from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger, LogLevel
from zope.interface import implementer

from gateway._compat.tcp import set_write_high_water, write_through
from gateway.asgi.app import ASGIApp, Message
from gateway.asgi.instance import RETURNED, ApplicationInstance, Ending
from gateway.logs import RejectionLog
from gateway.metrics.stats import HTTPStats
from gateway.protocols.errors import LocalProtocolError, RemoteProtocolError
from gateway.protocols.http import files
from gateway.protocols.http.accesslog import AccessLog
from gateway.protocols.http.asgi import BODY, PATHSEND, START, TRAILERS, ResponseState, http_scope
from gateway.protocols.http.core import END_OF_MESSAGE, Data, HTTPConnection, HTTPLimits, Request, error_response
from gateway.protocols.http.proxy import TrustedProxies
from gateway.protocols.transport import Drain, address_tuple, is_tls, server_tuple, tls_extension

log = Logger(namespace="gateway.http")

# Timer kinds.
_IDLE = "keep-alive"
_HEAD = "header"
_BODY = "body"
_LINGER = "lingering close"


@dataclass(eq=False, slots=True)
class HTTPSettings:
    """Everything one HTTP listener's connections share."""

    app: ASGIApp
    loop: asyncio.AbstractEventLoop
    reactor: Any
    limits: HTTPLimits
    root_path: str = ""
    server_header: bytes = b"server: gateway\r\n"
    header_timeout: float = 10.0
    keep_alive_timeout: float = 5.0
    body_timeout: float = 60.0
    lingering_timeout: float = 5.0
    lingering_size: int = 1024 * 1024
    request_timeout: float | None = None
    application_close_timeout: float = 10.0
    max_pipelined: int = 32
    read_high_water: int = 64 * 1024
    write_high_water: int = 64 * 1024
    proxies: TrustedProxies | None = None
    access_log: AccessLog | None = None
    state: dict[str, Any] | None = None
    #: Called for ``Upgrade: websocket`` requests: ``(protocol, request, scope) -> bool``
    #: (True when it took the connection over). Set by the WebSocket support.
    websocket: Any = None
    #: HTTP/2 on this listener (:class:`gateway.protocols.http2.adapter.H2Entry`): offered the
    #: connection's first bytes (``take_over(protocol, data) -> bool``: ALPN ``h2`` or the
    #: prior-knowledge preface) and ``Upgrade: h2c`` requests (``upgrade(protocol, request)``).
    http2: Any = None
    #: Rate-limits the lines about bad requests and timed-out clients (one per listener).
    rejections: RejectionLog = None  # type: ignore[assignment]  # made in __post_init__

    def __post_init__(self) -> None:
        if self.rejections is None:
            self.rejections = RejectionLog("http", self.reactor, log)


class _DateHeader:
    """The ``Date`` header line, formatted once per second."""

    def __init__(self) -> None:
        self.second = -1
        self.line = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.line = b"date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
        return self.line


_date = _DateHeader()


_DISCONNECT: Message = {"type": "http.disconnect"}
#: Counters of protocols without a factory (adapter tests).
_DETACHED = HTTPStats()


class Exchange(ApplicationInstance):
    """One request and its response: the request's application instance, on its connection.

    The application's messages are checked by :class:`~gateway.protocols.http.asgi.ResponseState`
    and carried out here (:meth:`app_perform`) on the connection's wire core. The request body is
    queued as it arrives, one ``http.request`` event per piece read.
    """

    __slots__ = (
        "protocol", "request", "response", "status", "bytes_sent", "keep_alive", "body_complete", "stats",
        "_request_timer", "_head_pending", "_trailer_headers", "_t0",
    )

    log = log

    def __init__(self, protocol: HTTPProtocol, request: Request, scope: dict[str, Any]) -> None:
        settings = protocol.settings
        stats = self.stats = protocol.stats
        response = self.response = ResponseState()
        super().__init__(settings.app, scope, response, settings.loop, settings.reactor, stats.instances,
                         settings.application_close_timeout, settings.read_high_water)
        self.protocol = protocol
        self.request = request
        self.status = 0
        self.bytes_sent = 0
        self.keep_alive = request.keep_alive
        self.body_complete = False
        self._request_timer: Any = None
        self._head_pending = False
        self._trailer_headers: list[tuple[bytes, bytes]] | None = None
        stats.requests += 1
        self._t0 = perf_counter()

    # -- driven by the connection ---------------------------------------------------------

    def run(self) -> None:
        """Start the application instance for this request."""
        self.start()
        settings = self.protocol.settings
        if settings.request_timeout is not None and not self.response.complete:
            self._request_timer = settings.reactor.callLater(settings.request_timeout, self._request_timed_out)

    def feed(self, data: bytes) -> None:
        """Body bytes arrived from the client."""
        if not self.response.complete:
            self.put({"type": "http.request", "body": data, "more_body": True}, len(data))

    def end_of_body(self) -> None:
        """The request body is complete."""
        self.body_complete = True
        if self.response.complete:
            return
        last = self.last_queued() if self.queue or self.waiter is not None else None
        if last is not None:
            last["more_body"] = False  # not received yet: the last piece says it is the last
        else:
            self.put({"type": "http.request", "body": b"", "more_body": False}, 0)

    def client_gone(self) -> None:
        """The connection closed (or this exchange was given up): the application is told."""
        self._cancel_request_timer()
        self.client_left(_DISCONNECT)

    # -- the instance's hooks ----------------------------------------------------------------

    def app_perform(self, action: Any) -> Any:
        protocol = self.protocol
        conn = protocol.conn
        kind = action[0]
        if kind is BODY:
            _, body, more = action
            if not conn.suppresses_body:
                self.bytes_sent += len(body)
            conn.send_body(body)
            if not more and not self.response.trailers:
                self._finish()
                return None
            self._head_pending = False
            protocol.flush()
        elif kind is START:
            _, status, fields, _ = action
            self.status = status
            extra = protocol.extra_headers(fields[3], fields[4])  # has_server, has_date
            if not conn.start_response(self.request, status, fields, extra=extra):
                self.keep_alive = False
            # Hold the head back for a moment, so that it leaves with the first body piece
            # in one write; flush it on the next loop pass if no body comes (streaming).
            self._head_pending = True
            self.loop.call_soon(self._flush_head)
            return None
        elif kind is TRAILERS:
            if self._trailer_headers is None:
                self._trailer_headers = []
            self._trailer_headers.extend(action[1])
            if not action[2]:
                self._finish()
            return None
        elif kind is PATHSEND:
            self._head_pending = False
            return self._send_file(action[1])
        else:  # EARLY_HINT: 103 (RFC 8297), for HTTP/1.1 clients only (RFC 9110 15.2)
            if self.request.http_version == "1.1":
                conn.send_informational(103, action[1])
                protocol.flush()
            return None
        if protocol.writes_paused:
            self.stats.write_pauses += 1
            return protocol.drain.wait()
        return None

    def pause_reading(self) -> None:
        self.protocol.body_backlog(self, True)

    def resume_reading(self) -> None:
        self.protocol.body_backlog(self, False)

    def app_ended(self, ending: Ending) -> None:
        if self.gone or self.response.complete:
            return
        self._cancel_request_timer()
        self._answered()
        if not self.response.started:
            if ending is RETURNED:
                log.error("ASGI application returned without starting a response to {what}", what=self.describe())
            self.protocol.send_error(self, 500, "Internal Server Error")
        else:
            if ending is RETURNED:
                log.error("ASGI application returned without completing the response to {what}", what=self.describe())
            self.protocol.abort_response(self)

    def describe(self) -> str:
        return f"{self.request.method} {self.scope.get('path')}"

    # -- internals ---------------------------------------------------------------------------

    async def _send_file(self, path: str) -> None:
        await files.send_file(self.protocol, self, path)
        if not self.response.trailers:
            self._finish()

    def _flush_head(self) -> None:
        if self._head_pending:
            self._head_pending = False
            if not self.gone:
                self.protocol.flush()

    def _answered(self) -> None:
        """Count a response (complete, cut short, or an error page) and its latency."""
        stats = self.stats
        stats.responses += 1
        elapsed = perf_counter() - self._t0
        histogram = stats.request_latency  # Histogram.observe, inlined: once per response
        histogram.counts[bisect_left(histogram.bounds, elapsed)] += 1
        histogram.sum += elapsed

    def _finish(self) -> None:
        self._head_pending = False
        self._cancel_request_timer()
        self._answered()
        protocol = self.protocol
        try:
            keep_alive = protocol.conn.end_response(self._trailer_headers)
        except LocalProtocolError as exc:
            log.error("Response to {request} ended early: {error}", request=self.request, error=exc.message)
            protocol.flush()
            self.set_final(_DISCONNECT)
            protocol.response_complete(self, False)
            return
        protocol.flush()
        if not self.body_complete:
            # The application answered without reading the whole body; rather than read
            # (and throw away) an upload of unknown size, close the connection.
            keep_alive = False
        self.set_final(_DISCONNECT)
        protocol.response_complete(self, keep_alive and self.keep_alive)

    def _request_timed_out(self) -> None:
        self._request_timer = None
        if self.response.complete or self.gone:
            return
        self.stats.instances.timeouts += 1
        self._answered()
        log.warn("Request {what} timed out after {seconds}s", what=self.describe(),
                 seconds=self.protocol.settings.request_timeout)
        if not self.response.started:
            self.protocol.send_error(self, 503, "Service Unavailable")
        else:
            self.protocol.abort_response(self)

    def _cancel_request_timer(self) -> None:
        timer = self._request_timer
        if timer is not None:
            self._request_timer = None
            if timer.active():
                timer.cancel()


class ContinueExchange(Exchange):
    """A request with ``Expect: 100-continue``: ``100 Continue`` goes out when the application
    first asks for the body (RFC 9110 10.1.1), unless it answered first."""

    __slots__ = ("_continue_pending",)

    notify_receiving = True

    def __init__(self, protocol: HTTPProtocol, request: Request, scope: dict[str, Any]) -> None:
        super().__init__(protocol, request, scope)
        self._continue_pending = True

    def app_receiving(self) -> None:
        if self._continue_pending:
            self._continue_pending = False
            if not self.response.started and not self.gone and not self.body_complete:
                protocol = self.protocol
                protocol.conn.send_continue()
                protocol.flush()


@implementer(IPushProducer)
class HTTPProtocol(Protocol):
    """One HTTP/1.1 connection: requests in order, one application instance per request."""

    #: A TCP, UNIX or TLS transport (Twisted types it as the bare ITransport).
    transport: Any

    def __init__(self, settings: HTTPSettings) -> None:
        self.settings = settings
        self.conn = HTTPConnection(settings.limits)
        #: The exchange being answered; later (pipelined) requests wait in ``pending``.
        self.active: Exchange | None = None
        #: The exchange whose request body is being read.
        self.receiving: Exchange | None = None
        self.pending: deque[Exchange] = deque()
        self.writes_paused = False
        self.drain = Drain()
        self._reading_paused = False
        #: No more requests are served: the connection is closing (or lingering to close).
        self.closing = False
        self._shutting_down = False
        #: Retired (a worker being replaced): the next response says Connection: close.
        self._retiring = False
        self._lost = False
        self._deadline: float | None = None
        self._deadline_kind = _HEAD
        self._timer: Any = None
        #: The listener's counters (set by the factory; detached ones in adapter tests).
        self.stats: HTTPStats = _DETACHED
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int | None] | None = None
        self.scheme = "http"
        self._error: RemoteProtocolError | None = None
        self._upgrade: tuple[Request, dict[str, Any]] | None = None
        self._extensions: dict[str, Any] | None = None
        #: While closing after an error answer: request bytes still to throw away (else None).
        self._lingering: int | None = None
        #: The connection's first bytes are still to come (HTTP/2 may take the connection over).
        self._fresh = settings.http2 is not None

    # -- connection lifecycle ------------------------------------------------------------

    def connectionMade(self) -> None:
        transport = self.transport
        self.client = address_tuple(transport.getPeer())
        self.server = server_tuple(transport.getHost())
        if is_tls(transport):
            self.scheme = "https"
        transport.registerProducer(self, True)
        set_write_high_water(transport, self.settings.write_high_water)
        self._set_deadline(self.settings.header_timeout, _HEAD)
        factory = self.factory
        if factory is not None:
            self.stats = factory.stats
            factory.connection_opened(self)

    def connectionLost(self, reason: Any = None) -> None:
        self._lost = True
        self.closing = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for exchange in (self.active, *self.pending):
            if exchange is not None:
                exchange.client_gone()
        self.pending.clear()
        self.active = self.receiving = None
        self.conn.release()
        self.drain.release()
        factory = self.factory
        if factory is not None:
            factory.connection_closed(self)

    # -- incoming data -------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            lingering = self._lingering
            if lingering is not None:
                # Closing after an error answer: the request's rest is read and thrown away.
                self._lingering = lingering = lingering - len(data)
                if lingering < 0:
                    self.transport.loseConnection()
            return
        if self._fresh:
            self._fresh = False
            if self.settings.http2.take_over(self, data):
                return
        conn = self.conn
        try:
            conn.receive_data(data)
        except RemoteProtocolError as exc:
            self._error = exc
        # Handling a request can feed the parser again (a refused upgrade), hence the loop.
        events = conn.events_received()
        while events:
            for event in events:
                if event.__class__ is Data:
                    receiving = self.receiving
                    if receiving is not None:
                        receiving.feed(event.data)
                        self._deadline_kind = _BODY
                elif event is END_OF_MESSAGE:
                    receiving = self.receiving
                    if receiving is not None:
                        receiving.end_of_body()
                    self._deadline = None
                else:
                    self._on_request(event)  # type: ignore[arg-type]
                if self.closing:
                    return
            events = conn.events_received()
        if self._error is not None:
            self._protocol_error(self._error)
            return
        if self._upgrade is not None:
            self._take_upgrade()
            return
        if self.pending or self.writes_paused:
            self._update_reading()
        if self._deadline is None and self.active is None and not self.pending:
            if conn.in_message:
                self._set_deadline(self.settings.header_timeout, _HEAD)
            else:
                self._set_deadline(self.settings.keep_alive_timeout, _IDLE)
        elif self._deadline_kind is _BODY and self.receiving is not None and not self.receiving.body_complete:
            self._set_deadline(self.settings.body_timeout, _BODY)

    def _on_request(self, request: Request) -> None:
        if self._error is not None:
            return
        if self._retiring:
            request.keep_alive = False
        settings = self.settings
        self._deadline = None
        client, scheme, host = self.client, self.scheme, None
        headers = request.headers
        if settings.proxies is not None:
            client, scheme, host = settings.proxies.resolve(client, scheme, headers)
            if host is not None:
                headers = [(b"host", host) if name == b"host" else (name, value) for name, value in headers]
        websocket = request.upgrade == b"websocket" and settings.websocket is not None
        if websocket:
            scheme = "wss" if scheme in ("https", "wss") else "ws"
        elif scheme in ("ws", "wss"):
            scheme = "https" if scheme == "wss" else "http"
        scope: Any  # an HTTPScope, turned into a WebSocketScope on upgrade
        try:
            scope = http_scope(
                method=request.method,
                http_version=request.http_version,
                scheme=scheme,
                raw_path=request.path,
                query_string=request.query,
                root_path=settings.root_path,
                headers=headers,
                client=client,
                server=self.server,
                state=settings.state,
                extensions=self._scope_extensions(),
            )
        except ValueError:
            self._error = RemoteProtocolError("the request path is not ASCII", hint=400)
            self._close_after_error()
            return
        if websocket:
            # The WebSocket support takes the connection over once the head is complete.
            scope["type"] = "websocket"
            self.receiving = None
            self._upgrade = (request, scope)
            return
        if request.upgrade is not None:
            if request.upgrade == b"h2c" and settings.http2 is not None and settings.http2.upgrades(request):
                # HTTP/2 takes the connection over once the head is complete (RFC 7540 3.2).
                self.receiving = None
                self._upgrade = (request, scope)
                return
            # An upgrade we do not speak: answer as plain HTTP/1.1 (RFC 9110 7.8).
            try:
                self.conn.cancel_upgrade()
            except RemoteProtocolError as exc:
                self._error = exc
        exchange = (ContinueExchange if request.expect_continue else Exchange)(self, request, scope)
        self.receiving = exchange
        if self.active is None and not self.writes_paused:
            self.active = exchange
            exchange.run()
        else:
            self.pending.append(exchange)

    def _close_after_error(self) -> None:
        """Stop handling events; the error is answered once the events are processed."""
        self.receiving = None

    def _take_upgrade(self) -> None:
        request, scope = self._upgrade  # type: ignore[misc]
        self._upgrade = None
        if self.active is not None or self.pending or request.raw_head is None:
            self._protocol_error(RemoteProtocolError("an upgrade cannot follow pipelined requests", hint=400))
            return
        self._deadline = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if request.upgrade == b"h2c":
            self.settings.http2.upgrade(self, request)
        else:
            self.settings.websocket(self, request, scope)

    def _scope_extensions(self) -> dict[str, Any]:
        extensions = self._extensions
        if extensions is None:
            extensions = {"http.response.trailers": {}, "http.response.pathsend": {}, "http.response.early_hint": {}}
            if self.scheme == "https":
                tls = tls_extension(self.transport)
                if tls is not None:
                    extensions["tls"] = tls
            self._extensions = extensions
        return extensions.copy()

    # -- called by the exchanges ---------------------------------------------------------

    def extra_headers(self, has_server: bool, has_date: bool) -> bytes:
        """The ``Server`` and ``Date`` lines the application did not set itself."""
        if has_date:
            return b"" if has_server else self.settings.server_header
        if has_server:
            return _date.get()
        return self.settings.server_header + _date.get()

    def flush(self) -> None:
        """Write what the core has queued."""
        data = self.conn.data_to_send()
        if data and not self._lost:
            write_through(self.transport, data)

    def body_backlog(self, exchange: Exchange, paused: bool) -> None:
        """An exchange's unread body passed its high-water mark (or fell back to half of it)."""
        if exchange is self.receiving:
            self._update_reading()

    def response_complete(self, exchange: Exchange, keep_alive: bool) -> None:
        """A response was fully written: log it, then serve the next request or close."""
        access_log = self.settings.access_log
        if access_log is not None:
            access_log.log(exchange, self.client)
        if exchange is not self.active:
            return
        self.active = None
        if not keep_alive or self._lost:
            if exchange.body_complete:
                self._close()
            else:
                self._close_lingering()  # answered before the request body was read
            return
        if self.pending:
            self._start_next()
        elif self._shutting_down:
            self._close()
            return
        else:
            self._set_deadline(self.settings.keep_alive_timeout, _IDLE)
        if self._reading_paused:
            self._update_reading()

    def _start_next(self) -> None:
        """Answer the next pipelined request, unless the client is not reading our answers."""
        if self.active is None and self.pending and not self.writes_paused:
            exchange = self.active = self.pending.popleft()
            exchange.run()

    def send_error(self, exchange: Exchange, status: int, reason: str) -> None:
        """Answer ``exchange`` with an error page and close (its application failed or timed out)."""
        exchange.status = status
        self.conn.data_to_send()
        if not self._lost:
            write_through(self.transport, error_response(status, reason, extra=self.extra_headers(False, False)))
        exchange.client_gone()
        access_log = self.settings.access_log
        if access_log is not None:
            access_log.log(exchange, self.client)
        self._close_lingering()

    def abort_response(self, exchange: Exchange) -> None:
        """A response cannot be completed: close so the client sees it was cut short."""
        self.flush()
        exchange.client_gone()
        self._close()

    async def wait_for_drain(self) -> None:
        """Wait until the transport's buffer drained below the high-water mark."""
        if self.writes_paused and not self._lost:
            await self.drain.wait()

    # -- IPushProducer: the transport tells us when its write buffer is full -------------

    def pauseProducing(self) -> None:
        self.writes_paused = True
        self._update_reading()

    def resumeProducing(self) -> None:
        self.writes_paused = False
        self.drain.release()
        if self._lost:
            return
        self._start_next()
        self._update_reading()

    def stopProducing(self) -> None:
        self.drain.release()

    # -- the WebSocket hand-off (called by the upgrade hook) -------------------------------

    def hand_over(self, protocol: Any) -> tuple[Any, Any]:
        """Give this connection to ``protocol`` (a WebSocket upgrade); returns ``(transport, factory)``.

        From now on the transport delivers to ``protocol`` (on TLS the TLS wrapper's
        ``wrappedProtocol`` is swapped), its producer registration is free for ``protocol`` to
        take, and ``protocol`` takes this connection's place among the factory's tracked
        connections (it calls ``factory.connection_closed`` when it ends). The caller then calls
        ``protocol.makeConnection(transport)`` and feeds it ``request.raw_head`` and
        ``self.conn.trailing_data``.
        """
        transport = self.transport
        self.closing = True
        self._deadline = None
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        self.conn.release()
        transport.unregisterProducer()
        if self._reading_paused:
            self._reading_paused = False
            transport.resumeProducing()
        if hasattr(transport, "wrappedProtocol"):
            transport.wrappedProtocol = protocol
        else:
            transport.protocol = protocol
        factory = self.factory
        if factory is not None:
            factory.connections.discard(self)
            factory.connections.add(protocol)
        return transport, factory

    def refuse_upgrade(self, status: int, message: str) -> None:
        """Answer an upgrade request with an error response and close (a WebSocket refused)."""
        self._write_error_and_close(status, message)

    # -- reading flow control, timers, closing ---------------------------------------------

    def _reading_allowed(self) -> bool:
        """Whether to read from the client now. Reading pauses while the pipeline of requests is
        full, while the request body being read is not taken by the application (above its
        high-water mark), while the client does not read our answers (the write buffer is full)
        unless a request body is still coming, and during a shutdown; so memory per connection is
        bounded by the limits whatever the client does."""
        if self._shutting_down or len(self.pending) >= self.settings.max_pipelined:
            return False
        receiving = self.receiving
        if receiving is not None and receiving.reading_paused:
            return False
        if self.writes_paused:
            active = self.active
            return active is not None and not active.body_complete and not self.pending
        return True

    def _update_reading(self) -> None:
        if self._lost:
            return
        if self._reading_allowed():
            if self._reading_paused:
                self._reading_paused = False
                self.transport.resumeProducing()
        elif not self._reading_paused:
            self._reading_paused = True
            factory = self.factory
            if factory is not None and not self._shutting_down:  # backpressure, not a shutdown
                factory.stats.read_pauses += 1
            self.transport.pauseProducing()

    def _set_deadline(self, seconds: float, kind: str) -> None:
        """Arm the connection's one timer; it is moved lazily, when it fires."""
        when = self.settings.reactor.seconds() + seconds
        self._deadline = when
        self._deadline_kind = kind
        timer = self._timer
        if timer is None:
            self._timer = self.settings.reactor.callLater(seconds, self._timer_fired)
        elif timer.getTime() > when:
            timer.reset(seconds)

    def _timer_fired(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None or self._lost:
            return
        now = self.settings.reactor.seconds()
        if now < deadline:
            self._timer = self.settings.reactor.callLater(deadline - now, self._timer_fired)
            return
        kind = self._deadline_kind
        if kind is _LINGER:
            self._lingering = None
            self.transport.loseConnection()
        elif kind is _IDLE or (kind is _HEAD and not self.conn.in_message):
            self._close()
        elif kind is _HEAD:
            if self.settings.rejections.allow("request head timeout", LogLevel.info):
                log.info("Closing connection from {client}: no complete request head after {seconds}s",
                         client=self.client, seconds=self.settings.header_timeout)
            self._write_error_and_close(408, "Request Timeout")
        else:
            if self.settings.rejections.allow("request body timeout", LogLevel.info):
                log.info("Closing connection from {client}: request body stalled for {seconds}s",
                         client=self.client, seconds=self.settings.body_timeout)
            if self.active is not None and not self.active.response.started:
                self.send_error(self.active, 408, "Request Timeout")
            else:
                self._close()

    def _protocol_error(self, error: RemoteProtocolError) -> None:
        status = error.hint if isinstance(error.hint, int) else 400
        if self.settings.rejections.allow(f"bad request {status}", LogLevel.debug):
            log.debug("Bad request from {client}: {error}", client=self.client, error=error.message)
        active = self.active
        if active is not None and active.response.started:
            # A response is on the wire: we cannot answer; just stop.
            active.client_gone()
            self._close()
            return
        if active is not None:
            active.client_gone()
        self._write_error_and_close(status, error.message)

    def _write_error_and_close(self, status: int, message: str) -> None:
        if not self._lost:
            write_through(self.transport, error_response(status, message, extra=self.extra_headers(False, False)))
        self._close_lingering()

    def _close_lingering(self) -> None:
        """Close after an answer while the client may still be sending its request: a close with
        unread bytes makes the kernel reset the connection, and the client would never read the
        answer. So: send FIN after the answer, read and throw away what still comes (at most
        ``lingering_size`` bytes, for at most ``lingering_timeout`` seconds, as nginx's lingering
        close does), and close once the client closed its side or either bound is reached."""
        if self.closing:
            return
        self.closing = True
        self._deadline = None
        if self._lost:
            return
        transport = self.transport
        self._lingering = self.settings.lingering_size
        if self._reading_paused:
            self._reading_paused = False
            transport.resumeProducing()
        lose_write = getattr(transport, "loseWriteConnection", None)
        if lose_write is not None:  # TCP: FIN once the answer is out (TLS has no half-close)
            lose_write()
        self._set_deadline(self.settings.lingering_timeout, _LINGER)

    def _close(self) -> None:
        if self.closing:
            return
        self.closing = True
        self._deadline = None
        if not self._lost:
            self.transport.loseConnection()

    # -- graceful shutdown (called by the listener) ----------------------------------------

    def shutdown(self) -> None:
        """Stop taking requests: close now if idle, else after the requests already read."""
        self._shutting_down = True
        if self.active is None and not self.pending:
            self._close()
            return
        self._update_reading()
        last = self.pending[-1] if self.pending else self.active
        if last is not None and not last.response.started:
            # Tell the client with the last response that the connection closes.
            last.request.keep_alive = False

    def retire(self, grace: float) -> None:
        """Stop keeping the connection alive without racing the client's next request (a worker
        replaced by a reload): a busy connection ends after its last response, which says
        ``Connection: close``; an idle one answers its next request with ``Connection: close``,
        or is closed once it stayed idle for ``grace`` seconds."""
        if self.active is not None or self.pending:
            self.shutdown()
            return
        self._retiring = True
        if not self.closing:
            self._set_deadline(grace, _IDLE)

    def abort(self) -> None:
        """Close at once (the drain timeout passed, or a second signal arrived)."""
        if not self._lost:
            self.transport.abortConnection()
