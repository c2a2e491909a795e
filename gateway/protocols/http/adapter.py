# -*- test-case-name: tests.unit.http.test_adapter -*-
"""The Twisted side of an HTTP/1.1 connection: transport, timers, flow control.

The only code that touches the transport. Parsing and framing live in
:mod:`gateway.protocols.http.core`, the ASGI message rules in :mod:`gateway.protocols.http.asgi`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger, LogLevel
from zope.interface import implementer

from gateway._compat.tcp import set_write_high_water, write_through
from gateway.asgi.app import ASGIApp
from gateway.logs import RejectionLog
from gateway.protocols.errors import RemoteProtocolError
from gateway.protocols.http import files
from gateway.protocols.http.accesslog import AccessLog
from gateway.protocols.http.asgi import http_scope
from gateway.protocols.http.core import END_OF_MESSAGE, Data, HTTPConnection, HTTPLimits, Request, error_response
from gateway.protocols.http.cycle import HTTPCycle
from gateway.protocols.http.proxy import TrustedProxies
from gateway.protocols.transport import address_tuple, is_tls, server_tuple, tls_extension

log = Logger(namespace="gateway.http")

# Timer kinds.
_IDLE = "keep-alive"
_HEAD = "header"
_BODY = "body"


@dataclass(eq=False)
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


@implementer(IPushProducer)
class HTTPProtocol(Protocol):
    """One HTTP/1.1 connection: requests in order, one application instance per request."""

    def __init__(self, settings: HTTPSettings) -> None:
        self.settings = settings
        self.conn = HTTPConnection(settings.limits)
        self.cycle: HTTPCycle | None = None
        self.receiving: HTTPCycle | None = None
        self.pending: deque[HTTPCycle] = deque()
        self.writes_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._reading_paused = False
        self._closing = False
        self._shutting_down = False
        self._lost = False
        self._deadline: float | None = None
        self._deadline_kind = _HEAD
        self._timer: Any = None
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int | None] | None = None
        self.scheme = "http"
        self._error: RemoteProtocolError | None = None
        self._upgrade: tuple[Request, dict[str, Any]] | None = None
        self._extensions: dict[str, Any] | None = None

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
            factory.connection_opened(self)

    def connectionLost(self, reason: Any = None) -> None:
        self._lost = True
        self._closing = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for cycle in (self.cycle, *self.pending):
            if cycle is not None:
                cycle.client_gone()
        self.pending.clear()
        self.cycle = self.receiving = None
        self.conn.release()
        self._release_drain_waiters()
        factory = self.factory
        if factory is not None:
            factory.connection_closed(self)

    # -- incoming data -------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
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
                        receiving.feed(event.data)  # type: ignore[union-attr]
                        if receiving.body_size > self.settings.read_high_water:
                            self._pause_reading()
                        self._deadline_kind = _BODY
                elif event is END_OF_MESSAGE:
                    receiving = self.receiving
                    if receiving is not None:
                        receiving.end_of_body()
                    self._deadline = None
                else:
                    self._on_request(event)  # type: ignore[arg-type]
                if self._closing:
                    return
            events = conn.events_received()
        if self._error is not None:
            self._protocol_error(self._error)
            return
        if self._upgrade is not None:
            self._take_upgrade()
        elif self._deadline is None and self.cycle is None and not self.pending:
            if conn._in_message:
                self._set_deadline(self.settings.header_timeout, _HEAD)
            else:
                self._set_deadline(self.settings.keep_alive_timeout, _IDLE)
        elif self._deadline_kind is _BODY and self.receiving is not None and not self.receiving.body_complete:
            self._set_deadline(self.settings.body_timeout, _BODY)

    def _on_request(self, request: Request) -> None:
        if self._error is not None:
            return
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
            # An upgrade we do not speak (h2c, say): answer as plain HTTP/1.1 (RFC 9110 7.8).
            try:
                self.conn.cancel_upgrade()
            except RemoteProtocolError as exc:
                self._error = exc
        cycle = HTTPCycle(self, request, scope)
        self.receiving = cycle
        if self.cycle is None:
            self.cycle = cycle
            cycle.run()
        else:
            self.pending.append(cycle)
            if len(self.pending) >= settings.max_pipelined:
                self._pause_reading()

    def _close_after_error(self) -> None:
        """Stop handling events; the error is answered once the events are processed."""
        self.receiving = None

    def _take_upgrade(self) -> None:
        request, scope = self._upgrade  # type: ignore[misc]
        self._upgrade = None
        if self.cycle is not None or self.pending or request.raw_head is None:
            self._protocol_error(RemoteProtocolError("a WebSocket upgrade cannot follow pipelined requests", hint=400))
            return
        self._deadline = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.settings.websocket(self, request, scope)

    def _scope_extensions(self) -> dict[str, Any]:
        extensions = self._extensions
        if extensions is None:
            extensions = {"http.response.trailers": {}, "http.response.pathsend": {}}
            if self.scheme == "https":
                tls = tls_extension(self.transport)
                if tls is not None:
                    extensions["tls"] = tls
            self._extensions = extensions
        return extensions.copy()

    # -- called by the cycle -------------------------------------------------------------

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

    def body_consumed(self, cycle: HTTPCycle) -> None:
        """The application took the buffered body: resume reading if it was paused for it."""
        if self._reading_paused and len(self.pending) < self.settings.max_pipelined:
            self._resume_reading()

    def response_complete(self, cycle: HTTPCycle, keep_alive: bool) -> None:
        """A response was fully written: log it, then serve the next request or close."""
        access_log = self.settings.access_log
        if access_log is not None:
            access_log.log(cycle, self.client)
        if cycle is not self.cycle:
            return
        self.cycle = None
        if not keep_alive or self._lost:
            self._close()
            return
        if self.pending:
            cycle = self.pending.popleft()
            self.cycle = cycle
            if self._reading_paused and len(self.pending) < self.settings.max_pipelined:
                self._resume_reading()
            cycle.run()
            return
        if self._shutting_down:
            self._close()
            return
        if self._reading_paused:
            self._resume_reading()
        self._set_deadline(self.settings.keep_alive_timeout, _IDLE)

    def send_error(self, cycle: HTTPCycle, status: int, reason: str) -> None:
        """Answer ``cycle`` with an error page and close (its application failed or timed out)."""
        cycle.status = status
        self.conn.data_to_send()
        if not self._lost:
            write_through(self.transport, error_response(status, reason, extra=self.extra_headers(False, False)))
        cycle.client_gone()
        access_log = self.settings.access_log
        if access_log is not None:
            access_log.log(cycle, self.client)
        self._close()

    def abort_response(self, cycle: HTTPCycle) -> None:
        """A response cannot be completed: close so the client sees it was cut short."""
        self.flush()
        cycle.client_gone()
        self._close()

    async def send_file(self, cycle: HTTPCycle, path: str) -> None:
        """Send a file as (the rest of) the body, without reading it into Python memory."""
        await files.send_file(self, cycle, path)

    async def wait_for_drain(self) -> None:
        """Wait until the transport's buffer drained below the high-water mark."""
        if not self.writes_paused or self._lost:
            return
        waiter = self.settings.loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    # -- IPushProducer: the transport tells us when its write buffer is full -------------

    def pauseProducing(self) -> None:
        self.writes_paused = True

    def resumeProducing(self) -> None:
        self.writes_paused = False
        self._release_drain_waiters()

    def stopProducing(self) -> None:
        self._release_drain_waiters()

    def _release_drain_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

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
        self._closing = True
        self._deadline = None
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

    def _pause_reading(self) -> None:
        if not self._reading_paused and not self._lost:
            self._reading_paused = True
            factory = self.factory
            if factory is not None and not self._shutting_down:  # backpressure, not a shutdown
                factory.stats.read_pauses += 1
            self.transport.pauseProducing()

    def _resume_reading(self) -> None:
        if self._reading_paused and not self._lost:
            self._reading_paused = False
            self.transport.resumeProducing()

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
        if kind is _IDLE or (kind is _HEAD and not self.conn._in_message):
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
            if self.cycle is not None and not self.cycle.response.started:
                self.send_error(self.cycle, 408, "Request Timeout")
            else:
                self._close()

    def _protocol_error(self, error: RemoteProtocolError) -> None:
        status = error.hint if isinstance(error.hint, int) else 400
        if self.settings.rejections.allow(f"bad request {status}", LogLevel.debug):
            log.debug("Bad request from {client}: {error}", client=self.client, error=error.message)
        if self.cycle is not None and self.cycle.response.started:
            # A response is on the wire: we cannot answer; just stop.
            self.cycle.client_gone()
            self._close()
            return
        if self.cycle is not None:
            self.cycle.client_gone()
        self._write_error_and_close(status, error.message)

    def _write_error_and_close(self, status: int, message: str) -> None:
        if not self._lost:
            write_through(self.transport, error_response(status, message, extra=self.extra_headers(False, False)))
        self._close()

    def _close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._deadline = None
        if not self._lost:
            self.transport.loseConnection()

    # -- graceful shutdown (called by the listener) ----------------------------------------

    def shutdown(self) -> None:
        """Stop taking requests: close now if idle, else after the requests already read."""
        self._shutting_down = True
        if self.cycle is None and not self.pending:
            self._close()
            return
        self._pause_reading()
        last = self.pending[-1] if self.pending else self.cycle
        if last is not None and not last.response.started:
            # Tell the client with the last response that the connection closes.
            last.request.keep_alive = False

    def abort(self) -> None:
        """Close at once (the drain timeout passed, or a second signal arrived)."""
        if not self._lost:
            self.transport.abortConnection()
