"""Listener-level limits on a real daemon: max_connections holds exactly under a burst, running
out of file descriptors is an error (and the start-up checks ulimit -n), TLS handshakes have a
limit and a timeout of their own, and TLS refuses the suites without forward secrecy."""

from __future__ import annotations

import os
import resource
import selectors
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.integration.daemon import Daemon, http_config, wait_until

pytestmark = pytest.mark.slow

REQUEST = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"


def open_sockets(pid: int) -> int:
    """How many sockets process ``pid`` has open (from /proc: the server's own view)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                count += 1
        except FileNotFoundError:
            continue
    return count


def daemon_pid(daemon: Daemon) -> int:
    assert daemon.process is not None
    return daemon.process.pid


def burst(port: int, count: int, payload: bytes = REQUEST) -> list[socket.socket]:
    """``count`` clients connect at once (the kernel completes the handshakes) and send ``payload``."""
    clients = []
    for _ in range(count):
        client = socket.socket()
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", port))
        clients.append(client)
    for client in clients:
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_WRITE)
        assert selector.select(10), "a connection did not complete"
        selector.close()
        if payload:
            client.send(payload)
    return clients


class Answers:
    """Which clients got an HTTP response (read without blocking)."""

    def __init__(self, clients: list[socket.socket]) -> None:
        self.selector = selectors.DefaultSelector()
        self.answered: set[socket.socket] = set()
        self.closed: set[socket.socket] = set()
        for client in clients:
            self.selector.register(client, selectors.EVENT_READ)

    def poll(self) -> int:
        for key, _ in self.selector.select(0.05):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except ConnectionError:
                data = b""
            if data:
                self.answered.add(sock)
            else:
                self.closed.add(sock)
                self.selector.unregister(sock)
        return len(self.answered)

    def close(self) -> None:
        self.selector.close()


def test_max_connections_is_exact_under_a_burst(tmp_path: Path) -> None:
    limit, clients_count = 120, 300
    config = http_config(listener_extra=f"""
        limits: {{max_connections: {limit}}}
        timeouts: {{header: 60s, keep_alive: 60s}}
    """)
    with Daemon(tmp_path, config) as daemon:
        pid = daemon_pid(daemon)
        baseline = open_sockets(pid)
        clients = burst(daemon.port(), clients_count)
        answers = Answers(clients)
        peak = 0

        def served(target: int) -> Callable[[], bool]:
            def check() -> bool:
                nonlocal peak
                peak = max(peak, open_sockets(pid) - baseline)
                return answers.poll() >= target
            return check

        try:
            wait_until(served(limit), timeout=30, what=f"{limit} clients to be answered")
            assert len(answers.answered) == limit  # never more served at once than the limit
            assert peak <= limit
            assert not answers.closed  # the others wait in the accept queue: none was reset
            # Every client that leaves lets exactly one waiting client in.
            leaving = list(answers.answered)[:30]
            for client in leaving:
                answers.selector.unregister(client)
                client.close()
            answers.answered -= set(leaving)
            wait_until(served(limit), timeout=30, what="30 waiting clients to be answered")
            assert peak <= limit
            assert open_sockets(pid) - baseline <= limit
            assert not answers.closed
        finally:
            answers.close()
            for client in clients:
                client.close()
    assert f"web: max_connections={limit} reached; new connections wait in the kernel's accept queue" in daemon.output()


def _limit_files(soft: int, hard: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return apply


def test_running_out_of_file_descriptors_is_an_error_and_the_daemon_recovers(tmp_path: Path) -> None:
    config = http_config(listener_extra="""
        limits: {max_connections: 1000}
        timeouts: {header: 60s, keep_alive: 60s}
    """)
    daemon = Daemon(tmp_path, config)
    daemon.preexec = _limit_files(64, 64)
    daemon.start()
    try:
        output = daemon.output()
        assert "[gateway#warn] ulimit -n is 64 (hard limit 64), below the 1000 connections the listeners allow (web 1000)" in output
        clients = burst(daemon.port(), 100)
        wait_until(lambda: "out of file descriptors" in daemon.output(), timeout=30, what="the EMFILE error")
        line = next(text for text in daemon.output().splitlines() if "out of file descriptors" in text)
        assert "#error]" in line and "web: out of file descriptors (ulimit -n is 64" in line
        for client in clients:
            client.close()
        # Once descriptors are free again, new clients are served.
        wait_until(lambda: _get(daemon) == 200, timeout=30, what="the daemon to serve again")
    finally:
        daemon.stop()


def _get(daemon: Daemon) -> int:
    try:
        return httpx.get(daemon.url() + "/hello", timeout=2).status_code
    except httpx.HTTPError:
        return 0


def test_a_soft_file_limit_below_the_listeners_needs_is_raised(tmp_path: Path) -> None:
    config = http_config(listener_extra="limits: {max_connections: 1000}")
    daemon = Daemon(tmp_path, config)
    daemon.preexec = _limit_files(256, 4096)
    daemon.start()
    try:
        assert "Raised the open file limit from 256 to 1128 for the listeners' max_connections" in daemon.output()
        with open(f"/proc/{daemon_pid(daemon)}/limits") as limits:
            line = next(text for text in limits if text.startswith("Max open files"))
        assert line.split()[3:5] == ["1128", "4096"]
    finally:
        daemon.stop()


# -- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    trustme = pytest.importorskip("trustme")
    tmp = tmp_path_factory.mktemp("tls")
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    server = ca.issue_cert("localhost", "127.0.0.1", key_type=trustme.KeyType.RSA)
    key, cert, authority = tmp / "key.pem", tmp / "cert.pem", tmp / "ca.pem"
    server.private_key_pem.write_to_path(str(key))
    server.cert_chain_pems[0].write_to_path(str(cert))
    ca.cert_pem.write_to_path(str(authority))
    return key, cert, authority


def tls_config(certificate: tuple[Path, Path, Path], listener_extra: str = "") -> str:
    key, cert, _ = certificate
    return http_config(endpoint=f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
                       listener_extra=listener_extra)


def handshake(port: int, authority: Path, *, ciphers: str | None = None, version: ssl.TLSVersion | None = None) -> str | None:
    """The cipher suite a Python TLS client negotiates, or None when the server refuses."""
    context = ssl.create_default_context(cafile=str(authority))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if version is not None:
        context.minimum_version = context.maximum_version = version
    if ciphers is not None:
        context.set_ciphers(ciphers)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                cipher = tls.cipher()
                return cipher[0] if cipher else None
    except ssl.SSLError:
        return None


WEAK_TLS12 = ["AES128-SHA", "AES256-SHA256", "AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384"]
GOOD_TLS12 = ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"]


def test_tls_refuses_suites_without_forward_secrecy_or_with_cbc(tmp_path: Path, certificate: tuple[Path, Path, Path]) -> None:
    authority = certificate[2]
    with Daemon(tmp_path, tls_config(certificate)) as daemon:
        port = daemon.port()
        for cipher in WEAK_TLS12:
            assert handshake(port, authority, ciphers=cipher, version=ssl.TLSVersion.TLSv1_2) is None, cipher
        for cipher in GOOD_TLS12:
            assert handshake(port, authority, ciphers=cipher, version=ssl.TLSVersion.TLSv1_2) == cipher
        assert handshake(port, authority, version=ssl.TLSVersion.TLSv1_3) in (
            "TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256")
        if shutil.which("openssl"):
            assert not s_client(port, "-tls1_2", "-cipher", "AES128-SHA")
            assert not s_client(port, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA")
            assert not s_client(port, "-tls1_1", "-cipher", "ALL:@SECLEVEL=0")
            assert s_client(port, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256") == "ECDHE-RSA-AES128-GCM-SHA256"
            assert s_client(port, "-tls1_3") == "TLS_AES_256_GCM_SHA384"


def s_client(port: int, *args: str) -> str | None:
    """The cipher ``openssl s_client`` negotiates, or None when the handshake fails."""
    result = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", *args],
                            input="", capture_output=True, text=True, timeout=30)
    for line in result.stdout.splitlines():
        if "Cipher is" in line:
            cipher = line.rsplit("Cipher is", 1)[1].strip()
            return None if cipher == "(NONE)" else cipher
    return None


def test_tls_policy_is_configurable_per_listener(tmp_path: Path, certificate: tuple[Path, Path, Path]) -> None:
    authority = certificate[2]
    config = tls_config(certificate, 'ssl: {min_version: "1.3"}')
    with Daemon(tmp_path, config) as daemon:
        assert handshake(daemon.port(), authority, version=ssl.TLSVersion.TLSv1_2) is None
        assert handshake(daemon.port(), authority, version=ssl.TLSVersion.TLSv1_3) is not None
    (tmp_path / "legacy").mkdir()
    with Daemon(tmp_path / "legacy", tls_config(certificate, "ssl: {ciphers: 'ECDHE-RSA-AES128-SHA'}")) as daemon:
        port = daemon.port()
        assert handshake(port, authority, ciphers="ECDHE-RSA-AES128-SHA", version=ssl.TLSVersion.TLSv1_2) == "ECDHE-RSA-AES128-SHA"
        assert handshake(port, authority, ciphers="ECDHE-RSA-AES128-GCM-SHA256", version=ssl.TLSVersion.TLSv1_2) is None


def test_tls_handshakes_have_a_limit_and_a_timeout(tmp_path: Path, certificate: tuple[Path, Path, Path]) -> None:
    authority = certificate[2]
    config = tls_config(certificate, "ssl: {max_handshakes: 4, handshake_timeout: 1s}")
    with Daemon(tmp_path, config) as daemon:
        pid = daemon_pid(daemon)
        baseline = open_sockets(pid)
        # Clients that connect and never start their handshake.
        silent = burst(daemon.port(), 12, payload=b"")
        answers = Answers(silent)
        peak = 0

        def all_closed() -> bool:
            nonlocal peak
            peak = max(peak, open_sockets(pid) - baseline)
            answers.poll()
            return len(answers.closed) == len(silent)

        try:
            # 4 at a time, each closed after 1 s: all 12 are gone within about 3 s.
            started = time.monotonic()
            wait_until(all_closed, timeout=30, what="the silent clients to be disconnected")
            assert time.monotonic() - started >= 2.0
            assert peak <= 4
            assert not answers.answered
        finally:
            answers.close()
            for client in silent:
                client.close()
        assert handshake(daemon.port(), authority) is not None
        context = ssl.create_default_context(cafile=str(authority))
        assert httpx.get(f"https://localhost:{daemon.port()}/hello", verify=context).text == "Hello, world!"
    assert "web: tls.max_handshakes=4 TLS handshakes in progress" in daemon.output()


def test_starttls_of_smtp_uses_the_same_policy(tmp_path: Path, certificate: tuple[Path, Path, Path]) -> None:
    import smtplib

    key, cert, authority = certificate
    config = f"""
application: tests.email_apps:app
listeners:
  - name: smtp
    protocol: smtp
    endpoint: tcp:0:interface=127.0.0.1
    hostname: localhost
    tls: {{certificate: {cert}, private_key: {key}}}
logging: {{level: info}}
"""
    with Daemon(tmp_path, config) as daemon:
        port = daemon.port("smtp")
        weak = ssl.create_default_context(cafile=str(authority))
        weak.maximum_version = ssl.TLSVersion.TLSv1_2
        weak.set_ciphers("AES128-SHA:ECDHE-RSA-AES128-SHA")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("client.test")
            with pytest.raises(ssl.SSLError):
                client.starttls(context=weak)
        good = ssl.create_default_context(cafile=str(authority))
        good.check_hostname = False
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("client.test")
            assert client.starttls(context=good)[0] == 220
            assert client.sock is not None and client.sock.version() in ("TLSv1.2", "TLSv1.3")
