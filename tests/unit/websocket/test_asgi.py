"""The WebSocket ASGI core: application messages in any order never corrupt its state."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.asgi.instance import ClientDisconnected
from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.websocket.asgi import (
    CLOSED,
    CONNECTED,
    CONNECTING,
    RESPONSE,
    Accept,
    Close,
    DenialBody,
    DenialStart,
    Reject,
    WebSocketState,
    subprotocols_of,
    websocket_scope,
)

OFFERED = ("chat.v1", "chat.v2")

texts = st.text(max_size=20)
raw = st.binary(max_size=20)
headers = st.lists(st.tuples(st.sampled_from([b"x-a", b"set-cookie", b"Bad Name", b"sec-websocket-protocol", b"server"]),
                             st.sampled_from([b"1", b"a=b", b"bad\r\nvalue", b"\xff"])), max_size=3)
codes = st.one_of(st.none(), st.sampled_from([1000, 1001, 1005, 1006, 1011, 1015, 2999, 3000, 4999, 5000, 999]), st.text(max_size=2))

messages = st.one_of(
    st.fixed_dictionaries({"type": st.just("websocket.accept")},
                          optional={"subprotocol": st.one_of(st.none(), st.sampled_from([*OFFERED, "other"]), st.just(3)),
                                    "headers": headers}),
    st.fixed_dictionaries({"type": st.just("websocket.send")},
                          optional={"text": st.one_of(st.none(), texts, raw), "bytes": st.one_of(st.none(), raw, texts)}),
    st.fixed_dictionaries({"type": st.just("websocket.close")},
                          optional={"code": codes, "reason": st.one_of(st.none(), texts, st.just("x" * 124), st.just(5))}),
    st.fixed_dictionaries({"type": st.just("websocket.http.response.start"),
                           "status": st.sampled_from([101, 200, 401, 403, 999, 1000, "401"])},
                          optional={"headers": headers}),
    st.fixed_dictionaries({"type": st.just("websocket.http.response.body")},
                          optional={"body": st.one_of(raw, texts), "more_body": st.booleans()}),
    st.fixed_dictionaries({"type": st.sampled_from(["http.response.start", "websocket.receive", "nonsense"])}),
    st.sampled_from([None, 42, {}, {"no": "type"}]),
)
# A step is an application message or the peer going away.
steps = st.lists(st.one_of(messages, st.tuples(st.just("peer_closed"), st.sampled_from([1000, 1005, 1006]))), max_size=12)

# The state graph (www 2.5 plus the websocket.http.response extension).
ALLOWED = {
    (CONNECTING, CONNECTED), (CONNECTING, CLOSED), (CONNECTING, RESPONSE),
    (RESPONSE, RESPONSE), (RESPONSE, CLOSED), (CONNECTED, CONNECTED), (CONNECTED, CLOSED),
}


@given(steps)
def test_any_order_of_messages_keeps_the_rules(sequence: list[Any]) -> None:
    core = WebSocketState(OFFERED)
    accepted = closes = denial_started = denial_finished = 0
    for step in sequence:
        before = core.state
        if isinstance(step, tuple):
            first = core.disconnect is None
            assert core.peer_closed(step[1]) == first  # only the first call is news
            assert core.state == CLOSED and core.disconnect is not None
            assert core.disconnect["type"] == "websocket.disconnect"
            continue
        try:
            action = core.app_send(step)
        except ClientDisconnected:
            # Only once closed, and only for messages that would otherwise be fine to look at.
            assert before == CLOSED
            assert core.state == CLOSED
            continue
        except LocalProtocolError:
            assert core.state == before  # a refused message changes nothing
            continue
        assert (before, core.state) in ALLOWED
        kind = step["type"]
        if isinstance(action, (str, bytes)):
            assert before == CONNECTED and kind == "websocket.send"
            assert accepted == 1
            assert (action == step.get("text")) if isinstance(action, str) else (action == step.get("bytes"))
        elif isinstance(action, Accept):
            assert before == CONNECTING and core.accepted
            assert action.subprotocol is None or action.subprotocol in OFFERED
            assert all(name not in (b"sec-websocket-protocol",) and name == name.lower() for name, _ in action.headers)
            accepted += 1
        elif isinstance(action, Reject):
            assert before == CONNECTING and not core.accepted
        elif isinstance(action, Close):
            assert before == CONNECTED and accepted == 1
            assert action.code in (1000, 1001, 1011, 3000, 4999)
            assert len(action.reason.encode()) <= 123
            closes += 1
        elif isinstance(action, DenialStart):
            assert before == CONNECTING and 200 <= action.status <= 999
            denial_started += 1
        elif isinstance(action, DenialBody):
            assert before == RESPONSE and denial_started == 1 and not denial_finished
            denial_finished += not action.more
        else:  # pragma: no cover - the test fails here
            pytest.fail(f"unexpected action {action!r}")
    assert accepted <= 1 and closes <= 1 and denial_started <= 1
    assert not (accepted and denial_started)


@given(st.lists(messages, max_size=8))
def test_nothing_goes_out_after_the_connection_closed(sequence: list[Any]) -> None:
    core = WebSocketState(OFFERED)
    core.app_send({"type": "websocket.accept"})
    core.peer_closed(1001, "bye")
    for message in sequence:
        with pytest.raises((ClientDisconnected, LocalProtocolError)):
            core.app_send(message)
    assert core.disconnect == {"type": "websocket.disconnect", "code": 1001, "reason": "bye"}


def test_empty_messages_are_messages() -> None:
    core = WebSocketState()
    core.app_send({"type": "websocket.accept"})
    assert core.app_send({"type": "websocket.send", "text": ""}) == ""
    assert core.app_send({"type": "websocket.send", "bytes": b"", "text": None}) == b""
    assert core.app_send({"type": "websocket.send", "bytes": bytearray(b"ab")}) == b"ab"


@pytest.mark.parametrize("message", [
    {"type": "websocket.send"},
    {"type": "websocket.send", "text": None, "bytes": None},
    {"type": "websocket.send", "text": "a", "bytes": b"a"},
    {"type": "websocket.send", "text": b"a"},
    {"type": "websocket.send", "bytes": "a"},
])
def test_send_needs_exactly_one_payload_of_the_right_type(message: dict[str, Any]) -> None:
    core = WebSocketState()
    core.app_send({"type": "websocket.accept"})
    with pytest.raises(LocalProtocolError):
        core.app_send(message)
    assert core.state == CONNECTED


def test_send_before_accept_is_an_error() -> None:
    with pytest.raises(LocalProtocolError, match="websocket.accept"):
        WebSocketState().app_send({"type": "websocket.send", "text": "early"})


def test_accept_checks_subprotocol_and_headers() -> None:
    with pytest.raises(LocalProtocolError, match="offered"):
        WebSocketState(["a"]).app_send({"type": "websocket.accept", "subprotocol": "b"})
    with pytest.raises(LocalProtocolError, match="sec-websocket-protocol"):
        WebSocketState(["a"]).app_send({"type": "websocket.accept", "headers": [(b"Sec-WebSocket-Protocol", b"a")]})
    with pytest.raises(LocalProtocolError, match="CR, LF"):
        WebSocketState().app_send({"type": "websocket.accept", "headers": [(b"x", b"a\r\nb: c")]})
    accept = WebSocketState(["a", "b"]).app_send(
        {"type": "websocket.accept", "subprotocol": "b", "headers": [(b"X-One", b"1"), (b"server", b"me"), (b"x-one", b"2")]})
    assert isinstance(accept, Accept)
    assert (accept.subprotocol, accept.headers, accept.has_server) == ("b", [(b"x-one", b"1"), (b"server", b"me"), (b"x-one", b"2")], True)


def test_close_codes_and_reasons() -> None:
    for code, ok in ((None, True), (1000, True), (1011, True), (1014, True), (3000, True), (4999, True),
                     (1004, False), (1005, False), (1006, False), (1015, False), (2000, False), (5000, False), (True, False)):
        core = WebSocketState()
        core.app_send({"type": "websocket.accept"})
        message = {"type": "websocket.close"} if code is None else {"type": "websocket.close", "code": code}
        if ok:
            action = core.app_send(message)
            assert isinstance(action, Close) and action.code == (code or 1000) and action.reason == ""
        else:
            with pytest.raises(LocalProtocolError):
                core.app_send(message)
    core = WebSocketState()
    core.app_send({"type": "websocket.accept"})
    with pytest.raises(LocalProtocolError, match="at most 123"):
        core.app_send({"type": "websocket.close", "code": 1000, "reason": "\u00e9" * 62})
    close = core.app_send({"type": "websocket.close", "code": 4000, "reason": "\u00e9" * 61})
    assert isinstance(close, Close) and close.reason == "\u00e9" * 61
    with pytest.raises(ClientDisconnected):
        core.app_send({"type": "websocket.send", "text": "after close"})


def test_denial_response_then_nothing() -> None:
    core = WebSocketState()
    start = core.app_send({"type": "websocket.http.response.start", "status": 401, "headers": [(b"Date", b"x")]})
    assert isinstance(start, DenialStart) and (start.status, start.fields[4], start.fields[3]) == (401, True, False)
    with pytest.raises(LocalProtocolError):
        core.app_send({"type": "websocket.accept"})
    assert core.state == RESPONSE
    body = core.app_send({"type": "websocket.http.response.body", "body": b"a", "more_body": True})
    assert isinstance(body, DenialBody) and body.more
    body = core.app_send({"type": "websocket.http.response.body"})
    assert isinstance(body, DenialBody) and (body.body, body.more) == (b"", False)
    assert core.state == CLOSED
    with pytest.raises(ClientDisconnected):
        core.app_send({"type": "websocket.http.response.body", "body": b"more"})


def test_close_before_accept_rejects() -> None:
    core = WebSocketState()
    assert isinstance(core.app_send({"type": "websocket.close", "code": 4000}), Reject)
    assert core.state == CLOSED and not core.accepted


def test_subprotocols_from_headers() -> None:
    headers = [(b"sec-websocket-protocol", b"a, b ,"), (b"x", b"y"), (b"sec-websocket-protocol", b"c")]
    assert subprotocols_of(headers) == ["a", "b", "c"]
    assert subprotocols_of([]) == []


def test_websocket_scope_from_the_http_scope() -> None:
    tls = {"tls_version": 0x0304}
    scope = {"type": "http", "method": "GET", "headers": [(b"sec-websocket-protocol", b"v1")],
             "extensions": {"http.response.trailers": {}, "tls": tls}}
    assert websocket_scope(scope) == {"type": "websocket", "headers": [(b"sec-websocket-protocol", b"v1")],
                                      "subprotocols": ["v1"], "extensions": {"websocket.http.response": {}, "tls": tls}}
