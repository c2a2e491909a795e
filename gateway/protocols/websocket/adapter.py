# -*- test-case-name: tests.unit.websocket.test_adapter -*-
"""One WebSocket connection: autobahn's server protocol wired to an ASGI application.

The HTTP listener parses the upgrade request and hands the connection over (see
:mod:`gateway.protocols.websocket.listener`): autobahn gets the transport and the request head
exactly as received, validates the handshake (RFC 6455 4.2.1) and frames the connection; the
scope comes from our own parse. The application runs as a :class:`WebSocketInstance` (the
connection's :class:`~gateway.asgi.instance.ApplicationInstance`); its messages are checked by the
sans-IO :class:`~gateway.protocols.websocket.asgi.WebSocketState` and carried out here.

Hot paths are kept out of autobahn where it is slow: whole, masked, unfragmented and uncompressed
frames are parsed here (:mod:`~gateway.protocols.websocket.frames`), sent frames are built here
and written through (:func:`~gateway.protocols.transport.write_through`), a well-formed close frame
is answered here; autobahn validates the handshake and handles fragmentation, compression, limits,
bad frames and the closing handshakes we start.

Each connection has one timer, moved lazily (no scan over all connections): during the opening
handshake the application's accept timeout and the handshake timeout; once open the next idle
ping (or the pong deadline) and the maximum lifetime; while closing the close timeout. The
application's close timeout after the client left is the instance core's.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.utf8validator import Utf8Validator
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from gateway.asgi.app import Message
from gateway.asgi.instance import FAILED, RETURNED, ApplicationInstance, ClientDisconnected, Ending
from gateway.asgi.types import WebSocketScope
from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.http.core import HTTPConnection, error_response
from gateway._compat.tcp import output_buffered, set_write_high_water, write_through
from gateway.protocols.transport import Drain
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
    WebSocketState,
)

log = Logger(namespace="gateway.websocket")

# autobahn's connection states (WebSocketProtocol.STATE_*).
_CLOSED = 0
_OPENING = 1
_CLOSING = 2
_OPEN = 3

# Timer phases.
_HANDSHAKE = 0
_OPEN_PHASE = 1
_CLOSING_PHASE = 2

#: Close codes a client may send (RFC 6455 7.4; autobahn's CLOSE_STATUS_CODES_ALLOWED) besides 3000-4999.
_RECEIVABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013})

_HANDSHAKE_LEFTOVERS = dict.fromkeys((
    "http_headers", "http_request_data", "http_status_line", "http_request_uri", "http_request_path",
    "http_request_params", "http_request_host", "http_response_data", "websocket_extensions",
    "websocket_protocols", "websocket_origin", "_wskey",
))

_CONNECT: Message = {"type": "websocket.connect"}


class _HeaderItems(list):
    """Response headers in order, duplicates kept; autobahn only calls ``.items()`` on them."""

    def items(self) -> _HeaderItems:
        return self


class _Closing:
    """The request as the HTTP core needs it for a denial response: GET, HTTP/1.1, no keep-alive."""

    method = "GET"
    http_version = "1.1"
    keep_alive = False


class WebSocketInstance(ApplicationInstance):
    """The application instance of one WebSocket: its messages carried out on the connection.

    The connection (:class:`WebSocketProtocol`) and its instance point at each other while either
    may still act; the pair is let go when both are done (see :meth:`WebSocketProtocol._release`).
    """

    __slots__ = ("core", "protocol", "status")

    log = log

    def __init__(self, protocol: WebSocketProtocol, scope: Any) -> None:
        settings = protocol.settings
        core = self.core = WebSocketState(scope["subprotocols"])
        super().__init__(settings.app, scope, core, settings.loop, settings.reactor,
                         settings.stats.ws_instances, settings.application_close_timeout, settings.read_high_water)
        self.protocol: WebSocketProtocol | None = protocol
        #: The handshake's answer, for the access log: 101, or the refusal's status.
        self.status = 0
        self.put(_CONNECT, 0)

    def app_perform(self, action: Any) -> Any:
        protocol = self.protocol
        if protocol is None or protocol.lost:
            raise ClientDisconnected("the client disconnected")
        kind = action.__class__
        if kind is str or kind is bytes:
            # websocket.send: one data frame (compressed when permessage-deflate was agreed).
            if protocol.state != _OPEN:
                raise ClientDisconnected("the WebSocket is closing")
            if kind is str:
                try:
                    data = action.encode("utf-8")
                except UnicodeEncodeError:
                    raise LocalProtocolError("websocket.send 'text' is not encodable as UTF-8") from None
                first = frames.TEXT
            else:
                data = action
                first = frames.BINARY
            pmce = protocol._perMessageCompress
            if pmce is not None:
                # RFC 7692 7.2.1: compress, drop the final empty block's 4 bytes, set RSV1.
                pmce.start_compress_message()
                data = pmce.compress_message_data(data) + pmce.end_compress_message()
                first |= frames.RSV1
            write_through(protocol.transport, frames.frame(first, data))
            stats = protocol.settings.stats
            stats.ws_sent += 1
            if protocol.writes_paused:
                stats.ws_write_pauses += 1
                return protocol.drain.wait()
            return None
        if kind is Accept:
            protocol.accept(action)
        elif kind is Close:
            protocol.close(action.code, action.reason)
        elif kind is Reject:
            protocol.refuse(403, "Forbidden")
        elif kind is DenialStart:
            protocol.denial_start(action)
        elif kind is DenialBody:
            protocol.denial_body(action)
        if protocol.writes_paused:
            protocol.settings.stats.ws_write_pauses += 1
            return protocol.drain.wait()
        return None

    def pause_reading(self) -> None:
        protocol = self.protocol
        if protocol is not None and not protocol.lost:
            protocol.settings.stats.ws_read_pauses += 1
            protocol.transport.pauseProducing()

    def resume_reading(self) -> None:
        protocol = self.protocol
        if protocol is not None and not protocol.lost:
            protocol.transport.resumeProducing()

    def app_ended(self, ending: Ending) -> None:
        protocol = self.protocol
        if protocol is None:
            return
        if protocol.lost:
            protocol.release()
            return
        state = self.core.state
        if state == CONNECTING:
            if ending is RETURNED:
                log.error("ASGI application returned without accepting or closing {what}", what=self.describe())
            # As for websocket.close before accepting (ASGI www 2.5): 403.
            self.core.close_sending()
            protocol.refuse(403, "Forbidden")
        elif state == RESPONSE:
            log.error("ASGI application ended without finishing its denial response to {what}", what=self.describe())
            protocol.dropConnection(abort=True)
        elif state == CONNECTED and protocol.state == _OPEN:
            # RFC 6455 7.4.1: 1011 for an unexpected condition; a normal return closes normally.
            protocol.sendCloseFrame(1011 if ending is FAILED else 1000)

    def describe(self) -> str:
        return f"WebSocket {self.scope.get('path')}"


@implementer(IPushProducer)
class WebSocketProtocol(WebSocketServerProtocol):  # autobahn's own bases disagree
    """One WebSocket; a per-listener subclass carries autobahn's options as class attributes.

    Built by the upgrade hook with the listener's settings (class attribute ``settings``), the
    scope, the upgrade request and the HTTP protocol it replaces; then ``makeConnection`` and the
    request head.
    """

    settings: Any  # WebSocketSettings, set on the per-listener subclass
    clock: Any  # the reactor's seconds(), set on the per-listener subclass
    _fast_max: int = 0  # largest frame payload the fast path takes (the configured limits)

    __slots__ = (  # noqa: RUF023 (grouped by purpose)
        "instance", "request", "_http", "_handshake", "writes_paused", "drain", "_denial", "tracker", "lost",
        "_timer", "_due", "_phase", "_t0", "last_rx", "_ping_sent", "_utf8",
        # Attributes of Twisted's Protocol and autobahn's hottest state, here rather than in the
        # instance dict: the dict stays below the size where CPython doubles it.
        "transport", "connected", "state", "data", "current_frame", "inside_message",
    )

    def __init__(self, scope: WebSocketScope, request: Any, http: Any) -> None:
        # autobahn's own __init__ only creates what AUTOBAHN_DEFAULTS provides (frames.py).
        self.transport: Any = None
        self.connected = 0
        self.state = _OPENING
        self.data = b""
        self.current_frame = None  # type: ignore[assignment]  # autobahn resets it to None itself
        self.inside_message = False
        self.instance: WebSocketInstance | None = WebSocketInstance(self, scope)
        self.request = request  # the upgrade request, until the handshake is answered (access log)
        self._http = http
        self._handshake = False  # the application's answer is awaited
        self.writes_paused = False
        self.drain = Drain()
        self._denial: HTTPConnection | None = None
        self.tracker: Any = None
        self.lost = False
        self._utf8: Utf8Validator | None = None
        self._timer: Any = None
        self._due: float | None = None
        self._phase = _HANDSHAKE
        self._t0 = 0.0
        self.last_rx = 0.0
        self._ping_sent = 0.0

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
        self._phase = _HANDSHAKE
        self._t0 = now = self.clock()
        self._set_due(now + min(settings.accept_timeout, settings.handshake_timeout))

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
        instance = self.instance
        stats = self.settings.stats
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
                    message: Message = {"type": "websocket.receive", "text": text}
                else:
                    message = {"type": "websocket.receive", "bytes": payload}
                stats.ws_received += 1
                if instance is not None:
                    instance.put(message, length)
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
        self._close_sending()
        self._disconnected(code if code is not None else 1005, reason)  # 7.1.5: no code is 1005
        self.dropConnection(abort=False)
        return True

    def connectionLost(self, reason: Failure | None = None) -> None:
        # Replaces autobahn's connectionLost/_connectionLost (its timers are not used here; its
        # bookkeeping only feeds log messages): the state becomes CLOSED, then onClose().
        self.state = _CLOSED
        self.lost = True
        self.onClose(self.wasClean, 1006, None)
        self.drain.release()
        self._http = None
        self._handshake = False
        self._denial = None
        self.settings.open_count -= 1
        tracker, self.tracker = self.tracker, None
        if tracker is not None:
            tracker.connection_closed(self)
        self.timer_stop()
        instance = self.instance
        if instance is None or instance.ended is not None or instance.task is None:
            self.release()

    def release(self) -> None:
        """Let go of the instance once the connection is lost and the application has ended, so
        the pair is freed by reference counting (no cycle left for the garbage collector)."""
        instance, self.instance = self.instance, None
        if instance is not None:
            instance.protocol = None

    # -- autobahn callbacks ----------------------------------------------------------------------

    def onConnect(self, request: Any) -> Any:
        """The handshake request is valid (autobahn checked it): ask the application."""
        instance = self.instance
        if instance is None or list(request.protocols) != instance.scope["subprotocols"]:
            # Our parse and autobahn's must agree on what the client offered.
            self.failHandshake("conflicting Sec-WebSocket-Protocol headers", 400)
            return Deferred()
        self._handshake = True
        instance.start()
        # autobahn waits on this Deferred; the application's answer calls succeedHandshake (or
        # writes an HTTP response) directly, which spares a Deferred callback chain per handshake.
        return Deferred()

    def onOpen(self) -> None:
        self._http = None
        # autobahn keeps the parsed handshake (request copy, header dict, response text, ...)
        # for the connection's whole life; about 1.5 kB that nothing reads once open.
        self.__dict__.update(_HANDSHAKE_LEFTOVERS)
        self.settings.stats.ws_handshake_latency.observe(self.clock() - self._t0)
        self._phase = _OPEN_PHASE
        self._t0 = self.last_rx = self.clock()
        due = self._open_due()
        if due is None:
            self.timer_stop()
        else:
            self._set_due(due)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        # Messages autobahn parsed (fragmented, compressed, or split across reads); their UTF-8
        # was validated as they arrived.
        self.settings.stats.ws_received += 1
        instance = self.instance
        if instance is None:
            return
        if isBinary:
            instance.put({"type": "websocket.receive", "bytes": payload}, len(payload))
        else:
            instance.put({"type": "websocket.receive", "text": payload.decode("utf-8")}, len(payload))

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
        if not self.lost:
            write_through(self.transport, data)

    def sendCloseFrame(self, code: int | None = None, reasonUtf8: bytes | None = None, isReply: bool = False) -> None:
        was_open = self.state == _OPEN
        super().sendCloseFrame(code, reasonUtf8, isReply)
        if was_open:
            self._close_sending()
            if not isReply:
                # Our close frame is out: the client has close_timeout to answer (RFC 6455 7.1.2).
                self._arm_closing()

    def dropConnection(self, abort: bool = False) -> None:
        if abort and self.wasClean:
            # autobahn resets the connection once our closing handshake completed; a completed
            # handshake deserves an orderly close (FIN, RFC 6455 7.1.1), not a reset.
            abort = False
        super().dropConnection(abort)
        if not abort and not self.lost and output_buffered(self.transport):
            # A client that does not read our last bytes must not keep the connection open.
            self._arm_closing()

    def sendHttpErrorResponse(self, code: int, reason: str, responseHeaders: Any = None) -> None:
        """autobahn refuses a bad handshake: a complete response instead of a bare status line."""
        extra = b"".join(b"%s: %s\r\n" % (k.encode("latin-1"), str(v).encode("latin-1")) for k, v in responseHeaders or ())
        self.sendData(error_response(code, reason, extra=self.settings.server_header + extra))
        self._log_handshake(code)

    # -- what the application's messages do ---------------------------------------------------

    def accept(self, accept: Accept) -> None:
        """``websocket.accept``: autobahn writes the 101 (RFC 6455 4.2.2)."""
        if not self._handshake or self.state != _OPENING:
            raise ClientDisconnected("the client left during the handshake")
        self._handshake = False
        headers = _HeaderItems()
        server = self.settings.server_name
        if server and not accept.has_server:
            headers.append(("Server", server))
        headers.extend((name.decode("latin-1"), value.decode("utf-8")) for name, value in accept.headers)
        self._log_handshake(101)
        self.succeedHandshake((accept.subprotocol, headers))

    def close(self, code: int, reason: str) -> None:
        """``websocket.close`` once accepted: our close frame."""
        if self.state == _OPEN:
            self.sendCloseFrame(code, reason.encode("utf-8") if reason else None)

    def refuse(self, status: int, reason: str) -> None:
        """Answer the handshake with an HTTP error and close (403 for close-before-accept)."""
        self._handshake = False
        if not self.lost:
            self.sendData(error_response(status, reason, extra=self.settings.server_header))
            self._log_handshake(status)
            self.dropConnection(abort=False)

    def denial_start(self, start: DenialStart) -> None:
        """``websocket.http.response.start``: the head waits for the first body piece."""
        self._handshake = False
        http = self._http
        conn = self._denial = HTTPConnection()
        fields = start.fields
        extra = http.extra_headers(fields[3], fields[4]) if http is not None else b""  # has_server, has_date
        conn.start_response(_Closing(), start.status, fields, extra=extra)  # type: ignore[arg-type]
        self._log_handshake(start.status)

    def denial_body(self, body: DenialBody) -> None:
        """A piece of the denial response; the last one closes the connection."""
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

    def _close_sending(self) -> None:
        instance = self.instance
        if instance is not None:
            instance.core.close_sending()

    def _disconnected(self, code: int, reason: str) -> None:
        instance = self.instance
        if instance is not None and instance.core.peer_closed(code, reason):
            instance.client_left(instance.core.disconnect)

    def _log_handshake(self, status: int) -> None:
        """The access log line of the handshake (101, or the refusal), once."""
        request, self.request = self.request, None
        instance = self.instance
        if instance is not None:
            instance.status = status
        access_log = self.settings.access_log
        if request is not None and access_log is not None and instance is not None:
            access_log.log_line(instance.scope, request, status, 0, None)

    # -- flow control: the transport's buffer ----------------------------------------------------

    def pauseProducing(self) -> None:
        self.writes_paused = True

    def resumeProducing(self) -> None:
        self.writes_paused = False
        self.drain.release()

    def stopProducing(self) -> None:
        self.drain.release()

    # -- called by the listener ------------------------------------------------------------------

    def shutdown(self) -> None:
        """Graceful stop: open WebSockets close with 1001 (going away); handshakes get 503."""
        if self.lost:
            return
        instance = self.instance
        if self.state == _OPEN:
            self.sendCloseFrame(1001, b"server shutting down")
        elif self.state == _OPENING and instance is not None and instance.core.state == CONNECTING:
            self._close_sending()
            self.refuse(503, "Service Unavailable")

    def abort(self) -> None:
        """Close at once."""
        if not self.lost:
            self.transport.abortConnection()

    # -- the timer --------------------------------------------------------------------------------

    def timer_stop(self) -> None:
        """No more deadlines."""
        self._due = None
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _arm_closing(self) -> None:
        """Our close frame is out (or the connection is being dropped): the peer has close_timeout."""
        if self._phase >= _CLOSING_PHASE:
            return
        self._phase = _CLOSING_PHASE
        self._set_due(self.clock() + self.settings.close_timeout)

    def _set_due(self, when: float) -> None:
        self._due = when
        timer = self._timer
        if timer is not None:
            if timer.getTime() <= when:
                return  # fires first and moves itself on (lazily)
            # Earlier: a new call rather than reset(), which is O(pending calls) in Twisted's
            # reactor (_moveCallLaterSooner searches its heap); a cancel is O(1).
            timer.cancel()
        self._timer = self.settings.reactor.callLater(max(0.0, when - self.clock()), self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        due = self._due
        if due is None or self.lost:
            return
        now = self.clock()
        if now < due:
            self._timer = self.settings.reactor.callLater(due - now, self._timer_fired)
            return
        self._due = None
        phase = self._phase
        if phase == _HANDSHAKE:
            self._handshake_deadline(now)
        elif phase == _OPEN_PHASE:
            self._open_deadline(now)
        else:
            # RFC 6455 7.1.1: the server closes the TCP connection; the client had its chance.
            self.abort()

    def _handshake_deadline(self, now: float) -> None:
        settings = self.settings
        if self.state != _OPENING:
            return
        instance = self.instance
        accept_passed = now >= self._t0 + settings.accept_timeout
        connecting = instance is not None and instance.core.state == CONNECTING
        if connecting and (accept_passed or now >= self._t0 + settings.handshake_timeout):
            log.info("WebSocket application did not answer websocket.connect within {seconds}s",
                     seconds=min(settings.accept_timeout, settings.handshake_timeout))
            settings.stats.ws_instances.timeouts += 1
            self._close_sending()
            self.refuse(503, "Service Unavailable")
        elif now >= self._t0 + settings.handshake_timeout:
            log.info("WebSocket handshake (denial response) not complete after {seconds}s", seconds=settings.handshake_timeout)
            self.abort()
        else:
            self._set_due(self._t0 + settings.handshake_timeout)

    def _open_deadline(self, now: float) -> None:
        settings = self.settings
        lifetime = settings.max_lifetime
        if lifetime is not None and now >= self._t0 + lifetime:
            self.sendCloseFrame(1001, b"maximum lifetime reached")
            return
        interval = settings.ping_interval
        if interval is not None:
            instance = self.instance
            if instance is not None and instance.reading_paused:
                # We hold reading (the application is behind): a pong would wait behind the
                # data we have not read, so the client counts as alive.
                self.last_rx = now
            sent = self._ping_sent
            if sent and self.last_rx >= sent:
                self._ping_sent = sent = 0.0  # answered (a pong, or any data)
            if sent:
                if now >= sent + settings.ping_timeout:
                    # The peer is gone or stuck: RFC 6455 7.1.7, fail the connection.
                    self.sendCloseFrame(1011, b"ping timeout")
                    self.abort()
                    return
            elif now >= self.last_rx + interval:
                self.sendPing()  # RFC 6455 5.5.2
                self._ping_sent = now
        due = self._open_due()
        if due is not None:
            self._set_due(due)

    def _open_due(self) -> float | None:
        settings = self.settings
        due = None
        if settings.ping_interval is not None:
            due = self._ping_sent + settings.ping_timeout if self._ping_sent else self.last_rx + settings.ping_interval
        if settings.max_lifetime is not None:
            end = self._t0 + settings.max_lifetime
            due = end if due is None else min(due, end)
        return due

