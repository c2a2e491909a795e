"""The attacks Twisted's ESMTP falls for (email-sms.md §1.2), and the DATA phase's guarantees."""

from __future__ import annotations

import time

import pytest

from gateway.protocols.smtp import (
    MailFrom,
    MessageReceived,
    RcptTo,
    ServerConfig,
    SMTPServer,
    StartTLS,
)
from tests.unit.smtp.harness import codes, new_session, run, talk

CONFIG = ServerConfig(hostname="mx.test")
SMUGGLED = (
    b"MAIL FROM:<smuggled@evil.example>\r\nRCPT TO:<victim@d.example>\r\nDATA\r\nsmuggled\r\n"
)


def open_data(session: SMTPServer) -> None:
    assert talk(
        session, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
    ) == [
        *talk_ehlo_reply(session),
        b"250 2.1.0 Ok\r\n",
        b"250 2.1.5 Ok\r\n",
        b"354 End data with <CR><LF>.<CR><LF>\r\n",
    ]


def talk_ehlo_reply(session: SMTPServer) -> list[bytes]:
    return [session.config.ehlo_reply(session.tls_active)]


# -- pipelining with asynchronous checks (probe "pipeline") ----------------------------------------


def test_pipelined_group_with_slow_rcpt_answers_is_answered_in_order():
    session = new_session(CONFIG)
    session.receive_data(
        b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nRCPT TO:<e@d.example>\r\n"
        b"DATA\r\n"
    )
    assert session.data_to_send().startswith(b"250-mx.test")
    (mail,) = session.events_received()
    assert isinstance(mail, MailFrom)
    session.accept(mail)
    (rcpt1,) = session.events_received()
    assert session.data_to_send() == b"250 2.1.0 Ok\r\n"
    # The first RCPT is still being checked: nothing after it may be answered.
    assert session.data_to_send() == b"" and session.pending is rcpt1
    session.accept(rcpt1)
    (rcpt2,) = session.events_received()
    assert isinstance(rcpt2, RcptTo) and rcpt2.recipient == "e@d.example"
    assert session.data_to_send() == b"250 2.1.5 Ok\r\n"
    session.reject(rcpt2)
    assert session.data_to_send() == (
        b"550 5.1.1 <e@d.example>: Recipient address rejected\r\n"
        b"354 End data with <CR><LF>.<CR><LF>\r\n"
    )
    session.receive_data(b"QUIT\r\nNOOP\r\n.\r\n")
    (message,) = session.events_received()
    assert isinstance(message, MessageReceived)
    assert message.data == b"QUIT\r\nNOOP\r\n"  # the body never ran as commands
    assert message.envelope.recipients == ("c@d.example",)
    session.accept(message)
    assert session.data_to_send() == b"250 2.0.0 Ok: queued\r\n"


def test_whole_session_in_one_write_with_late_answers():
    """Even a client that ignores RFC 2920 and sends the body at once cannot make it run."""
    stream = (
        b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
        b"RSET\r\nMAIL FROM:<x@y.example>\r\n.\r\nQUIT\r\n"
    )
    result = run([[stream, None, None, None]], CONFIG, delays=[3, 2, 1])
    assert result.codes == [220, 250, 250, 250, 354, 250, 221]
    (message,) = result.messages
    assert message[-1] == b"RSET\r\nMAIL FROM:<x@y.example>\r\n"
    assert [e[0] for e in result.events] == ["MailFrom", "RcptTo", "Message", "Close"]


def test_next_transaction_pipelined_behind_the_dot_waits_for_the_message_answer():
    session = new_session(CONFIG)
    open_data(session)
    session.receive_data(b"body\r\n.\r\nMAIL FROM:<next@b.example>\r\n")
    (message,) = session.events_received()
    assert session.data_to_send() == b""
    session.defer(message)
    assert session.data_to_send() == b"451 4.3.0 Temporary failure, please try again later\r\n"
    (mail,) = session.events_received()
    assert mail.sender == "next@b.example"


def test_pipelined_input_beyond_the_limit_while_waiting_closes_the_session():
    config = ServerConfig(max_recipients=2, max_command_line=512)
    session = new_session(config)
    session.receive_data(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
    (mail,) = session.events_received()
    session.data_to_send()
    session.receive_data(b"N" * (config.pipeline_limit + 1))
    assert session.data_to_send() == b"421 4.7.0 localhost Error: too much pipelined input\r\n"
    assert [e.reason for e in session.events_received()] == ["pipelining overflow"]
    session.accept(mail)  # too late: ignored
    assert session.data_to_send() == b""


# -- STARTTLS (probe "starttls-inject") -------------------------------------------------------

TLS = ServerConfig(hostname="mx.test", tls_available=True)


def test_plaintext_pipelined_after_starttls_is_never_executed():
    session = new_session(TLS)
    session.receive_data(b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<injected@evil.example>\r\n")
    assert session.data_to_send().endswith(b"220 2.0.0 Ready to start TLS\r\n")
    assert [type(e) for e in session.events_received()] == [StartTLS]
    # Arriving before the adapter switched to TLS: plaintext too.
    session.receive_data(b"RCPT TO:<victim@d.example>\r\n")
    session.tls_started()
    assert session.tls_active and session.events_received() == [] and session.data_to_send() == b""
    # RFC 3207 §4.2: the session starts over; the client must say EHLO again.
    assert talk(session, b"MAIL FROM:<a@b.example>\r\n") == [
        b"503 5.5.1 Error: send HELO/EHLO first\r\n"
    ]
    (ehlo,) = talk(session, b"EHLO c\r\n")
    assert b"STARTTLS" not in ehlo and b"AUTH PLAIN LOGIN" in ehlo


def test_starttls_forgets_authentication_and_helo():
    config = ServerConfig(tls_available=True, auth_require_tls=False)
    session = new_session(config)
    talk(session, b"EHLO c\r\nAUTH PLAIN AHVzZXIAc2VjcmV0\r\n")
    assert session.auth_user == "user" and session.helo_name == "c"
    talk(session, b"STARTTLS\r\n")
    session.tls_started()
    assert session.auth_user is None and session.helo_name is None


def test_starttls_refusals():
    session = new_session(TLS)
    assert talk(session, b"EHLO c\r\nSTARTTLS now\r\n")[1].startswith(b"501 5.5.4")
    talk(session, b"MAIL FROM:<a@b.example>\r\n")
    assert talk(session, b"STARTTLS\r\n") == [b"503 5.5.1 Error: MAIL transaction in progress\r\n"]
    plain = new_session(CONFIG)
    assert talk(plain, b"STARTTLS\r\n") == [b"502 5.5.1 Error: command not implemented\r\n"]
    implicit = new_session(TLS, tls_active=True)
    assert talk(implicit, b"STARTTLS\r\n") == [b"503 5.5.1 Error: TLS already active\r\n"]


def test_require_tls_refuses_mail_before_starttls():
    session = new_session(ServerConfig(tls_available=True, require_tls=True))
    assert talk(session, b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nNOOP\r\n")[1:] == [
        b"530 5.7.0 Must issue a STARTTLS command first\r\n",
        b"250 2.0.0 Ok\r\n",
    ]


# -- DATA: long lines, size, smuggling (probes "long-line" and "smuggle") --------------------


def test_overlong_line_in_data_never_returns_to_command_mode():
    session = new_session(CONFIG)
    open_data(session)
    session.receive_data(b"X" * 20000 + b"\r\n" + SMUGGLED)
    assert session.data_to_send() == b"" and session.events_received() == []
    session.receive_data(b".\r\n")
    assert session.data_to_send() == (
        b"500 5.5.2 Error: message line too long (RFC 5321 section 4.5.3.1.6)\r\n"
    )
    assert session.events_received() == []  # no smuggled MAIL, no message
    assert talk(session, b"RCPT TO:<c@d.example>\r\n") == [
        b"503 5.5.1 Error: need MAIL command\r\n"
    ]


def test_long_line_spread_over_many_reads_is_still_data():
    chunks = [b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"]
    chunks += [b"Y" * 999] * 30 + [b"\r\n" + SMUGGLED + b".", b"\r", b"\nNOOP\r\n"]
    result = run([chunks], CONFIG)
    assert result.codes == [220, 250, 250, 250, 354, 500, 250]
    assert [e[0] for e in result.events] == ["MailFrom", "RcptTo"]


@pytest.mark.parametrize("length, accepted", [(998, True), (999, False)])
def test_data_line_limit_is_1000_octets_with_crlf(length, accepted):
    result = run(
        [
            [
                b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n",
                b"a\r\n" + b"z" * length + b"\r\nb\r\n.\r\n",
            ]
        ],
        CONFIG,
    )
    assert result.codes[-1] == (250 if accepted else 500)


def test_data_line_limit_can_be_disabled():
    config = ServerConfig(max_data_line=None)
    result = run(
        [
            [
                b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n",
                b"z" * 50000 + b"\r\n.\r\n",
            ]
        ],
        config,
    )
    assert result.codes[-1] == 250 and result.messages[0][-1] == b"z" * 50000 + b"\r\n"


def test_oversized_message_is_refused_after_the_final_dot_only():
    config = ServerConfig(max_message_size=100)
    session = new_session(config)
    open_data(session)
    session.receive_data(b"x" * 98 + b"\r\n")  # exactly 100 octets so far: fine
    session.receive_data(b"y\r\n" + SMUGGLED)
    assert session.data_to_send() == b""
    session.receive_data(b".\r\nNOOP\r\n")
    assert session.data_to_send() == (
        b"552 5.3.4 Message size exceeds fixed limit\r\n250 2.0.0 Ok\r\n"
    )
    assert session.events_received() == []


@pytest.mark.parametrize("limit, accepted", [(75, True), (74, False)])
def test_size_limit_counts_octets_after_unstuffing(limit, accepted):
    # 25 lines of "." are 75 octets of message but 100 on the wire ("..\r\n").
    body = b"..\r\n" * 25
    result = run(
        [
            [
                b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n",
                body + b".\r\n",
            ]
        ],
        ServerConfig(max_message_size=limit),
    )
    if accepted:
        assert result.codes[-1] == 250 and result.messages[0][-1] == b".\r\n" * 25
    else:
        assert result.codes[-1] == 552 and not result.messages


def test_far_oversized_message_is_not_buffered():
    config = ServerConfig(max_message_size=1000)
    session = new_session(config)
    open_data(session)
    for _ in range(100):
        session.receive_data(b"a" * 900 + b"\r\n")
    assert session._data is not None and session._data._chunks == []
    session.receive_data(b".\r\n")
    assert session.data_to_send().startswith(b"552 5.3.4")


VARIANTS = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r", b"\n.\r", b"\r.\n"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_bare_newline_end_of_data_variants_are_rejected_not_obeyed(variant):
    stream = (
        b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
        b"Subject: hi\r\n\r\nhello" + variant + SMUGGLED + b".\r\nNOOP\r\n"
    )
    result = run([[stream]], CONFIG)
    assert result.codes == [220, 250, 250, 250, 354, 550, 250]
    assert b"550 5.6.0 Error: bare CR or LF in message" in result.output
    assert [e[0] for e in result.events] == ["MailFrom", "RcptTo"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_bare_newline_variants_pass_through_as_data_when_configured(variant):
    stream = (
        b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
        b"hello" + variant + SMUGGLED + b".\r\n"
    )
    result = run([[stream]], ServerConfig(bare_newlines="pass"))
    assert result.codes == [220, 250, 250, 250, 354, 250]
    (message,) = result.messages
    # RFC 5321 §4.5.2: a line (CRLF-delimited) starting with "." loses it, bare LF or not.
    assert message[-1] == (b"hello" + variant).replace(b"\r\n.", b"\r\n") + SMUGGLED


def test_crlf_dot_crlf_at_every_split_point_ends_the_data():
    prefix = (
        b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
        b"line\r\n.\r\nNOOP\r\n"
    )
    expected = run([[prefix]], CONFIG)
    assert expected.codes == [220, 250, 250, 250, 354, 250, 250]
    for i in range(1, len(prefix)):
        for j in range(i + 1, len(prefix)):
            assert run([[prefix[:i], prefix[i:j], prefix[j:]]], CONFIG).output == expected.output


def test_empty_message_and_dot_stuffed_first_line():
    result = run(
        [
            [
                b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n.\r\n"
                b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n..x\r\n..\r\n.\r\n"
            ]
        ],
        CONFIG,
    )
    assert [m[-1] for m in result.messages] == [b"", b".x\r\n.\r\n"]


def test_message_event_carries_the_envelope():
    config = ServerConfig(tls_available=True)
    session = new_session(config, tls_active=True)
    talk(session, b"EHLO client.example\r\nAUTH PLAIN AHVzZXIAc2VjcmV0\r\n")
    session.receive_data(
        b"MAIL FROM:<a@b.example> SIZE=12 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<c@d.example>\r\n"
        b"RCPT TO:<reject@d.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nhi\r\n.\r\n"
    )
    message = None
    while message is None:
        (event,) = session.events_received()
        if isinstance(event, MessageReceived):
            message = event
        elif isinstance(event, RcptTo) and event.recipient.startswith("reject"):
            session.reject(event)
        else:
            session.accept(event)
    env = message.envelope
    assert (env.sender, env.recipients) == ("a@b.example", ("c@d.example", "c@d.example"))
    assert (env.helo, env.esmtp, env.tls, env.auth_user) == ("client.example", True, True, "user")
    assert (env.smtputf8, env.body, env.declared_size) == (True, "8BITMIME", 12)
    assert message.data == b"hi\r\n"
    assert "data" not in repr(message)
    session.reject(message)
    assert codes(session.data_to_send())[-1] == 550
    assert talk(session, b"DATA\r\n") == [b"503 5.5.1 Error: need MAIL command\r\n"]


def test_many_small_reads_while_waiting_are_buffered_in_linear_time():
    session = new_session(ServerConfig(max_junk_commands=100000))
    session.receive_data(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
    (mail,) = session.events_received()
    session.data_to_send()
    stream = b"NOOP\r\n" * 20000
    start = time.process_time()  # CPU time of this process: other load does not inflate it
    for i in range(len(stream)):
        session.receive_data(stream[i : i + 1])
    assert time.process_time() - start < 2.0  # about 0.06 s; quadratic copying would take minutes
    assert session.data_to_send() == b""
    session.accept(mail)
    assert session.data_to_send() == b"250 2.1.0 Ok\r\n" + b"250 2.0.0 Ok\r\n" * 20000
