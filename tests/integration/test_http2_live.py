"""HTTP/2 against a real daemon with real clients: curl, nghttp, httpx, and the ``h2`` library as a
raw client (flow control, trailers, early hints, WebSocket over HTTP/2)."""

from __future__ import annotations

import json
import shutil
import signal
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import h2.events
import h2.settings
import httpx
import pytest

from tests.integration.daemon import Daemon, http_config, wait_until
from tests.integration.h2client import H2Client, ws_frame, ws_parse

pytestmark = pytest.mark.slow

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
needs_nghttp = pytest.mark.skipif(shutil.which("nghttp") is None, reason="needs nghttp (nghttp2-client)")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    trustme = pytest.importorskip("trustme")
    tmp = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    key, cert, authority = tmp / "key.pem", tmp / "cert.pem", tmp / "ca.pem"
    server.private_key_pem.write_to_path(str(key))
    server.cert_chain_pems[0].write_to_path(str(cert))
    ca.cert_pem.write_to_path(str(authority))
    return key, cert, authority


@pytest.fixture(scope="module")
def h2c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A cleartext listener (prior knowledge and Upgrade: h2c), small windows to exercise flow control."""
    tmp = tmp_path_factory.mktemp("h2c")
    config = http_config(listener_extra=f"""
        access_log: {tmp / 'access.log'}
        limits: {{max_body_size: 4MiB}}
        http2: {{stream_window: 65535, connection_window: 131072}}
        proxy: {{trusted: [127.0.0.1]}}
    """)
    daemon = Daemon(tmp, config).start()
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory, certificate: tuple[Path, Path, Path]) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("h2tls")
    key, cert, _ = certificate
    daemon = Daemon(tmp, http_config(endpoint=f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}")).start()
    yield daemon
    daemon.stop()


def client_context(certificate: tuple[Path, Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certificate[2]))
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-s", "--max-time", "20", *args], capture_output=True, check=True)


# -- the ways in ------------------------------------------------------------------------------


@needs_curl
def test_curl_prior_knowledge(h2c: Daemon) -> None:
    result = curl("--http2-prior-knowledge", "-w", "\n%{http_version}", h2c.url() + "/hello")
    assert result.stdout == b"Hello, world!\n2"


@needs_curl
def test_curl_upgrade_h2c_serves_the_first_request_as_stream_1(h2c: Daemon) -> None:
    result = curl("--http2", "-w", "\n%{http_version}", h2c.url() + "/scope?via=upgrade")
    body, _, version = result.stdout.rpartition(b"\n")
    scope = json.loads(body)
    assert version == b"2"
    assert scope["http_version"] == "2" and scope["query_string"] == "via=upgrade"
    names = [name for name, _ in scope["headers"]]
    assert "upgrade" not in names and "http2-settings" not in names and "connection" not in names


@needs_curl
def test_curl_upgrade_with_a_body_is_answered_as_http_1_1(h2c: Daemon) -> None:
    # RFC 7540 3.2: the server may ignore the upgrade; a body would have to be read as HTTP/1.1.
    result = curl("--http2", "-w", "\n%{http_version}", "--data-binary", "abc", h2c.url() + "/echo")
    assert result.stdout == b"abc\n1.1"


@needs_curl
def test_curl_over_tls_negotiates_h2_by_alpn(tls: Daemon, certificate: tuple[Path, Path, Path]) -> None:
    url = f"https://localhost:{tls.port()}/scope"
    result = curl("--http2", "--cacert", str(certificate[2]), "-w", "\n%{http_version}", url)
    body, _, version = result.stdout.rpartition(b"\n")
    scope = json.loads(body)
    assert version == b"2"
    assert scope["http_version"] == "2" and scope["scheme"] == "https"
    assert "BEGIN CERTIFICATE" in scope["extensions"]["tls"]["server_cert"]
    assert "http.response.early_hint" in scope["extensions"]
    # A client that offers only http/1.1 still gets it.
    result = curl("--http1.1", "--cacert", str(certificate[2]), "-w", "\n%{http_version}", f"https://localhost:{tls.port()}/hello")
    assert result.stdout == b"Hello, world!\n1.1"


@needs_curl
def test_switches_per_listener(tmp_path: Path, certificate: tuple[Path, Path, Path]) -> None:
    key, cert, authority = certificate
    config = f"""
application: tests.apps:app
listeners:
  - name: plain
    protocol: http
    endpoint: "tcp:0:interface=127.0.0.1"
    http2: {{h2c: false}}
  - name: secure
    protocol: http
    endpoint: "ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    http2: {{enabled: false}}
logging: {{level: info}}
"""
    with Daemon(tmp_path, config) as daemon:
        # h2c off: the preface is not HTTP/2 here (an HTTP/1.1 error), the upgrade is ignored.
        refused = subprocess.run(["curl", "-s", "--http2-prior-knowledge", daemon.url("plain") + "/hello"], capture_output=True)
        assert refused.returncode != 0 or b"Hello" not in refused.stdout
        upgrade = curl("--http2", "-w", "\n%{http_version}", daemon.url("plain") + "/hello")
        assert upgrade.stdout == b"Hello, world!\n1.1"
        # HTTP/2 off on TLS: ALPN offers only http/1.1.
        secure = curl("--http2", "--cacert", str(authority), "-w", "\n%{http_version}", f"https://localhost:{daemon.port('secure')}/hello")
        assert secure.stdout == b"Hello, world!\n1.1"


@needs_nghttp
def test_nghttp_many_concurrent_streams(h2c: Daemon) -> None:
    urls = [h2c.url() + f"/hello?n={i}" for i in range(40)]
    result = subprocess.run(["nghttp", "-n", "-s", "-m", "1", *urls], capture_output=True, timeout=30, check=True)
    assert result.stdout.count(b"/hello?n=") == 40
    lines = [line for line in result.stdout.decode().splitlines() if "/hello?n=" in line]
    assert all(" 200 " in line for line in lines), lines


def test_httpx_http2_over_tls(tls: Daemon, certificate: tuple[Path, Path, Path]) -> None:
    verify = ssl.create_default_context(cafile=str(certificate[2]))
    with httpx.Client(http2=True, verify=verify, base_url=f"https://localhost:{tls.port()}") as client:
        response = client.get("/hello")
        assert response.http_version == "HTTP/2" and response.text == "Hello, world!"
        payload = bytes(range(256)) * 4096  # 1 MiB each way: beyond every window
        echoed = client.post("/echo", content=payload)
        assert echoed.http_version == "HTTP/2" and echoed.content == payload
        big = client.get("/big", params={"mb": "3"})
        assert len(big.content) == 3 * 1024 * 1024


@pytest.mark.chromium
def test_chromium_loads_a_page_with_many_resources_over_h2(tls: Daemon, certificate: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from tests.integration.chromium import Browser

    browser = Browser(tmp_path)
    try:
        page = browser.start(f"https://localhost:{tls.port()}/many?n=60", flags=("--ignore-certificate-errors",))
        page.wait_for("window.loaded === 60", what="all 60 scripts")
        protocols = page.evaluate(
            "JSON.stringify([performance.getEntriesByType('navigation')[0].nextHopProtocol,"
            " ...performance.getEntriesByType('resource').map(e => e.nextHopProtocol)])")
    finally:
        browser.stop()
    seen = json.loads(protocols)
    assert len(seen) >= 61 and set(seen) == {"h2"}, seen


# -- behaviour --------------------------------------------------------------------------------


def test_access_log_and_metrics_count_http2_requests(h2c: Daemon) -> None:
    with H2Client(h2c.port()) as client:
        status, _, _ = client.get("/hello?logged=1")
    assert status == 200
    log = h2c.tmp / "access.log"
    line = wait_until(lambda: next((l for l in log.read_text().splitlines() if "logged=1" in l), None), what="the access log line")
    assert '"GET /hello?logged=1 HTTP/2" 200 13' in line


def test_request_body_window_is_given_back_only_as_the_application_reads(h2c: Daemon, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    body = b"u" * (300 * 1024)
    with H2Client(h2c.port()) as client:
        client.until(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))
        stream_id = client.request(f"/gate?gate={gate}", method="POST", end=False)
        sent = 0
        # Send what the windows allow; the application does not read yet.
        while sent < len(body):
            window = client.conn.local_flow_control_window(stream_id)
            if window == 0:
                client.read(timeout=0.3)  # any WINDOW_UPDATE would show up here
                if client.conn.local_flow_control_window(stream_id) == 0:
                    break
                continue
            piece = body[sent:sent + min(window, 16384)]
            client.conn.send_data(stream_id, piece)
            client.flush()
            sent += len(piece)
        # Backpressure: the stream's window (65535) is spent and stays spent.
        assert sent == 65535
        client.read(timeout=0.5)
        assert client.conn.local_flow_control_window(stream_id) == 0
        gate.touch()
        while sent < len(body):
            window = client.conn.local_flow_control_window(stream_id)
            if window == 0:
                client.read(timeout=5)
                continue
            piece = body[sent:sent + min(window, 16384)]
            client.conn.send_data(stream_id, piece)
            client.flush()
            sent += len(piece)
        client.conn.end_stream(stream_id)
        client.flush()
        status, _, answer = client.response(stream_id)
    assert (status, answer) == (200, b"%d" % len(body))


def test_response_waits_for_the_clients_window(h2c: Daemon) -> None:
    # The client grants 1000 bytes per stream and never opens the window again.
    with H2Client(h2c.port(), settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000}, auto_ack=False) as client:
        client.until(lambda e: isinstance(e, h2.events.SettingsAcknowledged))
        stream_id = client.request("/big?mb=1")
        received = 0
        while True:
            events = client.read(timeout=1.0)
            if not events:
                break
            received += sum(len(e.data) for e in events if isinstance(e, h2.events.DataReceived))
        assert received == 1000
        with H2Client(h2c.port()) as other:
            _, _, stats = other.get("/stats")
        # send() stopped at the first 64 KiB piece: it waits, nothing is buffered beyond the window.
        assert json.loads(stats)["big_sent"] == 0
        client.conn.increment_flow_control_window(2 * 1024 * 1024, stream_id)
        client.conn.increment_flow_control_window(2 * 1024 * 1024)
        client.flush()
        client.auto_ack = True
        status, _, body = client.response(stream_id)
    assert status == 200 and len(body) == 1024 * 1024


def test_trailers_early_hints_and_pathsend(h2c: Daemon, tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(b"f" * 200_000)
    with H2Client(h2c.port()) as client:
        stream_id = client.request("/trailers")
        status, _, body = client.response(stream_id)
        trailers = [e for e in client.events if isinstance(e, h2.events.TrailersReceived) and e.stream_id == stream_id]
        assert (status, body) == (200, b"body")
        assert dict(trailers[0].headers) == {b"x-digest": b"abc"}

        stream_id = client.request("/hints")
        status, _, body = client.response(stream_id)
        hints = [e for e in client.events if isinstance(e, h2.events.InformationalResponseReceived) and e.stream_id == stream_id]
        assert (status, body) == (200, b"hinted")
        assert dict(hints[0].headers) == {b":status": b"103", b"link": b"</style.css>; rel=preload; as=style"}

        status, _, body = client.get(f"/file?path={data}")
        assert (status, body) == (200, data.read_bytes())


@needs_curl
def test_early_hints_over_http_1_1(h2c: Daemon) -> None:
    result = subprocess.run(["curl", "-si", "--http1.1", h2c.url() + "/hints"], capture_output=True, check=True)
    assert result.stdout.startswith(b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload; as=style\r\n\r\nHTTP/1.1 200 OK")


def test_trusted_proxy_headers_apply_to_http2(h2c: Daemon) -> None:
    with H2Client(h2c.port()) as client:
        stream_id = client.request("/scope", headers=[(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-proto", b"https")])
        _, _, body = client.response(stream_id)
    scope = json.loads(body)
    assert scope["client"] == ["203.0.113.7", 0] and scope["scheme"] == "https"


def test_split_cookies_are_joined_and_authority_is_host(h2c: Daemon) -> None:
    with H2Client(h2c.port()) as client:
        stream_id = client.request("/scope", headers=[(b"cookie", b"a=1"), (b"cookie", b"b=2")])
        _, _, body = client.response(stream_id)
    headers = json.loads(body)["headers"]
    assert headers[0] == ["host", "localhost"]
    assert ["cookie", "a=1; b=2"] in headers


def test_an_application_error_is_a_500_on_its_stream_only(h2c: Daemon) -> None:
    with H2Client(h2c.port()) as client:
        failing = client.request("/error")
        fine = client.request("/hello")
        assert client.response(failing)[0] == 500
        assert client.response(fine)[0] == 200


@needs_nghttp
def test_graceful_drain_sends_goaway_and_finishes_streams_in_flight(tmp_path: Path) -> None:
    # nghttp, since h2's own client state machine stops at a GOAWAY (it cannot finish streams).
    started = tmp_path / "started"
    with Daemon(tmp_path, http_config(extra="timeouts: {drain: 20s}"), env={"GATEWAY_TEST_SLOW_STARTED": str(started)}) as daemon:
        client = subprocess.Popen(["nghttp", "-v", daemon.url() + "/slow?s=1.5"], stdout=subprocess.PIPE)
        try:
            wait_until(started.exists, what="the slow request to start")
            daemon.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            output, _ = client.communicate(timeout=20)
        finally:
            client.kill()
        assert daemon.wait(timeout=20) == 0
    text = output.decode()
    goaway = text.index("recv GOAWAY frame")
    assert "last_stream_id=13, error_code=NO_ERROR" in text[goaway:goaway + 200]  # nghttp's first request is stream 13
    assert text.index("slow done") > goaway  # the stream in flight finished after the GOAWAY


# -- WebSocket over HTTP/2 ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("h2ws")
    config = http_config(app="tests.ws_apps:app",
                         listener_extra="websocket: {max_message_size: 64KiB, allowed_origins: [https://good.example]}")
    daemon = Daemon(tmp, config).start()
    yield daemon
    daemon.stop()


def open_websocket(client: H2Client, path: str, extra: list[tuple[bytes, bytes]] | None = None,
                   origin: bytes = b"https://good.example") -> tuple[int, dict[bytes, bytes]]:
    client.until(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))
    assert client.conn.remote_settings.enable_connect_protocol == 1
    stream_id = client.conn.get_next_available_stream_id()
    client.conn.send_headers(stream_id, [
        (b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"http"), (b":path", path.encode()),
        (b":authority", b"localhost"), (b"sec-websocket-version", b"13"), (b"origin", origin), *(extra or []),
    ])
    client.flush()
    response = client.until(lambda e: isinstance(e, h2.events.ResponseReceived) and e.stream_id == stream_id)
    return stream_id, dict(response.headers)


def ws_messages(client: H2Client, stream_id: int, count: int) -> list[tuple[int, bytes]]:
    frames: list[tuple[int, bytes]] = []
    while len(frames) < count:
        event = client.until(lambda e: isinstance(e, h2.events.DataReceived) and e.stream_id == stream_id and e not in seen)
        seen.append(event)
        frames.extend(ws_parse(event.data))
    return frames


seen: list[object] = []


def test_websocket_over_http2_echo_scope_and_close(ws: Daemon) -> None:
    with H2Client(ws.port()) as client:
        stream_id, headers = open_websocket(client, "/echo?tag=h2", [(b"sec-websocket-protocol", b"chat, v2")])
        assert headers[b":status"] == b"200" and headers[b"sec-websocket-protocol"] == b"v2"
        client.conn.send_data(stream_id, ws_frame(0x1, b"hello") + ws_frame(0x2, b"\x00\x01", fin=False) + ws_frame(0x0, b"\x02"))
        client.flush()
        frames = ws_messages(client, stream_id, 2)
        assert frames == [(0x81, b"hello"), (0x82, b"\x00\x01\x02")]
        client.conn.send_data(stream_id, ws_frame(0x1, b"close 4001 bye"))
        client.flush()
        frames = ws_messages(client, stream_id, 1)
        assert frames == [(0x88, (4001).to_bytes(2, "big") + b"bye")]
        client.conn.send_data(stream_id, ws_frame(0x8, (4001).to_bytes(2, "big")), end_stream=True)
        client.flush()
        client.until(lambda e: isinstance(e, h2.events.StreamEnded) and e.stream_id == stream_id)
    with H2Client(ws.port()) as client:
        stream_id, _ = open_websocket(client, "/scope")
        scope = json.loads(ws_messages(client, stream_id, 1)[0][1])
    assert scope["type"] == "websocket" and scope["http_version"] == "2" and scope["scheme"] == "ws"
    assert scope["path"] == "/scope" and "method" not in scope


def test_websocket_over_http2_deflate_and_limits(ws: Daemon) -> None:
    with H2Client(ws.port()) as client:
        stream_id, headers = open_websocket(client, "/echo", [(b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits")])
        assert headers[b"sec-websocket-extensions"].startswith(b"permessage-deflate")
        import zlib

        compressor = zlib.compressobj(wbits=-15)
        payload = compressor.compress(b"squeeze " * 100) + compressor.flush(zlib.Z_SYNC_FLUSH)[:-4]
        client.conn.send_data(stream_id, ws_frame(0x1, payload, rsv1=True))
        client.flush()
        (first, data), = ws_messages(client, stream_id, 1)
        assert first == 0xC1  # FIN, RSV1 (compressed), text
        assert zlib.decompressobj(wbits=-15).decompress(data + b"\x00\x00\xff\xff") == b"squeeze " * 100
        # A message over max_message_size (64 KiB) closes with 1009, as over HTTP/1.1.
        bomb = compressor.compress(b"\x00" * 200_000) + compressor.flush(zlib.Z_SYNC_FLUSH)[:-4]
        client.conn.send_data(stream_id, ws_frame(0x2, bomb, rsv1=True))
        client.flush()
        (first, data), = ws_messages(client, stream_id, 1)
        assert first == 0x88 and int.from_bytes(data[:2], "big") == 1009


def test_websocket_over_http2_refusals(ws: Daemon) -> None:
    with H2Client(ws.port()) as client:
        _, headers = open_websocket(client, "/reject")
        assert headers[b":status"] == b"403"
        _, headers = open_websocket(client, "/echo", origin=b"https://evil.example")
        assert headers[b":status"] == b"403"  # the listener's Origin allow-list, before the application
        _, headers = open_websocket(client, "/deny")
        assert headers[b":status"] == b"401" and headers[b"www-authenticate"] == b"Bearer"
        # An application that fails after accepting closes with 1011, as over HTTP/1.1.
        stream_id, _ = open_websocket(client, "/raise-after")
        (first, data), = ws_messages(client, stream_id, 1)
        assert first == 0x88 and int.from_bytes(data[:2], "big") == 1011
        # Unmasked client frames break RFC 6455 5.1: 1002.
        stream_id, _ = open_websocket(client, "/echo")
        client.conn.send_data(stream_id, b"\x81\x02hi")
        client.flush()
        (first, data), = ws_messages(client, stream_id, 1)
        assert first == 0x88 and int.from_bytes(data[:2], "big") == 1002
