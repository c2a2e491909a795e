"""``SMTPServer.shutdown``: 421 at once when at rest, after the answer when a message is under way."""

from __future__ import annotations

from gateway.protocols.smtp import CloseConnection, MessageReceived, RcptTo, ServerConfig
from tests.unit.smtp.harness import codes, new_session, replies

CONFIG = ServerConfig(hostname="mx.test", check_sender=False)
SHUTDOWN = b"421 4.3.2 mx.test Service shutting down\r\n"


def test_at_rest_the_421_is_immediate():
    session = new_session(CONFIG)
    session.receive_data(b"EHLO c\r\n")
    session.data_to_send()
    session.shutdown()
    assert session.data_to_send() == SHUTDOWN
    (event,) = session.events_received()
    assert isinstance(event, CloseConnection) and event.reason == "shutdown"
    assert session.closed


def test_inside_data_the_message_is_received_and_answered_first():
    session = new_session(CONFIG)
    session.receive_data(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n")
    (rcpt,) = session.events_received()
    session.accept(rcpt)
    session.receive_data(b"DATA\r\nSubject: x\r\n")
    session.data_to_send()
    session.shutdown()
    assert session.data_to_send() == b"" and not session.closed
    session.receive_data(b"\r\nbody\r\n.\r\nMAIL FROM:<next@b.example>\r\n")
    (message,) = session.events_received()
    assert isinstance(message, MessageReceived) and message.data == b"Subject: x\r\n\r\nbody\r\n"
    session.accept(message)
    assert replies(session.data_to_send()) == [b"250 2.0.0 Ok: queued\r\n", SHUTDOWN]
    assert session.closed  # the pipelined MAIL was not started


def test_a_pending_recipient_is_answered_then_the_session_ends():
    session = new_session(CONFIG)
    session.receive_data(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
    (rcpt,) = session.events_received()
    assert isinstance(rcpt, RcptTo)
    session.data_to_send()
    session.shutdown()
    session.defer(rcpt)
    assert codes(session.data_to_send()) == [451, 421]
    assert session.closed


def test_a_custom_reply_and_shutdown_after_close_is_harmless():
    session = new_session(CONFIG)
    session.shutdown("421 4.3.0 maintenance")
    assert session.data_to_send() == b"421 4.3.0 maintenance\r\n"
    session.shutdown()
    assert session.data_to_send() == b""
