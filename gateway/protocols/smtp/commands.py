"""The SMTP commands (RFC 5321 §4.1.1 and the extensions), as a base class of
:class:`~gateway.protocols.smtp.core.SMTPServer`.

Kept apart from the session loop in ``core.py`` so each module stays small. Every handler gets the
command's argument (decoded UTF-8, after the verb and one space) and either queues a reply,
reports a decision (``_decide``) or changes the session state.
"""

from __future__ import annotations

from gateway.protocols.smtp import replies
from gateway.protocols.smtp.address import AddressError, ParamError, parse_params, parse_path
from gateway.protocols.smtp.auth import SaslExchange
from gateway.protocols.smtp.config import SASL_LINE_LIMIT, ServerConfig
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
from gateway.protocols.smtp.replies import Reply

__all__ = ["Commands", "HANDLERS", "COMMAND", "AUTH", "DATA", "TLS_PENDING", "CLOSED"]

# Session states.
COMMAND, AUTH, DATA, TLS_PENDING, CLOSED = range(5)


class Commands:
    """Command handlers and the session state they share with the loop in ``SMTPServer``."""

    config: ServerConfig
    _out: list[bytes]
    _events: list[Event]
    _buf: bytes
    _pos: int
    _parked: list[bytes]
    _state: int
    _pending: Decision | None
    _tls: bool
    _helo: str | None
    _esmtp: bool
    _auth_user: str | None
    _sasl: SaslExchange | None
    _data: DataReader | None
    _errors: int
    _sender: str | None
    _params: dict[str, str | None]
    _recipients: list[str]
    _rcpt_tried: bool

    # -- helpers -----------------------------------------------------------------------------------
    def _fail(self, reply: bytes) -> None:
        """Queue an error reply; the error limit may end the session (RFC 5321 §4.3.2, 421)."""
        self._out.append(reply)
        self._errors += 1
        if self._errors >= self.config.max_errors:
            self._close("too many errors", self.config.too_many_errors_reply)

    def _close(self, reason: str, reply: bytes | None) -> None:
        if self._state == CLOSED:
            return
        if reply is not None:
            self._out.append(reply)
        self._state = CLOSED
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
        self._sender: str | None = None
        self._params: dict[str, str | None] = {}
        self._recipients: list[str] = []
        self._rcpt_tried = False

    def _end_of_data(self, reader: DataReader) -> None:
        self._data = None
        self._state = COMMAND
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
        self._decide(MessageReceived(envelope, reader.message))  # type: ignore[arg-type]

    # -- commands (RFC 5321 §4.1.1) ----------------------------------------------------------------
    def _cmd_helo(self, arg: str, esmtp: bool = False) -> None:
        name = arg.strip(" ")
        if not name:
            self._fail(replies.SYNTAX_HELO)
            return
        # §4.1.4: a later EHLO/HELO resets the session exactly as RSET does (AUTH is kept).
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
            elif key == "AUTH" and self.config.auth_mechanisms:  # RFC 4954 §5, accepted as given
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
            self._state = DATA

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
            self._state = TLS_PENDING
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
        self._state = COMMAND
        if len(line) + 2 > SASL_LINE_LIMIT:
            self._fail(replies.AUTH_LINE_TOO_LONG)  # RFC 4954 §4: 500 5.5.6, the exchange fails
            return
        self._sasl_step(exchange, exchange.respond(line))  # type: ignore[union-attr]

    def _sasl_step(self, exchange: SaslExchange, outcome: bytes | AuthCredentials) -> None:
        if isinstance(outcome, AuthCredentials):
            self._decide(outcome)
        elif outcome.startswith(b"334"):
            self._out.append(outcome)
            self._sasl = exchange
            self._state = AUTH
        else:
            self._fail(outcome)


def _bad_param(key: str) -> bytes:
    return Reply(501, "5.5.4", f"Error: bad {key} parameter").to_bytes()


HANDLERS = {
    b"HELO": Commands._cmd_helo,
    b"EHLO": Commands._cmd_ehlo,
    b"MAIL": Commands._cmd_mail,
    b"RCPT": Commands._cmd_rcpt,
    b"DATA": Commands._cmd_data,
    b"RSET": Commands._cmd_rset,
    b"NOOP": Commands._cmd_noop,
    b"QUIT": Commands._cmd_quit,
    b"VRFY": Commands._cmd_vrfy,
    b"HELP": Commands._cmd_help,
    b"STARTTLS": Commands._cmd_starttls,
    b"AUTH": Commands._cmd_auth,
}
