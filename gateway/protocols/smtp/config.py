"""Per-listener settings of the SMTP core: limits with Postfix-like defaults, and policy switches.

One :class:`ServerConfig` is built per listener and shared by all its sessions; the replies that
depend only on it (greeting, EHLO) are rendered once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from gateway.protocols.smtp.replies import Reply

__all__ = ["ServerConfig", "MECHANISMS", "SASL_LINE_LIMIT", "MAIL_RCPT_ALLOWANCE"]

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
