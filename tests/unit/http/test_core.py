"""The sans-IO HTTP/1.1 core: parsing events, limits, framing of responses."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from gateway.protocols.errors import LocalProtocolError, RemoteProtocolError
from gateway.protocols.http.core import Data, EndOfMessage, Event, HTTPConnection, HTTPLimits, Request
from tests.strategies.http import Framed, framed_requests, requests, smuggling_requests, splits


def parse(chunks: list[bytes], limits: HTTPLimits | None = None) -> list[tuple[str, object]]:
    """Feed chunks; return normalised events (body pieces joined per message)."""
    conn = HTTPConnection(limits)
    out: list[tuple[str, object]] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        for event in conn.events_received():
            if isinstance(event, Request):
                out.append(("request", (event.method, event.target, event.http_version, event.headers, event.keep_alive)))
            elif isinstance(event, Data):
                if out and out[-1][0] == "data":
                    out[-1] = ("data", out[-1][1] + event.data)  # type: ignore[operator]
                else:
                    out.append(("data", event.data))
            else:
                out.append(("end", None))
    return out


@given(st.lists(requests(), min_size=1, max_size=4), st.data())
def test_any_chunking_of_valid_requests_yields_the_same_events(reqs, data) -> None:  # type: ignore[no-untyped-def]
    wire = b"".join(r.wire for r in reqs)
    whole = parse([wire])
    assert whole == parse(data.draw(splits(wire)))
    # And the events are the requests we generated, in order.
    requests_seen = [e[1] for e in whole if e[0] == "request"]
    assert [(m, t) for m, t, *_ in requests_seen] == [(r.method, r.target) for r in reqs]  # type: ignore[misc]
    bodies = []
    for event in whole:
        if event[0] == "request":
            bodies.append(b"")
        elif event[0] == "data":
            bodies[-1] += event[1]  # type: ignore[operator]
    assert bodies == [r.body for r in reqs]
    assert [h for *_, h, _ka in requests_seen] == [r.headers for r in reqs]  # type: ignore[misc]


def feed(chunks: list[bytes], limits: HTTPLimits | None = None) -> tuple[list[Event], RemoteProtocolError | None]:
    """Feed chunks until the end or an error; return the events and the error."""
    conn = HTTPConnection(limits)
    events: list[Event] = []
    try:
        for chunk in chunks:
            conn.receive_data(chunk)
            events += conn.events_received()
    except RemoteProtocolError as exc:
        return events, exc
    return events, None


@given(framed_requests(), st.data())
def test_framing_headers_give_the_expected_framing_or_the_documented_error(framed: Framed, data: st.DataObject) -> None:
    """Content-Length, Transfer-Encoding and Connection in any combination: the body and
    keep-alive of RFC 9112 6 and 9.3, or one RemoteProtocolError whose hint is the status
    (400 bad framing, 413 too large, 501 an unknown transfer coding), however the bytes arrive."""
    limits = HTTPLimits(max_body_size=framed.max_body_size)
    for chunks in ([framed.wire], data.draw(splits(framed.wire))):
        events, error = feed(chunks, limits)
        if framed.status is not None:
            assert error is not None, events
            assert error.hint in (framed.status, framed.also), error
            continue
        assert error is None, error
        first = events[0]
        assert isinstance(first, Request) and first.target == b"/framed"
        assert first.keep_alive == framed.keep_alive
        end = events.index(EndOfMessage())
        assert all(isinstance(event, Data) for event in events[1:end])
        assert b"".join(event.data for event in events[1:end]) == framed.body  # type: ignore[union-attr]
        # The body ended exactly where the framing says: the request after it is parsed next,
        # when the connection persists; otherwise nothing after the first request is parsed.
        after = [event.target for event in events[end:] if isinstance(event, Request)]
        assert after == ([b"/next"] if framed.keep_alive else [])


@given(smuggling_requests(), st.data())
def test_request_smuggling_combinations_are_refused(wire: bytes, data: st.DataObject) -> None:
    """Framing two parsers could read differently is refused before any request is seen."""
    for chunks in ([wire], data.draw(splits(wire))):
        events, error = feed(chunks)
        assert error is not None and error.hint in (400, 501), (error, events)
        assert events == []


@st.composite
def _heads(draw: st.DrawFn) -> tuple[bytes, HTTPLimits, int | None]:
    """A request head, limits, and the status the limits give it (None: within them)."""
    target = b"/" + b"t" * draw(st.integers(0, 120))
    fields = [(b"host", b"example.org")] + [
        (b"x-%d" % i, b"v" * draw(st.integers(0, 60))) for i in range(draw(st.integers(0, 12)))
    ]
    limits = HTTPLimits(max_request_line=draw(st.integers(1, 130)), max_headers=draw(st.integers(1, 14)),
                        max_header_size=draw(st.integers(16, 800)))
    status = None
    if len(target) > limits.max_request_line:
        status = 414
    else:
        size = 0
        for count, (name, value) in enumerate(fields):
            size += len(name) + len(value) + 4
            if size > limits.max_header_size or count >= limits.max_headers:
                status = 431
                break
    head = b"GET " + target + b" HTTP/1.1\r\n" + b"".join(b"%s: %s\r\n" % pair for pair in fields) + b"\r\n"
    return head, limits, status


@given(_heads(), st.data())
def test_request_line_and_header_limits_hold_exactly(head: tuple[bytes, HTTPLimits, int | None], data: st.DataObject) -> None:
    """414 for a target longer than max_request_line, 431 past max_headers or max_header_size
    (name, value and 4 bytes of framing per field), nothing within them."""
    wire, limits, status = head
    for chunks in ([wire], data.draw(splits(wire))):
        events, error = feed(chunks, limits)
        if status is None:
            assert error is None and isinstance(events[0], Request)
        else:
            assert error is not None and error.hint == status


@given(st.binary(max_size=600))
def test_arbitrary_bytes_give_events_or_a_remote_protocol_error(data: bytes) -> None:
    conn = HTTPConnection()
    try:
        conn.receive_data(data)
        conn.receive_data(b"")
    except RemoteProtocolError as exc:
        assert isinstance(exc.hint, int) and 400 <= exc.hint < 600
    for event in conn.events_received():
        assert isinstance(event, (Request, Data, EndOfMessage))


@given(st.binary(max_size=200), st.data())
def test_arbitrary_bytes_after_a_valid_head_never_escape(data: bytes, draw) -> None:  # type: ignore[no-untyped-def]
    wire = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + data
    conn = HTTPConnection()
    try:
        for piece in draw.draw(splits(wire)):
            conn.receive_data(piece)
    except RemoteProtocolError as exc:
        assert exc.hint == 400


def test_keep_alive_and_http_1_0() -> None:
    events = parse([b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"])
    assert [e[1][4] for e in events if e[0] == "request"] == [False]  # type: ignore[index]
    # Whatever follows a request that closes the connection is not parsed.
    events = parse([b"GET / HTTP/1.0\r\n\r\nGET /b HTTP/1.1\r\n\r\n", b"garbage"])
    assert [e[1][1] for e in events if e[0] == "request"] == [b"/"]  # type: ignore[index]
    events = parse([b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"])
    assert events[0][1][2:5:2] == ("1.0", True)  # type: ignore[index]


@pytest.mark.parametrize(
    ("wire", "status"),
    [
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\n" + b"".join(b"h%d: v\r\n" % i for i in range(101)) + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nbig: " + b"v" * 70000 + b"\r\n\r\n", 431),
        (b"POST / HTTP/1.1\r\nContent-Length: 20000000\r\n\r\n", 413),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00", 400),
    ],
)
def test_limits_and_malformed_requests_carry_the_status_to_answer(wire: bytes, status: int) -> None:
    conn = HTTPConnection()
    with pytest.raises(RemoteProtocolError) as info:
        conn.receive_data(wire)
    assert info.value.hint == status


@pytest.mark.parametrize(
    ("head", "status"),
    [
        # RFC 9112 6.1: a transfer coding we do not implement before chunked.
        (b"Transfer-Encoding: gzip, chunked", 501),
        (b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked", 501),
        (b"Transfer-Encoding: identity, chunked", 501),
        # RFC 9112 6.3: chunked not final (or repeated) leaves the length unknown.
        (b"Transfer-Encoding: chunked, gzip", 400),
        (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked", 400),
        (b"Transfer-Encoding: gzip", 400),
        # RFC 9112 5.2 and 5.1: obs-fold, whitespace before the colon.
        (b"Transfer-Encoding: gzip,\r\n chunked", 400),
        (b"Transfer-Encoding : chunked", 400),
    ],
)
def test_transfer_codings_other_than_chunked_are_refused(head: bytes, status: int) -> None:
    events, error = feed([b"POST / HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"])
    assert error is not None and error.hint == status
    assert events == []


def test_transfer_encoding_in_an_http_1_0_request_is_refused() -> None:
    """RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing."""
    events, error = feed([b"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"])
    assert error is not None and error.hint == 400
    assert events == []


@pytest.mark.parametrize("connection", [b"keep-alive, close", b"close, keep-alive", b"keep-alive\r\nConnection: close"])
def test_close_wins_over_keep_alive_in_http_1_0(connection: bytes) -> None:
    """RFC 9112 9.3: with ``close`` among the connection options the connection does not persist."""
    events, error = feed([b"GET / HTTP/1.0\r\nConnection: " + connection + b"\r\n\r\nGET /next HTTP/1.1\r\n\r\n"])
    assert error is None
    requests_seen = [event for event in events if isinstance(event, Request)]
    assert [(r.target, r.keep_alive) for r in requests_seen] == [(b"/", False)]


def test_chunked_body_over_the_limit() -> None:
    conn = HTTPConnection(HTTPLimits(max_body_size=10))
    conn.receive_data(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n")
    with pytest.raises(RemoteProtocolError) as info:
        conn.receive_data(b"8\r\n12345678\r\n")
    assert info.value.hint == 413


def test_eof_in_the_middle_of_a_request() -> None:
    conn = HTTPConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost:")
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"")


def test_upgrade_keeps_the_original_head_bytes_and_the_rest() -> None:
    head = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: k\r\n\r\n"
    conn = HTTPConnection()
    conn.receive_data(head[:10])
    conn.receive_data(head[10:] + b"\x81\x80frame")
    request = conn.events_received()[0]
    assert isinstance(request, Request)
    assert request.upgrade == b"websocket"
    assert request.raw_head == head
    assert conn.trailing_data == b"\x81\x80frame"
    conn.receive_data(b"more")
    assert conn.trailing_data == b"\x81\x80framemore"


def test_refused_upgrade_continues_as_http() -> None:
    conn = HTTPConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\nGET /next HTTP/1.1\r\n\r\n")
    first = conn.events_received()
    assert isinstance(first[0], Request) and first[0].upgrade == b"h2c"
    conn.cancel_upgrade()
    second = conn.events_received()
    assert isinstance(second[0], Request) and second[0].target == b"/next"


@given(st.sampled_from([b"content-length: 11\r\n", b"transfer-encoding: chunked\r\n"]), st.data())
def test_an_upgrade_request_with_a_body_is_a_plain_request(framing, data) -> None:  # type: ignore[no-untyped-def]
    # llhttp stops after the head of an Upgrade request, body or not; the core parses the body as
    # HTTP/1.1 (RFC 9110 7.8 lets a server ignore Upgrade), then the next request.
    body = b"hello world" if b"length" in framing else b"b\r\nhello world\r\n0\r\n\r\n"
    wire = (b"POST /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n" + framing + b"\r\n" + body + b"GET /next HTTP/1.1\r\n\r\n")
    events = parse(data.draw(splits(wire)))
    assert [kind for kind, _ in events] == ["request", "data", "end", "request", "end"]
    assert events[1][1] == b"hello world"
    assert events[3][1][1] == b"/next"  # type: ignore[index]


def test_connection_specific_fields_leave_http2_responses() -> None:
    from gateway.protocols.http.core import response_fields

    headers = [(b"Connection", b"close"), (b"Keep-Alive", b"5"), (b"Upgrade", b"x"), (b"Transfer-Encoding", b"chunked"),
               (b"X-Kept", b"1"), (b"Content-Length", b"3")]
    block, length, close, _, _ = response_fields(headers, http2=True)
    assert block == b"x-kept: 1\r\ncontent-length: 3\r\n" and length == 3 and close
    block, _, close, _, _ = response_fields(headers)
    assert b"connection: close" in block and b"keep-alive" in block and close


def test_informational_responses() -> None:
    conn = HTTPConnection()
    conn.send_informational(103, [(b"link", b"</a.css>; rel=preload")])
    assert conn.data_to_send() == b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n"


def response(conn: HTTPConnection, request_wire: bytes, status: int, headers: list[tuple[bytes, bytes]], *bodies: bytes,
             trailers: list[tuple[bytes, bytes]] | None = None) -> tuple[bytes, bool]:
    conn.receive_data(request_wire)
    request = conn.events_received()[0]
    assert isinstance(request, Request)
    conn.start_response(request, status, headers)
    for body in bodies:
        conn.send_body(body)
    keep = conn.end_response(trailers)
    return conn.data_to_send(), keep


def test_response_with_content_length() -> None:
    wire, keep = response(HTTPConnection(), b"GET / HTTP/1.1\r\n\r\n", 200, [(b"content-length", b"5")], b"he", b"llo")
    assert wire == b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
    assert keep


def test_response_without_length_is_chunked_with_trailers() -> None:
    wire, keep = response(HTTPConnection(), b"GET / HTTP/1.1\r\n\r\n", 200, [], b"ab", b"", b"c", trailers=[(b"x-sum", b"1")])
    assert wire == b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\nx-sum: 1\r\n\r\n"
    assert keep


def test_http_1_0_response_without_length_closes() -> None:
    wire, keep = response(HTTPConnection(), b"GET / HTTP/1.0\r\n\r\n", 200, [], b"data")
    assert wire == b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\ndata"
    assert not keep


def test_head_response_has_no_body_but_keeps_the_length() -> None:
    wire, keep = response(HTTPConnection(), b"HEAD / HTTP/1.1\r\n\r\n", 200, [(b"content-length", b"5")], b"hello")
    assert wire == b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"
    assert keep


def test_no_body_statuses() -> None:
    wire, _ = response(HTTPConnection(), b"GET / HTTP/1.1\r\n\r\n", 304, [])
    assert wire == b"HTTP/1.1 304 Not Modified\r\n\r\n"


def test_connection_close_from_the_application_is_honoured() -> None:
    wire, keep = response(HTTPConnection(), b"GET / HTTP/1.1\r\n\r\n", 200, [(b"connection", b"close"), (b"content-length", b"0")])
    assert not keep
    assert wire.count(b"connection: close") == 2  # the application's and ours


def test_body_longer_or_shorter_than_content_length_is_a_local_error() -> None:
    conn = HTTPConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\n\r\n")
    request = conn.events_received()[0]
    conn.start_response(request, 200, [(b"content-length", b"3")])  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        conn.send_body(b"four")
    conn.send_body(b"ab")
    with pytest.raises(LocalProtocolError):
        conn.end_response()


def test_a_released_connection_is_freed_without_the_garbage_collector() -> None:
    import gc
    import weakref

    conn = HTTPConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert conn.events_received()
    conn.release()
    with pytest.raises(RemoteProtocolError):
        conn.receive_data(b"GET / HTTP/1.1\r\n\r\n")
    ref = weakref.ref(conn)
    enabled = gc.isenabled()
    gc.disable()
    try:
        del conn
        assert ref() is None  # reference counting alone: no parser <-> callbacks cycle is left
    finally:
        if enabled:
            gc.enable()
