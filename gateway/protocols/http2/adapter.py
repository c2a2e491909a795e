# -*- test-case-name: tests.unit.http2.test_adapter -*-
"""The Twisted side of an HTTP/2 connection: transport, timers, flow control, one instance per stream.

An HTTP listener's connection becomes HTTP/2 at its first bytes (TLS that negotiated ``h2`` by
ALPN, or the cleartext preface: prior knowledge) or after an ``Upgrade: h2c`` request; the HTTP/1.1
adapter offers both to :class:`H2Entry` and hands the connection over (``HTTPProtocol.hand_over``).

Every request stream runs as an :class:`H2Exchange`, an
:class:`~gateway.asgi.instance.ApplicationInstance` whose messages the HTTP/1.1
:class:`~gateway.protocols.http.asgi.ResponseState` checks (in its HTTP/2 mode), with the scope of
:func:`~gateway.protocols.http.asgi.http_scope`; an extended CONNECT for ``websocket`` (RFC 8441)
runs as a :class:`H2WebSocket` with the scope and the message rules of the WebSocket package.

Flow control is real in both directions: request body bytes are acknowledged to the client
(WINDOW_UPDATE) only as the application ``receive()`` s them, so a slow application slows its
client down instead of buffering; a response piece larger than the client's window waits in
``send()`` until the client opens it. What the connection writes leaves once per loop pass
(all streams' frames in one write), and at once after reading.
"""

from __future__ import annotations

import asyncio
import os
import time
from bisect import bisect_left
from collections.abc import Awaitable
from dataclasses import dataclass
from email.utils import formatdate
from time import perf_counter
from typing import Any

from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError
from hyperframe.frame import GoAwayFrame
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger, LogLevel
from zope.interface import implementer

from gateway.asgi.app import Message
from gateway.asgi.instance import RETURNED, ApplicationInstance, ClientDisconnected, Ending
from gateway.metrics.stats import HTTPStats
from gateway.protocols.errors import LocalProtocolError, RemoteProtocolError
from gateway.protocols.http.adapter import HTTPSettings
from gateway.protocols.http.asgi import BODY, EARLY_HINT, PATHSEND, START, TRAILERS, ResponseState, http_scope
from gateway.protocols.http.core import Request
from gateway.protocols.http2.asgi import H2Request, read_request, response_headers, status_field
from gateway.protocols.http2.core import H2Core, H2Limits, is_preface
from gateway._compat.tcp import set_write_high_water, write_through
from gateway.protocols.transport import Drain, tls_extension

log = Logger(namespace="gateway.http2")

__all__ = ["H2Entry", "H2Exchange", "H2Protocol", "H2Settings"]

_DISCONNECT: Message = {"type": "http.disconnect"}
_DETACHED = HTTPStats()
_NO_BODY_STATUS = frozenset({204, 304})
_PIECE = 64 * 1024

REFUSED_STREAM = ErrorCodes.REFUSED_STREAM
CANCEL = ErrorCodes.CANCEL
INTERNAL_ERROR = ErrorCodes.INTERNAL_ERROR
NO_ERROR = ErrorCodes.NO_ERROR


@dataclass(eq=False, slots=True)
class H2Settings:
    """Everything one listener's HTTP/2 connections share (the HTTP/1.1 settings they came from)."""

    http: HTTPSettings
    limits: H2Limits
    h2c: bool = True
    idle_timeout: float = 60.0
    ping_interval: float | None = 20.0
    ping_timeout: float = 20.0
    #: WebSocket over HTTP/2 (:class:`gateway.protocols.http2.websocket.H2WebSockets`), or None.
    websocket: Any = None


class _DateField:
    """The ``date`` field, formatted once per second."""

    def __init__(self) -> None:
        self.second = -1
        self.field = (b"date", b"")

    def get(self) -> tuple[bytes, bytes]:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.field = (b"date", formatdate(now, usegmt=True).encode("ascii"))
        return self.field


_date = _DateField()


class H2Exchange(ApplicationInstance):
    """One request stream and its response: the stream's application instance, on its connection.

    The request body is queued as DATA frames arrive (one ``http.request`` event each) and
    acknowledged to the client when the application asks for the next event (so the stream's
    window refills only as fast as the application reads).
    """

    __slots__ = (
        "protocol", "stream_id", "request", "response", "status", "bytes_sent", "body_complete", "stats",
        "received", "acked", "remaining", "head", "out", "out_end", "waiter_window", "closed", "_trailers", "_t0",
        "_request_timer",
    )

    log = log
    notify_receiving = True

    def __init__(self, protocol: H2Protocol, stream_id: int, request: Request, scope: Any) -> None:
        http = protocol.settings.http
        stats = self.stats = protocol.stats
        response = self.response = ResponseState(http2=True)
        super().__init__(http.app, scope, response, http.loop, http.reactor, stats.instances,
                         http.application_close_timeout, None)
        self.protocol: H2Protocol | None = protocol
        self.stream_id = stream_id
        self.request = request
        self.status = 0
        self.bytes_sent = 0
        self.body_complete = False
        #: Request body bytes received, and acknowledged to the client (flow control).
        self.received = 0
        self.acked = 0
        #: Body bytes the response's Content-Length still allows (None: no Content-Length).
        self.remaining: int | None = None
        #: A HEAD request: the response body is not sent.
        self.head = request.method == "HEAD"
        #: A body piece waiting for the client's window, whether it ends the stream, and the
        #: future ``send()`` awaits meanwhile.
        self.out = b""
        self.out_end = False
        self.waiter_window: asyncio.Future[None] | None = None
        #: The stream is closed (reset, or both sides ended).
        self.closed = False
        self._trailers: list[tuple[bytes, bytes]] | None = None
        self._request_timer: Any = None
        stats.requests += 1
        stats.h2_requests += 1
        self._t0 = perf_counter()

    # -- driven by the connection ---------------------------------------------------------

    def run(self) -> None:
        """Start the application instance."""
        self.start()
        timeout = self.protocol.settings.http.request_timeout if self.protocol is not None else None
        if timeout is not None:
            self._request_timer = self.clock.callLater(timeout, self._timed_out)

    def data_received(self, data: bytes) -> None:
        """Body bytes arrived on the stream."""
        protocol = self.protocol
        if protocol is not None and self.received + len(data) > protocol.settings.limits.max_body_size:
            if not self.response.started:
                protocol.send_error(self, 413, "request body too large")
            else:
                protocol.reset_stream(self, CANCEL)
            return
        self.received += len(data)
        self.put({"type": "http.request", "body": data, "more_body": True}, len(data))

    def end_of_body(self) -> None:
        """The client ended its side of the stream."""
        self.body_complete = True
        if self.response.complete:
            return
        last = self.last_queued() if self.queue or self.waiter is not None else None
        if last is not None and last.get("type") == "http.request":
            last["more_body"] = False
        else:
            self.put({"type": "http.request", "body": b"", "more_body": False}, 0)

    def reset(self) -> None:
        """The stream was reset (by the client, or by us) or the connection is gone."""
        self.closed = True
        self._cancel_timer()
        waiter = self.waiter_window
        if waiter is not None:
            self.waiter_window = None
            if not waiter.done():
                waiter.set_result(None)
        self.client_left(_DISCONNECT)

    def wants_data(self) -> bool:
        """Whether body bytes arriving now are for the application (else they are dropped)."""
        return not self.closed and not self.response.complete and self.ended is None

    def finished(self) -> bool:
        """Whether the response is complete."""
        return self.response.complete

    def unacknowledged(self) -> int:
        """Body bytes received and not yet acknowledged (given back when the stream is done)."""
        return self.received - self.acked

    # -- the instance's hooks ----------------------------------------------------------------

    def app_receiving(self) -> None:
        taken = self.received - self.queued
        if taken > self.acked:
            protocol = self.protocol
            if protocol is not None and not self.closed:
                protocol.acknowledge(self.stream_id, taken - self.acked)
            self.acked = taken

    def app_perform(self, action: Any) -> Awaitable[None] | None:
        protocol = self.protocol
        if protocol is None or self.closed:
            raise ClientDisconnected("the stream was closed")
        kind = action[0]
        if kind is BODY:
            _, body, more = action
            remaining = self.remaining
            if remaining is not None:
                if len(body) > remaining:
                    raise LocalProtocolError(f"response body longer than its Content-Length (by {len(body) - remaining} bytes)")
                self.remaining = remaining - len(body)
            if self.head:
                body = b""
            self.bytes_sent += len(body)
            end = not more and not self.response.trailers
            if not more:
                if self.remaining:
                    # Like HTTP/1.1: the client would wait for the rest; the stream is cut short.
                    log.error("Response to {what} ended {n} bytes short of its Content-Length",
                              what=self.describe(), n=self.remaining)
                    self._answered()
                    protocol.reset_stream(self, INTERNAL_ERROR)
                    self.set_final(_DISCONNECT)
                    return None
            waiting = protocol.send_data(self, body, end)
            if end:
                self._finish()
            return waiting
        if kind is START:
            _, status, fields, _ = action
            self.status = status
            block, length, _, has_server, has_date = fields
            if status in _NO_BODY_STATUS or self.head:
                length = None
            self.remaining = length if not self.head else None
            extra = []
            if not has_server:
                server = protocol.server_field
                if server is not None:
                    extra.append(server)
            if not has_date:
                extra.append(_date.get())
            protocol.send_headers(self, response_headers(status, block, extra), False)
            return None
        if kind is TRAILERS:
            if self._trailers is None:
                self._trailers = []
            self._trailers.extend(action[1])
            if not action[2]:
                protocol.send_headers(self, self._trailers, True)
                self._finish()
            return None
        if kind is PATHSEND:
            return self._send_file(action[1])
        if kind is EARLY_HINT:
            protocol.send_headers(self, [status_field(103), *action[1]], False)
            return None
        raise LocalProtocolError(f"unexpected action {kind!r}")

    def app_ended(self, ending: Ending) -> None:
        self._cancel_timer()
        protocol = self.protocol
        if protocol is None:
            return
        if not self.gone and not self.response.complete and not self.closed:
            self._answered()
            if not self.response.started:
                if ending is RETURNED:
                    log.error("ASGI application returned without starting a response to {what}", what=self.describe())
                protocol.send_error(self, 500, "Internal Server Error")
            else:
                if ending is RETURNED:
                    log.error("ASGI application returned without completing the response to {what}", what=self.describe())
                protocol.reset_stream(self, INTERNAL_ERROR)
        protocol.instance_ended(self)

    def describe(self) -> str:
        return f"{self.request.method} {self.scope.get('path')} (HTTP/2 stream {self.stream_id})"

    # -- internals ---------------------------------------------------------------------------

    async def _send_file(self, path: str) -> None:
        """``http.response.pathsend`` over HTTP/2: the file in pieces, each as the window allows."""
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            remaining = size
            while remaining:
                piece = os.read(fd, min(_PIECE, remaining))
                if not piece:
                    raise OSError(f"the file shrank while it was being sent ({size - remaining} of {size} bytes)")
                remaining -= len(piece)
                protocol = self.protocol
                if protocol is None or self.closed or self.gone:
                    raise ClientDisconnected("the stream was closed")
                if not self.head:
                    self.bytes_sent += len(piece)
                    waiting = protocol.send_data(self, piece, not remaining and not self.response.trailers)
                    if waiting is not None:
                        await waiting
            if not size and not self.response.trailers and self.protocol is not None:
                self.protocol.send_data(self, b"", True)
            if self.head and not self.response.trailers and self.protocol is not None:
                self.protocol.send_data(self, b"", True)
        finally:
            os.close(fd)
        if not self.response.trailers:
            self._finish()

    def _answered(self) -> None:
        stats = self.stats
        stats.responses += 1
        elapsed = perf_counter() - self._t0
        histogram = stats.request_latency
        histogram.counts[bisect_left(histogram.bounds, elapsed)] += 1
        histogram.sum += elapsed

    def _finish(self) -> None:
        """The whole response is queued."""
        self._cancel_timer()
        self._answered()
        self.set_final(_DISCONNECT)
        protocol = self.protocol
        if protocol is not None:
            protocol.response_complete(self)

    def _timed_out(self) -> None:
        self._request_timer = None
        protocol = self.protocol
        if self.response.complete or self.gone or protocol is None:
            return
        self.stats.instances.timeouts += 1
        self._answered()
        log.warn("Request {what} timed out after {seconds}s", what=self.describe(),
                 seconds=protocol.settings.http.request_timeout)
        if not self.response.started:
            protocol.send_error(self, 503, "Service Unavailable")
        else:
            protocol.reset_stream(self, CANCEL)

    def _cancel_timer(self) -> None:
        timer = self._request_timer
        if timer is not None:
            self._request_timer = None
            if timer.active():
                timer.cancel()


class H2Entry:
    """How an HTTP listener's connection becomes HTTP/2 (``HTTPSettings.http2``)."""

    def __init__(self, settings: H2Settings) -> None:
        self.settings = settings

    def take_over(self, http: Any, data: bytes) -> bool:
        """Offered a connection's first bytes: take it when TLS negotiated ``h2`` (ALPN) or, on
        cleartext with h2c on, the bytes are the HTTP/2 preface (prior knowledge)."""
        if http.scheme == "https":
            if getattr(http.transport, "negotiatedProtocol", None) != b"h2":
                return False
        elif not (self.settings.h2c and is_preface(data)):
            return False
        protocol = H2Protocol(self.settings, http.client, http.server, http.scheme)
        transport, tracker = http.hand_over(protocol)
        protocol.tracker = tracker
        protocol.makeConnection(transport)
        protocol.dataReceived(data)
        return True

    def upgrades(self, request: Request) -> bool:
        """Whether to switch an ``Upgrade: h2c`` request to HTTP/2 (RFC 7540 3.2): cleartext,
        h2c on, one ``HTTP2-Settings`` field, and no request body (a body would have to be read
        as HTTP/1.1 first; such a request is answered as HTTP/1.1 instead, as 3.2 allows)."""
        if not self.settings.h2c or request.http_version != "1.1":
            return False
        settings = 0
        for name, value in request.headers:
            if name == b"http2-settings":
                settings += 1
            elif name == b"content-length":
                if value.strip() != b"0":
                    return False
            elif name == b"transfer-encoding":
                return False
        return settings == 1

    def upgrade(self, http: Any, request: Request) -> None:
        """Switch the connection (101), then answer ``request`` as stream 1 over HTTP/2."""
        if http.scheme != "http":
            http.refuse_upgrade(400, "h2c is for cleartext connections")
            return
        header = next(value for name, value in request.headers if name == b"http2-settings")
        write_through(http.transport, b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n")
        protocol = H2Protocol(self.settings, http.client, http.server, http.scheme)
        rest = http.conn.trailing_data
        transport, tracker = http.hand_over(protocol)
        protocol.tracker = tracker
        try:
            protocol.upgraded(transport, header, request)
        except RemoteProtocolError:
            return
        if rest:
            protocol.dataReceived(rest)


@implementer(IPushProducer)
class H2Protocol(Protocol):
    """One HTTP/2 connection: its streams, each with its application instance."""

    def __init__(self, settings: H2Settings, client: tuple[str, int] | None, server: tuple[str, int | None] | None,
                 scheme: str) -> None:
        self.settings = settings
        http = settings.http
        self.reactor = http.reactor
        self.loop = http.loop
        self.core: H2Core | None = None
        self.h2: Any = None
        self.client = client
        self.server = server
        self.scheme = scheme
        self.server_field = (b"server", http.server_header[8:-2]) if http.server_header else None
        #: The streams whose application instance runs or whose stream is open.
        self.streams: dict[int, Any] = {}
        #: Application instances still running (they count against max_concurrent_streams).
        self.running = 0
        #: Streams waiting for the client's flow-control window, in order.
        self.blocked: dict[int, Any] = {}
        self.tracker: Any = None
        self.stats: HTTPStats = _DETACHED
        self.writes_paused = False
        self.drain = Drain()
        self.lost = False
        #: A GOAWAY went out: streams above ``last_stream`` are refused; close when none is left.
        self.draining = False
        self.last_stream = (1 << 31) - 1
        self._reading_paused = False
        self._flush_pending = False
        self._closing = False
        self._extensions: dict[str, Any] | None = None
        self._timer: Any = None
        self._due: float | None = None
        self.last_rx = 0.0
        self._ping_sent: float | None = None
        self._starting: list[Any] = []
        self._upgrade: tuple[bytes, Request] | None = None

    # -- connection lifecycle ------------------------------------------------------------

    def upgraded(self, transport: Any, settings_header: bytes, request: Request) -> None:
        """After ``101 Switching Protocols``: the connection begins with stream 1 = ``request``.

        Raises:
            RemoteProtocolError: the ``HTTP2-Settings`` header is malformed (the connection is closed).
        """
        self._upgrade = (settings_header, request)
        self.makeConnection(transport)

    def connectionMade(self) -> None:
        settings_header: bytes | None = None
        request: Request | None = None
        if self._upgrade is not None:
            settings_header, request = self._upgrade
            self._upgrade = None
        transport: Any = self.transport
        transport.registerProducer(self, True)
        set_write_high_water(transport, self.settings.http.write_high_water)
        tracker = self.tracker
        if tracker is not None:
            self.stats = tracker.stats
        self.stats.h2_connections += 1
        now = self.reactor.seconds()
        self.last_rx = now
        try:
            core = self.core = H2Core(self.settings.limits, now, settings_header)
        except (ProtocolError, ValueError) as exc:
            # A malformed HTTP2-Settings header (RFC 7540 3.2.1).
            self.core = None
            self.lost = True
            transport.loseConnection()
            raise RemoteProtocolError(f"bad HTTP2-Settings: {exc}", hint=400) from None
        self.h2 = core.h2
        if request is not None:
            headers = [(n, v) for n, v in request.headers
                       if n not in (b"connection", b"upgrade", b"http2-settings", b"keep-alive", b"transfer-encoding")]
            upgraded = H2Request(request.method, request.target, headers, None, None)
            self._request(1, upgraded)
            stream = self.streams.get(1)
            if stream is not None:
                stream.end_of_body()
            self._start_streams()
        self._flush()
        self._set_due(now + self.settings.idle_timeout)

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = True
        self._closing = True
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        for stream in list(self.streams.values()):
            stream.reset()
        self.blocked.clear()
        self._starting.clear()
        self.drain.release()
        core = self.core
        if core is not None:
            core.release()
        tracker, self.tracker = self.tracker, None
        if tracker is not None:
            tracker.connection_closed(self)

    # -- incoming data -------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        core = self.core
        if self._closing or core is None:
            return
        now = self.reactor.seconds()
        self.last_rx = now
        self._ping_sent = None
        try:
            events = core.receive_data(data, now)
        except RemoteProtocolError as exc:
            self._failed(exc)
            return
        event: Any
        for event in events:
            kind = event.__class__
            if kind is DataReceived:
                self._data(event)
            elif kind is RequestReceived:
                try:
                    request = read_request(event.headers)
                except (ValueError, UnicodeDecodeError):
                    self._refuse(event.stream_id, ErrorCodes.PROTOCOL_ERROR)
                    continue
                self._request(event.stream_id, request)
            elif kind is StreamEnded:
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.end_of_body()
            elif kind is WindowUpdated:
                self._window_opened(event.stream_id)
            elif kind is StreamReset:
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    self._closed(stream)
            elif kind is RemoteSettingsChanged:
                self._window_opened(0)
            elif kind is ConnectionTerminated:
                self._peer_goaway(event.error_code)
                if self._closing:
                    return
        if self._starting:
            self._start_streams()
        self._flush()
        self._update_reading()

    def _request(self, stream_id: int, request: H2Request) -> None:
        settings = self.settings
        http = settings.http
        if self.draining and stream_id > self.last_stream:
            self._refuse(stream_id, REFUSED_STREAM)
            return
        if self.running >= settings.limits.max_concurrent_streams:
            # h2 counts open streams; a stream also counts here while its application runs
            # (after a reset, say): the other half of the MadeYouReset defence.
            self._refuse(stream_id, REFUSED_STREAM)
            try:
                self.core.guard.charge(self.reactor.seconds(), "streams beyond max_concurrent_streams")  # type: ignore[union-attr]
            except RemoteProtocolError as exc:
                self.core.close(exc.hint)  # type: ignore[union-attr]
                self._failed(exc)
            return
        client, scheme, host = self.client, self.scheme, None
        headers = request.headers
        if http.proxies is not None:
            client, scheme, host = http.proxies.resolve(client, scheme, headers)
            if host is not None:
                headers = [(b"host", host) if name == b"host" else (name, value) for name, value in headers]
        if request.method == "CONNECT":
            websocket = settings.websocket
            if request.protocol == b"websocket" and websocket is not None:
                websocket.start(self, stream_id, request, headers, client, scheme)
                return
            self.answer(stream_id, 501 if request.protocol is None else 400, "CONNECT is not supported")
            return
        for name, value in headers:
            if name == b"content-length":
                try:
                    too_large = int(value) > settings.limits.max_body_size
                except ValueError:
                    self.answer(stream_id, 400, "invalid Content-Length")
                    return
                if too_large:
                    self.answer(stream_id, 413, "request body too large")
                    return
        try:
            scope = http_scope(
                method=request.method,
                http_version="2",
                scheme="https" if scheme in ("https", "wss") else "http",
                raw_path=request.path,
                query_string=request.query,
                root_path=http.root_path,
                headers=headers,
                client=client,
                server=self.server,
                state=http.state,
                extensions=self.scope_extensions(),
            )
        except ValueError:
            self.answer(stream_id, 400, "the request path is not ASCII")
            return
        self.add_stream(H2Exchange(self, stream_id, request, scope))

    def add_stream(self, stream: Any) -> None:
        """A stream's application instance is ready: it starts once this read is processed."""
        self.streams[stream.stream_id] = stream
        self.running += 1
        self._starting.append(stream)

    def _start_streams(self) -> None:
        """Start the applications of the streams this read opened, except those it also reset
        (rapid reset costs the client, not the application)."""
        starting, self._starting = self._starting, []
        for exchange in starting:
            if exchange.closed:
                self.running -= 1
                self._forget(exchange)
            else:
                exchange.run()

    def _data(self, event: DataReceived) -> None:
        stream_id = event.stream_id
        data = event.data
        size = event.flow_controlled_length
        stream = self.streams.get(stream_id)
        if stream is None or not stream.wants_data():
            # Nobody will read it: give the window back at once.
            self.acknowledge(stream_id, size)
            return
        if size > len(data):
            self.acknowledge(stream_id, size - len(data))  # padding
        if data:
            stream.data_received(data)

    def _peer_goaway(self, error_code: int) -> None:
        """The client sent GOAWAY: it opens no more streams; finish those open, then close."""
        self.draining = True
        self.last_stream = min(self.last_stream, self.h2.highest_inbound_stream_id)
        if error_code != NO_ERROR:
            self._close()
        elif not self.streams:
            self._close()

    # -- called by the streams -----------------------------------------------------------

    def scope_extensions(self) -> dict[str, Any]:
        """The ASGI extensions of this connection's ``http`` scopes (a copy per scope)."""
        extensions = self._extensions
        if extensions is None:
            extensions = {"http.response.trailers": {}, "http.response.pathsend": {}, "http.response.early_hint": {}}
            if self.scheme == "https":
                tls = tls_extension(self.transport)
                if tls is not None:
                    extensions["tls"] = tls
            self._extensions = extensions
        return extensions.copy()

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The application took ``size`` body bytes of a stream: open the client's windows."""
        if size and not self.lost:
            try:
                self.h2.acknowledge_received_data(size, stream_id)
            except ProtocolError:
                return
            self.schedule_flush()

    def send_headers(self, stream: Any, headers: list[tuple[bytes, bytes]], end: bool) -> None:
        """Queue a HEADERS frame (a response head, an informational response, trailers)."""
        try:
            self.h2.send_headers(stream.stream_id, headers, end_stream=end)
        except ProtocolError as exc:  # the stream was closed meanwhile
            raise ClientDisconnected(f"the stream was closed: {exc}") from None
        self.schedule_flush()

    def send_data(self, stream: Any, data: bytes, end: bool) -> Awaitable[None] | None:
        """Queue body bytes of a stream, as much as the client's windows allow; returns what
        ``send()`` awaits when the rest must wait for a WINDOW_UPDATE (or the transport to drain)."""
        h2 = self.h2
        stream_id = stream.stream_id
        size = len(data)
        try:
            if size <= 16384 and size <= h2.local_flow_control_window(stream_id):
                h2.send_data(stream_id, data, end_stream=end)
            else:
                stream.out = data
                stream.out_end = end
                if not self._push(stream):
                    waiter = stream.waiter_window = self.loop.create_future()
                    self.blocked[stream_id] = stream
                    self.schedule_flush()
                    return waiter
        except ProtocolError as exc:
            raise ClientDisconnected(f"the stream was closed: {exc}") from None
        self.schedule_flush()
        if self.writes_paused:
            self.stats.write_pauses += 1
            return self.drain.wait()
        return None

    def _push(self, stream: Any) -> bool:
        """Send as much of a stream's waiting piece as the windows allow; True when all went."""
        h2 = self.h2
        stream_id = stream.stream_id
        data = stream.out
        frame = h2.max_outbound_frame_size
        while True:
            window = h2.local_flow_control_window(stream_id)
            if window <= 0 and data:
                stream.out = data
                return False
            size = min(window, frame, len(data))
            last = size == len(data)
            h2.send_data(stream_id, data[:size], end_stream=last and stream.out_end)
            if last:
                stream.out = b""
                return True
            data = data[size:]

    def _window_opened(self, stream_id: int) -> None:
        """A WINDOW_UPDATE (or new SETTINGS): send what waited for it."""
        blocked = self.blocked
        if not blocked:
            return
        if stream_id:
            stream = blocked.get(stream_id)
            streams = [stream] if stream is not None else []
        else:
            streams = list(blocked.values())
        for stream in streams:
            try:
                done = self._push(stream)
            except ProtocolError:
                done = True
            if done:
                del blocked[stream.stream_id]
                waiter = stream.waiter_window
                stream.waiter_window = None
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
        self.schedule_flush()

    def response_complete(self, stream: Any) -> None:
        """A stream's whole response is queued: log it; tell a client still sending its body to stop."""
        access_log = self.settings.http.access_log
        if access_log is not None:
            access_log.log(stream, self.client)
        if not stream.body_complete and not stream.closed:
            # RFC 9113 8.1: a complete response may end a request early with RST_STREAM(NO_ERROR).
            self.reset_stream(stream, NO_ERROR)
        elif stream.closed or not stream.running:
            pass
        self._maybe_forget(stream)

    def send_error(self, stream: Any, status: int, reason: str) -> None:
        """Answer a stream with a plain-text error page (its application failed or timed out)."""
        stream.status = status
        body = f"{status} {reason}\n".encode()
        headers = [status_field(status), (b"content-type", b"text/plain; charset=utf-8"),
                   (b"content-length", b"%d" % len(body))]
        if self.server_field is not None:
            headers.append(self.server_field)
        headers.append(_date.get())
        try:
            self.h2.send_headers(stream.stream_id, headers)
            self.h2.send_data(stream.stream_id, body, end_stream=True)
        except ProtocolError:
            pass
        stream.bytes_sent += len(body)
        access_log = self.settings.http.access_log
        if access_log is not None:
            access_log.log(stream, self.client)
        stream.reset()
        self.schedule_flush()
        self._maybe_forget(stream)

    def reset_stream(self, stream: Any, code: int) -> None:
        """Reset a stream (its response cannot be completed) and tell its application."""
        if not stream.closed and not self.lost:
            try:
                self.h2.reset_stream(stream.stream_id, code)
            except ProtocolError:
                pass
            self.schedule_flush()
        self._closed(stream)

    def instance_ended(self, stream: Any) -> None:
        """A stream's application ended."""
        self.running -= 1
        self._maybe_forget(stream)
        if self._reading_paused:
            self._update_reading()

    def stream_closed(self, stream: Any) -> None:
        """Both sides of a stream ended."""
        stream.closed = True
        self.blocked.pop(stream.stream_id, None)
        self._maybe_forget(stream)

    def _closed(self, stream: Any) -> None:
        stream.reset()
        self.blocked.pop(stream.stream_id, None)
        self._maybe_forget(stream)

    def _maybe_forget(self, stream: Any) -> None:
        """Forget a stream once its application has ended (or never started) and the stream is
        closed or answered."""
        if stream.task is None:
            if not stream.closed:
                return
        elif stream.ended is None:
            return
        if stream.closed or stream.finished():
            self._forget(stream)

    def _forget(self, stream: Any) -> None:
        if self.streams.pop(stream.stream_id, None) is None:
            return
        left = stream.unacknowledged()
        if left:
            # Give the connection window back for what nobody will read.
            stream.acked = stream.received
            self.acknowledge(stream.stream_id, left)
        stream.protocol = None
        if not self.streams and not self.lost:
            if self.draining:
                self._close()
            else:
                self._set_due(self.reactor.seconds() + self.settings.idle_timeout)

    def _refuse(self, stream_id: int, code: int) -> None:
        try:
            self.h2.reset_stream(stream_id, code)
        except ProtocolError:
            pass

    def answer(self, stream_id: int, status: int, reason: str) -> None:
        """Answer a request without an application (it was refused before one started)."""
        body = f"{status} {reason}\n".encode()
        headers = [status_field(status), (b"content-type", b"text/plain; charset=utf-8"),
                   (b"content-length", b"%d" % len(body))]
        try:
            self.h2.send_headers(stream_id, headers)
            self.h2.send_data(stream_id, body, end_stream=True)
        except ProtocolError:
            return
        # Whatever body the client still sends is not wanted (RFC 9113 8.1).
        self._refuse(stream_id, NO_ERROR)

    # -- writing ---------------------------------------------------------------------------

    def _transport(self) -> Any:
        return self.transport

    def schedule_flush(self) -> None:
        """Write what is queued on the next loop pass (every stream's frames in one write)."""
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        core = self.core
        if core is None or self.lost:
            return
        data = core.data_to_send()
        if data:
            write_through(self.transport, data)

    # -- IPushProducer ---------------------------------------------------------------------

    def pauseProducing(self) -> None:
        self.writes_paused = True
        self._update_reading()

    def resumeProducing(self) -> None:
        self.writes_paused = False
        self.drain.release()
        if not self.lost:
            self._update_reading()

    def stopProducing(self) -> None:
        self.drain.release()

    def _update_reading(self) -> None:
        """Stop reading while the client does not read what we write, unless a request body is
        still arriving for a running application (it may be what the client is busy sending)."""
        if self.lost:
            return
        pause = self.writes_paused and not any(
            not stream.body_complete and stream.running for stream in self.streams.values()
        )
        if pause != self._reading_paused:
            self._reading_paused = pause
            if pause:
                self.stats.read_pauses += 1
                self._transport().pauseProducing()
            else:
                self._transport().resumeProducing()

    # -- timers ----------------------------------------------------------------------------

    def _set_due(self, when: float) -> None:
        """Arm the connection's one timer; it is moved lazily, when it fires."""
        self._due = when
        timer = self._timer
        delay = max(0.0, when - self.reactor.seconds())
        if timer is None:
            self._timer = self.reactor.callLater(delay, self._timer_fired)
        elif timer.getTime() > when:
            timer.reset(delay)

    def _timer_fired(self) -> None:
        self._timer = None
        if self.lost or self._closing:
            return
        now = self.reactor.seconds()
        settings = self.settings
        if not self.streams:
            due = self._due if self._due is not None else now
            if now < due:
                self._set_due(due)
                return
            # Idle: say goodbye (GOAWAY, no error) and close.
            self._goaway(NO_ERROR)
            self._close()
            return
        interval = settings.ping_interval
        if interval is None:
            return
        ping_sent = self._ping_sent
        if ping_sent is not None:
            if now >= ping_sent + settings.ping_timeout:
                if settings.http.rejections.allow("HTTP/2 ping timeout", LogLevel.info):
                    log.info("Closing HTTP/2 connection from {client}: no answer to a PING for {seconds}s",
                             client=self.client, seconds=settings.ping_timeout)
                self.abort()
                return
            self._set_due(ping_sent + settings.ping_timeout)
            return
        due = self.last_rx + interval
        if now < due:
            self._set_due(due)
            return
        self._ping_sent = now
        try:
            self.h2.ping(b"gateway\x00")
        except ProtocolError:
            return
        self._flush()
        self._set_due(now + settings.ping_timeout)

    # -- closing ---------------------------------------------------------------------------

    def _goaway(self, code: int) -> None:
        """Queue a GOAWAY naming the last stream the client opened, without closing h2's state
        (streams in flight go on; later ones are refused)."""
        core = self.core
        if core is None:
            return
        self.draining = True
        self.last_stream = min(self.last_stream, self.h2.highest_inbound_stream_id)
        frame = GoAwayFrame(0, last_stream_id=self.last_stream, error_code=code)
        core.queue(frame.serialize())

    def _failed(self, error: RemoteProtocolError) -> None:
        """The client broke the protocol or a limit: the GOAWAY is queued; write it and close."""
        rejections = self.settings.http.rejections
        reason = "HTTP/2 limit" if error.hint == ErrorCodes.ENHANCE_YOUR_CALM else "HTTP/2 protocol error"
        self.stats.h2_goaways += 1
        if rejections.allow(reason, LogLevel.info):
            log.info("Closing HTTP/2 connection from {client}: {error}", client=self.client, error=error.message)
        self._flush()
        for stream in list(self.streams.values()):
            stream.reset()
        self._close()

    def _close(self) -> None:
        if self._closing:
            return
        self._flush()
        self._closing = True
        if not self.lost:
            self._transport().loseConnection()

    def shutdown(self) -> None:
        """Drain: GOAWAY with the last stream id; streams in flight finish, then the connection closes."""
        if self._closing:
            return
        self._goaway(NO_ERROR)
        self._flush()
        if not self.streams:
            self._close()

    def abort(self) -> None:
        """Close at once."""
        for stream in list(self.streams.values()):
            stream.reset()
        if not self.lost:
            self._closing = True
            self._transport().abortConnection()
