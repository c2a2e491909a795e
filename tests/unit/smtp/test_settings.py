"""SMTP and IMAP listener configuration, password hashes, and building the listeners."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path

import pytest
import trustme
from twisted.internet.testing import MemoryReactorClock

from gateway.config import ConfigError, load_config_text
from gateway.listener import ListenerContext
from gateway import passwords
from gateway.protocols.smtp.listener import build_listener, smtp_settings


def config(listener: str) -> str:
    return "application: tests.email_apps:app\nlisteners:\n" + listener


def problems(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, import_applications=False)
    return "\n".join(str(p) for p in info.value.problems)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    cert = ca.issue_cert("mx.test")
    cert.private_key_pem.write_to_path(str(tmp / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp / "cert.pem"))
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    return {"cert": str(tmp / "cert.pem"), "key": str(tmp / "key.pem"), "ca": str(tmp / "ca.pem")}


def test_hashes_round_trip_and_reject_wrong_passwords():
    for algorithm in ("scrypt", "pbkdf2_sha256"):
        encoded = passwords.hash_password("s3cret ünïcode", algorithm)
        passwords.check_password_hash(encoded)
        assert passwords.verify_password("s3cret ünïcode", encoded)
        assert not passwords.verify_password("s3cret unicode", encoded)
    assert passwords.hash_password("x") != passwords.hash_password("x")  # salted


@pytest.mark.parametrize("bad", ["secret", "scrypt$3$salt$8$1$AAAA", "pbkdf2_sha256$0$s$AAAA", "md5$abc",
                                 "pbkdf2_sha256$10$s$not base64!"])
def test_malformed_hashes_are_refused_and_never_match(bad):
    with pytest.raises(ValueError):
        passwords.check_password_hash(bad)
    assert passwords.verify_password("secret", bad) is False


def test_the_command_line_prints_a_hash(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("hunter2\n"))
    assert passwords.main(["--stdin", "--pbkdf2"]) == 0
    encoded = capsys.readouterr().out.strip()
    assert encoded.startswith("pbkdf2_sha256$600000$") and passwords.verify_password("hunter2", encoded)


def test_a_full_smtp_listener_configuration_loads(certs):
    encoded = passwords.hash_password("pw", "pbkdf2_sha256")
    loaded = load_config_text(config(f"""
  - name: mx
    protocol: smtp
    endpoint: tcp:0
    hostname: mx.test
    tls: {{certificate: {certs['cert']}, private_key: {certs['key']}}}
    auth: {{users: {{alice: "{encoded}"}}}}
    limits: {{max_message_size: 1MiB, max_connections_per_client: 5}}
    timeouts: {{consumer: 30s}}
    smarthost: {{host: smtp.example.org, ca_file: {certs['ca']}, sender: robot@example.org}}
"""), import_applications=False)
    (listener,) = loaded.listeners
    assert listener.limits.max_message_size == 1024 * 1024 and listener.limits.max_recipients == 1000
    assert listener.timeouts.consumer == 30.0 and listener.timeouts.command == 300.0
    assert listener.smarthost.port == 587 and listener.smarthost.tls == "starttls"
    loop = asyncio.new_event_loop()
    try:
        context = ListenerContext(reactor=MemoryReactorClock(), loop=loop, app=object(), state={}, daemon=loaded)
        settings = smtp_settings(listener, context)
        server = settings.server
        assert server.tls_available and server.auth_mechanisms == ("PLAIN", "LOGIN") and server.auth_require_tls
        assert server.max_message_size == 1024 * 1024 and not server.check_sender
        assert settings.tls_options is not None and settings.sender is not None and settings.auth is not None
        assert b"SIZE 1048576" in server.ehlo_reply(False) and b"AUTH" not in server.ehlo_reply(False)
        service = build_listener(listener, context)
        assert service.endpoint_description == "tcp:0" and service.factory.max_connections == 1000
    finally:
        loop.close()


@pytest.mark.parametrize("listener, message", [
    ("  - {name: a, protocol: smtp, endpoint: 'tcp:0', auth: {users: {bob: plain-password}}}", "not a password hash"),
    ("  - {name: a, protocol: smtp, endpoint: 'tcp:0', auth: {hook: 'tests.email_apps:auth_hook'}}",
     "AUTH is only offered over TLS"),
    ("  - {name: a, protocol: smtp, endpoint: 'tcp:0', auth: {required: true}}", "needs auth.users or auth.hook"),
    ("  - {name: a, protocol: smtp, endpoint: 'tcp:0', auth: {mechanisms: [CRAM-MD5]}}", "PLAIN, LOGIN"),
    ("  - {name: a, protocol: smtp}", "needs an endpoint"),
    ("  - {name: a, protocol: smtp, endpoint: 'tcp:0', tls: {certificate: /nonexistent, private_key: /nonexistent}}",
     "cannot read"),
    ("  - {name: a, protocol: smtp, endpoint: 'tcp:0', smarthost: {host: h, username: u}}", "go together"),
    ("  - {name: a, protocol: smtp, endpoint: 'tcp:0', bare_newlines: fix}", "not one of"),
    ("  - {name: i, protocol: imap, host: h, username: u, password: p, after_accept: move}", "needs move_to"),
    ("  - {name: i, protocol: imap, host: h, username: u, password: p, endpoint: 'tcp:0'}", "connects out"),
    ("  - {name: i, protocol: imap, host: h, username: u, password: p, idle_refresh: 30m}", "29 minutes"),
    ("  - {name: i, protocol: imap, host: h, username: u, password: p, tls: ssl}", "not one of"),
    ("  - {name: i, protocol: imap, host: h, password: p}", "username: this key is required"),
])
def test_configuration_mistakes_are_reported(listener, message):
    assert message in problems(config(listener))


def test_an_imap_reader_configuration_loads_with_defaults():
    loaded = load_config_text(config("  - {name: i, protocol: imap, host: imap.example.org, username: u, password: p}"),
                              import_applications=False)
    (reader,) = loaded.listeners
    assert reader.effective_port == 993 and reader.tls == "implicit" and reader.mailbox == "INBOX"
    assert reader.after_accept == "seen" and reader.after_reject == "seen" and reader.idle_refresh == 600.0
    starttls = load_config_text(config("  - {name: i, protocol: imap, host: h, username: u, password: p, tls: starttls}"),
                                import_applications=False)
    assert starttls.listeners[0].effective_port == 143


def test_certificate_chains_load_leaf_first(certs, tmp_path: Path):
    from gateway.protocols.smtp.listener import server_tls_options

    ca = trustme.CA()
    intermediate = ca.create_child_ca()
    leaf = intermediate.issue_cert("mx.test")
    chain = tmp_path / "chain.pem"
    chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key = tmp_path / "key.pem"
    leaf.private_key_pem.write_to_path(str(key))
    options = server_tls_options(str(chain), str(key))
    assert len(options.extraCertChain) == 1
    (tmp_path / "empty.pem").write_text("nothing here")
    with pytest.raises(ValueError, match="no PEM certificate"):
        server_tls_options(str(tmp_path / "empty.pem"), str(key))
