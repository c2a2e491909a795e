# -*- test-case-name: tests.unit.websocket.test_adapter -*-
"""One WebSocket connection: autobahn's server protocol wired to an ASGI application.

The HTTP listener parses the upgrade request and hands the connection over (see
:mod:`gateway.protocols.websocket.listener`): autobahn gets the transport and the request head
exactly as received, validates the handshake (RFC 6455 4.2.1) and frames the connection; the
scope comes from our own parse. The application's messages are checked by the sans-IO
:class:`~gateway.protocols.websocket.asgi.WebSocketState`.

Hot paths are kept out of autobahn where it is slow: whole, masked, unfragmented and uncompressed
frames are parsed here (:mod:`~gateway.protocols.websocket.frames`), sent frames are built here
and written through (:func:`~gateway.protocols.transport.write_through`), a well-formed close frame
is answered here; autobahn validates the handshake and handles fragmentation, compression, limits,
bad frames and the closing handshakes we start.
The application's side (``receive``/``send``) is :mod:`~gateway.protocols.websocket.bridge`,
the connection's timer :mod:`~gateway.protocols.websocket.timers`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.utf8validator import Utf8Validator
from twisted.internet import tcp
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer  # type: ignore[import-untyped]

from gateway.asgi.instance import start_instance
from gateway.protocols.http.core import HTTPConnection, error_response
from gateway.protocols.transport import set_write_high_water, write_through
from gateway.protocols.websocket import frames
from gateway.protocols.websocket.asgi import (
    CONNECTING,
    WebSocketState,
)
from gateway.protocols.websocket.bridge import ApplicationBridge
from gateway.protocols.websocket.timers import TimerMixin

_DIRECT = (tcp.Server,)

# autobahn's connection states (WebSocketProtocol.STATE_*).
_CLOSED = 0
_OPENING = 1
_CLOSING = 2
_OPEN = 3


#: Close codes a client may send (RFC 6455 7.4; autobahn's CLOSE_STATUS_CODES_ALLOWED) besides 3000-4999.
_RECEIVABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013})

_HANDSHAKE_LEFTOVERS = dict.fromkeys((
    "http_headers", "http_request_data", "http_status_line", "http_request_uri", "http_request_path",
    "http_request_params", "http_request_host", "http_response_data", "websocket_extensions",
    "websocket_protocols", "websocket_origin", "_wskey",
))


@implementer(IPushProducer)
class WebSocketProtocol(TimerMixin, ApplicationBridge, WebSocketServerProtocol):  # type: ignore[misc]  # autobahn's own bases disagree
    """One WebSocket; a per-listener subclass carries autobahn's options as class attributes.

    Built by the upgrade hook with the listener's settings (class attribute ``settings``), the
    scope and the HTTP protocol it replaces; then ``makeConnection`` and the request head.
    """

    settings: Any  # WebSocketSettings, set on the per-listener subclass
    _fast_max: int = 0  # largest frame payload the fast path takes (the configured limits)

    __slots__ = (  # noqa: RUF023 (grouped by purpose)
        "core", "scope", "_http", "_handshake", "_task", "_waiter", "_queue", "_queued",
        "_connect_pending", "_reading_paused", "_writes_paused", "_drain", "_denial", "_tracker", "_lost",
        "_timer", "_due", "_phase", "_t0", "last_rx", "_ping_sent", "_utf8",
        # Attributes of Twisted's Protocol and autobahn's hottest state, here rather than in the
        # instance dict: the dict stays below the size where CPython doubles it.
        "transport", "connected", "state", "data", "current_frame", "inside_message",
    )

    def __init__(self, scope: dict[str, Any], http: Any) -> None:
        # autobahn's own __init__ only creates what AUTOBAHN_DEFAULTS provides (frames.py).
        self.transport: Any = None
        self.connected = 0
        self.state = _OPENING
        self.data = b""
        self.current_frame = None  # type: ignore[assignment]  # autobahn resets it to None itself
        self.inside_message = False
        self.core = WebSocketState(scope["subprotocols"])
        self.scope: dict[str, Any] | None = scope
        self._http = http
        self._handshake = False  # the application's answer is awaited
        self._task: asyncio.Task[Any] | None = None
        self._waiter: asyncio.Future[Any] | None = None
        self._queue: deque[dict[str, Any]] | None = None
        self._queued = 0
        self._connect_pending = True
        self._reading_paused = False
        self._writes_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._denial: HTTPConnection | None = None
        self._tracker: Any = None
        self._lost = False
        self._utf8: Utf8Validator | None = None
        self.timer_init()

    @property
    def utf8validator(self) -> Utf8Validator:  # type: ignore[override]  # lazy instead of per connection
        """autobahn's incremental UTF-8 validator, created for the first text message it parses."""
        validator = self._utf8
        if validator is None:
            validator = self._utf8 = Utf8Validator()
        return validator

    # -- Twisted entry points ---------------------------------------------------------------

    def connectionMade(self) -> None:
        # Replaces autobahn's connectionMade/_connectionMade, which allocate ~7 KB of per-connection
        # state (see frames.AUTOBAHN_DEFAULTS); the options are class attributes instead.
        transport = self.transport
        try:
            transport.setTcpNoDelay(True)
        except (AttributeError, OSError):  # UNIX sockets have no Nagle algorithm to turn off
            pass
        transport.registerProducer(self, True)
        settings = self.settings
        settings.open_count += 1
        settings.stats.ws_connections += 1
        set_write_high_water(transport, settings.write_high_water)
        self.arm_handshake()

    def dataReceived(self, data: bytes) -> None:
        self.last_rx = self.clock()
        # Fast path (RFC 6455 5.2): whole, masked, unfragmented, uncompressed text/binary frames
        # and whole control frames, on an open connection with nothing buffered. Anything else
        # (fragments, compression, partial or invalid frames) is autobahn's frame parser.
        if self.state != _OPEN or self.data or self.current_frame is not None or self.inside_message \
                or self._perMessageCompress is not None:
            self.data += data
            self.consumeData()
            return
        pos = 0
        end = len(data)
        limit = self._fast_max
        while end - pos >= 6:
            first = data[pos]
            length = data[pos + 1] ^ 0x80  # the MASK bit must be set (5.1); otherwise >= 128
            if first == 0x81 or first == 0x82:
                if length < 126:
                    start = pos + 6
                elif length == 126 and end - pos >= 8:
                    length = (data[pos + 2] << 8) | data[pos + 3]
                    if length < 126:  # not the minimal encoding (5.2): autobahn fails it with 1002
                        break
                    start = pos + 8
                else:
                    break
                stop = start + length
                if stop > end or length > limit:
                    break
                payload = frames.unmask(data[start:stop], data[start - 4:start])
                pos = stop
                if first == 0x81:
                    try:
                        text = payload.decode("utf-8")
                    except UnicodeDecodeError:
                        # RFC 6455 8.1: invalid UTF-8 in a text message fails the connection (1007).
                        # (autobahn private API: its failure routine, which keeps its bookkeeping.)
                        self._fail_connection(1007, "invalid UTF-8 in a text message")
                        return
                    self._deliver({"type": "websocket.receive", "text": text}, length)
                else:
                    self._deliver({"type": "websocket.receive", "bytes": payload}, length)
            elif 0x88 <= first <= 0x8A and length < 126 and not (first == 0x88 and length == 1):
                # A whole control frame (5.5: FIN set, at most 125 bytes; a close body is empty or
                # holds a code): parsed here, handled by autobahn's close logic or onPing/onPong.
                stop = pos + 6 + length
                if stop > end:
                    break
                payload = frames.unmask(data[pos + 6:stop], data[pos + 2:pos + 6]) if length else b""
                pos = stop
                if first == 0x88:
                    if not self._close_received(payload):
                        # Anything unusual (a reserved code, a reason that is not UTF-8) is
                        # autobahn's to judge (1002, 1007).
                        self.onCloseFrame(int.from_bytes(payload[:2], "big") if length else None, payload[2:] or None)
                elif first == 0x89:
                    self.onPing(payload)
                else:
                    self.onPong(payload)
            else:
                break
            if self.state != _OPEN:
                return
        if pos < end:
            self.data = data[pos:] if pos else data
            self.consumeData()

    def _close_received(self, payload: bytes) -> bool:
        """The client's well-formed close frame: echo it and close (what autobahn's onCloseFrame does
        for an open connection, without its general machinery). Returns False for anything else."""
        code = None
        reason = ""
        if payload:
            code = (payload[0] << 8) | payload[1]
            if code not in _RECEIVABLE_CLOSE_CODES and not 3000 <= code <= 4999:
                return False
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                return False
        self.wasClean = True
        self.remoteCloseCode = self.localCloseCode = code  # type: ignore[assignment]  # autobahn's hints say None
        self.remoteCloseReason = reason or None
        # RFC 6455 5.5.1: answer with the same code and reason; 7.1.1: then the server closes TCP.
        self.sendData(b"\x88" + bytes((len(payload),)) + payload)
        self.core.close_sending()
        self._disconnected(code if code is not None else 1005, reason)  # 7.1.5: no code is 1005
        self.dropConnection(abort=False)
        return True

    def connectionLost(self, reason: Failure | None = None) -> None:
        # Replaces autobahn's connectionLost/_connectionLost (its timers are not used here; its
        # bookkeeping only feeds log messages): the state becomes CLOSED, then onClose().
        self.state = _CLOSED
        self._lost = True
        self.onClose(self.wasClean, 1006, None)
        self._release_drain()
        self._http = None
        self._handshake = False
        self._denial = None
        self.settings.open_count -= 1
        tracker, self._tracker = self._tracker, None
        if tracker is not None:
            tracker.connection_closed(self)
        if self._task is not None and not self._task.done():
            self.arm_application_close()
        else:
            self.timer_stop()

    # -- autobahn callbacks ----------------------------------------------------------------------

    def onConnect(self, request: Any) -> Any:
        """The handshake request is valid (autobahn checked it): ask the application."""
        scope = self.scope
        if scope is None or list(request.protocols) != scope["subprotocols"]:
            # Our parse and autobahn's must agree on what the client offered.
            self.failHandshake("conflicting Sec-WebSocket-Protocol headers", 400)
            return Deferred()
        settings = self.settings
        self._handshake = True
        self._task = start_instance(settings.loop, settings.app, scope, self.receive, self.send, self._app_done)
        # autobahn waits on this Deferred; the application's answer calls succeedHandshake (or
        # writes an HTTP response) directly, which spares a Deferred callback chain per handshake.
        return Deferred()

    def onOpen(self) -> None:
        self._http = None
        # autobahn keeps the parsed handshake (request copy, header dict, response text, ...)
        # for the connection's whole life; about 1.5 kB that nothing reads once open.
        self.__dict__.update(_HANDSHAKE_LEFTOVERS)
        self.settings.stats.ws_handshake_latency.observe(self.clock() - self._t0)
        self.arm_open()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        # Messages autobahn parsed (fragmented, compressed, or split across reads); their UTF-8
        # was validated as they arrived.
        if isBinary:
            self._deliver({"type": "websocket.receive", "bytes": payload}, len(payload))
        else:
            self._deliver({"type": "websocket.receive", "text": payload.decode("utf-8")}, len(payload))

    def onMessageEnd(self) -> None:
        # As autobahn's, without firing its "message" observers (a Deferred per message).
        if not self.failedByMe:
            self.onMessage(b"".join(self.message_data), self.message_is_binary)
        self.message_data = None  # type: ignore[assignment]  # as autobahn does

    def onCloseFrame(self, code: int | None, reasonRaw: bytes | None) -> bool | None:
        violation = super().onCloseFrame(code, reasonRaw)  # type: ignore[arg-type]  # autobahn takes None
        if not self.failedByMe:
            # The client's close frame, valid: its code (RFC 6455 7.1.5: none means 1005) and
            # reason are the application's. Otherwise onClose reports the code we failed with.
            self._disconnected(code if code is not None else 1005, self.remoteCloseReason or "")
        return violation

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        if self.localCloseCode is not None:
            # We closed (the application, a limit, a timeout, shutdown): report our code.
            local_reason = self.localCloseReason
            self._disconnected(self.localCloseCode, local_reason.decode("utf-8", "replace") if local_reason else "")
        else:
            self._disconnected(1006, "")  # RFC 6455 7.1.5: closed without a close frame

    def onPing(self, payload: bytes) -> None:
        if self.state == _OPEN:
            self.sendPong(payload)

    def onPong(self, payload: bytes) -> None:
        pass  # any received data counts as liveness (see dataReceived)

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        """The one flush point: every byte to the client (autobahn's handshake response and control
        frames, our data frames and HTTP responses) is written through."""
        if not self._lost:
            write_through(self.transport, data)

    def sendCloseFrame(self, code: int | None = None, reasonUtf8: bytes | None = None, isReply: bool = False) -> None:
        was_open = self.state == _OPEN
        super().sendCloseFrame(code, reasonUtf8, isReply)
        if was_open:
            self.core.close_sending()
            if not isReply:
                # Our close frame is out: the client has close_timeout to answer (RFC 6455 7.1.2).
                self.arm_closing()

    def dropConnection(self, abort: bool = False) -> None:
        if abort and self.wasClean:
            # autobahn resets the connection once our closing handshake completed; a completed
            # handshake deserves an orderly close (FIN, RFC 6455 7.1.1), not a reset.
            abort = False
        super().dropConnection(abort)
        if not abort and not self._lost and _output_pending(self.transport):
            # A client that does not read our last bytes must not keep the connection open.
            self.arm_closing()

    def sendHttpErrorResponse(self, code: int, reason: str, responseHeaders: Any = None) -> None:
        """autobahn refuses a bad handshake: a complete response instead of a bare status line."""
        extra = b"".join(b"%s: %s\r\n" % (k.encode("latin-1"), str(v).encode("latin-1")) for k, v in responseHeaders or ())
        self.sendData(error_response(code, reason, extra=self.settings.server_header + extra))

    # -- called by the listener ------------------------------------------------------------------

    def shutdown(self) -> None:
        """Graceful stop: open WebSockets close with 1001 (going away); handshakes get 503."""
        if self._lost:
            return
        if self.state == _OPEN:
            self.sendCloseFrame(1001, b"server shutting down")
        elif self.state == _OPENING and self.core.state == CONNECTING:
            self.core.close_sending()
            self._refuse(503, "Service Unavailable")

    def abort(self) -> None:
        """Close at once."""
        if not self._lost:
            self.transport.abortConnection()


def _output_pending(transport: Any) -> bool:
    """Whether a TCP transport still buffers output (then ``loseConnection`` waits for the client).

    Reads the same Twisted fields as :func:`~gateway.protocols.transport.write_through`; any
    other transport (TLS) is assumed to have some.
    """
    if isinstance(transport, _DIRECT):
        return bool(transport.dataBuffer or transport._tempDataLen)
    return True
