# -*- test-case-name: tests.unit.websocket.test_asgi -*-
"""The ASGI side of one WebSocket, sans-IO: the scope, and the rules for the application's messages.

:class:`WebSocketState` checks every message the application sends (ASGI www 2.5 and the
``websocket.http.response`` extension) and says what the adapter should do with it; it never
touches a socket or a clock, so hypothesis can drive it with messages in any order::

    CONNECTING ──accept──────────────> CONNECTED ──close──> CLOSED
        │ ──close (403)───────────────────────────────────> CLOSED
        └─websocket.http.response.start──> RESPONSE ──last body──> CLOSED
    any state ──peer_closed()──> CLOSED

Once CLOSED, ``send()`` raises :class:`~gateway.asgi.instance.ClientDisconnected` (an
``OSError``, ASGI www 2.4); a message that is malformed or out of order raises
:class:`~gateway.protocols.errors.LocalProtocolError` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.asgi.instance import ClientDisconnected
from gateway.asgi.types import WebSocketScope
from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.http.asgi import message_body, validate_headers
from gateway.protocols.http.core import ResponseFields, response_fields

# States.
CONNECTING = 0
RESPONSE = 1
CONNECTED = 2
CLOSED = 3
STATE_NAMES = ("CONNECTING", "RESPONSE", "CONNECTED", "CLOSED")

#: RFC 6455 7.4.1/7.4.2: codes an endpoint may put in a close frame (1004-1006 and 1015 are
#: reserved for reporting, 1016-2999 for future RFCs; 3000-4999 belong to libraries and apps).
SENDABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
#: RFC 6455 5.5: a control frame carries at most 125 bytes; two of them are the code.
MAX_REASON_BYTES = 123
#: Headers the handshake response sets itself (RFC 6455 4.2.2); www 2.5 forbids the first.
_HANDSHAKE_HEADERS = frozenset(
    {b"sec-websocket-protocol", b"sec-websocket-accept", b"sec-websocket-extensions", b"upgrade", b"connection"}
)

_SEND = "websocket.send"
_KNOWN = frozenset(
    {"websocket.accept", "websocket.send", "websocket.close", "websocket.http.response.start", "websocket.http.response.body"}
)


class Accept:
    """Complete the handshake (101) with this subprotocol and these extra headers."""

    __slots__ = ("has_server", "headers", "subprotocol")

    def __init__(self, subprotocol: str | None, headers: list[tuple[bytes, bytes]], has_server: bool) -> None:
        self.subprotocol = subprotocol
        self.headers = headers
        self.has_server = has_server


class Reject:
    """``websocket.close`` before accepting: answer the handshake with 403 (www 2.5)."""

    __slots__ = ()


class Close:
    """Send a close frame with this code and reason (RFC 6455 5.5.1)."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class DenialStart:
    """``websocket.http.response.start``: answer the handshake with an HTTP response."""

    __slots__ = ("fields", "status")

    def __init__(self, status: int, fields: ResponseFields) -> None:
        self.status = status
        self.fields = fields


class DenialBody:
    """A piece of the denial response body; the response ends when ``more`` is false."""

    __slots__ = ("body", "more")

    def __init__(self, body: bytes, more: bool) -> None:
        self.body = body
        self.more = more


Action = Accept | Reject | Close | DenialStart | DenialBody | str | bytes


class WebSocketState:
    """The application's side of one WebSocket: which messages are allowed now.

    Args:
        subprotocols: the subprotocols the client offered (``scope["subprotocols"]``).
    """

    __slots__ = ("accepted", "disconnect", "state", "subprotocols")

    def __init__(self, subprotocols: Iterable[str] = ()) -> None:
        self.state = CONNECTING
        self.subprotocols = tuple(subprotocols)
        #: The ``websocket.disconnect`` message, once the connection is closed.
        self.disconnect: dict[str, Any] | None = None
        #: Whether the application accepted (the opening handshake completed).
        self.accepted = False

    def app_send(self, message: Any) -> Action:
        """Check one message from the application and return what to do.

        Returns:
            ``str`` or ``bytes`` for ``websocket.send`` (the message to send), else one of
            :class:`Accept`, :class:`Reject`, :class:`Close`, :class:`DenialStart`,
            :class:`DenialBody`.

        Raises:
            ClientDisconnected: the connection is closed (by the client, or by an earlier
                ``websocket.close``).
            LocalProtocolError: the message is malformed or not allowed in this state.
        """
        try:
            kind = message["type"]
        except (TypeError, KeyError, IndexError):
            raise LocalProtocolError(f"an ASGI message must be a dict with a 'type', got {message!r}") from None
        state = self.state
        if kind == _SEND:
            if state == CONNECTED:
                text = message.get("text")
                # The common case inline: text, and no bytes beside it (exactly one not None).
                if text.__class__ is str and message.get("bytes") is None:
                    return text
                return _payload(message)
        elif kind not in _KNOWN:
            raise LocalProtocolError(f"unknown ASGI message type {kind!r} for a websocket scope")
        if state == CLOSED:
            raise ClientDisconnected("the WebSocket is closed")
        if kind == "websocket.accept":
            if state != CONNECTING:
                raise self._unexpected(kind)
            accept = self._accept(message)
            self.state = CONNECTED
            self.accepted = True
            return accept
        if kind == "websocket.close":
            if state == CONNECTING:
                _close_fields(message)  # validated, though a 403 carries neither
                self.state = CLOSED
                return Reject()
            if state == CONNECTED:
                code, reason = _close_fields(message)
                self.state = CLOSED
                return Close(code, reason)
            raise self._unexpected(kind)
        if kind == "websocket.http.response.start":
            if state != CONNECTING:
                raise self._unexpected(kind)
            start = _denial_start(message)
            self.state = RESPONSE
            return start
        if kind == "websocket.http.response.body":
            if state != RESPONSE:
                raise self._unexpected(kind)
            body = _denial_body(message)
            if not body.more:
                self.state = CLOSED
            return body
        raise self._unexpected(kind)  # websocket.send before accept or during a denial response

    def peer_closed(self, code: int, reason: str = "") -> bool:
        """The connection closed (or the client sent its close frame): no more sending.

        Returns:
            Whether this was news (the first call); the ``websocket.disconnect`` message is then
            in :attr:`disconnect`.
        """
        if self.disconnect is not None:
            return False
        self.state = CLOSED
        self.disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
        return True

    def close_sending(self) -> None:
        """Our close frame (or an error response) is out: nothing more may be sent (RFC 6455 5.5.1).

        The ``websocket.disconnect`` message comes later, with :meth:`peer_closed`.
        """
        self.state = CLOSED

    def _accept(self, message: Any) -> Accept:
        subprotocol = message.get("subprotocol")
        if subprotocol is not None:
            if type(subprotocol) is not str:
                raise LocalProtocolError(f"websocket.accept 'subprotocol' must be a string or None, got {subprotocol!r}")
            if subprotocol not in self.subprotocols:
                # RFC 6455 4.1: the client fails the connection on a subprotocol it did not offer.
                raise LocalProtocolError(
                    f"websocket.accept 'subprotocol' {subprotocol!r} is not one the client offered {list(self.subprotocols)!r}"
                )
        headers, has_server, _ = validate_headers(message.get("headers") or ())
        for name, value in headers:
            if name in _HANDSHAKE_HEADERS:
                raise LocalProtocolError(
                    f"websocket.accept 'headers' must not set {name.decode()} (the handshake sets it; use 'subprotocol')"
                )
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                raise LocalProtocolError(f"websocket.accept header {name.decode()} is not ASCII or UTF-8") from None
        return Accept(subprotocol, headers, has_server)

    def _unexpected(self, kind: Any) -> LocalProtocolError:
        expected = {
            CONNECTING: "websocket.accept, websocket.close or websocket.http.response.start",
            RESPONSE: "websocket.http.response.body",
            CONNECTED: "websocket.send or websocket.close",
        }[self.state]
        return LocalProtocolError(f"Expected ASGI message {expected}, but got {kind!r}.")


def _payload(message: Any) -> str | bytes:
    """``websocket.send``: exactly one of ``bytes`` and ``text`` is not None (empty is fine)."""
    data = message.get("bytes")
    text = message.get("text")
    if text is None:
        if data is None:
            raise LocalProtocolError("websocket.send needs 'bytes' or 'text' (exactly one of them not None)")
        if type(data) is not bytes:
            if isinstance(data, (bytearray, memoryview)):
                return bytes(data)
            raise LocalProtocolError(f"websocket.send 'bytes' must be bytes, got {type(data).__name__}")
        return data
    if data is not None:
        raise LocalProtocolError("websocket.send has both 'bytes' and 'text'; exactly one must be not None")
    if type(text) is not str:
        raise LocalProtocolError(f"websocket.send 'text' must be a string, got {type(text).__name__}")
    return text


def _close_fields(message: Any) -> tuple[int, str]:
    code = message.get("code")
    if code is None:
        code = 1000
    elif type(code) is not int or not (code in SENDABLE_CLOSE_CODES or 3000 <= code <= 4999):
        raise LocalProtocolError(f"websocket.close 'code' must be 1000-1003, 1007-1014 or 3000-4999 (RFC 6455 7.4), got {code!r}")
    reason = message.get("reason")
    if reason is None:
        reason = ""
    elif type(reason) is not str:
        raise LocalProtocolError(f"websocket.close 'reason' must be a string, got {type(reason).__name__}")
    try:
        size = len(reason.encode("utf-8"))
    except UnicodeEncodeError:
        raise LocalProtocolError("websocket.close 'reason' is not encodable as UTF-8") from None
    if size > MAX_REASON_BYTES:
        raise LocalProtocolError(f"websocket.close 'reason' is {size} bytes in UTF-8; at most {MAX_REASON_BYTES} fit a close frame")
    return code, reason


def _denial_start(message: Any) -> DenialStart:
    status = message.get("status")
    if type(status) is not int or not 200 <= status <= 999:
        raise LocalProtocolError(f"websocket.http.response.start 'status' must be an int from 200 to 999, got {status!r}")
    return DenialStart(status, response_fields(message.get("headers") or ()))


def _denial_body(message: Any) -> DenialBody:
    return DenialBody(message_body(message, "websocket.http.response.body"), bool(message.get("more_body", False)))


def subprotocols_of(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """The subprotocols a client offered, in order (``Sec-WebSocket-Protocol``, RFC 6455 4.1 and 11.3.4)."""
    result: list[str] = []
    for name, value in headers:
        if name == b"sec-websocket-protocol":
            for item in value.decode("latin-1").split(","):
                item = item.strip()
                if item:
                    result.append(item)
    return result


def websocket_scope(scope: Any) -> WebSocketScope:
    """Turn the scope the HTTP listener built for an upgrade request into a ``websocket`` scope.

    The HTTP side already set ``type``, ``scheme`` (ws/wss), path, headers (with trusted proxy
    headers applied), ``client``/``server`` and ``state``; here ``method`` goes, ``subprotocols``
    comes, and the extensions become ``websocket.http.response`` (denial responses) and ``tls``.
    """
    scope.pop("method", None)
    tls = scope.get("extensions", {}).get("tls")
    scope["type"] = "websocket"
    scope["subprotocols"] = subprotocols_of(scope["headers"])
    extensions: dict[str, Any] = {"websocket.http.response": {}}
    if tls is not None:
        extensions["tls"] = tls
    scope["extensions"] = extensions
    return scope  # the HTTPScope, changed in place into a WebSocketScope
