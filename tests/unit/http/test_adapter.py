"""The HTTP adapter and ASGI cycle: application rules, streaming, flow control, timers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.asgi.instance import ClientDisconnected
from gateway.protocols.http.core import HTTPLimits
from tests.unit.http.harness import Harness, responses
from tests.unit.layers.conftest import until

GET = b"GET /path?q=1 HTTP/1.1\r\nHost: example.org\r\n\r\n"


@pytest.fixture
def harnesses() -> Iterator[list[Harness]]:
    made: list[Harness] = []
    yield made
    for harness in made:
        harness.close()


@pytest.fixture
def make(harnesses: list[Harness]) -> Any:
    def factory(app: Any, **kwargs: Any) -> Harness:
        harness = Harness(app, **kwargs)
        harnesses.append(harness)
        return harness

    return factory


async def hello(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})


def test_simple_response_and_scope(make: Any) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)
        await hello(scope, receive, send)

    h = make(app, state={"db": "x"})
    h.send(GET)
    [(status, headers, body)] = responses(h.output())
    assert (status, body) == (200, b"hello")
    assert b"date" in headers
    scope = seen[0]
    assert scope["type"] == "http" and scope["method"] == "GET" and scope["http_version"] == "1.1"
    assert scope["path"] == "/path" and scope["query_string"] == b"q=1" and scope["scheme"] == "http"
    assert scope["client"] == ("192.0.2.1", 40000) and scope["server"] == ("127.0.0.1", 8000)
    assert scope["headers"] == [(b"host", b"example.org")]
    assert scope["state"] == {"db": "x"} and scope["state"] is not h.settings.state
    assert "http.response.trailers" in scope["extensions"] and "http.response.pathsend" in scope["extensions"]
    assert not h.closed


def test_pipelined_requests_are_answered_in_order(make: Any) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            await asyncio.sleep(0.01)
        body = scope["path"].encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    h = make(app)
    h.protocol.dataReceived(b"GET /slow HTTP/1.1\r\n\r\nGET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
    h.loop.run_until_complete(until(lambda: h.transport.value().count(b"HTTP/1.1 200 ") == 3, 5))
    h.run()
    assert [body for _, _, body in responses(h.output())] == [b"/slow", b"/a", b"/b"]


def test_request_body_streams_as_it_arrives(make: Any) -> None:
    received: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            received.append(message)
            if not message.get("more_body"):
                break
        await hello(scope, receive, send)

    h = make(app)
    h.send(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    assert received == [{"type": "http.request", "body": b"abc", "more_body": True}]
    assert h.output() == b""
    h.send(b"2\r\nde\r\n0\r\n\r\n")
    assert received[1:] == [{"type": "http.request", "body": b"de", "more_body": False}]
    assert responses(h.output())[0][2] == b"hello"


def test_exception_before_start_gives_500_and_is_logged(make: Any) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("boom")

    h = make(app)
    h.send(GET)
    [(status, headers, _)] = responses(h.output())
    assert status == 500 and headers[b"connection"] == b"close"
    assert h.closed
    assert any("Exception in ASGI application" in e for e in h.errors())


def test_exception_after_start_closes_the_connection(make: Any) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise ValueError("boom")

    h = make(app)
    h.send(GET)
    out = h.output()
    assert out.startswith(b"HTTP/1.1 200 OK") and b"4\r\npart\r\n" in out and not out.endswith(b"0\r\n\r\n")
    assert h.closed


def test_returning_without_a_response_gives_500(make: Any) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    h = make(app)
    h.send(GET)
    assert responses(h.output())[0][0] == 500
    assert any("without starting a response" in e for e in h.errors())


def test_returning_without_completing_closes(make: Any) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
        await send({"type": "http.response.body", "body": b"12345", "more_body": True})

    h = make(app)
    h.send(GET)
    assert h.closed
    assert any("without completing" in e for e in h.errors())


def test_message_out_of_order_raises_a_clear_error(make: Any) -> None:
    errors: list[BaseException] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await send({"type": "http.response.body", "body": b"x"})
        except Exception as exc:
            errors.append(exc)
            raise

    h = make(app)
    h.send(GET)
    assert "Expected ASGI message 'http.response.start', but got 'http.response.body'" in str(errors[0])
    assert responses(h.output())[0][0] == 500


def test_send_after_disconnect_raises_oserror_and_receive_gives_disconnect(make: Any) -> None:
    outcome: list[Any] = []
    release = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        outcome.append(await receive())  # waits for the disconnect
        await release.wait()
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        except OSError as exc:
            outcome.append(exc)

    h = make(app)
    h.send(GET)
    h.disconnect()
    assert outcome == [{"type": "http.disconnect"}]
    h.loop.call_soon(release.set)
    h.run()
    assert isinstance(outcome[1], ClientDisconnected) and isinstance(outcome[1], OSError)


def test_application_still_running_after_disconnect_is_cancelled(make: Any) -> None:
    cancelled = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    h = make(app, application_close_timeout=5.0)
    h.send(GET)
    h.disconnect()
    h.advance(4.9)
    assert cancelled == []
    h.advance(0.2)
    assert cancelled == [True]


def test_request_timeout_gives_503_and_disconnect(make: Any) -> None:
    seen = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        seen.append(await receive())

    h = make(app, request_timeout=2.0)
    h.send(GET)
    h.advance(2.1)
    assert responses(h.output())[0][0] == 503
    assert seen == [{"type": "http.disconnect"}] and h.closed


def test_slowloris_head_timeout_gives_408(make: Any) -> None:
    h = make(hello, header_timeout=10.0)
    h.send(b"GET / HTTP/1.1\r\nX-Slow: ")
    h.advance(5)
    h.send(b"a")  # trickling bytes does not extend the deadline
    h.advance(5.1)
    assert responses(h.output())[0][0] == 408 and h.closed


def test_idle_keep_alive_connection_is_closed_quietly(make: Any) -> None:
    h = make(hello, keep_alive_timeout=5.0)
    h.send(GET)
    h.output()
    h.advance(4.9)
    assert not h.closed
    h.advance(0.2)
    assert h.closed and h.output() == b""


def test_expect_100_continue_is_sent_when_the_body_is_read(make: Any) -> None:
    gate = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await gate.wait()
        message = await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(message["body"]))]})
        await send({"type": "http.response.body", "body": message["body"]})

    h = make(app)
    h.send(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    assert h.output() == b""
    h.loop.call_soon(gate.set)
    h.run()
    assert h.output() == b"HTTP/1.1 100 Continue\r\n\r\n"
    h.send(b"abc")
    assert responses(h.output())[0][2] == b"abc"


def test_expect_100_continue_is_not_sent_when_the_app_answers_first(make: Any) -> None:
    h = make(hello)
    h.send(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    out = h.output()
    assert b"100 Continue" not in out and responses(out)[0][0] == 200
    assert h.closed  # the unread body means the connection cannot be reused


def test_reading_pauses_above_the_high_water_mark_until_the_app_reads(make: Any) -> None:
    gate = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await gate.wait()
        total = 0
        while True:
            message = await receive()
            total += len(message["body"])
            if not message["more_body"]:
                break
        body = str(total).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    h = make(app, read_high_water=1000)
    h.send(b"POST / HTTP/1.1\r\nContent-Length: 3000\r\n\r\n" + b"x" * 1500)
    assert h.transport.producerState == "paused"
    h.loop.call_soon(gate.set)
    h.run()
    assert h.transport.producerState == "producing"
    h.send(b"y" * 1500)
    assert responses(h.output())[0][2] == b"3000"


def test_send_waits_while_the_client_is_not_reading(make: Any) -> None:
    progress: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(3):
            await send({"type": "http.response.body", "body": b"x" * 100, "more_body": True})
            progress.append(i)
        await send({"type": "http.response.body", "body": b""})

    h = make(app)
    h.protocol.pauseProducing()  # what the transport does when its buffer is full
    h.send(GET)
    assert progress == []
    h.protocol.resumeProducing()
    h.run()
    assert progress == [0, 1, 2]
    assert responses(h.output())[0][2] == b"x" * 300


def test_trailers(make: Any) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"data"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})

    h = make(app)
    h.send(b"GET / HTTP/1.1\r\nTE: trailers\r\n\r\n")
    assert h.output().endswith(b"4\r\ndata\r\n0\r\nx-checksum: abc\r\n\r\n")


def test_bad_request_gets_400_and_close(make: Any) -> None:
    h = make(hello)
    h.send(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
    assert responses(h.output())[0][0] == 400 and h.closed


def test_oversized_head_gets_431(make: Any) -> None:
    h = make(hello, limits=HTTPLimits(max_header_size=100))
    h.send(b"GET / HTTP/1.1\r\nX: " + b"v" * 200 + b"\r\n\r\n")
    assert responses(h.output())[0][0] == 431


def test_graceful_shutdown_finishes_the_request_then_closes(make: Any) -> None:
    gate = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await gate.wait()
        await hello(scope, receive, send)

    h = make(app)
    h.send(GET)
    h.protocol.shutdown()
    assert not h.closed
    h.loop.call_soon(gate.set)
    h.run()
    [(status, headers, body)] = responses(h.output())
    assert (status, body) == (200, b"hello") and headers[b"connection"] == b"close"
    assert h.closed


def test_graceful_shutdown_of_an_idle_connection_closes_it(make: Any) -> None:
    h = make(hello)
    h.send(GET)
    h.output()
    h.protocol.shutdown()
    assert h.closed


def test_head_request(make: Any) -> None:
    h = make(hello)
    h.send(b"HEAD / HTTP/1.1\r\n\r\n")
    out = h.output()
    assert b"content-length: 5\r\n" in out and out.endswith(b"\r\n\r\n") and b"hello" not in out


def test_asgi2_double_callable_application(make: Any) -> None:
    from gateway.asgi.app import load_application

    class Asgi2:
        def __init__(self, scope: Any) -> None:
            self.scope = scope

        async def __call__(self, receive: Any, send: Any) -> None:
            await hello(self.scope, receive, send)

    import sys
    import types

    module = types.ModuleType("asgi2_probe")
    module.app = Asgi2  # type: ignore[attr-defined]
    sys.modules["asgi2_probe"] = module
    try:
        h = make(load_application("asgi2_probe:app"))
        h.send(GET)
        assert responses(h.output())[0][2] == b"hello"
    finally:
        del sys.modules["asgi2_probe"]


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=100)
@given(st.lists(st.binary(max_size=300), max_size=6))
def test_arbitrary_bytes_never_escape_the_adapter(chunks: list[bytes]) -> None:
    """Whatever a client sends, dataReceived answers or closes; it never raises."""
    h = Harness(hello)
    try:
        for chunk in chunks:
            h.protocol.dataReceived(chunk)
        h.run(3)
        out = h.output()
        assert out == b"" or out.startswith(b"HTTP/1.1 ")
    finally:
        h.close()


# -- lingering close after an error answer ---------------------------------------------------------


def test_after_an_error_answer_the_rest_of_the_request_is_read_and_thrown_away(make: Any) -> None:
    h = make(hello, limits=HTTPLimits(max_body_size=10), lingering_size=1000, lingering_timeout=5.0)
    h.send(b"POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n" + b"x" * 100)
    [(status, headers, _)] = responses(h.output())
    assert status == 413 and headers[b"connection"] == b"close"
    assert h.closed and not h.transport.disconnecting  # lingering: still reading
    h.send(b"x" * 800)
    assert not h.transport.disconnecting and h.output() == b""
    h.send(b"x" * 300)  # past lingering_size: closed now
    assert h.transport.disconnecting


def test_lingering_ends_after_its_timeout(make: Any) -> None:
    h = make(hello, limits=HTTPLimits(max_body_size=10), lingering_timeout=2.0)
    h.send(b"POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n")
    assert responses(h.output())[0][0] == 413 and not h.transport.disconnecting
    h.advance(1.9)
    assert not h.transport.disconnecting
    h.advance(0.2)
    assert h.transport.disconnecting
