# -*- test-case-name: tests.unit.websocket.test_adapter -*-
"""The application's side of a WebSocket connection: ``receive``, ``send``, and what they cause.

A mixin of :class:`~gateway.protocols.websocket.adapter.WebSocketProtocol` (which holds the
slots): received messages wait in a bounded queue (reading pauses above ``read_high_water``),
``send()`` is checked by the sans-IO :class:`~gateway.protocols.websocket.asgi.WebSocketState`
and waits while the transport's buffer is full; the handshake ends in a 101 (autobahn writes it),
an HTTP error, or the application's own denial response.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.asgi.instance import ClientDisconnected, describe_failure
from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.http.core import HTTPConnection, error_response
from gateway.protocols.websocket import frames
from gateway.protocols.websocket.asgi import (
    CONNECTED,
    CONNECTING,
    RESPONSE,
    Accept,
    Close,
    DenialBody,
    DenialStart,
    Reject,
)

log = Logger(namespace="gateway.websocket")

# autobahn's connection states (WebSocketProtocol.STATE_*).
_OPENING = 1
_OPEN = 3


class _HeaderItems(list):  # type: ignore[type-arg]
    """Response headers in order, duplicates kept; autobahn only calls ``.items()`` on them."""

    def items(self) -> _HeaderItems:
        return self


class ApplicationBridge:
    """``receive``/``send`` of one WebSocket's application instance."""

    # Provided by the protocol (slots, autobahn attributes and methods).
    settings: Any
    core: Any
    scope: Any
    state: int
    transport: Any
    _perMessageCompress: Any
    _http: Any
    _handshake: bool
    _task: Any
    _waiter: Any
    _queue: Any
    _queued: int
    _connect_pending: bool
    _reading_paused: bool
    _writes_paused: bool
    _drain: Any
    _denial: Any
    _lost: bool

    if TYPE_CHECKING:
        def succeedHandshake(self, res: Any) -> None: ...
        def sendCloseFrame(self, code: int | None = None, reasonUtf8: bytes | None = None, isReply: bool = False) -> None: ...
        def dropConnection(self, abort: bool = False) -> None: ...
        def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None: ...
        def arm_closing(self) -> None: ...
        def timer_stop(self) -> None: ...

    # -- the application's receive/send ------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        """ASGI ``receive``: ``websocket.connect``, then messages, then ``websocket.disconnect``."""
        if self._connect_pending:
            self._connect_pending = False
            return {"type": "websocket.connect"}
        queue = self._queue
        if queue:
            message = queue.popleft()
            self._consumed(message)
            return message
        disconnect = self.core.disconnect
        if disconnect is not None:
            return disconnect
        waiter = self._waiter = self.settings.loop.create_future()
        try:
            return await waiter  # type: ignore[no-any-return]
        finally:
            self._waiter = None

    async def send(self, message: Any) -> None:
        """ASGI ``send``: checked by the state machine, then written; waits while the client is slow."""
        action = self.core.app_send(message)
        kind = action.__class__
        if kind is str or kind is bytes:
            if self.state != _OPEN:
                raise ClientDisconnected("the WebSocket is closing")
            if kind is str:
                try:
                    payload = action.encode("utf-8")  # type: ignore[union-attr]
                except UnicodeEncodeError:
                    raise LocalProtocolError("websocket.send 'text' is not encodable as UTF-8") from None
                first = frames.TEXT
            else:
                payload = action  # type: ignore[assignment]
                first = frames.BINARY
            pmce = self._perMessageCompress
            if pmce is not None:
                # RFC 7692 7.2.1: compress, drop the final empty block's 4 bytes, set RSV1.
                pmce.start_compress_message()
                payload = pmce.compress_message_data(payload) + pmce.end_compress_message()
                first |= frames.RSV1
            self.sendData(frames.frame(first, payload))
            self.settings.stats.ws_sent += 1
        else:
            self._act(action)
        if self._writes_paused:
            self.settings.stats.ws_write_pauses += 1
            await self._wait_for_drain()

    def _act(self, action: Any) -> None:
        kind = action.__class__
        if kind is Accept:
            self._accept(action)
        elif kind is Close:
            if self.state == _OPEN:
                reason = action.reason.encode("utf-8") if action.reason else None
                self.sendCloseFrame(action.code, reason)
        elif kind is Reject:
            self._refuse(403, "Forbidden")
        elif kind is DenialStart:
            self._denial_start(action)
        elif kind is DenialBody:
            self._denial_body(action)

    def _accept(self, accept: Accept) -> None:
        if not self._handshake or self.state != _OPENING:
            raise ClientDisconnected("the client left during the handshake")
        self._handshake = False
        headers = _HeaderItems()
        server = self.settings.server_name
        if server and not accept.has_server:
            headers.append(("Server", server))
        headers.extend((name.decode("latin-1"), value.decode("utf-8")) for name, value in accept.headers)
        self.succeedHandshake((accept.subprotocol, headers))  # autobahn writes the 101 (RFC 6455 4.2.2)

    # -- denial responses (the websocket.http.response extension) ----------------------------------

    def _refuse(self, status: int, reason: str) -> None:
        """Answer the handshake with an HTTP error and close (403 for close-before-accept)."""
        self._handshake = False
        if not self._lost:
            self.sendData(error_response(status, reason, extra=self.settings.server_header))
            self.dropConnection(abort=False)

    def _denial_start(self, start: DenialStart) -> None:
        self._handshake = False
        http = self._http
        conn = self._denial = HTTPConnection()
        extra = http.extra_headers(start.fields.has_server, start.fields.has_date) if http is not None else b""
        # The head waits for the first body piece, to leave in one write.
        conn.start_response(_Closing(), start.status, start.fields, extra=extra)  # type: ignore[arg-type]

    def _denial_body(self, body: DenialBody) -> None:
        conn = self._denial
        if conn is None:
            raise ClientDisconnected("the client left during the handshake")
        conn.send_body(body.body)
        if not body.more:
            self._denial = None
            try:
                conn.end_response()
            except LocalProtocolError:
                self.sendData(conn.data_to_send())
                self.dropConnection(abort=True)
                raise
        data = conn.data_to_send()
        if data:
            self.sendData(data)
        if not body.more:
            conn.release()
            self.dropConnection(abort=False)

    # -- plumbing ----------------------------------------------------------------------------------

    def _deliver(self, message: dict[str, Any], size: int) -> None:
        self.settings.stats.ws_received += 1
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self._waiter = None
            waiter.set_result(message)
            return
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        queue.append(message)
        self._queued += size
        if self._queued > self.settings.read_high_water and not self._reading_paused and not self._lost:
            # The application is not keeping up: stop reading this socket (backpressure).
            self._reading_paused = True
            self.settings.stats.ws_read_pauses += 1
            self.transport.pauseProducing()

    def _consumed(self, message: dict[str, Any]) -> None:
        payload = message.get("bytes")
        if payload is None:
            payload = message.get("text") or ""
        self._queued -= len(payload)
        if self._reading_paused and self._queued <= self.settings.read_high_water // 2 and not self._lost:
            self._reading_paused = False
            self.transport.resumeProducing()

    def _disconnected(self, code: int, reason: str) -> None:
        if self.core.peer_closed(code, reason):
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                self._waiter = None
                waiter.set_result(self.core.disconnect)

    def _app_done(self, exc: BaseException | None, result: Any) -> None:
        self._task = None
        problem = describe_failure(exc, result)
        if problem is not None:
            self.settings.stats.ws_instances.errors += 1
            if exc is not None:
                log.failure("Exception in ASGI application for WebSocket {path}",
                            failure=Failure(exc, type(exc), exc.__traceback__), path=self._path())
            else:
                log.error("{problem}", problem=problem)
        if self._lost:
            self.timer_stop()
            return
        state = self.core.state
        if state == CONNECTING:
            if problem is None:
                log.error("ASGI application returned without accepting or closing WebSocket {path}", path=self._path())
            self.core.close_sending()
            self._refuse(500, "Internal Server Error")
        elif state == RESPONSE:
            log.error("ASGI application ended without finishing its denial response to {path}", path=self._path())
            self.dropConnection(abort=True)
        elif state == CONNECTED and self.state == _OPEN:
            # RFC 6455 7.4.1: 1011 for an unexpected condition; a normal return closes normally.
            self.sendCloseFrame(1011 if problem is not None else 1000)

    def _path(self) -> Any:
        return self.scope["path"] if self.scope is not None else None

    # -- flow control: the transport's buffer ----------------------------------------------------

    def pauseProducing(self) -> None:
        self._writes_paused = True

    def resumeProducing(self) -> None:
        self._writes_paused = False
        self._release_drain()

    def stopProducing(self) -> None:
        self._release_drain()

    async def _wait_for_drain(self) -> None:
        if self._lost:
            raise ClientDisconnected("the client disconnected")
        drain = self._drain
        if drain is None:
            drain = self._drain = self.settings.loop.create_future()
        await drain
        if self._lost:
            raise ClientDisconnected("the client disconnected")

    def _release_drain(self) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)


class _Closing:
    """The request as the HTTP core needs it for a denial response: GET, HTTP/1.1, no keep-alive."""

    method = "GET"
    http_version = "1.1"
    keep_alive = False
