"""Limits (Postfix-like defaults), timeouts through next_deadline, EOF."""

from __future__ import annotations

from gateway.protocols.smtp import CloseConnection, ServerConfig, SMTPServer
from tests.unit.smtp.harness import codes, new_session, talk

CONFIG = ServerConfig(hostname="mx.test")


def test_postfix_like_defaults():
    c = ServerConfig()
    assert (c.max_message_size, c.max_recipients, c.max_command_line, c.max_data_line) == (
        10240000,
        1000,
        512,
        1000,
    )
    assert (c.max_errors, c.max_junk_commands, c.timeout) == (20, 100, 300.0)


def test_too_many_recipients_is_452_and_the_client_may_continue():
    session = new_session(ServerConfig(max_recipients=2))
    out = talk(
        session,
        b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<1@d.example>\r\nRCPT TO:<2@d.example>\r\n"
        b"RCPT TO:<3@d.example>\r\nRCPT TO:<reject@d.example>\r\nDATA\r\nx\r\n.\r\n",
    )
    assert codes(b"".join(out)) == [250, 250, 250, 250, 452, 452, 354, 250]
    assert out[4] == b"452 4.5.3 Error: too many recipients\r\n"


def test_rejected_recipients_do_not_use_up_the_limit():
    session = new_session(ServerConfig(max_recipients=1))
    out = talk(
        session,
        b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n"
        b"RCPT TO:<reject@d.example>\r\nRCPT TO:<1@d.example>\r\n",
    )
    assert codes(b"".join(out)) == [250, 250, 550, 250]


def test_error_limit_disconnects_with_421():
    session = new_session(ServerConfig(hostname="mx.test", max_errors=3))
    session.receive_data(b"XYZZY\r\nXYZZY\r\nXYZZY\r\nNOOP\r\n")
    assert codes(session.data_to_send()) == [500, 500, 500, 421]
    assert [e.reason for e in session.events_received()] == ["too many errors"]
    assert session.closed


def test_error_limit_421_text():
    session = new_session(ServerConfig(hostname="mx.test", max_errors=1))
    session.receive_data(b"XYZZY\r\n")
    assert session.data_to_send().endswith(b"421 4.7.0 mx.test Error: too many errors\r\n")


def test_refusals_by_the_upper_layer_count_as_errors():
    session = new_session(ServerConfig(max_errors=3))
    session.receive_data(
        b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n"
        + b"".join(b"RCPT TO:<reject%d@d.example>\r\n" % i for i in range(5))
    )
    out = b""
    while True:
        events = session.events_received()
        if not events:
            break
        for event in events:
            if isinstance(event, CloseConnection):
                continue
            if event.__class__.__name__ == "RcptTo":
                session.reject(event)
            else:
                session.accept(event)
        out += session.data_to_send()
    assert codes(out) == [250, 250, 550, 550, 550, 421]


def test_an_accepted_message_resets_the_error_count():
    session = new_session(ServerConfig(max_errors=3))
    msg = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nx\r\n.\r\n"
    out = talk(session, b"EHLO c\r\nXYZZY\r\nXYZZY\r\n" + msg + b"XYZZY\r\nXYZZY\r\nNOOP\r\n")
    assert codes(b"".join(out)) == [250, 500, 500, 250, 250, 354, 250, 500, 500, 250]
    assert not session.closed


def test_junk_commands_beyond_the_limit_count_as_errors():
    session = new_session(ServerConfig(max_junk_commands=2, max_errors=2))
    session.receive_data(b"NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n")
    assert codes(session.data_to_send()) == [250, 250, 250, 250, 421]


def test_next_deadline_is_300_seconds_after_the_last_activity():
    session = SMTPServer(CONFIG)
    session.data_to_send()
    assert session.next_deadline(1000.0) == 1300.0
    assert session.next_deadline(1200.0) == 1300.0  # no activity: same deadline
    assert session.handle_timeout(1299.9) is False
    session.receive_data(b"NOOP\r\n")
    session.data_to_send()
    assert session.next_deadline(1250.0) == 1550.0
    assert session.handle_timeout(1300.0) is False
    assert session.handle_timeout(1550.0) is True
    assert session.data_to_send() == b"421 4.4.2 mx.test Error: timeout exceeded\r\n"
    assert [e.reason for e in session.events_received()] == ["timeout"]
    assert session.next_deadline(2000.0) is None and session.closed


def test_partial_input_counts_as_activity_during_data():
    session = SMTPServer(ServerConfig(timeout=10))
    session.receive_data(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
    assert session.next_deadline(0.0) is None  # waiting for our own answer: no client timer
    session.accept(session.pending)
    assert session.next_deadline(5.0) == 15.0
    session.receive_data(b"RCPT TO:<c@d.example>\r\n")
    session.accept(session.pending)
    session.receive_data(b"DATA\r\n")
    session.next_deadline(20.0)
    session.receive_data(b"some body text")
    assert session.next_deadline(29.0) == 39.0
    assert session.handle_timeout(38.0) is False and not session.closed


def test_eof_closes_quietly_and_drops_the_pending_decision():
    session = new_session(CONFIG)
    session.receive_data(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
    event = session.pending
    session.data_to_send()
    session.receive_data(b"")
    assert session.data_to_send() == b""
    assert [type(e) for e in session.events_received()][-1] is CloseConnection
    session.accept(event)  # the answer came too late: ignored, no error
    assert session.data_to_send() == b"" and session.pending is None
    session.tls_started()  # also ignored once closed
