# -*- test-case-name: tests.unit.http.test_asgi -*-
"""The ASGI side of one HTTP request, sans-IO: the scope, and the order of response messages.

:class:`ResponseState` checks every message the application sends and says what to do with
it; it never touches a socket, so hypothesis can drive it with messages in any order.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Final, Literal
from urllib.parse import unquote

from gateway.asgi.types import HTTPScope
from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.http.core import ResponseFields, is_valid_header_name, is_valid_header_value, response_fields

ASGI_VERSION = "3.0"
SPEC_VERSION = "2.5"

# Response states.
AWAITING_START = 0
AWAITING_BODY = 1
AWAITING_TRAILERS = 2
DONE = 3
_EXPECTED = {
    AWAITING_START: "http.response.start",
    AWAITING_BODY: "http.response.body",
    AWAITING_TRAILERS: "http.response.trailers",
    DONE: "nothing (the response is complete)",
}


# The actions of ResponseState.app_send, for the adapter: tuples tagged with the message type
# (one is built per message; a tuple costs a fraction of an object with an __init__).
START: Final = "http.response.start"
BODY: Final = "http.response.body"
TRAILERS: Final = "http.response.trailers"
PATHSEND: Final = "http.response.pathsend"
EARLY_HINT: Final = "http.response.early_hint"
#: ``(START, status, fields, trailers)``: the status, the header fields checked and encoded
#: (:data:`~gateway.protocols.http.core.ResponseFields`), and whether trailers follow.
Start = tuple[Literal["http.response.start"], int, ResponseFields, bool]
#: ``(BODY, body, more)``: a piece of the body; the last one when ``more`` is false.
Body = tuple[Literal["http.response.body"], bytes, bool]
#: ``(TRAILERS, headers, more)``: trailer fields; the last ones when ``more`` is false.
Trailers = tuple[Literal["http.response.trailers"], list[tuple[bytes, bytes]], bool]
#: ``(PATHSEND, path)``: the rest of the body is the file at ``path`` (absolute).
PathSend = tuple[Literal["http.response.pathsend"], str]
#: ``(EARLY_HINT, fields)``: a ``103 Early Hints`` response with these ``link`` fields.
EarlyHint = tuple[Literal["http.response.early_hint"], list[tuple[bytes, bytes]]]
Action = Start | Body | Trailers | PathSend | EarlyHint


class ResponseState:
    """The message-order state machine of one HTTP response (ASGI www 2.5)::

        START ──early_hint──> START
        START ──start──> BODY ──body(more)──> BODY ──last body / pathsend──> DONE
                                                   └──(trailers announced)──> TRAILERS ──last trailers──> DONE

    :meth:`app_send` checks every message the application sends and returns the action for the
    adapter, or raises :class:`LocalProtocolError` naming the message that was expected (and
    changes nothing).

    Args:
        http2: the response goes out over HTTP/2: its header fields are encoded without the
            connection-specific ones (:func:`~gateway.protocols.http.core.response_fields`).
    """

    __slots__ = ("complete", "http2", "started", "state", "trailers")

    def __init__(self, http2: bool = False) -> None:
        self.http2 = http2
        self.state = AWAITING_START
        self.trailers = False
        #: Whether ``http.response.start`` was accepted.
        self.started = False
        #: Whether the whole response (with trailers, if announced) was sent.
        self.complete = False

    def app_send(self, message: Any) -> Action:
        """Check one message from the application; returns what to do with it."""
        try:
            kind = message["type"]
        except (TypeError, KeyError, IndexError):
            raise LocalProtocolError(f"an ASGI message must be a dict with a 'type', got {message!r}") from None
        state = self.state
        if kind == BODY:
            if state != AWAITING_BODY:
                raise self.unexpected(kind)
            body = message_body(message, kind)
            more = bool(message.get("more_body", False))
            if not more:
                if self.trailers:
                    self.state = AWAITING_TRAILERS
                else:
                    self.state = DONE
                    self.complete = True
            return BODY, body, more
        if kind == START:
            if state != AWAITING_START:
                raise self.unexpected(kind)
            status = message.get("status")
            if type(status) is not int or not 200 <= status <= 999:
                if type(status) is int and 100 <= status < 200:
                    raise LocalProtocolError(f"http.response.start cannot send an informational status ({status})")
                raise LocalProtocolError(f"http.response.start 'status' must be an int from 100 to 999, got {status!r}")
            fields = response_fields(message.get("headers", ()), self.http2)
            trailers = self.trailers = bool(message.get("trailers", False))
            self.state = AWAITING_BODY
            self.started = True
            return START, status, fields, trailers
        if kind == TRAILERS:
            if state != AWAITING_TRAILERS:
                raise self.unexpected(kind)
            headers, _, _ = validate_headers(message.get("headers", ()))
            more = bool(message.get("more_trailers", False))
            if not more:
                self.state = DONE
                self.complete = True
            return TRAILERS, headers, more
        if kind == PATHSEND:
            if state != AWAITING_BODY:
                raise self.unexpected(kind)
            path = message.get("path")
            if not isinstance(path, str) or not os.path.isabs(path):
                raise LocalProtocolError(f"http.response.pathsend 'path' must be an absolute path, got {path!r}")
            if self.trailers:
                self.state = AWAITING_TRAILERS
            else:
                self.state = DONE
                self.complete = True
            return PATHSEND, path
        if kind == EARLY_HINT:
            if state != AWAITING_START:
                raise self.unexpected(kind)
            return EARLY_HINT, early_hint_fields(message)
        raise self.unexpected(kind)

    def unexpected(self, message_type: Any) -> LocalProtocolError:
        """The error for a message that does not fit the current state."""
        return LocalProtocolError(f"Expected ASGI message '{_EXPECTED[self.state]}', but got {message_type!r}.")


def early_hint_fields(message: Any) -> list[tuple[bytes, bytes]]:
    """The ``link`` fields of an ``http.response.early_hint`` message (its ``links``: byte strings,
    each a ``Link`` field value, RFC 8297)."""
    links = message.get("links")
    if isinstance(links, (bytes, str)) or links is None:
        raise LocalProtocolError(f"http.response.early_hint 'links' must be a list of bytes, got {links!r}")
    fields = []
    try:
        for link in links:
            if type(link) is not bytes:
                raise LocalProtocolError(f"http.response.early_hint links must be bytes, got {type(link).__name__}")
            if not is_valid_header_value(link):
                raise LocalProtocolError("invalid http.response.early_hint link: CR, LF and NUL are not allowed")
            fields.append((b"link", link))
    except TypeError:
        raise LocalProtocolError(f"http.response.early_hint 'links' must be a list of bytes, got {links!r}") from None
    return fields


def message_body(message: Any, kind: str) -> bytes:
    """The ``body`` of a response body message (``b""`` when absent; bytearray and memoryview
    are copied to bytes); anything else is a :class:`LocalProtocolError` naming ``kind``."""
    body = message.get("body", b"")
    if type(body) is bytes:
        return body
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    raise LocalProtocolError(f"{kind} 'body' must be bytes, got {type(body).__name__}")


def validate_headers(headers: Iterable[Any]) -> tuple[list[tuple[bytes, bytes]], bool, bool]:
    """Check application headers; returns ``(pairs, has_server, has_date)``.

    Names are lower-cased. A name that is not a token, or a value with CR, LF or NUL (which
    would split the response), is refused.
    """
    result: list[tuple[bytes, bytes]] = []
    has_server = has_date = False
    try:
        for name, value in headers:
            if type(name) is not bytes or type(value) is not bytes:
                raise LocalProtocolError(
                    f"header names and values must be bytes, got {type(name).__name__} {name!r}: {type(value).__name__}"
                )
            name = name.lower()
            if not is_valid_header_name(name):
                raise LocalProtocolError(f"invalid header name {name!r}")
            if not is_valid_header_value(value):
                raise LocalProtocolError(f"invalid header value for {name.decode('latin-1')}: CR, LF and NUL are not allowed")
            if name == b"server":
                has_server = True
            elif name == b"date":
                has_date = True
            result.append((name, value))
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(f"headers must be an iterable of [name, value] byte pairs: {exc}") from None
    return result, has_server, has_date


def decode_path(raw_path: bytes) -> str:
    """Percent-decode a request path into text (ASGI ``path``).

    Raises:
        ValueError: the raw path has bytes outside ASCII.
    """
    text = raw_path.decode("ascii")
    return unquote(text) if "%" in text else text


def http_scope(
    *,
    method: str,
    http_version: str,
    scheme: str,
    raw_path: bytes,
    query_string: bytes,
    root_path: str,
    headers: list[tuple[bytes, bytes]],
    client: tuple[str, int] | None,
    server: tuple[str, int | None] | None,
    state: dict[str, Any] | None,
    extensions: dict[str, Any],
) -> HTTPScope:
    """Build an ASGI ``http`` scope (www spec 2.5).

    ``path`` and ``raw_path`` include ``root_path`` (as the current spec and Uvicorn do), so
    routers strip it at the outermost level.
    """
    path = decode_path(raw_path)
    if root_path:
        path = root_path + path
        raw_path = root_path.encode("utf-8") + raw_path
    scope: HTTPScope = {
        "type": "http",
        "asgi": {"version": ASGI_VERSION, "spec_version": SPEC_VERSION},
        "http_version": http_version,
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path,
        "query_string": query_string,
        "root_path": root_path,
        "headers": headers,
        "client": client,
        "server": server,
        "extensions": extensions,
    }
    if state is not None:
        scope["state"] = state.copy()
    return scope
