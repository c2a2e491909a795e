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

from gateway.protocols.errors import LocalProtocolError
from gateway.protocols.smtp import replies
from gateway.protocols.smtp.commands import (
    AUTH as _AUTH,
    CLOSED as _CLOSED,
    COMMAND as _COMMAND,
    DATA as _DATA,
    HANDLERS as _HANDLERS,
    TLS_PENDING as _TLS_PENDING,
    Commands,
)
from gateway.protocols.smtp.config import MAIL_RCPT_ALLOWANCE, SASL_LINE_LIMIT, ServerConfig
from gateway.protocols.smtp.events import (
    AuthCredentials,
    Decision,
    Event,
    MailFrom,
    MessageReceived,
    RcptTo,
)
from gateway.protocols.smtp.replies import Reply, ReplyLike, coerce

__all__ = ["SMTPServer"]

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


class SMTPServer(Commands):
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
        self._sasl = None
        self._data = None
        self._errors = 0
        self._junk = 0
        self._idle_since: float | None = None
        self._shutdown: bytes | None = None  # the 421 to send once the session is at rest
        self._max_line = max(SASL_LINE_LIMIT, cfg.max_command_line + MAIL_RCPT_ALLOWANCE)
        self._reset_transaction()

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
            rep = coerce(reply)  # type: ignore[arg-type]
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

    # -- the processing loop -----------------------------------------------------------------------
    def _run(self) -> None:
        while self._pending is None:
            state = self._state
            if state == _DATA:
                reader = self._data
                rest = reader.feed(self._buf[self._pos :])  # type: ignore[union-attr]
                if rest is None:
                    self._buf = b""
                    self._pos = 0
                    return
                self._buf = rest
                self._pos = 0
                self._end_of_data(reader)  # type: ignore[arg-type]
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
