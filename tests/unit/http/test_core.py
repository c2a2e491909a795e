"""The sans-IO HTTP/1.1 core: parsing events, limits, framing of responses."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from gateway.protocols.errors import LocalProtocolError, RemoteProtocolError
from gateway.protocols.http.core import Data, EndOfMessage, HTTPConnection, HTTPLimits, Request
from tests.strategies.http import requests, splits


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
