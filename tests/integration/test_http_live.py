"""The HTTP/1.1 listener over real sockets, with real clients (curl, httpx, raw sockets)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import raw_request
from tests.integration.daemon import Daemon, http_config, wait_until

pytestmark = pytest.mark.slow


class Reader:
    """Reads whole responses from a socket, keeping bytes that belong to the next one."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        self.buf += chunk

    def response(self) -> tuple[bytes, bytes]:
        """One content-length or chunked response: (head, body)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lower = head.lower()
        if b"content-length:" in lower:
            n = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
            while len(self.buf) < n:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
            return head, body
        while b"0\r\n\r\n" not in self.buf:
            self._fill()
        end = self.buf.index(b"0\r\n\r\n") + 5
        body, self.buf = self.buf[:end], self.buf[end:]
        return head, body


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read a single response (for connections carrying one response at a time)."""
    return Reader(sock).response()


def test_curl_gets_a_response_with_server_and_date(web: Daemon) -> None:
    result = subprocess.run(["curl", "-s", "-i", web.url() + "/hello"], capture_output=True, check=True)
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"server: gateway" in head and b"date: " in head
    assert body == b"Hello, world!"


def test_keep_alive_serves_many_requests_on_one_connection(web: Daemon) -> None:
    with socket.create_connection(("127.0.0.1", web.port())) as sock:
        for _ in range(5):
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            head, body = read_response(sock)
            assert head.startswith(b"HTTP/1.1 200") and body == b"Hello, world!"


def test_pipelined_requests_get_responses_in_order(web: Daemon) -> None:
    with socket.create_connection(("127.0.0.1", web.port())) as sock:
        sock.sendall(b"GET /slow?s=0.3 HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nping")
        reader = Reader(sock)
        bodies = [reader.response()[1] for _ in range(3)]
    assert bodies[0] == b"slow done"
    assert bodies[1] == b"Hello, world!"
    assert bodies[2] == b"4\r\nping\r\n0\r\n\r\n"


def _stats(web: Daemon) -> dict[str, Any]:
    return httpx.get(web.url() + "/stats").json()  # type: ignore[no-any-return]


def test_request_body_streams_to_the_application(web: Daemon) -> None:
    with socket.create_connection(("127.0.0.1", web.port())) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in range(1, 4):
            sock.sendall(b"400\r\n" + b"u" * 1024 + b"\r\n")
            # Each piece reaches the application before the body is complete.
            wait_until(lambda: _stats(web)["upload_received"] == piece * 1024, what=f"body piece {piece}")
        sock.sendall(b"0\r\n\r\n")
        _, body = read_response(sock)
    result = json.loads(body)
    assert result["total"] == 3072
    assert [total for _, total in result["arrivals"]][:3] == [1024, 2048, 3072]


def test_httpx_streaming_upload_and_echo(web: Daemon) -> None:
    def pieces():  # type: ignore[no-untyped-def]
        for i in range(50):
            yield b"%04d" % i

    response = httpx.post(web.url() + "/echo", content=pieces())
    assert response.status_code == 200
    assert response.content == b"".join(b"%04d" % i for i in range(50))


def test_response_streams_to_the_client(web: Daemon) -> None:
    with socket.create_connection(("127.0.0.1", web.port()), timeout=10) as sock:
        # The application holds the response after its first chunk until released: the chunk
        # must reach the client meanwhile.
        sock.sendall(b"GET /stream?n=3&hold=streams HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while b"chunk 0" not in first:
            data = sock.recv(65536)
            assert data, first
            first += data
        assert b"chunk 1" not in first
        assert httpx.get(web.url() + "/release", params={"tag": "streams"}).text == "released"
        rest = b""
        while not rest.endswith(b"0\r\n\r\n"):
            rest += sock.recv(65536)
        assert b"chunk 2" in rest


def test_slow_client_makes_the_application_wait(web: Daemon) -> None:
    """A client that does not read: send() waits instead of buffering 64 MiB in the daemon."""
    with socket.create_connection(("127.0.0.1", web.port())) as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        slow.sendall(b"GET /big?mb=64 HTTP/1.1\r\nHost: x\r\n\r\n")
        # Wait until the daemon holds the application's send() (and keeps holding it: two reads
        # in a row see it stopped at the same place), then check how far it got.
        def held() -> int | None:
            first, second = _stats(web), _stats(web)
            stopped = first["big_held"] is not None and first["big_sent"] == second["big_sent"]
            return second["big_sent"] if stopped else None

        sent = wait_until(held, what="send() to wait for the slow client")
        assert 0 < sent < 16 * 1024 * 1024, sent
        total = 0
        slow.settimeout(30)
        while total < 64 * 1024 * 1024:
            chunk = slow.recv(1 << 20)
            assert chunk
            total += len(chunk)
    assert httpx.get(web.url() + "/stats").json()["big_sent"] == 64 * 1024 * 1024


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
        (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n", 413),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
    ],
)
def test_limits_and_malformed_requests(web: Daemon, request_bytes: bytes, status: int) -> None:
    response = raw_request(web.port(), request_bytes)
    assert response.startswith(b"HTTP/1.1 %d " % status), response[:100]
    assert b"connection: close" in response.lower()
    # The daemon is unharmed.
    assert httpx.get(web.url() + "/hello").status_code == 200


def test_application_error_gives_500_and_a_logged_traceback(web: Daemon) -> None:
    response = httpx.get(web.url() + "/error")
    assert response.status_code == 500
    deadline = time.monotonic() + 5
    while "this application failed on purpose" not in web.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "RuntimeError: this application failed on purpose" in web.output()


def test_trailers_reach_a_client_that_accepts_them(web: Daemon) -> None:
    response = raw_request(web.port(), b"GET /trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n")
    assert response.endswith(b"4\r\nbody\r\n0\r\nx-digest: abc\r\n\r\n")


def test_pathsend_sends_a_file(web: Daemon, tmp_path: Path) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)
    target = tmp_path / "payload.bin"
    target.write_bytes(payload)
    result = subprocess.run(["curl", "-s", "-o", "-", f"{web.url()}/file?path={target}"], capture_output=True, check=True)
    assert hashlib.sha256(result.stdout).hexdigest() == hashlib.sha256(payload).hexdigest()


def test_http_1_0_request(web: Daemon) -> None:
    response = raw_request(web.port(), b"GET /hello HTTP/1.0\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200 OK") and response.endswith(b"Hello, world!")
    assert b"connection: close" in response


def test_expect_100_continue_with_curl(web: Daemon) -> None:
    result = subprocess.run(
        ["curl", "-s", "-v", "-H", "Expect: 100-continue", "--data-binary", "hello there", web.url() + "/upload"],
        capture_output=True, check=True,
    )
    assert json.loads(result.stdout)["total"] == 11
    assert b"HTTP/1.1 100 Continue" in result.stderr


def test_scope_over_the_wire(web: Daemon) -> None:
    scope = httpx.get(web.url() + "/scope?a=%20b", headers={"X-Forwarded-For": "6.6.6.6"}).json()
    assert scope["type"] == "http" and scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["client"][0] == "127.0.0.1"  # untrusted proxy headers are ignored
    assert scope["server"] == ["127.0.0.1", web.port()]
    assert scope["query_string"] == "a=%20b"
    assert scope["state"] == {"booted": "yes"}


def test_access_log_in_combined_format(web: Daemon) -> None:
    httpx.get(web.url() + "/hello?x=1", headers={"User-Agent": "probe/1.0", "Referer": "http://r/"})
    log = Path(web.tmp / "access.log")
    deadline = time.monotonic() + 5
    while "probe/1.0" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    line = [l for l in log.read_text().splitlines() if "probe/1.0" in l][-1]
    assert line.startswith("127.0.0.1 - - [")
    assert '"GET /hello?x=1 HTTP/1.1" 200 13 "http://r/" "probe/1.0"' in line


def test_trusted_proxy_headers(tmp_path: Path) -> None:
    config = http_config(listener_extra="proxy: {trusted: [127.0.0.1]}\nroot_path: /app")
    with Daemon(tmp_path, config) as daemon:
        scope = httpx.get(daemon.url() + "/scope", headers={
            "X-Forwarded-For": "203.0.113.50, 127.0.0.1", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "example.org",
        }).json()
    assert scope["client"] == ["203.0.113.50", 0]
    assert scope["scheme"] == "https"
    assert ["host", "example.org"] in scope["headers"]
    assert scope["root_path"] == "/app" and scope["path"] == "/app/scope"


def test_tls_listener_with_a_generated_certificate(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    key_path, cert_path = tmp_path / "key.pem", tmp_path / "cert.pem"
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    config = http_config(endpoint=f"ssl:0:interface=127.0.0.1:privateKey={key_path}:certKey={cert_path}")
    with Daemon(tmp_path, config) as daemon:
        url = f"https://localhost:{daemon.port()}"
        scope = httpx.get(url + "/scope", verify=ssl.create_default_context(cafile=str(ca_path))).json()
        result = subprocess.run(["curl", "-s", "--cacert", str(ca_path), url + "/hello"], capture_output=True, check=True)
    assert scope["scheme"] == "https"
    tls = scope["extensions"]["tls"]
    assert tls["tls_version"] in (0x0303, 0x0304)
    assert isinstance(tls["cipher_suite"], int)
    assert "BEGIN CERTIFICATE" in tls["server_cert"]
    assert result.stdout == b"Hello, world!"


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_many_concurrent_connections(web: Daemon) -> None:
    with httpx.Client(limits=httpx.Limits(max_connections=50)) as client:
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(lambda _: client.get(web.url() + "/hello").status_code, range(200)))
    assert statuses == [200] * 200


def test_max_connections_makes_new_clients_wait(tmp_path: Path) -> None:
    config = http_config(listener_extra="limits: {max_connections: 2}")
    with Daemon(tmp_path, config) as daemon:
        first = socket.create_connection(("127.0.0.1", daemon.port()))
        second = socket.create_connection(("127.0.0.1", daemon.port()))
        for sock in (first, second):
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock)[1] == b"Hello, world!"
        # A third client connects (the kernel queues it) but is not served yet.
        third = socket.create_connection(("127.0.0.1", daemon.port()))
        third.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        third.settimeout(0.5)
        with pytest.raises(TimeoutError):
            third.recv(100)
        first.close()
        third.settimeout(10)
        assert read_response(third)[1] == b"Hello, world!"
        second.close()
        third.close()
