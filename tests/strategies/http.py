"""Hypothesis strategies for HTTP/1.1 requests (inspired by Daphne's, extended).

* :func:`requests`: valid requests with their expected parse; header values carry interior
  spaces and tabs, optional whitespace around them, and obs-text (bytes 0x80-0xFF), which
  RFC 9110 5.5 allows in field values.
* :func:`framed_requests`: the framing header fields (Content-Length, Transfer-Encoding,
  Connection) in every combination (repeated, conflicting, lists, case variants, chunked not
  last, unknown codings, obs-fold, whitespace before the colon, HTTP/1.0 and 1.1), each with the
  outcome :mod:`gateway.protocols.http.core` must give: the body and keep-alive it frames, or the
  status of the one :class:`~gateway.protocols.errors.RemoteProtocolError` it raises.
* :func:`smuggling_requests`: requests whose framing two parsers could read differently (the
  classic CL.TE, TE.CL and TE.TE disguises); the core must refuse every one.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
_PATH_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;=:@"
_TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~"
_RESERVED = {"content-length", "transfer-encoding", "host", "connection", "upgrade", "expect", "te", "trailer"}
#: A request that must be parsed right after a framed one: it shows where the parser thinks the
#: first request's body ended.
NEXT_REQUEST = b"GET /next HTTP/1.1\r\nHost: example.org\r\n\r\n"


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
#: field-vchar (RFC 9110 5.5): visible ASCII and obs-text.
_FIELD_VCHAR = st.one_of(st.integers(0x21, 0x7E), st.integers(0x80, 0xFF)).map(lambda b: bytes((b,)))
_OWS = st.sampled_from([b"", b" ", b"  ", b"\t", b" \t "])


@st.composite
def field_values(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """``(as sent, as parsed)``: a field value with interior spaces and tabs and obs-text, with
    optional whitespace around it on the wire (not part of the value)."""
    words = draw(st.lists(st.lists(_FIELD_VCHAR, min_size=1, max_size=12).map(b"".join), max_size=5))
    gaps = [draw(st.sampled_from([b" ", b"\t", b"  ", b" \t"])) for _ in words[1:]]
    value = words[0] if words else b""
    for gap, word in zip(gaps, words[1:]):
        value += gap + word
    return draw(_OWS) + value + draw(_OWS), value


bodies = st.binary(max_size=2000)


def chunked_encoding(body: bytes, sizes: list[int]) -> bytes:
    """``body`` in chunks of the given sizes (the rest in one more), then the last chunk."""
    pieces, rest = [], body
    for size in sizes:
        if not rest:
            break
        pieces.append(rest[:size])
        rest = rest[size:]
    if rest:
        pieces.append(rest)
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


@st.composite
def requests(draw: st.DrawFn) -> GeneratedRequest:
    """A valid HTTP/1.1 request with its serialisation."""
    method = draw(st.sampled_from(METHODS))
    path = draw(paths)
    query = draw(queries)
    target = (path + ("?" + query if query else "")).encode()
    fields = draw(st.lists(st.tuples(header_names, field_values()), max_size=12))
    body = draw(bodies) if method in ("POST", "PUT", "PATCH") else b""
    chunked = bool(body) and draw(st.booleans())
    lines = [b"%s %s HTTP/1.1" % (method.encode(), target), b"host: example.org"]
    expected = [(b"host", b"example.org")]
    for name, (sent, parsed) in fields:
        lines.append(name.encode() + b":" + sent)
        expected.append((name.lower().encode(), parsed))
    if chunked:
        lines.append(b"transfer-encoding: chunked")
        expected.append((b"transfer-encoding", b"chunked"))
        encoded = chunked_encoding(body, draw(st.lists(st.integers(1, 300), max_size=10)))
    else:
        if body:
            lines.append(b"content-length: %d" % len(body))
            expected.append((b"content-length", b"%d" % len(body)))
        encoded = body
    wire = b"\r\n".join(lines) + b"\r\n\r\n" + encoded
    return GeneratedRequest(method, target, expected, body, chunked, wire)


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


# -- the framing header fields in every combination ---------------------------------------------


@dataclass
class Framed:
    """A request with framing header fields and what the core must make of it.

    Attributes:
        wire: the request, followed by :data:`NEXT_REQUEST`.
        version: ``"1.0"`` or ``"1.1"``.
        max_body_size: the limit to parse with.
        status: the ``hint`` of the expected :class:`RemoteProtocolError`, or None when the
            request is valid.
        also: another acceptable ``hint``: a request with bad framing (400) and a Content-Length
            over the limit may be refused for either, whichever the parser meets first.
        body: the body the request frames (when valid).
        keep_alive: whether the connection persists (when valid); then :data:`NEXT_REQUEST` is
            parsed as the next request, otherwise nothing after the first request is.
    """

    wire: bytes
    version: str
    max_body_size: int
    status: int | None
    body: bytes
    keep_alive: bool
    also: int | None = None


def _case(draw: st.DrawFn, name: bytes) -> bytes:
    """``name`` in a random mix of upper and lower case (field names are case-insensitive)."""
    flips = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    return bytes(c ^ 0x20 if flip and chr(c).isalpha() else c for c, flip in zip(name, flips))


#: Transfer-Encoding values; which ones frame a chunked body is decided by :func:`_te_outcome`.
TE_VALUES = [
    b"chunked", b"Chunked", b"CHUNKED", b" chunked", b"chunked ", b"\tchunked", b", chunked",
    b"gzip", b"deflate", b"identity", b"gzip, chunked", b"GZIP, Chunked", b"gzip ,chunked", b"gzip,,chunked",
    b"identity, chunked", b"chunked, gzip", b"chunked, chunked", b"chunked,", b"chunked, ,", b"xchunked",
    b"chunkedx", b"chunked;q=1", b"", b" ",
]
#: Connection values (option lists; ``close`` and ``keep-alive`` in any case, among others).
CONNECTION_VALUES = [
    b"close", b"Close", b"CLOSE", b"keep-alive", b"Keep-Alive", b"close, keep-alive", b"keep-alive, close",
    b"keep-alive,close", b"foo, close", b" close ", b"upgrade", b"closed", b"x-close", b"", b",", b"te",
]


def _te_outcome(values: list[bytes], version: str) -> int | str:
    """The status for these Transfer-Encoding field values, or ``"chunked"``.

    RFC 9112 6.1 and 6.3: chunked must be the final coding, applied once, and nothing may
    follow it (400); another coding before it is one we do not implement (501); an HTTP/1.0
    request has no transfer codings (400). An empty field value is an error (400).
    """
    if any(not value.strip(b" \t") for value in values):
        return 400
    joined = b",".join(values)
    elements = [element.strip(b" \t").lower() for element in joined.split(b",")]
    if b"chunked" not in elements:
        return 400  # chunked is not the final coding
    first = elements.index(b"chunked")
    if first != len(elements) - 1:
        return 400  # something (even an empty element) follows chunked
    if version == "1.0":
        return 400
    if any(element for element in elements[:first]):
        return 501
    return "chunked"


def _keep_alive(values: list[bytes], version: str) -> bool:
    """RFC 9112 9.3: ``close`` ends the connection after this response; otherwise HTTP/1.1
    persists and HTTP/1.0 persists only with ``keep-alive``."""
    tokens = {token.strip(b" \t").lower() for value in values for token in value.split(b",")}
    if b"close" in tokens:
        return False
    return version == "1.1" or b"keep-alive" in tokens


@st.composite
def framed_requests(draw: st.DrawFn) -> Framed:
    """A request with 0-4 framing header fields (see :class:`Framed`), sometimes broken by
    obs-fold or whitespace before a colon, sometimes under a small body limit."""
    version = draw(st.sampled_from(["1.1", "1.0"]))
    body = draw(st.binary(max_size=300))
    fields: list[tuple[str, bytes]] = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["content-length", "transfer-encoding", "connection"]))
        if kind == "content-length":
            n = len(body)
            value = draw(st.sampled_from([
                b"%d" % n, b"00%d" % n, b" %d" % n, b"%d " % n, b"\t%d" % n, b"%d" % (n + 1), b"",
                b"+%d" % n, b"-%d" % n, b"%d, %d" % (n, n), b"%d %d" % (n, n), b"0x%x" % n, b"%d.0" % n,
            ]))
        elif kind == "transfer-encoding":
            value = draw(st.sampled_from(TE_VALUES))
        else:
            value = draw(st.sampled_from(CONNECTION_VALUES))
        fields.append((kind, value))
    lengths = [value for kind, value in fields if kind == "content-length"]
    codings = [value for kind, value in fields if kind == "transfer-encoding"]
    if len(lengths) == 1 and not codings and lengths[0] == b"%d" % (len(body) + 1):
        # A single length that differs from the body sent would leave the parser waiting (or
        # read the next request as body): not a framing question. Send the right one.
        fields[[kind for kind, _ in fields].index("content-length")] = ("content-length", b"%d" % len(body))
        lengths = [b"%d" % len(body)]
    if not lengths and not codings:
        body = b""  # no body without framing
    broken = draw(st.sampled_from([None, None, None, "obs-fold", "space-before-colon"]))
    if broken and not fields:
        fields.append(("transfer-encoding", b"chunked"))
        codings = [b"chunked"]
    max_body_size = draw(st.sampled_from([10 * 1024 * 1024, 10 * 1024 * 1024, 0, 16, 128]))

    lines = [b"POST /framed HTTP/" + version.encode(), b"Host: example.org"]
    for index, (kind, value) in enumerate(fields):
        name = _case(draw, kind.encode())
        if broken == "space-before-colon" and index == 0:
            name += draw(st.sampled_from([b" ", b"\t"]))
        lines.append(name + b":" + (b" " if value and value[:1] not in b" \t" else b"") + value)
    if broken == "obs-fold":
        # A continuation line (RFC 9112 5.2: obsolete line folding) after a random field.
        lines.insert(draw(st.integers(2, len(lines))), draw(st.sampled_from([b" chunked", b"\tgzip", b" 5"])))

    # The expected outcome.
    status: int | None = None
    keep_alive = False
    framed = b""
    if broken:
        status = 400
    elif lengths and codings:
        status = 400  # RFC 9112 6.3: both is an attack or an error
    elif len(lengths) > 1:
        status = 400  # repeated, even with equal values
    elif lengths:
        if not lengths[0].strip(b" \t").isdigit():
            status = 400
        elif len(body) > max_body_size:
            status = 413
        else:
            framed = body
    elif codings:
        outcome = _te_outcome(codings, version)
        if outcome == "chunked":
            status = 413 if len(body) > max_body_size else None
            framed = body
        else:
            status = int(outcome)
    if status is None:
        keep_alive = _keep_alive([value for kind, value in fields if kind == "connection"], version)
    also = None
    if status == 400 and any(value.strip(b" \t").isdigit() and int(value.strip(b" \t")) > max_body_size
                             for value in lengths):
        also = 413

    if codings and status in (None, 413):
        encoded = chunked_encoding(body, draw(st.lists(st.integers(1, 64), max_size=6)))
    else:
        encoded = body
    wire = b"\r\n".join(lines) + b"\r\n\r\n" + encoded + NEXT_REQUEST
    return Framed(wire, version, max_body_size, status, framed, keep_alive, also)


# -- request smuggling ----------------------------------------------------------------------------

#: Ways to hide a Transfer-Encoding from one parser but not another (RFC 9112 11.2; the usual
#: TE.TE disguises), each as the header lines to send.
TE_DISGUISES = [
    [b"Transfer-Encoding: chunked"],
    [b"Transfer-Encoding : chunked"],
    [b"Transfer-Encoding\t: chunked"],
    [b"Transfer-Encoding:\tchunked"],
    [b"Transfer-Encoding: xchunked"],
    [b"Transfer-Encoding: chunked\x0b"],
    [b"Transfer-Encoding: \x0bchunked"],
    [b"Transfer-Encoding: chunked", b"Transfer-Encoding: x"],
    [b"Transfer-Encoding: x", b"Transfer-Encoding: chunked"],
    [b"Transfer-Encoding: chunked", b"Transfer-encoding: identity"],
    [b"Transfer-Encoding:", b" chunked"],
    [b"Transfer-Encoding: gzip,", b" chunked"],
    [b" Transfer-Encoding: chunked"],
    [b"X: y", b" Transfer-Encoding: chunked"],
    [b"X: y\nTransfer-Encoding: chunked"],
    [b"Transfer-Encoding\n: chunked"],
    [b"Transfer-Encoding: chunked, identity"],
    [b"Transfer-Encoding: identity, chunked"],
    [b"Transfer-Encoding: \"chunked\""],
    [b"TRANSFER-ENCODING: CHUNKED"],
]


@st.composite
def smuggling_requests(draw: st.DrawFn) -> bytes:
    """A request whose body two parsers could delimit differently: a Content-Length and a
    (disguised) Transfer-Encoding in either order, or a disguised Transfer-Encoding alone whose
    chunked body hides a second request; a Content-Length repeated with different values."""
    smuggled = b"GET /admin HTTP/1.1\r\nHost: example.org\r\n\r\n"
    chunked_body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(smuggled), smuggled)
    kind = draw(st.sampled_from(["cl-te", "te-cl", "te-only", "cl-cl"]))
    disguise = draw(st.sampled_from(TE_DISGUISES))
    length = b"Content-Length: %d" % draw(st.sampled_from([0, 4, len(chunked_body)]))
    if kind == "cl-te":
        head = [length, *disguise]
    elif kind == "te-cl":
        head = [*disguise, length]
    elif kind == "te-only":
        if disguise in ([b"Transfer-Encoding: chunked"], [b"Transfer-Encoding:\tchunked"],
                        [b"TRANSFER-ENCODING: CHUNKED"]):
            disguise = [b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"]
        head = list(disguise)
    else:
        head = [b"Content-Length: 0", b"Content-Length: %d" % len(chunked_body)]
    version = draw(st.sampled_from([b"1.1", b"1.0"]))
    return b"POST / HTTP/" + version + b"\r\nHost: example.org\r\n" + b"\r\n".join(head) + b"\r\n\r\n" + chunked_body
