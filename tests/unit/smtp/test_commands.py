"""Command-by-command behaviour (RFC 5321 §4.1.1, §4.1.4, §4.2.4; RFC 1870, 6152, 6531)."""

from __future__ import annotations

import pytest

from gateway.protocols.smtp import MailFrom, RcptTo, ServerConfig, SMTPServer
from tests.unit.smtp.harness import new_session, talk

CONFIG = ServerConfig(hostname="mx.test")


@pytest.fixture
def s() -> SMTPServer:
    session = new_session(CONFIG)
    assert talk(session, b"EHLO client.example\r\n")[0].startswith(b"250-mx.test\r\n")
    return session


def first_event(session: SMTPServer, data: bytes):
    session.receive_data(data)
    events = session.events_received()
    assert len(events) == 1, events
    return events[0]


def test_greeting_is_220_with_hostname():
    session = SMTPServer(ServerConfig(hostname="mx.test", greeting="ESMTP ready"))
    assert session.data_to_send() == b"220 mx.test ESMTP ready\r\n"


def test_ehlo_advertises_the_extensions():
    session = new_session(CONFIG)
    (reply,) = talk(session, b"EHLO c\r\n")
    assert reply == (
        b"250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n"
        b"250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n"
    )


def test_ehlo_keywords_follow_configuration():
    session = new_session(ServerConfig(max_message_size=5000, smtputf8=False, tls_available=True))
    (reply,) = talk(session, b"EHLO c\r\n")
    assert b"SIZE 5000\r\n" in reply and b"SMTPUTF8" not in reply
    assert reply.endswith(b"250 STARTTLS\r\n")
    assert b"AUTH" not in reply  # auth_require_tls: not offered in clear text


def test_ehlo_offers_auth_over_implicit_tls_and_no_starttls():
    session = new_session(ServerConfig(tls_available=True), tls_active=True)
    (reply,) = talk(session, b"EHLO c\r\n")
    assert reply.endswith(b"250 AUTH PLAIN LOGIN\r\n") and b"STARTTLS" not in reply


def test_helo_gives_a_one_line_reply_and_no_esmtp_parameters():
    session = new_session(CONFIG)
    assert talk(session, b"HELO c\r\n") == [b"250 mx.test\r\n"]
    assert talk(session, b"MAIL FROM:<a@b.example> SIZE=10\r\n") == [
        b"555 5.5.4 Error: parameters need EHLO\r\n"
    ]
    assert talk(session, b"MAIL FROM:<a@b.example>\r\n") == [b"250 2.1.0 Ok\r\n"]


@pytest.mark.parametrize("line", [b"EHLO\r\n", b"EHLO   \r\n", b"HELO\r\n"])
def test_helo_needs_an_argument(line):
    session = new_session(CONFIG)
    assert talk(session, line) == [b"501 5.5.4 Syntax: HELO/EHLO hostname\r\n"]


def test_verbs_are_case_insensitive(s):
    assert talk(s, b"mail from:<a@b.example>\r\nrCpT tO:<c@d.example>\r\nnoop\r\n") == [
        b"250 2.1.0 Ok\r\n",
        b"250 2.1.5 Ok\r\n",
        b"250 2.0.0 Ok\r\n",
    ]


def test_mail_before_helo_is_a_bad_sequence():
    session = new_session(CONFIG)
    assert talk(session, b"MAIL FROM:<a@b.example>\r\n") == [
        b"503 5.5.1 Error: send HELO/EHLO first\r\n"
    ]


def test_nested_mail_rcpt_without_mail_and_data_without_rcpt(s):
    assert talk(s, b"RCPT TO:<c@d.example>\r\n") == [b"503 5.5.1 Error: need MAIL command\r\n"]
    assert talk(s, b"DATA\r\n") == [b"503 5.5.1 Error: need MAIL command\r\n"]
    talk(s, b"MAIL FROM:<a@b.example>\r\n")
    assert talk(s, b"MAIL FROM:<a@b.example>\r\n") == [b"503 5.5.1 Error: nested MAIL command\r\n"]
    assert talk(s, b"DATA\r\n") == [b"503 5.5.1 Error: need RCPT command\r\n"]


def test_data_after_only_rejected_recipients_is_554(s):
    out = talk(s, b"MAIL FROM:<a@b.example>\r\nRCPT TO:<reject@d.example>\r\nDATA\r\n")
    assert out[1].startswith(b"550 5.1.1 <reject@d.example>")
    assert out[2] == b"554 5.5.1 Error: no valid recipients\r\n"


def test_mail_from_with_space_after_colon_and_null_sender(s):
    event = first_event(s, b"MAIL FROM: <>\r\n")
    assert isinstance(event, MailFrom) and event.sender == "" and event.params == {}


@pytest.mark.parametrize(
    "line, reply",
    [
        (b"MAIL FROM:a@b.example\r\n", b"501 5.1.7"),
        (b"MAIL FROM:<a@b.example\r\n", b"501 5.1.7"),
        (b"MAIL FROM:<a@@b.example>\r\n", b"501 5.1.7"),
        (b"MAIL FROM:<a@b.example>SIZE=1\r\n", b"501 5.1.7"),
        (b"MAIL TO:<a@b.example>\r\n", b"501 5.5.4"),
        (b"MAIL\r\n", b"501 5.5.4"),
        (b"MAIL FROM:<a@b.example> SIZE=x\r\n", b"501 5.5.4 Error: bad SIZE parameter"),
        (b"MAIL FROM:<a@b.example> SIZE\r\n", b"501 5.5.4"),
        (b"MAIL FROM:<a@b.example> BODY=BINARYMIME\r\n", b"501 5.5.4 Error: bad BODY parameter"),
        (b"MAIL FROM:<a@b.example> SMTPUTF8=yes\r\n", b"501 5.5.4"),
        (b"MAIL FROM:<a@b.example> SIZE=1 SIZE=2\r\n", b"501 5.5.4"),
        (b"MAIL FROM:<a@b.example> =x\r\n", b"501 5.5.4"),
        (b"MAIL FROM:<a@b.example> RET=HDRS\r\n", b"555 5.5.4 Error: unsupported parameter RET"),
        (b"MAIL FROM:<\xc3\xa9@b.example>\r\n", b"553 5.6.7"),
        (b"MAIL FROM:<a@b.example> SIZE=10240001\r\n", b"552 5.3.4"),
    ],
)
def test_mail_errors(s, line, reply):
    (out,) = talk(s, line)
    assert out.startswith(reply), out
    assert s.events_received() == []


def test_mail_parameters_are_reported(s):
    event = first_event(
        s, b"MAIL FROM:<\xc3\xa9@b\xc3\xbc.example> SIZE=10240000 body=8bitmime SMTPUTF8\r\n"
    )
    assert event.sender == "é@bü.example"
    assert event.params == {"SIZE": "10240000", "BODY": "8bitmime", "SMTPUTF8": None}


def test_smtputf8_disabled_refuses_the_parameter():
    session = new_session(ServerConfig(smtputf8=False))
    talk(session, b"EHLO c\r\n")
    (out,) = talk(session, b"MAIL FROM:<a@b.example> SMTPUTF8\r\n")
    assert out.startswith(b"555 5.5.4")


def test_rcpt_checks(s):
    talk(s, b"MAIL FROM:<a@b.example>\r\n")
    assert talk(s, b"RCPT FROM:<c@d.example>\r\n")[0].startswith(b"501 5.5.4")
    assert talk(s, b"RCPT TO:c@d.example\r\n")[0].startswith(b"501 5.1.3")
    assert talk(s, b"RCPT TO:<c@d.example> NOTIFY=NEVER\r\n")[0].startswith(b"555 5.5.4")
    assert talk(s, b"RCPT TO:<\xc3\xa9@d.example>\r\n")[0].startswith(b"553 5.6.7")
    event = first_event(s, b"RCPT TO:<@relay.example,@other.example:c@d.example>\r\n")
    assert isinstance(event, RcptTo)
    assert (event.recipient, event.sender) == ("c@d.example", "a@b.example")
    s.accept(event)
    event = first_event(s, b"RCPT TO:<postmaster>\r\n")
    assert event.recipient == "postmaster"


def test_utf8_recipient_allowed_with_smtputf8(s):
    assert talk(s, b"MAIL FROM:<a@b.example> SMTPUTF8\r\n") == [b"250 2.1.0 Ok\r\n"]
    event = first_event(s, "RCPT TO:<用户@例子.广告>\r\n".encode())
    assert event.recipient == "用户@例子.广告"


def test_rset_clears_the_transaction(s):
    talk(s, b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n")
    assert talk(s, b"RSET\r\n") == [b"250 2.0.0 Ok\r\n"]
    assert talk(s, b"DATA\r\n") == [b"503 5.5.1 Error: need MAIL command\r\n"]
    assert talk(s, b"RSET now\r\n") == [b"501 5.5.4 Syntax: this command takes no arguments\r\n"]


def test_ehlo_again_resets_the_transaction(s):
    talk(s, b"MAIL FROM:<a@b.example>\r\n")
    talk(s, b"EHLO again\r\n")
    assert talk(s, b"RCPT TO:<c@d.example>\r\n") == [b"503 5.5.1 Error: need MAIL command\r\n"]
    assert s.helo_name == "again"


def test_noop_vrfy_help(s):
    assert talk(s, b"NOOP\r\nNOOP anything\r\n") == [b"250 2.0.0 Ok\r\n"] * 2
    assert talk(s, b"VRFY someone\r\n")[0].startswith(b"252 2.5.2")
    assert talk(s, b"VRFY\r\n")[0].startswith(b"501 5.5.4")
    assert talk(s, b"HELP\r\n")[0].startswith(b"214 2.0.0")


@pytest.mark.parametrize("verb", [b"EXPN list", b"ETRN x", b"TURN", b"BDAT 10 LAST"])
def test_known_but_unimplemented_commands_are_502(s, verb):
    assert talk(s, verb + b"\r\n") == [b"502 5.5.1 Error: command not implemented\r\n"]


def test_unknown_command_is_500(s):
    assert talk(s, b"XYZZY\r\n") == [b"500 5.5.2 Error: command not recognized\r\n"]
    assert talk(s, b"\r\n") == [b"500 5.5.2 Error: command not recognized\r\n"]


def test_data_with_argument_is_501(s):
    talk(s, b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n")
    assert talk(s, b"DATA now\r\n")[0].startswith(b"501 5.5.4")


def test_quit_closes_and_later_input_is_ignored(s):
    s.receive_data(b"QUIT\r\nNOOP\r\n")
    assert s.data_to_send() == b"221 2.0.0 Bye\r\n"
    assert [e.reason for e in s.events_received()] == ["quit"]
    s.receive_data(b"NOOP\r\n")
    assert s.data_to_send() == b"" and s.closed


def test_http_request_is_refused_and_closed():
    session = new_session(CONFIG)
    session.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert session.data_to_send().startswith(b"221 2.7.0")
    assert [e.reason for e in session.events_received()] == ["forbidden command"]


def test_control_characters_and_bare_lf_in_commands_are_refused(s):
    assert talk(s, b"NOOP a\x00b\r\n") == [
        b"500 5.5.2 Error: control character or bare CR/LF in command\r\n"
    ]
    # A bare LF is not a line end: the "two commands" are one line with a control character.
    assert talk(s, b"MAIL FROM:<a@b.example>\nRCPT TO:<c@d.example>\r\n")[0].startswith(
        b"500 5.5.2"
    )
    assert s.events_received() == []


def test_invalid_utf8_in_a_command_is_refused(s):
    assert talk(s, b"MAIL FROM:<\xff@b.example>\r\n") == [
        b"500 5.5.2 Error: command is not valid UTF-8\r\n"
    ]


def test_overlong_command_lines(s):
    # RFC 5321 §4.5.3.1.4: 512 octets with CRLF; MAIL and RCPT get room for extensions.
    assert talk(s, b"NOOP " + b"x" * 505 + b"\r\n") == [b"250 2.0.0 Ok\r\n"]
    assert talk(s, b"NOOP " + b"x" * 506 + b"\r\n") == [b"500 5.5.2 Error: line too long\r\n"]
    local = b"l" * 900
    event = first_event(s, b"MAIL FROM:<" + local + b"@b.example>\r\n")
    assert event.sender == "l" * 900 + "@b.example"


def test_overlong_line_arriving_in_pieces_is_discarded_up_to_its_end(s):
    for _ in range(10):
        s.receive_data(b"y" * 5000)
    assert s.data_to_send() == b""
    s.receive_data(b"\r")
    s.receive_data(b"\nNOOP\r\n")
    assert s.data_to_send() == b"500 5.5.2 Error: line too long\r\n250 2.0.0 Ok\r\n"


def test_overlong_line_discard_keeps_a_cr_split_from_its_lf(s):
    s.receive_data(b"y" * 13000 + b"\r")
    assert s.data_to_send() == b""
    s.receive_data(b"\nNOOP\r\n")
    assert s.data_to_send() == b"500 5.5.2 Error: line too long\r\n250 2.0.0 Ok\r\n"
