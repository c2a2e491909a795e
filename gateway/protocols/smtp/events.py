"""Events the SMTP core reports through :meth:`SMTPServer.events_received`.

Two kinds:

* **Decisions** (:class:`MailFrom`, :class:`RcptTo`, :class:`AuthCredentials`,
  :class:`MessageReceived`): the upper layer must answer each one with
  :meth:`SMTPServer.accept`, :meth:`~SMTPServer.reject`, :meth:`~SMTPServer.defer` or
  :meth:`~SMTPServer.answer`, passing the event object itself. At most one decision is pending at a
  time; the core processes nothing after it (pipelined input is buffered) until it is answered, so
  replies always leave in command order.
* **Duties for the adapter** (:class:`StartTLS`, :class:`CloseConnection`): things only the
  transport can do.

Events are frozen dataclasses; the core recognises a decision by identity (``is``), so two
``RcptTo`` events for the same address are still distinct.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

__all__ = [
    "Event",
    "Decision",
    "MailFrom",
    "RcptTo",
    "AuthCredentials",
    "MessageReceived",
    "Envelope",
    "StartTLS",
    "CloseConnection",
]


@dataclass(frozen=True, eq=False)
class Event:
    """Base class of every SMTP core event."""


@dataclass(frozen=True, eq=False)
class Decision(Event):
    """Base class of the events the upper layer must answer (exactly once, in the order given)."""


@dataclass(frozen=True, eq=False)
class MailFrom(Decision):
    """``MAIL FROM`` passed every syntax and limit check: may this sender start a transaction?

    Only reported when ``ServerConfig.check_sender`` is true (otherwise the core accepts at once).
    Accept gives ``250 2.1.0 Ok``; reject defaults to ``550 5.7.1``.

    Attributes:
        sender: the reverse-path mailbox as written; ``""`` for the null sender ``<>``.
        params: the MAIL parameters, keywords upper-cased (``{"SIZE": "2048", "SMTPUTF8": None}``).
    """

    sender: str
    params: Mapping[str, Optional[str]]


@dataclass(frozen=True, eq=False)
class RcptTo(Decision):
    """``RCPT TO`` passed every check: does anything accept mail for this recipient?

    The listener asks the router. Accept gives ``250 2.1.5 Ok``; reject defaults to
    ``550 5.1.1 <recipient>: Recipient address rejected``; defer (the route matched but its
    consumer is unavailable) defaults to ``451 4.3.0``.

    Attributes:
        recipient: the forward-path mailbox as written (source route dropped; may be
            ``"Postmaster"`` without a domain).
        sender: the transaction's sender, for convenience.
    """

    recipient: str
    sender: str


@dataclass(frozen=True, eq=False)
class AuthCredentials(Decision):
    """A complete AUTH PLAIN or LOGIN exchange: are these credentials valid?

    Accept gives ``235 2.7.0`` and makes ``username`` the session's authenticated user; reject
    defaults to ``535 5.7.8 Authentication credentials invalid``; defer (the user store is down)
    defaults to ``454 4.7.0``.

    Attributes:
        mechanism: ``"PLAIN"`` or ``"LOGIN"``.
        authzid: the PLAIN authorisation identity (``""`` when absent, and always for LOGIN).
        username: the authentication identity.
        password: the password (left out of ``repr``).
    """

    mechanism: str
    authzid: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, eq=False)
class Envelope:
    """The SMTP envelope of one message, as the client gave it.

    Attributes:
        sender: reverse-path mailbox, ``""`` for the null sender.
        recipients: the accepted recipients, in order (duplicates kept as sent).
        mail_params: the MAIL FROM parameters, keywords upper-cased.
        helo: the HELO/EHLO argument.
        esmtp: True after EHLO, False after HELO.
        tls: whether the session is encrypted (STARTTLS done or implicit TLS).
        auth_user: the authenticated username, or None.
        smtputf8: the SMTPUTF8 parameter was given (RFC 6531).
        body: ``"7BIT"``, ``"8BITMIME"`` (RFC 6152), or None when not declared.
        declared_size: the SIZE parameter (RFC 1870), or None.
    """

    sender: str
    recipients: tuple[str, ...]
    mail_params: Mapping[str, Optional[str]]
    helo: str
    esmtp: bool
    tls: bool
    auth_user: Optional[str]
    smtputf8: bool
    body: Optional[str]
    declared_size: Optional[int]


@dataclass(frozen=True, eq=False)
class MessageReceived(Decision):
    """The message data ended with CRLF.CRLF and passed the size, line and newline checks.

    ``data`` is the message after dot-unstuffing (RFC 5321 §4.5.2), every line ending in CRLF
    (unless ``bare_newlines="pass"``), without the terminating ``.``. Accept gives
    ``250 2.0.0 Ok: queued``: answer it only once the message is safe (the consumer
    acknowledged it).
    A consumer failure or timeout must :meth:`~SMTPServer.defer` (``451 4.3.0``) so the sending
    server retries; reject (``550 5.6.0`` by default) only for permanent refusals.
    """

    envelope: Envelope
    data: bytes = field(repr=False)


@dataclass(frozen=True, eq=False)
class StartTLS(Event):
    """The client issued STARTTLS and ``220 2.0.0 Ready to start TLS`` is in ``data_to_send()``.

    The adapter's duty: write ``data_to_send()``, start TLS on the transport, then call
    :meth:`SMTPServer.tls_started`. Bytes that followed the STARTTLS line in the same read, and any
    received before ``tls_started()``, were sent in plaintext and are discarded (RFC 3207 §4.2,
    the CVE-2011-0411 class of bug).
    """


@dataclass(frozen=True, eq=False)
class CloseConnection(Event):
    """The session is over: write ``data_to_send()`` (it may hold a final 221/421), then close.

    Attributes:
        reason: ``"quit"``, ``"timeout"``, ``"too many errors"``, ``"forbidden command"``,
            ``"pipelining overflow"``, ``"closed by the upper layer"`` (a 421 answer), ``"shutdown"``
            (after :meth:`SMTPServer.shutdown`) or
            ``"peer closed"`` (EOF; nothing is left to write).
    """

    reason: str
