# -*- test-case-name: tests.unit.http2.test_asgi -*-
"""The ASGI side of an HTTP/2 stream, sans-IO: a request's header list read for the scope.

The scope itself is :func:`gateway.protocols.http.asgi.http_scope` (``http_version: "2"``) or,
for WebSocket over HTTP/2 (RFC 8441), :func:`gateway.protocols.websocket.asgi.websocket_scope`;
the response is checked by the HTTP/1.1 :class:`~gateway.protocols.http.asgi.ResponseState` in its
HTTP/2 mode. What is particular to HTTP/2 is how a request arrives: as pseudo-header fields
(``:method``, ``:scheme``, ``:authority``, ``:path``, ``:protocol``) before the regular ones
(``h2`` has checked their order, presence and form, RFC 9113 8.3), with ``cookie`` possibly split
in several fields (8.2.3), and the response head as a list of fields led by ``:status``.
"""

from __future__ import annotations

from gateway.protocols.http.core import Request

Headers = list[tuple[bytes, bytes]]

__all__ = ["H2Request", "read_request", "response_headers"]

_STATUS: dict[int, bytes] = {}


class H2Request(Request):
    """A request read from an HTTP/2 header list: a :class:`~gateway.protocols.http.core.Request`
    (``http_version`` ``"2"``, what the access log and the proxy resolution read), plus
    ``protocol``, the ``:protocol`` of an extended CONNECT (RFC 8441 4), and ``authority``."""

    __slots__ = ("authority", "protocol")

    def __init__(self, method: str, target: bytes, headers: Headers, authority: bytes | None, protocol: bytes | None) -> None:
        super().__init__(method, target, "2", headers, True, False, None)
        self.authority = authority
        self.protocol = protocol


def read_request(fields: Headers) -> H2Request:
    """Read a request's header list (as ``h2`` validated it) into an :class:`H2Request`.

    ASGI (www 2.5, "HTTP/2"): the pseudo-headers leave the list, and ``:authority`` becomes the
    ``host`` field in front (replacing one the client sent). Split ``cookie`` fields are joined
    with ``"; "`` into one (RFC 9113 8.2.3), as HTTP/1.1 would carry them.

    Raises:
        ValueError: ``:method`` or ``:path`` is missing (``h2`` lets neither happen), or the
            method is not ASCII.
    """
    method = path = authority = protocol = None
    headers: Headers = []
    cookies: list[bytes] | None = None
    for name, value in fields:
        if name[0] == 58:  # b":"
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":authority":
                authority = value
            elif name == b":protocol":
                protocol = value
        elif name == b"cookie":
            if cookies is None:
                cookies = [value]
                headers.append((b"cookie", value))
            else:
                cookies.append(value)
        elif name == b"host":
            if authority is None:
                headers.insert(0, (name, value))
        else:
            headers.append((name, value))
    if method is None:
        raise ValueError("the request has no :method")
    if cookies is not None and len(cookies) > 1:
        joined = b"; ".join(cookies)
        headers = [(b"cookie", joined) if name == b"cookie" else (name, value) for name, value in headers]
    if authority is not None:
        headers.insert(0, (b"host", authority))
    if path is None:
        if method != b"CONNECT" or protocol is not None:
            raise ValueError("the request has no :path")
        path = b""
    return H2Request(method.decode("ascii"), path, headers, authority, protocol)


def status_field(status: int) -> tuple[bytes, bytes]:
    """``(b":status", b"200")`` (cached)."""
    value = _STATUS.get(status)
    if value is None:
        value = _STATUS[status] = b"%d" % status
    return (b":status", value)


def response_headers(status: int, block: bytes, extra: Headers) -> Headers:
    """The response head as an HTTP/2 field list: ``:status`` first, then the application's fields
    (``block``: as :func:`~gateway.protocols.http.core.response_fields` encoded them in its HTTP/2
    mode, lower-case, without connection-specific fields), then ``extra`` (``server``, ``date``)."""
    headers = [status_field(status)]
    if block:
        for line in block.split(b"\r\n")[:-1]:
            name, _, value = line.partition(b": ")
            headers.append((name, value))
    if extra:
        headers.extend(extra)
    return headers
