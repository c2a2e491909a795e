"""AUTH PLAIN and LOGIN (RFC 4954, RFC 4616)."""

from __future__ import annotations

import base64

import pytest

from gateway.protocols.smtp import AuthCredentials, Reply, ServerConfig, SMTPServer
from tests.unit.smtp.harness import new_session, talk

TLS = ServerConfig(hostname="mx.test", tls_available=True)


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


@pytest.fixture
def s() -> SMTPServer:
    session = new_session(TLS, tls_active=True)
    talk(session, b"EHLO c\r\n")
    return session


def credentials(session: SMTPServer, data: bytes) -> AuthCredentials:
    session.receive_data(data)
    (event,) = session.events_received()
    assert isinstance(event, AuthCredentials) and session.pending is event
    return event


def test_plain_with_initial_response(s):
    event = credentials(s, b"AUTH PLAIN " + b64(b"admin\0user\0secret") + b"\r\n")
    assert (event.mechanism, event.authzid, event.username, event.password) == (
        "PLAIN",
        "admin",
        "user",
        "secret",
    )
    assert "secret" not in repr(event)
    s.accept(event)
    assert s.data_to_send() == b"235 2.7.0 Authentication successful\r\n"
    assert s.auth_user == "user"


def test_plain_after_an_empty_challenge(s):
    assert talk(s, b"AUTH plain\r\n") == [b"334 \r\n"]
    event = credentials(s, b64(b"\0user\0secret") + b"\r\n")
    assert (event.authzid, event.username) == ("", "user")


def test_login_in_two_steps_and_with_initial_response(s):
    assert talk(s, b"AUTH LOGIN\r\n") == [b"334 VXNlcm5hbWU6\r\n"]
    assert talk(s, b64(b"user") + b"\r\n") == [b"334 UGFzc3dvcmQ6\r\n"]
    event = credentials(s, b64(b"pa ss") + b"\r\n")
    assert (event.mechanism, event.username, event.password) == ("LOGIN", "user", "pa ss")
    s.reject(event)
    assert s.data_to_send() == b"535 5.7.8 Authentication credentials invalid\r\n"
    assert s.auth_user is None
    assert talk(s, b"AUTH LOGIN " + b64(b"user") + b"\r\n") == [b"334 UGFzc3dvcmQ6\r\n"]
    event = credentials(s, b64(b"secret") + b"\r\n")
    s.accept(event)
    assert s.auth_user == "user"


@pytest.mark.parametrize("start", [b"AUTH PLAIN\r\n", b"AUTH LOGIN\r\n"])
def test_star_cancels_the_exchange(s, start):
    talk(s, start)
    assert talk(s, b"*\r\n") == [b"501 5.7.0 Authentication cancelled\r\n"]
    assert talk(s, b"NOOP\r\n") == [b"250 2.0.0 Ok\r\n"]  # back in command mode


def test_login_cancel_at_the_password_prompt(s):
    talk(s, b"AUTH LOGIN\r\n" + b64(b"user") + b"\r\n")
    assert talk(s, b"*\r\n") == [b"501 5.7.0 Authentication cancelled\r\n"]


@pytest.mark.parametrize(
    "line, reply",
    [
        (b"AUTH PLAIN !!!\r\n", b"501 5.5.2 Error: cannot decode response"),
        (b"AUTH PLAIN dXNlcg\r\n", b"501 5.5.2 Error: cannot decode response"),  # no padding
        (b"AUTH PLAIN =\r\n", b"501 5.5.2 Error: malformed"),
        (b"AUTH PLAIN " + b64(b"user\0secret") + b"\r\n", b"501 5.5.2 Error: malformed"),
        (b"AUTH PLAIN " + b64(b"\0\0secret") + b"\r\n", b"501 5.5.2 Error: malformed"),
        (b"AUTH PLAIN " + b64(b"\0u\xff\0secret") + b"\r\n", b"501 5.5.2 Error: malformed"),
        (b"AUTH CRAM-MD5\r\n", b"504 5.5.4 Unrecognized authentication type"),
        (b"AUTH\r\n", b"501 5.5.4 Syntax: AUTH"),
        (b"AUTH PLAIN a b\r\n", b"501 5.5.4 Syntax: AUTH"),
    ],
)
def test_malformed_exchanges(s, line, reply):
    (out,) = talk(s, line)
    assert out.startswith(reply), out
    assert s.pending is None


def test_bad_base64_in_a_continuation_line(s):
    talk(s, b"AUTH PLAIN\r\n")
    assert talk(s, b"%%%\r\n") == [b"501 5.5.2 Error: cannot decode response\r\n"]


def test_overlong_sasl_line_fails_the_exchange(s):
    talk(s, b"AUTH PLAIN\r\n")
    assert talk(s, b"A" * 12287 + b"\r\n") == [
        b"500 5.5.6 Authentication Exchange line is too long\r\n"
    ]
    talk(s, b"AUTH PLAIN\r\n")
    for _ in range(3):
        s.receive_data(b"A" * 5000)
    s.receive_data(b"\r\nNOOP\r\n")
    assert s.data_to_send() == (
        b"500 5.5.6 Authentication Exchange line is too long\r\n250 2.0.0 Ok\r\n"
    )


def test_long_initial_response_within_the_sasl_limit_is_accepted(s):
    token = b64(b"\0user\0" + b"p" * 6000)
    event = credentials(s, b"AUTH PLAIN " + token + b"\r\n")
    assert len(event.password) == 6000


def test_auth_before_tls_is_refused_and_not_advertised():
    session = new_session(TLS)
    (ehlo,) = talk(session, b"EHLO c\r\n")
    assert b"AUTH" not in ehlo
    assert talk(session, b"AUTH PLAIN " + b64(b"\0user\0secret") + b"\r\n") == [
        b"538 5.7.11 Encryption required for requested authentication mechanism\r\n"
    ]
    assert session.events_received() == []


def test_auth_over_plaintext_when_allowed():
    session = new_session(ServerConfig(auth_require_tls=False, auth_mechanisms=("login",)))
    (ehlo,) = talk(session, b"EHLO c\r\n")
    assert ehlo.endswith(b"250 AUTH LOGIN\r\n")
    assert talk(session, b"AUTH PLAIN\r\n")[0].startswith(b"504")


def test_auth_sequence_errors(s):
    helo = new_session(TLS, tls_active=True)
    assert talk(helo, b"HELO c\r\nAUTH PLAIN\r\n")[1] == b"503 5.5.1 Error: send EHLO first\r\n"
    talk(s, b"MAIL FROM:<a@b.example>\r\n")
    assert talk(s, b"AUTH PLAIN\r\n") == [b"503 5.5.1 Error: MAIL transaction in progress\r\n"]
    talk(s, b"RSET\r\nAUTH PLAIN " + b64(b"\0user\0secret") + b"\r\n")
    assert s.auth_user == "user"
    assert talk(s, b"AUTH PLAIN\r\n") == [b"503 5.5.1 Error: already authenticated\r\n"]


def test_auth_disabled_is_502():
    session = new_session(ServerConfig(auth_mechanisms=()))
    talk(session, b"EHLO c\r\n")
    assert talk(session, b"AUTH PLAIN\r\n") == [b"502 5.5.1 Error: command not implemented\r\n"]


def test_auth_required_refuses_mail_until_authenticated():
    session = new_session(ServerConfig(tls_available=True, auth_required=True), tls_active=True)
    talk(session, b"EHLO c\r\n")
    assert talk(session, b"MAIL FROM:<a@b.example>\r\n") == [
        b"530 5.7.0 Authentication required\r\n"
    ]
    talk(session, b"AUTH PLAIN " + b64(b"\0user\0secret") + b"\r\n")
    assert talk(session, b"MAIL FROM:<a@b.example>\r\n") == [b"250 2.1.0 Ok\r\n"]


def test_temporary_auth_failure(s):
    event = credentials(s, b"AUTH PLAIN " + b64(b"\0user\0secret") + b"\r\n")
    s.defer(event)
    assert s.data_to_send() == b"454 4.7.0 Temporary authentication failure\r\n"
    event = credentials(s, b"AUTH PLAIN " + b64(b"\0user\0secret") + b"\r\n")
    s.reject(event, Reply(535, "5.7.8", "Nope"))
    assert s.data_to_send() == b"535 5.7.8 Nope\r\n"


def test_commands_pipelined_behind_auth_wait_for_the_answer(s):
    event = credentials(
        s, b"AUTH PLAIN " + b64(b"\0user\0secret") + b"\r\nMAIL FROM:<a@b.example>\r\n"
    )
    assert s.data_to_send() == b""
    s.accept(event)
    assert s.data_to_send() == b"235 2.7.0 Authentication successful\r\n"
    (mail,) = s.events_received()
    assert mail.sender == "a@b.example"
