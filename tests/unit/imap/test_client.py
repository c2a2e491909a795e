"""``MailboxClient`` against a scripted server: IDLE, EXISTS at once, raw bodies, login, capabilities."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.mail import imap4

from gateway.protocols.imap.client import MailboxClient, mailbox_name


class Script:
    """A client on a StringTransport; ``server(line)`` feeds one server line."""

    def __init__(self, greeting: bytes = b"* OK [CAPABILITY IMAP4rev1 IDLE AUTH=PLAIN SASL-IR] ready") -> None:
        self.new_mail = 0
        self.client = MailboxClient(on_new_mail=self._count)
        self.transport = StringTransport()
        self.client.makeConnection(self.transport)
        self.server(greeting)

    def _count(self) -> None:
        self.new_mail += 1

    def server(self, *lines: bytes) -> None:
        for line in lines:
            self.client.dataReceived(line + b"\r\n")

    def sent(self) -> list[bytes]:
        value = self.transport.value()
        self.transport.clear()
        return value.split(b"\r\n")[:-1]


def result(d: Any) -> Any:
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    if isinstance(out[0], Exception) or hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


def test_greeting_capabilities_and_a_fresh_capability_command():
    s = Script()
    caps = result(s.client.greeting)
    assert b"IDLE" in caps and caps[b"AUTH"] == [b"PLAIN"]
    d = s.client.capability()
    assert s.sent() == [b"0001 CAPABILITY"]
    s.server(b"* CAPABILITY IMAP4rev1 IDLE MOVE UIDPLUS", b"0001 OK done")
    assert set(result(d)) == {b"IMAP4REV1", b"IDLE", b"MOVE", b"UIDPLUS"}


def test_idle_reports_exists_at_once_and_done_ends_it():
    s = Script()
    done = s.client.idle()
    assert s.sent() == [b"0001 IDLE"]
    s.server(b"+ idling", b"* OK Still here")
    assert s.new_mail == 0
    s.server(b"* 4 EXISTS")
    assert s.new_mail == 1 and not done.called  # not at the end of IDLE: now
    s.client.idle_done()
    s.client.idle_done()  # twice is harmless
    assert s.sent() == [b"DONE"]
    s.server(b"0001 OK Idle completed")
    assert result(done)[0] == []  # IDLE kept no lines


def test_done_before_the_continuation_waits_for_it():
    s = Script()
    done = s.client.idle()
    s.sent()
    s.client.idle_done()
    assert s.sent() == []
    s.server(b"+ idling")
    assert s.sent() == [b"DONE"]
    s.server(b"0001 OK Idle completed")
    assert done.called


def test_exists_during_another_command_is_reported_too():
    s = Script()
    d = s.client.uid_search(b"UNSEEN UNDELETED")
    assert s.sent() == [b"0001 UID SEARCH UNSEEN UNDELETED"]
    s.server(b"* 7 EXISTS", b"* SEARCH 5 3 9", b"0001 OK done")
    assert result(d) == [3, 5, 9] and s.new_mail == 1


def test_fetch_returns_the_exact_bytes_of_a_literal():
    s = Script()
    body = b"Subject: \xc3\xa9t\xc3\xa9\r\n\r\n\xff\xfe binary ) ( { } \r\n* 3 EXISTS\r\n"
    d = s.client.uid_fetch([12, 13], body=True)
    assert s.sent() == [b"0001 UID FETCH 12,13 (UID RFC822.SIZE FLAGS BODY.PEEK[])"]
    s.client.dataReceived(b"* 1 FETCH (UID 12 RFC822.SIZE %d FLAGS (\\Recent) BODY[] {%d}\r\n" % (len(body), len(body))
                          + body + b")\r\n* 2 FETCH (UID 13 RFC822.SIZE 3 FLAGS () BODY[] NIL)\r\n0001 OK done\r\n")
    fetched = result(d)
    assert fetched[12].body == body and fetched[12].size == len(body) and fetched[12].flags == ("\\Recent",)
    assert fetched[13].body is None
    assert s.new_mail == 0  # "* 3 EXISTS" inside the literal is data, not a response


def test_store_move_copy_expunge_command_lines():
    s = Script()
    for call, line in [
        (lambda: s.client.uid_store([3], b"\\Seen"), b"0001 UID STORE 3 +FLAGS.SILENT (\\Seen)"),
        (lambda: s.client.uid_move([3, 4], "Done & Dusted"), b'0002 UID MOVE 3,4 "Done &- Dusted"'),
        (lambda: s.client.uid_copy([5], "Archive"), b"0003 UID COPY 5 Archive"),
        (lambda: s.client.uid_expunge([5]), b"0004 UID EXPUNGE 5"),
    ]:
        d = call()
        assert s.sent() == [line]
        s.server(line[:4] + b" OK done")
        assert d.called
    assert mailbox_name("Entwürfe") == b"Entw&APw-rfe"


def test_login_with_sasl_ir_with_a_continuation_and_with_login():
    s = Script()
    d = s.client.authenticate_plain_or_login("user", "pässword")
    token = base64.b64encode("\0user\0pässword".encode())
    assert s.sent() == [b"0001 AUTHENTICATE PLAIN " + token]
    s.server(b"0001 OK Logged in")
    assert d.called

    s = Script(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready")
    d = s.client.authenticate_plain_or_login("user", "pw")
    assert s.sent() == [b"0001 AUTHENTICATE PLAIN"]
    s.server(b"+ ")
    assert s.sent() == [base64.b64encode(b"\0user\0pw")]
    s.server(b"0001 OK Logged in")
    assert d.called

    s = Script(b"* OK [CAPABILITY IMAP4rev1] ready")
    d = s.client.authenticate_plain_or_login('us"er', "p\\w")
    assert s.sent() == [b'0001 LOGIN "us\\"er" "p\\\\w"']
    s.server(b"0001 NO [AUTHENTICATIONFAILED] bad")
    with pytest.raises(imap4.IMAP4Exception):
        result(d)


def test_login_refusals_without_sending_anything():
    s = Script(b"* OK [CAPABILITY IMAP4rev1 LOGINDISABLED] ready")
    with pytest.raises(imap4.IMAP4Exception, match="refuses LOGIN"):
        result(s.client.authenticate_plain_or_login("u", "p"))
    s = Script(b"* OK [CAPABILITY IMAP4rev1] ready")
    with pytest.raises(imap4.IMAP4Exception, match="printable ASCII"):
        result(s.client.authenticate_plain_or_login("u", "pässword"))
    assert s.sent() == []


def test_losing_the_connection_fails_pending_commands_and_an_awaited_greeting():
    s = Script()
    d = s.client.uid_search(b"ALL")
    s.client.connectionLost(Failure(ConnectionDone("gone")))
    with pytest.raises(ConnectionDone):
        result(d)
    early = MailboxClient()
    early.makeConnection(StringTransport())
    early.connectionLost(Failure(ConnectionDone("before the greeting")))
    with pytest.raises(ConnectionDone):
        result(early.greeting)
