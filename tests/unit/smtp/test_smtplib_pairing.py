"""Python's smtplib (a real client) against the core, over an in-memory socket pair.

A thread plays the adapter: it reads the socket, drives the core, answers decisions like a
router/consumer would and performs STARTTLS with the ssl module. No Twisted involved.
"""

from __future__ import annotations

import datetime
import smtplib
import socket
import ssl
import threading
from pathlib import Path

import pytest

from gateway.protocols.smtp import (
    AuthCredentials,
    CloseConnection,
    Decision,
    MessageReceived,
    RcptTo,
    ServerConfig,
    SMTPServer,
    StartTLS,
)

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Adapter(threading.Thread):
    """The smallest adapter: blocking socket, one flush point, decisions answered at once."""

    def __init__(self, sock: socket.socket, config: ServerConfig, tls: ssl.SSLContext | None):
        super().__init__(daemon=True)
        self.sock = sock
        self.session = SMTPServer(config)
        self.tls = tls
        self.messages: list[MessageReceived] = []
        self.defer_next_message = False
        self.error: BaseException | None = None

    def decide(self, event: Decision) -> None:
        if isinstance(event, RcptTo) and event.recipient.startswith("nobody@"):
            self.session.reject(event)
        elif isinstance(event, AuthCredentials):
            ok = (event.username, event.password) == ("user", "secret")
            (self.session.accept if ok else self.session.reject)(event)
        elif isinstance(event, MessageReceived) and self.defer_next_message:
            self.defer_next_message = False  # the consumer raised: 451, the client retries
            self.session.defer(event)
        else:
            if isinstance(event, MessageReceived):
                self.messages.append(event)
            self.session.accept(event)

    def flush(self) -> bool:
        closing = False
        while events := self.session.events_received():
            for event in events:
                if isinstance(event, Decision):
                    self.decide(event)
                elif isinstance(event, StartTLS):
                    self.sock.sendall(self.session.data_to_send())
                    assert self.tls is not None
                    self.sock = self.tls.wrap_socket(self.sock, server_side=True)
                    self.session.tls_started()
                elif isinstance(event, CloseConnection):
                    closing = True
        out = self.session.data_to_send()
        if out:
            self.sock.sendall(out)
        return closing

    def run(self) -> None:
        try:
            self.sock.settimeout(10)
            self.sock.sendall(self.session.data_to_send())
            while True:
                self.session.receive_data(self.sock.recv(65536))
                if self.flush():
                    break
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.sock.close()


@pytest.fixture
def pair(certificate):
    adapters: list[Adapter] = []
    clients: list[smtplib.SMTP] = []

    def connect(config: ServerConfig) -> tuple[smtplib.SMTP, Adapter]:
        server_sock, client_sock = socket.socketpair()
        tls = None
        if config.tls_available:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(*certificate)
        adapter = Adapter(server_sock, config, tls)
        adapter.start()
        client = smtplib.SMTP(local_hostname="client.example", timeout=10)
        client_sock.settimeout(10)
        client.sock = client_sock
        client._host = "localhost"
        code, _ = client.getreply()
        assert code == 220
        adapters.append(adapter)
        clients.append(client)
        return client, adapter

    yield connect
    for client in clients:
        client.close()
    for adapter in adapters:
        adapter.join(5)
        assert adapter.error is None, adapter.error


def client_tls(certificate) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certificate[0]))
    return context


MESSAGE = (
    "From: a@b.example\r\nTo: c@d.example\r\nSubject: dots\r\n\r\n"
    ".leading dot\r\n..two\r\n.\r\nend\r\n"
)


def test_sendmail_with_pipelining_dot_stuffing_and_a_refused_recipient(pair):
    client, adapter = pair(ServerConfig(hostname="mx.test"))
    refused = client.sendmail("a@b.example", ["c@d.example", "nobody@d.example"], MESSAGE)
    assert list(refused) == ["nobody@d.example"] and refused["nobody@d.example"][0] == 550
    assert client.has_extn("pipelining") and client.has_extn("enhancedstatuscodes")
    client.quit()
    adapter.join(5)
    (message,) = adapter.messages
    assert message.data == MESSAGE.encode()
    assert message.envelope.recipients == ("c@d.example",)
    assert message.envelope.declared_size == len(MESSAGE)  # smtplib sends SIZE=


def test_declared_size_over_the_limit_is_refused_at_mail(pair):
    client, _ = pair(ServerConfig(max_message_size=50))
    with pytest.raises(smtplib.SMTPSenderRefused) as info:
        client.sendmail("a@b.example", ["c@d.example"], MESSAGE)
    assert info.value.smtp_code == 552 and info.value.smtp_error.startswith(b"5.3.4")


def test_consumer_failure_gives_451_and_the_retry_is_delivered(pair):
    client, adapter = pair(ServerConfig())
    adapter.defer_next_message = True
    with pytest.raises(smtplib.SMTPDataError) as info:
        client.sendmail("a@b.example", ["c@d.example"], MESSAGE)
    assert info.value.smtp_code == 451
    client.sendmail("a@b.example", ["c@d.example"], MESSAGE)
    client.quit()
    adapter.join(5)
    assert [m.data for m in adapter.messages] == [MESSAGE.encode()]


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_starttls_then_auth(pair, certificate, mechanism):
    config = ServerConfig(tls_available=True, auth_mechanisms=(mechanism,), auth_required=True)
    client, adapter = pair(config)
    client.ehlo()
    assert not client.has_extn("auth")
    with pytest.raises(smtplib.SMTPSenderRefused) as info:
        client.sendmail("a@b.example", ["c@d.example"], MESSAGE)
    assert info.value.smtp_code == 530
    client.starttls(context=client_tls(certificate))
    client.ehlo()
    assert client.has_extn("auth") and not client.has_extn("starttls")
    with pytest.raises(smtplib.SMTPAuthenticationError) as auth_info:
        client.login("user", "wrong")
    assert auth_info.value.smtp_code == 535
    client.login("user", "secret")
    client.sendmail("a@b.example", ["c@d.example"], MESSAGE)
    client.quit()
    adapter.join(5)
    (message,) = adapter.messages
    assert (message.envelope.tls, message.envelope.auth_user) == (True, "user")


def test_smtputf8_message(pair):
    client, adapter = pair(ServerConfig())
    body = "Subject: héllo\r\n\r\nünïcode\r\n".encode()
    client.sendmail(
        "jörg@bücher.example", ["用户@例子.广告"], body, mail_options=["SMTPUTF8", "BODY=8BITMIME"]
    )
    client.quit()
    adapter.join(5)
    (message,) = adapter.messages
    assert message.envelope.sender == "jörg@bücher.example"
    assert message.envelope.recipients == ("用户@例子.广告",)
    assert message.envelope.smtputf8 and message.envelope.body == "8BITMIME"
    assert message.data == body
