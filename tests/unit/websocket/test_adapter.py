"""The WebSocket adapter on a StringTransport: hand-off, frames, timers, flow control, failures."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.frames import Close, Opcode

from gateway.asgi.instance import ClientDisconnected
from gateway.protocols.http.proxy import TrustedProxies
from gateway.protocols.websocket.config import PerMessageDeflateConfig, WebSocketConfig
from gateway.protocols.websocket.listener import OriginPolicy
from tests.unit.websocket.harness import Recorder, WSHarness, masked

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


@pytest.fixture
def harness() -> Iterator[list[WSHarness]]:
    made: list[WSHarness] = []
    yield made
    for h in made:
        h.close()


def make(made: list[WSHarness], app: Any, **config: Any) -> WSHarness:
    h = WSHarness(app, WebSocketConfig(**config))
    made.append(h)
    return h


def raw_upgrade(h: WSHarness, head: bytes) -> bytes:
    h.open_transport()
    h.feed(head)
    return h.output()


# -- the hand-off ----------------------------------------------------------------------------------


def test_autobahn_gets_the_request_head_exactly_as_received(harness: list[WSHarness], monkeypatch: pytest.MonkeyPatch) -> None:
    h = make(harness, Recorder())
    seen: list[bytes] = []
    cls = h.hook.settings.protocol_class
    original = cls.dataReceived
    monkeypatch.setattr(cls, "dataReceived", lambda self, data: (seen.append(data), original(self, data))[1])
    head = (b"GET /chat?room=1 HTTP/1.1\r\nhost: example.org\r\nUPGRADE:  WebSocket \r\nconnection: keep-alive, Upgrade\r\n"
            b"Sec-WebSocket-Key: " + KEY + b"\r\nsec-websocket-version: 13\r\nX-Odd:\t tabbed \r\n\r\n")
    frame = masked(1, b"right behind the head")
    out = raw_upgrade(h, head + frame)
    assert seen[0] == head + frame  # never a re-serialised copy
    assert out.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in out  # RFC 6455 1.3's example
    assert out.endswith(b"\x81\x15right behind the head")


def test_the_http_protocol_hands_over_transport_producer_and_tracking(harness: list[WSHarness]) -> None:
    h = make(harness, Recorder())
    h.connect()
    ws = h.protocol
    assert ws is not h.http and h.transport is not None
    assert h.transport.producer is ws and ws.transport is h.transport
    assert h.factory.connections == {ws}
    assert h.hook.settings.open_count == 1
    h.lose()
    assert h.factory.connections == set() and h.hook.settings.open_count == 0


def test_scope(harness: list[WSHarness]) -> None:
    app = Recorder()
    h = make(harness, app)
    h.connect("/a%20b?x=1", subprotocols=["p1", "p2"])
    scope = app.scope
    assert scope is not None
    assert (scope["type"], scope["scheme"], scope["path"], scope["raw_path"], scope["query_string"]) == (
        "websocket", "ws", "/a b", b"/a%20b", b"x=1")
    assert scope["subprotocols"] == ["p1", "p2"] and scope["http_version"] == "1.1"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert scope["client"] == ("192.0.2.1", 40000) and scope["server"] == ("127.0.0.1", 8000)
    assert "method" not in scope


def test_root_path_and_trusted_proxy_headers_shape_the_scope(harness: list[WSHarness]) -> None:
    app = Recorder()
    h = WSHarness(app, root_path="/app", proxies=TrustedProxies(["192.0.2.1"], ["x-forwarded"]))
    harness.append(h)
    h.connect("/chat", headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"})
    scope = app.scope
    assert scope is not None
    assert (scope["root_path"], scope["path"], scope["raw_path"]) == ("/app", "/app/chat", b"/app/chat")
    assert (scope["scheme"], scope["client"][0]) == ("wss", "203.0.113.7")  # as for HTTP, behind a TLS proxy


@pytest.mark.parametrize(("head", "status"), [
    (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + KEY +
     b"\r\nSec-WebSocket-Version: 8\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + KEY +
     b"\r\nSec-WebSocket-Version: 13\r\n\r\n", 405),
    (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + KEY +
     b"\r\nSec-WebSocket-Version: 13\r\nX-A: 1\x852\r\n\r\n", 400),
])
def test_bad_handshakes_get_complete_error_responses(harness: list[WSHarness], head: bytes, status: int) -> None:
    app = Recorder()
    h = make(harness, app)
    out = raw_upgrade(h, head)
    assert out.startswith(b"HTTP/1.1 %d " % status)
    assert b"content-length: " in out and b"connection: close\r\n" in out and b"server: gateway\r\n" in out
    assert h.closed and app.scope is None  # the application never saw it


# -- messages --------------------------------------------------------------------------------------

# Payload sizes around every frame-length encoding and unmasking boundary (RFC 6455 5.2).
sizes = st.sampled_from([0, 1, 4, 5, 125, 126, 127, 1024, 1025, 5000, 65535, 65536, 70000])
sized = st.builds(lambda n, seed: random.Random(seed).randbytes(n), sizes, st.integers(0, 2**32))
message_lists = st.lists(
    st.one_of(st.text(max_size=300).map(lambda t: ("text", t)), st.binary(max_size=300).map(lambda b: ("bytes", b)),
              sized.map(lambda b: ("bytes", b)), sized.map(lambda b: ("text", b.hex()[: len(b)]))),
    min_size=1, max_size=6,
)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], deadline=None)
@given(message_lists, st.lists(st.integers(min_value=1, max_value=200), max_size=10), st.booleans())
@example([("bytes", bytes(range(256)) * 20), ("text", "\u4e2d" * 400), ("bytes", b"\x07" * 70000), ("text", "")], [], False)
@example([("bytes", bytes(range(256)) * 4), ("text", "ab")], [3, 1, 1], True)
def test_any_chunking_of_a_stream_gives_the_same_messages(messages: list[tuple[str, Any]], cuts: list[int], fragment: bool) -> None:
    app = Recorder()
    h = WSHarness(app)
    try:
        h.connect()
        stream = b""
        for kind, payload in messages:
            data = payload.encode() if kind == "text" else payload
            opcode = 1 if kind == "text" else 2
            if fragment and len(data) > 2:
                stream += masked(opcode, data[:1], fin=False) + masked(9, b"p") + masked(0, data[1:], fin=True)
            else:
                stream += masked(opcode, data)
        pos = 0
        for cut in cuts:  # arbitrary reads: frames split anywhere, several frames per read
            h.feed(stream[pos:pos + cut])
            pos += cut
        h.feed(stream[pos:])
        got = [(k, m[k]) for m in app.received[1:] for k in ("text", "bytes") if m.get(k) is not None]
        assert got == messages
        echoed = [f for f in h.frames() if f.opcode in (Opcode.TEXT, Opcode.BINARY)]
        assert [f.data.decode() if f.opcode == Opcode.TEXT else bytes(f.data) for f in echoed] == [p for _, p in messages]
    finally:
        h.close()


def test_compressed_messages(harness: list[WSHarness]) -> None:
    h = make(harness, Recorder())
    response = h.connect(deflate=True)
    assert response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
    assert h.client is not None
    for payload in ("x" * 5000, "", "\u00e9t\u00e9"):
        h.client.send_text(payload.encode())
        h.flush_client()
        frames = h.frames()
        assert [f.data.decode() for f in frames] == [payload]
    h.client.send_binary(b"\x00" * 100000)
    h.flush_client()
    assert [f.data for f in h.frames()] == [b"\x00" * 100000]


def test_deflate_window_bits_and_off_switch(harness: list[WSHarness]) -> None:
    h = make(harness, Recorder(), per_message_deflate=PerMessageDeflateConfig(window_bits=10, memory_level=4))
    response = h.connect(deflate=True)  # the client offers client_max_window_bits: we ask for 10
    assert response.headers["Sec-WebSocket-Extensions"] == "permessage-deflate; client_max_window_bits=10"
    compressor = h.protocol._perMessageCompress  # RFC 7692 7.1.2.1: our own window needs no announcing
    assert (compressor.server_max_window_bits, compressor.client_max_window_bits, compressor.mem_level) == (10, 10, 4)
    h.client.send_text(b"abc" * 1000)  # type: ignore[union-attr]
    h.flush_client()
    assert [f.data for f in h.frames()] == [b"abc" * 1000]
    off = make(harness, Recorder(), per_message_deflate=PerMessageDeflateConfig(enabled=False))
    assert "Sec-WebSocket-Extensions" not in off.connect(deflate=True).headers


def test_invalid_utf8_and_oversized_messages_close_the_connection(harness: list[WSHarness]) -> None:
    for frame, code in ((masked(1, b"\xff"), 1007), (masked(1, b"\xe4", fin=False) + masked(0, b"\xb8"), 1007),
                        (masked(2, b"x" * 2000), 1009), (masked(2, b"x" * 600, fin=False) + masked(0, b"y" * 600), 1009),
                        (masked(5, b""), 1002), (masked(1, b"a", rsv=4), 1002), (b"\x81\x01a", 1002),
                        (masked(8, (1000).to_bytes(2, "big") + b"\xff"), 1007), (masked(8, (1005).to_bytes(2, "big")), 1002),
                        (masked(8, (999).to_bytes(2, "big")), 1002), (masked(8, b"\x03"), 1002), (masked(8, b"x", fin=False), 1002)):
        app = Recorder()
        h = make(harness, app, max_frame_size=1500, max_message_size=1000)
        h.connect()
        h.feed(frame)
        closes = [f for f in h.frames() if f.opcode == Opcode.CLOSE]
        assert Close.parse(closes[0].data).code == code, frame
        h.lose()
        assert app.received[-1]["type"] == "websocket.disconnect" and app.received[-1]["code"] == code


def test_client_close_reaches_the_app_and_sending_afterwards_raises(harness: list[WSHarness]) -> None:
    errors: list[BaseException] = []

    async def script(app: Recorder, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        app.received.append(await receive())
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except ClientDisconnected as exc:
            errors.append(exc)

    app = Recorder(script)
    h = make(harness, app)
    h.connect()
    h.feed(masked(8, (4001).to_bytes(2, "big") + "bye \u00e9".encode()))
    assert app.received == [{"type": "websocket.disconnect", "code": 4001, "reason": "bye \u00e9"}]
    assert len(errors) == 1 and isinstance(errors[0], OSError)
    closes = [Close.parse(f.data) for f in h.frames() if f.opcode == Opcode.CLOSE]
    assert [(c.code, c.reason) for c in closes] == [(4001, "bye \u00e9")]  # echoed (RFC 6455 5.5.1)
    assert h.closed  # and the server closes the TCP connection (7.1.1)


@pytest.mark.parametrize("app_kind", ["raw", "consumer"])
def test_a_client_that_leaves_is_not_an_application_error(harness: list[WSHarness], app_kind: str) -> None:
    """A client sends one message and closes at once: the echo fails with ClientDisconnected. An
    application that lets it propagate ends quietly (counted as client_left); the generic consumer
    runs its disconnect handler and ends cleanly."""
    from gateway.consumers.websocket import AsyncWebsocketConsumer

    disconnects: list[int] = []

    class Echo(AsyncWebsocketConsumer):
        async def receive(self, text_data: Any = None, bytes_data: Any = None) -> None:
            await self.send(text_data=text_data)

        async def disconnect(self, code: int) -> None:
            disconnects.append(code)

    app = Recorder() if app_kind == "raw" else Echo.as_asgi()
    h = make(harness, app)
    h.connect()
    h.feed(masked(1, b"hello") + masked(8, (1000).to_bytes(2, "big")))
    h.run()
    stats = h.hook.settings.stats.ws_instances
    assert h.errors() == []
    assert (stats.errors, stats.client_left) == ((0, 1) if app_kind == "raw" else (0, 0))
    assert disconnects == ([] if app_kind == "raw" else [1000])


def test_ping_is_answered(harness: list[WSHarness]) -> None:
    h = make(harness, Recorder())
    h.connect()
    h.feed(masked(9, b"hi") + masked(1, b"after"))
    assert [(f.opcode, f.data) for f in h.frames()] == [(Opcode.PONG, b"hi"), (Opcode.TEXT, b"after")]


# -- the application's side ------------------------------------------------------------------------


def test_accept_headers_subprotocol_and_server_header(harness: list[WSHarness]) -> None:
    app = Recorder()
    h = make(harness, app)
    app.script = lambda app, receive, send: app.echo(
        {"type": "websocket.accept", "subprotocol": "b", "headers": [(b"x-a", b"1"), (b"x-b", b"2"), (b"x-a", b"3")]})
    response = h.connect(subprotocols=["a", "b"])
    assert response.status_code == 101
    assert response.headers.get_all("x-a") == ["1", "3"] and response.headers["x-b"] == "2"
    assert response.headers["Sec-WebSocket-Protocol"] == "b" and response.headers["Server"] == "gateway"
    assert h.written.index(b"x-a: 1") < h.written.index(b"x-b: 2") < h.written.index(b"x-a: 3")


def test_denial_response(harness: list[WSHarness]) -> None:
    async def script(app: Recorder, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 418, "headers": [(b"x-why", b"teapot")]})
        await send({"type": "websocket.http.response.body", "body": b"short and ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"stout"})
        app.received.append(await receive())

    app = Recorder(script)
    h = make(harness, app)
    response = h.connect()
    assert response.status_code == 418 and response.headers["x-why"] == "teapot"
    assert response.body == b"short and stout"
    assert response.headers["connection"] == "close" and response.headers["server"] == "gateway" and "date" in response.headers
    assert h.closed
    h.lose()
    assert app.received[0]["type"] == "websocket.disconnect"


@pytest.mark.parametrize(("script_kind", "status"), [("close", 403), ("raise", 403), ("return", 403)])
def test_no_accept_gives_an_http_error(harness: list[WSHarness], script_kind: str, status: int) -> None:
    async def script(app: Recorder, receive: Any, send: Any) -> None:
        await receive()
        if script_kind == "close":
            await send({"type": "websocket.close", "code": 4000})
        elif script_kind == "raise":
            raise RuntimeError("broken app")

    h = make(harness, Recorder(script))
    assert h.connect().status_code == status
    assert h.closed
    assert bool(h.errors()) == (script_kind != "close")


@pytest.mark.parametrize(("script_kind", "code"), [("raise", 1011), ("return", 1000)])
def test_app_ending_after_accept_closes(harness: list[WSHarness], script_kind: str, code: int) -> None:
    async def script(app: Recorder, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        if script_kind == "raise":
            raise ValueError("broken after accept")

    h = make(harness, Recorder(script))
    h.connect()
    assert [Close.parse(f.data).code for f in h.frames()] == [code]
    assert bool(h.errors()) == (script_kind == "raise")


def test_app_close_with_reason_then_close_timeout(harness: list[WSHarness]) -> None:
    async def script(app: Recorder, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4321, "reason": "app says \u00e9"})
        app.received.append(await receive())

    app = Recorder(script)
    h = make(harness, app, close_timeout=2)
    h.connect()
    frame = h.frames()[0]
    assert (Close.parse(frame.data).code, Close.parse(frame.data).reason) == (4321, "app says \u00e9")
    h.advance(1.9)
    assert not h.closed  # the client still has time to answer
    h.advance(0.2)
    assert h.closed and h.transport is not None and h.transport.disconnected  # aborted
    h.lose()
    assert app.received == [{"type": "websocket.disconnect", "code": 4321, "reason": "app says \u00e9"}]


# -- timers ----------------------------------------------------------------------------------------


def test_accept_timeout(harness: list[WSHarness]) -> None:
    async def script(app: Recorder, receive: Any, send: Any) -> None:
        await receive()
        app.received.append(await receive())

    app = Recorder(script)
    h = make(harness, app, accept_timeout=3)
    h.open_transport()
    h.feed(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + KEY +
           b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    h.advance(2.9)
    assert h.output() == b""
    h.advance(0.2)
    assert h.output().startswith(b"HTTP/1.1 503 ")
    h.lose()
    assert app.received == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}]


def test_handshake_timeout_ends_a_stalled_denial_response(harness: list[WSHarness]) -> None:
    async def script(app: Recorder, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 401})
        await send({"type": "websocket.http.response.body", "body": b"part", "more_body": True})
        await asyncio.Event().wait()

    h = make(harness, Recorder(script), accept_timeout=1, handshake_timeout=5)
    h.open_transport()
    h.feed(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + KEY +
           b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert h.output().startswith(b"HTTP/1.1 401 ")
    h.advance(4.5)
    assert not h.closed  # answered in time; only the handshake deadline is left
    h.advance(1)
    assert h.closed and h.transport is not None and h.transport.disconnected


def test_idle_ping_pong_and_ping_timeout(harness: list[WSHarness]) -> None:
    app = Recorder()
    h = make(harness, app, ping_interval=10, ping_timeout=5)
    h.connect()
    h.advance(9)
    h.feed(masked(1, b"activity"))  # data postpones the idle ping
    assert [f.opcode for f in h.frames()] == [Opcode.TEXT]
    h.advance(9)
    assert h.frames() == []
    h.advance(1.5)
    assert [f.opcode for f in h.frames()] == [Opcode.PING]
    h.advance(4)
    h.feed(masked(10, b""))  # the pong
    h.advance(2)
    assert h.frames() == [] and not h.closed
    h.advance(9)
    assert [f.opcode for f in h.frames()] == [Opcode.PING]
    h.advance(5.1)  # no answer
    closes = h.frames()
    assert [(Close.parse(f.data).code, Close.parse(f.data).reason) for f in closes] == [(1011, "ping timeout")]
    assert h.closed
    h.lose()
    assert app.received[-1] == {"type": "websocket.disconnect", "code": 1011, "reason": "ping timeout"}


def test_no_ping_while_reading_is_paused_for_the_application(harness: list[WSHarness]) -> None:
    async def script(app: Recorder, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.Event().wait()  # never receives

    h = make(harness, Recorder(script), ping_interval=1, ping_timeout=1, read_high_water=100)
    h.connect()
    h.feed(masked(2, b"x" * 200))
    assert h.transport is not None and h.transport.producerState == "paused"
    h.advance(5)
    assert not h.closed


def test_max_lifetime(harness: list[WSHarness]) -> None:
    h = make(harness, Recorder(), max_lifetime=60, ping_interval=None)
    h.connect()
    h.advance(59)
    assert h.frames() == []
    h.advance(1.5)
    assert [(Close.parse(f.data).code, Close.parse(f.data).reason) for f in h.frames()] == [(1001, "maximum lifetime reached")]


def test_application_close_timeout_cancels_a_lingering_app(harness: list[WSHarness]) -> None:
    cancelled: list[bool] = []

    async def script(app: Recorder, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            await asyncio.Event().wait()  # ignores the disconnect
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    h = make(harness, Recorder(script))
    h.connect()
    h.lose()
    h.advance(4.9)
    assert cancelled == []
    h.advance(0.2)
    assert cancelled == [True]


# -- flow control ----------------------------------------------------------------------------------


def test_reading_pauses_while_the_application_does_not_receive(harness: list[WSHarness]) -> None:
    go = asyncio.Event()

    async def script(app: Recorder, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await go.wait()
        while True:
            message = await receive()
            app.received.append(message)
            if message["type"] == "websocket.disconnect":
                return

    app = Recorder(script)
    h = make(harness, app, read_high_water=1000)
    h.connect()
    assert h.transport is not None
    for _ in range(3):
        h.feed(masked(2, b"x" * 400))
    assert h.transport.producerState == "paused"  # 1200 bytes waiting > 1000
    go.set()
    h.run()
    assert h.transport.producerState == "producing"
    assert [len(m["bytes"]) for m in app.received] == [400, 400, 400]


def test_send_waits_while_the_transport_is_full(harness: list[WSHarness]) -> None:
    progress: list[int] = []

    async def script(app: Recorder, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        for i in range(3):
            await send({"type": "websocket.send", "bytes": b"%d" % i})
            progress.append(i)

    h = make(harness, Recorder(script))
    h.connect()
    h.protocol.pauseProducing()  # as the transport does above its high-water mark
    h.feed(masked(1, b"go"))
    assert progress == []  # the first message went out, but send() waits for the drain
    assert [f.data for f in h.frames()] == [b"0"]
    h.protocol.resumeProducing()
    h.run()
    assert progress == [0, 1, 2]
    assert [f.data for f in h.frames() if f.opcode == Opcode.BINARY] == [b"1", b"2"]


# -- limits, origins, shutdown ---------------------------------------------------------------------


def test_max_connections(harness: list[WSHarness]) -> None:
    h = make(harness, Recorder(), max_connections=1)
    assert h.connect().status_code == 101
    first = h.transport
    second = h.connect()
    assert second.status_code == 503
    h.transport = first
    h.lose()
    assert h.connect().status_code == 101


def test_origin_policy() -> None:
    policy = OriginPolicy(("https://example.com", "https://*.example.org:8443", "null"))
    assert policy.allows(b"https://example.com") and policy.allows(b"https://EXAMPLE.com:443")
    assert policy.allows(b"https://a.b.example.org:8443") and policy.allows(b"null")
    assert not policy.allows(b"http://example.com") and not policy.allows(b"https://example.com:8443")
    assert not policy.allows(b"https://example.org:8443") and not policy.allows(b"https://evil-example.org:8443")
    assert not policy.allows(None) and not policy.allows(b"https://[bad")
    assert OriginPolicy(("*",)).allows(None)


def test_origin_refused_before_the_application_runs(harness: list[WSHarness]) -> None:
    app = Recorder()
    h = make(harness, app, allowed_origins=("https://good.example",))
    assert h.connect(headers={"Origin": "https://evil.example"}).status_code == 403
    assert app.scope is None
    assert h.connect(headers={"Origin": "https://good.example"}).status_code == 101


def test_shutdown(harness: list[WSHarness]) -> None:
    app = Recorder()
    h = make(harness, app)
    h.connect()
    h.protocol.shutdown()
    frame = h.frames()[0]
    assert (Close.parse(frame.data).code, Close.parse(frame.data).reason) == (1001, "server shutting down")
    h.feed(masked(8, (1001).to_bytes(2, "big")))
    h.lose()
    assert app.received[-1] == {"type": "websocket.disconnect", "code": 1001, "reason": ""}

    async def slow(app: Recorder, receive: Any, send: Any) -> None:
        await receive()
        await asyncio.Event().wait()

    h = make(harness, Recorder(slow))
    h.open_transport()
    h.feed(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + KEY +
           b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    h.protocol.shutdown()
    assert h.output().startswith(b"HTTP/1.1 503 ") and h.closed
    h.protocol.abort()
    assert h.transport is not None and h.transport.disconnected


def test_handshakes_accepted_and_refused_are_in_the_access_log(harness: list[WSHarness], tmp_path: Any) -> None:
    from gateway.protocols.http.accesslog import AccessLog

    async def refuse(app: Recorder, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.close"})

    path = tmp_path / "access.log"
    lines = []
    for app, config, headers, status in [
        (Recorder(), {}, {}, 101),
        (Recorder(refuse), {}, {}, 403),
        (Recorder(), {"allowed_origins": ("https://good.example",)}, {"Origin": "https://evil.example"}, 403),
    ]:
        access_log = AccessLog(str(path))
        access_log.open()
        h = make(harness, app, **config)
        h.hook.settings.access_log = access_log
        assert h.connect("/chat?room=1", headers=headers).status_code == status
        access_log.close()
        lines = path.read_text().splitlines()
        assert lines[-1].startswith("192.0.2.1 - - [")
        assert f'"GET /chat?room=1 HTTP/1.1" {status} -' in lines[-1]
    assert len(lines) == 3
