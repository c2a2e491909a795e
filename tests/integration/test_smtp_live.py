"""The SMTP listener in a real daemon, with real clients: Python's smtplib and Debian's swaks.

One daemon serves four listeners (``tests/email_apps.py`` is the application):

* ``mx``: plain SMTP on a free port (what other mail servers talk to);
* ``submission``: STARTTLS (trustme certificate) with AUTH (a hashed user and the hook), also the
  smarthost the replies of ``@reply.test`` go through, with the certificate checked;
* ``smtps``: implicit TLS (an ``ssl:`` endpoint) with AUTH;
* ``limited``: at most two connections per client address.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.integration.daemon import Daemon

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def quick_hash(password: str) -> str:
    """A valid pbkdf2 hash with few iterations, so tests do not wait for key stretching."""
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), b"salt", 1000)
    return "pbkdf2_sha256$1000$salt$" + base64.b64encode(key).decode()


class Outbox:
    """The JSON lines the test applications write for each delivery."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def find(self, predicate: Any) -> list[dict[str, Any]]:
        return [entry for entry in self.entries() if predicate(entry)]

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.find(predicate)
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no matching delivery within {timeout}s: {self.entries()}")


class Mail:
    """The running daemon and what the tests need to talk to it."""

    def __init__(self, daemon: Daemon, outbox: Outbox, ca: trustme.CA, tmp: Path) -> None:
        self.daemon = daemon
        self.outbox = outbox
        self.ca = ca
        self.tmp = tmp

    def port(self, name: str) -> int:
        return self.daemon.port(name)

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@pytest.fixture(scope="module")
def mail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mail]:
    tmp = tmp_path_factory.mktemp("smtp")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_pem.write_to_path(str(tmp / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp / "cert.pem"))
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    submission = free_port()
    users = f'{{alice: "{quick_hash("wonderland")}"}}'
    config = f"""
application: tests.email_apps:app
listeners:
  - name: mx
    protocol: smtp
    endpoint: tcp:0:interface=127.0.0.1
    hostname: mx.test
  - name: submission
    protocol: smtp
    endpoint: tcp:{submission}:interface=127.0.0.1
    hostname: localhost
    tls: {{certificate: {tmp}/cert.pem, private_key: {tmp}/key.pem}}
    auth: {{users: {users}, hook: "tests.email_apps:auth_hook"}}
    smarthost: {{host: localhost, port: {submission}, ca_file: {tmp}/ca.pem, username: alice, password: wonderland}}
  - name: smtps
    protocol: smtp
    endpoint: "ssl:0:interface=127.0.0.1:privateKey={tmp}/key.pem:certKey={tmp}/cert.pem"
    hostname: localhost
    auth: {{users: {users}, required: true}}
  - name: limited
    protocol: smtp
    endpoint: tcp:0:interface=127.0.0.1
    hostname: limited.test
    limits: {{max_connections_per_client: 2}}
logging: {{level: info}}
"""
    outbox = Outbox(tmp / "outbox.jsonl")
    daemon = Daemon(tmp, config, env={"EMAIL_TEST_OUTBOX": str(outbox.path)})
    try:
        daemon.start()
        yield Mail(daemon, outbox, ca, tmp)
    finally:
        daemon.stop()


def new_message(to: str, sender: str = "alice@example.org", subject: str = "hello", body: str = "Hi there.\n") -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@example.org>"
    message.set_content(body)
    return message


def test_smtplib_delivers_and_the_consumer_sees_the_envelope(mail: Mail) -> None:
    message = new_message("bob@accept.test", subject="plain delivery", body="line one\n.dot line\n")
    with smtplib.SMTP("127.0.0.1", mail.port("mx"), local_hostname="client.example") as client:
        code, features = client.ehlo()
        assert code == 250 and b"PIPELINING" in features and b"STARTTLS" not in features and b"AUTH" not in features
        refused = client.send_message(message, from_addr="alice@example.org", to_addrs=["bob@accept.test"])
        assert refused == {}
    entry = mail.outbox.wait_for(lambda e: e.get("subject") == "plain delivery")
    assert entry["sender"] == "alice@example.org" and entry["recipients"] == ["bob@accept.test"]
    assert entry["helo"] == "client.example" and entry["tls"] is False and entry["auth_user"] is None
    assert entry["client"][0] == "127.0.0.1" and entry["source"] == "smtp"
    assert entry["raw"].startswith("Received: from client.example ([127.0.0.1])\r\n\tby mx.test with ESMTP id ")
    assert "\r\n\r\nline one\r\n.dot line\r\n" in entry["raw"]


def test_a_consumer_that_raises_gives_451_and_the_retry_arrives(mail: Mail) -> None:
    message = new_message("carol@fail-once.test", subject="retry me")
    with smtplib.SMTP("127.0.0.1", mail.port("mx")) as client:
        with pytest.raises(smtplib.SMTPDataError) as info:
            client.send_message(message)
        assert info.value.smtp_code == 451 and info.value.smtp_error.startswith(b"4.3.0")
        assert not mail.outbox.find(lambda e: e["kind"] == "accepted" and e.get("subject") == "retry me")
        assert client.send_message(message) == {}  # the sending server's retry
    attempts = mail.outbox.find(lambda e: message["Message-ID"] in e["raw"])
    assert [a["kind"] for a in attempts] == ["failed", "accepted"]


def test_unrouted_recipients_are_refused_at_rcpt_and_rejections_are_passed_on(mail: Mail) -> None:
    with smtplib.SMTP("127.0.0.1", mail.port("mx")) as client:
        client.ehlo()
        client.mail("alice@example.org")
        assert client.rcpt("dave@nowhere.test") == (550, b"5.1.1 <dave@nowhere.test>: Recipient address rejected")
        client.rset()
        with pytest.raises(smtplib.SMTPDataError) as info:
            client.send_message(new_message("erin@reject.test"))
        assert (info.value.smtp_code, info.value.smtp_error) == (554, b"5.7.1 Not wanted here")


def test_starttls_then_auth_plain_login_and_the_hook(mail: Mail) -> None:
    port = mail.port("submission")
    with smtplib.SMTP("localhost", port) as client:
        features = client.ehlo()[1]
        assert b"STARTTLS" in features and b"AUTH" not in features  # AUTH only over TLS
        assert client.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice\0wonderland").decode())[0] == 538
        client.starttls(context=mail.tls_context())
        features = client.ehlo()[1]
        assert b"AUTH PLAIN LOGIN" in features and b"STARTTLS" not in features
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("alice", "wrong password")
        client.login("alice", "wonderland")
        client.send_message(new_message("frank@accept.test", subject="over tls with plain"))
    entry = mail.outbox.wait_for(lambda e: e.get("subject") == "over tls with plain")
    assert entry["tls"] is True and entry["tls_version"] in (0x0303, 0x0304) and entry["auth_user"] == "alice"
    assert "with ESMTPSA id" in entry["raw"]
    with smtplib.SMTP("localhost", port) as client:
        client.starttls(context=mail.tls_context())
        client.ehlo()
        client.user, client.password = "hookuser", "hookpass"
        assert client.auth("LOGIN", client.auth_login, initial_response_ok=False)[0] == 235
        client.send_message(new_message("gina@accept.test", subject="hook user"))
    assert mail.outbox.wait_for(lambda e: e.get("subject") == "hook user")["auth_user"] == "hookuser"


def test_implicit_tls_listener_requires_auth(mail: Mail) -> None:
    with smtplib.SMTP_SSL("localhost", mail.port("smtps"), context=mail.tls_context()) as client:
        features = client.ehlo()[1]
        assert b"AUTH PLAIN LOGIN" in features and b"STARTTLS" not in features
        assert client.mail("alice@example.org")[0] == 530  # auth.required
        client.login("alice", "wonderland")
        client.send_message(new_message("hank@accept.test", subject="implicit tls"))
    entry = mail.outbox.wait_for(lambda e: e.get("subject") == "implicit tls")
    assert entry["tls"] is True and entry["auth_user"] == "alice"


def swaks(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["swaks", "--helo", "swaks.example", *args], capture_output=True, text=True, timeout=60)


def swaks_has_tls() -> None:
    """Fail (not skip) when swaks cannot speak TLS: the test would otherwise prove nothing."""
    support = subprocess.run(["swaks", "--support"], capture_output=True, text=True, timeout=30)
    if "=== TLS supported" not in support.stdout + support.stderr:
        pytest.fail("swaks has no TLS: install Debian's libnet-ssleay-perl and libio-socket-ssl-perl "
                    "(swaks only recommends them)")


@pytest.mark.skipif(shutil.which("swaks") is None, reason="needs Debian's swaks")
def test_swaks_with_tls_and_auth_plain_and_login(mail: Mail) -> None:
    swaks_has_tls()
    for mechanism in ("PLAIN", "LOGIN"):
        result = swaks("--server", f"127.0.0.1:{mail.port('submission')}", "--from", "ivy@example.org",
                       "--to", "jack@accept.test", "-tls", "--auth", mechanism, "--auth-user", "alice",
                       "--auth-password", "wonderland", "--header", f"Subject: swaks {mechanism}")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "<-  220 2.0.0 Ready to start TLS" in result.stdout
        assert "~> AUTH" in result.stdout and "<~  235 2.7.0 Authentication successful" in result.stdout
        entry = mail.outbox.wait_for(lambda e, m=mechanism: e.get("subject") == f"swaks {m}")
        assert entry["tls"] is True and entry["auth_user"] == "alice" and entry["helo"] == "swaks.example"


@pytest.mark.skipif(shutil.which("swaks") is None, reason="needs Debian's swaks")
def test_swaks_pipelining_and_the_451_of_a_failing_consumer(mail: Mail) -> None:
    result = swaks("--server", f"127.0.0.1:{mail.port('mx')}", "--pipeline", "--from", "kim@example.org",
                   "--to", "lee@accept.test,nobody@nowhere.test", "--header", "Subject: swaks pipelined")
    assert "<** 550 5.1.1 <nobody@nowhere.test>: Recipient address rejected" in result.stdout
    assert "<-  250 2.0.0 Ok: recorded" in result.stdout, result.stdout
    entry = mail.outbox.wait_for(lambda e: e.get("subject") == "swaks pipelined")
    assert entry["recipients"] == ["lee@accept.test"]
    failing = swaks("--server", f"127.0.0.1:{mail.port('mx')}", "--from", "kim@example.org", "--to", "x@fail.test")
    assert failing.returncode != 0 and "<** 451 4.3.0 Temporary failure" in failing.stdout


def test_replies_go_through_the_smarthost_with_starttls_and_failures_reach_the_consumer(mail: Mail) -> None:
    with smtplib.SMTP("127.0.0.1", mail.port("submission")) as client:  # the listener with a smarthost
        client.send_message(new_message("desk@reply.test", sender="Customer <customer@accept.test>", subject="need help"))
        client.send_message(new_message("desk@reply.test", sender="ghost@nowhere.test", subject="from a ghost"))
    reply = mail.outbox.wait_for(lambda e: e.get("subject") == "Re: need help")
    assert reply["sender"] == "robot@reply.test" and reply["recipients"] == ["customer@accept.test"]
    assert reply["tls"] is True and reply["auth_user"] == "alice"  # submitted over STARTTLS with AUTH
    assert "In-Reply-To: <" in reply["raw"]
    ok = mail.outbox.wait_for(lambda e: e["kind"] == "send_result" and e["result"]["ok"])
    assert ok["result"]["id"] == ok["expected_id"] and ok["result"]["code"] == 250
    failed = mail.outbox.wait_for(lambda e: e["kind"] == "send_result" and not e["result"]["ok"])
    assert failed["result"]["temporary"] is False and failed["result"]["code"] == 550
    assert "ghost@nowhere.test" in json.dumps(failed["result"])


def test_without_a_smarthost_email_send_fails_and_the_consumer_is_told(mail: Mail) -> None:
    with smtplib.SMTP("127.0.0.1", mail.port("mx")) as client:
        client.send_message(new_message("desk@reply.test", sender="nina@accept.test", subject="no smarthost here"))
    result = mail.outbox.wait_for(lambda e: e["kind"] == "send_result" and e["sender"] == "nina@accept.test")
    assert result["result"]["ok"] is False and "no smarthost" in result["result"]["text"]


def test_connections_per_client_address_are_limited(mail: Mail) -> None:
    port = mail.port("limited")
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    try:
        for sock in held:
            assert sock.recv(100).startswith(b"220 limited.test")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as third:
            assert third.recv(200) == b"421 4.7.0 limited.test Error: too many connections from 127.0.0.1\r\n"
    finally:
        for sock in held:
            sock.close()


def test_sigterm_finishes_the_message_in_progress(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.jsonl")
    config = """
application: tests.email_apps:app
listeners:
  - {name: mx, protocol: smtp, endpoint: "tcp:0:interface=127.0.0.1", hostname: mx.test}
"""
    with Daemon(tmp_path, config, env={"EMAIL_TEST_OUTBOX": str(outbox.path)}) as daemon:
        sock = socket.create_connection(("127.0.0.1", daemon.port("mx")), timeout=10)
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@slow.test>\r\nDATA\r\n")
        while not reader.readline().startswith(b"354"):
            pass
        sock.sendall(b"X-Delay: 1\r\nSubject: slow\r\n\r\nbody\r\n.\r\n")
        outbox.wait_for(lambda e: e["kind"] == "started" and e.get("subject") == "slow")  # the message is in progress
        daemon.signal(signal.SIGTERM)
        assert reader.readline() == b"250 2.0.0 Ok: queued\r\n"
        assert reader.readline() == b"421 4.3.2 mx.test Service shutting down\r\n"
        assert reader.readline() == b""
        sock.close()
        assert daemon.wait(10) == 0
    assert outbox.find(lambda e: e.get("subject") == "slow")
