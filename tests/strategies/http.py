"""Hypothesis strategies for HTTP/1.1 requests (inspired by Daphne's, extended)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
_PATH_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;=:@"
_TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~"
_RESERVED = {"content-length", "transfer-encoding", "host", "connection", "upgrade", "expect", "te", "trailer"}


@dataclass
class GeneratedRequest:
    """A request and its expected parse."""

    method: str
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    chunked: bool
    wire: bytes


segment = st.text(_PATH_CHARS.replace("%", ""), min_size=1, max_size=20)
paths = st.lists(segment, max_size=6).map(lambda parts: "/" + "/".join(parts))
queries = st.text(_PATH_CHARS.replace("%", "") + "?/", max_size=40)
header_names = st.text(_TOKEN_CHARS, min_size=1, max_size=20).filter(lambda n: n.lower() not in _RESERVED)
header_values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60)
bodies = st.binary(max_size=2000)


@st.composite
def requests(draw: st.DrawFn) -> GeneratedRequest:
    """A valid HTTP/1.1 request with its serialisation."""
    method = draw(st.sampled_from(METHODS))
    path = draw(paths)
    query = draw(queries)
    target = (path + ("?" + query if query else "")).encode()
    headers = [(n.lower().encode(), v.encode()) for n, v in draw(st.lists(st.tuples(header_names, header_values), max_size=12))]
    body = draw(bodies) if method in ("POST", "PUT", "PATCH") else b""
    chunked = bool(body) and draw(st.booleans())
    lines = [b"%s %s HTTP/1.1" % (method.encode(), target), b"host: example.org"]
    lines += [b"%s: %s" % pair for pair in headers]
    if chunked:
        lines.append(b"transfer-encoding: chunked")
        sizes = draw(st.lists(st.integers(1, 300), max_size=10))
        pieces, rest = [], body
        for size in sizes:
            if not rest:
                break
            pieces.append(rest[:size])
            rest = rest[size:]
        if rest:
            pieces.append(rest)
        encoded = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    else:
        if body:
            lines.append(b"content-length: %d" % len(body))
        encoded = body
    wire = b"\r\n".join(lines) + b"\r\n\r\n" + encoded
    expected = [tuple(line.split(b": ", 1)) for line in lines[1:]]
    return GeneratedRequest(method, target, expected, body, chunked, wire)  # type: ignore[arg-type]


@st.composite
def splits(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut into pieces at arbitrary points."""
    if not data:
        return [data]
    cuts = sorted(draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=8, unique=True)))
    pieces, last = [], 0
    for cut in cuts:
        pieces.append(data[last:cut])
        last = cut
    pieces.append(data[last:])
    return [p for p in pieces if p]
