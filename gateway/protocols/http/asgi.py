# -*- test-case-name: tests.unit.http.test_asgi -*-
"""The ASGI side of one HTTP request, sans-IO: the scope, and the order of response messages.

:class:`ResponseState` checks every message the application sends and says what to do with
it; it never touches a socket, so hypothesis can drive it with messages in any order.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.http.core import is_valid_header_name, is_valid_header_value

ASGI_VERSION = "3.0"
SPEC_VERSION = "2.5"

# Response states.
START = 0
BODY = 1
TRAILERS = 2
DONE = 3
_EXPECTED = {
    START: "http.response.start",
    BODY: "http.response.body",
    TRAILERS: "http.response.trailers",
    DONE: "nothing (the response is complete)",
}


class Start:
    """``http.response.start``: status, validated headers, and whether trailers follow."""

    __slots__ = ("status", "headers", "trailers", "has_server", "has_date")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], trailers: bool, has_server: bool, has_date: bool) -> None:
        self.status = status
        self.headers = headers
        self.trailers = trailers
        self.has_server = has_server
        self.has_date = has_date


class ResponseState:
    """Validates the application's response messages and their order.

    Each method takes the message and returns what the adapter should do, or raises
    :class:`LocalProtocolError` naming the message that was expected.
    """

    __slots__ = ("state", "trailers")

    def __init__(self) -> None:
        self.state = START
        self.trailers = False

    @property
    def started(self) -> bool:
        """Whether ``http.response.start`` was accepted."""
        return self.state != START

    @property
    def complete(self) -> bool:
        """Whether the whole response (with trailers, if announced) was sent."""
        return self.state == DONE

    def unexpected(self, message_type: Any) -> LocalProtocolError:
        """The error for a message that does not fit the current state."""
        return LocalProtocolError(f"Expected ASGI message '{_EXPECTED[self.state]}', but got {message_type!r}.")

    def start(self, message: Any) -> Start:
        """Accept ``http.response.start``."""
        if self.state != START:
            raise self.unexpected("http.response.start")
        status = message.get("status")
        if type(status) is not int or not 100 <= status <= 999:
            raise LocalProtocolError(f"http.response.start 'status' must be an int from 100 to 999, got {status!r}")
        if 100 <= status < 200:
            raise LocalProtocolError(f"http.response.start cannot send an informational status ({status})")
        headers, has_server, has_date = validate_headers(message.get("headers", ()))
        self.trailers = bool(message.get("trailers", False))
        self.state = BODY
        return Start(status, headers, self.trailers, has_server, has_date)

    def body(self, message: Any) -> tuple[bytes, bool]:
        """Accept ``http.response.body``; returns ``(body, more_body)``."""
        if self.state != BODY:
            raise self.unexpected("http.response.body")
        body = message_body(message, "http.response.body")
        more = bool(message.get("more_body", False))
        if not more:
            self.state = TRAILERS if self.trailers else DONE
        return body, more

    def pathsend(self, message: Any) -> str:
        """Accept ``http.response.pathsend``; returns the absolute path to send."""
        if self.state != BODY:
            raise self.unexpected("http.response.pathsend")
        path = message.get("path")
        if not isinstance(path, str) or not os.path.isabs(path):
            raise LocalProtocolError(f"http.response.pathsend 'path' must be an absolute path, got {path!r}")
        self.state = TRAILERS if self.trailers else DONE
        return path

    def trailer_fields(self, message: Any) -> tuple[list[tuple[bytes, bytes]], bool]:
        """Accept ``http.response.trailers``; returns ``(headers, more_trailers)``."""
        if self.state != TRAILERS:
            raise self.unexpected("http.response.trailers")
        headers, _, _ = validate_headers(message.get("headers", ()))
        more = bool(message.get("more_trailers", False))
        if not more:
            self.state = DONE
        return headers, more


def message_body(message: Any, kind: str) -> bytes:
    """The ``body`` of a response body message (``b""`` when absent; bytearray and memoryview
    are copied to bytes); anything else is a :class:`LocalProtocolError` naming ``kind``."""
    body = message.get("body", b"")
    if type(body) is bytes:
        return body  # type: ignore[no-any-return]
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
) -> dict[str, Any]:
    """Build an ASGI ``http`` scope (www spec 2.5).

    ``path`` and ``raw_path`` include ``root_path`` (as the current spec and Uvicorn do), so
    routers strip it at the outermost level.
    """
    path = decode_path(raw_path)
    if root_path:
        path = root_path + path
        raw_path = root_path.encode("utf-8") + raw_path
    scope = {
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
