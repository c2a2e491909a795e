"""The sans-IO ESMTP server session (RFC 5321 with PIPELINING, SIZE, 8BITMIME, SMTPUTF8,
ENHANCEDSTATUSCODES, STARTTLS and AUTH PLAIN/LOGIN).

The wire-core contract shared by every protocol of the gateway, plus decisions::

    session = SMTPServer(config)           # the 220 greeting is already in data_to_send()
    session.receive_data(data)             # b"" means EOF
    session.events_received() -> list      # decisions to answer, duties for the adapter
    session.accept(event) / reject(event, reply) / defer(event, reply) / answer(event, reply)
    session.data_to_send() -> bytes
    session.next_deadline(now) / session.handle_timeout(now)
    session.tls_started()                  # after a StartTLS event

Errors from the peer never raise: SMTP answers each one in-band, in order, and the fatal ones
(too many errors, timeout, an HTTP request on the SMTP port) end with a 421/221 reply in
``data_to_send()`` and a :class:`CloseConnection` event. Only misuse of this API by our side raises
:class:`~gateway.protocols.errors.LocalProtocolError`.

Safety properties (each has tests in ``tests/unit/smtp``):

* Strict ordering: while a decision is pending nothing else is parsed; pipelined input is buffered
  (bounded by ``ServerConfig.pipeline_limit``), so replies leave in command order and a message body
  can never run as commands because a RCPT answer came late.
* STARTTLS: input buffered behind the STARTTLS line, and anything received before
  :meth:`tls_started`, is discarded; after TLS the session is reset (RFC 3207 §4.2).
* DATA: see :mod:`gateway.protocols.smtp.data`; only CRLF.CRLF ends it, limits never end it early.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.smtp import replies
from gateway.protocols.smtp.address import AddressError, ParamError, parse_params, parse_path
from gateway.protocols.smtp.auth import SaslExchange
from gateway.protocols.smtp.data import DataReader
from gateway.protocols.smtp.events import (
    AuthCredentials,
    CloseConnection,
    Decision,
    Envelope,
    Event,
    MailFrom,
    MessageReceived,
    RcptTo,
    StartTLS,
)
from gateway.protocols.smtp.replies import Reply, ReplyLike, coerce

__all__ = ["SMTPServer", "ServerConfig", "MECHANISMS", "SASL_LINE_LIMIT", "MAIL_RCPT_ALLOWANCE"]

MECHANISMS = ("PLAIN", "LOGIN")
# RFC 4954 §4: servers must accept SASL responses of at least 12288 octets (incl. CRLF); an AUTH
# command with a large initial response gets the same room (Postfix: smtpd_sasl_response_limit).
SASL_LINE_LIMIT = 12288
# RFC 1870 §3 (+26 for SIZE=), RFC 4954 §5 (+500 for AUTH=), RFC 6152 (BODY=) and RFC 6531 §3.4
# (SMTPUTF8, longer UTF-8 addresses) all lengthen MAIL and RCPT lines beyond RFC 5321's 512.
MAIL_RCPT_ALLOWANCE = 512
_HOSTNAME = re.compile(r"[\x21-\x7e]+\Z")


@dataclass(frozen=True)
class ServerConfig:
    """Settings of an SMTP listener. Every field has a default; override by keyword.

    Limits (defaults follow Postfix 3.7 ``postconf -d``):
        max_message_size: octets after dot-unstuffing (``message_size_limit`` 10240000); advertised
            as ``SIZE n``; a larger declared ``SIZE=`` gets ``552 5.3.4`` at MAIL, a larger message
            gets the same reply after its final dot.
        max_recipients: accepted RCPTs per message (``smtpd_recipient_limit`` 1000); beyond it
            ``452 4.5.3``.
        max_command_line: octets per command line including CRLF (RFC 5321 §4.5.3.1.4: 512). MAIL
            and RCPT get ``MAIL_RCPT_ALLOWANCE`` more, AUTH lines ``SASL_LINE_LIMIT``.
        max_data_line: octets per message line on the wire including CRLF (RFC 5321 §4.5.3.1.6:
            1000), or None for no limit. A longer line rejects the message (``500 5.5.2``) after the
            real end of data; the session never leaves DATA early.
        max_errors: error replies (4xx/5xx) per session before ``421 4.7.0`` and disconnect
            (``smtpd_hard_error_limit`` 20). The count restarts after each accepted message.
        max_junk_commands: NOOP, RSET, VRFY, HELP, HELO and EHLO per session (counted again
            from zero after each accepted message) before each further one also counts as an error
            (``smtpd_junk_command_limit`` 100).
        timeout: seconds the client may stay silent (``smtpd_timeout`` 300): see
            :meth:`SMTPServer.next_deadline`; then ``421 4.4.2`` and close.

    Policy:
        hostname: our name in the greeting, EHLO reply and 421 replies.
        greeting: text after the hostname in the 220 greeting.
        tls_available: the adapter can do STARTTLS (a TLS context is configured).
        auth_mechanisms: SASL mechanisms offered, a subset of ``("PLAIN", "LOGIN")``; empty
            disables AUTH (502).
        auth_require_tls: offer and allow AUTH only over TLS (otherwise ``538 5.7.11``).
        auth_required: MAIL needs a successful AUTH first (``530 5.7.0``); for submission ports.
        require_tls: every command but EHLO, HELO, STARTTLS, NOOP, RSET and QUIT needs TLS first
            (``530 5.7.0 Must issue a STARTTLS command first``).
        smtputf8: advertise and accept SMTPUTF8 (RFC 6531).
        check_sender: report :class:`MailFrom` decisions; when False, MAIL is accepted at once.
        bare_newlines: ``"reject"`` (default) refuses, after the final dot, a message holding a CR
            or LF that is not part of a CRLF (``550 5.6.0``, RFC 5321 §2.3.8), so consumers only
            ever see CRLF line endings; ``"pass"`` delivers such bytes unchanged. Either way only
            CRLF.CRLF ends the data.

    Raises:
        ValueError: a limit out of range or contradictory settings (for instance ``require_tls``
            without ``tls_available``).
    """

    hostname: str = "localhost"
    greeting: str = "ESMTP"
    max_message_size: int = 10_240_000
    max_recipients: int = 1000
    max_command_line: int = 512
    max_data_line: int | None = 1000
    max_errors: int = 20
    max_junk_commands: int = 100
    timeout: float = 300.0
    tls_available: bool = False
    auth_mechanisms: tuple[str, ...] = MECHANISMS
    auth_require_tls: bool = True
    auth_required: bool = False
    require_tls: bool = False
    smtputf8: bool = True
    check_sender: bool = True
    bare_newlines: str = "reject"

    def __post_init__(self) -> None:
        if not isinstance(self.hostname, str) or not _HOSTNAME.match(self.hostname):
            raise ValueError(f"hostname must be printable ASCII without spaces: {self.hostname!r}")
        for name, minimum in (
            ("max_message_size", 1),
            ("max_recipients", 1),
            ("max_command_line", 64),
            ("max_errors", 1),
            ("max_junk_commands", 0),
        ):
            value = getattr(self, name)
            if type(value) is not int or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, not {value!r}")
        if self.max_data_line is not None and (
            type(self.max_data_line) is not int or self.max_data_line < 3
        ):
            raise ValueError(
                f"max_data_line must be None or an integer >= 3: {self.max_data_line!r}"
            )
        if not isinstance(self.timeout, (int, float)) or not self.timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds: {self.timeout!r}")
        mechanisms = tuple(m.upper() for m in self.auth_mechanisms)
        unknown = [m for m in mechanisms if m not in MECHANISMS]
        if unknown:
            raise ValueError(f"unsupported AUTH mechanisms {unknown}; choose from {MECHANISMS}")
        object.__setattr__(self, "auth_mechanisms", mechanisms)
        if self.bare_newlines not in ("reject", "pass"):
            raise ValueError(f"bare_newlines must be 'reject' or 'pass': {self.bare_newlines!r}")
        if self.require_tls and not self.tls_available:
            raise ValueError("require_tls needs tls_available")
        if self.auth_required and not self.auth_mechanisms:
            raise ValueError("auth_required needs at least one AUTH mechanism")
        if self.auth_required and self.auth_require_tls and not self.tls_available:
            raise ValueError("auth_required with auth_require_tls needs tls_available")

    # -- rendered once per listener --------------------------------------------------------------
    @cached_property
    def greeting_reply(self) -> bytes:
        """The 220 greeting (RFC 5321 §4.3.1; no enhanced code, RFC 2034 §3)."""
        return Reply(220, None, f"{self.hostname} {self.greeting}".strip()).to_bytes()

    @cached_property
    def helo_reply(self) -> bytes:
        return Reply(250, None, self.hostname).to_bytes()

    def ehlo_reply(self, tls_active: bool) -> bytes:
        """The multi-line EHLO reply for a session with or without TLS (RFC 5321 §4.1.1.1)."""
        return self._ehlo_replies[bool(tls_active)]

    @cached_property
    def _ehlo_replies(self) -> tuple[bytes, bytes]:
        out = []
        for tls in (False, True):
            lines = [self.hostname, "PIPELINING", f"SIZE {self.max_message_size}", "8BITMIME"]
            if self.smtputf8:
                lines.append("SMTPUTF8")
            lines.append("ENHANCEDSTATUSCODES")
            if self.tls_available and not tls:
                lines.append("STARTTLS")  # RFC 3207 §4.2: not after the handshake
            if self.auth_mechanisms and (tls or not self.auth_require_tls):
                lines.append("AUTH " + " ".join(self.auth_mechanisms))
            out.append(Reply(250, None, tuple(lines)).to_bytes())
        return out[0], out[1]

    @cached_property
    def timeout_reply(self) -> bytes:
        return Reply(421, "4.4.2", f"{self.hostname} Error: timeout exceeded").to_bytes()

    @cached_property
    def shutdown_reply(self) -> bytes:
        return Reply(421, "4.3.2", f"{self.hostname} Service shutting down").to_bytes()

    @cached_property
    def too_many_errors_reply(self) -> bytes:
        return Reply(421, "4.7.0", f"{self.hostname} Error: too many errors").to_bytes()

    @cached_property
    def overflow_reply(self) -> bytes:
        return Reply(421, "4.7.0", f"{self.hostname} Error: too much pipelined input").to_bytes()

    @cached_property
    def forbidden_reply(self) -> bytes:
        # Postfix's smtpd_forbidden_commands answer to HTTP requests sent to an SMTP port.
        return Reply(221, "2.7.0", "Error: I can break rules, too. Goodbye.").to_bytes()

    @cached_property
    def pipeline_limit(self) -> int:
        """Octets of unprocessed input buffered while a decision is pending before giving up.

        RFC 2920 §3.1: DATA ends a pipelined group, so one group is at most a MAIL, the
        recipients and DATA (plus a few small commands); twice that is plenty.
        """
        line = self.max_command_line + MAIL_RCPT_ALLOWANCE
        return 2 * (self.max_recipients + 8) * line + 2 * SASL_LINE_LIMIT


# Session states.
_COMMAND, _AUTH, _DATA, _TLS_PENDING, _CLOSED = range(5)

_DEFAULT_CONFIG = ServerConfig()
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
# Recognised RFC 5321 commands we do not implement (§4.2.4: 502, not 500).
_NOT_IMPLEMENTED = frozenset({b"EXPN", b"TURN", b"ETRN", b"BDAT", b"SEND", b"SOML", b"SAML"})
# An HTTP request on an SMTP port (cross-protocol attacks): Postfix's smtpd_forbidden_commands.
_FORBIDDEN = frozenset({b"GET", b"POST", b"PUT", b"HEAD", b"CONNECT", b"OPTIONS", b"DELETE"})
_JUNK = frozenset({b"NOOP", b"RSET", b"VRFY", b"HELP", b"HELO", b"EHLO"})
_BEFORE_TLS = frozenset({b"EHLO", b"HELO", b"STARTTLS", b"NOOP", b"RSET", b"QUIT"})

# Default answers to decisions: (accept, reject, defer).
_DEFAULTS: dict[type, tuple[Reply, Reply, Reply]] = {
    MailFrom: (
        Reply(250, "2.1.0", "Ok"),
        Reply(550, "5.7.1", "Sender address rejected"),
        Reply(451, "4.3.0", "Temporary failure, please try again later"),
    ),
    RcptTo: (
        Reply(250, "2.1.5", "Ok"),
        Reply(550, "5.1.1", "Recipient address rejected"),
        Reply(451, "4.3.0", "Temporary failure, please try again later"),
    ),
    AuthCredentials: (
        Reply(235, "2.7.0", "Authentication successful"),
        Reply(535, "5.7.8", "Authentication credentials invalid"),
        Reply(454, "4.7.0", "Temporary authentication failure"),
    ),
    MessageReceived: (
        Reply(250, "2.0.0", "Ok: queued"),
        Reply(550, "5.6.0", "Message rejected"),
        Reply(451, "4.3.0", "Temporary failure, please try again later"),
    ),
}
_DEFAULT_BYTES = {
    cls: tuple((r.code, r.to_bytes()) for r in answers) for cls, answers in _DEFAULTS.items()
}
# The success codes each decision may be answered with.
_ACCEPT_CODES = {
    MailFrom: (250,),
    RcptTo: (250, 251),
    AuthCredentials: (235,),
    MessageReceived: (250,),
}


class SMTPServer:
    """One ESMTP server session, sans-IO.

    Args:
        config: the listener's settings (limits and policy); the defaults when None.
        tls_active: the connection is already encrypted (implicit TLS, port 465).

    After construction ``data_to_send()`` holds the 220 greeting: write it, then feed every read
    to :meth:`receive_data`. After each call that can make progress (``receive_data``, an answer,
    ``tls_started``, ``handle_timeout``), the caller's duty is the same flush: handle
    :meth:`events_received`, write :meth:`data_to_send`, and re-arm the timer from
    :meth:`next_deadline`.
    """

    def __init__(self, config: ServerConfig | None = None, *, tls_active: bool = False) -> None:
        self.config = cfg = config if config is not None else _DEFAULT_CONFIG
        self._out: list[bytes] = [cfg.greeting_reply]
        self._events: list[Event] = []
        self._buf = b""
        self._pos = 0
        self._parked: list[bytes] = []  # input that arrived while a decision was pending
        self._parked_size = 0
        self._state = _COMMAND
        self._pending: Decision | None = None
        self._discarding = False  # dropping the rest of an over-long line
        self._tls = tls_active
        self._helo: str | None = None
        self._esmtp = False
        self._auth_user: str | None = None
        self._sasl: SaslExchange | None = None
        self._data: DataReader | None = None
        self._errors = 0
        self._junk = 0
        self._idle_since: float | None = None
        self._shutdown: bytes | None = None  # the 421 to send once the session is at rest
        self._max_line = max(SASL_LINE_LIMIT, cfg.max_command_line + MAIL_RCPT_ALLOWANCE)
        # The transaction (MAIL, RCPT...): see _reset_transaction.
        self._sender: str | None = None
        self._params: dict[str, str | None] = {}
        self._recipients: list[str] = []
        self._rcpt_tried = False

    # -- public state ------------------------------------------------------------------------------
    @property
    def pending(self) -> Decision | None:
        """The decision waiting for an answer, or None. While set, the adapter may pause reading."""
        return self._pending

    @property
    def closed(self) -> bool:
        """True once the session is over (QUIT, 421, EOF); further input is ignored."""
        return self._state == _CLOSED

    @property
    def tls_active(self) -> bool:
        """True over implicit TLS and after :meth:`tls_started`."""
        return self._tls

    @property
    def helo_name(self) -> str | None:
        """The HELO/EHLO argument, None before it (and again after STARTTLS)."""
        return self._helo

    @property
    def auth_user(self) -> str | None:
        """The authenticated username, or None."""
        return self._auth_user

    # -- the sans-IO contract ----------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the client; ``b""`` means the client closed (EOF).

        Then call :meth:`events_received` and :meth:`data_to_send`. Input after the session closed
        is ignored. Never raises for anything the peer sends.
        """
        state = self._state
        if state == _CLOSED:
            return
        if not data:
            self._close("peer closed", None)
            return
        self._idle_since = None
        if state == _TLS_PENDING:
            return  # plaintext after STARTTLS: never executed (RFC 3207 §4.2, CVE-2011-0411)
        if self._pending is not None:
            # Parked, not concatenated: many small reads while we wait stay linear.
            self._parked.append(data)
            self._parked_size += len(data)
            if self._parked_size + len(self._buf) - self._pos > self.config.pipeline_limit:
                self._close("pipelining overflow", self.config.overflow_reply)
            return
        if self._pos >= len(self._buf):
            self._buf = data
        else:
            self._buf = self._buf[self._pos :] + data
        self._pos = 0
        self._run()

    def events_received(self) -> list[Event]:
        """Return (and forget) the events produced since the last call, in order."""
        events = self._events
        self._events = []
        return events

    def data_to_send(self) -> bytes:
        """Return (and forget) the bytes to write to the client."""
        out = b"".join(self._out)
        self._out = []
        return out

    def next_deadline(self, now: float) -> float | None:
        """When the client's silence becomes a timeout, or None (no timer needed).

        Call after every flush with the current time: the idle period starts at the first call
        after input arrived or a reply was produced. None while a decision is pending (the upper
        layer must bound its own work and :meth:`defer` on timeout) and once closed. When the
        timer fires, call :meth:`handle_timeout`.
        """
        if self._pending is not None or self._state == _CLOSED:
            return None
        if self._idle_since is None:
            self._idle_since = now
        return self._idle_since + self.config.timeout

    def handle_timeout(self, now: float) -> bool:
        """Check the deadline at ``now``: past it, queue ``421 4.4.2`` and close.

        Returns True when the session timed out (then flush: a :class:`CloseConnection` event is
        queued). Calling it early, or after new activity, does nothing and returns False.
        """
        deadline = self.next_deadline(now)
        if deadline is None or now < deadline:
            return False
        self._close("timeout", self.config.timeout_reply)
        return True

    def tls_started(self) -> None:
        """Tell the core the transport is now encrypted, after a :class:`StartTLS` event.

        Call it right after switching the transport to TLS, before any byte read through TLS is
        passed to :meth:`receive_data`. The session returns to its initial state (RFC 3207 §4.2:
        HELO, transaction and AUTH are forgotten; no new greeting is sent); the client starts over
        with EHLO.

        Raises:
            LocalProtocolError: no STARTTLS is in progress.
        """
        if self._state != _TLS_PENDING:
            if self._state == _CLOSED:
                return
            raise LocalProtocolError("tls_started() without a pending STARTTLS")
        self._tls = True
        self._helo = None
        self._esmtp = False
        self._auth_user = None
        self._reset_transaction()
        self._buf = b""
        self._pos = 0
        self._state = _COMMAND
        self._idle_since = None

    def shutdown(self, reply: ReplyLike | None = None) -> None:
        """End the session because the server is stopping (RFC 5321 §3.8), losing nothing.

        At rest (no decision pending, not inside DATA) the ``421 4.3.2`` reply (or ``reply``) and a
        :class:`CloseConnection` event are queued at once; the client reads the 421 after its next
        command. A message whose data is arriving is received to its end and answered first, and a
        pending decision is answered first; the 421 follows that answer. Then flush.
        """
        if self._state == _CLOSED:
            return
        self._shutdown = coerce(reply).to_bytes() if reply is not None else self.config.shutdown_reply
        if self._pending is None and self._state != _DATA:
            self._close("shutdown", self._shutdown)

    # -- answering decisions -----------------------------------------------------------------------
    def accept(self, event: Decision, reply: ReplyLike | None = None) -> None:
        """Accept a pending decision, with the event's default 2xx reply or ``reply``.

        Then flush (events, data, deadline): answering resumes processing of buffered input, which
        may produce the next events.
        """
        self._answer(event, reply, 0)

    def reject(self, event: Decision, reply: ReplyLike | None = None) -> None:
        """Refuse a pending decision, by default permanently (5xx); ``reply`` may be 4xx or 5xx."""
        self._answer(event, reply, 1)

    def defer(self, event: Decision, reply: ReplyLike | None = None) -> None:
        """Refuse a pending decision temporarily (``451 4.3.0`` by default); the client retries.

        This is the answer to a consumer exception or timeout, so the sender keeps the message.
        """
        self._answer(event, reply, 2)

    def answer(self, event: Decision, reply: ReplyLike) -> None:
        """Answer a pending decision with any allowed reply: 2xx accepts, 4xx/5xx refuse.

        A 421 answer also ends the session after the reply (for instance while shutting down).
        """
        self._answer(event, coerce(reply), None)

    def _answer(self, event: Decision, reply: ReplyLike | None, kind: int | None) -> None:
        if self._state == _CLOSED:
            return  # the session ended (EOF, timeout) while the upper layer was deciding
        if event is not self._pending:
            raise LocalProtocolError(
                f"{type(event).__name__} is not the pending decision (answered twice, or "
                "not from this session)"
            )
        if reply is None and kind is not None:
            if isinstance(event, RcptTo) and kind == 1:
                out = Reply(
                    550, "5.1.1", f"<{event.recipient}>: Recipient address rejected"
                ).to_bytes()
                code = 550
            else:
                code, out = _DEFAULT_BYTES[type(event)][kind]
        else:
            rep = coerce(reply if reply is not None else "")  # a None reply always has a kind
            code = rep.code
            if code < 400 and code not in _ACCEPT_CODES[type(event)]:
                raise LocalProtocolError(
                    f"{code} is not a valid success reply to {type(event).__name__}"
                )
            if (
                (kind == 0 and code >= 400)
                or (kind == 1 and code < 400)
                or (kind == 2 and not 400 <= code < 500)
            ):
                raise LocalProtocolError(f"reply {code} does not fit this kind of answer")
            out = rep.to_bytes()
        ok = code < 400
        self._pending = None
        self._idle_since = None
        if isinstance(event, MailFrom):
            if ok:
                self._sender = event.sender
                self._params = dict(event.params)
        elif isinstance(event, RcptTo):
            if ok:
                self._recipients.append(event.recipient)
        elif isinstance(event, AuthCredentials):
            if ok:
                self._auth_user = event.username
        else:  # MessageReceived: the transaction ends whatever the answer (RFC 5321 §4.1.1.4)
            self._reset_transaction()
            if ok:
                self._errors = 0
                self._junk = 0
        if code == 421:
            self._close("closed by the upper layer", out)
            return
        if ok:
            self._out.append(out)
        else:
            self._fail(out)
        if self._shutdown is not None and self._state != _CLOSED:
            self._close("shutdown", self._shutdown)
            return
        if self._parked:
            self._buf = b"".join([self._buf[self._pos :], *self._parked])
            self._pos = 0
            self._parked = []
            self._parked_size = 0
        self._run()

    # -- helpers -----------------------------------------------------------------------------------
    def _fail(self, reply: bytes) -> None:
        """Queue an error reply; the error limit may end the session (RFC 5321 §4.3.2, 421)."""
        self._out.append(reply)
        self._errors += 1
        if self._errors >= self.config.max_errors:
            self._close("too many errors", self.config.too_many_errors_reply)

    def _close(self, reason: str, reply: bytes | None) -> None:
        if self._state == _CLOSED:
            return
        if reply is not None:
            self._out.append(reply)
        self._state = _CLOSED
        self._pending = None
        self._buf = b""
        self._pos = 0
        self._parked = []
        self._data = None
        self._sasl = None
        self._events.append(CloseConnection(reason))

    def _decide(self, event: Decision) -> None:
        self._pending = event
        self._events.append(event)

    def _reset_transaction(self) -> None:
        self._sender = None
        self._params = {}
        self._recipients = []
        self._rcpt_tried = False

    def _end_of_data(self, reader: DataReader) -> None:
        self._data = None
        self._state = _COMMAND
        if reader.error is not None:
            self._reset_transaction()
            self._fail(reader.error)
            return
        params = self._params
        size = params.get("SIZE")
        body = params.get("BODY")
        envelope = Envelope(
            sender=self._sender or "",
            recipients=tuple(self._recipients),
            mail_params=params,
            helo=self._helo or "",
            esmtp=self._esmtp,
            tls=self._tls,
            auth_user=self._auth_user,
            smtputf8="SMTPUTF8" in params,
            body=body.upper() if body else None,
            declared_size=int(size) if size else None,
        )
        self._decide(MessageReceived(envelope, reader.message or b""))

    # -- commands (RFC 5321 §4.1.1) ----------------------------------------------------------------
    def _cmd_helo(self, arg: str, esmtp: bool = False) -> None:
        name = arg.strip(" ")
        if not name:
            self._fail(replies.SYNTAX_HELO)
            return
        # §4.1.4: a later EHLO/HELO resets the session exactly as RSET does (_AUTH is kept).
        self._reset_transaction()
        self._helo = name
        self._esmtp = esmtp
        self._out.append(self.config.ehlo_reply(self._tls) if esmtp else self.config.helo_reply)

    def _cmd_ehlo(self, arg: str) -> None:
        self._cmd_helo(arg, True)

    def _cmd_mail(self, arg: str) -> None:
        cfg = self.config
        if self._helo is None:
            self._fail(replies.SEND_HELO)
        elif self._sender is not None:
            self._fail(replies.NESTED_MAIL)
        elif cfg.auth_required and self._auth_user is None:
            self._fail(replies.AUTH_REQUIRED)
        elif arg[:5].upper() != "FROM:":
            self._fail(replies.SYNTAX_MAIL)
        else:
            try:
                # Postfix-like leniency: spaces after the colon ("MAIL FROM: <a@b>") are allowed.
                sender, rest = parse_path(arg[5:].lstrip(" "), null_ok=True)
            except AddressError:
                self._fail(replies.BAD_SENDER)
                return
            if rest and rest[0] != " ":
                self._fail(replies.BAD_SENDER)
                return
            params = self._mail_params(rest)
            if params is None:
                return
            if not sender.isascii() and "SMTPUTF8" not in params:
                self._fail(replies.NON_ASCII_ADDRESS)  # RFC 6531 §3.4
            elif cfg.check_sender:
                self._decide(MailFrom(sender, params))
            else:
                self._sender = sender
                self._params = params
                self._out.append(replies.MAIL_OK)

    def _mail_params(self, text: str) -> dict[str, str | None] | None:
        """Check the MAIL parameters; queue the error reply and return None when one is bad."""
        if not text.strip(" "):
            return {}
        if not self._esmtp:
            self._fail(replies.PARAMS_NEED_EHLO)  # RFC 5321 §4.1.1.11 / RFC 1869: EHLO only
            return None
        try:
            params = parse_params(text)
        except ParamError:
            self._fail(replies.SYNTAX_MAIL)
            return None
        for key, value in params.items():
            if key == "SIZE":  # RFC 1870 §6
                if value is None or not value.isdigit() or not value.isascii() or len(value) > 20:
                    self._fail(_bad_param(key))
                    return None
                if int(value) > self.config.max_message_size:
                    self._fail(replies.TOO_BIG)
                    return None
            elif key == "BODY":  # RFC 6152 §3
                if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                    self._fail(_bad_param(key))
                    return None
            elif key == "SMTPUTF8" and self.config.smtputf8:  # RFC 6531 §3.4
                if value is not None:
                    self._fail(_bad_param(key))
                    return None
            elif key == "_AUTH" and self.config.auth_mechanisms:  # RFC 4954 §5, accepted as given
                if value is None:
                    self._fail(_bad_param(key))
                    return None
            else:
                self._fail(Reply(555, "5.5.4", f"Error: unsupported parameter {key}").to_bytes())
                return None
        return params

    def _cmd_rcpt(self, arg: str) -> None:
        if self._sender is None:
            self._fail(replies.NEED_MAIL)
            return
        if arg[:3].upper() != "TO:":
            self._fail(replies.SYNTAX_RCPT)
            return
        try:
            recipient, rest = parse_path(arg[3:].lstrip(" "), postmaster_ok=True)
        except AddressError:
            self._fail(replies.BAD_RECIPIENT)
            return
        if rest.strip(" "):
            if rest[0] != " ":
                self._fail(replies.BAD_RECIPIENT)
            else:
                self._fail(replies.RCPT_PARAMS)  # no DSN (RFC 3461) parameters are supported
        elif not recipient.isascii() and "SMTPUTF8" not in self._params:
            self._fail(replies.NON_ASCII_ADDRESS)
        elif len(self._recipients) >= self.config.max_recipients:
            self._fail(replies.TOO_MANY_RCPT)
        else:
            self._rcpt_tried = True
            self._decide(RcptTo(recipient, self._sender))

    def _cmd_data(self, arg: str) -> None:
        if arg:
            self._fail(replies.SYNTAX_NOARGS)
        elif self._sender is None:
            self._fail(replies.NEED_MAIL)
        elif not self._recipients:
            # RFC 2920 §3.1: after pipelined RCPTs that were all refused, 554 (no valid recipients).
            self._fail(replies.NO_VALID_RCPT if self._rcpt_tried else replies.NEED_RCPT)
        else:
            cfg = self.config
            self._out.append(replies.DATA_GO)
            self._data = DataReader(
                cfg.max_message_size, cfg.max_data_line, cfg.bare_newlines == "reject"
            )
            self._state = _DATA

    def _cmd_rset(self, arg: str) -> None:
        if arg:
            self._fail(replies.SYNTAX_NOARGS)
        else:
            self._reset_transaction()
            self._out.append(replies.OK)

    def _cmd_noop(self, arg: str) -> None:
        self._out.append(replies.OK)  # RFC 5321 §4.1.1.9: any argument is ignored

    def _cmd_quit(self, arg: str) -> None:
        self._close("quit", replies.BYE)

    def _cmd_vrfy(self, arg: str) -> None:
        if not arg.strip(" "):
            self._fail(replies.SYNTAX_VRFY)
        else:
            self._out.append(replies.VRFY_CANNOT)  # RFC 5321 §3.5.3

    def _cmd_help(self, arg: str) -> None:
        self._out.append(replies.HELP)

    def _cmd_starttls(self, arg: str) -> None:
        if arg:
            self._fail(replies.SYNTAX_NOARGS)
        elif not self.config.tls_available:
            self._fail(replies.NOT_IMPLEMENTED)
        elif self._tls:
            self._fail(replies.TLS_ACTIVE)
        elif self._sender is not None:
            self._fail(replies.IN_TRANSACTION)
        else:
            self._out.append(replies.TLS_GO)
            # RFC 3207 §4.2 / CVE-2011-0411: whatever the client pipelined behind STARTTLS was
            # sent in plaintext and must never be executed inside the TLS session.
            self._buf = b""
            self._pos = 0
            self._state = _TLS_PENDING
            self._events.append(StartTLS())

    def _cmd_auth(self, arg: str) -> None:
        cfg = self.config
        if not cfg.auth_mechanisms:
            self._fail(replies.NOT_IMPLEMENTED)
        elif not self._esmtp:
            self._fail(replies.SEND_EHLO)
        elif self._auth_user is not None:
            self._fail(replies.ALREADY_AUTH)  # RFC 4954 §4
        elif self._sender is not None:
            self._fail(replies.IN_TRANSACTION)
        elif cfg.auth_require_tls and not self._tls:
            self._fail(replies.AUTH_NEEDS_TLS)  # RFC 4954 §6: 538 5.7.11
        else:
            parts = arg.split(" ")
            if not parts[0] or len(parts) > 2:
                self._fail(replies.SYNTAX_AUTH)
                return
            mechanism = parts[0].upper()
            if mechanism not in cfg.auth_mechanisms:
                self._fail(replies.AUTH_UNKNOWN_MECH)
                return
            exchange = SaslExchange(mechanism)
            self._sasl_step(exchange, exchange.start(parts[1] if len(parts) == 2 else None))

    def _sasl_line(self, line: bytes) -> None:
        exchange = self._sasl
        self._sasl = None
        self._state = _COMMAND
        if exchange is None:  # pragma: no cover - the AUTH state always has an exchange
            return
        if len(line) + 2 > SASL_LINE_LIMIT:
            self._fail(replies.AUTH_LINE_TOO_LONG)  # RFC 4954 §4: 500 5.5.6, the exchange fails
            return
        self._sasl_step(exchange, exchange.respond(line))

    def _sasl_step(self, exchange: SaslExchange, outcome: bytes | AuthCredentials) -> None:
        if isinstance(outcome, AuthCredentials):
            self._decide(outcome)
        elif outcome.startswith(b"334"):
            self._out.append(outcome)
            self._sasl = exchange
            self._state = _AUTH
        else:
            self._fail(outcome)

    # -- the processing loop -----------------------------------------------------------------------
    def _run(self) -> None:
        while self._pending is None:
            state = self._state
            if state == _DATA:
                reader = self._data
                if reader is None:  # pragma: no cover - the DATA state always has a reader
                    return
                rest = reader.feed(self._buf[self._pos :])
                if rest is None:
                    self._buf = b""
                    self._pos = 0
                    return
                self._buf = rest
                self._pos = 0
                self._end_of_data(reader)
                continue
            if state != _COMMAND and state != _AUTH:
                return
            buf = self._buf
            pos = self._pos
            end = buf.find(b"\r\n", pos)
            if end < 0:
                limit = SASL_LINE_LIMIT if state == _AUTH else self._max_line
                if len(buf) - pos > limit:
                    # Drop what we have, keeping a CR that may pair with the next read's LF.
                    self._buf = b"\r" if buf.endswith(b"\r") else b""
                    self._pos = 0
                    self._discarding = True
                return
            line = buf[pos:end]
            self._pos = end + 2
            if self._discarding:
                self._discarding = False
                if state == _AUTH:
                    self._sasl = None
                    self._state = _COMMAND
                    self._fail(replies.AUTH_LINE_TOO_LONG)
                else:
                    self._fail(replies.LINE_TOO_LONG)
            elif state == _AUTH:
                self._sasl_line(line)
            else:
                self._command(line)

    def _command(self, line: bytes) -> None:
        sp = line.find(b" ")
        verb = (line if sp < 0 else line[:sp]).upper()
        handler = _HANDLERS.get(verb)
        if verb == b"MAIL" or verb == b"RCPT":
            limit = self.config.max_command_line + MAIL_RCPT_ALLOWANCE
        elif verb == b"AUTH":
            limit = SASL_LINE_LIMIT
        else:
            limit = self.config.max_command_line
        if len(line) + 2 > limit:
            self._fail(replies.LINE_TOO_LONG)
            return
        if handler is None:
            if verb in _FORBIDDEN:
                self._close("forbidden command", self.config.forbidden_reply)
            elif verb in _NOT_IMPLEMENTED:
                self._fail(replies.NOT_IMPLEMENTED)
            else:
                self._fail(replies.UNRECOGNIZED)
            return
        if _CONTROL.search(line) is not None:
            self._fail(replies.BAD_CHARACTER)
            return
        try:
            arg = "" if sp < 0 else line[sp + 1 :].decode("utf-8")
        except UnicodeDecodeError:
            self._fail(replies.BAD_UTF8)
            return
        if verb in _JUNK:
            self._junk += 1
            if self._junk > self.config.max_junk_commands:
                self._errors += 1  # answered normally, but it counts (smtpd_junk_command_limit)
        if self.config.require_tls and not self._tls and verb not in _BEFORE_TLS:
            self._fail(replies.TLS_REQUIRED)
            return
        handler(self, arg)
        if self._errors >= self.config.max_errors and self._state != _CLOSED:
            self._close("too many errors", self.config.too_many_errors_reply)

def _bad_param(key: str) -> bytes:
    return Reply(501, "5.5.4", f"Error: bad {key} parameter").to_bytes()


_HANDLERS: dict[bytes, Callable[[SMTPServer, str], None]] = {
    b"HELO": SMTPServer._cmd_helo,
    b"EHLO": SMTPServer._cmd_ehlo,
    b"MAIL": SMTPServer._cmd_mail,
    b"RCPT": SMTPServer._cmd_rcpt,
    b"DATA": SMTPServer._cmd_data,
    b"RSET": SMTPServer._cmd_rset,
    b"NOOP": SMTPServer._cmd_noop,
    b"QUIT": SMTPServer._cmd_quit,
    b"VRFY": SMTPServer._cmd_vrfy,
    b"HELP": SMTPServer._cmd_help,
    b"STARTTLS": SMTPServer._cmd_starttls,
    b"AUTH": SMTPServer._cmd_auth,
}
