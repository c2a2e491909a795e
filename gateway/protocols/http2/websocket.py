# -*- test-case-name: tests.integration.test_http2_live -*-
"""WebSocket over HTTP/2 (RFC 8441): an extended CONNECT stream served as an ASGI ``websocket`` scope.

The scope is the HTTP/1.1 one (:func:`~gateway.protocols.websocket.asgi.websocket_scope`), the
application's messages are checked by the same :class:`~gateway.protocols.websocket.asgi.WebSocketState`,
and the listener's ``websocket:`` settings apply (allowed origins, max_connections, frame and
message limits, permessage-deflate negotiated by the same acceptor, close timeout, read and write
high-water marks). What differs is the wire: there is no ``Sec-WebSocket-Key``/``Accept`` and no
101; the answer is ``:status 200`` and the frames ride in the stream's DATA frames, read and
written by the sans-IO :class:`~gateway.protocols.websocket.core.WebSocketCodec`. Closing is a
close frame each way, then END_STREAM (RFC 8441 5).

Liveness comes from the HTTP/2 connection's PINGs, so no WebSocket pings are sent on these streams.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from autobahn.websocket.compress import PerMessageDeflate, PerMessageDeflateOffer
from twisted.logger import Logger, LogLevel

from gateway.asgi.app import Message
from gateway.asgi.instance import FAILED, RETURNED, ApplicationInstance, ClientDisconnected, Ending
from gateway.protocols.http.asgi import http_scope
from gateway.protocols.http2.asgi import H2Request, response_headers, status_field
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
    websocket_scope,
)
from gateway.protocols.websocket.config import WebSocketConfig
from gateway.protocols.websocket.core import CloseReceived, Ping, WebSocketCodec, WebSocketError, parse_extensions
from gateway.protocols.websocket.listener import WebSocketSettings, deflate_acceptor

log = Logger(namespace="gateway.websocket")

__all__ = ["H2WebSocket", "H2WebSockets"]

_CONNECT: Message = {"type": "websocket.connect"}
CANCEL = 0x8


class H2WebSockets:
    """The WebSocket side of one listener's HTTP/2 connections (``H2Settings.websocket``)."""

    def __init__(self, settings: WebSocketSettings, config: WebSocketConfig) -> None:
        self.settings = settings
        self.max_frame_size = config.max_frame_size
        self.max_message_size = config.max_message_size
        deflate = config.per_message_deflate
        self.acceptor = deflate_acceptor(deflate) if deflate.enabled else None

    def start(self, protocol: Any, stream_id: int, request: H2Request, headers: list[tuple[bytes, bytes]],
              client: tuple[str, int] | None, scheme: str) -> None:
        """An extended CONNECT with ``:protocol websocket`` arrived on ``stream_id``."""
        settings = self.settings
        if settings.open_count >= settings.max_connections:
            rejections = settings.rejections
            if rejections is None or rejections.allow("too many WebSockets", LogLevel.warn):
                log.warn("WebSocket refused: max_connections={limit} WebSockets are open", limit=settings.max_connections)  # noqa: G010
            protocol.answer(stream_id, 503, "too many WebSocket connections")
            return
        origins = settings.origins
        if origins is not None and not origins.allows(_header(headers, b"origin")):
            protocol.answer(stream_id, 403, "origin not allowed")
            return
        if _header(headers, b"sec-websocket-version") not in (b"13", None):
            # RFC 8441 5 keeps RFC 6455's version check (4.2.2): 426 with the version we speak.
            protocol.answer(stream_id, 400, "unsupported WebSocket version")
            return
        http = protocol.settings.http
        try:
            scope = http_scope(
                method="GET",
                http_version="2",
                scheme="wss" if scheme in ("https", "wss") else "ws",
                raw_path=request.path,
                query_string=request.query,
                root_path=http.root_path,
                headers=headers,
                client=client,
                server=protocol.server,
                state=http.state,
                extensions=protocol.scope_extensions(),
            )
        except ValueError:
            protocol.answer(stream_id, 400, "the request path is not ASCII")
            return
        socket = H2WebSocket(protocol, stream_id, request, websocket_scope(scope), self)
        protocol.add_stream(socket)


class H2WebSocket(ApplicationInstance):
    """One WebSocket on an HTTP/2 stream: its application instance and its frames."""

    __slots__ = (
        "protocol", "stream_id", "request", "core", "codec", "sockets", "status", "bytes_sent", "closed",
        "received", "acked", "out", "out_end", "waiter_window", "body_complete", "local_ended", "counted",
        "_close_timer", "_deflate_header",
    )

    log = log
    notify_receiving = True

    def __init__(self, protocol: Any, stream_id: int, request: H2Request, scope: Any, sockets: H2WebSockets) -> None:
        settings = sockets.settings
        core = self.core = WebSocketState(scope["subprotocols"])
        super().__init__(settings.app, scope, core, settings.loop, settings.reactor, settings.stats.ws_instances,
                         settings.application_close_timeout, None)
        self.protocol: Any = protocol
        self.stream_id = stream_id
        self.request = request
        self.sockets = sockets
        self.codec = WebSocketCodec(sockets.max_frame_size, sockets.max_message_size)
        self.status = 0
        self.bytes_sent = 0
        self.closed = False
        self.received = 0
        self.acked = 0
        self.out = b""
        self.out_end = False
        self.waiter_window: Any = None
        #: The client ended its side (END_STREAM).
        self.body_complete = False
        #: We ended our side (END_STREAM sent) or reset the stream.
        self.local_ended = False
        self.counted = True
        self._close_timer: Any = None
        self._deflate_header: bytes | None = None
        settings.open_count += 1
        settings.open_over_http2 += 1
        settings.stats.ws_connections += 1
        self.put(_CONNECT, 0)

    # -- driven by the connection ------------------------------------------------------------

    def run(self) -> None:
        """Start the application (it answers websocket.connect)."""
        self.start()
        settings = self.sockets.settings
        self._close_timer = self.clock.callLater(settings.accept_timeout, self._accept_timed_out)

    def wants_data(self) -> bool:
        return not self.closed and not self.codec.closed

    def finished(self) -> bool:
        return self.local_ended

    def unacknowledged(self) -> int:
        return self.received - self.acked

    def data_received(self, data: bytes) -> None:
        """Stream bytes: WebSocket frames."""
        self.received += len(data)
        self.codec.receive_data(data)
        if self.core.state == CONNECTED:
            self._read()

    def end_of_body(self) -> None:
        """END_STREAM from the client: its side is closed (after its close frame, or abruptly: 1006)."""
        self.body_complete = True
        if not self.codec.closed:
            self._disconnected(1006, "")
        if not self.local_ended:
            self._end_local()
        self._maybe_release()

    def reset(self) -> None:
        """The stream was reset or the connection is gone."""
        self.closed = True
        self.local_ended = True
        self._cancel_timer()
        waiter = self.waiter_window
        if waiter is not None:
            self.waiter_window = None
            if not waiter.done():
                waiter.set_result(None)
        self._disconnected(1006, "")
        self._uncount()

    # -- reading -----------------------------------------------------------------------------

    def _read(self) -> None:
        """Turn buffered frames into events while the application keeps up (its high-water mark)."""
        codec = self.codec
        high = self.sockets.settings.read_high_water
        stats = self.sockets.settings.stats
        while self.queued <= high:
            try:
                event = codec.next_event()
            except WebSocketError as exc:
                self._fail(exc.code, exc.reason)
                return
            if event is None:
                break
            kind = event.__class__
            if kind is CloseReceived:
                self._close_received(event)  # type: ignore[arg-type]
                return
            if kind is Ping:
                self._write(codec.pong(event.payload))  # type: ignore[union-attr]
                continue
            data = getattr(event, "data", None)
            if data is None:
                continue  # a pong: any frame counts as liveness
            stats.ws_received += 1
            if data.__class__ is str:
                self.put({"type": "websocket.receive", "text": data}, len(data))
            else:
                self.put({"type": "websocket.receive", "bytes": data}, len(data))
        self._acknowledge()

    def _acknowledge(self) -> None:
        """Open the client's window for the bytes read into events, once the application has
        taken the queue down to half its high-water mark."""
        if self.queued <= self.sockets.settings.read_high_water // 2:
            consumed = self.codec.consumed
            if consumed > self.acked and not self.closed:
                self.protocol.acknowledge(self.stream_id, consumed - self.acked)
                self.acked = consumed

    def app_receiving(self) -> None:
        if self.core.state != CONNECTED or self.closed:
            return
        if self.codec.buffered:
            self._read()
        else:
            self._acknowledge()

    def _close_received(self, event: CloseReceived) -> None:
        """The client's close frame: answer with the same code (RFC 6455 5.5.1), end our side."""
        if not self.local_ended:
            self._write(self.codec.close(None if event.code == 1005 else event.code, event.reason), end=True)
            self.core.close_sending()
        self._disconnected(event.code, event.reason)

    def _fail(self, code: int, reason: str) -> None:
        """The client broke the protocol or a limit: close with ``code`` and wait for its answer."""
        rejections = self.sockets.settings.rejections
        if rejections is None or rejections.allow(f"websocket close {code}", LogLevel.info):
            log.info("Closing WebSocket (HTTP/2) from {client} with {code}: {reason}",
                     client=self.scope.get("client"), code=code, reason=reason)
        if not self.local_ended:
            self._write(self.codec.close(code, ""), end=True)
            self.core.close_sending()
            self._arm_close()
        self.codec.closed = True
        self._disconnected(code, "")

    # -- the instance's hooks ----------------------------------------------------------------

    def app_perform(self, action: Any) -> Awaitable[None] | None:
        protocol = self.protocol
        if protocol is None or self.closed:
            raise ClientDisconnected("the stream was closed")
        kind = action.__class__
        if kind is str or kind is bytes:
            if self.local_ended:
                raise ClientDisconnected("the WebSocket is closing")
            try:
                frame = self.codec.message(action)
            except UnicodeEncodeError:
                from gateway.protocols.errors import LocalProtocolError

                raise LocalProtocolError("websocket.send 'text' is not encodable as UTF-8") from None
            self.sockets.settings.stats.ws_sent += 1
            return self._write(frame)
        if kind is Accept:
            self._accept(action)
        elif kind is Close:
            self._write(self.codec.close(action.code, action.reason), end=True)
            self._arm_close()
            self._disconnected(action.code, action.reason, ours=True)
        elif kind is Reject:
            self._refuse(403, "Forbidden")
        elif kind is DenialStart:
            self._cancel_timer()
            self.status = action.status
            block = action.fields[0]
            protocol.send_headers(self, response_headers(action.status, block, []), False)
        elif kind is DenialBody:
            self.bytes_sent += len(action.body)
            waiting = self._write(action.body, end=not action.more)
            if not action.more:
                self._logged()
            return waiting
        return None

    def app_ended(self, ending: Ending) -> None:
        self._cancel_timer()
        protocol = self.protocol
        if protocol is None:
            return
        if not self.closed:
            state = self.core.state
            if state == CONNECTING:
                if ending is RETURNED:
                    log.error("ASGI application returned without accepting or closing {what}", what=self.describe())
                self.core.close_sending()
                self._refuse(403, "Forbidden")
            elif state == RESPONSE:
                log.error("ASGI application ended without finishing its denial response to {what}", what=self.describe())
                protocol.reset_stream(self, CANCEL)
            elif state == CONNECTED and not self.local_ended:
                # RFC 6455 7.4.1: 1011 for an unexpected condition; a normal return closes normally.
                self.core.close_sending()
                self._write(self.codec.close(1011 if ending is FAILED else 1000), end=True)
                self._arm_close()
        protocol.instance_ended(self)

    def describe(self) -> str:
        return f"WebSocket {self.scope.get('path')} (HTTP/2 stream {self.stream_id})"

    # -- internals ---------------------------------------------------------------------------

    def _accept(self, accept: Accept) -> None:
        self._cancel_timer()
        headers: list[tuple[bytes, bytes]] = []
        if accept.subprotocol is not None:
            headers.append((b"sec-websocket-protocol", accept.subprotocol.encode("utf-8")))
        extension = self._negotiate()
        if extension is not None:
            headers.append((b"sec-websocket-extensions", extension))
        headers.extend(accept.headers)
        server = self.protocol.server_field
        if server is not None and not accept.has_server:
            headers.append(server)
        self.status = 200
        self.protocol.send_headers(self, [status_field(200), *headers], False)
        self._logged()
        if self.codec.buffered:
            self._read()

    def _negotiate(self) -> bytes | None:
        """permessage-deflate (RFC 7692), with the listener's acceptor, as on HTTP/1.1."""
        acceptor = self.sockets.acceptor
        if acceptor is None:
            return None
        offers = []
        for name, value in self.scope["headers"]:
            if name != b"sec-websocket-extensions":
                continue
            for extension, params in parse_extensions(value.decode("latin-1")):
                if extension == "permessage-deflate":
                    try:
                        offers.append(PerMessageDeflateOffer.parse(params))
                    except Exception:  # autobahn raises a bare Exception for a bad offer  # noqa: S112
                        continue
        if not offers:
            return None
        accepted = acceptor(offers)
        if accepted is None:
            return None
        self.codec.deflate = PerMessageDeflate.create_from_offer_accept(True, accepted)
        return accepted.get_extension_string().encode("ascii")

    def _refuse(self, status: int, reason: str) -> None:
        self._cancel_timer()
        self.status = status
        protocol = self.protocol
        if protocol is not None and not self.closed and not self.local_ended:
            body = f"{status} {reason}\n".encode()
            protocol.send_headers(self, [status_field(status), (b"content-type", b"text/plain; charset=utf-8"),
                                         (b"content-length", b"%d" % len(body))], False)
            self.bytes_sent = len(body)
            self._write(body, end=True)
        self._logged()
        self._disconnected(1006, "")

    def _write(self, data: bytes, end: bool = False) -> Awaitable[None] | None:
        protocol = self.protocol
        if protocol is None or self.closed or self.local_ended:
            return None
        if end:
            self.local_ended = True
        try:
            return protocol.send_data(self, data, end)
        except ClientDisconnected:
            return None

    def _end_local(self) -> None:
        self._write(b"", end=True)

    def _disconnected(self, code: int, reason: str, ours: bool = False) -> None:
        """The WebSocket is closed for the application: ``websocket.disconnect`` with ``code``."""
        core = self.core
        if core.peer_closed(code, reason):
            self.client_left(core.disconnect)
        elif ours:
            pass
        self._uncount()

    def _uncount(self) -> None:
        if self.counted:
            self.counted = False
            settings = self.sockets.settings
            settings.open_count -= 1
            settings.open_over_http2 -= 1

    def _logged(self) -> None:
        access_log = self.protocol.settings.http.access_log if self.protocol is not None else None
        if access_log is not None:
            access_log.log_line(self.scope, self.request, self.status, self.bytes_sent, self.scope.get("client"))

    def _arm_close(self) -> None:
        """Our close frame is out: the client has close_timeout to answer before the stream is reset."""
        self._cancel_timer()
        self._close_timer = self.clock.callLater(self.sockets.settings.close_timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self._close_timer = None
        protocol = self.protocol
        if protocol is not None and not self.closed:
            protocol.reset_stream(self, CANCEL)

    def _accept_timed_out(self) -> None:
        self._close_timer = None
        if self.core.state == CONNECTING and not self.closed:
            log.warn("Application did not answer {what} within {seconds}s; 503",
                     what=self.describe(), seconds=self.sockets.settings.accept_timeout)
            self.core.close_sending()
            self._refuse(503, "Service Unavailable")

    def _cancel_timer(self) -> None:
        timer = self._close_timer
        if timer is not None:
            self._close_timer = None
            if timer.active():
                timer.cancel()

    def _maybe_release(self) -> None:
        protocol = self.protocol
        if protocol is not None and self.local_ended and self.body_complete:
            protocol.stream_closed(self)


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None
