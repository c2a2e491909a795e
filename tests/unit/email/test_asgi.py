"""The ``email`` mapping, pure: the scope builder, the answer rules, and the order of the
application's messages (``EmailOrder``) driven by hypothesis in any order."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gateway.protocols.email.asgi import (
    ACCEPTED,
    DEFAULT_ACCEPT,
    FAILED,
    REFUSED,
    REJECTED,
    RETRIED,
    TAKEN,
    TEMPORARY_FAILURE,
    EmailOrder,
    Late,
    Outcome,
    Send,
    email_scope,
    recipient_probe,
    smtp_connection,
)
from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.smtp.replies import Reply


def test_smtp_and_imap_scopes_carry_their_own_keys() -> None:
    smtp = email_scope(source="smtp", sender="a@x", recipients=("b@y",), size=3, server=("192.0.2.25", 25),
                       tls=None, state={"k": 1}, can_send=True, helo="client", client=("192.0.2.1", 4000),
                       auth_user="u", esmtp=False, smtputf8=True, body="8BITMIME")
    assert smtp["asgi"] == {"version": "3.0", "spec_version": "1.0"}
    assert (smtp["recipients"], smtp["helo"], smtp["esmtp"], smtp["smtputf8"], smtp["body"]) == (["b@y"], "client", False, True, "8BITMIME")
    assert smtp["extensions"] == {"email.send": {}} and smtp["state"] == {"k": 1}
    assert "mailbox" not in smtp and "uid" not in smtp
    imap = email_scope(source="imap", sender="a@x", recipients=["b@y"], size=3, server=("imap", 993), tls=None,
                       state=None, can_send=False, helo="ignored", client=("192.0.2.1", 1), auth_user="u",
                       mailbox="Support", uid=7, uidvalidity=9)
    assert (imap["helo"], imap["client"], imap["auth_user"]) == (None, None, None)
    assert (imap["mailbox"], imap["uid"], imap["uidvalidity"], imap["extensions"], imap["state"]) == ("Support", 7, 9, {}, {})
    assert "esmtp" not in imap
    smtp["asgi"]["version"] = "changed"  # scopes share nothing
    assert imap["asgi"]["version"] == "3.0"


def test_the_rcpt_probe_is_the_connection_plus_one_recipient() -> None:
    connection = smtp_connection(helo="h", client=None, server=None, tls=None, auth_user=None)
    probe = recipient_probe(connection, "a@x", "b@y")
    assert (probe["type"], probe["sender"], probe["recipients"], probe["helo"]) == ("email", "a@x", ["b@y"], "h")


@pytest.mark.parametrize(("outcome", "code", "soft_code", "fate"), [
    (Outcome(ACCEPTED, DEFAULT_ACCEPT), 250, 250, TAKEN),
    (Outcome(REJECTED, Reply(554, "5.7.1", "no")), 554, 454, REFUSED),
    (Outcome(REJECTED, Reply(451, "4.3.0", "later")), 451, 451, RETRIED),
    (Outcome(FAILED, reason="it raised"), 451, 451, RETRIED),
])
def test_what_the_sender_is_told(outcome: Outcome, code: int, soft_code: int, fate: str) -> None:
    """SMTP: 250 only for an accept, 451 for a failure, the 4xx twin with soft_reject; IMAP:
    taken only once accepted, refused only for a 5xx, otherwise offered again."""
    assert outcome.smtp_reply().code == code
    assert outcome.smtp_reply(soft_reject=True).code == soft_code
    assert outcome.fate == fate
    if outcome.kind == FAILED:
        assert outcome.smtp_reply() is TEMPORARY_FAILURE


# -- the message order, in any order ------------------------------------------------------------

texts = st.one_of(st.none(), st.text(max_size=20), st.integers(), st.binary(max_size=5))
codes = st.one_of(st.integers(100, 700), st.text(max_size=3), st.none())


def accept_messages() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(lambda text: {"type": "email.accept"} if text is None else {"type": "email.accept", "text": text}, texts)


def reject_messages() -> st.SearchStrategy[dict[str, Any]]:
    def build(code: Any, text: Any) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "email.reject"}
        if code is not None:
            message["code"] = code
        if text is not None:
            message["text"] = text
        return message

    return st.builds(build, codes, texts)


def send_messages() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(lambda ident: {"type": "email.send", "to": "x@example.org", **({} if ident is None else {"id": ident})},
                     st.one_of(st.none(), st.text(max_size=8), st.integers()))


others = st.one_of(
    st.builds(lambda kind: {"type": kind}, st.sampled_from(["email.receive", "http.response.start", "email.disconnect", ""])),
    st.just({}), st.just([]), st.none(), st.text(max_size=5),
)


def valid_accept(message: dict[str, Any]) -> bool:
    return not isinstance(message.get("text", ""), bool) and isinstance(message.get("text", ""), str)


def valid_reject(message: dict[str, Any]) -> bool:
    code = message.get("code", 550)
    return (type(code) is int and 400 <= code <= 599 and code // 10 % 10 <= 5
            and isinstance(message.get("text", ""), str))


class EmailMessageOrder(RuleBasedStateMachine):
    """A model of docs/asgi-email.md: one answer (accept or reject), any number of sends at any
    time, a give-up (the instance ended or timed out) that makes later answers harmless; anything
    refused changes nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.order = EmailOrder()
        self.answered: str | None = None  # the model: ACCEPTED, REJECTED or FAILED
        self.first: Outcome | None = None

    def _refused(self, message: Any) -> None:
        before = self.order.outcome
        with pytest.raises(LocalProtocolError):
            self.order.app_send(message)
        assert self.order.outcome is before

    @rule(message=accept_messages())
    def accept(self, message: dict[str, Any]) -> None:
        if not valid_accept(message) or self.answered in (ACCEPTED, REJECTED):
            self._refused(message)
            return
        action = self.order.app_send(message)
        if self.answered == FAILED:
            assert isinstance(action, Late) and action.outcome.kind == ACCEPTED
            return
        assert isinstance(action, Outcome) and action.kind == ACCEPTED and action.smtp_reply().code == 250
        self.answered, self.first = ACCEPTED, action

    @rule(message=reject_messages())
    def reject(self, message: dict[str, Any]) -> None:
        if not valid_reject(message) or self.answered in (ACCEPTED, REJECTED):
            self._refused(message)
            return
        action = self.order.app_send(message)
        if self.answered == FAILED:
            assert isinstance(action, Late)
            return
        assert isinstance(action, Outcome) and action.kind == REJECTED
        assert action.smtp_reply().code == message.get("code", 550) >= 400
        self.answered, self.first = REJECTED, action

    @rule(message=send_messages())
    def send(self, message: dict[str, Any]) -> None:
        ident = message.get("id")
        if ident is not None and not isinstance(ident, str):
            self._refused(message)
            return
        action = self.order.app_send(message)
        assert isinstance(action, Send) and action.message is message
        assert action.id == ident if ident is not None else len(action.id) == 32

    @rule(message=others)
    def other(self, message: Any) -> None:
        self._refused(message)

    @rule(reason=st.text(max_size=10))
    def give_up(self, reason: str) -> None:
        failure = self.order.give_up(reason)
        if self.answered is None:
            assert failure is not None and failure.kind == FAILED and failure.reason == reason
            assert failure.smtp_reply() is TEMPORARY_FAILURE and failure.fate == RETRIED
            self.answered, self.first = FAILED, failure
        else:
            assert failure is None

    @precondition(lambda self: self.answered is not None)
    @invariant()
    def the_first_outcome_stands(self) -> None:
        assert self.order.outcome is self.first
        assert (self.order.outcome.smtp_reply().code == 250) == (self.answered == ACCEPTED)
        assert (self.order.outcome.fate == TAKEN) == (self.answered == ACCEPTED)

    @invariant()
    def unanswered_until_answered(self) -> None:
        assert self.order.answered == (self.answered is not None)


TestEmailMessageOrder = EmailMessageOrder.TestCase
