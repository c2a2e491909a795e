"""The answering API, Reply values and configuration checks: misuse raises LocalProtocolError."""

from __future__ import annotations

import pytest

from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.smtp import (
    MailFrom,
    MessageReceived,
    RcptTo,
    Reply,
    ServerConfig,
    SMTPServer,
)
from tests.unit.smtp.harness import new_session


def pending_mail() -> tuple[SMTPServer, MailFrom]:
    session = new_session(ServerConfig())
    session.receive_data(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
    session.data_to_send()
    (_event,) = session.events_received()
    return session, _event


def test_answering_twice_or_a_foreign_event_raises():
    session, event = pending_mail()
    other, foreign = pending_mail()
    with pytest.raises(LocalProtocolError):
        session.accept(foreign)
    session.accept(event)
    with pytest.raises(LocalProtocolError, match="not the pending decision"):
        session.accept(event)


@pytest.mark.parametrize(
    "method, reply",
    [
        ("accept", Reply(550, "5.0.0", "no")),
        ("accept", Reply(251, "2.1.0", "for RCPT only")),
        ("reject", Reply(250, "2.0.0", "yes")),
        ("defer", Reply(550, "5.0.0", "permanent")),
        ("answer", Reply(354, None, "not an answer")),
    ],
)
def test_replies_that_do_not_fit_the_answer_raise(method, reply):
    session, event = pending_mail()
    with pytest.raises(LocalProtocolError):
        getattr(session, method)(event, reply)
    assert session.pending is event  # nothing happened


def test_answer_accepts_strings_and_any_fitting_code():
    session, event = pending_mail()
    session.answer(event, "250 2.1.0 Sender fine")
    assert session.data_to_send() == b"250 2.1.0 Sender fine\r\n"
    session.receive_data(b"RCPT TO:<c@d.example>\r\n")
    (rcpt,) = session.events_received()
    session.answer(rcpt, "450 mailbox busy")
    assert session.data_to_send() == b"450 4.0.0 mailbox busy\r\n"
    session.receive_data(b"RCPT TO:<c@d.example>\r\n")
    (rcpt,) = session.events_received()
    session.answer(rcpt, Reply(251, "2.1.5", "will forward"))
    assert session.data_to_send() == b"251 2.1.5 will forward\r\n"


def test_a_421_answer_ends_the_session():
    session, event = pending_mail()
    session.defer(event, Reply(421, "4.3.2", "shutting down"))
    assert session.data_to_send() == b"421 4.3.2 shutting down\r\n"
    assert [e.reason for e in session.events_received()] == ["closed by the upper layer"]


def test_reply_text_cannot_inject_lines():
    reply = Reply(550, "5.7.1", "spam\r\n250 2.0.0 Ok: queued\x00é")
    assert reply.to_bytes() == b"550 5.7.1 spam  250 2.0.0 Ok: queued \\xe9\r\n"


def test_multi_line_reply():
    assert Reply(250, "2.0.0", ("one", "two")).to_bytes() == b"250-2.0.0 one\r\n250 2.0.0 two\r\n"


@pytest.mark.parametrize(
    "code, status",
    [(199, None), (600, None), (260, None), (250, "4.0.0"), (450, "4.0"), ("250", None)],
)
def test_invalid_replies_raise(code, status):
    with pytest.raises(LocalProtocolError):
        Reply(code, status, "x")


def test_reply_from_text_splits_an_enhanced_status():
    assert Reply.from_text(550, "5.7.1 Spam") == Reply(550, "5.7.1", "Spam")
    assert Reply.from_text(451, "Try later") == Reply(451, "4.0.0", "Try later")
    assert Reply.from_text(451, "5.7.1 wrong class") == Reply(451, "4.0.0", "5.7.1 wrong class")
    with pytest.raises(LocalProtocolError):
        Reply.from_text(999, "x")


def test_tls_started_without_starttls_raises():
    session = SMTPServer(ServerConfig(tls_available=True))
    with pytest.raises(LocalProtocolError):
        session.tls_started()


def test_default_answers_per_decision():
    session = new_session(ServerConfig(check_sender=False))
    session.receive_data(
        b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nRCPT TO:<e@d.example>\r\n"
    )
    (rcpt,) = session.events_received()  # MAIL was accepted without asking
    assert isinstance(rcpt, RcptTo)
    session.defer(rcpt)
    (rcpt2,) = session.events_received()
    session.accept(rcpt2)
    session.receive_data(b"DATA\r\nx\r\n.\r\n")
    (message,) = session.events_received()
    assert isinstance(message, MessageReceived)
    session.reject(message)
    assert session.data_to_send().split(b"\r\n")[-6:] == [
        b"250 2.1.0 Ok",
        b"451 4.3.0 Temporary failure, please try again later",
        b"250 2.1.5 Ok",
        b"354 End data with <CR><LF>.<CR><LF>",
        b"550 5.6.0 Message rejected",
        b"",
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hostname": "two words"},
        {"hostname": ""},
        {"max_message_size": 0},
        {"max_recipients": -1},
        {"max_command_line": 10},
        {"max_data_line": 2},
        {"max_errors": 0},
        {"timeout": 0},
        {"auth_mechanisms": ("CRAM-MD5",)},
        {"bare_newlines": "fix"},
        {"require_tls": True},
        {"auth_required": True},
        {"auth_required": True, "auth_mechanisms": (), "tls_available": True},
    ],
)
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        ServerConfig(**kwargs)


def test_config_normalises_mechanisms():
    assert ServerConfig(auth_mechanisms=("login", "plain")).auth_mechanisms == ("LOGIN", "PLAIN")
