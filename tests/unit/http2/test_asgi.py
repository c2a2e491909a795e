"""Reading an HTTP/2 request's header list for the ASGI scope."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from gateway.protocols.http2.asgi import read_request, response_headers

names = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).map(str.encode).filter(lambda n: n not in (b"cookie", b"host"))
values = st.binary(max_size=20)


@given(st.lists(st.tuples(names, values), max_size=8), st.lists(values, max_size=4), st.booleans())
def test_pseudo_headers_leave_and_authority_becomes_host(regular, cookies, with_host) -> None:  # type: ignore[no-untyped-def]
    fields = [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"example.org"), (b":path", b"/a%20b?q=1")]
    if with_host:
        fields.append((b"host", b"ignored.example"))
    fields += [(b"cookie", c) for c in cookies] + regular
    request = read_request(fields)
    assert request.method == "POST" and request.path == b"/a%20b" and request.query == b"q=1"
    assert request.http_version == "2" and request.authority == b"example.org"
    assert request.headers[0] == (b"host", b"example.org")
    assert [h for h in request.headers if h[0] == b"host"] == [(b"host", b"example.org")]
    assert not any(name.startswith(b":") for name, _ in request.headers)
    kept_cookies = [v for n, v in request.headers if n == b"cookie"]
    assert kept_cookies == ([b"; ".join(cookies)] if cookies else [])
    assert [h for h in request.headers if h[0] not in (b"host", b"cookie")] == regular


def test_extended_connect() -> None:
    request = read_request([(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"https"),
                            (b":path", b"/chat"), (b":authority", b"x")])
    assert request.method == "CONNECT" and request.protocol == b"websocket" and request.path == b"/chat"
    with pytest.raises(ValueError, match=":path"):
        read_request([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x")])


def test_response_head_from_an_encoded_block() -> None:
    headers = response_headers(204, b"x-a: 1\r\nset-cookie: a=b: c\r\n", [(b"server", b"gateway")])
    assert headers == [(b":status", b"204"), (b"x-a", b"1"), (b"set-cookie", b"a=b: c"), (b"server", b"gateway")]
