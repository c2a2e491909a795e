"""The IMAP reader against a real Dovecot, started on a free port by the tests.

Dovecot runs as a plain process through ``bench/dovecot_test_server.sh`` (its own config, 127.0.0.1
only) with a trustme certificate for STARTTLS; the gateway verifies it against the trustme CA.
``poll_interval`` is five minutes, so a message delivered within seconds came through IDLE.
"""

from __future__ import annotations

import imaplib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.integration.daemon import REPO, Daemon

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("dovecot") is None and not os.path.exists("/usr/sbin/dovecot"),
                       reason="needs Debian's dovecot-imapd"),
]

SCRIPT = REPO / "bench" / "dovecot_test_server.sh"
USER, PASSWORD = "testuser", "testpass"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Dovecot:
    """A throwaway Dovecot (``start``/``stop``/``restart``) and an imaplib helper."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.env = {**os.environ, "DOVECOT_DIR": str(directory), "DOVECOT_PORT": str(port), "DOVECOT_TLS": "1",
                    "DOVECOT_USER": USER, "DOVECOT_PASS": PASSWORD}

    def run(self, command: str) -> None:
        # Output goes to a file: the daemon inherits it, and a pipe would stay open as long as it runs.
        log = self.directory / "script.log"
        with open(log, "ab") as output:
            code = subprocess.call(["bash", str(SCRIPT), command], env=self.env, stdout=output, stderr=output, timeout=30)
        if code != 0:
            raise RuntimeError(f"dovecot {command} failed: {log.read_text(errors='replace')}")

    def start(self) -> None:
        self.run("start")

    def stop(self) -> None:
        self.run("stop")

    def restart(self) -> None:
        """Stop and start, dropping every connection, as a real restart does.

        Stopping the master leaves running ``imap`` processes (and their clients' connections)
        alive, so those children of this test's Dovecot are ended too, by their process ids.
        """
        master = int((self.directory / "run" / "master.pid").read_text())
        children = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                    children.append(int(entry.name))
        self.stop()
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.start()

    def imap(self) -> imaplib.IMAP4:
        connection = imaplib.IMAP4("127.0.0.1", self.port)
        connection.login(USER, PASSWORD)
        return connection

    def append(self, mailbox: str, to: str, subject: str, extra: str = "") -> str:
        message_id = f"<{uuid.uuid4().hex}@example.org>"
        raw = (f"From: Sender <sender@example.org>\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {message_id}\r\n"
               f"{extra}\r\nHello from IMAP \xe9\r\n").encode("latin-1")
        with self.session() as connection:
            status, _ = connection.append(mailbox, None, None, raw)
            assert status == "OK"
        return message_id

    def flags(self, mailbox: str, message_id: str) -> set[str] | None:
        """The flags of the message with this Message-ID in ``mailbox``, or None if absent."""
        with self.session() as connection:
            connection.select(mailbox)
            status, data = connection.uid("SEARCH", None, "HEADER", "Message-ID", message_id)
            uids = data[0].split()
            if not uids:
                return None
            status, data = connection.uid("FETCH", uids[0], "(FLAGS)")
            if not data or data[0] is None:
                return None  # moved or expunged between the SEARCH and the FETCH
            return {flag.decode() for flag in re.findall(rb"\\\w+", data[0])}

    def session(self) -> Any:
        outer = self

        class _Session:
            def __enter__(self) -> imaplib.IMAP4:
                self.connection = outer.imap()
                return self.connection

            def __exit__(self, *exc: Any) -> None:
                self.connection.logout()

        return _Session()


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    # Not under pytest's tmp_path: its directories are 0700, and as root Dovecot's auth and mail
    # processes run as other users that must reach the files.
    directory = Path(tempfile.mkdtemp(prefix="gateway-dovecot-"))
    directory.chmod(0o755)
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_pem.write_to_path(str(directory / "key.pem"))  # the script uses these when present
    cert.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    server = Dovecot(directory, free_port())
    try:
        server.start()
        with server.session() as connection:
            assert connection.create("Moves")[0] == "OK"
        yield server
    finally:
        if (directory / "run" / "master.pid").exists():
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)


class TLSProxy:
    """Implicit TLS (as on port 993) in front of Dovecot's plain port, for the implicit-TLS reader."""

    def __init__(self, directory: Path, target: int) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(directory / "cert.pem"), str(directory / "key.pem"))
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self._start(self._accept)

    def _start(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return  # closed
            self._start(self._serve, raw)

    def _serve(self, raw: socket.socket) -> None:
        try:
            with self.context.wrap_socket(raw, server_side=True) as client, \
                    socket.create_connection(("127.0.0.1", self.target)) as server:
                done = threading.Event()
                self._start(self._pump, server, client, done)
                self._pump(client, server, done)
                done.wait(5)
        except OSError:
            raw.close()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, done: threading.Event) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            done.set()
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()


class Outbox:
    def __init__(self, path: Path) -> None:
        self.path = path

    def find(self, predicate: Any) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        entries = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        return [entry for entry in entries if predicate(entry)]

    def wait_for(self, predicate: Any, timeout: float = 10.0, count: int = 1) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.find(predicate)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"fewer than {count} matching deliveries within {timeout}s: {self.find(lambda e: True)}")


@pytest.fixture(scope="module")
def gateway(dovecot: Dovecot, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Outbox]]:
    tmp = tmp_path_factory.mktemp("imap-gateway")
    proxy = TLSProxy(dovecot.directory, dovecot.port)
    other_ca = tmp / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    with dovecot.session() as connection:
        assert connection.create("Tls")[0] == "OK"
    common = f"""host: 127.0.0.1
    port: {dovecot.port}
    tls: starttls
    server_name: localhost
    ca_file: {dovecot.directory}/ca.pem
    username: {USER}
    password: {PASSWORD}
    poll_interval: 300s
    retry_interval: 1s
    reconnect_initial: 200ms
    reconnect_max: 1s"""
    config = f"""
application: tests.email_apps:app
listeners:
  - name: inbox
    protocol: imap
    {common}
  - name: moves
    protocol: imap
    mailbox: Moves
    after_accept: move
    move_to: Processed
    {common}
  - name: implicit
    protocol: imap
    mailbox: Tls
    {common.replace(f"port: {dovecot.port}", f"port: {proxy.port}").replace("tls: starttls", "tls: implicit")}
  - name: untrusted
    protocol: imap
    mailbox: Tls
    {common.replace(f"{dovecot.directory}/ca.pem", str(other_ca))}
logging: {{level: info}}
"""
    outbox = Outbox(tmp / "outbox.jsonl")
    daemon = Daemon(tmp, config, env={"EMAIL_TEST_OUTBOX": str(outbox.path)})
    try:
        daemon.start()
        yield daemon, outbox
    finally:
        daemon.stop()
        proxy.close()
    for block in daemon.output().split("Traceback (most recent call last):")[1:]:
        # Only the test application's own failures may appear (the reader, the client: none).
        assert "RuntimeError: always failing" in re.split(r"\n\d{4}-\d\d-\d\dT", block)[0], block


def test_a_new_message_arrives_through_idle_and_is_marked_seen_after_accept(dovecot: Dovecot, gateway: Any) -> None:
    daemon, outbox = gateway
    message_id = dovecot.append("INBOX", "Help Desk <help@accept.test>", "via idle")
    # Delivered within wait_for's 10 s: polling (every five minutes) would not have found it yet.
    (entry,) = outbox.wait_for(lambda e: e["kind"] == "accepted" and e.get("subject") == "via idle")
    assert entry["source"] == "imap" and entry["mailbox"] == "INBOX" and isinstance(entry["uid"], int)
    assert entry["recipients"] == ["help@accept.test"] and entry["sender"] == "sender@example.org"
    assert entry["tls"] is True and entry["tls_version"] in (0x0303, 0x0304)
    assert entry["raw"].endswith("\r\n\r\nHello from IMAP \xe9\r\n")  # the exact bytes (latin-1 in the JSON)
    deadline = time.monotonic() + 5
    while "\\Seen" not in (dovecot.flags("INBOX", message_id) or set()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "\\Seen" in dovecot.flags("INBOX", message_id)


def test_the_message_stays_unseen_while_the_consumer_works(dovecot: Dovecot, gateway: Any) -> None:
    daemon, outbox = gateway
    message_id = dovecot.append("INBOX", "slow@slow.test", "slow one", extra="X-Delay: 1.5\r\n")
    outbox.wait_for(lambda e: e["kind"] == "started" and e.get("subject") == "slow one")
    assert "\\Seen" not in dovecot.flags("INBOX", message_id)  # the consumer has not answered yet
    outbox.wait_for(lambda e: e["kind"] == "accepted" and e.get("subject") == "slow one")
    deadline = time.monotonic() + 5
    while "\\Seen" not in dovecot.flags("INBOX", message_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "\\Seen" in dovecot.flags("INBOX", message_id)


def test_a_failing_consumer_leaves_the_message_unseen_and_it_is_retried(dovecot: Dovecot, gateway: Any) -> None:
    daemon, outbox = gateway
    message_id = dovecot.append("INBOX", "broken@fail.test", "keeps failing")
    attempts = outbox.wait_for(lambda e: e["kind"] == "failed" and message_id in e["raw"], timeout=15, count=2)
    assert len({a["uid"] for a in attempts}) == 1  # the same message, offered again
    assert dovecot.flags("INBOX", message_id) == set()  # still unseen, still in the mailbox


def test_move_after_accept(dovecot: Dovecot, gateway: Any) -> None:
    daemon, outbox = gateway
    message_id = dovecot.append("Moves", "mover@accept.test", "move me")
    outbox.wait_for(lambda e: e["kind"] == "accepted" and e.get("subject") == "move me")
    deadline = time.monotonic() + 5
    while dovecot.flags("Moves", message_id) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dovecot.flags("Moves", message_id) is None
    assert "\\Seen" in dovecot.flags("Processed", message_id)


def test_the_reader_reconnects_after_dovecot_restarts(dovecot: Dovecot, gateway: Any) -> None:
    daemon, outbox = gateway
    dovecot.restart()
    message_id = dovecot.append("INBOX", "again@accept.test", "after restart")
    outbox.wait_for(lambda e: e["kind"] == "accepted" and e.get("subject") == "after restart", timeout=15)
    assert "reconnecting in" in daemon.output()
    deadline = time.monotonic() + 5
    while "\\Seen" not in dovecot.flags("INBOX", message_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "\\Seen" in dovecot.flags("INBOX", message_id)


def test_implicit_tls_and_an_untrusted_certificate(dovecot: Dovecot, gateway: Any) -> None:
    daemon, outbox = gateway
    message_id = dovecot.append("Tls", "tls@accept.test", "over implicit tls")
    (entry,) = outbox.wait_for(lambda e: e["kind"] == "accepted" and e.get("subject") == "over implicit tls")
    assert entry["mailbox"] == "Tls" and entry["tls"] is True
    deadline = time.monotonic() + 5
    while "\\Seen" not in dovecot.flags("Tls", message_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "\\Seen" in dovecot.flags("Tls", message_id)
    # The reader with the wrong CA never logged in: the certificate was checked, not trusted.
    log = daemon.output()
    assert "untrusted: reading" not in log
    assert re.search(r"untrusted: IMAP session with .* ended: .*certificate verify failed", log), log
