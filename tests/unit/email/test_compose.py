"""Building outgoing messages for ``email.send`` and mapping smarthost outcomes to results."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.mail import smtp
from twisted.python.failure import Failure

from gateway.consumers.email import parse_message
from gateway.protocols.email.compose import compose, wire_data
from gateway.protocols.email.sender import _failure_result, _success_result
from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.smtp import ServerConfig
from tests.unit.smtp.harness import new_session


def unstuffed(data: bytes) -> bytes:
    """What an SMTP server stores after DATA (our own core does the work)."""
    session = new_session(ServerConfig(check_sender=False))
    session.receive_data(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n")
    (rcpt,) = session.events_received()
    session.accept(rcpt)
    session.receive_data(b"DATA\r\n" + data + b".\r\n")
    (message,) = session.events_received()
    return message.data  # type: ignore[no-any-return]


def test_structured_messages_get_headers_and_envelope():
    out = compose({"to": ["a@example.org", "Bob <b@example.org>"], "cc": "c@example.org", "bcc": ["d@example.org"],
                   "subject": "Ünïcode", "body": "line\n.starts with a dot\n", "headers": {"In-Reply-To": "<x@y>"}},
                  "robot@gw.example")
    assert out.sender == "robot@gw.example"
    assert out.recipients == ("a@example.org", "b@example.org", "c@example.org", "d@example.org")
    parsed = parse_message(unstuffed(out.data))
    assert parsed["To"] == "a@example.org, Bob <b@example.org>" and parsed["Cc"] == "c@example.org"
    assert "Bcc" not in parsed and parsed["Subject"] == "Ünïcode" and parsed["In-Reply-To"] == "<x@y>"
    assert parsed["Message-ID"].endswith("@gw.example>") and parsed["Date"]
    assert parsed.get_content().replace("\r\n", "\n") == "line\n.starts with a dot\n"
    assert out.data.isascii()  # 7-bit: the client does not declare 8BITMIME


def test_full_messages_keep_their_bytes_and_take_the_envelope_from_headers():
    raw = b"From: Me <me@example.org>\nTo: you@example.org\nSubject: s\n\nbody\n"
    out = compose({"message": raw}, None)
    assert out.sender == "me@example.org" and out.recipients == ("you@example.org",)
    data = unstuffed(out.data)
    assert data.startswith(b"Date: ") and data.endswith(b"From: Me <me@example.org>\r\nTo: you@example.org\r\n"
                                                        b"Subject: s\r\n\r\nbody\r\n")


@pytest.mark.parametrize("message, error", [
    ({"subject": "x", "body": "y"}, "at least one recipient"),
    ({"to": "a@example.org", "body": "y"}, "needs 'from'"),
    ({"to": "not an address", "from": "me@example.org"}, "not an ASCII email address"),
    ({"to": "ü@example.org", "from": "me@example.org"}, "not an ASCII email address"),
    ({"to": "a@example.org", "from": "me@example.org", "subject": "x\r\nBcc: evil@example.org"}, "linefeed"),
    ({"to": "a@example.org", "from": "me@example.org", "headers": {"Bcc": "x@example.org"}}, "its own key"),
    ({"to": "a@example.org", "from": "me@example.org", "body": b"bytes"}, "must be strings"),
    ({"message": "text", "to": "a@example.org"}, "must be bytes"),
    ({"message": b"To: a@example.org\r\nBcc: b@example.org\r\n\r\nx", "from": "me@example.org"}, "Bcc header"),
])
def test_malformed_sends_are_refused(message, error):
    with pytest.raises(LocalProtocolError, match=error):
        compose(message, None)


@given(st.lists(st.sampled_from([b".", b"..", b"a", b"\r\n", b"\n", b"\r", b". \r\n", b"x.y"]), max_size=40))
def test_wire_data_is_unstuffed_back_to_the_crlf_message(parts):
    data = b"".join(parts)
    normal = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if not normal.endswith(b"\r\n"):
        normal += b"\r\n"
    wire = wire_data(data)
    assert b"\r\n.\r\n" not in b"\r\n" + wire  # a lone dot never ends the data early
    assert unstuffed(wire) == normal


def test_results_from_the_smarthost():
    assert _success_result((2, [(b"a@x", 250, b"ok"), (b"b@x", 250, b"ok")])) == {
        "ok": True, "code": 250, "temporary": False, "refused": {}, "text": "sent"}
    partial = _success_result((1, [(b"a@x", 250, b"ok"), (b"b@x", 550, b"5.1.1 unknown")]))
    assert partial["ok"] is False and partial["refused"] == {"b@x": "550 5.1.1 unknown"}
    refused = _failure_result(Failure(smtp.SMTPDeliveryError(550, b"5.7.1 relay denied", addresses=[])))
    assert refused["code"] == 550 and refused["temporary"] is False and refused["text"] == "5.7.1 relay denied"
    later = _failure_result(Failure(smtp.SMTPDeliveryError(451, b"4.3.0 later")))
    assert later["temporary"] is True
    cause = ConnectionRefusedError("refused")
    connect = smtp.SMTPConnectError(-1, "Unable to connect to SMTP server: refused")
    connect.__cause__ = cause
    result = _failure_result(Failure(connect))
    assert result["code"] is None and result["temporary"] is True and "cannot connect" in result["text"]
    other = _failure_result(Failure(ValueError("boom")))
    assert other == {"ok": False, "code": None, "temporary": True, "refused": {}, "text": "ValueError: boom"}
