"""The ASGI response state machine and scope building."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.http.asgi import ResponseState, http_scope, validate_headers

start = st.builds(lambda t, s: {"type": "http.response.start", "status": s, "trailers": t}, st.booleans(), st.sampled_from([200, 404, 500]))
body = st.builds(lambda b, m: {"type": "http.response.body", "body": b, "more_body": m}, st.binary(max_size=5), st.booleans())
trailers = st.builds(lambda m: {"type": "http.response.trailers", "headers": [(b"x", b"1")], "more_trailers": m}, st.booleans())
pathsend = st.just({"type": "http.response.pathsend", "path": "/etc/hostname"})
early_hint = st.just({"type": "http.response.early_hint", "links": [b"</a.css>; rel=preload"]})
messages = st.lists(st.one_of(start, body, trailers, pathsend, early_hint), max_size=10)


def apply(state: ResponseState, message: dict) -> None:  # type: ignore[type-arg]
    state.app_send(message)


@given(messages, st.booleans())
def test_messages_in_any_order_are_accepted_only_when_valid(sequence: list[dict], http2: bool) -> None:  # type: ignore[type-arg]
    state = ResponseState(http2=http2)
    model = "start"
    wants_trailers = False
    for message in sequence:
        kind = message["type"]
        valid = (
            (model == "start" and kind in ("http.response.start", "http.response.early_hint"))
            or (model == "body" and kind in ("http.response.body", "http.response.pathsend"))
            or (model == "trailers" and kind == "http.response.trailers")
        )
        before = state.state
        if not valid:
            with pytest.raises(LocalProtocolError) as info:
                apply(state, message)
            assert "Expected ASGI message" in info.value.message
            assert state.state == before  # a refused message changes nothing
            continue
        apply(state, message)
        if kind == "http.response.start":
            wants_trailers = message["trailers"]
            model = "body"
        elif kind == "http.response.body" and not message["more_body"] or kind == "http.response.pathsend":
            model = "trailers" if wants_trailers else "done"
        elif kind == "http.response.trailers" and not message["more_trailers"]:
            model = "done"
    assert state.complete == (model == "done")
    assert state.started == (model != "start")


@pytest.mark.parametrize("links", [None, b"</a>", [b"</a>\r\nx: y"], ["</a>"], 7])
def test_early_hints_need_a_list_of_safe_byte_strings(links: object) -> None:
    state = ResponseState()
    with pytest.raises(LocalProtocolError, match="early_hint"):
        state.app_send({"type": "http.response.early_hint", "links": links})
    assert state.app_send({"type": "http.response.early_hint", "links": [b"</a>; rel=preload"]}) == (
        "http.response.early_hint", [(b"link", b"</a>; rel=preload")])


def test_error_names_the_expected_message() -> None:
    state = ResponseState()
    with pytest.raises(LocalProtocolError, match=r"Expected ASGI message 'http.response.start', but got 'http.response.body'"):
        state.app_send({"type": "http.response.body"})


@pytest.mark.parametrize("message", [{"type": "http.response.push"}, {"type": None}, {}, None, "http.response.body"])
def test_unknown_or_malformed_messages_are_local_protocol_errors(message: object) -> None:
    state = ResponseState()
    with pytest.raises(LocalProtocolError):
        state.app_send(message)
    assert not state.started


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x", "text")],
        [("x", b"v")],
        [(b"bad name", b"v")],
        [(b"x", b"a\r\nSet-Cookie: evil=1")],
        [(b"x", b"nul\x00")],
        [(b"x",)],
        42,
    ],
)
def test_invalid_headers_are_refused(headers: object) -> None:
    with pytest.raises(LocalProtocolError):
        validate_headers(headers)  # type: ignore[arg-type]


def test_headers_are_lowercased_and_server_date_detected() -> None:
    pairs, has_server, has_date = validate_headers([(b"Server", b"mine"), (b"X-A", b"1")])
    assert pairs == [(b"server", b"mine"), (b"x-a", b"1")]
    assert has_server and not has_date


@pytest.mark.parametrize("status", [99, 1000, "200", None, 101])
def test_invalid_status(status: object) -> None:
    with pytest.raises(LocalProtocolError):
        ResponseState().app_send({"type": "http.response.start", "status": status})


def test_pathsend_needs_an_absolute_path() -> None:
    state = ResponseState()
    state.app_send({"type": "http.response.start", "status": 200})
    with pytest.raises(LocalProtocolError):
        state.app_send({"type": "http.response.pathsend", "path": "relative.txt"})


def test_scope_decodes_path_and_prefixes_root_path() -> None:
    scope = http_scope(method="GET", http_version="1.1", scheme="http", raw_path=b"/a%20b/%C3%A9", query_string=b"x=1",
                       root_path="/api", headers=[], client=("1.2.3.4", 5), server=("127.0.0.1", 80), state={"k": 1},
                       extensions={})
    assert scope["path"] == "/api/a b/é"
    assert scope["raw_path"] == b"/api/a%20b/%C3%A9"
    assert scope["root_path"] == "/api"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["state"] == {"k": 1}
    with pytest.raises(ValueError):
        http_scope(method="GET", http_version="1.1", scheme="http", raw_path="/é".encode(), query_string=b"", root_path="",
                   headers=[], client=None, server=None, state=None, extensions={})
