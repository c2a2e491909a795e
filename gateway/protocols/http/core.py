# -*- test-case-name: tests.unit.http.test_core -*-
"""HTTP/1.1 server connection, sans-IO, parsing with httptools (llhttp).

Bytes in, events out; responses in, bytes out. No sockets, no clocks::

    conn = HTTPConnection(limits)
    conn.receive_data(data)              # b"" means the peer closed its side
    for event in conn.events_received(): # Request, Data, EndOfMessage
        ...
    conn.start_response(200, headers)    # then send_body(...), end_response()
    transport.write(conn.data_to_send())

Peer errors raise :class:`~gateway.protocols.errors.RemoteProtocolError` whose ``hint`` is the
HTTP status to answer with; after one, the connection must close:

* 400: malformed request; among them every framing two parsers could read differently (RFC 9112
  6.3, 11.2): Content-Length with Transfer-Encoding, a repeated or non-numeric Content-Length,
  chunked not the final coding (or repeated), Transfer-Encoding in an HTTP/1.0 request, obs-fold
  (5.2), whitespace before a colon (5.1), bare CR or LF;
* 413: a body larger than ``max_body_size`` (a Content-Length over it, before any body);
* 414: a request target longer than ``max_request_line``;
* 431: more than ``max_headers`` fields, or a head larger than ``max_header_size``;
* 501: a transfer coding other than chunked (``gzip, chunked``): we do not decode them (6.1);
* 505: an HTTP version other than 1.0 and 1.1.

Misuse by our side (a body longer than its Content-Length, say) raises
:class:`~gateway.protocols.errors.LocalProtocolError`.
"""

from __future__ import annotations

import re
from typing import Any
from dataclasses import dataclass

import httptools

from gateway.protocols.errors import LocalProtocolError, RemoteProtocolError

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class HTTPLimits:
    """Limits enforced while parsing requests (all in bytes or counts)."""

    #: Longest request target (the URL in the request line); longer gives 414.
    max_request_line: int = 8 * 1024
    #: Largest request head (request line and header fields); larger gives 431.
    max_header_size: int = 64 * 1024
    #: Most header fields in one request; more gives 431.
    max_headers: int = 100
    #: Largest request body; larger gives 413 (checked against Content-Length up front).
    max_body_size: int = 10 * 1024 * 1024


class Request:
    """A request head was received.

    Attributes:
        method: the method as text (``"GET"``).
        target: the raw request target (``b"/a%20b?x=1"``).
        path: the target up to ``?`` (still percent-encoded).
        query: the bytes after ``?`` (empty when none).
        http_version: ``"1.0"`` or ``"1.1"``.
        headers: ``(name, value)`` pairs, names lower-cased, in the order received.
        keep_alive: whether the connection may carry another request after this one.
        expect_continue: the client sent ``Expect: 100-continue``.
        upgrade: the lower-cased ``Upgrade`` token when the client asked to switch protocols.
        raw_head: for upgrade requests, the exact bytes of the request head as received.
    """

    __slots__ = ("method", "target", "path", "query", "http_version", "headers", "keep_alive",
                 "expect_continue", "upgrade", "raw_head")

    def __init__(self, method: str, target: bytes, http_version: str, headers: Headers, keep_alive: bool,
                 expect_continue: bool, upgrade: bytes | None) -> None:
        self.method = method
        self.target = target
        path, _, query = target.partition(b"?")
        self.path = path
        self.query = query
        self.http_version = http_version
        self.headers = headers
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.upgrade = upgrade
        self.raw_head: bytes | None = None

    def __repr__(self) -> str:
        return f"Request({self.method} {self.target!r} HTTP/{self.http_version})"


class Data:
    """A piece of the request body."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Data) and other.data == self.data

    def __repr__(self) -> str:
        return f"Data({self.data!r})"


class EndOfMessage:
    """The request body (possibly empty) is complete."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EndOfMessage)

    def __repr__(self) -> str:
        return "EndOfMessage()"


END_OF_MESSAGE = EndOfMessage()
Event = Request | Data | EndOfMessage

# RFC 9110 5.1: field names are tokens; 5.5: values must not contain CR, LF or NUL.
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE = re.compile(rb"[\x00\r\n]")
_STATUS_LINES: dict[int, bytes] = {}
#: Request fields the parse takes note of (see on_header).
_NOTED_FIELDS = frozenset((b"expect", b"upgrade", b"transfer-encoding"))
_NO_BODY_STATUS = frozenset({204, 304})


def status_line(status: int) -> bytes:
    """``HTTP/1.1 200 OK\\r\\n`` for a status code (cached)."""
    line = _STATUS_LINES.get(status)
    if line is None:
        from http import HTTPStatus

        try:
            phrase = HTTPStatus(status).phrase.encode()
        except ValueError:
            phrase = b""
        line = b"HTTP/1.1 %d %s\r\n" % (status, phrase)
        _STATUS_LINES[status] = line
    return line


class _AfterHead:
    """The callbacks of a parser restarted inside a request's body (see
    :meth:`HTTPConnection._resume_body`): those of the made-up head it is fed first are dropped,
    everything after it goes to the connection. (The connection's own callbacks stay free of the
    check: this is the rare path.)"""

    __slots__ = ("conn", "head")

    def __init__(self, conn: HTTPConnection) -> None:
        self.conn = conn
        self.head = True

    def on_message_begin(self) -> None:
        if not self.head:
            self.conn.on_message_begin()

    def on_url(self, url: bytes) -> None:
        if not self.head:
            self.conn.on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head:
            self.conn.on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.head:
            self.head = False
        else:
            self.conn.on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self.conn.on_body(body)

    def on_message_complete(self) -> None:
        self.conn.on_message_complete()


class _ReleasedParser:
    """Stands in for the parser of a released :class:`HTTPConnection`."""

    __slots__ = ()

    def feed_data(self, data: bytes) -> None:
        raise RemoteProtocolError("the connection is closed")

    def should_keep_alive(self) -> bool:
        return False


_RELEASED = _ReleasedParser()


class _LastRequest(Exception):
    """Raised from a parser callback to stop parsing after the connection's last request."""


class HTTPConnection:
    """The server side of one HTTP/1.1 connection.

    Args:
        limits: parsing limits; defaults are safe for the public internet.
    """

    def __init__(self, limits: HTTPLimits | None = None) -> None:
        self.limits = limits or HTTPLimits()
        self._parser = httptools.HttpRequestParser(self)
        self._events: list[Event] = []
        self._out: list[bytes] = []
        # Request parsing state.
        self._url = b""
        self._headers: Headers = []
        self._head_size = 0
        self._body_size = 0
        self.in_message = False
        self._expect_continue = False
        self._upgrade: bytes | None = None
        # The header list of the message that has a Transfer-Encoding field (compared by
        # identity: each message gets a new list, so nothing needs resetting per message).
        self._transfer_encoding: Headers | None = None
        self._keep_alive = True
        # A request asked to upgrade but has a body: llhttp stops after its head (see
        # _resume_body); the head of its framing, to parse the body as HTTP/1.1 after all.
        self._body_head: bytes | None = None
        # Raw bytes of the current message head, kept so an upgrade can be handed to another
        # protocol (autobahn) exactly as received. Only valid when the message began at the
        # start of a receive_data() chunk (always true unless requests are pipelined).
        self._chunks: list[bytes] = []
        self._chunks_valid = True
        self._completed_in_chunk = False
        # A request without keep-alive was completed: nothing after it is parsed.
        self._after_last = False
        self.upgraded = False
        self.trailing_data = b""
        self.closed = False
        # Response state.
        self._head_request = False
        self._chunked = False
        self._remaining: int | None = None
        self._response_keep_alive = True

    # -- receiving -----------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer (``b""`` when it closed its side).

        Then call :meth:`events_received`. After an upgrade, bytes are kept in
        ``trailing_data`` for the next protocol instead of being parsed.

        Raises:
            RemoteProtocolError: the bytes are not valid HTTP/1.1 or break a limit; ``hint``
                is the status to answer with. The connection must then be closed.
        """
        if self.upgraded:
            self.trailing_data += data
            return
        if self._after_last:
            return
        if not data:
            if self.in_message:
                raise RemoteProtocolError("connection closed in the middle of a request", hint=400)
            return
        if self.in_message:
            self._chunks.append(data)
        else:
            self._chunks = [data]
            self._chunks_valid = True
        self._completed_in_chunk = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0] if exc.args else len(data)
            if self._body_head is not None:
                self._resume_body(data[offset:])
            else:
                self._upgraded(data, offset)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _LastRequest):
                return
            if isinstance(cause, RemoteProtocolError):
                raise cause from None
            raise RemoteProtocolError(f"invalid request: {cause or exc}", hint=400) from None
        except httptools.HttpParserInvalidMethodError:
            raise RemoteProtocolError("invalid request method", hint=400) from None
        except httptools.HttpParserInvalidURLError:
            raise RemoteProtocolError("invalid request target", hint=400) from None
        except httptools.HttpParserError as exc:
            if self._after_last:
                # Bytes after a request that closes the connection (HTTP/1.0, or
                # ``Connection: close``): that request is still served; the rest is ignored.
                return
            raise RemoteProtocolError(f"malformed request: {_describe(exc)}", hint=400) from None

    def release(self) -> None:
        """The connection is over (closed, or handed to another protocol): drop the parser.

        The parser holds this object's callbacks, a reference cycle. Breaking it lets reference
        counting free both at once; left to the cyclic garbage collector, thousands of closed
        connections pile up between its full collections, each of which then stalls the event
        loop for tens of milliseconds. Data received afterwards is a :class:`RemoteProtocolError`.
        """
        self._parser = _RELEASED  # type: ignore[assignment]

    def cancel_upgrade(self) -> None:
        """Serve an upgrade request as a plain request instead (``Upgrade: h2c``, say).

        Parsing resumes with a fresh parser on the bytes that followed the request head. Then
        call :meth:`events_received`.
        """
        if not self.upgraded:
            return
        self.upgraded = False
        self._parser = httptools.HttpRequestParser(self)
        rest, self.trailing_data = self.trailing_data, b""
        if rest:
            self.receive_data(rest)

    def _resume_body(self, rest: bytes) -> None:
        """Parse the body of a request that asked to upgrade (and was not upgraded: a request with
        a body never is, RFC 9110 7.8 lets the server ignore Upgrade): llhttp stopped after its
        head and reported it complete. A fresh parser is put in the same place by feeding it a
        head that frames the body the same way (its callbacks are not passed on), then the rest."""
        head, self._body_head = self._body_head, None
        if self._events and self._events[-1] is END_OF_MESSAGE:
            self._events.pop()
        self._after_last = False
        self._parser = httptools.HttpRequestParser(_AfterHead(self))
        self._parser.feed_data(head)  # type: ignore[arg-type]
        self.in_message = True
        self._chunks = []
        if rest:
            self.receive_data(rest)

    def events_received(self) -> list[Event]:
        """Return (and forget) the events parsed so far, in order."""
        events = self._events
        self._events = []
        return events

    def _upgraded(self, data: bytes, offset: int) -> None:
        self.upgraded = True
        self.trailing_data = data[offset:]
        head = b"".join(self._chunks)
        consumed = len(head) - (len(data) - offset)
        for event in reversed(self._events):
            if isinstance(event, Request):
                event.raw_head = head[:consumed] if self._chunks_valid else None
                break

    # httptools callbacks (called from feed_data) -------------------------------------

    def on_message_begin(self) -> None:
        if self._completed_in_chunk:
            # A message began right after another one inside one chunk (pipelining): its raw
            # head does not start at the chunk boundary.
            self._chunks_valid = False
        self.in_message = True
        self._url = b""
        self._headers = []
        self._head_size = 0
        self._body_size = 0
        self._expect_continue = False
        self._upgrade = None

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.limits.max_request_line:
            raise RemoteProtocolError("request target too long", hint=414)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.limits.max_header_size:
            raise RemoteProtocolError("request header fields too large", hint=431)
        headers = self._headers
        if len(headers) >= self.limits.max_headers:
            raise RemoteProtocolError("too many request header fields", hint=431)
        name = name.lower()
        if value and value[-1] in (32, 9):
            # RFC 9110 5.5: trailing whitespace is not part of the value (llhttp keeps it).
            value = value.rstrip(b" \t")
        headers.append((name, value))
        if name == b"content-length":
            if int(value) > self.limits.max_body_size:
                raise RemoteProtocolError("request body too large", hint=413)
        elif name in _NOTED_FIELDS:  # one set lookup for the other fields, not three comparisons
            if name == b"expect":
                if value.lower() == b"100-continue":
                    self._expect_continue = True
            elif name == b"upgrade":
                self._upgrade = value.lower()
            else:
                self._transfer_encoding = headers

    def on_headers_complete(self) -> None:
        parser = self._parser
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise RemoteProtocolError(f"unsupported HTTP version {version}", hint=505)
        headers = self._headers
        if self._transfer_encoding is headers:
            _check_transfer_codings(headers, version)
        keep_alive = parser.should_keep_alive()
        if keep_alive and version == "1.0" and _close_option(headers):
            keep_alive = False  # llhttp lets keep-alive win over close in HTTP/1.0 (RFC 9112 9.3: close wins)
        self._keep_alive = keep_alive
        upgrade = self._upgrade if parser.should_upgrade() else None
        if upgrade is not None and upgrade != b"websocket" and version == "1.1":
            # An upgrade with a body is served as a plain request (see _resume_body).
            length = 0
            chunked = False
            for name, value in headers:
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
            if length or chunked:
                upgrade = None
                framing = b"transfer-encoding: chunked\r\n" if chunked else b"content-length: %d\r\n" % length
                close = b"" if keep_alive else b"connection: close\r\n"
                self._body_head = b"POST / HTTP/1.1\r\n" + framing + close + b"\r\n"
        self._events.append(
            Request(parser.get_method().decode("ascii"), self._url, version, headers,
                    keep_alive, self._expect_continue, upgrade)
        )

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self.limits.max_body_size:
            raise RemoteProtocolError("request body too large", hint=413)
        self._events.append(Data(body))

    def on_message_complete(self) -> None:
        self.in_message = False
        self._completed_in_chunk = True
        self._events.append(END_OF_MESSAGE)
        if not self._keep_alive:
            self._after_last = True
            if self._parser.should_keep_alive():
                # We close where llhttp would go on (HTTP/1.0 with keep-alive and close): stop
                # it before it parses what follows.
                raise _LastRequest()

    # -- sending -------------------------------------------------------------------------

    def send_continue(self) -> None:
        """Queue ``100 Continue`` (for ``Expect: 100-continue``); then call :meth:`data_to_send`."""
        self._out.append(b"HTTP/1.1 100 Continue\r\n\r\n")

    def send_informational(self, status: int, headers: Headers) -> None:
        """Queue an informational (1xx) response such as ``103 Early Hints``; then call :meth:`data_to_send`."""
        self._out.append(status_line(status) + b"".join(b"%s: %s\r\n" % pair for pair in headers) + b"\r\n")

    def start_response(self, request: Request, status: int, fields: ResponseFields | Headers, *, extra: bytes = b"") -> bool:
        """Queue the status line and header fields of the response to ``request``.

        The framing is chosen here: the application's ``Content-Length`` when it gave one,
        otherwise chunked transfer coding for HTTP/1.1 (or the connection's end for
        HTTP/1.0). ``Connection: close`` is added when the connection will not be kept alive.

        Args:
            request: the request being answered (for HEAD, the version and keep-alive).
            status: the status code.
            fields: the application's header fields, checked and encoded by
                :func:`response_fields` (or ``(name, value)`` pairs, which are checked here).
            extra: pre-encoded header lines to add (``Date``, ``Server``), each ending in CRLF.

        Returns:
            Whether the connection can be kept alive after this response.

        Raises:
            LocalProtocolError: the header fields are invalid (only when given as pairs).
        """
        if fields.__class__ is not tuple:
            fields = response_fields(fields)
        block, length, close, _, _ = fields
        self._head_request = request.method == "HEAD"
        keep_alive = request.keep_alive and not close
        parts = [status_line(status), block]
        if extra:
            parts.append(extra)
        no_body = status in _NO_BODY_STATUS or status < 200
        if no_body:
            self._chunked = False
            self._remaining = 0
        elif length is not None:
            self._chunked = False
            self._remaining = length
        elif request.http_version == "1.1":
            self._chunked = True
            self._remaining = None
            parts.append(b"transfer-encoding: chunked\r\n")
        else:
            # HTTP/1.0 without a length: the body ends when the connection does.
            self._chunked = False
            self._remaining = None
            keep_alive = False
        if not keep_alive:
            parts.append(b"connection: close\r\n")
        elif request.http_version == "1.0":
            parts.append(b"connection: keep-alive\r\n")
        parts.append(b"\r\n")
        self._out.append(b"".join(parts))
        self._response_keep_alive = keep_alive
        return keep_alive

    def send_body(self, data: bytes) -> None:
        """Queue a piece of the response body; then call :meth:`data_to_send`.

        Raises:
            LocalProtocolError: more bytes than the response's Content-Length.
        """
        if not data:
            return
        if self._remaining is not None:
            if len(data) > self._remaining:
                raise LocalProtocolError(
                    f"response body longer than its Content-Length (by {len(data) - self._remaining} bytes)"
                )
            self._remaining -= len(data)
        if self._head_request:
            return
        if self._chunked:
            self._out.append(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            self._out.append(data)

    def send_chunk_header(self, size: int) -> None:
        """Queue the framing before ``size`` body bytes that are written by other means (sendfile)."""
        if self._remaining is not None:
            if size > self._remaining:
                raise LocalProtocolError("response body longer than its Content-Length")
            self._remaining -= size
        if self._chunked and size and not self._head_request:
            self._out.append(b"%x\r\n" % size)

    def send_chunk_footer(self, size: int) -> None:
        """Queue the framing after ``size`` body bytes written by other means."""
        if self._chunked and size and not self._head_request:
            self._out.append(b"\r\n")

    def end_response(self, trailers: Headers | None = None) -> bool:
        """Finish the response (with trailer fields when the body is chunked).

        Returns:
            Whether the connection can be kept alive for another request.

        Raises:
            LocalProtocolError: fewer bytes were sent than the response's Content-Length; the
                connection must be closed (the client would wait for the rest).
        """
        if self._remaining:
            raise LocalProtocolError(f"response body shorter than its Content-Length by {self._remaining} bytes")
        if self._chunked and not self._head_request:
            if trailers:
                lines = b"".join(b"%s: %s\r\n" % pair for pair in trailers)
                self._out.append(b"0\r\n" + lines + b"\r\n")
            else:
                self._out.append(b"0\r\n\r\n")
        if self._remaining is None and not self._chunked:
            self._response_keep_alive = False
        return self._response_keep_alive

    @property
    def suppresses_body(self) -> bool:
        """Whether body bytes are dropped (the response to a HEAD request)."""
        return self._head_request

    def data_to_send(self) -> bytes:
        """Return (and forget) the bytes queued for the peer."""
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)


def error_response(status: int, message: str, *, extra: bytes = b"") -> bytes:
    """A complete plain-text error response that closes the connection."""
    body = f"{status} {message}\n".encode("utf-8", "replace")
    return (
        status_line(status)
        + b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\nconnection: close\r\n" % len(body)
        + extra
        + b"\r\n"
        + body
    )


#: Field names already found valid (applications send the same few on every response); bounded.
_VALID_NAMES: set[bytes] = set()


def is_valid_header_name(name: bytes) -> bool:
    """Whether ``name`` is a valid field name (an RFC 9110 token)."""
    if name in _VALID_NAMES:
        return True
    if _TOKEN.match(name) is None:
        return False
    if len(_VALID_NAMES) < 512:
        _VALID_NAMES.add(name)
    return True


def is_valid_header_value(value: bytes) -> bool:
    """Whether ``value`` is safe to send (no CR, LF or NUL: no response splitting)."""
    return _BAD_VALUE.search(value) is None


#: An application's response header fields, checked and encoded in one pass by
#: :func:`response_fields`: ``(block, content_length, close, has_server, has_date)``, where
#: ``block`` holds the fields as header lines (names lower-cased, each line ending in CRLF, without
#: ``Transfer-Encoding``: the connection frames the body itself), ``content_length`` is the
#: ``Content-Length`` the application gave (or None), ``close`` whether it asked for
#: ``Connection: close``, ``has_server``/``has_date`` whether it set those itself. (A tuple: one is
#: built per response.)
ResponseFields = tuple[bytes, int | None, bool, bool, bool]


#: Fields that describe one connection (RFC 9113 8.2.2): an HTTP/2 response must not carry them.
CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})


def response_fields(headers: Any, http2: bool = False) -> ResponseFields:
    """Check an application's response header fields and encode them (one pass over them).

    ``headers`` is an iterable of ``[name, value]`` byte pairs. A name that is not a token, or a
    value with CR, LF or NUL (which would split the response), is refused, as is a
    ``Content-Length`` that is not a number. For an HTTP/2 response (``http2``) the
    connection-specific fields (:data:`CONNECTION_SPECIFIC`) are left out (``close`` still says
    whether the application asked to close).

    Raises:
        LocalProtocolError: naming the first invalid field.
    """
    lines = []
    length: int | None = None
    close = has_server = has_date = False
    try:
        for name, value in headers:
            if type(name) is not bytes or type(value) is not bytes:
                raise LocalProtocolError(
                    f"header names and values must be bytes, got {type(name).__name__} {name!r}: {type(value).__name__}"
                )
            name = name.lower()
            if name not in _VALID_NAMES and not is_valid_header_name(name):
                raise LocalProtocolError(f"invalid header name {name!r}")
            if _BAD_VALUE.search(value) is not None:
                raise LocalProtocolError(f"invalid header value for {name.decode('latin-1')}: CR, LF and NUL are not allowed")
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise LocalProtocolError(f"invalid Content-Length header {value!r}") from None
                if length < 0:
                    raise LocalProtocolError(f"invalid Content-Length header {value!r}")
            elif name == b"connection":
                if b"close" in value.lower():
                    close = True
                if http2:
                    continue
            elif name == b"transfer-encoding":
                # We frame the body ourselves; an application's transfer-encoding would lie.
                continue
            elif name == b"server":
                has_server = True
            elif name == b"date":
                has_date = True
            elif http2 and name in CONNECTION_SPECIFIC:
                continue
            lines.append(b"%s: %s\r\n" % (name, value))
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(f"headers must be an iterable of [name, value] byte pairs: {exc}") from None
    return b"".join(lines), length, close, has_server, has_date


def _check_transfer_codings(headers: Headers, version: str) -> None:
    """RFC 9112 6.1 and 6.3 for a request with Transfer-Encoding (llhttp refuses chunked not last
    or repeated, but would take the codings before chunked as absent).

    Raises:
        RemoteProtocolError: 400 in HTTP/1.0 or unless chunked is the final coding, once; 501
            when other codings come before it.
    """
    if version == "1.0":
        raise RemoteProtocolError("Transfer-Encoding in an HTTP/1.0 request", hint=400)
    codings = [coding for name, value in headers if name == b"transfer-encoding"
               for coding in (element.strip(b" \t").lower() for element in value.split(b",")) if coding]
    if codings[-1:] != [b"chunked"] or codings.count(b"chunked") > 1:
        raise RemoteProtocolError("chunked must be the final transfer coding, once", hint=400)
    if len(codings) > 1:
        raise RemoteProtocolError("transfer codings other than chunked are not supported", hint=501)


def _close_option(headers: Headers) -> bool:
    """Whether a Connection field carries the ``close`` option."""
    return any(name == b"connection" and b"close" in [option.strip(b" \t").lower() for option in value.split(b",")]
               for name, value in headers)


def _describe(exc: Exception) -> str:
    text = str(exc)
    return text or type(exc).__name__
