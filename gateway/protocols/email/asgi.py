# -*- test-case-name: tests.unit.email.test_asgi -*-
"""The ASGI ``email`` mapping, sans-IO: the scope, the events, the order of the application's
messages, and what an answer means for the message (``docs/asgi-email.md``).

The SMTP listener, the IMAP reader and the test communicator
(:class:`gateway.testing.email.EmailCommunicator`) all build the scope with :func:`email_scope`,
check what the application sends with :class:`EmailOrder`, and turn its answer (an
:class:`Outcome`) into what the sender of the message sees with the same two rules:

* :meth:`Outcome.smtp_reply`: ``250`` only for ``email.accept``; the application's own 4xx/5xx for
  ``email.reject``; ``451 4.3.0`` for a failure (it raised, ended without answering, did not answer
  in time, or was cancelled), so the sending server keeps the message and retries;
* :attr:`Outcome.fate`: what a mailbox reader does with the message: take it (mark, move or
  delete it: only now), refuse it (a permanent rejection) or leave it to be offered again.

Nothing here does I/O or knows a clock, so hypothesis drives it with messages in any order.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, cast

from gateway.asgi.types import (
    ASGIVersions,
    EmailConnection,
    EmailDisconnect,
    EmailProbe,
    EmailReceive,
    EmailScope,
    EmailSendResult,
    TLSInfo,
)
from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.smtp.replies import Reply, soften

__all__ = [
    "ACCEPTED", "DEFAULT_ACCEPT", "DISCONNECT", "FAILED", "REFUSED", "REJECTED", "RETRIED", "TAKEN",
    "TEMPORARY_FAILURE", "EmailOrder", "Late", "Outcome", "Send", "accept_reply", "email_scope", "receive_event",
    "recipient_probe", "reject_reply", "send_result_event", "smtp_connection",
]

ASGI_VERSION: Final = "3.0"
#: Version of the ``email`` mapping (docs/asgi-email.md).
SPEC_VERSION: Final = "1.0"
_VERSIONS: ASGIVersions = {"version": ASGI_VERSION, "spec_version": SPEC_VERSION}

#: :attr:`Outcome.kind` values.
ACCEPTED: Final = "accepted"
REJECTED: Final = "rejected"
FAILED: Final = "failed"
#: :attr:`Outcome.fate` values: what a mailbox reader does with the message.
TAKEN: Final = "taken"
REFUSED: Final = "refused"
RETRIED: Final = "retried"

#: The reply to an ``email.accept`` without text (the SMTP core has it pre-rendered).
DEFAULT_ACCEPT = Reply(250, "2.0.0", "Ok: queued")
#: What a failure is answered with: the sending server keeps the message and retries.
TEMPORARY_FAILURE = Reply(451, "4.3.0", "Temporary failure, please try again later")

DISCONNECT: EmailDisconnect = {"type": "email.disconnect"}


# -- the scope and the events ---------------------------------------------------------------------


def email_scope(
    *,
    source: Literal["smtp", "imap"],
    sender: str,
    recipients: Sequence[str],
    size: int,
    server: tuple[str, int | None] | None,
    tls: TLSInfo | None,
    state: Mapping[str, Any] | None,
    can_send: bool,
    helo: str | None = None,
    client: tuple[str, int] | None = None,
    auth_user: str | None = None,
    esmtp: bool = True,
    smtputf8: bool = False,
    body: str | None = None,
    mailbox: str = "INBOX",
    uid: int = 0,
    uidvalidity: int | None = None,
) -> EmailScope:
    """The scope of one message (docs/asgi-email.md, "The scope").

    SMTP scopes carry ``esmtp``, ``smtputf8`` and ``body``; IMAP scopes ``mailbox``, ``uid`` and
    ``uidvalidity`` (and no ``helo``, ``client`` or ``auth_user``).
    """
    scope: EmailScope = {
        "type": "email",
        "asgi": _VERSIONS.copy(),
        "source": source,
        "sender": sender,
        "recipients": list(recipients),
        "helo": helo,
        "client": client,
        "server": server,
        "tls": tls,
        "auth_user": auth_user,
        "size": size,
        "state": dict(state) if state else {},
        "extensions": {"email.send": {}} if can_send else {},
    }
    if source == "smtp":
        scope["esmtp"] = esmtp
        scope["smtputf8"] = smtputf8
        scope["body"] = body
    else:
        scope["helo"] = scope["client"] = scope["auth_user"] = None
        scope["mailbox"] = mailbox
        scope["uid"] = uid
        scope["uidvalidity"] = uidvalidity
    return scope


def smtp_connection(
    *,
    helo: str | None,
    client: tuple[str, int] | None,
    server: tuple[str, int | None] | None,
    tls: TLSInfo | None,
    auth_user: str | None,
) -> EmailConnection:
    """The keys of an SMTP connection so far: the scope an AUTH hook is given."""
    return {
        "type": "email",
        "asgi": _VERSIONS.copy(),
        "source": "smtp",
        "helo": helo,
        "client": client,
        "server": server,
        "tls": tls,
        "auth_user": auth_user,
    }


def recipient_probe(connection: EmailConnection, sender: str, recipient: str) -> EmailProbe:
    """What the SMTP listener asks ``matches(app, probe)`` at ``RCPT TO`` (docs/routing.md): the
    connection's keys, the sender, and the one recipient being checked."""
    probe = cast(EmailProbe, connection)
    probe["sender"] = sender
    probe["recipients"] = [recipient]
    return probe


def receive_event(raw: bytes) -> EmailReceive:
    """``email.receive``: the message bytes (the first event)."""
    return {"type": "email.receive", "raw": raw}


def send_result_event(message_id: str, result: Mapping[str, Any]) -> EmailSendResult:
    """``email.send.result`` for the send ``message_id``, from a sender's result fields."""
    return {
        "type": "email.send.result",
        "id": message_id,
        "ok": bool(result.get("ok")),
        "code": result.get("code"),
        "text": str(result.get("text", "")),
        "temporary": bool(result.get("temporary")),
        "refused": dict(result.get("refused") or {}),
    }


# -- answers --------------------------------------------------------------------------------------


class Outcome:
    """How one message was answered: accepted, rejected (with the reply) or failed (with why).

    Attributes:
        kind: :data:`ACCEPTED`, :data:`REJECTED` or :data:`FAILED`.
        reply: the SMTP reply for an answer (``250`` accepted, 4xx/5xx rejected); None for a failure.
        reason: for a failure, why (for logs).
    """

    __slots__ = ("kind", "reason", "reply")

    def __init__(self, kind: str, reply: Reply | None = None, reason: str = "") -> None:
        self.kind = kind
        self.reply = reply
        self.reason = reason

    def __repr__(self) -> str:
        return f"Outcome({self.kind!r}, {self.reply!r}, {self.reason!r})"

    @property
    def permanent(self) -> bool:
        """A permanent (5xx) rejection."""
        reply = self.reply
        return self.kind == REJECTED and reply is not None and reply.code >= 500

    def smtp_reply(self, soft_reject: bool = False) -> Reply:
        """What the SMTP client is told: the accept's 250, the rejection (its 4xx twin with
        ``soft_reject``), or ``451 4.3.0`` for a failure (never a permanent refusal)."""
        reply = self.reply
        if reply is None:
            return TEMPORARY_FAILURE
        if self.kind == REJECTED and soft_reject:
            return soften(reply)
        return reply

    @property
    def fate(self) -> str:
        """What a mailbox reader does with the message: :data:`TAKEN` (accepted: mark, move or
        delete it now), :data:`REFUSED` (a permanent rejection) or :data:`RETRIED` (a failure or
        a 4xx: leave it, offer it again later)."""
        if self.kind == ACCEPTED:
            return TAKEN
        if self.permanent:
            return REFUSED
        return RETRIED


def accept_reply(message: Mapping[str, Any]) -> Reply:
    """The 250 reply for an ``email.accept`` message (optional ``text``, e.g. a ticket number).

    Raises:
        LocalProtocolError: ``text`` is not a string.
    """
    text = message.get("text")
    if text is None:
        return DEFAULT_ACCEPT
    if not isinstance(text, str):
        raise LocalProtocolError(f"email.accept text must be a string, not {type(text).__name__}")
    return Reply.from_text(250, text)


def reject_reply(message: Mapping[str, Any]) -> Reply:
    """The reply for an ``email.reject`` message: ``code`` 400-599 (default 550) and ``text``.

    An enhanced status code at the start of ``text`` is kept (``"5.7.1 Spam"``); without one the
    class's generic status is used (RFC 3463: ``5.0.0``).

    Raises:
        LocalProtocolError: the code is not an int from 400 to 599, or the text is not a string.
    """
    code = message.get("code", 550)
    text = message.get("text", "Message rejected")
    if type(code) is not int or not 400 <= code <= 599 or code // 10 % 10 > 5:
        raise LocalProtocolError(f"email.reject code must be an SMTP reply code 400-599, not {code!r}")
    if not isinstance(text, str):
        raise LocalProtocolError(f"email.reject text must be a string, not {type(text).__name__}")
    return Reply.from_text(code, text)


# -- the order of the application's messages ------------------------------------------------------


class Send:
    """``email.send``: the message (checked by the sender when it composes it) and its id."""

    __slots__ = ("id", "message")

    def __init__(self, message_id: str, message: Mapping[str, Any]) -> None:
        self.id = message_id
        self.message = message


class Late:
    """An answer that came after the message had already failed (it is ignored)."""

    __slots__ = ("outcome", "failure")

    def __init__(self, outcome: Outcome, failure: Outcome) -> None:
        self.outcome = outcome
        self.failure = failure


Action = Outcome | Send | Late

_ANSWERED = "this message was already answered (email.accept/email.reject)"


class EmailOrder:
    """The message-order state machine of one ``email`` scope::

        OPEN ──email.accept / email.reject──> ANSWERED        email.send: in any state
          └──give_up(reason)──> FAILED ──email.accept / email.reject──> (ignored: Late)

    :meth:`app_send` returns the action for the adapter: the :class:`Outcome` of an answer, a
    :class:`Send`, or a :class:`Late` answer. It raises :class:`LocalProtocolError` for an unknown
    or malformed message and for a second answer, and then changes nothing. The listener calls
    :meth:`give_up` when the instance cannot answer any more (it ended, timed out or was
    cancelled): the message fails, which is never a permanent refusal.
    """

    __slots__ = ("outcome",)

    def __init__(self) -> None:
        #: The answer, once there is one (or the failure, once given up).
        self.outcome: Outcome | None = None

    @property
    def answered(self) -> bool:
        """Whether the message has an outcome (an answer, or a failure)."""
        return self.outcome is not None

    def app_send(self, message: Any) -> Action:
        """Check one message from the application; returns what to do with it."""
        try:
            kind = message["type"]
        except (TypeError, KeyError, IndexError):
            raise LocalProtocolError(f"an ASGI message must be a dict with a 'type', got {message!r}") from None
        if kind == "email.accept":
            return self._answer(Outcome(ACCEPTED, accept_reply(message)))
        if kind == "email.reject":
            return self._answer(Outcome(REJECTED, reject_reply(message)))
        if kind == "email.send":
            message_id = message.get("id")
            if message_id is None:
                message_id = uuid.uuid4().hex
            elif not isinstance(message_id, str):
                raise LocalProtocolError("email.send id must be a string")
            return Send(message_id, message)
        raise LocalProtocolError(
            f"unexpected ASGI message {kind!r} in an email scope (expected email.accept, email.reject or email.send)"
        )

    def _answer(self, outcome: Outcome) -> Outcome | Late:
        current = self.outcome
        if current is not None:
            if current.kind == FAILED:
                return Late(outcome, current)
            raise LocalProtocolError(_ANSWERED)
        self.outcome = outcome
        return outcome

    def give_up(self, reason: str) -> Outcome | None:
        """The message can no longer be answered: it fails with ``reason``. Returns that failure,
        or None when it already had an outcome."""
        if self.outcome is not None:
            return None
        outcome = self.outcome = Outcome(FAILED, reason=reason)
        return outcome
