# -*- test-case-name: tests.unit.http.test_adapter -*-
"""One request/response cycle: the application's ``receive`` and ``send``.

The request body streams in as it arrives (bounded: reading pauses above the high-water mark);
``send()`` writes through the sans-IO core and waits while a slow client's buffer is full.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger, LogLevel

from gateway.asgi.instance import ClientDisconnected, describe_failure, start_instance
from gateway.metrics.stats import HTTPStats
from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.http.asgi import ResponseState
from gateway.protocols.http.core import Request, error_response

if TYPE_CHECKING:
    from gateway.protocols.http.adapter import HTTPProtocol

log = Logger(namespace="gateway.http")

_DISCONNECT = {"type": "http.disconnect"}
#: Counters of protocols without a factory (adapter tests).
_DETACHED = HTTPStats()


class HTTPCycle:
    """The ASGI side of one request on an :class:`~gateway.protocols.http.adapter.HTTPProtocol`."""

    __slots__ = (
        "protocol", "request", "scope", "response", "body", "body_size", "body_complete", "body_delivered",
        "disconnected", "waiter", "task", "status", "bytes_sent", "keep_alive", "_close_timer", "_request_timer",
        "_continue_pending", "_head_pending", "_trailer_headers", "stats", "_t0",
    )

    def __init__(self, protocol: HTTPProtocol, request: Request, scope: dict[str, Any]) -> None:
        self.protocol = protocol
        self.request = request
        self.scope = scope
        self.response = ResponseState()
        self.body: list[bytes] = []
        self.body_size = 0
        self.body_complete = False
        self.body_delivered = False
        self.disconnected = False
        self.waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[Any] | None = None
        self.status = 0
        self.bytes_sent = 0
        self.keep_alive = request.keep_alive
        self._close_timer: Any = None
        self._request_timer: Any = None
        self._continue_pending = request.expect_continue
        self._head_pending = False
        self._trailer_headers: list[tuple[bytes, bytes]] = []
        factory = protocol.factory
        stats = self.stats = factory.stats if factory is not None else _DETACHED
        stats.requests += 1
        self._t0 = perf_counter()

    # -- driven by the adapter -----------------------------------------------------------

    def run(self) -> None:
        """Start the application instance for this request."""
        protocol = self.protocol
        settings = protocol.settings
        self.task = start_instance(settings.loop, settings.app, self.scope, self.receive, self.send, self._app_done)
        if settings.request_timeout is not None and not self.response.complete:
            self._request_timer = settings.reactor.callLater(settings.request_timeout, self._request_timed_out)

    def feed(self, data: bytes) -> None:
        """Body bytes arrived from the client."""
        if self.response.complete:
            return
        self.body.append(data)
        self.body_size += len(data)
        self._wake()

    def end_of_body(self) -> None:
        """The request body is complete."""
        self.body_complete = True
        self._wake()

    def client_gone(self) -> None:
        """The connection closed: wake the application and cancel it if it lingers."""
        if self.disconnected:
            return
        self.disconnected = True
        self._wake()
        self._cancel_request_timer()
        task = self.task
        if task is not None and not task.done():
            timeout = self.protocol.settings.application_close_timeout
            self._close_timer = self.protocol.settings.reactor.callLater(timeout, self._kill)

    # -- the application's receive/send --------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        """ASGI ``receive``: body pieces as they arrive, then ``http.disconnect``."""
        if self._continue_pending:
            self._continue_pending = False
            if not self.response.started and not self.disconnected and not self.body_complete:
                self.protocol.conn.send_continue()
                self.protocol.flush()
        while True:
            if self.disconnected:
                return _DISCONNECT
            if self.body:
                body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
                self.body = []
                self.body_size = 0
                self.protocol.body_consumed(self)
                more = not self.body_complete
                if not more:
                    self.body_delivered = True
                return {"type": "http.request", "body": body, "more_body": more}
            if self.body_complete and not self.body_delivered:
                self.body_delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if self.response.complete:
                return _DISCONNECT
            waiter = self.waiter = self.protocol.settings.loop.create_future()
            try:
                await waiter
            finally:
                self.waiter = None

    async def send(self, message: dict[str, Any]) -> None:
        """ASGI ``send``: response messages, checked for order and content."""
        if self.disconnected:
            raise ClientDisconnected("the client disconnected")
        kind = message.get("type")
        conn = self.protocol.conn
        response = self.response
        if kind == "http.response.body":
            body, more = response.body(message)
            if not conn.suppresses_body:
                self.bytes_sent += len(body)
            conn.send_body(body)
            if not more and not response.trailers:
                self._finish()
                return
            self._head_pending = False
            self.protocol.flush()
        elif kind == "http.response.start":
            start = response.start(message)
            self.status = start.status
            extra = self.protocol.extra_headers(start.has_server, start.has_date)
            if not conn.start_response(self.request, start.status, start.headers, extra=extra):
                self.keep_alive = False
            # Hold the head back for a moment, so that it leaves with the first body piece
            # in one write; flush it on the next loop pass if no body comes (streaming).
            self._head_pending = True
            self.protocol.settings.loop.call_soon(self._flush_head)
            return
        elif kind == "http.response.trailers":
            headers, more = response.trailer_fields(message)
            self._trailer_headers.extend(headers)
            if not more:
                self._finish()
            return
        elif kind == "http.response.pathsend":
            path = response.pathsend(message)
            self._head_pending = False
            await self.protocol.send_file(self, path)
            if not response.trailers:
                self._finish()
            return
        else:
            raise response.unexpected(kind)
        if self.protocol.writes_paused:
            self.stats.write_pauses += 1
            await self.protocol.wait_for_drain()
            if self.disconnected:
                raise ClientDisconnected("the client disconnected")

    # -- internals -----------------------------------------------------------------------

    def _flush_head(self) -> None:
        if self._head_pending:
            self._head_pending = False
            if not self.disconnected:
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
        try:
            keep_alive = self.protocol.conn.end_response(self._trailer_headers)
        except LocalProtocolError as exc:
            log.error("Response to {request} ended early: {error}", request=self.request, error=exc.message)
            self.protocol.flush()
            self._wake()
            self.protocol.response_complete(self, False)
            return
        self.protocol.flush()
        if not self.body_complete:
            # The application answered without reading the whole body; rather than read
            # (and throw away) an upload of unknown size, close the connection.
            keep_alive = False
        self._wake()
        self.protocol.response_complete(self, keep_alive and self.keep_alive)

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _app_done(self, exc: BaseException | None, result: Any) -> None:
        self.task = None
        if self._close_timer is not None:
            if self._close_timer.active():
                self._close_timer.cancel()
            self._close_timer = None
        problem = describe_failure(exc, result)
        if problem is not None:
            if isinstance(exc, ClientDisconnected) and self.disconnected:
                # The application let our own "the client left" error propagate: routine.
                log.debug("Client left during {method} {path}", method=self.request.method, path=self.scope.get("path"))
            elif exc is not None:
                self.stats.app_errors += 1
                log.failure(
                    "Exception in ASGI application for {method} {path}",
                    failure=_failure(exc), method=self.request.method, path=self.scope.get("path"),
                    level=LogLevel.error,
                )
            else:
                log.error("{problem}", problem=problem)
        if self.disconnected or self.response.complete:
            return
        self._answered()
        if not self.response.started:
            if problem is None:
                log.error("ASGI application returned without starting a response to {method} {path}",
                          method=self.request.method, path=self.scope.get("path"))
            self.protocol.send_error(self, 500, "Internal Server Error")
        else:
            if problem is None:
                log.error("ASGI application returned without completing the response to {method} {path}",
                          method=self.request.method, path=self.scope.get("path"))
            self.protocol.abort_response(self)

    def _kill(self) -> None:
        self._close_timer = None
        task = self.task
        if task is not None and not task.done():
            self.stats.app_timeouts += 1
            log.warn("Application for {method} {path} was still running {seconds}s after the client left; cancelled",
                     method=self.request.method, path=self.scope.get("path"),
                     seconds=self.protocol.settings.application_close_timeout)
            task.cancel()

    def _request_timed_out(self) -> None:
        self._request_timer = None
        if self.response.complete or self.disconnected:
            return
        self.stats.app_timeouts += 1
        self._answered()
        log.warn("Request {method} {path} timed out after {seconds}s",
                 method=self.request.method, path=self.scope.get("path"),
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


def _failure(exc: BaseException) -> Any:
    from twisted.python.failure import Failure

    return Failure(exc, type(exc), exc.__traceback__)


def plain_error(status: int, text: str, extra: bytes = b"") -> bytes:
    """An error response for the adapter to write directly."""
    return error_response(status, text, extra=extra)


ErrorWriter = Callable[[int, str], None]
