"""WebSocket over real sockets: real daemons, the ``websockets`` client, raw sockets, headless Chromium.

Applications: :mod:`tests.ws_apps` (the path picks the behaviour; ``/events`` long-polls the
application's event log, so tests wait on events instead of sleeping).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.integration.daemon import Daemon, http_config, wait_until
from tests.integration.wsclient import RawClient, client, disconnect_of, events, run

pytestmark = pytest.mark.slow

WS_SETTINGS = """
websocket:
  accept_timeout: 1s
  close_timeout: 1s
  max_frame_size: 128KiB
  max_message_size: 256KiB
"""


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon serving tests.ws_apps:app with a short accept timeout and small message limits."""
    tmp = tmp_path_factory.mktemp("ws")
    daemon = Daemon(tmp, http_config(app="tests.ws_apps:app", listener_extra=WS_SETTINGS)).start()
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def pinging(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon that pings after 400 ms of silence and waits 400 ms for the answer."""
    tmp = tmp_path_factory.mktemp("ping")
    settings = "websocket: {ping_interval: 400ms, ping_timeout: 400ms}"
    daemon = Daemon(tmp, http_config(app="tests.ws_apps:app", listener_extra=settings)).start()
    yield daemon
    daemon.stop()


# -- handshake, scope, subprotocols, headers -------------------------------------------------------


def test_echo_text_bytes_and_empty_messages(ws: Daemon) -> None:
    async def go() -> list[Any]:
        async with client(ws, "/echo?tag=empty") as conn:
            out = []
            for message in ("hello", b"\x00\x01", "", b"", "\u00e9\u4e2d\U0001f600"):
                await conn.send(message)
                out.append(await conn.recv())
            return out

    # Empty text and empty binary messages are delivered and sent (Daphne drops them).
    assert run(go()) == ["hello", b"\x00\x01", "", b"", "\u00e9\u4e2d\U0001f600"]


def test_scope_comes_from_our_parse(ws: Daemon) -> None:
    async def go() -> dict[str, Any]:
        async with client(ws, "/scope?x=%20y&tag=scope", subprotocols=["a.v1", "b.v2"],
                          additional_headers={"X-Custom": "v1"}) as conn:
            return json.loads(await conn.recv())  # type: ignore[no-any-return]

    scope = run(go())
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert (scope["scheme"], scope["http_version"], scope["path"], scope["raw_path"]) == ("ws", "1.1", "/scope", "/scope")
    assert scope["query_string"] == "x=%20y&tag=scope" and scope["root_path"] == ""
    assert scope["subprotocols"] == ["a.v1", "b.v2"]
    assert ["x-custom", "v1"] in scope["headers"]
    assert scope["client"][0] == "127.0.0.1" and scope["server"] == ["127.0.0.1", ws.port()]
    assert "websocket.http.response" in scope["extensions"] and "method" not in scope
    assert "http.response.trailers" not in scope["extensions"]


def test_subprotocol_and_accept_headers(ws: Daemon) -> None:
    async def go() -> tuple[Any, list[str], str | None, str]:
        async with client(ws, "/headers", subprotocols=["chat.v1", "chat.v2"]) as conn:
            headers = conn.response.headers
            await conn.send("ping")
            return conn.subprotocol, headers.get_all("set-cookie"), headers.get("x-probe"), await conn.recv()

    subprotocol, cookies, probe, echoed = run(go())
    assert subprotocol == "chat.v2"  # the application picked the last one offered
    assert cookies == ["a=1", "b=2"] and probe == "yes"  # www 2.1 accept headers, duplicates kept
    assert echoed == "ping"


def test_no_subprotocol_when_none_offered(ws: Daemon) -> None:
    async def go() -> Any:
        async with client(ws, "/echo") as conn:
            return conn.subprotocol, conn.response.headers.get("sec-websocket-protocol"), conn.response.headers.get("server")

    assert run(go()) == (None, None, "gateway")


def test_close_before_accept_is_403_and_the_app_gets_disconnect(ws: Daemon) -> None:
    async def go() -> InvalidStatus:
        with pytest.raises(InvalidStatus) as info:
            async with client(ws, "/reject?tag=reject"):
                pass
        return info.value

    error = run(go())
    assert error.response.status_code == 403
    assert disconnect_of(ws, "reject")["code"] in (1000, 1005, 1006)


def test_denial_response_extension(ws: Daemon) -> None:
    async def go() -> InvalidStatus:
        with pytest.raises(InvalidStatus) as info:
            async with client(ws, "/deny?tag=deny"):
                pass
        return info.value

    response = run(go()).response
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "text/plain"
    assert response.body == b"no entry"


def test_application_exception_before_accept_gives_403(ws: Daemon) -> None:
    raw = RawClient(ws.port(), "/raise-before")
    try:
        assert raw.status == 403
    finally:
        raw.close()
    assert "boom before accept" in ws.output()


def test_application_exception_after_accept_closes_1011(ws: Daemon) -> None:
    async def go() -> Any:
        async with client(ws, "/raise-after") as conn:
            with pytest.raises(ConnectionClosed) as info:
                await conn.recv()
            return info.value.rcvd

    rcvd = run(go())
    assert rcvd is not None and rcvd.code == 1011


def test_application_returning_after_accept_closes_1000(ws: Daemon) -> None:
    async def go() -> Any:
        async with client(ws, "/return-after") as conn:
            with pytest.raises(ConnectionClosed) as info:
                await conn.recv()
            return info.value.rcvd

    rcvd = run(go())
    assert rcvd is not None and rcvd.code == 1000


def test_accept_timeout_gives_503(ws: Daemon) -> None:
    started = time.monotonic()
    raw = RawClient(ws.port(), "/silent?tag=silent")
    try:
        assert raw.status == 503
    finally:
        raw.close()
    assert time.monotonic() - started > 0.5  # the application had its accept timeout (1 s)
    assert disconnect_of(ws, "silent")["code"] in (1005, 1006, 1000)


# -- close codes and reasons -----------------------------------------------------------------------


def test_client_close_code_and_reason_reach_the_application(ws: Daemon) -> None:
    async def go() -> None:
        async with client(ws, "/echo?tag=client-close") as conn:
            await conn.send("one")
            await conn.recv()
            await conn.close(4001, "client says bye")

    run(go())
    event = disconnect_of(ws, "client-close")
    assert (event["code"], event["reason"], event["received"]) == (4001, "client says bye", 1)
    after = events(ws, "client-close", type="send-after-close")
    assert after[0]["error"] == "ClientDisconnected"  # www 2.4: send() after the close raises an OSError


def test_close_without_code_is_1005_and_dropped_tcp_is_1006(ws: Daemon) -> None:
    raw = RawClient(ws.port(), "/echo?tag=no-code")
    raw.send_frame(8, b"")
    assert raw.read_frame()[0] == 8
    raw.close()
    assert disconnect_of(ws, "no-code")["code"] == 1005
    raw = RawClient(ws.port(), "/echo?tag=dropped")
    raw.close()
    assert disconnect_of(ws, "dropped")["code"] == 1006


def test_application_close_code_and_reason_reach_the_client(ws: Daemon) -> None:
    async def go() -> Any:
        async with client(ws, "/echo?tag=app-close") as conn:
            await conn.send("close 4002 server says bye")
            with pytest.raises(ConnectionClosed) as info:
                await conn.recv()
            return info.value.rcvd

    rcvd = run(go())
    assert (rcvd.code, rcvd.reason) == (4002, "server says bye")
    assert events(ws, "app-close", type="send-after-close")[0]["error"] == "ClientDisconnected"
    assert disconnect_of(ws, "app-close")["code"] == 4002  # the client echoed our code


# -- messages: large, fragmented, compressed, limits ---------------------------------------------------


def test_large_and_fragmented_messages(ws: Daemon) -> None:
    big = os.urandom(120 * 1024)  # one frame, under the 128 KiB frame limit
    text = "\u4e2d" * 60000  # 180 kB of UTF-8 in three frames

    async def go() -> list[Any]:
        async with client(ws, "/echo", max_size=None) as conn:
            await conn.send(big)
            first = await conn.recv()
            await conn.send([text[:20000], text[20000:40001], text[40001:]])
            second = await conn.recv()
            await conn.send([b"ab", b"", b"cd"])
            third = await conn.recv()
            return [first, second, third]

    assert run(go()) == [big, text, b"abcd"]
    raw = RawClient(ws.port())  # fragments split inside a character
    try:
        encoded = "\u4e2d\u6587".encode()
        raw.send_frame(1, encoded[:1], fin=False)
        raw.send_frame(0, encoded[1:4], fin=False)
        raw.send_frame(0, encoded[4:], fin=True)
        assert raw.read_frame() == (1, encoded)
    finally:
        raw.close()


def test_fragments_interleaved_with_pings_over_a_raw_socket(ws: Daemon) -> None:
    raw = RawClient(ws.port())
    try:
        raw.send_frame(1, "h\u00e9".encode()[:2], fin=False)
        raw.send_frame(9, b"are you there")
        raw.send_frame(0, "h\u00e9".encode()[2:] + b"llo", fin=True)
        frames = [raw.read_frame(), raw.read_frame()]
        assert (10, b"are you there") in frames  # the pong, RFC 6455 5.5.3
        assert (1, "h\u00e9llo".encode()) in frames
    finally:
        raw.close()


def test_permessage_deflate_is_negotiated_when_offered(ws: Daemon) -> None:
    message = "compress me " * 20000

    async def go() -> tuple[str | None, str]:
        async with client(ws, "/echo", compression="deflate") as conn:
            await conn.send(message)
            return conn.response.headers.get("sec-websocket-extensions"), await conn.recv()

    extensions, echoed = run(go())
    assert extensions is not None and extensions.startswith("permessage-deflate")
    assert echoed == message


def test_message_too_big_closes_1009(ws: Daemon) -> None:
    async def go() -> Any:
        async with client(ws, "/echo?tag=too-big", max_size=None) as conn:
            await conn.send(b"x" * (300 * 1024))  # in 64 kB frames: the message limit is 256 KiB
            with pytest.raises(ConnectionClosed) as info:
                await conn.recv()
            return info.value.rcvd

    assert run(go()).code == 1009
    assert disconnect_of(ws, "too-big")["code"] == 1009
    raw = RawClient(ws.port())  # one frame above the 128 KiB frame limit
    try:
        raw.send_frame(2, b"y" * (129 * 1024))
        assert raw.read_close()[0] == 1009
    finally:
        raw.close()


def test_invalid_utf8_closes_1007_and_protocol_errors_1002(ws: Daemon) -> None:
    for payload, fin in ((b"ok \xff\xfe", True), (b"\xe4\xb8", True)):
        raw = RawClient(ws.port())
        try:
            raw.send_frame(1, payload, fin=fin)
            assert raw.read_close()[0] == 1007
        finally:
            raw.close()
    for kwargs in ({"masked": False}, {"rsv": 4}):  # RFC 6455 5.1 and 5.2
        raw = RawClient(ws.port())
        try:
            raw.send_frame(1, b"hi", **kwargs)
            assert raw.read_close()[0] == 1002
        finally:
            raw.close()
    raw = RawClient(ws.port())
    try:
        raw.send_frame(3, b"reserved opcode")
        assert raw.read_close()[0] == 1002
    finally:
        raw.close()


def test_bad_handshakes_are_refused_by_autobahn(ws: Daemon) -> None:
    port = ws.port()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 400 ")  # no Sec-WebSocket-Key
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                     b"X-Smuggle: a\x85Sec-WebSocket-Protocol: evil\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 400 ")  # a line break only autobahn would see


# -- timers and flow control ------------------------------------------------------------------------


def test_ping_timeout_closes_a_silent_client(pinging: Daemon) -> None:
    raw = RawClient(pinging.port(), "/echo?tag=silent-client")
    try:
        assert raw.read_frame()[0] == 9  # an idle ping after ping_interval
        assert raw.read_close() == (1011, "ping timeout")
        assert raw.at_eof()
    finally:
        raw.close()
    event = disconnect_of(pinging, "silent-client")
    assert (event["code"], event["reason"]) == (1011, "ping timeout")


def test_a_client_answering_pings_stays_connected(pinging: Daemon) -> None:
    raw = RawClient(pinging.port(), "/echo?tag=answering-client")
    try:
        # Silent but for its pongs: three pings answered outlive the 400 ms ping timeout twice over.
        for _ in range(3):
            opcode, payload = raw.read_frame()
            assert opcode == 9
            raw.send_frame(10, payload)
        raw.send_frame(1, b"still here")
        opcode, payload = raw.read_frame()
        while opcode == 9:  # a ping may come first
            raw.send_frame(10, payload)
            opcode, payload = raw.read_frame()
        assert (opcode, payload) == (1, b"still here")
    finally:
        raw.close()


def test_slow_reader_makes_send_wait_with_bounded_memory(ws: Daemon) -> None:
    raw = RawClient(ws.port(), "/flood?tag=flood&n=400&size=65536", buffers=64 * 1024)
    try:
        # The client reads nothing: the daemon must hold the application's send() (and keep
        # holding it: two reads in a row see it stopped) long before 400 x 64 kB.
        def held() -> int | None:
            progress = [int(httpx.get(ws.url() + path, params={"tag": "flood"}).text)
                        for path in ("/held", "/progress", "/progress")]
            return progress[1] if progress[0] >= 0 and progress[1] == progress[2] else None

        sent = wait_until(held, what="send() to wait for the slow reader")
        assert 0 < sent * 65536 < 8 * 1024 * 1024, sent
        total = 0
        while total < 400:
            opcode, payload = raw.read_frame()
            if opcode == 2:
                assert len(payload) == 65536
                total += 1
        assert events(ws, "flood", type="flood-done")[0]["sent"] == 400
    finally:
        raw.close()


def test_application_not_receiving_pauses_reading(ws: Daemon) -> None:
    raw = RawClient(ws.port(), "/sink?tag=sink", buffers=64 * 1024)
    try:
        message = os.urandom(100 * 1024)
        data = b"".join(RawClient.frame(2, message) for _ in range(200)) + RawClient.frame(1, b"count")
        raw.sock.setblocking(False)
        offset = 0
        while offset < len(data):
            try:
                offset += raw.sock.send(data[offset:offset + 65536])
            except BlockingIOError:
                import select

                if not select.select([], [raw.sock], [], 1.0)[1]:
                    break  # nothing drains any more: the daemon stopped reading
        # The application receives nothing yet, so the daemon paused reading: 20 MB did not fit.
        assert offset < len(data) / 2, offset
        httpx.get(ws.url() + "/release", params={"tag": "sink"})
        raw.sock.setblocking(True)
        raw.sock.sendall(data[offset:])
        assert events(ws, "sink", type="websocket.receive", text="count")[0]["received"] == 201
    finally:
        raw.close()


# -- origin, limits, lifetime, TLS, shutdown ---------------------------------------------------------


def test_origin_allow_list_connection_limit_lifetime_and_no_compression(tmp_path: Path) -> None:
    settings = """
    websocket:
      allowed_origins: [https://good.example, "https://*.corp.example"]
      max_connections: 2
      max_lifetime: 2s
      per_message_deflate: {enabled: false}
    """
    with Daemon(tmp_path, http_config(app="tests.ws_apps:app", listener_extra=settings)) as daemon:
        port = daemon.port()
        cases = ((b"https://evil.example", 403), (None, 403), (b"https://a.corp.example", 101),
                 (b"https://good.example:443", 101), (b"http://good.example", 403), (b"null", 403))
        for i, (origin, status) in enumerate(cases):
            header = b"Origin: %s\r\n" % origin if origin else b""
            raw = RawClient(port, f"/echo?tag=origin{i}", headers=header)
            try:
                assert raw.status == status, origin
                if status == 101:
                    raw.send_frame(8, struct.pack("!H", 1000))
                    assert raw.read_close()[0] == 1000
                    disconnect_of(daemon, f"origin{i}")  # gone before the limit is tested
            finally:
                raw.close()

        async def go() -> Any:
            async with client(daemon, "/echo?tag=life", origin="https://good.example", compression="deflate") as first:
                assert first.response.headers.get("sec-websocket-extensions") is None
                async with client(daemon, "/echo", origin="https://good.example"):
                    with pytest.raises(InvalidStatus) as info:
                        async with client(daemon, "/echo", origin="https://good.example"):
                            pass
                    assert info.value.response.status_code == 503  # max_connections: 2
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(first.recv(), 5)
                return closed.value.rcvd

        rcvd = run(go())
        assert (rcvd.code, rcvd.reason) == (1001, "maximum lifetime reached")


def test_wss_over_tls(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    key_path, cert_path = tmp_path / "key.pem", tmp_path / "cert.pem"
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    config = http_config(app="tests.ws_apps:app", endpoint=f"ssl:0:interface=127.0.0.1:privateKey={key_path}:certKey={cert_path}")
    with Daemon(tmp_path, config) as daemon:
        async def go() -> tuple[dict[str, Any], str]:
            uri = f"wss://localhost:{daemon.port()}"
            async with connect(uri + "/scope", ssl=context, proxy=None) as conn:
                scope = json.loads(await conn.recv())
            async with connect(uri + "/echo", ssl=context, proxy=None) as conn:
                await conn.send("over tls" * 5000)
                return scope, await conn.recv()  # type: ignore[return-value]

        scope, echoed = run(go())
    assert scope["scheme"] == "wss" and "tls" in scope["extensions"]
    assert echoed == "over tls" * 5000


def test_graceful_shutdown_closes_with_1001_and_tells_the_application(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    daemon = Daemon(tmp_path, http_config(app="tests.ws_apps:app"), env={"GATEWAY_WS_EVENTS": str(log)}).start()
    try:
        async def go() -> Any:
            async with client(daemon, "/echo?tag=shutdown") as conn:
                await conn.send("hi")
                await conn.recv()
                daemon.signal(signal.SIGTERM)
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(conn.recv(), 10)
                return info.value.rcvd

        rcvd = run(go())
        assert daemon.wait(15) == 0
    finally:
        daemon.stop()
    assert (rcvd.code, rcvd.reason) == (1001, "server shutting down")
    recorded = [json.loads(line) for line in log.read_text().splitlines()]
    assert {"tag": "shutdown", "type": "websocket.disconnect", "code": 1001, "reason": "server shutting down", "received": 1} in recorded


# -- a real browser ----------------------------------------------------------------------------------


@pytest.mark.chromium
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_headless_chromium_page_talks_websocket(ws: Daemon, tmp_path: Path) -> None:
    result = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", ws.url() + "/page"],
        capture_output=True, timeout=60, check=False,
    )
    dom = result.stdout.decode()
    # The page opened ws://, negotiated a subprotocol and permessage-deflate, sent text and bytes,
    # and wrote what came back into the document before its load event.
    assert '<div id="result">ok chat.v1 permessage-deflate' in dom, (dom, result.stderr.decode()[-2000:])
    assert "text:hello from chromium,bytes:3" in dom
    received = events(ws, "chromium", type="websocket.receive", text="done")
    assert received[0]["received"] == 3
